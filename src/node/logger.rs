//! A file logger for LDK's [`Logger`] trait.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use lightning::util::logger::{Level, Logger, Record};

/// Writes LDK's log records to a file, one line each, at or above a level.
pub struct NodeLogger {
	file: Mutex<File>,
	min_level: Level,
	name: String,
}

impl NodeLogger {
	/// Opens (appending) `path` for records at `min_level` or above; `name` prefixes
	/// every line so that logs of several nodes can be told apart.
	pub fn open(path: &Path, min_level: Level, name: &str) -> std::io::Result<Self> {
		if let Some(dir) = path.parent() {
			std::fs::create_dir_all(dir)?;
		}
		let file = OpenOptions::new().create(true).append(true).open(path)?;
		Ok(Self { file: Mutex::new(file), min_level, name: name.to_string() })
	}
}

impl Logger for NodeLogger {
	fn log(&self, record: Record) {
		if record.level < self.min_level {
			return;
		}
		let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
		let line = format!(
			"{}.{:03} {} {:<5} [{}:{}] {}\n",
			now.as_secs(),
			now.subsec_millis(),
			self.name,
			record.level,
			record.module_path,
			record.line,
			record.args
		);
		if let Ok(mut file) = self.file.lock() {
			// A failed log write must never take the node down.
			let _ = file.write_all(line.as_bytes());
		}
	}
}
