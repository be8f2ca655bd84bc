//! A `KVStoreSync` in memory for the relay's unit tests, whose writes can be
//! made to fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use lightning::io;
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
