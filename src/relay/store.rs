//! The relay's durable state, in the node's `KVStore` under the `trampoline`
//! namespace: one record per rewritten incoming HTLC (`htlcs`) and one per
//! bucket (`buckets`). Everything is written before it is acted on.
//!
//! Locking: the in-memory cache has one lock, held only for map operations,
//! never across a store write. Durable writes of one key are ordered by a
//! per-key stripe lock, taken before the cache lock, so a flood of writes on
//! one peer's thread never stalls the others behind an fsync. Writes that no
//! decision depends on (what failure was sent, an HTLC seen resolved) are
//! *deferred*: the cache changes at once and [`RelayStore::flush`] writes them
//! later, from the relay's tick. The cache keeps indexes by payment hash, by
//! outgoing payment id, by payer and of held buckets, so that every event and
//! every tick costs in proportion to the records it concerns.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::hashes::{sha256, Hash, HashEngine};
use lightning::ln::types::ChannelId;
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning::util::persist::KVStoreSync;
use serde::{Deserialize, Serialize};

use super::dialect::{Dialect, FailReason};

/// Primary namespace of every plugin record.
pub const NAMESPACE: &str = "trampoline";
const HTLCS: &str = "htlcs";
const BUCKETS: &str = "buckets";
/// The running totals of pruned buckets ([`SettledTotals`]), one record.
const TOTALS: &str = "totals";
const TOTALS_KEY: &str = "settled";

/// Stripe locks ordering the durable writes of one key.
const STRIPES: usize = 256;

/// Errors of the relay's store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
	/// The KV store failed.
	#[error("trampoline store {what}: {reason}")]
	Io {
		/// What was being done.
		what: &'static str,
		/// The store's error.
		reason: String,
	},
	/// A record does not decode.
	#[error("trampoline store record {key} is corrupt: {reason}")]
	Corrupt {
		/// The record key.
		key: String,
		/// The decode error.
		reason: String,
	},
}

/// A bucket: every incoming HTLC sharing a payment hash and an outer
/// payment_secret (the Electrum / eclair unit of a trampoline payment).
pub type BucketId = [u8; 32];

/// The id of the bucket of `(payment_hash, outer payment_secret)`.
pub fn bucket_id(payment_hash: &PaymentHash, outer_secret: &PaymentSecret) -> BucketId {
	let mut engine = sha256::Hash::engine();
	engine.input(b"ldk-trampoline bucket");
	engine.input(&payment_hash.0);
	engine.input(&outer_secret.0);
	sha256::Hash::from_engine(engine).to_byte_array()
}

/// What the plugin remembers about one rewritten incoming HTLC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcRecord {
	/// The payment hash of the HTLC.
	pub payment_hash: [u8; 32],
	/// The bucket it belongs to (`None` for an HTLC rejected before bucketing).
	pub bucket: Option<BucketId>,
	/// Shared secret of the original outer onion.
	pub outer_shared_secret: [u8; 32],
	/// Shared secret of the trampoline onion, when it could be peeled.
	pub trampoline_shared_secret: Option<[u8; 32]>,
	/// Shared secret of the one-hop onion we handed LDK instead.
	pub rewrite_shared_secret: [u8; 32],
	/// For an HTLC rejected at once: the encoded failure message to return.
	pub reject: Option<Vec<u8>>,
	/// The encoded failure message last put on the wire for it (for operators
	/// and tests).
	pub failure_sent: Option<Vec<u8>>,
	/// The peer that offered it, hex (empty in records of older versions).
	#[serde(default)]
	pub peer: String,
	/// The HTLC's amount, msat.
	#[serde(default)]
	pub amount_msat: u64,
	/// The HTLC's own `cltv_expiry`.
	#[serde(default)]
	pub cltv_expiry: u32,
	/// When it was recorded, seconds since the Unix epoch.
	#[serde(default)]
	pub recorded_secs: u64,
	/// Its fulfill or failure went out, or it left its channel: it no longer
	/// counts toward its payer's limits and, once its bucket is settled, its
	/// record can go.
	#[serde(default)]
	pub resolved: bool,
	/// Why it was rejected at once (with `reject`, its spec answer, which
	/// older versions read). Records without it are answered from `reject`.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub reject_reason: Option<FailReason>,
	/// The dialect its payer spoke (records of older versions: spec).
	#[serde(default)]
	pub dialect: Dialect,
	/// We are the final recipient of this trampoline payment (it was handed
	/// to LDK as a receive of our own invoice): LDK's failure is the
	/// recipient's answer, passed on as it is.
	#[serde(default)]
	pub final_receive: bool,
}

