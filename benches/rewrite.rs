//! Per-HTLC cost of the trampoline wrapper, against LDK's own onion peeling.
//!
//! * `trampoline`: the inbound rewrite of a legacy trampoline HTLC as a wallet
//!   sends it (outer one-hop onion with the trampoline onion in TLV 66100):
//!   peel both onions, record the HTLC and its bucket, build the one-hop onion
//!   handed to LDK. Against `peel_payment_onion` of the same original HTLC.
//! * `plain`: what the wrapper costs on an ordinary final HTLC (peel the outer
//!   onion, see no trampoline, pass it through), against `peel_payment_onion`.
//!
//! The rewrite is measured with an in-memory store (the CPU cost) and with
//! LDK's `FilesystemStore` (what the reference node uses: each record is
//! written and synced before the HTLC goes on). `cargo bench` prints the
//! ratios after criterion's report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use criterion::{BatchSize, Criterion};
use ldk_trampoline::handler::arrivals::{HtlcArrivals, MAX_ARRIVALS_PER_PEER};
use ldk_trampoline::handler::rewrite_update_add;
use ldk_trampoline::onion::{OuterHop, PaymentData};
use ldk_trampoline::relay::{RelayCore, RelayLimits, TrampolinePolicy};
use ldk_trampoline::testkit::{
	invoice, onion_htlc, trampoline_htlc, HtlcShape, MemoryStore, NoLogger, StandInNode,
};
use lightning::ln::msgs::UpdateAddHTLC;
use lightning::ln::onion_payment::peel_payment_onion;
use lightning::ln::types::ChannelId;
use lightning::sign::{KeysManager, NodeSigner};
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning::util::persist::KVStoreSync;
use lightning_persister::fs_store::FilesystemStore;

/// The trampoline's height when the HTLCs arrive.
const HEIGHT: u32 = 1_000;
const AMOUNT_MSAT: u64 = 50_000_000;

struct Setup {
	keys: Arc<KeysManager>,
	trampoline: StandInNode,
	recipient_key: SecretKey,
	/// The wallet whose channel every HTLC arrives on.
	payer: PublicKey,
	secp: Secp256k1<bitcoin::secp256k1::All>,
	htlc_id: Mutex<u64>,
}

impl Setup {
	fn new() -> Self {
		let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
		let keys = Arc::new(KeysManager::new(&[42; 32], now, 0, true));
		let trampoline = StandInNode::new(&keys, now);
		let recipient_key = SecretKey::from_slice(&[7; 32]).expect("key");
		let secp = Secp256k1::new();
		let payer =
			PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[9; 32]).expect("key"));
		Self { keys, trampoline, recipient_key, payer, secp, htlc_id: Mutex::new(0) }
	}

	fn core(&self, kv: Arc<dyn KVStoreSync + Send + Sync>) -> RelayCore {
		RelayCore::new(
			Arc::clone(&self.keys) as Arc<dyn NodeSigner + Send + Sync>,
			kv,
			TrampolinePolicy::default(),
			RelayLimits::default(),
			Arc::new(NoLogger),
		)
		.expect("relay core")
	}

	/// Where the next HTLC arrives: the wallet's channel, a fresh HTLC id.
	fn shape(&self) -> HtlcShape {
		let htlc_id = {
			let mut id = self.htlc_id.lock().unwrap();
			*id += 1;
			*id
		};
		HtlcShape {
			channel_id: ChannelId([1; 32]),
			htlc_id,
			amount_msat: AMOUNT_MSAT + 10_000,
			cltv_expiry: HEIGHT + 400,
		}
	}

	/// A legacy trampoline payment for a fresh BOLT 11 invoice, as
	/// `sender::pay_invoice_via_trampoline` and the wallet's handler send it.
	fn trampoline_htlc(&self) -> UpdateAddHTLC {
		let (invoice, _) = invoice(&self.secp, &self.recipient_key, AMOUNT_MSAT);
		let node_id = self.trampoline.node_id;
		trampoline_htlc(&self.secp, node_id, &invoice, 10_000, HEIGHT, &self.shape())
	}

	/// An ordinary final HTLC paying the trampoline node itself.
	fn plain_htlc(&self) -> UpdateAddHTLC {
		let amount = AMOUNT_MSAT + 10_000;
		onion_htlc(
			&self.secp,
			self.trampoline.node_id,
			PaymentHash(rand::random()),
			OuterHop::Receive {
				amt_to_forward: amount,
				outgoing_cltv_value: HEIGHT + 400,
				payment_data: Some(PaymentData {
					payment_secret: PaymentSecret(rand::random()),
					total_msat: amount,
				}),
				payment_metadata: None,
				keysend_preimage: None,
			},
			&self.shape(),
		)
	}

	fn ldk_peel(&self, msg: &UpdateAddHTLC) {
		let info = peel_payment_onion(msg, &*self.keys, &NoLogger, &self.secp, HEIGHT, false);
		assert!(info.is_ok(), "LDK refused the HTLC: {:?}", info.err().map(|e| e.msg));
	}
}

/// Mean time per call of `run`, each call on a fresh input from `make`, with
/// `make` outside the timing (for the summary; criterion reports the detail).
fn mean<I, O>(samples: u32, make: impl Fn() -> I, run: impl Fn(I) -> O) -> Duration {
	let inputs: Vec<I> = (0..samples).map(|_| make()).collect();
	let start = Instant::now();
	for input in inputs {
		std::hint::black_box(run(input));
	}
	start.elapsed() / samples
}

