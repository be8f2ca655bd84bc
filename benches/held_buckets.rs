//! What holding costs: memory and disk per held trampoline bucket (one
//! incoming HTLC each, as the relay keeps them for an offline next node) and
//! the time the hold loop takes each second to collect them; then memory and
//! disk per HTLC held for an often-offline payer (`htlc_hold`'s registry).
//!
//! `cargo bench --bench held_buckets` (`HELD_BENCH_N` of each, default
//! 10,000). The records go through `RelayStore` / `HtlcHold` onto LDK's
//! `FilesystemStore` in a temporary directory; memory is counted by a
//! global allocator wrapper.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use ldk_trampoline::htlc_hold::{HtlcHold, HtlcHoldPolicy};
use ldk_trampoline::onion::{self, OuterHop, OuterPayload, SphinxHop};
use ldk_trampoline::relay::store::{BucketRecord, BucketState, HtlcRecord, RelayStore};
use lightning::ln::msgs::{OnionPacket, UpdateAddHTLC};
use lightning::ln::types::ChannelId;
use lightning::sign::{KeysManager, NodeSigner, Recipient};
use lightning::types::payment::PaymentHash;
use lightning::util::persist::KVStoreSync;
use lightning_persister::fs_store::FilesystemStore;

#[path = "common/disk.rs"]
mod disk;
use disk::disk_usage;

#[path = "common/counting.rs"]
mod counting;
use counting::{id, HELD_BYTES};

fn main() {
	let n: u64 = std::env::var("HELD_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
	held_buckets(n);
	held_htlcs(n);
}

fn held_buckets(n: u64) {
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
			peer: "02".repeat(33),
			amount_msat: 10_011_000,
			cltv_expiry: 900,
			recorded_secs: 1_800_000_000,
			resolved: false,
			reject_reason: None,
			dialect: Default::default(),
			final_receive: false,
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
			claim_deadline: Some(861),
			superseded: false,
			dialect: Default::default(),
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
	println!("held trampoline buckets, N={n} (one HTLC each), RelayStore over FilesystemStore");
	print_footprint("held bucket", "cache: bucket + HTLC record", n, memory, dir.path());
	println!(
		"   hold:   {:.0} buckets/s written (two fsynced records each); collecting all held: {scan_ms:.1} ms",
		n as f64 / write_s
	);
}

/// Prints the memory (`memory` bytes per record, counted as `counted`) and
/// disk lines for `n` records of `unit` in `dir`.
fn print_footprint(unit: &str, counted: &str, n: u64, memory: f64, dir: &std::path::Path) {
	let (bytes, allocated, files) = disk_usage(dir);
	println!("   memory: {memory:.0} bytes per {unit} ({counted})");
	println!(
		"   disk:   {:.0} bytes per {unit} ({:.0} allocated, {files} files)",
		bytes as f64 / n as f64,
		allocated as f64 / n as f64,
	);
}

struct NoLog;
impl lightning::util::logger::Logger for NoLog {
	fn log(&self, _: lightning::util::logger::Record) {}
}

/// A forward onion for `signer`'s node, as a payer's LSP receives it (so
/// that the registry peels it and keeps its secret, as for a real HTLC).
fn onion_to(signer: &KeysManager, payment_hash: &PaymentHash) -> OnionPacket {
	let node_id = signer.get_node_id(Recipient::Node).expect("node id");
	let payload = OuterPayload::new(OuterHop::Forward {
		short_channel_id: 42,
		amt_to_forward: 10_000_000,
		outgoing_cltv_value: 1_900,
	})
	.encode()
	.expect("payload");
	let session_key = SecretKey::from_slice(&[5; 32]).expect("key");
	let hops = [SphinxHop { node_id, payload }];
	let built =
		onion::build(&Secp256k1::new(), &session_key, &hops, &payment_hash.0, 1300).expect("onion");
	let mut hop_data = [0; 20 * 65];
	hop_data.copy_from_slice(built.packet.hop_payloads());
	OnionPacket {
		version: 0,
		public_key: Ok(*built.packet.public_key()),
		hop_data,
		hmac: *built.packet.hmac(),
	}
}

fn held_htlcs(n: u64) {
	let dir = tempfile::tempdir().expect("tempdir");
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(FilesystemStore::new(dir.path().into()));
	let signer = Arc::new(KeysManager::new(&[7; 32], 1, 1, true));
	let policy = HtlcHoldPolicy {
		max_htlcs: usize::MAX,
		max_htlcs_per_peer: usize::MAX,
		..Default::default()
	};
	let hold = HtlcHold::new(kv, policy, Arc::clone(&signer) as _, Arc::new(NoLog)).expect("hold");
	let secp = Secp256k1::new();
	let payer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[3; 32]).expect("key"));
	let mut add = UpdateAddHTLC {
		channel_id: ChannelId([1; 32]),
		htlc_id: 0,
		amount_msat: 10_011_000,
		payment_hash: PaymentHash([2; 32]),
		cltv_expiry: 2_000,
		skimmed_fee_msat: None,
		onion_routing_packet: onion_to(&signer, &PaymentHash([2; 32])),
		blinding_point: None,
		hold_htlc: Some(()),
	};
	let start = Instant::now();
	for i in 0..n {
		// One payment's onion (its HMAC covers the hash): the registry keys
		// records by HTLC id.
		add.htlc_id = i;
		hold.on_add(payer, &add, 1_000, 72, false);
	}
	let write_s = start.elapsed().as_secs_f64();
	drop(hold);
	// The registry as a restarted node holds it (without the events `on_add`
	// queued for the hold loop's next pass).
	let before = HELD_BYTES.load(Ordering::Relaxed);
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(FilesystemStore::new(dir.path().into()));
	let signer = Arc::new(KeysManager::new(&[7; 32], 1, 1, true));
	let hold = HtlcHold::new(kv, policy, signer, Arc::new(NoLog)).expect("reload");
	let memory = (HELD_BYTES.load(Ordering::Relaxed) - before) as f64 / n as f64;
	let start = Instant::now();
	let listed = hold.list().len();
	let list_ms = start.elapsed().as_secs_f64() * 1e3;
	assert_eq!(listed as u64, n);
	println!("HTLCs held for often-offline payers, N={n}, HtlcHold over FilesystemStore");
	print_footprint("held HTLC", "registry cache entry, loaded", n, memory, dir.path());
	println!(
		"   hold:   {:.0} HTLCs/s recorded (one fsynced record each, onion peeled); listing all: {list_ms:.1} ms",
		n as f64 / write_s
	);
}
