//! Durable storage of static invoices in the node's `KVStore`, namespace
//! `static_invoices`, one record per (recipient, slot), with an in-memory index
//! of sizes and expiries for quotas, listing and eviction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::util::persist::KVStoreSync;
use lightning::util::ser::{Readable, Writeable};
use serde::{Deserialize, Serialize};

/// Primary namespace of every record. Records are in the secondary namespace
/// [`SECONDARY_NAMESPACE`] under the key `<hex SHA256 of the recipient
/// id>_<slot on five digits>` (bounded length, valid key characters, and one
/// `list` call finds them all).
pub const NAMESPACE: &str = "static_invoices";
/// Secondary namespace of every record.
pub const SECONDARY_NAMESPACE: &str = "invoices";

/// Version byte of the record encoding. Version 2 added the invoice's
/// creation time; version 1 records are read with it unknown (0).
const RECORD_VERSION: u8 = 2;
/// The version before the invoice's creation time was recorded.
const RECORD_VERSION_1: u8 = 1;

/// Errors of the invoice store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
	/// The KV store failed.
	#[error("static invoice store {what}: {reason}")]
	Io {
		/// What was being done.
		what: &'static str,
		/// The store's error.
		reason: String,
	},
	/// A record does not decode.
	#[error("static invoice record {key} is corrupt: {reason}")]
	Corrupt {
		/// The record's location.
		key: String,
		/// The decode error.
		reason: String,
	},
}

/// One stored invoice, as listed to the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStaticInvoice {
	/// The recipient id (hex), as given to `blinded_paths_for_async_recipient`.
	pub recipient_id: String,
	/// The recipient's slot.
	pub slot: u16,
	/// Bytes counted against the recipient's quota: the invoice plus its
	/// invoice-request path.
	pub size_bytes: u64,
	/// When we stored it (seconds since the Unix epoch).
	pub stored_at: u64,
	/// When it expires (seconds since the Unix epoch): the earlier of the
	/// invoice's and its offer's expiry.
	pub expires_at: u64,
	/// The invoice's creation time (seconds since the Unix epoch; 0 when
	/// read from a version 1 record, which did not keep it).
	pub created_at: u64,
}

/// What the index keeps per stored invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
	size: u64,
	stored_at: u64,
	expires_at: u64,
	pub(super) created_at: u64,
}

/// A stored invoice with what is needed to serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceRecord {
	/// The invoice.
	pub invoice: StaticInvoice,
	/// Where to forward invoice requests to the recipient.
	pub invoice_request_path: BlindedMessagePath,
	/// The recipient id.
	pub recipient_id: Vec<u8>,
	/// The slot.
	pub slot: u16,
	/// Seconds since the Unix epoch when stored.
	pub stored_at: u64,
	/// Seconds since the Unix epoch when it expires.
	pub expires_at: u64,
}

impl InvoiceRecord {
	/// Serializes the record: version, recipient id, slot, times (stored,
	/// expires, invoice created), request path, then the invoice bytes.
	pub fn encode(&self) -> Vec<u8> {
		let invoice = self.invoice.encode();
		let path = self.invoice_request_path.encode();
		let mut out =
			Vec::with_capacity(1 + 2 + self.recipient_id.len() + 30 + path.len() + invoice.len());
		out.push(RECORD_VERSION);
		out.extend_from_slice(&(self.recipient_id.len() as u16).to_be_bytes());
		out.extend_from_slice(&self.recipient_id);
		out.extend_from_slice(&self.slot.to_be_bytes());
		out.extend_from_slice(&self.stored_at.to_be_bytes());
		out.extend_from_slice(&self.expires_at.to_be_bytes());
		out.extend_from_slice(&self.invoice.created_at().as_secs().to_be_bytes());
		out.extend_from_slice(&(path.len() as u32).to_be_bytes());
		out.extend_from_slice(&path);
		out.extend_from_slice(&invoice);
		out
	}

	/// Parses a record written by [`InvoiceRecord::encode`].
	pub fn decode(bytes: &[u8]) -> Result<Self, String> {
		let header = RecordHeader::split(bytes)?;
		let mut path = header.path;
		let invoice_request_path = BlindedMessagePath::read(&mut path)
			.map_err(|e| format!("invoice request path: {e:?}"))?;
		let invoice = StaticInvoice::try_from(header.invoice.to_vec())
			.map_err(|e| format!("invoice: {e:?}"))?;
		Ok(Self {
			invoice,
			invoice_request_path,
			recipient_id: header.recipient_id,
			slot: header.slot,
			stored_at: header.stored_at,
			expires_at: header.expires_at,
		})
	}
}

