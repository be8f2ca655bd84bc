//! Held trampoline payments: memory and disk per held bucket (one incoming
//! HTLC each, as the relay keeps them for an offline next node), and the
//! time the hold loop takes each second to collect them.
//!
//! `cargo bench --bench held_buckets` (`HELD_BENCH_N` buckets, default
//! 10,000). The records go through `RelayStore` onto LDK's
//! `FilesystemStore` in a temporary directory; memory is counted by a
//! global allocator wrapper.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ldk_trampoline::relay::store::{BucketRecord, BucketState, HtlcRecord, RelayStore};
use lightning::util::persist::KVStoreSync;
use lightning_persister::fs_store::FilesystemStore;

#[path = "common/disk.rs"]
mod disk;
use disk::disk_usage;

/// The system allocator, counting the bytes it holds.
struct Counting;

static HELD_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
	unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
		HELD_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
		unsafe { System.alloc(layout) }
	}
	unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
		HELD_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
		unsafe { System.dealloc(ptr, layout) }
	}
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn id(i: u64, tag: u8) -> [u8; 32] {
	let mut id = [tag; 32];
	id[..8].copy_from_slice(&i.to_be_bytes());
	id
}

fn main() {
	let n: u64 = std::env::var("HELD_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
	let dir = tempfile::tempdir().expect("tempdir");
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(FilesystemStore::new(dir.path().into()));
	let store = RelayStore::load(kv).expect("store");
	let before = HELD_BYTES.load(Ordering::Relaxed);
	let start = Instant::now();
	for i in 0..n {
		let bucket = id(i, 1);
		let htlc = HtlcRecord {
			payment_hash: id(i, 2),
			bucket: Some(bucket),
			outer_shared_secret: id(i, 3),
			trampoline_shared_secret: Some(id(i, 4)),
			rewrite_shared_secret: id(i, 5),
			reject: None,
			failure_sent: None,
		};
		store.put_htlc(&format!("{}_{i}", "ab".repeat(32)), htlc).expect("htlc");
		let record = BucketRecord {
			payment_hash: id(i, 2),
			outer_secret: id(i, 6),
			outer_total_msat: 10_011_000,
			ldk_secret: id(i, 7),
			min_incoming_cltv: 900,
			// A BOLT 11 legacy-recipient payload with a short route hint.
			trampoline_payload: vec![0x42; 120],
			next_packet: None,
			payment_id: None,
			state: BucketState::Held {
				amount_msat: 10_011_000,
				since_secs: 1_800_000_000,
				deadline_height: 876,
			},
		};
		store.put_bucket(&bucket, record).expect("bucket");
	}
	let write_s = start.elapsed().as_secs_f64();
	let memory = (HELD_BYTES.load(Ordering::Relaxed) - before) as f64 / n as f64;
	let start = Instant::now();
	let held = store.held_buckets().len();
	let scan_ms = start.elapsed().as_secs_f64() * 1e3;
	assert_eq!(held as u64, n);
	let (bytes, allocated, files) = disk_usage(dir.path());
	println!("held trampoline buckets, N={n} (one HTLC each), RelayStore over FilesystemStore");
	println!("   memory: {memory:.0} bytes per held bucket (cache: bucket + HTLC record)");
	println!(
		"   disk:   {:.0} bytes per held bucket ({:.0} allocated, {} files)",
		bytes as f64 / n as f64,
		allocated as f64 / n as f64,
		files
	);
	println!(
		"   hold:   {:.0} buckets/s written (two fsynced records each); collecting all held: {scan_ms:.1} ms",
		n as f64 / write_s
	);
}
