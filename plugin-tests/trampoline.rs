//! Trampoline relay end to end on a real regtest bitcoind: a wallet W (our
//! node) pays the BOLT 11 invoice of an ldk-node 0.7.1 recipient R through our
//! trampoline node T, knowing only its channel to T.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use ldk_trampoline::node::{Node, NodeEvent, PaymentStatus};
use ldk_trampoline::onion::{FailingHop, FailureMessage, TrampolineFailure};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::relay::TrampolinePolicy;
use lightning::types::payment::PaymentHash;

const CHANNEL_SAT: u64 = 1_000_000;
const AMOUNT_MSAT: u64 = 10_000_000;

struct Network {
	net: RegtestNetwork,
	wallet: Arc<Node>,
	trampoline: Arc<Node>,
	recipient: Arc<ldk_node::Node>,
	policy: TrampolinePolicy,
}

/// W --public--> T --private--> R (ldk-node); T relays with the default policy.
async fn network() -> Network {
	let mut net = RegtestNetwork::start().expect("regtest");
	let policy = TrampolinePolicy::default();
	let wallet = net.add_node("wallet").await.expect("wallet");
	let mut config = net.node_config("trampoline");
	config.trampoline = Some(policy);
	let trampoline = net.add_node_with(config).await.expect("trampoline");
	let recipient = common::start_ldk_node(&net, "recipient");
	net.fund(&[&wallet, &trampoline], 1).await.expect("fund");

	net.open_channel(&wallet, &trampoline, CHANNEL_SAT, 0).await.expect("W-T");
	net.open_channel_to(
		&trampoline,
		recipient.node_id(),
		common::ldk_node_addr(&recipient),
		CHANNEL_SAT,
		0,
		false,
	)
	.await
	.expect("T-R");
	common::sync_ldk_node(&recipient);
	common::wait_ldk_event(&recipient, DEADLINE, "channel ready", |e| {
		matches!(e, ldk_node::Event::ChannelReady { .. }).then_some(())
	})
	.await;
	for node in [&wallet, &trampoline] {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		while !node.list_channels().iter().all(|c| c.usable) {
			assert!(tokio::time::Instant::now() < deadline, "channels not usable");
			tokio::time::sleep(Duration::from_millis(50)).await;
		}
	}
	Network { net, wallet, trampoline, recipient, policy }
}

fn recipient_invoice(
	recipient: &ldk_node::Node, amount_msat: u64,
) -> lightning_invoice::Bolt11Invoice {
	let description = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
		ldk_node::lightning_invoice::Description::new("via trampoline".into()).unwrap(),
	);
	let invoice =
		recipient.bolt11_payment().receive(amount_msat, &description, 3600).expect("invoice");
	invoice.to_string().parse().unwrap()
}

fn hash_of(invoice: &lightning_invoice::Bolt11Invoice) -> PaymentHash {
	PaymentHash(invoice.payment_hash().to_byte_array())
}

