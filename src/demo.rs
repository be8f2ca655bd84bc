//! `ldk-trampoline demo`: a regtest network on a real bitcoind, channels, and
//! payments of every kind, printed as a timeline.

use std::sync::Arc;
use std::time::Instant;

use crate::node::{Node, NodeError, PaymentRecord, PaymentStatus};
use crate::regtest::{RegtestError, RegtestNetwork, DEADLINE};
use crate::sender::{TrampolineBudget, TrampolineRouteHop};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
	/// The regtest network.
	#[error(transparent)]
	Regtest(#[from] RegtestError),
	/// A node.
	#[error(transparent)]
	Node(#[from] NodeError),
	/// Something expected did not happen in time.
	#[error("timed out waiting for {0}")]
	Timeout(&'static str),
	/// A payment did not succeed.
	#[error("payment {what} did not succeed: {status:?}")]
	Payment {
		/// Which payment.
		what: String,
		/// How it ended.
		status: PaymentStatus,
	},
}

struct Timeline {
	start: Instant,
}

/// `n` with a comma every three digits: `60,011,000`.
fn thousands(n: u64) -> String {
	let digits = n.to_string();
	let mut out = String::with_capacity(digits.len() + digits.len() / 3);
	for (i, digit) in digits.chars().enumerate() {
		if i > 0 && (digits.len() - i).is_multiple_of(3) {
			out.push(',');
		}
		out.push(digit);
	}
	out
}

/// The header of the payment lines ([`Timeline::payment`]).
const PAYMENTS_HEADER: &str =
	" from -> to    kind       recipient got (msat)   payer paid beyond it (msat)  outcome";

impl Timeline {
	fn say(&self, line: impl AsRef<str>) {
		println!("[{:>6.2}s] {}", self.start.elapsed().as_secs_f64(), line.as_ref());
	}

	/// One payment: what the recipient got (the invoice's or offer's
	/// amount) and everything the payer paid on top of it (routing fees and
	/// trampoline fees alike, which LDK counts as part of the amount when
	/// the trampoline is the first hop).
	fn payment(
		&self, from: &str, to: &str, kind: &str, received_msat: u64, record: &PaymentRecord,
	) {
		let paid = record.amount_msat.unwrap_or(0).saturating_add(record.fee_msat.unwrap_or(0));
		let beyond = paid.saturating_sub(received_msat);
		let outcome = match &record.status {
			PaymentStatus::Succeeded => "ok".to_string(),
			PaymentStatus::Failed { reason } => format!("FAILED ({reason})"),
			PaymentStatus::Pending => "pending".to_string(),
		};
		self.say(format!(
			"{from:>5} -> {to:<5} {kind:<10} {:>20}   {:>27}  {outcome}",
			thousands(received_msat),
			thousands(beyond),
		));
	}
}

/// Runs the demo; returns an error (and the caller exits non-zero) if any step fails.
pub async fn run() -> Result<(), DemoError> {
	let timeline = Timeline { start: Instant::now() };
	timeline.say("provisioning and starting bitcoind (regtest)");
	let mut net = tokio::task::spawn_blocking(RegtestNetwork::start)
		.await
		.map_err(|e| RegtestError::Io(e.to_string()))??;
	let alice = net.add_node("alice").await?;
	let bob = net.add_node("bob").await?;
	let carol = net.add_node("carol").await?;
	let dave = net.add_node("dave").await?;
	let nodes = [("alice", &alice), ("bob", &bob), ("carol", &carol), ("dave", &dave)];
	for (name, node) in nodes {
		timeline.say(format!("{name:>5} started: {} on {}", node.node_id(), node.listen_addr()));
	}
	net.fund(&[&alice, &bob, &carol], 1).await?;
	timeline.say(format!(
		"funded alice, bob and carol with a mature coinbase ({} sat each)",
		thousands(alice.balances().onchain.confirmed_sat)
	));

	for (from, to, sat, line) in [
		(&alice, &bob, 2_000_000, "alice -> bob (2,000,000 sat)"),
		(&alice, &bob, 1_000_000, "a second alice -> bob (1,000,000 sat)"),
		(&bob, &carol, 4_000_000, "bob -> carol (4,000,000 sat)"),
	] {
		net.open_channel(from, to, sat, 0).await?;
		timeline.say(format!("channel {line} confirmed and ready"));
	}
	net.wait_for_gossip(&alice, 3).await?;
	timeline.say("alice learned these channels from gossip");
	// Only carol routes over this one: nobody else needs to learn it.
	net.open_channel(&carol, &dave, 1_000_000, 0).await?;
	timeline.say("channel carol -> dave (1,000,000 sat) confirmed and ready");

	timeline.say(PAYMENTS_HEADER);
	let invoice = bob.create_invoice(Some(150_000_000), "demo: direct", 3600)?;
	let record = pay(&alice, alice.pay_invoice(&invoice, None)?, "alice -> bob").await?;
	timeline.payment("alice", "bob", "bolt11", 150_000_000, &record);

	let invoice = carol.create_invoice(Some(250_000_000), "demo: two hops", 3600)?;
	let record = pay(&alice, alice.pay_invoice(&invoice, None)?, "alice -> carol").await?;
	timeline.payment("alice", "carol", "bolt11", 250_000_000, &record);

	// Trampoline: alice picks bob among her peers by his features; bob
	// (running the relay) finds carol.
	let policy = bob.config().trampoline.unwrap_or_default();
	let amount_msat = 60_000_000;
	let fee_msat = policy.fee_msat(amount_msat);
	let trampoline = alice.choose_trampoline(amount_msat)?;
	let invoice = carol.create_invoice(Some(amount_msat), "demo: via trampoline", 3600)?;
	let id = alice.pay_invoice_via_trampoline(
		&invoice,
		trampoline,
		fee_msat,
		policy.cltv_expiry_delta,
	)?;
	let record = pay(&alice, id, "alice -> carol via trampoline bob").await?;
	timeline.payment("alice", "carol", "trampoline", amount_msat, &record);
	timeline.say(format!(
		"        (alice chose trampoline {}; it relayed {} msat for a {} msat fee: {} msat + {} ppm)",
		if trampoline == bob.node_id() { "bob" } else { "?" },
		thousands(amount_msat),
		thousands(fee_msat),
		thousands(u64::from(policy.fee_base_msat)),
		policy.fee_proportional_millionths
	));

	// Two trampolines: bob is told only "carol", carol finds dave.
	let carol_fee_msat = policy.fee_msat(amount_msat);
	let bob_fee_msat = policy.fee_msat(amount_msat + carol_fee_msat);
	let route = [
		TrampolineRouteHop {
			node_id: bob.node_id(),
			fee_msat: bob_fee_msat,
			cltv_expiry_delta: policy.cltv_expiry_delta,
			async_payment: false,
		},
		TrampolineRouteHop {
			node_id: carol.node_id(),
			fee_msat: carol_fee_msat,
			cltv_expiry_delta: policy.cltv_expiry_delta,
			async_payment: false,
		},
	];
	let invoice = dave.create_invoice(Some(amount_msat), "demo: two trampolines", 3600)?;
	let id = alice.pay_invoice_via_trampolines(&invoice, &route)?;
	let record = pay(&alice, id, "alice -> dave via trampolines bob, carol").await?;
	timeline.payment("alice", "dave", "trampoline", amount_msat, &record);
	timeline.say(format!(
		"        (bob kept {} msat and passed carol the inner onion; carol kept {} msat)",
		thousands(bob_fee_msat),
		thousands(carol_fee_msat)
	));

	// Async: dave goes offline; carol, his trampoline, holds alice's payment
	// (claimable, nothing forwarded) until he is back.
	let invoice = dave.create_invoice(Some(amount_msat), "demo: offline recipient", 3600)?;
	let stopped_dave = net.stop(&dave).await?;
	timeline.say("dave went offline");
	let id = alice.pay_invoice_via_trampolines(&invoice, &route)?;
	let held = wait_held(&carol).await?;
	timeline.say(format!(
		"        carol holds {} msat for offline dave (fails it back at height {} if he stays away)",
		thousands(held.amount_msat),
		held.deadline_height
	));
	let dave = net.start_again(stopped_dave).await?;
	timeline.say("dave is back online");
	let record = pay(&alice, id, "alice -> dave while dave was offline").await?;
	timeline.payment("alice", "dave", "held", amount_msat, &record);

	// MPP: more than either alice -> bob channel can carry; alice splits it,
	// bob waits for every part before paying carol.
	let largest_msat = alice
		.channel_manager()
		.list_usable_channels()
		.iter()
		.map(|c| c.next_outbound_htlc_limit_msat)
		.max()
		.unwrap_or(0);
	let big_msat = largest_msat + 100_000_000;
	let big_fee_msat = policy.fee_msat(big_msat);
	let invoice = carol.create_invoice(Some(big_msat), "demo: trampoline MPP", 3600)?;
	let id = alice.pay_invoice_via_trampoline(
		&invoice,
		bob.node_id(),
		big_fee_msat,
		policy.cltv_expiry_delta,
	)?;
	let record = pay(&alice, id, "alice -> carol via bob, split").await?;
	timeline.payment("alice", "carol", "tramp.MPP", big_msat, &record);
	timeline.say(format!(
		"        (more than the {} msat the larger of alice's two channels to bob could send: split over both)",
		thousands(largest_msat)
	));

	// Fee retry: alice offers bob half his fee; he answers NODE|26 with his
	// policy and alice pays again with what it asks, within her budget.
	let invoice = carol.create_invoice(Some(amount_msat), "demo: trampoline fee retry", 3600)?;
	let short = TrampolineRouteHop {
		node_id: bob.node_id(),
		fee_msat: fee_msat / 2,
		cltv_expiry_delta: policy.cltv_expiry_delta,
		async_payment: false,
	};
	let budget = TrampolineBudget {
		max_fee_msat: 2 * fee_msat,
		max_cltv_expiry_delta: u32::from(policy.cltv_expiry_delta),
	};
	let id = alice.pay_invoice_via_trampolines_within(&invoice, &[short], budget)?;
	let record = pay(&alice, id, "alice -> carol via bob after a fee retry").await?;
	timeline.payment("alice", "carol", "trampoline", amount_msat, &record);
	timeline.say(format!(
		"        (alice offered {} msat, bob answered NODE|26 asking {} msat; alice paid again within her {} msat budget)",
		thousands(fee_msat / 2),
		thousands(fee_msat),
		thousands(2 * fee_msat)
	));
	timeline.say(
		"        NODE|26 is BOLT 4's trampoline_fee_or_expiry_insufficient (0x201a): the trampoline's answer carries the fee and CLTV delta it asks for",
	);

	let offer = alice.create_offer(Some(40_000_000), "demo: refund")?;
	let record = pay(&bob, bob.pay_offer(&offer, None)?, "bob -> alice").await?;
	timeline.payment("bob", "alice", "bolt12", 40_000_000, &record);

	let offer = alice.create_offer(None, "demo: tip jar")?;
	let record = pay(&carol, carol.pay_offer(&offer, Some(12_345_000))?, "carol -> alice").await?;
	timeline.payment("carol", "alice", "bolt12", 12_345_000, &record);

	let nodes = [("alice", &alice), ("bob", &bob), ("carol", &carol), ("dave", &dave)];
	for (name, node) in nodes {
		let balances = node.balances();
		timeline.say(format!(
			"{name:>5} balance: {:>13} sat on-chain, {:>11} sat in channels",
			thousands(balances.onchain.confirmed_sat),
			thousands(balances.lightning_sat)
		));
	}
	for (_, node) in nodes {
		node.stop().await?;
	}
	timeline.say("demo complete: every payment succeeded");
	Ok(())
}

/// Waits until `trampoline` holds a payment for an offline next node.
async fn wait_held(trampoline: &Node) -> Result<crate::relay::HeldBucket, DemoError> {
	let deadline = Instant::now() + DEADLINE;
	loop {
		let held = trampoline.trampoline().map(|relay| relay.core().held()).unwrap_or_default();
		if let Some(bucket) = held.into_iter().next() {
			return Ok(bucket);
		}
		if Instant::now() > deadline {
			return Err(DemoError::Timeout("carol holding the payment for dave"));
		}
		tokio::time::sleep(std::time::Duration::from_millis(50)).await;
	}
}

async fn pay(
	node: &Arc<Node>, id: lightning::ln::channelmanager::PaymentId, what: &str,
) -> Result<PaymentRecord, DemoError> {
	let record = node.wait_for_payment(id, DEADLINE).await?;
	if record.status != PaymentStatus::Succeeded {
		return Err(DemoError::Payment { what: what.to_string(), status: record.status });
	}
	Ok(record)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn amounts_get_a_comma_every_three_digits() {
		assert_eq!(thousands(0), "0");
		assert_eq!(thousands(999), "999");
		assert_eq!(thousands(1_000), "1,000");
		assert_eq!(thousands(60_011_000), "60,011,000");
		assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
	}
}