/// Where a bucket stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BucketState {
	/// Waiting for LDK to aggregate the parts.
	Receiving,
	/// Complete, and held: the next node is our peer and offline. Forwarded
	/// when it is back, failed back at `deadline_height`.
	Held {
		/// What the bucket's parts bring in, msat.
		amount_msat: u64,
		/// Since when, seconds since the Unix epoch.
		since_secs: u64,
		/// The height at which it is failed back if still held.
		deadline_height: u32,
	},
	/// The outgoing payment is in flight.
	Sending {
		/// LDK's payment id of the outgoing payment.
		payment_id: [u8; 32],
	},
	/// The outgoing payment succeeded; the incoming HTLCs are being claimed.
	Claimed {
		/// The preimage.
		preimage: [u8; 32],
	},
	/// The bucket was failed back with this (encoded) failure message.
	Failed {
		/// The failure every HTLC of the bucket returns to a spec payer (what
		/// older versions read).
		failure: Vec<u8>,
		/// A failure from further down the trampoline route, still encrypted
		/// for the origin: returned (wrapped with our layers) instead of
		/// `failure`.
		#[serde(default, skip_serializing_if = "Option::is_none")]
		forwarded: Option<Vec<u8>>,
		/// Why (records of older versions: read from `failure`). The payer
		/// is told [`crate::relay::wire_failure`] of it in its dialect.
		#[serde(default, skip_serializing_if = "Option::is_none")]
		reason: Option<FailReason>,
	},
}

impl BucketState {
	/// Whether the bucket's outcome is decided (claimed or failed).
	pub fn is_settled(&self) -> bool {
		matches!(self, Self::Claimed { .. } | Self::Failed { .. })
	}
}

/// What the plugin remembers about a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
	/// The payment hash.
	pub payment_hash: [u8; 32],
	/// The outer payment_secret (random, chosen by the payer for us).
	pub outer_secret: [u8; 32],
	/// The outer total_msat of the bucket.
	pub outer_total_msat: u64,
	/// The payment secret LDK issued for this bucket (put in the rewritten onions).
	pub ldk_secret: [u8; 32],
	/// The lowest incoming `cltv_expiry` seen among its HTLCs.
	pub min_incoming_cltv: u32,
	/// The trampoline payload of the first HTLC (BigSize length prefix included).
	pub trampoline_payload: Vec<u8>,
	/// The peeled trampoline packet for the next trampoline, if any.
	pub next_packet: Option<Vec<u8>>,
	/// LDK's payment id of the outgoing payment, once decided (deterministic
	/// from the bucket id).
	pub payment_id: Option<[u8; 32]>,
	/// Progress.
	pub state: BucketState,
	/// LDK's `claim_deadline` of the bucket's claimable event: the height
	/// from which LDK fails the incoming HTLCs back by itself.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub claim_deadline: Option<u32>,
	/// A newer bucket of the same payment hash was admitted after this one
	/// had settled and all its HTLCs were resolved: LDK's claimable set for
	/// the hash is no longer this bucket's, so nothing done by payment hash
	/// may be done for it again.
	#[serde(default)]
	pub superseded: bool,
	/// The dialect the payer spoke (the outer onion type of its first HTLC;
	/// records of older versions: spec).
	#[serde(default)]
	pub dialect: Dialect,
}

/// The key of an HTLC record.
pub fn htlc_key(channel_id: &ChannelId, htlc_id: u64) -> String {
	format!("{}_{htlc_id}", hex::DisplayHex::to_lower_hex_string(&channel_id.0[..]))
}

/// The channel and HTLC id an HTLC record key names.
pub fn parse_htlc_key(key: &str) -> Option<(ChannelId, u64)> {
	let (channel, id) = key.split_once('_')?;
	let channel = <[u8; 32] as hex::FromHex>::from_hex(channel).ok()?;
	Some((ChannelId(channel), id.parse().ok()?))
}

