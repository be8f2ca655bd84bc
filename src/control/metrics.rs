//! `GET /metrics`: the node's state in the Prometheus text format
//! (OpenMetrics, encoded by the `prometheus-client` crate), behind the
//! control interface's authentication (either token; see [`super::auth`]).
//!
//! Each scrape reads the node's current figures into a fresh registry:
//! payments by direction and state, the relay's buckets by stage and what
//! it has relayed (count, failures, volume, payers by dialect), HTLCs held
//! for often-offline payers (count and value), and the static invoice
//! server's store and counters. Counters are the node's own since its
//! start (the relay's bucket counts survive restarts: they come from its
//! store). Beside these figures it registers (shared clones of) the relay's
//! live metrics, [`RelayMetrics`]: fees earned, failures and refusals by
//! reason and code, step latency histograms (in memory, from the node's
//! start).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::htlc_hold::HeldHtlcSummary;
use crate::node::{Node, PaymentDirection, PaymentRecord, PaymentStatus};
use crate::relay::{RelayMetrics, RelayStats};
use crate::static_invoices::StaticInvoiceStats;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one scrape reports.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
	/// Every payment the node knows.
	pub payments: Vec<PaymentRecord>,
	/// The relay's figures, when it relays.
	pub relay: Option<RelayStats>,
	/// HTLCs held for often-offline payers.
	pub held_htlcs: Vec<HeldHtlcSummary>,
	/// Static invoices stored and the server's counters, when it serves them.
	pub static_invoices: Option<(usize, StaticInvoiceStats)>,
	/// The relay's live metrics, when it relays.
	pub relay_metrics: Option<Arc<RelayMetrics>>,
}

impl Snapshot {
	/// What `node` reports now.
	pub fn of(node: &Node) -> Self {
		Self {
			payments: node.list_payments(),
			relay: node.trampoline().map(|relay| relay.core().stats()),
			held_htlcs: node.list_held_htlcs(),
			static_invoices: node
				.static_invoice_server()
				.map(|server| (server.list().len(), server.core().stats())),
			relay_metrics: node.trampoline().map(|relay| Arc::clone(relay.core().metrics())),
		}
	}
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
	pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn gauge(value: u64) -> Gauge {
	let gauge = Gauge::default();
	gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
	gauge
}

fn counter(value: u64) -> Counter {
	let counter = Counter::default();
	counter.inc_by(value);
	counter
}

/// The text of one scrape of `snapshot`.
pub fn render(snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
	let mut registry = Registry::with_prefix("ldk_trampoline");

	let payments = Family::<Labels, Gauge>::default();
	for direction in ["inbound", "outbound"] {
		for state in ["pending", "succeeded", "failed"] {
			// Every series exists, at zero too, so that rates start from 0.
			payments.get_or_create(&labels(&[("direction", direction), ("state", state)])).set(0);
		}
	}
	for payment in &snapshot.payments {
		let direction = match payment.direction {
			PaymentDirection::Inbound => "inbound",
			PaymentDirection::Outbound => "outbound",
		};
		let state = match payment.status {
			PaymentStatus::Pending => "pending",
			PaymentStatus::Succeeded => "succeeded",
			PaymentStatus::Failed { .. } => "failed",
		};
		payments.get_or_create(&labels(&[("direction", direction), ("state", state)])).inc();
	}
	registry.register("payments", "Payments the node knows, by direction and state", payments);

	if let Some(relay) = &snapshot.relay {
		let buckets = Family::<Labels, Gauge>::default();
		for (stage, count) in
			[("receiving", relay.receiving), ("held", relay.held), ("sending", relay.sending)]
		{
			buckets.get_or_create(&labels(&[("stage", stage)])).set(count as i64);
		}
		registry.register(
			"relay_buckets",
			"Incoming trampoline payments not settled yet, by stage",
			buckets,
		);
		registry.register(
			"relay_relayed",
			"Trampoline payments relayed (outgoing payment succeeded, incoming claimed)",
			counter(relay.relayed as u64),
		);
		registry.register(
			"relay_failed",
			"Trampoline payments failed back to the payer",
			counter(relay.failed as u64),
		);
		registry.register(
			"relay_relayed_in_msat",
			"Incoming amount of the relayed trampoline payments, msat",
			counter(relay.relayed_in_msat),
		);
		let dialects = Family::<Labels, Counter>::default();
		dialects.get_or_create(&labels(&[("dialect", "spec")])).inc_by(relay.spec as u64);
		dialects.get_or_create(&labels(&[("dialect", "legacy")])).inc_by(relay.legacy as u64);
		registry.register(
			"relay_payers",
			"Incoming trampoline payments by the dialect their payer spoke",
			dialects,
		);
	}
	if let Some(metrics) = &snapshot.relay_metrics {
		metrics.register(&mut registry);
	}

	registry.register(
		"held_htlcs",
		"HTLCs held for often-offline payers until their recipient releases them",
		gauge(snapshot.held_htlcs.len() as u64),
	);
	let held_msat = snapshot.held_htlcs.iter().map(|h| h.amount_msat).sum();
	registry.register("held_htlcs_msat", "Value of the HTLCs held, msat", gauge(held_msat));

	if let Some((stored, stats)) = &snapshot.static_invoices {
		registry.register(
			"static_invoices_stored",
			"Static invoices stored for async recipients",
			gauge(*stored as u64),
		);
		let outcomes = Family::<Labels, Counter>::default();
		for (outcome, count) in [
			("stored", stats.stored),
			("refused", stats.refused),
			("served", stats.served),
			("not_found", stats.not_found),
			("rate_limited", stats.rate_limited),
			("evicted", stats.evicted),
			("store_error", stats.store_errors),
		] {
			outcomes.get_or_create(&labels(&[("outcome", outcome)])).inc_by(count);
		}
		registry.register(
			"static_invoice_events",
			"What the static invoice server did since the node started",
			outcomes,
		);
	}

	let mut text = String::new();
	encode(&mut text, &registry)?;
	Ok(text)
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::relay::{Dialect, FailReason};

	fn payment(direction: PaymentDirection, status: PaymentStatus) -> PaymentRecord {
		PaymentRecord {
			id: "00".into(),
			payment_hash: None,
			direction,
			amount_msat: Some(1),
			fee_msat: None,
			status,
			preimage: None,
			kind: "bolt11".into(),
			created_at_ms: 0,
		}
	}

	/// Every sample of `text`, parsed by `prometheus-parse`; panics on a line
	/// it does not read (other than OpenMetrics' `# EOF` and `# UNIT`).
	pub(crate) fn parse(text: &str) -> Vec<prometheus_parse::Sample> {
		use prometheus_parse::LineInfo;
		for line in text.lines() {
			let ignored = matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty);
			assert!(!ignored || line == "# EOF", "unparsed line {line:?}");
		}
		let lines = text.lines().map(|l| Ok(l.to_string()));
		prometheus_parse::Scrape::parse(lines).expect("parses").samples
	}