/// Waits until `node`'s Lightning balance is `sat`.
async fn wait_lightning_balance(node: &Node, sat: u64) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	loop {
		let now = node.balances().lightning_sat;
		if now == sat {
			return;
		}
		assert!(tokio::time::Instant::now() < deadline, "balance is {now} sat, expected {sat}");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

fn failures(trampoline: &Node, hash: &PaymentHash) -> Vec<FailureMessage> {
	trampoline.trampoline().expect("relay on").core().failures_sent(hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wallet_pays_ldk_node_invoice_through_trampoline() {
	let Network { mut net, wallet, trampoline, recipient, policy } = network().await;
	let fee_msat = policy.fee_msat(AMOUNT_MSAT);
	assert_eq!(fee_msat, 11_000);
	let (w_before, t_before) =
		(wallet.balances().lightning_sat, trampoline.balances().lightning_sat);

	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet
		.pay_invoice_via_trampoline(
			&invoice,
			trampoline.node_id(),
			fee_msat,
			policy.cltv_expiry_delta,
		)
		.expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(paid.fee_msat, Some(0), "W pays T directly: the trampoline fee is in the amount");
	let received = common::wait_ldk_event(&recipient, DEADLINE, "payment received", |e| match e {
		ldk_node::Event::PaymentReceived { amount_msat, payment_hash, .. } => {
			Some((*amount_msat, payment_hash.0))
		},
		_ => None,
	})
	.await;
	assert_eq!(received, (AMOUNT_MSAT, hash_of(&invoice).0), "R gets exactly the invoice amount");

	wait_lightning_balance(&wallet, w_before - (AMOUNT_MSAT + fee_msat) / 1000).await;
	wait_lightning_balance(&trampoline, t_before + fee_msat / 1000).await;
	assert!(failures(&trampoline, &hash_of(&invoice)).is_empty());
	assert_eq!(wallet.trampoline_failure(&hash_of(&invoice)), None);

	// T restarts (its relay state and plugin secret come back from the data
	// directory) and relays again.
	let trampoline = net.restart(&trampoline).await.expect("restart");
	for node in [&wallet, &trampoline] {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		while !node.list_channels().iter().all(|c| c.usable) {
			assert!(tokio::time::Instant::now() < deadline, "channels not usable after restart");
			tokio::time::sleep(Duration::from_millis(50)).await;
		}
	}
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet
		.pay_invoice_via_trampoline(
			&invoice,
			trampoline.node_id(),
			fee_msat,
			policy.cltv_expiry_delta,
		)
		.expect("pay after restart");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	wait_lightning_balance(&wallet, w_before - 2 * (AMOUNT_MSAT + fee_msat) / 1000).await;
	wait_lightning_balance(&trampoline, t_before + 2 * fee_msat / 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trampoline_fails_low_fee_with_26_and_unreachable_recipient_with_27() {
	let Network { mut net, wallet, trampoline, recipient, policy } = network().await;
	let balances = (wallet.balances().lightning_sat, trampoline.balances().lightning_sat);

	// (b) One msat short of T's fee.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet
		.pay_invoice_via_trampoline(
			&invoice,
			trampoline.node_id(),
			policy.fee_msat(AMOUNT_MSAT) - 1,
			policy.cltv_expiry_delta,
		)
		.expect("pay");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	let PaymentStatus::Failed { reason } = &failed.status else { panic!("{failed:?}") };
	println!("W's LDK reports for a low fee: {reason}");
	let policy_failure = FailureMessage::TrampolineFeeOrExpiryInsufficient {
		fee_base_msat: policy.fee_base_msat,
		fee_proportional_millionths: policy.fee_proportional_millionths,
		cltv_expiry_delta: policy.cltv_expiry_delta,
	};
	assert_eq!(failures(&trampoline, &hash_of(&invoice)), vec![policy_failure.clone()]);
	// W decrypts it through both layers: T's trampoline layer sent it.
	assert_eq!(
		wallet.trampoline_failure(&hash_of(&invoice)),
		Some(TrampolineFailure { hop: FailingHop::Trampoline(0), message: policy_failure })
	);

	// (b') Enough fee, but less CLTV delta than T asks for.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet
		.pay_invoice_via_trampoline(
			&invoice,
			trampoline.node_id(),
			policy.fee_msat(AMOUNT_MSAT),
			policy.cltv_expiry_delta - 10,
		)
		.expect("pay");
	assert!(matches!(
		wallet.wait_for_payment(id, DEADLINE).await.expect("outcome").status,
		PaymentStatus::Failed { .. }
	));
	assert!(matches!(
		failures(&trampoline, &hash_of(&invoice)).as_slice(),
		[FailureMessage::TrampolineFeeOrExpiryInsufficient { .. }]
	));

	// (c) A recipient T has no route to.
	let lonely = net.add_node("lonely").await.expect("lonely");
	let invoice = lonely.create_invoice(Some(AMOUNT_MSAT), "unreachable", 3600).expect("invoice");
	let id = wallet
		.pay_invoice_via_trampoline(
			&invoice,
			trampoline.node_id(),
			policy.fee_msat(AMOUNT_MSAT),
			policy.cltv_expiry_delta,
		)
		.expect("pay");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	let PaymentStatus::Failed { reason } = &failed.status else { panic!("{failed:?}") };
	println!("W's LDK reports for an unreachable recipient: {reason}");
	assert_eq!(
		failures(&trampoline, &hash_of(&invoice)),
		vec![FailureMessage::UnknownNextTrampoline]
	);
	assert_eq!(
		wallet.trampoline_failure(&hash_of(&invoice)),
		Some(TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::UnknownNextTrampoline
		})
	);

	// Nothing moved, and nothing reached R.
	assert_eq!(wallet.balances().lightning_sat, balances.0);
	assert_eq!(trampoline.balances().lightning_sat, balances.1);
	assert_eq!(recipient.list_balances().total_lightning_balance_sats, 0);
	assert!(recipient.next_event().is_none(), "R saw nothing");
}

/// (d) With the relay on at both ends, plain payments (BOLT 11 both ways, a
/// forwarded one, BOLT 12) are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_payments_are_untouched_with_the_relay_on() {
	let Network { net: _net, wallet, trampoline, recipient, .. } = network().await;
	let w_before = wallet.balances().lightning_sat;

	// Direct BOLT 11 to T (relay on at T) and a forward through T to R.
	let invoice = trampoline.create_invoice(Some(2_000_000), "direct", 3600).expect("invoice");
	let id = wallet.pay_invoice(&invoice, None).expect("pay");
	assert_eq!(
		wallet.wait_for_payment(id, DEADLINE).await.unwrap().status,
		PaymentStatus::Succeeded
	);
	let received = trampoline.subscribe();
	let offer = trampoline.create_offer(Some(1_000_000), "offer").expect("offer");
	let id = wallet.pay_offer(&offer, None).expect("pay offer");
	assert_eq!(
		wallet.wait_for_payment(id, DEADLINE).await.unwrap().status,
		PaymentStatus::Succeeded
	);
	trampoline
		.wait_for_event(received, DEADLINE, "offer paid", |e| {
			matches!(e, NodeEvent::PaymentReceived { amount_msat: 1_000_000, .. }).then_some(())
		})
		.await
		.expect("received");
	// T's private channel to R is not in W's graph: use R's route hint.
	let invoice = recipient_invoice(&recipient, 3_000_000);
	let id = wallet.pay_invoice(&invoice, None).expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.unwrap();
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let fee_sat = paid.fee_msat.unwrap_or(0) / 1000;
	wait_lightning_balance(&wallet, w_before - 2_000 - 1_000 - 3_000 - fee_sat).await;
	assert!(trampoline.trampoline().unwrap().core().failures_sent(&hash_of(&invoice)).is_empty());
}

/// Sends a hand-made trampoline payment from W and waits until it failed.
async fn send_raw_and_fail(
	wallet: &Node, hash: PaymentHash, packet: Vec<u8>, trampoline: &Node, amount_msat: u64,
	cltv_delta: u32,
) {
	let events = wallet.subscribe();
	let id = ldk_trampoline::sender::send_to_trampoline(
		&**wallet.channel_manager(),
		hash,
		packet,
		trampoline.node_id(),
		amount_msat,
		cltv_delta,
		None,
	)
	.expect("send");
	wallet
		.wait_for_event(events, DEADLINE, "the payment to fail", |e| match e {
			NodeEvent::PaymentFailed { payment_id, reason } if *payment_id == id => {
				println!("W's LDK reports for a bad trampoline payment: {reason}");
				Some(())
			},
			NodeEvent::PaymentSent { payment_id, .. } if *payment_id == id => {
				panic!("a bad trampoline payment succeeded")
			},
			_ => None,
		})
		.await
		.expect("failed");
}

/// Bad input at the trampoline gets the BOLT failure it calls for, and no HTLC
/// is left stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trampoline_rejects_bad_trampoline_onions_with_the_right_code() {
	use bitcoin::hashes::sha256;
	let Network { net: _net, wallet, trampoline, recipient, policy } = network().await;
	let balances = (wallet.balances().lightning_sat, trampoline.balances().lightning_sat);
	let fee = policy.fee_msat(AMOUNT_MSAT);
	let delta = u32::from(policy.cltv_expiry_delta);

	// A trampoline onion whose HMAC does not match: invalid_onion_hmac, in an
	// error packet under the outer secret only.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let height = wallet.best_block_height();
	let onion =
		ldk_trampoline::sender::legacy_trampoline_onion(&invoice, trampoline.node_id(), height)
			.unwrap();
	let mut packet = onion.packet.to_bytes();
	packet[40] ^= 1;
	let sha = sha256::Hash::hash(&packet).to_byte_array();
	send_raw_and_fail(
		&wallet,
		hash_of(&invoice),
		packet,
		&trampoline,
		AMOUNT_MSAT + fee,
		onion.final_cltv_delta + delta,
	)
	.await;
	assert_eq!(
		failures(&trampoline, &hash_of(&invoice)),
		vec![FailureMessage::InvalidOnionHmac { sha256_of_onion: sha }]
	);

	// The outer total is below the trampoline amount: final_incorrect_htlc_amount.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let onion =
		ldk_trampoline::sender::legacy_trampoline_onion(&invoice, trampoline.node_id(), height)
			.unwrap();
	send_raw_and_fail(
		&wallet,
		hash_of(&invoice),
		onion.packet.to_bytes(),
		&trampoline,
		AMOUNT_MSAT - 1_000,
		onion.final_cltv_delta + delta,
	)
	.await;
	assert_eq!(
		failures(&trampoline, &hash_of(&invoice)),
		vec![FailureMessage::FinalIncorrectHtlcAmount { incoming_htlc_amt: AMOUNT_MSAT - 1_000 }]
	);

	// The outer CLTV is below the trampoline CLTV: final_incorrect_cltv_expiry.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let onion =
		ldk_trampoline::sender::legacy_trampoline_onion(&invoice, trampoline.node_id(), height)
			.unwrap();
	send_raw_and_fail(
		&wallet,
		hash_of(&invoice),
		onion.packet.to_bytes(),
		&trampoline,
		AMOUNT_MSAT + fee,
		onion.final_cltv_delta - 5,
	)
	.await;
	assert!(
		matches!(
			failures(&trampoline, &hash_of(&invoice)).as_slice(),
			[FailureMessage::FinalIncorrectCltvExpiry { cltv_expiry }]
				if *cltv_expiry < height + onion.final_cltv_delta
		),
		"{:?}",
		failures(&trampoline, &hash_of(&invoice))
	);

	// Nothing moved and no HTLC is pending anywhere.
	assert_eq!(wallet.balances().lightning_sat, balances.0);
	assert_eq!(trampoline.balances().lightning_sat, balances.1);
	for node in [&wallet, &trampoline] {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		while node
			.channel_manager()
			.list_channels()
			.iter()
			.any(|c| c.pending_inbound_htlcs.len() + c.pending_outbound_htlcs.len() > 0)
		{
			assert!(tokio::time::Instant::now() < deadline, "an HTLC is stuck");
			tokio::time::sleep(Duration::from_millis(50)).await;
		}
	}
}