fn main() {
	let setup = Setup::new();
	// The partial-payment tracker the handler feeds every add, with a
	// peer's share full, as on a busy node; the notes measured are another
	// peer's (inserts until its share is full, then refusals).
	let arrivals = HtlcArrivals::default();
	let other = PublicKey::from_secret_key(&setup.secp, &setup.recipient_key);
	for id in 0..MAX_ARRIVALS_PER_PEER as u64 {
		arrivals.note(setup.payer, ChannelId([8; 32]), id, None);
	}
	let memory = setup.core(Arc::new(MemoryStore::default()));
	let dir = tempfile::tempdir().expect("tempdir");
	let fs = setup.core(Arc::new(FilesystemStore::new(dir.path().to_path_buf())));

	// The HTLCs are what the bench claims they are.
	let sample = setup.trampoline_htlc();
	assert!(rewrite_update_add(&memory, &setup.trampoline, &setup.payer, &sample).is_some());
	setup.ldk_peel(&sample);
	let sample = setup.plain_htlc();
	assert!(rewrite_update_add(&memory, &setup.trampoline, &setup.payer, &sample).is_none());
	setup.ldk_peel(&sample);

	let mut c = Criterion::default().configure_from_args();
	{
		let mut group = c.benchmark_group("trampoline_htlc");
		group.bench_function("ldk_peel_payment_onion", |b| {
			b.iter_batched(
				|| setup.trampoline_htlc(),
				|m| setup.ldk_peel(&m),
				BatchSize::SmallInput,
			)
		});
		group.bench_function("rewrite_memory_store", |b| {
			b.iter_batched(
				|| setup.trampoline_htlc(),
				|m| rewrite_update_add(&memory, &setup.trampoline, &setup.payer, &m),
				BatchSize::SmallInput,
			)
		});
		group.sample_size(10).measurement_time(Duration::from_secs(10));
		group.bench_function("rewrite_filesystem_store", |b| {
			b.iter_batched(
				|| setup.trampoline_htlc(),
				|m| rewrite_update_add(&fs, &setup.trampoline, &setup.payer, &m),
				BatchSize::SmallInput,
			)
		});
		group.finish();
	}
	{
		let mut group = c.benchmark_group("plain_htlc");
		group.bench_function("ldk_peel_payment_onion", |b| {
			b.iter_batched(|| setup.plain_htlc(), |m| setup.ldk_peel(&m), BatchSize::SmallInput)
		});
		group.bench_function("wrapper_pass_through", |b| {
			b.iter_batched(
				|| setup.plain_htlc(),
				|m| rewrite_update_add(&memory, &setup.trampoline, &setup.payer, &m),
				BatchSize::SmallInput,
			)
		});
		let next_id = std::cell::Cell::new(0u64);
		group.bench_function("arrival_noted", |b| {
			b.iter(|| {
				next_id.set(next_id.get().wrapping_add(1));
				arrivals.note(other, ChannelId([7; 32]), next_id.get(), Some(10_000));
			})
		});
		group.finish();
	}
	c.final_summary();

	// The ratios, from a run of our own (criterion's estimates are in
	// target/criterion/), only under `cargo bench` (`--bench`, and not
	// `--test` or `--list`).
	let args: Vec<String> = std::env::args().collect();
	let has = |flag: &str| args.iter().any(|a| a == flag);
	if !has("--bench") || has("--test") || has("--list") {
		return;
	}
	let n = 500;
	let peel_t = mean(n, || setup.trampoline_htlc(), |m| setup.ldk_peel(&m));
	let rewrite_mem = mean(
		n,
		|| setup.trampoline_htlc(),
		|m| rewrite_update_add(&memory, &setup.trampoline, &setup.payer, &m),
	);
	let rewrite_fs = mean(
		50,
		|| setup.trampoline_htlc(),
		|m| rewrite_update_add(&fs, &setup.trampoline, &setup.payer, &m),
	);
	let peel_p = mean(n, || setup.plain_htlc(), |m| setup.ldk_peel(&m));
	let pass = mean(
		n,
		|| setup.plain_htlc(),
		|m| rewrite_update_add(&memory, &setup.trampoline, &setup.payer, &m),
	);
	let next = std::cell::Cell::new(u64::MAX / 2);
	let noted = mean(
		n,
		|| {
			next.set(next.get().wrapping_add(1));
			next.get()
		},
		|id| arrivals.note(other, ChannelId([7; 32]), id, Some(10_000)),
	);
	let us = |d: Duration| d.as_secs_f64() * 1e6;
	let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
	println!();
	println!("per-HTLC cost (mean of {n} fresh HTLCs; LDK = peel_payment_onion of the same HTLC)");
	println!("{:<44} {:>10} {:>10} {:>7}", "", "ours (us)", "LDK (us)", "ratio");
	for (what, ours, ldk) in [
		("trampoline HTLC: rewrite, memory store", rewrite_mem, peel_t),
		("trampoline HTLC: rewrite, FilesystemStore", rewrite_fs, peel_t),
		("plain HTLC: wrapper pass-through", pass, peel_p),
		("any HTLC: its arrival noted (tracker alone)", noted, peel_p),
	] {
		println!("{what:<44} {:>10.1} {:>10.1} {:>7.2}", us(ours), us(ldk), ratio(ours, ldk));
	}
}
