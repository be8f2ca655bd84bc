//! `ldk-trampoline bench`: trampoline payments against plain source-routed
//! payments over the same regtest topology, wallet -> trampoline -> recipient
//! on a real bitcoind.
//!
//! Each kind is measured twice: sequentially (latency of each payment, from
//! the send to LDK's `PaymentSent`) and as a concurrent batch (payments per
//! second, at most [`MAX_IN_FLIGHT`] at a time). Plain payments are
//! source-routed by the wallet through the trampoline node; trampoline
//! payments give the trampoline the invoice and its policy's fee.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lightning::util::logger::Level;
use lightning_invoice::Bolt11Invoice;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::node::{Node, NodeError, PaymentStatus};
use crate::regtest::{RegtestError, RegtestNetwork, DEADLINE};
use crate::relay::TrampolinePolicy;

/// What each payment pays the recipient.
pub const AMOUNT_MSAT: u64 = 5_000_000;
/// The most payments of a concurrent batch in flight at once (below LDK's 50
/// HTLCs per channel direction, with room for the trampoline's own).
pub const MAX_IN_FLIGHT: usize = 10;
/// The most payments of each kind a run may ask for (the channels are sized
/// for it).
pub const MAX_PAYMENTS: usize = 200;
const CHANNEL_SAT: u64 = 10_000_000;

/// Why the bench failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
	/// The regtest network.
	#[error(transparent)]
	Regtest(#[from] RegtestError),
	/// A node.
	#[error(transparent)]
	Node(#[from] NodeError),
	/// A payment did not succeed.
	#[error("{kind} payment {index} did not succeed: {status:?}")]
	Payment {
		/// Plain or trampoline.
		kind: Kind,
		/// Which payment of its series (0 is the warm-up).
		index: usize,
		/// How it ended.
		status: PaymentStatus,
	},
	/// The number of payments asked for is out of range.
	#[error("--payments must be between 1 and {max}, not {asked}")]
	Payments {
		/// What was asked.
		asked: usize,
		/// The most allowed ([`MAX_PAYMENTS`]).
		max: usize,
	},
	/// A payment task died.
	#[error("a payment task failed: {0}")]
	Task(String),
}

/// The two kinds of payment compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
	/// Source-routed by the wallet through the trampoline node.
	Plain,
	/// Through the trampoline node as a trampoline.
	Trampoline,
}

impl std::fmt::Display for Kind {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str(match self {
			Kind::Plain => "plain",
			Kind::Trampoline => "trampoline",
		})
	}
}

/// The measurements of one kind of payment.
#[derive(Clone, Debug)]
pub struct Series {
	/// Latency of each sequential payment, in the order sent.
	pub latencies: Vec<Duration>,
	/// How many payments the concurrent batch made.
	pub batch_payments: usize,
	/// How long the concurrent batch took, first send to last `PaymentSent`.
	pub batch_elapsed: Duration,
}

impl Series {
	/// The latency at quantile `q` (0 to 1, nearest rank).
	pub fn latency_quantile(&self, q: f64) -> Duration {
		let mut sorted = self.latencies.clone();
		sorted.sort();
		if sorted.is_empty() {
			return Duration::ZERO;
		}
		let rank = (q * sorted.len() as f64).ceil() as usize;
		sorted[rank.clamp(1, sorted.len()) - 1]
	}

	/// The median latency.
	pub fn median(&self) -> Duration {
		self.latency_quantile(0.5)
	}

	/// Payments per second of the concurrent batch.
	pub fn payments_per_sec(&self) -> f64 {
		self.batch_payments as f64 / self.batch_elapsed.as_secs_f64().max(f64::EPSILON)
	}
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct BenchReport {
	/// Plain source-routed payments.
	pub plain: Series,
	/// Trampoline payments.
	pub trampoline: Series,
}

impl BenchReport {
	/// Median trampoline latency over median plain latency.
	pub fn latency_ratio(&self) -> f64 {
		self.trampoline.median().as_secs_f64() / self.plain.median().as_secs_f64().max(f64::EPSILON)
	}

	/// The table and the summary line the command prints.
	pub fn table(&self) -> String {
		let ms = |d: Duration| d.as_secs_f64() * 1e3;
		let mut out = format!(
			"{:<11} {:>9} {:>11} {:>9} {:>11}\n",
			"", "payments", "median ms", "p90 ms", "payments/s"
		);
		for (kind, series) in [(Kind::Plain, &self.plain), (Kind::Trampoline, &self.trampoline)] {
			out.push_str(&format!(
				"{:<11} {:>9} {:>11.1} {:>9.1} {:>11.1}\n",
				kind.to_string(),
				series.latencies.len(),
				ms(series.median()),
				ms(series.latency_quantile(0.9)),
				series.payments_per_sec()
			));
		}
		out.push_str(&self.summary_line());
		out
	}

	/// `trampoline/plain latency ratio: X.XX; payments/s: plain A, trampoline B`.
	pub fn summary_line(&self) -> String {
		format!(
			"trampoline/plain latency ratio: {:.2}; payments/s: plain {:.1}, trampoline {:.1}",
			self.latency_ratio(),
			self.plain.payments_per_sec(),
			self.trampoline.payments_per_sec()
		)
	}
}

struct Topology {
	wallet: Arc<Node>,
	trampoline: Arc<Node>,
	recipient: Arc<Node>,
	policy: TrampolinePolicy,
}

impl Topology {
	fn invoice(&self, kind: Kind, index: usize) -> Result<Bolt11Invoice, NodeError> {
		self.recipient.create_invoice(Some(AMOUNT_MSAT), &format!("bench {kind} {index}"), 3600)
	}

