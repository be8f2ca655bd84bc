//! Foundation: harness nodes on a real regtest bitcoind pay each other over
//! BOLT 11 and BOLT 12, survive restarts, and interoperate with ldk-node.

mod common;

use std::time::Duration;

use ldk_trampoline::node::{NodeEvent, PaymentStatus};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};

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
	let coop = net.open_channel(&alice, &bob, CHANNEL_SAT, 0).await.expect("open");
	let forced = net.open_channel(&alice, &bob, CHANNEL_SAT, 0).await.expect("open");
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

	// Cooperative close: Bob's 100k (or 200k, depending on how LDK split the two
	// payments) returns to his wallet once the closing transaction confirms.
	let bob_in_coop = bob
		.list_channels()
		.iter()
		.find(|c| c.channel_id == coop.to_string())
		.map(|c| c.outbound_msat)
		.expect("coop channel");
	let closed = alice.subscribe();
	alice.close_channel(&coop, false).await.expect("close");
	alice
		.wait_for_event(closed, DEADLINE, "coop close", |e| {
			matches!(e, NodeEvent::ChannelClosed { channel_id, .. } if *channel_id == coop)
				.then_some(())
		})
		.await
		.expect("closed");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("closing tx");
	net.mine(1).await.expect("confirm");
	assert_eq!(alice.list_channels().len(), 1);

	// Force close by Bob: his own output waits out the CSV delay, Alice's is
	// swept at once; both end up in the wallets through the output sweeper.
	let closed = bob.subscribe();
	bob.close_channel(&forced, true).await.expect("force close");
	bob.wait_for_event(closed, DEADLINE, "force close", |e| {
		matches!(e, NodeEvent::ChannelClosed { channel_id, .. } if *channel_id == forced)
			.then_some(())
	})
	.await
	.expect("closed");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("commitment tx");
	net.mine(1).await.expect("confirm");
	assert!(alice.list_channels().is_empty() && bob.list_channels().is_empty());
	// Past Bob's to_self_delay (LDK's default: 144 blocks).
	net.mine(144).await.expect("mature");

	// Everything Bob received (200k sat, less at most 10k of on-chain fees) and
	// Alice's remaining 1.8M (same margin) come back.
	wait_onchain_at_least(&net, &bob, bob_onchain + 200_000 - 10_000).await;
	wait_onchain_at_least(&net, &alice, alice_onchain + 2 * CHANNEL_SAT - 200_000 - 10_000).await;
	assert!(bob.balances().onchain.confirmed_sat <= bob_onchain + 200_000);
	assert!(bob_in_coop <= 200_000_000);
	assert_eq!(bob.balances().lightning_claimable_sat, 0, "nothing left to claim");
}
