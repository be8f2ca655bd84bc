//! A KV store in memory, for the benches that measure the relay's logic
//! rather than the disk.

use lightning::io;
use lightning::util::persist::KVStoreSync;
use std::collections::HashMap;
use std::sync::Mutex;

/// A KV store in memory.
#[derive(Default)]
pub struct MemoryStore(Mutex<HashMap<(String, String, String), Vec<u8>>>);

impl KVStoreSync for MemoryStore {
	fn read(&self, p: &str, s: &str, k: &str) -> Result<Vec<u8>, io::Error> {
		let map = self.0.lock().unwrap();
		let value = map.get(&(p.to_string(), s.to_string(), k.to_string()));
		value.cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
	}

	fn write(&self, p: &str, s: &str, k: &str, buf: Vec<u8>) -> Result<(), io::Error> {
		self.0.lock().unwrap().insert((p.to_string(), s.to_string(), k.to_string()), buf);
		Ok(())
	}

	fn remove(&self, p: &str, s: &str, k: &str, _lazy: bool) -> Result<(), io::Error> {
		self.0.lock().unwrap().remove(&(p.to_string(), s.to_string(), k.to_string()));
		Ok(())
	}

	fn list(&self, p: &str, s: &str) -> Result<Vec<String>, io::Error> {
		let map = self.0.lock().unwrap();
		Ok(map.keys().filter(|(kp, ks, _)| kp == p && ks == s).map(|(_, _, k)| k.clone()).collect())
	}
}