/// A record split into its fields, the request path and the invoice left
/// unparsed: what the index needs, without checking the invoice's
/// signature again (it was checked when stored).
struct RecordHeader<'a> {
	recipient_id: Vec<u8>,
	slot: u16,
	stored_at: u64,
	expires_at: u64,
	created_at: u64,
	path: &'a [u8],
	invoice: &'a [u8],
}

impl<'a> RecordHeader<'a> {
	fn split(bytes: &'a [u8]) -> Result<Self, String> {
		let mut r = bytes;
		let mut take = |n: usize| -> Result<&'a [u8], String> {
			if r.len() < n {
				return Err("truncated".into());
			}
			let (head, tail) = r.split_at(n);
			r = tail;
			Ok(head)
		};
		let version = take(1)?[0];
		if version != RECORD_VERSION && version != RECORD_VERSION_1 {
			return Err("unknown record version".into());
		}
		let id_len = u16::from_be_bytes(take(2)?.try_into().map_err(|_| "id length")?);
		let recipient_id = take(id_len.into())?.to_vec();
		let slot = u16::from_be_bytes(take(2)?.try_into().map_err(|_| "slot")?);
		let stored_at = u64::from_be_bytes(take(8)?.try_into().map_err(|_| "stored_at")?);
		let expires_at = u64::from_be_bytes(take(8)?.try_into().map_err(|_| "expires_at")?);
		let created_at = if version == RECORD_VERSION_1 {
			0
		} else {
			u64::from_be_bytes(take(8)?.try_into().map_err(|_| "created_at")?)
		};
		let path_len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| "path length")?);
		let path = take(path_len as usize)?;
		if r.is_empty() {
			return Err("no invoice".into());
		}
		Ok(Self { recipient_id, slot, stored_at, expires_at, created_at, path, invoice: r })
	}

	fn meta(&self) -> Meta {
		Meta {
			// Both are kept for the recipient, so both count against its quota.
			size: (self.invoice.len() as u64).saturating_add(self.path.len() as u64),
			stored_at: self.stored_at,
			expires_at: self.expires_at,
			created_at: self.created_at,
		}
	}
}

/// The invoices, durable in the `KVStore`, indexed in memory.
pub struct InvoiceStore {
	kv: Arc<dyn KVStoreSync + Send + Sync>,
	index: HashMap<Vec<u8>, BTreeMap<u16, Meta>>,
	count: u64,
}

/// The (secondary namespace, key) of a record.
pub fn location(recipient_id: &[u8], slot: u16) -> (&'static str, String) {
	let hash = sha256::Hash::hash(recipient_id);
	(SECONDARY_NAMESPACE, format!("{hash}_{slot:05}"))
}

impl InvoiceStore {
	/// Loads the index from every record in `kv` (their headers: the
	/// invoices are parsed when served).
	pub fn load(kv: Arc<dyn KVStoreSync + Send + Sync>) -> Result<Self, StoreError> {
		let io =
			|what| move |e: lightning::io::Error| StoreError::Io { what, reason: e.to_string() };
		let mut store = Self { kv, index: HashMap::new(), count: 0 };
		let secondary = SECONDARY_NAMESPACE;
		for key in store.kv.list(NAMESPACE, secondary).map_err(io("listing"))? {
			let bytes = store.kv.read(NAMESPACE, secondary, &key).map_err(io("reading"))?;
			let header = RecordHeader::split(&bytes).map_err(|reason| StoreError::Corrupt {
				key: format!("{secondary}/{key}"),
				reason,
			})?;
			store.insert_meta(header.recipient_id.clone(), header.slot, header.meta());
		}
		Ok(store)
	}

	fn insert_meta(&mut self, recipient_id: Vec<u8>, slot: u16, meta: Meta) {
		let slots = self.index.entry(recipient_id).or_default();
		if slots.insert(slot, meta).is_none() {
			self.count += 1;
		}
	}

	/// Invoices stored.
	pub fn len(&self) -> u64 {
		self.count
	}

	/// Whether nothing is stored.
	pub fn is_empty(&self) -> bool {
		self.count == 0
	}

