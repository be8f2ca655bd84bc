//! Disk usage of a directory tree, for the benches' bytes-per-record figures.

use std::path::Path;

/// (apparent bytes, allocated bytes, files) under `dir`.
pub fn disk_usage(dir: &Path) -> (u64, u64, u64) {
	use std::os::unix::fs::MetadataExt;
	let mut total = (0, 0, 0);
	for entry in std::fs::read_dir(dir).expect("readable").flatten() {
		let meta = entry.metadata().expect("metadata");
		if meta.is_dir() {
			let (a, b, c) = disk_usage(&entry.path());
			total = (total.0 + a, total.1 + b, total.2 + c);
		} else {
			total = (total.0 + meta.len(), total.1 + meta.blocks() * 512, total.2 + 1);
		}
	}
	total
}
