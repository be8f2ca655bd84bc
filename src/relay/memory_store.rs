//! Test support for the relay's unit tests: a `KVStoreSync` in memory whose
//! writes can be made to fail, and record fixtures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use lightning::io;

use super::store::{BucketId, BucketRecord, BucketState, HtlcRecord};
use lightning::util::persist::KVStoreSync;

type Key = (String, String, String);

/// Records in a map; every write fails while `fail_writes` is set.
#[derive(Default)]
pub(crate) struct MemoryStore {
	records: Mutex<HashMap<Key, Vec<u8>>>,
	pub(crate) fail_writes: AtomicBool,
}

impl MemoryStore {
	fn records(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<u8>>> {
		self.records.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// Makes every later write fail (`true`) or succeed.
	pub(crate) fn set_failing(&self, failing: bool) {
		self.fail_writes.store(failing, Ordering::SeqCst);
	}
}

fn key(p: &str, s: &str, k: &str) -> Key {
	(p.to_string(), s.to_string(), k.to_string())
}

impl KVStoreSync for MemoryStore {
	fn read(&self, p: &str, s: &str, k: &str) -> Result<Vec<u8>, io::Error> {
		self.records().get(&key(p, s, k)).cloned().ok_or_else(|| io::ErrorKind::NotFound.into())
	}

	fn write(&self, p: &str, s: &str, k: &str, buf: Vec<u8>) -> Result<(), io::Error> {
		if self.fail_writes.load(Ordering::SeqCst) {
			return Err(io::Error::new(io::ErrorKind::Other, "writes fail in this test"));
		}
		self.records().insert(key(p, s, k), buf);
		Ok(())
	}

	fn remove(&self, p: &str, s: &str, k: &str, _lazy: bool) -> Result<(), io::Error> {
		self.records().remove(&key(p, s, k));
		Ok(())
	}

	fn list(&self, p: &str, s: &str) -> Result<Vec<String>, io::Error> {
		Ok(self
			.records()
			.keys()
			.filter(|(kp, ks, _)| kp == p && ks == s)
			.map(|(_, _, k)| k.clone())
			.collect())
	}
}

/// A receiving bucket of payment hash `[hash; 32]`.
pub(crate) fn bucket(hash: u8) -> BucketRecord {
	BucketRecord {
		payment_hash: [hash; 32],
		outer_secret: [1; 32],
		outer_total_msat: 1000,
		ldk_secret: [2; 32],
		min_incoming_cltv: 500,
		trampoline_payload: vec![0],
		next_packet: None,
		payment_id: None,
		state: BucketState::Receiving,
		claim_deadline: None,
		superseded: false,
		retry_until: None,
		retries_stopped: false,
		dialect: Default::default(),
	}
}

/// An unresolved HTLC record of `peer`, recorded long ago.
pub(crate) fn htlc(bucket: Option<BucketId>, peer: &str, amount_msat: u64) -> HtlcRecord {
	HtlcRecord {
		payment_hash: [9; 32],
		bucket,
		outer_shared_secret: [0; 32],
		trampoline_shared_secret: None,
		rewrite_shared_secret: [0; 32],
		reject: None,
		failure_sent: None,
		peer: peer.to_string(),
		amount_msat,
		cltv_expiry: 600,
		recorded_secs: 0,
		resolved: false,
		reject_reason: None,
		dialect: Default::default(),
		final_receive: false,
	}
}
