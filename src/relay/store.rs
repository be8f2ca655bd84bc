//! The relay's durable state, in the node's `KVStore` under the `trampoline`
//! namespace: one record per rewritten incoming HTLC (`htlcs`) and one per
//! bucket (`buckets`). Everything is written before it is acted on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::hashes::{sha256, Hash, HashEngine};
use lightning::ln::types::ChannelId;
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning::util::persist::KVStoreSync;
use serde::{Deserialize, Serialize};

/// Primary namespace of every plugin record.
pub const NAMESPACE: &str = "trampoline";
const HTLCS: &str = "htlcs";
const BUCKETS: &str = "buckets";

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
		/// The failure every HTLC of the bucket returns to the origin.
		failure: Vec<u8>,
		/// A failure from further down the trampoline route, still encrypted
		/// for the origin: returned (wrapped with our layers) instead of
		/// `failure`.
		#[serde(default, skip_serializing_if = "Option::is_none")]
		forwarded: Option<Vec<u8>>,
	},
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
}

/// How many records the relay store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounts {
	/// Bucket records.
	pub buckets: usize,
	/// HTLC records.
	pub htlcs: usize,
}

/// The key of an HTLC record.
pub fn htlc_key(channel_id: &ChannelId, htlc_id: u64) -> String {
	format!("{}_{htlc_id}", hex::DisplayHex::to_lower_hex_string(&channel_id.0[..]))
}

fn bucket_key(id: &BucketId) -> String {
	hex::DisplayHex::to_lower_hex_string(&id[..])
}

#[derive(Default)]
struct Cache {
	htlcs: HashMap<String, HtlcRecord>,
	buckets: HashMap<BucketId, BucketRecord>,
}

/// The relay's records: an in-memory cache in front of the KV store.
pub struct RelayStore {
	kv: Arc<dyn KVStoreSync + Send + Sync>,
	cache: Mutex<Cache>,
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
			cache.htlcs.insert(key, record);
		}
		for key in kv.list(NAMESPACE, BUCKETS).map_err(io("listing buckets"))? {
			let bytes = kv.read(NAMESPACE, BUCKETS, &key).map_err(io("reading a bucket"))?;
			let record = serde_json::from_slice(&bytes)
				.map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
			let id = <[u8; 32] as hex::FromHex>::from_hex(&key)
				.map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
			cache.buckets.insert(id, record);
		}
		Ok(Self { kv, cache: Mutex::new(cache) })
	}

	fn lock(&self) -> MutexGuard<'_, Cache> {
		self.cache.lock().unwrap_or_else(|p| p.into_inner())
	}

	fn write<T: Serialize>(&self, secondary: &str, key: &str, value: &T) -> Result<(), StoreError> {
		let bytes = serde_json::to_vec(value)
			.map_err(|e| StoreError::Io { what: "encoding", reason: e.to_string() })?;
		self.kv
			.write(NAMESPACE, secondary, key, bytes)
			.map_err(|e| StoreError::Io { what: "writing", reason: e.to_string() })
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

	/// Writes an HTLC record (durably, then in the cache).
	pub fn put_htlc(&self, key: &str, record: HtlcRecord) -> Result<(), StoreError> {
		let mut cache = self.lock();
		if cache.htlcs.get(key) == Some(&record) {
			return Ok(());
		}
		self.write(HTLCS, key, &record)?;
		cache.htlcs.insert(key.to_string(), record);
		Ok(())
	}

	/// Every HTLC record of a bucket.
	pub fn htlcs_of(&self, bucket: &BucketId) -> Vec<HtlcRecord> {
		self.lock().htlcs.values().filter(|h| h.bucket.as_ref() == Some(bucket)).cloned().collect()
	}

	/// Every HTLC record whose failure was put on the wire, with its key.
	pub fn failures_sent(&self) -> Vec<(String, HtlcRecord)> {
		self.lock()
			.htlcs
			.iter()
			.filter(|(_, h)| h.failure_sent.is_some())
			.map(|(k, h)| (k.clone(), h.clone()))
			.collect()
	}

	/// The record of a bucket.
	pub fn bucket(&self, id: &BucketId) -> Option<BucketRecord> {
		self.lock().buckets.get(id).cloned()
	}

	/// The bucket whose outgoing payment is `payment_id`.
	pub fn bucket_by_payment(&self, payment_id: &[u8; 32]) -> Option<(BucketId, BucketRecord)> {
		self.lock()
			.buckets
			.iter()
			.find(|(_, b)| b.payment_id.as_ref() == Some(payment_id))
			.map(|(id, b)| (*id, b.clone()))
	}

	/// Every bucket.
	pub fn buckets(&self) -> Vec<(BucketId, BucketRecord)> {
		self.lock().buckets.iter().map(|(id, b)| (*id, b.clone())).collect()
	}

	/// The buckets held for an offline next node (only these are cloned:
	/// the hold loop asks every second).
	pub fn held_buckets(&self) -> Vec<(BucketId, BucketRecord)> {
		self.lock()
			.buckets
			.iter()
			.filter(|(_, b)| matches!(b.state, BucketState::Held { .. }))
			.map(|(id, b)| (*id, b.clone()))
			.collect()
	}

	/// Writes a bucket record (durably, then in the cache).
	pub fn put_bucket(&self, id: &BucketId, record: BucketRecord) -> Result<(), StoreError> {
		let mut cache = self.lock();
		if cache.buckets.get(id) == Some(&record) {
			return Ok(());
		}
		self.write(BUCKETS, &bucket_key(id), &record)?;
		cache.buckets.insert(*id, record);
		Ok(())
	}

	/// Changes a bucket with `change` under the store lock and persists it.
	/// Returns the new record, or `None` if the bucket is unknown.
	pub fn update_bucket(
		&self, id: &BucketId, change: impl FnOnce(&mut BucketRecord),
	) -> Result<Option<BucketRecord>, StoreError> {
		let mut cache = self.lock();
		let Some(mut record) = cache.buckets.get(id).cloned() else { return Ok(None) };
		change(&mut record);
		self.write(BUCKETS, &bucket_key(id), &record)?;
		cache.buckets.insert(*id, record.clone());
		Ok(Some(record))
	}
}
