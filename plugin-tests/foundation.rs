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
	let _ = Duration::ZERO;
}
