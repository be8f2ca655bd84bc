//! Foundation: harness nodes on a real regtest bitcoind pay each other over
//! BOLT 11 and BOLT 12, survive restarts, and interoperate with ldk-node.

mod common;

use std::time::Duration;

use bitcoin::Txid;
use ldk_trampoline::node::{
	Balances, ClosingChannel, ClosingState, Node, NodeEvent, PaymentStatus,
};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use lightning::ln::types::ChannelId;

const CHANNEL_SAT: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_pay_bolt11_and_bolt12_both_ways() {
	let mut net = RegtestNetwork::start().expect("regtest");
	let alice = net.add_node("alice").await.expect("alice");
	let bob = net.add_node("bob").await.expect("bob");
	net.fund(&[&alice, &bob], 1).await.expect("fund");
	assert_eq!(alice.balances().onchain.confirmed_sat, 50 * 100_000_000);

	net.open_channel(&alice, &bob, CHANNEL_SAT, 0).await.expect("open");
	let opened = alice.balances();
	// The funding transaction and its fee left the wallet.
	assert!(opened.onchain.confirmed_sat < 50 * 100_000_000 - CHANNEL_SAT);
	let bob_before = bob.balances().lightning_sat;
	assert_eq!(bob_before, 0);

	// Alice pays Bob's BOLT 11 invoice.
	let invoice = bob.create_invoice(Some(100_000_000), "coffee", 3600).expect("invoice");
	let received = bob.subscribe();
	let id = alice.pay_invoice(&invoice, None).expect("pay");
	let paid = alice.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(paid.fee_msat, Some(0), "a direct payment pays no routing fee");
	let got = bob
		.wait_for_event(received, DEADLINE, "payment", |e| match e {
			NodeEvent::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
			_ => None,
		})
		.await
		.expect("received");
	assert_eq!(got, 100_000_000);
	assert_eq!(bob.balances().lightning_sat, 100_000);
	assert_eq!(alice.balances().lightning_sat, opened.lightning_sat - 100_000);

	// Bob pays Alice's BOLT 12 offer.
	let offer = alice.create_offer(Some(30_000_000), "refund").expect("offer");
	let id = bob.pay_offer(&offer, None).expect("pay offer");
	let paid = bob.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(bob.balances().lightning_sat, 70_000);

	// Alice pays Bob's offer, Bob pays Alice's invoice.
	let offer = bob.create_offer(None, "tip jar").expect("offer");
	let id = alice.pay_offer(&offer, Some(5_000_000)).expect("pay offer");
	assert_eq!(
		alice.wait_for_payment(id, DEADLINE).await.expect("outcome").status,
		PaymentStatus::Succeeded
	);
	let invoice = alice.create_invoice(Some(1_000_000), "change", 3600).expect("invoice");
	let id = bob.pay_invoice(&invoice, None).expect("pay");
	assert_eq!(
		bob.wait_for_payment(id, DEADLINE).await.expect("outcome").status,
		PaymentStatus::Succeeded
	);
	assert_eq!(bob.balances().lightning_sat, 70_000 + 5_000 - 1_000);
	assert_eq!(alice.balances().lightning_sat, opened.lightning_sat - 74_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ldk_node_opens_a_channel_and_both_pay_each_other() {
	let mut net = RegtestNetwork::start().expect("regtest");
	let ours = net.add_node("ours").await.expect("node");
	let theirs = common::start_ldk_node(&net, "ldk-node");
	let their_address = theirs.onchain_payment().new_address().expect("address");
	net.fund_addresses(&[their_address], 1).expect("fund");
	net.sync_all().await.expect("sync");
	common::wait_ldk_onchain_balance(&theirs, 50 * 100_000_000).await;

	// The third-party node opens the channel: our node is the acceptor.
	let ready = ours.subscribe();
	theirs
		.open_channel(
			ours.node_id(),
			lightning::ln::msgs::SocketAddress::TcpIpV4 {
				addr: [127, 0, 0, 1],
				port: ours.listen_addr().port(),
			},
			CHANNEL_SAT,
			Some(200_000_000),
			None,
		)
		.expect("open");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("funding broadcast");
	net.mine(6).await.expect("confirm");
	common::sync_ldk_node(&theirs);
	ours.wait_for_event(ready, DEADLINE, "channel ready", |e| {
		matches!(e, NodeEvent::ChannelReady { counterparty, .. } if *counterparty == theirs.node_id())
			.then_some(())
	})
	.await
	.expect("ready");
	common::wait_ldk_event(&theirs, DEADLINE, "channel ready", |e| {
		matches!(e, ldk_node::Event::ChannelReady { .. }).then_some(())
	})
	.await;
	// The pushed amount is ours.
	assert_eq!(ours.balances().lightning_sat, 200_000);

	// We pay their BOLT 11 invoice.
	let description = lightning_invoice::Bolt11InvoiceDescription::Direct(
		lightning_invoice::Description::new("interop".into()).unwrap(),
	);
	let invoice = theirs.bolt11_payment().receive(50_000_000, &description, 3600).expect("invoice");
	let invoice: lightning_invoice::Bolt11Invoice = invoice.to_string().parse().unwrap();
	let id = ours.pay_invoice(&invoice, None).expect("pay");
	let paid = ours.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let received = common::wait_ldk_received(&theirs).await;
	assert_eq!(received, 50_000_000);

	// They pay our BOLT 11 invoice.
	let invoice = ours.create_invoice(Some(20_000_000), "back", 3600).expect("invoice");
	let invoice: ldk_node::lightning_invoice::Bolt11Invoice = invoice.to_string().parse().unwrap();
	theirs.bolt11_payment().send(&invoice, None).expect("send");
	common::wait_ldk_event(&theirs, DEADLINE, "payment sent", |e| match e {
		ldk_node::Event::PaymentSuccessful { .. } => Some(()),
		ldk_node::Event::PaymentFailed { reason, .. } => {
			panic!("ldk-node payment failed: {reason:?}")
		},
		_ => None,
	})
	.await;

	// BOLT 12 both ways.
	let offer =
		theirs.bolt12_payment().receive(7_000_000, "their offer", None, None).expect("offer");
	let offer: lightning::offers::offer::Offer = offer.to_string().parse().unwrap();
	let id = ours.pay_offer(&offer, None).expect("pay offer");
	let paid = ours.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let offer = ours.create_offer(Some(3_000_000), "our offer").expect("offer");
	let offer: ldk_node::lightning::offers::offer::Offer = offer.to_string().parse().unwrap();
	theirs.bolt12_payment().send(&offer, None, None, None).expect("send offer");
	common::wait_ldk_event(&theirs, DEADLINE, "offer paid", |e| match e {
		ldk_node::Event::PaymentSuccessful { .. } => Some(()),
		ldk_node::Event::PaymentFailed { reason, .. } => {
			panic!("ldk-node payment failed: {reason:?}")
		},
		_ => None,
	})
	.await;

	// 200k pushed, -50k, +20k, -7k, +3k.
	assert_eq!(ours.balances().lightning_sat, 200_000 - 50_000 + 20_000 - 7_000 + 3_000);
	theirs.stop().expect("stop ldk-node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_restarts_from_its_data_dir_and_pays_again() {
	let mut net = RegtestNetwork::start().expect("regtest");
	let alice = net.add_node("alice").await.expect("alice");
	let bob = net.add_node("bob").await.expect("bob");
	net.fund(&[&alice, &bob], 1).await.expect("fund");
	net.open_channel(&alice, &bob, CHANNEL_SAT, 0).await.expect("open");
	let invoice = bob.create_invoice(Some(10_000_000), "before", 3600).expect("invoice");
	let id = alice.pay_invoice(&invoice, None).expect("pay");
	assert_eq!(
		alice.wait_for_payment(id, DEADLINE).await.unwrap().status,
		PaymentStatus::Succeeded
	);

	let before = alice.balances();
	let channels_before = alice.list_channels();
	let node_id = alice.node_id();
	let alice = net.restart(&alice).await.expect("restart");
	assert_eq!(alice.node_id(), node_id, "same seed, same identity");
	// The commitment fee (and so the claimable amount) depends on which commitment
	// is current, which a restart may renegotiate; our side of the channel may not move.
	let after_restart = alice.balances();
	assert_eq!(after_restart.lightning_sat, before.lightning_sat, "channel balance survives");
	assert_eq!(after_restart.onchain, before.onchain, "on-chain balance survives");
	let after: Vec<_> = alice.list_channels().into_iter().map(|c| c.channel_id).collect();
	assert_eq!(after, channels_before.iter().map(|c| c.channel_id.clone()).collect::<Vec<_>>());
	// Payment history survives too.
	assert_eq!(alice.payment(&id).map(|p| p.status), Some(PaymentStatus::Succeeded));

	// The node reconnects by itself and the channel becomes usable again.
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while !alice.list_channels().iter().all(|c| c.usable) {
		assert!(tokio::time::Instant::now() < deadline, "channel not usable after restart");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
	let invoice = bob.create_invoice(Some(20_000_000), "after", 3600).expect("invoice");
	let id = alice.pay_invoice(&invoice, None).expect("pay");
	assert_eq!(
		alice.wait_for_payment(id, DEADLINE).await.unwrap().status,
		PaymentStatus::Succeeded
	);
	assert_eq!(alice.balances().lightning_sat, before.lightning_sat - 20_000);
	assert_eq!(bob.balances().lightning_sat, 30_000);

	// New blocks after the restart reach the restarted node.
	net.mine(3).await.expect("mine after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_runs_to_completion() {
	ldk_trampoline::demo::run().await.expect("every demo step succeeds");
}

/// `ldk-trampoline bench` as a user runs it: every payment succeeds (it exits
/// non-zero otherwise) and it prints its table and the ratio line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_command_compares_trampoline_and_plain_payments() {
	let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ldk-trampoline"))
		.args(["bench", "--payments", "3"])
		.kill_on_drop(true)
		.output();
	// The command waits on its own deadlines; this one only stops a hang.
	let output = tokio::time::timeout(Duration::from_secs(600), output)
		.await
		.expect("the bench finishes")
		.expect("the bench runs");
	let stdout = String::from_utf8_lossy(&output.stdout);
	let stderr = String::from_utf8_lossy(&output.stderr);
	assert!(output.status.success(), "bench failed:\n{stdout}\n{stderr}");
	for kind in ["plain", "trampoline"] {
		let row = stdout.lines().find(|l| l.starts_with(&format!("{kind} ")));
		let row = row.unwrap_or_else(|| panic!("no {kind} row in:\n{stdout}"));
		assert_eq!(row.split_whitespace().nth(1), Some("3"), "{row}");
	}
	let summary = stdout
		.lines()
		.find(|l| l.starts_with("trampoline/plain latency ratio: "))
		.unwrap_or_else(|| panic!("no ratio line in:\n{stdout}"));
	assert!(summary.contains("; payments/s: plain "), "{summary}");
	assert!(summary.contains(", trampoline "), "{summary}");
}

#[test]
fn bench_command_refuses_zero_payments() {
	let output = std::process::Command::new(env!("CARGO_BIN_EXE_ldk-trampoline"))
		.args(["bench", "--payments", "0"])
		.output()
		.expect("the bench runs");
	assert!(!output.status.success());
	let stderr = String::from_utf8_lossy(&output.stderr);
	assert!(stderr.contains("--payments must be between 1 and 200"), "{stderr}");
}

/// Waits until `node`'s confirmed on-chain balance is at least `sat`, mining a
/// block now and then so sweeps confirm.
async fn wait_onchain_at_least(net: &RegtestNetwork, node: &ldk_trampoline::node::Node, sat: u64) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while node.balances().onchain.confirmed_sat < sat {
		assert!(
			tokio::time::Instant::now() < deadline,
			"on-chain balance stuck at {:?}, expected at least {sat}",
			node.balances()
		);
		net.mine(1).await.expect("mine");
	}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channels_close_cooperatively_and_by_force_and_funds_return_on_chain() {
	let mut net = RegtestNetwork::start().expect("regtest");
	let alice = net.add_node("alice").await.expect("alice");
	let bob = net.add_node("bob").await.expect("bob");
	net.fund(&[&alice, &bob], 1).await.expect("fund");
	let mut coop = net.open_channel(&alice, &bob, CHANNEL_SAT, 0).await.expect("open");
	let mut forced = net.open_channel(&alice, &bob, CHANNEL_SAT, 0).await.expect("open");
	for _ in 0..2 {
		let invoice = bob.create_invoice(Some(100_000_000), "to close", 3600).expect("invoice");
		let id = alice.pay_invoice(&invoice, None).expect("pay");
		assert_eq!(
			alice.wait_for_payment(id, DEADLINE).await.unwrap().status,
			PaymentStatus::Succeeded
		);
	}
	let bob_onchain = bob.balances().onchain.confirmed_sat;
	let alice_onchain = alice.balances().onchain.confirmed_sat;
	// Close cooperatively a channel where Bob has funds, to see them swept.
	let bob_has = |id: &ChannelId| {
		bob.list_channels().iter().any(|c| c.channel_id == id.to_string() && c.outbound_msat > 0)
	};
	if !bob_has(&coop) {
		std::mem::swap(&mut coop, &mut forced);
	}

	// list-channels: the scid names the funding transaction's block, its
	// place in the block and the output; confirmations count from there.
	let tip = net.bitcoind().height().expect("height");
	for c in alice.list_channels() {
		let funding: Txid = c.funding_txid.as_deref().expect("funding txid").parse().expect("txid");
		let vout = c.funding_output_index.expect("funding output");
		let confirmations = c.confirmations.expect("confirmations");
		let height = tip + 1 - confirmations;
		let index = net.bitcoind().tx_index_in_block(height, &funding).expect("block");
		let index = index.expect("funding tx in the block confirmations point to");
		assert_eq!(c.scid, Some(format!("{height}x{index}x{vout}")), "{c:?}");
		assert!(c.peer_connected && c.usable, "{c:?}");
	}

	// Bob opened neither channel: the closes cost him only his sweeps, so
	// his funds add up exactly at every step.
	let bob_total = total(&bob.balances());
	let alice_before_b = alice.balances();
	let alice_before = total(&alice_before_b);

	// Cooperative close: Bob's 100k (or 200k, depending on how LDK split the two
	// payments) returns to his wallet once the closing transaction confirms.
	let bob_in_coop = bob
		.list_channels()
		.iter()
		.find(|c| c.channel_id == coop.to_string())
		.map(|c| c.outbound_msat)
		.expect("coop channel");
	let closed = alice.subscribe();
	let closing_txid = alice.close_channel(&coop, false).await.expect("close");
	let closing_txid = closing_txid.expect("the closing txid, broadcast within 5 s");
	alice
		.wait_for_event(closed, DEADLINE, "coop close", |e| {
			matches!(e, NodeEvent::ChannelClosed { channel_id, .. } if *channel_id == coop)
				.then_some(())
		})
		.await
		.expect("closed");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("closing tx");
	assert!(net.bitcoind().in_mempool(&closing_txid).expect("mempool"));
	let closing_fee = net.bitcoind().mempool_fee_sat(&closing_txid).expect("fee");
	for node in [&alice, &bob] {
		let c = wait_closing(node, &coop, |c| c.closing_txid.is_some()).await;
		assert_eq!(c.closing_txid, Some(closing_txid.to_string()), "{c:?}");
		assert_eq!(c.state, ClosingState::WaitingForClosingTx, "{c:?}");
	}
	wait_total(&bob, bob_total, "coop closing tx in the mempool").await;
	net.mine(1).await.expect("confirm");
	assert_eq!(alice.list_channels().len(), 1);
	let confirmed_at = net.bitcoind().height().expect("height");
	let c = wait_closing(&bob, &coop, |c| c.state == ClosingState::AwaitingConfirmations).await;
	assert!(c.claimable_at_height.is_some_and(|h| h > confirmed_at), "{c:?}");
	assert!(c.claimable_sat > 0 && c.claimable_sat <= 200_000, "{c:?}");
	wait_total(&bob, bob_total, "coop closing tx confirmed").await;
	// Alice opened the channel and paid the closing fee. Until her output
	// reaches her sweeper LDK counts it as her side of the last commitment
	// (after the commitment fee, not the closing fee): within that margin.
	let alice_after = total(&alice.balances());
	let commitment_fee = alice_before_b.lightning_sat - alice_before_b.lightning_claimable_sat;
	assert!(
		alice_after + closing_fee >= alice_before && alice_after + commitment_fee >= alice_before,
		"alice: {alice_after} after {alice_before}, closing fee {closing_fee}: {:?}",
		alice.balances()
	);
	assert!(alice_after < alice_before, "alice's closing funds are not in closing_sat");

	// Past the reorganisation margin the output goes to Bob's sweeper, and
	// stays in his balances while the sweep waits in the mempool.
	let mut mined = 0;
	let c = loop {
		net.mine(1).await.expect("mine");
		mined += 1;
		let sweeping = bob
			.list_closing_channels()
			.into_iter()
			.find(|c| c.channel_id == coop.to_string() && c.state == ClosingState::Sweeping);
		if let Some(c) = sweeping {
			assert_eq!(c.claimable_sat, 0, "{c:?}");
			assert!(c.sweeping_sat > 0, "{c:?}");
			break c;
		}
		assert!(mined < 20, "no sweep after {mined} blocks: {:?}", bob.list_closing_channels());
		tokio::time::sleep(Duration::from_millis(200)).await;
	};
	wait_total(&bob, bob_total, "output handed to the sweeper").await;
	// The sweeper broadcasts on its own timer (the background processor's).
	let c = match c.sweep_txid {
		Some(_) => c,
		None => wait_closing(&bob, &coop, |c| c.sweep_txid.is_some()).await,
	};
	let sweep_txid: Txid = c.sweep_txid.as_deref().expect("sweep").parse().expect("txid");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("sweep tx");
	assert!(bob.balances().sweeping_sat > 0, "{:?}", bob.balances());
	wait_total(&bob, bob_total, "sweep in the mempool").await;
	let sweep_fee = net.bitcoind().mempool_fee_sat(&sweep_txid).expect("sweep fee");
	net.mine(1).await.expect("confirm sweep");
	wait_total(&bob, bob_total - sweep_fee, "sweep confirmed").await;
	// Listed as swept until the sweeper stops tracking the output.
	let mut mined = 0;
	while bob.list_closing_channels().iter().any(|c| c.channel_id == coop.to_string()) {
		assert!(mined < 20, "still closing: {:?}", bob.list_closing_channels());
		net.mine(1).await.expect("mine");
		mined += 1;
		tokio::time::sleep(Duration::from_millis(200)).await;
	}
	assert!(mined > 0, "the channel vanished as soon as the sweep confirmed");
	let bob_total = bob_total - sweep_fee;

	// Force close by Bob: his own output waits out the CSV delay, Alice's is
	// swept at once; both end up in the wallets through the output sweeper.
	let closed = bob.subscribe();
	let commitment = bob.close_channel(&forced, true).await.expect("force close");
	let commitment = commitment.expect("the commitment txid, broadcast within 5 s");
	bob.wait_for_event(closed, DEADLINE, "force close", |e| {
		matches!(e, NodeEvent::ChannelClosed { channel_id, .. } if *channel_id == forced)
			.then_some(())
	})
	.await
	.expect("closed");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("commitment tx");
	assert!(net.bitcoind().in_mempool(&commitment).expect("mempool"));
	net.mine(1).await.expect("confirm");
	assert!(alice.list_channels().is_empty() && bob.list_channels().is_empty());
	// Alice never broadcast it: she names it from the block.
	let c = wait_closing(&alice, &forced, |c| c.closing_txid.is_some()).await;
	assert_eq!(c.closing_txid, Some(commitment.to_string()), "{c:?}");
	let c = wait_closing(&bob, &forced, |c| c.state == ClosingState::AwaitingConfirmations).await;
	assert!(c.claimable_at_height.is_some_and(|h| h >= confirmed_at + 144), "{c:?}");
	wait_total(&bob, bob_total, "commitment confirmed").await;
	// Past Bob's to_self_delay (LDK's default: 144 blocks).
	net.mine(144).await.expect("mature");

	// Everything Bob received (200k sat, less at most 10k of on-chain fees) and
	// Alice's remaining 1.8M (same margin) come back.
	wait_onchain_at_least(&net, &bob, bob_onchain + 200_000 - 10_000).await;
	wait_onchain_at_least(&net, &alice, alice_onchain + 2 * CHANNEL_SAT - 200_000 - 10_000).await;
	assert!(bob.balances().onchain.confirmed_sat <= bob_onchain + 200_000);
	assert!(bob_in_coop <= 200_000_000);
	assert_eq!(bob.balances().lightning_claimable_sat, 0, "nothing left to claim");
	let mut mined = 0;
	while !(alice.list_closing_channels().is_empty() && bob.list_closing_channels().is_empty()) {
		assert!(mined < 20, "still closing: {:?}", bob.list_closing_channels());
		net.mine(1).await.expect("mine");
		mined += 1;
		tokio::time::sleep(Duration::from_millis(200)).await;
	}
	for node in [&alice, &bob] {
		let b = node.balances();
		assert_eq!((b.closing_sat, b.closing_maybe_sat, b.sweeping_sat), (0, 0, 0), "{b:?}");
	}
}

/// Everything a node's balances hold: on-chain, open channels, channels
/// being closed and outputs being swept.
fn total(b: &Balances) -> u64 {
	b.onchain.confirmed_sat
		+ b.onchain.unconfirmed_sat
		+ b.onchain.immature_sat
		+ b.lightning_sat
		+ b.closing_sat
		+ b.sweeping_sat
}

/// Waits until the node's [`total`] is `expected` (a block reaches the
/// wallet, the monitors and the sweeper one after the other).
async fn wait_total(node: &Node, expected: u64, when: &str) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while total(&node.balances()) != expected {
		let b = node.balances();
		assert!(
			tokio::time::Instant::now() < deadline,
			"{when}: balances add up to {} instead of {expected}: {b:?}, closing {:?}",
			total(&b),
			node.list_closing_channels()
		);
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

/// Waits until `channel` is listed as closing and `pick` accepts it.
async fn wait_closing(
	node: &Node, channel: &ChannelId, pick: impl Fn(&ClosingChannel) -> bool,
) -> ClosingChannel {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	loop {
		let closing = node.list_closing_channels();
		if let Some(c) = closing.iter().find(|c| c.channel_id == channel.to_string() && pick(c)) {
			return c.clone();
		}
		assert!(
			tokio::time::Instant::now() < deadline,
			"{channel} not closing as expected: {closing:?}"
		);
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}
