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

impl Timeline {
	fn say(&self, line: impl AsRef<str>) {
		println!("[{:>6.2}s] {}", self.start.elapsed().as_secs_f64(), line.as_ref());
	}

	fn payment(&self, from: &str, to: &str, kind: &str, record: &PaymentRecord) {
		let amount = record.amount_msat.unwrap_or(0);
		let fee = record.fee_msat.unwrap_or(0);
		let outcome = match &record.status {
			PaymentStatus::Succeeded => "ok".to_string(),
			PaymentStatus::Failed { reason } => format!("FAILED ({reason})"),
			PaymentStatus::Pending => "pending".to_string(),
		};
		self.say(format!(
			"{from:>5} -> {to:<5} {kind:<7} {amount:>11} msat  fee {fee:>6} msat  {outcome}"
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
	for (name, node) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
		timeline.say(format!("{name:>5} started: {} on {}", node.node_id(), node.listen_addr()));
	}
	net.fund(&[&alice, &bob, &carol], 1).await?;
	timeline.say(format!(
		"funded every wallet with a mature coinbase ({} sat each)",
		alice.balances().onchain.confirmed_sat
	));

	net.open_channel(&alice, &bob, 2_000_000, 0).await?;
	timeline.say("channel alice -> bob (2,000,000 sat) confirmed and ready");
	net.open_channel(&bob, &carol, 1_000_000, 0).await?;
	timeline.say("channel bob -> carol (1,000,000 sat) confirmed and ready");
	alice.wait_for_channels_in_graph(2, DEADLINE).await?;
	timeline.say("alice learned both channels from gossip");

	let invoice = bob.create_invoice(Some(150_000_000), "demo: direct", 3600)?;
	let record = pay(&alice, alice.pay_invoice(&invoice, None)?, "alice -> bob").await?;
	timeline.payment("alice", "bob", "bolt11", &record);

	let invoice = carol.create_invoice(Some(250_000_000), "demo: two hops", 3600)?;
	let record = pay(&alice, alice.pay_invoice(&invoice, None)?, "alice -> carol").await?;
	timeline.payment("alice", "carol", "bolt11", &record);

	// Trampoline: alice knows only bob; bob (running the relay) finds carol.
	let policy = bob.config().trampoline.unwrap_or_default();
	let amount_msat = 60_000_000;
	let fee_msat = policy.fee_msat(amount_msat);
	let invoice = carol.create_invoice(Some(amount_msat), "demo: via trampoline", 3600)?;
	let id = alice.pay_invoice_via_trampoline(
		&invoice,
		bob.node_id(),
		fee_msat,
		policy.cltv_expiry_delta,
	)?;
	let record = pay(&alice, id, "alice -> carol via trampoline bob").await?;
	timeline.payment("alice", "carol", "tramp.", &record);
	timeline.say(format!(
		"        (trampoline bob relayed {amount_msat} msat for a {fee_msat} msat fee: {} + {} ppm)",
		policy.fee_base_msat, policy.fee_proportional_millionths
	));

	// Fee retry: alice offers bob half his fee; he answers NODE|26 with his
	// policy and alice pays again with what it asks, within her budget.
	let invoice = carol.create_invoice(Some(amount_msat), "demo: trampoline fee retry", 3600)?;
	let short = TrampolineRouteHop {
		node_id: bob.node_id(),
		fee_msat: fee_msat / 2,
		cltv_expiry_delta: policy.cltv_expiry_delta,
	};
	let budget = TrampolineBudget {
		max_fee_msat: 2 * fee_msat,
		max_cltv_expiry_delta: u32::from(policy.cltv_expiry_delta),
	};
	let id = alice.pay_invoice_via_trampolines_within(&invoice, &[short], budget)?;
	let record = pay(&alice, id, "alice -> carol via bob after a fee retry").await?;
	timeline.payment("alice", "carol", "tramp.", &record);
	timeline.say(format!(
		"        (alice offered {} msat, bob answered NODE|26 asking {fee_msat} msat; alice paid again within her {} msat budget)",
		fee_msat / 2,
		2 * fee_msat
	));

	let offer = alice.create_offer(Some(40_000_000), "demo: refund")?;
	let record = pay(&bob, bob.pay_offer(&offer, None)?, "bob -> alice").await?;
	timeline.payment("bob", "alice", "bolt12", &record);

	let offer = alice.create_offer(None, "demo: tip jar")?;
	let record = pay(&carol, carol.pay_offer(&offer, Some(12_345_000))?, "carol -> alice").await?;
	timeline.payment("carol", "alice", "bolt12", &record);

	for (name, node) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
		let balances = node.balances();
		timeline.say(format!(
			"{name:>5} balance: {:>10} sat on-chain, {:>9} sat in channels",
			balances.onchain.confirmed_sat, balances.lightning_sat
		));
	}
	for node in [&alice, &bob, &carol] {
		node.stop().await?;
	}
	timeline.say("demo complete: every payment succeeded");
	Ok(())
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