	/// Pays `invoice` and waits for the outcome; an error unless it succeeded.
	async fn pay(
		&self, kind: Kind, index: usize, invoice: &Bolt11Invoice,
	) -> Result<(), BenchError> {
		let id = match kind {
			Kind::Plain => self.wallet.pay_invoice(invoice, None)?,
			Kind::Trampoline => self.wallet.pay_invoice_via_trampoline(
				invoice,
				self.trampoline.node_id(),
				self.policy.fee_msat(AMOUNT_MSAT),
				self.policy.cltv_expiry_delta,
			)?,
		};
		let record = self.wallet.wait_for_payment(id, DEADLINE).await?;
		match record.status {
			PaymentStatus::Succeeded => Ok(()),
			status => Err(BenchError::Payment { kind, index, status }),
		}
	}

	/// Pays `count` fresh invoices concurrently, at most [`MAX_IN_FLIGHT`] at a
	/// time; returns how long it took from the first send.
	async fn batch(self: &Arc<Self>, kind: Kind, count: usize) -> Result<Duration, BenchError> {
		let mut invoices = Vec::with_capacity(count);
		for index in 1..=count {
			invoices.push(self.invoice(kind, index)?);
		}
		let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
		let mut tasks = JoinSet::new();
		let start = Instant::now();
		for (index, invoice) in (1..).zip(invoices) {
			let permit = Arc::clone(&slots)
				.acquire_owned()
				.await
				.map_err(|e| BenchError::Task(e.to_string()))?;
			let topology = Arc::clone(self);
			tasks.spawn(async move {
				let result = topology.pay(kind, index, &invoice).await;
				drop(permit);
				result
			});
		}
		while let Some(result) = tasks.join_next().await {
			result.map_err(|e| BenchError::Task(e.to_string()))??;
		}
		Ok(start.elapsed())
	}
}

fn say(start: Instant, line: impl AsRef<str>) {
	println!("[{:>6.2}s] {}", start.elapsed().as_secs_f64(), line.as_ref());
}

/// Runs the bench with `payments` payments of each kind in each phase, printing
/// progress and the result table; an error if any payment fails.
pub async fn run(payments: usize) -> Result<BenchReport, BenchError> {
	if payments == 0 || payments > MAX_PAYMENTS {
		return Err(BenchError::Payments { asked: payments, max: MAX_PAYMENTS });
	}
	let start = Instant::now();
	say(start, "provisioning and starting bitcoind (regtest)");
	let mut net = tokio::task::spawn_blocking(RegtestNetwork::start)
		.await
		.map_err(|e| RegtestError::Io(e.to_string()))??;
	let mut nodes = Vec::new();
	for name in ["wallet", "trampoline", "recipient"] {
		// Every harness node runs the plugin; trace logging would weigh on the
		// timings, so the nodes log as an operator's would.
		let mut config = net.node_config(name);
		config.log_level = Level::Info;
		nodes.push(net.add_node_with(config).await?);
	}
	let [wallet, trampoline, recipient] = <[Arc<Node>; 3]>::try_from(nodes)
		.map_err(|_| RegtestError::Io("three nodes expected".into()))?;
	net.fund(&[&wallet, &trampoline], 1).await?;
	net.open_channel(&wallet, &trampoline, CHANNEL_SAT, 0).await?;
	net.open_channel(&trampoline, &recipient, CHANNEL_SAT, 0).await?;
	// Plain payments are source-routed: the wallet needs both channels.
	net.wait_for_gossip(&wallet, 2).await?;
	let policy = trampoline.config().trampoline.unwrap_or_default();
	say(
		start,
		format!(
			"wallet -> trampoline -> recipient ready ({CHANNEL_SAT} sat channels); trampoline fee {} msat + {} ppm",
			policy.fee_base_msat, policy.fee_proportional_millionths
		),
	);
	let topology = Arc::new(Topology { wallet, trampoline, recipient, policy });

	// One untimed payment of each kind first (first routes, first buckets).
	for kind in [Kind::Plain, Kind::Trampoline] {
		topology.pay(kind, 0, &topology.invoice(kind, 0)?).await?;
	}
	say(start, format!("warm-up done; {payments} sequential payments of each kind, interleaved"));
	let mut latencies = [Vec::new(), Vec::new()];
	for index in 1..=payments {
		for (slot, kind) in [Kind::Plain, Kind::Trampoline].into_iter().enumerate() {
			let invoice = topology.invoice(kind, index)?;
			let sent = Instant::now();
			topology.pay(kind, index, &invoice).await?;
			latencies[slot].push(sent.elapsed());
		}
	}
	say(start, format!("{payments} concurrent payments of each kind, {MAX_IN_FLIGHT} in flight"));
	let plain_batch = topology.batch(Kind::Plain, payments).await?;
	let trampoline_batch = topology.batch(Kind::Trampoline, payments).await?;
	let [plain, tramp] = latencies;
	let report = BenchReport {
		plain: Series { latencies: plain, batch_payments: payments, batch_elapsed: plain_batch },
		trampoline: Series {
			latencies: tramp,
			batch_payments: payments,
			batch_elapsed: trampoline_batch,
		},
	};
	say(start, "done: every payment succeeded");
	println!("{}", report.table());
	for node in [&topology.wallet, &topology.trampoline, &topology.recipient] {
		node.stop().await?;
	}
	Ok(report)
}