fn bucket_key(id: &BucketId) -> String {
	hex::DisplayHex::to_lower_hex_string(&id[..])
}

/// What the buckets pruned so far came to: the operators' counters, kept on
/// disk so that they survive restarts (the records they count are gone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledTotals {
	/// Buckets relayed (outgoing payment fulfilled, incoming claimed).
	pub relayed: usize,
	/// Buckets failed back (or given up on by LDK).
	pub failed: usize,
	/// What the relayed buckets brought in, fees included, msat.
	pub relayed_in_msat: u64,
	/// Buckets whose payer spoke the legacy dialect.
	pub legacy: usize,
}

impl SettledTotals {
	/// Counts one pruned bucket.
	pub(crate) fn count(&mut self, bucket: &super::BucketSummary) {
		if bucket.dialect == super::Dialect::Legacy {
			self.legacy += 1;
		}
		match bucket.state {
			super::BucketStage::Relayed => {
				self.relayed += 1;
				self.relayed_in_msat = self.relayed_in_msat.saturating_add(bucket.outer_total_msat);
			},
			_ => self.failed += 1,
		}
	}
}

/// How many records the relay store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounts {
	/// Bucket records.
	pub buckets: usize,
	/// HTLC records.
	pub htlcs: usize,
}

/// What one payer has in flight through the relay: HTLCs not yet resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerLoad {
	/// The distinct buckets those HTLCs belong to.
	pub buckets: HashSet<BucketId>,
	/// Their total amount, msat.
	pub msat: u64,
}

#[derive(Default)]
struct Cache {
	htlcs: HashMap<String, HtlcRecord>,
	buckets: HashMap<BucketId, BucketRecord>,
	/// Bucket -> its HTLC record keys.
	by_bucket: HashMap<BucketId, BTreeSet<String>>,
	/// Payment hash -> its buckets.
	by_hash: HashMap<[u8; 32], BTreeSet<BucketId>>,
	/// Outgoing payment id -> bucket.
	by_payment: HashMap<[u8; 32], BucketId>,
	/// Held buckets.
	held: BTreeSet<BucketId>,
	/// Payer (hex) -> keys of its unresolved HTLCs.
	by_peer: HashMap<String, BTreeSet<String>>,
	/// Deferred writes not yet flushed.
	dirty_htlcs: BTreeSet<String>,
	dirty_buckets: BTreeSet<BucketId>,
}

impl Cache {
	fn index_htlc(&mut self, key: &str, record: &HtlcRecord) {
		if let Some(bucket) = record.bucket {
			self.by_bucket.entry(bucket).or_default().insert(key.to_string());
		}
		if !record.resolved && !record.peer.is_empty() {
			self.by_peer.entry(record.peer.clone()).or_default().insert(key.to_string());
		}
	}

	fn unindex_htlc(&mut self, key: &str, record: &HtlcRecord) {
		if let Some(bucket) = record.bucket {
			if let Some(keys) = self.by_bucket.get_mut(&bucket) {
				keys.remove(key);
				if keys.is_empty() {
					self.by_bucket.remove(&bucket);
				}
			}
		}
		if let Some(keys) = self.by_peer.get_mut(&record.peer) {
			keys.remove(key);
			if keys.is_empty() {
				self.by_peer.remove(&record.peer);
			}
		}
	}

	fn insert_htlc(&mut self, key: &str, record: HtlcRecord) {
		if let Some(old) = self.htlcs.remove(key) {
			self.unindex_htlc(key, &old);
		}
		self.index_htlc(key, &record);
		self.htlcs.insert(key.to_string(), record);
	}

	fn remove_htlc(&mut self, key: &str) {
		if let Some(old) = self.htlcs.remove(key) {
			self.unindex_htlc(key, &old);
		}
		self.dirty_htlcs.remove(key);
	}

	fn index_bucket(&mut self, id: &BucketId, record: &BucketRecord) {
		self.by_hash.entry(record.payment_hash).or_default().insert(*id);
		if let Some(payment_id) = record.payment_id {
			self.by_payment.insert(payment_id, *id);
		}
		if matches!(record.state, BucketState::Held { .. }) {
			self.held.insert(*id);
		}
	}