	/// Whether (recipient, slot) holds an invoice.
	pub fn contains(&self, recipient_id: &[u8], slot: u16) -> bool {
		self.index.get(recipient_id).is_some_and(|s| s.contains_key(&slot))
	}

	/// What the index knows of (recipient, slot).
	pub(super) fn meta(&self, recipient_id: &[u8], slot: u16) -> Option<Meta> {
		self.index.get(recipient_id).and_then(|s| s.get(&slot)).copied()
	}

	/// Bytes of `recipient_id`'s invoices and request paths, leaving out
	/// `except_slot`.
	pub fn recipient_bytes(&self, recipient_id: &[u8], except_slot: Option<u16>) -> u64 {
		self.index.get(recipient_id).map_or(0, |slots| {
			slots.iter().filter(|(s, _)| Some(**s) != except_slot).map(|(_, m)| m.size).sum()
		})
	}

	/// Writes (or replaces) a record, then indexes it.
	pub fn put(&mut self, record: &InvoiceRecord) -> Result<(), StoreError> {
		let (secondary, key) = location(&record.recipient_id, record.slot);
		let bytes = record.encode();
		let meta = RecordHeader::split(&bytes)
			.map_err(|reason| StoreError::Corrupt { key: format!("{secondary}/{key}"), reason })?
			.meta();
		self.kv
			.write(NAMESPACE, secondary, &key, bytes)
			.map_err(|e| StoreError::Io { what: "writing", reason: e.to_string() })?;
		self.insert_meta(record.recipient_id.clone(), record.slot, meta);
		Ok(())
	}

	/// Reads a record; `None` if absent.
	pub fn get(&self, recipient_id: &[u8], slot: u16) -> Result<Option<InvoiceRecord>, StoreError> {
		if !self.contains(recipient_id, slot) {
			return Ok(None);
		}
		let (secondary, key) = location(recipient_id, slot);
		let bytes = match self.kv.read(NAMESPACE, secondary, &key) {
			Ok(bytes) => bytes,
			Err(e) if e.kind() == lightning::io::ErrorKind::NotFound => return Ok(None),
			Err(e) => return Err(StoreError::Io { what: "reading", reason: e.to_string() }),
		};
		InvoiceRecord::decode(&bytes)
			.map(Some)
			.map_err(|reason| StoreError::Corrupt { key: format!("{secondary}/{key}"), reason })
	}

	/// Removes a record (no-op when absent).
	pub fn remove(&mut self, recipient_id: &[u8], slot: u16) -> Result<(), StoreError> {
		let (secondary, key) = location(recipient_id, slot);
		self.kv
			.remove(NAMESPACE, secondary, &key, false)
			.map_err(|e| StoreError::Io { what: "removing", reason: e.to_string() })?;
		if let Some(slots) = self.index.get_mut(recipient_id) {
			if slots.remove(&slot).is_some() {
				self.count -= 1;
			}
			if slots.is_empty() {
				self.index.remove(recipient_id);
			}
		}
		Ok(())
	}

	/// Removes every invoice expired at `now`; returns how many.
	pub fn evict_expired(&mut self, now: Duration) -> Result<u64, StoreError> {
		let now = now.as_secs();
		let expired: Vec<(Vec<u8>, u16)> = self
			.index
			.iter()
			.flat_map(|(id, slots)| {
				slots.iter().filter(|(_, m)| m.expires_at <= now).map(|(s, _)| (id.clone(), *s))
			})
			.collect();
		for (id, slot) in &expired {
			self.remove(id, *slot)?;
		}
		Ok(expired.len() as u64)
	}

	/// Every stored invoice, ordered by recipient id then slot.
	pub fn list(&self) -> Vec<StoredStaticInvoice> {
		let mut out: Vec<_> = self
			.index
			.iter()
			.flat_map(|(id, slots)| {
				slots.iter().map(move |(slot, m)| StoredStaticInvoice {
					recipient_id: id.iter().map(|b| format!("{b:02x}")).collect(),
					slot: *slot,
					size_bytes: m.size,
					stored_at: m.stored_at,
					expires_at: m.expires_at,
					created_at: m.created_at,
				})
			})
			.collect();
		out.sort_by(|a, b| (&a.recipient_id, a.slot).cmp(&(&b.recipient_id, b.slot)));
		out
	}
}
