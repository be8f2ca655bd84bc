//! The relay's live metrics: what it earned, what it failed back and refused
//! (by reason and by the code the payer was told), and how long each step of
//! a relayed payment took. `prometheus-client` metrics, owned by the
//! [`RelayCore`](super::RelayCore) and registered (as cheap shared clones)
//! by each scrape of the control interface (`control::metrics`).
//!
//! All of it is in memory and counts from the node's start: nothing here
//! writes to disk, and a bucket settled after a restart has no timings to
//! observe (its steps before the restart are unknown) and is simply not
//! observed. Every label value comes from a fixed set (our own reason and
//! dialect names, the codes of our own failure enum, `other` for a code a
//! downstream node made up), so that neither a payer nor a downstream node
//! can create series.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::dialect::{Dialect, FailReason};
use super::store::BucketId;
use crate::onion::FailureMessage;

/// How many buckets are timed at once; past it a new bucket is not timed (a
/// bound of its own, whatever the relay's limits allow).
pub const MAX_TIMED_BUCKETS: usize = 10_000;

/// Labels of a failure or refusal: dialect, reason, code.
type FailureLabels = [(&'static str, String); 3];

/// Labels of a step histogram.
type StepLabels = [(&'static str, &'static str); 1];

/// The steps of a relayed payment that are timed, as their `step` label.
pub const STEPS: [&str; 3] = ["receive_to_claimable", "claimable_to_sent", "sent_to_settled"];

fn step_histogram() -> Histogram {
	// 1 ms to about 70 minutes (a held payment may wait longer: +Inf).
	Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

/// When a timed bucket reached each step still to be observed.
#[derive(Debug, Default)]
struct Timing {
	/// Its first HTLC was recorded (until it is claimable).
	received: Option<Instant>,
	/// LDK reported it claimable (until the outgoing payment is sent).
	claimable: Option<Instant>,
	/// The outgoing payment was handed to LDK (until it succeeds or fails).
	sent: Option<Instant>,
}

/// The relay's live metrics (see the module documentation).
#[derive(Debug)]
pub struct RelayMetrics {
	fees_msat: Counter,
	failures: Family<FailureLabels, Counter>,
	refusals: Family<FailureLabels, Counter>,
	steps: Family<StepLabels, Histogram, fn() -> Histogram>,
	timings: Mutex<HashMap<BucketId, Timing>>,
}

impl Default for RelayMetrics {
	fn default() -> Self {
		let steps = Family::new_with_constructor(step_histogram as fn() -> Histogram);
		for step in STEPS {
			// Every step exists from the start, at zero.
			drop(steps.get_or_create(&[("step", step)]));
		}
		Self {
			fees_msat: Counter::default(),
			failures: Family::default(),
			refusals: Family::default(),
			steps,
			timings: Mutex::new(HashMap::new()),
		}
	}
}

/// The `code` label of `told` (what the payer got): the BOLT 4 code in hex
/// (`0x2019`), `other` for a code our failure enum does not know (only a
/// downstream node's), `passed_on` (`None`) for a packet from further down
/// the route that we passed on without reading.
pub fn code_label(told: Option<&FailureMessage>) -> String {
	match told {
		None => "passed_on".to_string(),
		Some(FailureMessage::Unknown { .. }) => "other".to_string(),
		Some(message) => format!("{:#06x}", message.code()),
	}
}

fn failure_labels(
	dialect: Dialect, reason: &FailReason, told: Option<&FailureMessage>,
) -> FailureLabels {
	[
		("dialect", dialect.name().to_string()),
		("reason", reason.name().to_string()),
		("code", code_label(told)),
	]
}

impl RelayMetrics {
	fn timings(&self) -> std::sync::MutexGuard<'_, HashMap<BucketId, Timing>> {
		self.timings.lock().unwrap_or_else(|p| p.into_inner())
	}

	fn observe(&self, step: &'static str, since: Instant) {
		self.steps.get_or_create(&[("step", step)]).observe(since.elapsed().as_secs_f64());
	}

	/// Bucket `id` was relayed, bringing `in_msat` in for `out_msat` sent on
	/// (routing fees included): the difference is our fee. Nothing is
	/// counted if the out is unknown or above the in (never from LDK).
	pub(crate) fn relayed(&self, in_msat: u64, out_msat: Option<u64>) {
		if let Some(fee) = out_msat.and_then(|out| in_msat.checked_sub(out)) {
			self.fees_msat.inc_by(fee);
		}
	}

	/// A bucket of a `dialect` payer was failed back for `reason`, the payer
	/// told `told` (`None`: a packet from further down, passed on).
	pub(crate) fn failed(
		&self, dialect: Dialect, reason: &FailReason, told: Option<&FailureMessage>,
	) {
		self.failures.get_or_create(&failure_labels(dialect, reason, told)).inc();
	}

	/// An HTLC of a `dialect` payer was refused at once (before or at
	/// bucketing) for `reason`, the payer told `told`.
	pub(crate) fn refused(&self, dialect: Dialect, reason: &FailReason, told: &FailureMessage) {
		self.refusals.get_or_create(&failure_labels(dialect, reason, Some(told))).inc();
	}

	/// The first HTLC of bucket `id` was recorded now (later ones change
	/// nothing). Called on the message handler's path: one map insert.
	pub(crate) fn received(&self, id: &BucketId) {
		let mut timings = self.timings();
		if timings.len() >= MAX_TIMED_BUCKETS && !timings.contains_key(id) {
			return;
		}
		timings
			.entry(*id)
			.or_insert_with(|| Timing { received: Some(Instant::now()), ..Timing::default() });
	}

	/// LDK reported bucket `id` claimable (or the hold loop looked at it
	/// again: only the first time counts).
	pub(crate) fn claimable(&self, id: &BucketId) {
		let received = {
			let mut timings = self.timings();
			let Some(timing) = timings.get_mut(id) else { return };
			if timing.claimable.is_none() && timing.sent.is_none() {
				timing.claimable = Some(Instant::now());
			}
			timing.received.take()
		};
		if let Some(at) = received {
			self.observe(STEPS[0], at);
		}
	}

	/// The outgoing payment of bucket `id` was handed to LDK.
	pub(crate) fn sent(&self, id: &BucketId) {
		let claimable = {
			let mut timings = self.timings();
			let Some(timing) = timings.get_mut(id) else { return };
			let claimable = timing.claimable.take();
			if claimable.is_some() {
				timing.sent = Some(Instant::now());
			}
			claimable
		};
		if let Some(at) = claimable {
			self.observe(STEPS[1], at);
		}
	}

	/// Bucket `id` is settled (relayed or failed back): its outgoing
	/// payment's time, if it had one, is observed, and its timings go.
	pub(crate) fn settled(&self, id: &BucketId) {
		let sent = self.timings().remove(id).and_then(|timing| timing.sent);
		if let Some(at) = sent {
			self.observe(STEPS[2], at);
		}
	}

	/// Forgets the timings of bucket `id` (its records are gone).
	pub(crate) fn forget(&self, id: &BucketId) {
		self.timings().remove(id);
	}

	/// How many buckets are timed now.
	pub fn timed_buckets(&self) -> usize {
		self.timings().len()
	}

	/// The value of the sample `series` (as encoded, without a prefix) in
	/// a scrape of these metrics alone.
	#[cfg(test)]
	pub(crate) fn sample(&self, series: &str) -> Option<f64> {
		let mut registry = Registry::default();
		self.register(&mut registry);
		let mut text = String::new();
		prometheus_client::encoding::text::encode(&mut text, &registry).ok()?;
		tests::sample(&text, series)
	}

	/// Registers (shared clones of) the metrics in `registry`.
	pub fn register(&self, registry: &mut Registry) {
		registry.register(
			"relay_fees_earned_msat",
			"Fees earned by relayed trampoline payments (in minus out, routing fees paid deducted) since the node started, msat",
			self.fees_msat.clone(),
		);
		registry.register(
			"relay_failures",
			"Trampoline payments failed back since the node started, by payer dialect, reason and the BOLT 4 code the payer was told",
			self.failures.clone(),
		);
		registry.register(
			"relay_refusals",
			"Trampoline HTLCs refused at once (before or at bucketing) since the node started, by payer dialect, reason and code told",
			self.refusals.clone(),
		);
		registry.register(
			"relay_step_seconds",
			"Time each step of a trampoline payment took (receive_to_claimable: first HTLC to claimable; claimable_to_sent: to the outgoing payment, holds included; sent_to_settled: to its success or failure), seconds",
			self.steps.clone(),
		);
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use prometheus_client::encoding::text::encode;

	fn text(metrics: &RelayMetrics) -> String {
		let mut registry = Registry::default();
		metrics.register(&mut registry);
		let mut text = String::new();
		encode(&mut text, &registry).unwrap();
		text
	}

	pub(super) fn sample(text: &str, series: &str) -> Option<f64> {
		text.lines()
			.find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
			.and_then(|v| v.trim().parse().ok())
	}

	#[test]
	fn fees_are_in_minus_out_of_relayed_buckets() {
		let metrics = RelayMetrics::default();
		metrics.relayed(1_002_000, Some(1_000_000));
		metrics.relayed(5_000, Some(4_900));
		// Unknown out, or an out above the in: no fee rather than a wrap.
		metrics.relayed(5_000, None);
		metrics.relayed(5_000, Some(6_000));
		assert_eq!(sample(&text(&metrics), "relay_fees_earned_msat_total"), Some(2_100.0));
	}

	#[test]
	fn failures_and_refusals_count_by_dialect_reason_and_code() {
		let metrics = RelayMetrics::default();
		let told = FailureMessage::TemporaryNodeFailure;
		metrics.failed(Dialect::Legacy, &FailReason::NoLiquidity, Some(&told));
		metrics.failed(Dialect::Legacy, &FailReason::NoLiquidity, Some(&told));
		metrics.failed(Dialect::Spec, &FailReason::DownstreamUnreadable, None);
		// A downstream node's made-up code is `other`, whatever it is.
		for code in [0x1234, 0x4321] {
			let message = FailureMessage::Unknown { code, data: vec![1, 2] };
			metrics.failed(
				Dialect::Legacy,
				&FailReason::NextNodeFailed { message: message.clone() },
				Some(&message),
			);
		}
		metrics.refused(
			Dialect::Spec,
			&FailReason::OverLimits,
			&FailureMessage::TemporaryTrampolineFailure,
		);
		let text = text(&metrics);
		let expect = [
			("relay_failures_total{dialect=\"legacy\",reason=\"no_liquidity\",code=\"0x2002\"}", 2.0),
			("relay_failures_total{dialect=\"spec\",reason=\"downstream_unreadable\",code=\"passed_on\"}", 1.0),
			("relay_failures_total{dialect=\"legacy\",reason=\"next_node_failed\",code=\"other\"}", 2.0),
			("relay_refusals_total{dialect=\"spec\",reason=\"over_limits\",code=\"0x2019\"}", 1.0),
		];
		for (series, value) in expect {
			assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
		}
		assert_eq!(text.matches("relay_failures_total{").count(), 3, "{text}");
	}

	#[test]
	fn each_step_is_observed_once_per_bucket_and_timings_go_at_settle() {
		let metrics = RelayMetrics::default();
		let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
		// Every step exists at zero before anything is observed.
		for step in STEPS {
			let series = format!("relay_step_seconds_count{{step=\"{step}\"}}");
			assert_eq!(sample(&text(&metrics), &series), Some(0.0), "{series}");
		}
		// a: relayed, with a second HTLC, a replayed claimable and a
		// replayed send.
		metrics.received(&a);
		metrics.received(&a);
		metrics.claimable(&a);
		metrics.claimable(&a);
		metrics.sent(&a);
		metrics.sent(&a);
		metrics.settled(&a);
		// b: failed at claimable, never sent.
		metrics.received(&b);
		metrics.claimable(&b);
		metrics.settled(&b);
		// c: not known (a restart): nothing observed, nothing kept.
		metrics.claimable(&c);
		metrics.sent(&c);
		metrics.settled(&c);
		let text = text(&metrics);
		for (step, count) in STEPS.iter().zip([2.0, 1.0, 1.0]) {
			let series = format!("relay_step_seconds_count{{step=\"{step}\"}}");
			assert_eq!(sample(&text, &series), Some(count), "{series} in\n{text}");
		}
		assert!(text.contains("# TYPE relay_step_seconds histogram"), "{text}");
		assert_eq!(metrics.timed_buckets(), 0);
		// A bucket forgotten by the prune pass goes too.
		metrics.received(&c);
		assert_eq!(metrics.timed_buckets(), 1);
		metrics.forget(&c);
		assert_eq!(metrics.timed_buckets(), 0);
	}

	#[test]
	fn timings_are_bounded() {
		let metrics = RelayMetrics::default();
		for n in 0..=MAX_TIMED_BUCKETS {
			let mut id = [0u8; 32];
			id[..8].copy_from_slice(&(n as u64).to_be_bytes());
			metrics.received(&id);
		}
		assert_eq!(metrics.timed_buckets(), MAX_TIMED_BUCKETS);
	}
}