	fn unindex_bucket(&mut self, id: &BucketId, record: &BucketRecord) {
		if let Some(ids) = self.by_hash.get_mut(&record.payment_hash) {
			ids.remove(id);
			if ids.is_empty() {
				self.by_hash.remove(&record.payment_hash);
			}
		}
		if let Some(payment_id) = record.payment_id {
			if self.by_payment.get(&payment_id) == Some(id) {
				self.by_payment.remove(&payment_id);
			}
		}
		self.held.remove(id);
	}

	fn insert_bucket(&mut self, id: &BucketId, record: BucketRecord) {
		if let Some(old) = self.buckets.remove(id) {
			self.unindex_bucket(id, &old);
		}
		self.index_bucket(id, &record);
		self.buckets.insert(*id, record);
	}

	fn remove_bucket(&mut self, id: &BucketId) {
		if let Some(old) = self.buckets.remove(id) {
			self.unindex_bucket(id, &old);
		}
		self.dirty_buckets.remove(id);
	}
}

/// The relay's records: an in-memory cache in front of the KV store.
pub struct RelayStore {
	kv: Arc<dyn KVStoreSync + Send + Sync>,
	cache: Mutex<Cache>,
	stripes: Vec<Mutex<()>>,
	/// Per payment hash (a separate set: taken around the bucket stripes).
	hash_stripes: Vec<Mutex<()>>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
	serde_json::to_vec(value)
		.map_err(|e| StoreError::Io { what: "encoding", reason: e.to_string() })
}

impl RelayStore {
	/// Loads every record from `kv`.
	pub fn load(kv: Arc<dyn KVStoreSync + Send + Sync>) -> Result<Self, StoreError> {
		let mut cache = Cache::default();
		let io =
			|what| move |e: lightning::io::Error| StoreError::Io { what, reason: e.to_string() };
		for key in kv.list(NAMESPACE, HTLCS).map_err(io("listing htlcs"))? {
			let bytes = kv.read(NAMESPACE, HTLCS, &key).map_err(io("reading an htlc"))?;
			let record = serde_json::from_slice(&bytes)
				.map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
			cache.insert_htlc(&key, record);
		}
		for key in kv.list(NAMESPACE, BUCKETS).map_err(io("listing buckets"))? {
			let bytes = kv.read(NAMESPACE, BUCKETS, &key).map_err(io("reading a bucket"))?;
			let record = serde_json::from_slice(&bytes)
				.map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
			let id = <[u8; 32] as hex::FromHex>::from_hex(&key)
				.map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
			cache.insert_bucket(&id, record);
		}
		let stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
		let hash_stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
		Ok(Self { kv, cache: Mutex::new(cache), stripes, hash_stripes })
	}

