//! A file logger for LDK's [`Logger`] trait.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use lightning::util::logger::{Level, Logger, Record};

/// A log line's time: ISO 8601 (RFC 3339) in UTC, to the millisecond.
fn timestamp(now: chrono::DateTime<chrono::Utc>) -> impl std::fmt::Display {
	now.format("%Y-%m-%dT%H:%M:%S%.3fZ")
}

/// Writes LDK's log records to a file, one line each, at or above a level:
/// `2026-12-08T01:02:03.456Z <name> INFO  [module:line] message`.
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
		let line = format!(
			"{} {} {:<5} [{}:{}] {}\n",
			timestamp(chrono::Utc::now()),
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

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn log_lines_start_with_an_iso_8601_utc_time() {
		let dir = tempfile::tempdir().expect("tempdir");
		let path = dir.path().join("logs").join("ldk.log");
		let logger = NodeLogger::open(&path, Level::Info, "alice").expect("open");
		lightning::log_info!(logger, "hello {}", 42);
		lightning::log_debug!(logger, "below the level");
		let text = std::fs::read_to_string(&path).expect("read");
		let lines: Vec<&str> = text.lines().collect();
		assert_eq!(lines.len(), 1, "{text}");
		let (time, rest) = lines[0].split_once(' ').expect("a time first");
		chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339");
		assert!(time.ends_with('Z') && time.len() == "2026-12-08T01:02:03.456Z".len(), "{time}");
		assert!(rest.starts_with("alice INFO ") && rest.ends_with("hello 42"), "{rest}");
	}
}