	/// The value of the sample `series` (name and labels as encoded).
	fn sample(text: &str, series: &str) -> Option<f64> {
		text.lines()
			.find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
			.and_then(|v| v.trim().parse().ok())
	}

	#[test]
	fn a_scrape_reports_every_figure_in_openmetrics_text() {
		let snapshot = Snapshot {
			payments: vec![
				payment(PaymentDirection::Outbound, PaymentStatus::Succeeded),
				payment(PaymentDirection::Outbound, PaymentStatus::Succeeded),
				payment(PaymentDirection::Inbound, PaymentStatus::Failed { reason: "x".into() }),
			],
			relay: Some(RelayStats {
				receiving: 1,
				held: 2,
				sending: 0,
				relayed: 5,
				failed: 3,
				relayed_in_msat: 7_000,
				spec: 6,
				legacy: 2,
			}),
			held_htlcs: Vec::new(),
			static_invoices: Some((4, StaticInvoiceStats { served: 9, ..Default::default() })),
			relay_metrics: Some(Arc::default()),
		};
		let metrics = snapshot.relay_metrics.as_ref().unwrap();
		metrics.relayed(7_000, Some(6_500));
		let told = crate::onion::FailureMessage::TemporaryTrampolineFailure;
		metrics.failed(Dialect::Spec, &FailReason::NoLiquidity, Some(&told));
		metrics.refused(Dialect::Legacy, &FailReason::OverLimits, &told);
		let text = render(&snapshot).unwrap();
		assert!(text.ends_with("# EOF\n"), "{text}");
		let expect = [
			("ldk_trampoline_payments{direction=\"outbound\",state=\"succeeded\"}", 2.0),
			("ldk_trampoline_payments{direction=\"inbound\",state=\"failed\"}", 1.0),
			("ldk_trampoline_payments{direction=\"outbound\",state=\"pending\"}", 0.0),
			("ldk_trampoline_relay_buckets{stage=\"held\"}", 2.0),
			("ldk_trampoline_relay_relayed_total", 5.0),
			("ldk_trampoline_relay_failed_total", 3.0),
			("ldk_trampoline_relay_relayed_in_msat_total", 7_000.0),
			("ldk_trampoline_relay_payers_total{dialect=\"legacy\"}", 2.0),
			("ldk_trampoline_held_htlcs", 0.0),
			("ldk_trampoline_static_invoices_stored", 4.0),
			("ldk_trampoline_static_invoice_events_total{outcome=\"served\"}", 9.0),
			("ldk_trampoline_relay_fees_earned_msat_total", 500.0),
			(
				"ldk_trampoline_relay_failures_total{dialect=\"spec\",reason=\"no_liquidity\",code=\"0x2019\"}",
				1.0,
			),
			(
				"ldk_trampoline_relay_refusals_total{dialect=\"legacy\",reason=\"over_limits\",code=\"0x2019\"}",
				1.0,
			),
			("ldk_trampoline_relay_step_seconds_count{step=\"sent_to_settled\"}", 0.0),
		];
		for (series, value) in expect {
			assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
		}
		// Every sample line is `name{labels} value` under a TYPE of its family.
		for line in text.lines().filter(|l| !l.starts_with('#')) {
			let (series, value) = line.rsplit_once(' ').expect(line);
			assert!(value.parse::<f64>().is_ok(), "{line}");
			let family = series.split('{').next().unwrap();
			let base = ["_total", "_bucket", "_count", "_sum"]
				.iter()
				.find_map(|suffix| family.strip_suffix(suffix))
				.unwrap_or(family);
			assert!(text.contains(&format!("# TYPE {base} ")), "{line}");
		}
		// And a parser reads every sample (histograms as one sample each).
		let parsed = parse(&text);
		let fees =
			parsed.iter().find(|s| s.metric == "ldk_trampoline_relay_fees_earned_msat_total");
		assert!(
			matches!(fees.map(|s| &s.value), Some(prometheus_parse::Value::Untyped(v)) if *v == 500.0),
			"{fees:?}"
		);
		let steps: Vec<_> =
			parsed.iter().filter(|s| s.metric == "ldk_trampoline_relay_step_seconds").collect();
		assert_eq!(steps.len(), 3, "{steps:?}");
		// Without a relay or a server, their families are absent.
		let bare = render(&Snapshot::default()).unwrap();
		assert!(!bare.contains("relay_") && !bare.contains("static_invoice"), "{bare}");
	}
}