	fn lock(&self) -> MutexGuard<'_, Cache> {
		self.cache.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// The lock ordering the durable writes of `key` (taken before the cache
	/// lock, never while holding it).
	fn stripe(&self, key: &[u8]) -> MutexGuard<'_, ()> {
		let index =
			key.iter().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(*b)));
		self.stripes[index % STRIPES].lock().unwrap_or_else(|p| p.into_inner())
	}

	/// Serialises the decisions about the buckets of one payment hash
	/// (admission, superseding, creation). Taken before any bucket's stripe,
	/// never while holding one.
	pub fn lock_payment_hash(&self, payment_hash: &[u8; 32]) -> MutexGuard<'_, ()> {
		let index = payment_hash
			.iter()
			.fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(*b)));
		self.hash_stripes[index % STRIPES].lock().unwrap_or_else(|p| p.into_inner())
	}

	fn write(&self, secondary: &str, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
		self.kv
			.write(NAMESPACE, secondary, key, bytes)
			.map_err(|e| StoreError::Io { what: "writing", reason: e.to_string() })
	}

	fn remove(&self, secondary: &str, key: &str) -> Result<(), StoreError> {
		self.kv
			.remove(NAMESPACE, secondary, key, false)
			.map_err(|e| StoreError::Io { what: "removing", reason: e.to_string() })
	}

	/// The totals of the buckets pruned so far (zero on a new store).
	pub fn settled_totals(&self) -> Result<SettledTotals, StoreError> {
		match self.kv.read(NAMESPACE, TOTALS, TOTALS_KEY) {
			Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
				key: format!("{TOTALS}/{TOTALS_KEY}"),
				reason: e.to_string(),
			}),
			Err(e) if e.kind() == lightning::io::ErrorKind::NotFound => {
				Ok(SettledTotals::default())
			},
			Err(e) => Err(StoreError::Io { what: "reading the totals", reason: e.to_string() }),
		}
	}

	/// Writes the totals of the buckets pruned so far (durably).
	pub fn put_settled_totals(&self, totals: &SettledTotals) -> Result<(), StoreError> {
		self.write(TOTALS, TOTALS_KEY, encode(totals)?)
	}

	/// How many records are kept.
	pub fn counts(&self) -> RecordCounts {
		let cache = self.lock();
		RecordCounts { buckets: cache.buckets.len(), htlcs: cache.htlcs.len() }
	}

	/// The record of an HTLC.
	pub fn htlc(&self, key: &str) -> Option<HtlcRecord> {
		self.lock().htlcs.get(key).cloned()
	}

	/// Writes an HTLC record (durably; nothing is written if it is unchanged).
	pub fn put_htlc(&self, key: &str, record: HtlcRecord) -> Result<(), StoreError> {
		let _stripe = self.stripe(key.as_bytes());
		if self.lock().htlcs.get(key) == Some(&record) {
			return Ok(());
		}
		self.write(HTLCS, key, encode(&record)?)?;
		let mut cache = self.lock();
		cache.dirty_htlcs.remove(key);
		cache.insert_htlc(key, record);
		Ok(())
	}

	/// Changes an HTLC record in memory at once, and on disk at the next
	/// [`Self::flush`]: for what no decision waits on.
	pub fn update_htlc_deferred(&self, key: &str, change: impl FnOnce(&mut HtlcRecord)) {
		let mut cache = self.lock();
		let Some(mut record) = cache.htlcs.get(key).cloned() else { return };
		change(&mut record);
		if cache.htlcs.get(key) != Some(&record) {
			cache.insert_htlc(key, record);
			cache.dirty_htlcs.insert(key.to_string());
		}
	}

	/// Forgets an HTLC record (durably).
	pub fn remove_htlc(&self, key: &str) -> Result<(), StoreError> {
		let _stripe = self.stripe(key.as_bytes());
		self.remove(HTLCS, key)?;
		self.lock().remove_htlc(key);
		Ok(())
	}

	/// Every HTLC record of a bucket, with its key.
	pub fn htlcs_of(&self, bucket: &BucketId) -> Vec<(String, HtlcRecord)> {
		let cache = self.lock();
		let Some(keys) = cache.by_bucket.get(bucket) else { return Vec::new() };
		keys.iter().filter_map(|k| Some((k.clone(), cache.htlcs.get(k)?.clone()))).collect()
	}

	/// Every HTLC record, with its key (the prune pass).
	pub fn htlcs(&self) -> Vec<(String, HtlcRecord)> {
		self.lock().htlcs.iter().map(|(k, h)| (k.clone(), h.clone())).collect()
	}

	/// Every HTLC record of `payment_hash` whose failure was put on the wire.
	pub fn failures_sent(&self, payment_hash: &[u8; 32]) -> Vec<Vec<u8>> {
		let cache = self.lock();
		let mut keys: Vec<&String> = Vec::new();
		for id in cache.by_hash.get(payment_hash).into_iter().flatten() {
			keys.extend(cache.by_bucket.get(id).into_iter().flatten());
		}
		let mut sent: Vec<Vec<u8>> =
			keys.iter().filter_map(|k| cache.htlcs.get(*k)?.failure_sent.clone()).collect();
		// Rejected before bucketing: not indexed by hash.
		sent.extend(
			cache
				.htlcs
				.values()
				.filter(|h| h.bucket.is_none() && h.payment_hash == *payment_hash)
				.filter_map(|h| h.failure_sent.clone()),
		);
		sent
	}

	/// What `peer` (hex) has in flight: its unresolved HTLCs.
	pub fn peer_load(&self, peer: &str) -> PeerLoad {
		let cache = self.lock();
		let mut load = PeerLoad::default();
		for key in cache.by_peer.get(peer).into_iter().flatten() {
			if let Some(htlc) = cache.htlcs.get(key) {
				load.msat = load.msat.saturating_add(htlc.amount_msat);
				if let Some(bucket) = htlc.bucket {
					load.buckets.insert(bucket);
				}
			}
		}
		load
	}

	/// The record of a bucket.
	pub fn bucket(&self, id: &BucketId) -> Option<BucketRecord> {
		self.lock().buckets.get(id).cloned()
	}

	/// The bucket whose outgoing payment is `payment_id`.
	pub fn bucket_by_payment(&self, payment_id: &[u8; 32]) -> Option<(BucketId, BucketRecord)> {
		let cache = self.lock();
		let id = cache.by_payment.get(payment_id)?;
		Some((*id, cache.buckets.get(id)?.clone()))
	}

	/// The buckets of a payment hash.
	pub fn buckets_of_hash(&self, payment_hash: &[u8; 32]) -> Vec<(BucketId, BucketRecord)> {
		let cache = self.lock();
		let Some(ids) = cache.by_hash.get(payment_hash) else { return Vec::new() };
		ids.iter().filter_map(|id| Some((*id, cache.buckets.get(id)?.clone()))).collect()
	}

	/// Every bucket.
	pub fn buckets(&self) -> Vec<(BucketId, BucketRecord)> {
		self.lock().buckets.iter().map(|(id, b)| (*id, b.clone())).collect()
	}

	/// The buckets held for an offline next node (an index: the hold loop
	/// asks every second).
	pub fn held_buckets(&self) -> Vec<(BucketId, BucketRecord)> {
		let cache = self.lock();
		cache.held.iter().filter_map(|id| Some((*id, cache.buckets.get(id)?.clone()))).collect()
	}

	/// Writes a bucket record (durably; nothing is written if unchanged).
	pub fn put_bucket(&self, id: &BucketId, record: BucketRecord) -> Result<(), StoreError> {
		self.update_or_create_bucket(id, || Some(record.clone()), |b| *b = record.clone())
			.map(|_| ())
	}

	/// Changes a bucket with `change` and persists it before returning
	/// (nothing is written if `change` changed nothing). Returns the new
	/// record, or `None` if the bucket is unknown.
	pub fn update_bucket(
		&self, id: &BucketId, change: impl FnOnce(&mut BucketRecord),
	) -> Result<Option<BucketRecord>, StoreError> {
		self.update_or_create_bucket(id, || None, change)
	}

	/// Atomically: changes the bucket with `change` if it exists, else
	/// creates it with `create` (if that gives a record); persists the
	/// result before returning it. Two HTLCs of one new bucket arriving at
	/// once on two peers' threads make one bucket.
	pub fn update_or_create_bucket(
		&self, id: &BucketId, create: impl FnOnce() -> Option<BucketRecord>,
		change: impl FnOnce(&mut BucketRecord),
	) -> Result<Option<BucketRecord>, StoreError> {
		let _stripe = self.stripe(id);
		let existing = self.lock().buckets.get(id).cloned();
		let record = match existing.clone() {
			Some(mut record) => {
				change(&mut record);
				record
			},
			None => match create() {
				Some(record) => record,
				None => return Ok(None),
			},
		};
		if existing.as_ref() != Some(&record) {
			self.write(BUCKETS, &bucket_key(id), encode(&record)?)?;
			let mut cache = self.lock();
			cache.dirty_buckets.remove(id);
			cache.insert_bucket(id, record.clone());
		}
		Ok(Some(record))
	}

	/// Changes a bucket in memory at once and on disk at the next
	/// [`Self::flush`].
	pub fn update_bucket_deferred(&self, id: &BucketId, change: impl FnOnce(&mut BucketRecord)) {
		let mut cache = self.lock();
		let Some(mut record) = cache.buckets.get(id).cloned() else { return };
		change(&mut record);
		if cache.buckets.get(id) != Some(&record) {
			cache.insert_bucket(id, record);
			cache.dirty_buckets.insert(*id);
		}
	}

	/// Forgets a bucket and its HTLC records (durably, HTLCs first).
	pub fn remove_bucket(&self, id: &BucketId) -> Result<(), StoreError> {
		for (key, _) in self.htlcs_of(id) {
			self.remove_htlc(&key)?;
		}
		let _stripe = self.stripe(id);
		self.remove(BUCKETS, &bucket_key(id))?;
		self.lock().remove_bucket(id);
		Ok(())
	}

	/// Writes the deferred changes. Returns how many records were written.
	pub fn flush(&self) -> Result<usize, StoreError> {
		let (htlcs, buckets) = {
			let mut cache = self.lock();
			(std::mem::take(&mut cache.dirty_htlcs), std::mem::take(&mut cache.dirty_buckets))
		};
		let mut written = 0;
		for key in htlcs {
			let _stripe = self.stripe(key.as_bytes());
			let Some(record) = self.htlc(&key) else { continue };
			if let Err(e) = self.write(HTLCS, &key, encode(&record)?) {
				self.lock().dirty_htlcs.insert(key);
				return Err(e);
			}
			written += 1;
		}
		for id in buckets {
			let _stripe = self.stripe(&id);
			let Some(record) = self.bucket(&id) else { continue };
			if let Err(e) = self.write(BUCKETS, &bucket_key(&id), encode(&record)?) {
				self.lock().dirty_buckets.insert(id);
				return Err(e);
			}
			written += 1;
		}
		Ok(written)
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::relay::memory_store::{bucket, htlc, MemoryStore};

	fn store() -> (Arc<MemoryStore>, RelayStore) {
		let kv = Arc::new(MemoryStore::default());
		let store =
			RelayStore::load(Arc::clone(&kv) as Arc<dyn KVStoreSync + Send + Sync>).expect("store");
		(kv, store)
	}

	#[test]
	fn records_written_before_dialects_read_as_spec_and_keep_their_failure() {
		// A bucket, a failed bucket's state and an HTLC record as the
		// previous version wrote them (no dialect, reason or final_receive).
		let mut old_bucket = serde_json::to_value(bucket(1)).unwrap();
		old_bucket.as_object_mut().unwrap().remove("dialect");
		let old_state = serde_json::json!({"state": "failed", "failure": [0x40, 0x1b]});
		old_bucket["state"] = old_state;
		let read: BucketRecord = serde_json::from_value(old_bucket).unwrap();
		assert_eq!(read.dialect, Dialect::Spec);
		assert_eq!(
			read.state,
			BucketState::Failed { failure: vec![0x40, 0x1b], forwarded: None, reason: None }
		);
		let mut old_htlc = serde_json::to_value(htlc(None, "aa", 1)).unwrap();
		for field in ["dialect", "reject_reason", "final_receive"] {
			old_htlc.as_object_mut().unwrap().remove(field);
		}
		let read: HtlcRecord = serde_json::from_value(old_htlc).unwrap();
		assert_eq!(
			(read.dialect, read.reject_reason, read.final_receive),
			(Dialect::Spec, None, false)
		);
		// And new ones round-trip with theirs.
		let new = BucketRecord {
			dialect: Dialect::Legacy,
			state: BucketState::Failed {
				failure: Vec::new(),
				forwarded: None,
				reason: Some(FailReason::ExpiryTooSoon),
			},
			..bucket(1)
		};
		let json = serde_json::to_vec(&new).unwrap();
		assert_eq!(serde_json::from_slice::<BucketRecord>(&json).unwrap(), new);
	}

	fn written(kv: &MemoryStore, secondary: &str) -> usize {
		kv.list(NAMESPACE, secondary).expect("list").len()
	}

	#[test]
	fn an_unchanged_update_writes_nothing() {
		let (kv, store) = store();
		let id = [7; 32];
		store.put_bucket(&id, bucket(1)).expect("put");
		kv.set_failing(true);
		assert!(store
			.update_bucket(&id, |b| b.min_incoming_cltv = 500)
			.expect("unchanged")
			.is_some());
		assert!(store.update_bucket(&id, |b| b.min_incoming_cltv = 400).is_err());
	}

	#[test]
	fn creation_is_atomic_across_threads() {
		let (_, store) = store();
		let store = Arc::new(store);
		let id = [3; 32];
		let threads: Vec<_> = (0..8u8)
			.map(|i| {
				let store = Arc::clone(&store);
				std::thread::spawn(move || {
					let record = store
						.update_or_create_bucket(
							&id,
							|| {
								Some(BucketRecord {
									ldk_secret: [i; 32],
									min_incoming_cltv: 400 + u32::from(i),
									..bucket(1)
								})
							},
							|b| b.min_incoming_cltv = b.min_incoming_cltv.min(400 + u32::from(i)),
						)
						.expect("store")
						.expect("record");
					record.ldk_secret
				})
			})
			.collect();
		let secrets: HashSet<[u8; 32]> =
			threads.into_iter().map(|t| t.join().expect("join")).collect();
		assert_eq!(secrets.len(), 1, "every part joined one bucket with one LDK secret");
		assert_eq!(store.bucket(&id).expect("bucket").min_incoming_cltv, 400);
	}

	#[test]
	fn deferred_changes_reach_the_disk_on_flush() {
		let (kv, store) = store();
		let key = htlc_key(&ChannelId([5; 32]), 1);
		store.put_htlc(&key, htlc(Some([1; 32]), "aa", 10)).expect("put");
		store.update_htlc_deferred(&key, |h| h.resolved = true);
		assert!(store.htlc(&key).expect("cached").resolved);
		let on_disk: HtlcRecord =
			serde_json::from_slice(&kv.read(NAMESPACE, HTLCS, &key).expect("read")).expect("json");
		assert!(!on_disk.resolved, "not written before the flush");
		assert_eq!(store.flush().expect("flush"), 1);
		let on_disk: HtlcRecord =
			serde_json::from_slice(&kv.read(NAMESPACE, HTLCS, &key).expect("read")).expect("json");
		assert!(on_disk.resolved);
		assert_eq!(store.flush().expect("flush"), 0);
	}

	#[test]
	fn peer_load_counts_unresolved_htlcs_only() {
		let (_, store) = store();
		let a = htlc_key(&ChannelId([5; 32]), 1);
		let b = htlc_key(&ChannelId([5; 32]), 2);
		let c = htlc_key(&ChannelId([6; 32]), 1);
		store.put_htlc(&a, htlc(Some([1; 32]), "aa", 10)).expect("put");
		store.put_htlc(&b, htlc(Some([2; 32]), "aa", 20)).expect("put");
		store.put_htlc(&c, htlc(Some([2; 32]), "bb", 40)).expect("put");
		let load = store.peer_load("aa");
		assert_eq!((load.buckets.len(), load.msat), (2, 30));
		store.update_htlc_deferred(&b, |h| h.resolved = true);
		let load = store.peer_load("aa");
		assert_eq!((load.buckets.len(), load.msat), (1, 10));
	}

	#[test]
	fn removing_a_bucket_removes_its_records_and_indexes() {
		let (kv, store) = store();
		let id = [4; 32];
		store
			.put_bucket(&id, BucketRecord { payment_id: Some([8; 32]), ..bucket(1) })
			.expect("put");
		let key = htlc_key(&ChannelId([5; 32]), 1);
		store.put_htlc(&key, htlc(Some(id), "aa", 10)).expect("put");
		assert!(store.bucket_by_payment(&[8; 32]).is_some());
		store.remove_bucket(&id).expect("remove");
		assert_eq!(store.counts(), RecordCounts::default());
		assert!(store.bucket_by_payment(&[8; 32]).is_none());
		assert!(store.buckets_of_hash(&[1; 32]).is_empty());
		assert!(store.peer_load("aa").buckets.is_empty());
		assert_eq!((written(&kv, HTLCS), written(&kv, BUCKETS)), (0, 0));
	}

	#[test]
	fn htlc_keys_parse_back() {
		let key = htlc_key(&ChannelId([0xab; 32]), 42);
		assert_eq!(parse_htlc_key(&key), Some((ChannelId([0xab; 32]), 42)));
		assert_eq!(parse_htlc_key("zz_1"), None);
	}
}
