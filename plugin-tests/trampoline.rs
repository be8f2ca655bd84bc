//! Trampoline relay end to end on a real regtest bitcoind: a wallet W (our
//! node) pays the BOLT 11 invoice of an ldk-node 0.7.1 recipient R through our
//! trampoline node T, knowing only its channel to T.

mod common;
/// The hand-composed LDK node of `examples/relay_node`.
#[path = "../examples/relay_node/node.rs"]
mod relay_node;

use common::{hash_of, relayed, tick_until_failed};

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::hex::DisplayHex;
use ldk_trampoline::node::{
	ForwardKind, ForwardOutcome, Node, NodeEvent, OutgoingPart, PartState, PartialPayment,
	PaymentStatus,
};
use ldk_trampoline::onion::TlvLayout;
use ldk_trampoline::onion::{FailingHop, FailureMessage, TrampolineFailure};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::relay::{BucketStage, Dialect, TrampolinePolicy};
use ldk_trampoline::sender::{
	send_to_trampoline, trampoline_onion, OuterSend, TrampolineBudget, TrampolineRouteHop,
};
use lightning::ln::channelmanager::{PaymentId, Retry};
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning_liquidity::lsps5::msgs::WebhookNotification;

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
	network_with(false).await
}

/// W --public--> T --(public if `public_recipient`)--> R (ldk-node).
async fn network_with(public_recipient: bool) -> Network {
	network_configured(public_recipient, |_| {}).await
}

/// [`network_with`], T's configuration amended by `configure`.
async fn network_configured(
	public_recipient: bool, configure: impl FnOnce(&mut ldk_trampoline::node::NodeConfig),
) -> Network {
	network_of(public_recipient, |_| {}, configure).await
}

/// [`network_configured`], W's configuration amended by `configure_wallet`.
async fn network_of(
	public_recipient: bool, configure_wallet: impl FnOnce(&mut ldk_trampoline::node::NodeConfig),
	configure: impl FnOnce(&mut ldk_trampoline::node::NodeConfig),
) -> Network {
	let mut net = RegtestNetwork::start().expect("regtest");
	let policy = TrampolinePolicy::default();
	let mut wallet_config = net.node_config("wallet");
	configure_wallet(&mut wallet_config);
	let wallet = net.add_node_with(wallet_config).await.expect("wallet");
	let mut config = net.node_config("trampoline");
	config.trampoline = Some(policy);
	configure(&mut config);
	let trampoline = net.add_node_with(config).await.expect("trampoline");
	let recipient = common::start_ldk_node(&net, "recipient");
	net.fund(&[&wallet, &trampoline], 1).await.expect("fund");

	net.open_channel(&wallet, &trampoline, CHANNEL_SAT, 0).await.expect("W-T");
	let r_addr = common::ldk_node_addr(&recipient);
	net.open_channel_to(&trampoline, recipient.node_id(), r_addr, CHANNEL_SAT, 0, public_recipient)
		.await
		.expect("T-R");
	common::sync_ldk_node(&recipient);
	common::wait_ldk_event(&recipient, DEADLINE, "channel ready", |e| {
		matches!(e, ldk_node::Event::ChannelReady { .. }).then_some(())
	})
	.await;
	wait_channels_usable(&[&wallet, &trampoline], 1).await;
	Network { net, wallet, trampoline, recipient, policy }
}

/// Makes R (ldk-node) W's peer. R answers W's invoice requests over W's
/// reply path, whose introduction node is W itself (W is announced); LDK's
/// message router then connects to W directly, which needs W's node
/// announcement in R's graph. Gossip reaches a freshly connected ldk-node at
/// no time a test can wait on, hence the direct connection (no channel: the
/// payments still go through T).
fn connect_recipient_to_wallet(recipient: &ldk_node::Node, wallet: &Node) {
	let addr = match wallet.listen_addr() {
		std::net::SocketAddr::V4(a) => ldk_node::lightning::ln::msgs::SocketAddress::TcpIpV4 {
			addr: a.ip().octets(),
			port: a.port(),
		},
		other => panic!("IPv4 loopback expected, got {other}"),
	};
	recipient.connect(wallet.node_id(), addr, false).expect("R connects to W");
}

/// Opens a private channel from `from` to the ldk-node `to`.
async fn open_private_to(net: &RegtestNetwork, from: &Arc<Node>, to: &ldk_node::Node, sat: u64) {
	net.open_channel_to(from, to.node_id(), common::ldk_node_addr(to), sat, 0, false)
		.await
		.expect("channel to ldk-node");
}

/// Waits until each of `nodes` has at least `count` channels, all usable.
async fn wait_channels_usable(nodes: &[&Arc<Node>], count: usize) {
	for node in nodes {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			let channels = node.list_channels();
			if channels.len() >= count && channels.iter().all(|c| c.usable) {
				break;
			}
			assert!(tokio::time::Instant::now() < deadline, "channels not usable");
			tokio::time::sleep(Duration::from_millis(50)).await;
		}
	}
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
	// T's forwarding history: one relayed trampoline payment, in what W
	// sent, out what R got (T pays R over their direct channel), T's fee.
	let forwards = common::wait_forwards(&trampoline, 1).await;
	let [relayed] = &forwards[..] else { panic!("one forward: {forwards:?}") };
	assert_eq!(relayed.kind, ForwardKind::Trampoline);
	assert_eq!(relayed.payment_hash, Some(hash_of(&invoice).to_string()));
	assert_eq!(
		(relayed.in_msat, relayed.out_msat, relayed.fee_msat),
		(Some(AMOUNT_MSAT + fee_msat), Some(AMOUNT_MSAT), Some(fee_msat))
	);
	assert_eq!(relayed.dialect, Some(Dialect::Spec), "our sender speaks the spec dialect");
	assert_eq!(relayed.next_node, Some(recipient.node_id().to_string()));
	assert_eq!(relayed.outcome, ForwardOutcome::Succeeded);
	let w_t = wallet.list_channels().into_iter().map(|c| c.channel_id).collect::<Vec<_>>();
	assert_eq!(relayed.incoming_channel_ids, w_t);
	assert!(relayed.duration_ms.is_some() && relayed.started_at_ms.is_some(), "{relayed:?}");

	// T restarts (its relay state and plugin secret come back from the data
	// directory) and relays again.
	let trampoline = net.restart(&trampoline).await.expect("restart");
	wait_channels_usable(&[&wallet, &trampoline], 1).await;
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
	// The first record came back from T's store; the second follows it.
	let after = common::wait_forwards(&trampoline, 2).await;
	assert_eq!(after[0], forwards[0]);
	assert_eq!((after[1].index, after[1].fee_msat), (forwards[0].index + 1, Some(fee_msat)));
	assert_eq!(after[1].payment_hash, Some(hash_of(&invoice).to_string()));
}

/// W pays an ldk-node offer through T: W fetches the invoice over onion
/// messages, T pays its blinded paths (T is their introduction node: R is
/// its private peer). R receives the amount, T keeps its fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wallet_pays_ldk_node_offer_through_trampoline() {
	let Network { net: _net, wallet, trampoline, recipient, policy } = network().await;
	connect_recipient_to_wallet(&recipient, &wallet);
	let (w_before, t_before) =
		(wallet.balances().lightning_sat, trampoline.balances().lightning_sat);
	let offer = recipient.bolt12_payment().receive(AMOUNT_MSAT, "via trampoline", None, None);
	let offer: lightning::offers::offer::Offer =
		offer.expect("offer").to_string().parse().expect("parse");
	let fee_msat = policy.fee_msat(AMOUNT_MSAT);
	let hop = TrampolineRouteHop {
		node_id: trampoline.node_id(),
		fee_msat,
		cltv_expiry_delta: policy.cltv_expiry_delta,
		async_payment: false,
	};
	let id = wallet
		.pay_offer_via_trampolines(&offer, None, &[hop], TrampolineBudget::of_route(&[hop]))
		.expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let received = common::wait_ldk_event(&recipient, DEADLINE, "R paid", |e| match e {
		ldk_node::Event::PaymentReceived { amount_msat, payment_hash, .. } => {
			Some((*amount_msat, *payment_hash))
		},
		_ => None,
	})
	.await;
	assert!(received.0 >= AMOUNT_MSAT, "R received {} msat", received.0);
	let hash = PaymentHash(received.1 .0);
	assert_eq!(relayed(&trampoline, hash), vec![BucketStage::Relayed]);
	// What W paid went to T and R, and T kept at least its fee: the blinded
	// path's fee (T's own channel) is T's to keep or pass on to R.
	let w_paid = w_before - wallet.balances().lightning_sat;
	let t_got = trampoline.balances().lightning_sat - t_before;
	println!("BOLT 12 via T: W paid {w_paid} sat, T kept {t_got} sat, R got {} msat", received.0);
	assert!(w_paid * 1000 >= AMOUNT_MSAT + fee_msat, "W paid {w_paid} sat");
	assert_eq!(w_paid, t_got + received.0 / 1000, "W paid {w_paid} sat, T got {t_got} sat");
	assert!(t_got * 1000 >= fee_msat, "T got {t_got} sat");
	wait_no_htlcs(&wallet).await;
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
		Some(TrampolineFailure { hop: FailingHop::Trampoline(0), message: policy_failure.clone() })
	);
	// W's operator sees the failed part: its path, and T's code and hop.
	let payment = partial_payment(&wallet, hash_of(&invoice));
	assert_eq!(payment.state, "failed", "{payment:?}");
	let failed: Vec<&OutgoingPart> =
		payment.parts.iter().filter(|p| matches!(p.state, PartState::Failed { .. })).collect();
	assert!(!failed.is_empty(), "{payment:?}");
	let PartState::Failed { code, failing_hop, .. } = &failed[0].state else { unreachable!() };
	assert_eq!(*code, Some(policy_failure.code()), "{payment:?}");
	assert_eq!(failing_hop.as_deref(), Some("trampoline 0"), "{payment:?}");
	assert_eq!(failed[0].path, vec![channel_scid_with(&wallet, &trampoline)], "{payment:?}");

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

	// (e) The same short fee with room in the budget: W learns T's policy
	// from the NODE|26 answer, pays again with what it asks, and succeeds.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let short = TrampolineRouteHop {
		node_id: trampoline.node_id(),
		fee_msat: policy.fee_msat(AMOUNT_MSAT) - 1,
		cltv_expiry_delta: policy.cltv_expiry_delta - 10,
		async_payment: false,
	};
	let budget = TrampolineBudget {
		max_fee_msat: 2 * policy.fee_msat(AMOUNT_MSAT),
		max_cltv_expiry_delta: 2 * u32::from(policy.cltv_expiry_delta),
	};
	let id = wallet.pay_invoice_via_trampolines_within(&invoice, &[short], budget).expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(failures(&trampoline, &hash_of(&invoice)), vec![policy_failure.clone()]);
	wait_lightning_balance(
		&wallet,
		balances.0 - (AMOUNT_MSAT + policy.fee_msat(AMOUNT_MSAT)) / 1000,
	)
	.await;
	wait_lightning_balance(&trampoline, balances.1 + policy.fee_msat(AMOUNT_MSAT) / 1000).await;

	// (f) A budget below T's policy: one NODE|26, no second attempt.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let tight = TrampolineBudget { max_fee_msat: short.fee_msat, ..budget };
	let id = wallet.pay_invoice_via_trampolines_within(&invoice, &[short], tight).expect("pay");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	let PaymentStatus::Failed { reason } = &failed.status else { panic!("{failed:?}") };
	assert!(reason.contains("over the budget"), "{reason}");
	assert_eq!(failures(&trampoline, &hash_of(&invoice)), vec![policy_failure]);
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

/// A plain forward through T (W pays R's invoice, routed over R's hint for
/// its private channel to T) is in T's forwarding history with LDK's
/// amounts and the fee W paid, then one R fails back as a failed forward;
/// both are still there after T restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_forward_is_in_the_forwarding_history_across_a_restart() {
	let Network { mut net, wallet, trampoline, recipient, .. } = network().await;
	let amount_msat = 3_000_000;
	let invoice = recipient_invoice(&recipient, amount_msat);
	let id = wallet.pay_invoice(&invoice, None).expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.unwrap();
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let fee_msat = paid.fee_msat.expect("a fee to T");
	assert!(fee_msat > 0, "T charges its channel fee");
	let forwards = common::wait_forwards(&trampoline, 1).await;
	let [forward] = &forwards[..] else { panic!("one forward: {forwards:?}") };
	assert_eq!(forward.kind, ForwardKind::Channel);
	assert_eq!(
		(forward.in_msat, forward.out_msat, forward.fee_msat),
		(Some(amount_msat + fee_msat), Some(amount_msat), Some(fee_msat))
	);
	assert_eq!((forward.dialect, forward.payment_hash.as_deref()), (None, None));
	assert_eq!(forward.outcome, ForwardOutcome::Succeeded);
	assert_eq!(forward.next_node, Some(recipient.node_id().to_string()));
	let channel_of = |peer: String| {
		trampoline
			.list_channels()
			.into_iter()
			.find(|c| c.counterparty == peer)
			.map(|c| c.channel_id)
	};
	assert_eq!(
		forward.incoming_channel_ids,
		vec![channel_of(wallet.node_id().to_string()).unwrap()]
	);
	assert_eq!(forward.outgoing_channel_id, channel_of(recipient.node_id().to_string()));

	// R refuses a payment it holds (it knows no preimage for the hash): T
	// fails the HTLC back, a failed forward without amounts (LDK gives none).
	let hash = ldk_node::lightning::types::payment::PaymentHash([0x5a; 32]);
	let description = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
		ldk_node::lightning_invoice::Description::new("refused".into()).unwrap(),
	);
	let refused = recipient
		.bolt11_payment()
		.receive_for_hash(amount_msat, &description, 3600, hash)
		.expect("invoice for a hash");
	let refused: lightning_invoice::Bolt11Invoice = refused.to_string().parse().unwrap();
	let id = wallet.pay_invoice(&refused, None).expect("pay");
	common::wait_ldk_event(&recipient, DEADLINE, "claimable", |e| match e {
		ldk_node::Event::PaymentClaimable { payment_hash, .. } if *payment_hash == hash => Some(()),
		_ => None,
	})
	.await;
	recipient.bolt11_payment().fail_for_hash(hash).expect("R fails it");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.unwrap();
	assert!(matches!(failed.status, PaymentStatus::Failed { .. }), "{failed:?}");
	let forwards = common::wait_forwards(&trampoline, 2).await;
	let [_, refused] = &forwards[..] else { panic!("two forwards: {forwards:?}") };
	assert_eq!(refused.kind, ForwardKind::Channel);
	assert_eq!((refused.in_msat, refused.out_msat, refused.fee_msat), (None, None, None));
	assert!(matches!(refused.outcome, ForwardOutcome::Failed { .. }), "{refused:?}");
	assert_eq!(refused.incoming_channel_ids, forward.incoming_channel_ids);
	assert_eq!(refused.outgoing_channel_id, forward.outgoing_channel_id);
	assert_eq!(refused.next_node, forward.next_node);
	assert_eq!(refused.index, forward.index + 1);

	let trampoline = net.restart(&trampoline).await.expect("restart");
	let page = trampoline.list_forwards(None, 10);
	assert_eq!(page.forwards, forwards, "the records survive the restart");
	assert_eq!(page.next_index_offset, None);
	assert!(trampoline.list_forwards(Some(refused.index), 10).forwards.is_empty());
}

/// Sends a hand-made trampoline payment from W and waits until it failed.
async fn send_raw_and_fail(
	wallet: &Node, hash: PaymentHash, packet: Vec<u8>, trampoline: &Node, amount_msat: u64,
	cltv_delta: u32,
) {
	let events = wallet.subscribe();
	let send = OuterSend {
		payment_hash: hash,
		trampoline: trampoline.node_id(),
		trampoline_packet: packet,
		amount_msat,
		total_msat: amount_msat,
		cltv_expiry_delta: cltv_delta,
		outer_secret: PaymentSecret(rand::random()),
		payment_id: PaymentId(hash.0),
		retry: Retry::Attempts(0),
		max_routing_fee_msat: None,
		max_total_cltv_expiry_delta: None,
	};
	let id = send_to_trampoline(&**wallet.channel_manager(), &send, None).expect("send");
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
	let hop = TrampolineRouteHop {
		node_id: trampoline.node_id(),
		fee_msat: fee,
		cltv_expiry_delta: policy.cltv_expiry_delta,
		async_payment: false,
	};
	let onion = trampoline_onion(&invoice.clone().into(), &[hop], height).unwrap();
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
	let onion = trampoline_onion(&invoice.clone().into(), &[hop], height).unwrap();
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
	let onion = trampoline_onion(&invoice.clone().into(), &[hop], height).unwrap();
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
		wait_no_htlcs(node).await;
	}
}

/// Waits until the four nodes' lightning balances are `sat`, in order.
async fn wait_balances(nodes: [&Node; 4], sat: (u64, u64, u64, u64)) {
	for (node, sat) in nodes.into_iter().zip([sat.0, sat.1, sat.2, sat.3]) {
		wait_lightning_balance(node, sat).await;
	}
}

/// Waits until no channel of `node` has an HTLC in flight.
async fn wait_no_htlcs(node: &Node) {
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

/// W -> T1 -> T2 -> R: W knows only T1; T1 relays to the next trampoline T2
/// (type 20 over their direct channel), which pays R's invoice. A failure at
/// T2 comes back through T1 to W, attributed to T2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wallet_pays_through_two_trampolines() {
	let mut net = RegtestNetwork::start().expect("regtest");
	let wallet = net.add_node("wallet").await.expect("wallet");
	let t1 = net.add_node("t1").await.expect("t1");
	let t2_policy = TrampolinePolicy { fee_base_msat: 3_000, ..TrampolinePolicy::default() };
	let mut config = net.node_config("t2");
	config.trampoline = Some(t2_policy);
	let t2 = net.add_node_with(config).await.expect("t2");
	let recipient = common::start_ldk_node(&net, "recipient");
	net.fund(&[&wallet, &t1, &t2], 1).await.expect("fund");
	net.open_channel(&wallet, &t1, CHANNEL_SAT, 0).await.expect("W-T1");
	net.open_channel(&t1, &t2, CHANNEL_SAT, 0).await.expect("T1-T2");
	open_private_to(&net, &t2, &recipient, CHANNEL_SAT).await;
	common::sync_ldk_node(&recipient);
	wait_channels_usable(&[&wallet, &t1, &t2], 1).await;
	let t1_policy = t1.config().trampoline.expect("harness nodes relay");
	let balances = |n: &Node| n.balances().lightning_sat;
	let before = (balances(&wallet), balances(&t1), balances(&t2));

	let (f1, f2) = (
		t1_policy.fee_msat(AMOUNT_MSAT + t2_policy.fee_msat(AMOUNT_MSAT)),
		t2_policy.fee_msat(AMOUNT_MSAT),
	);
	let route = |f1: u64, f2: u64| {
		[
			TrampolineRouteHop {
				node_id: t1.node_id(),
				fee_msat: f1,
				cltv_expiry_delta: t1_policy.cltv_expiry_delta,
				async_payment: false,
			},
			TrampolineRouteHop {
				node_id: t2.node_id(),
				fee_msat: f2,
				cltv_expiry_delta: t2_policy.cltv_expiry_delta,
				async_payment: false,
			},
		]
	};
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet.pay_invoice_via_trampolines(&invoice, &route(f1, f2)).expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let received = common::wait_ldk_received(&recipient).await;
	assert_eq!(received, AMOUNT_MSAT);
	// Direct channels all along: each trampoline keeps exactly its fee.
	wait_lightning_balance(&wallet, before.0 - (AMOUNT_MSAT + f1 + f2) / 1000).await;
	wait_lightning_balance(&t1, before.1 + f1 / 1000).await;
	wait_lightning_balance(&t2, before.2 + f2 / 1000).await;
	assert_eq!(relayed(&t1, hash_of(&invoice)), vec![BucketStage::Relayed]);
	assert_eq!(relayed(&t2, hash_of(&invoice)), vec![BucketStage::Relayed]);

	// T2 is offered one msat less than its fee: it answers 26 with its policy,
	// T1 passes the failure back unread, and W attributes it to T2.
	second_trampoline_refuses(&wallet, &t1, &recipient, &route(f1, f2 - 1), &t2_policy).await;
	for node in [&wallet, &t1, &t2] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&wallet, before.0 - (AMOUNT_MSAT + f1 + f2) / 1000).await;
	wait_lightning_balance(&t1, before.1 + f1 / 1000).await;
	wait_lightning_balance(&t2, before.2 + f2 / 1000).await;
}

/// Pays R through `route`, whose second trampoline T2 is offered less than
/// its fee: T2's NODE|26 with `t2_policy` reaches W attributed to T2, and
/// T1 failed its bucket passing T2's failure on unread.
async fn second_trampoline_refuses(
	wallet: &Node, t1: &Node, recipient: &ldk_node::Node, route: &[TrampolineRouteHop],
	t2_policy: &TrampolinePolicy,
) {
	let invoice = recipient_invoice(recipient, AMOUNT_MSAT);
	let id = wallet.pay_invoice_via_trampolines(&invoice, route).expect("pay");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert!(matches!(failed.status, PaymentStatus::Failed { .. }), "{failed:?}");
	assert_eq!(
		wallet.trampoline_failure(&hash_of(&invoice)),
		Some(TrampolineFailure {
			hop: FailingHop::Trampoline(1),
			message: FailureMessage::TrampolineFeeOrExpiryInsufficient {
				fee_base_msat: t2_policy.fee_base_msat,
				fee_proportional_millionths: t2_policy.fee_proportional_millionths,
				cltv_expiry_delta: t2_policy.cltv_expiry_delta,
			},
		})
	);
	assert_eq!(relayed(t1, hash_of(&invoice)), vec![BucketStage::Failed]);
	assert!(failures(t1, &hash_of(&invoice)).is_empty(), "T1 passed T2's failure on as is");
}

/// W -> T1 -> X -> T2 -> R: the trampolines are not channel peers, T1 reaches
/// T2 through X (a plain node), on a path LDK's router chose. T1's own outer
/// onion (type 20 for T2) rides along that path, so that (1) the payment
/// goes through, each node keeping its fee; (2) T2's NODE|26 comes back
/// through X and T1 to W, attributed to T2 with T2's policy; (3) X failing
/// (T2 gone) is read by T1 and answered to W as NODE|25 from T1. Also: W
/// chooses T1 among its peers by their features, and when T1 finds no route
/// within the fee it was offered it answers NODE|26, and W offers more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wallet_pays_through_two_trampolines_that_are_not_peers() {
	/// What W gives T1 on top of its policy fee to pay X, and the CLTV delta
	/// on top of its policy delta: X's 72 blocks plus the 80 LDK's router
	/// keeps aside for shadow routing.
	const ROUTING_FEE_MSAT: u64 = 2_000;
	const ROUTING_CLTV_DELTA: u16 = 72 + 80;
	let mut net = RegtestNetwork::start().expect("regtest");
	let wallet = net.add_node("wallet").await.expect("wallet");
	let t1 = net.add_node("t1").await.expect("t1");
	let mut config = net.node_config("x");
	config.trampoline = None;
	let x = net.add_node_with(config).await.expect("x");
	let t2_policy = TrampolinePolicy { fee_base_msat: 3_000, ..TrampolinePolicy::default() };
	let mut config = net.node_config("t2");
	config.trampoline = Some(t2_policy);
	let t2 = net.add_node_with(config).await.expect("t2");
	let recipient = common::start_ldk_node(&net, "recipient");
	net.fund(&[&wallet, &t1, &x, &t2], 1).await.expect("fund");
	net.open_channel(&wallet, &t1, CHANNEL_SAT, 0).await.expect("W-T1");
	net.open_channel(&t1, &x, CHANNEL_SAT, 0).await.expect("T1-X");
	net.open_channel(&x, &t2, CHANNEL_SAT, 0).await.expect("X-T2");
	// W can send more to X than to T1, but X does not speak trampoline.
	net.open_channel(&wallet, &x, 2 * CHANNEL_SAT, 0).await.expect("W-X");
	open_private_to(&net, &t2, &recipient, CHANNEL_SAT).await;
	common::sync_ldk_node(&recipient);
	wait_channels_usable(&[&wallet, &t1, &x, &t2], 1).await;
	net.wait_for_gossip(&t1, 4).await.expect("T1 learns X-T2 and W-X");
	assert!(!t1.list_channels().iter().any(|c| c.counterparty == t2.node_id().to_string()));
	let t1_policy = t1.config().trampoline.expect("harness nodes relay");
	let balances = |n: &Node| n.balances().lightning_sat;
	let before = (balances(&wallet), balances(&t1), balances(&x), balances(&t2));

	let f2 = t2_policy.fee_msat(AMOUNT_MSAT);
	let f1 = t1_policy.fee_msat(AMOUNT_MSAT + f2) + ROUTING_FEE_MSAT;
	let route = |f2: u64| {
		[
			TrampolineRouteHop {
				node_id: t1.node_id(),
				fee_msat: f1,
				cltv_expiry_delta: t1_policy.cltv_expiry_delta + ROUTING_CLTV_DELTA,
				async_payment: false,
			},
			TrampolineRouteHop {
				node_id: t2.node_id(),
				fee_msat: f2,
				cltv_expiry_delta: t2_policy.cltv_expiry_delta,
				async_payment: false,
			},
		]
	};
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet.pay_invoice_via_trampolines(&invoice, &route(f2)).expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let received = common::wait_ldk_received(&recipient).await;
	assert_eq!(received, AMOUNT_MSAT);
	assert_eq!(relayed(&t1, hash_of(&invoice)), vec![BucketStage::Relayed]);
	assert_eq!(relayed(&t2, hash_of(&invoice)), vec![BucketStage::Relayed]);
	// X charges LDK's default forwarding fee (1 sat, 0 ppm); T1 keeps the
	// rest of what W gave it.
	let x_fee_msat = 1_000;
	for node in [&wallet, &t1, &x, &t2] {
		wait_no_htlcs(node).await;
	}
	// What a payment over `route(f2)` moves: W pays the amount and both
	// fees, T1 keeps its fee less X's, X its fee, T2 its fee.
	let paid_over_route = |b: (u64, u64, u64, u64)| {
		(
			b.0 - (AMOUNT_MSAT + f1 + f2) / 1000,
			b.1 + (f1 - x_fee_msat) / 1000,
			b.2 + 1,
			b.3 + f2 / 1000,
		)
	};
	let after = paid_over_route(before);
	wait_balances([&wallet, &t1, &x, &t2], after).await;

	// W picks its trampoline itself: T1, though W can send more to X, which
	// does not speak trampoline. Offered only its policy, T1 finds no route
	// to R within nothing left for X's and T2's fees (T2 a plain hop here):
	// NODE|26 with its policy; W doubles the surplus (2 x the fee and delta)
	// and succeeds.
	assert_eq!(wallet.choose_trampoline(AMOUNT_MSAT).expect("a trampoline peer"), t1.node_id());
	assert!(wallet.choose_trampoline(CHANNEL_SAT * 1000).is_err(), "nobody can carry that");
	let guess = TrampolineRouteHop {
		node_id: t1.node_id(),
		fee_msat: t1_policy.fee_msat(AMOUNT_MSAT),
		cltv_expiry_delta: t1_policy.cltv_expiry_delta,
		async_payment: false,
	};
	let budget = TrampolineBudget { max_fee_msat: 100_000, max_cltv_expiry_delta: 1_008 };
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet.pay_invoice_via_trampolines_within(&invoice, &[guess], budget).expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(failures(&t1, &hash_of(&invoice)), vec![t1_policy.insufficient()]);
	let mut stages = relayed(&t1, hash_of(&invoice));
	stages.sort_by_key(|stage| format!("{stage:?}"));
	assert_eq!(stages, vec![BucketStage::Failed, BucketStage::Relayed]);
	for node in [&wallet, &t1, &x, &t2] {
		wait_no_htlcs(node).await;
	}
	let fee_paid = 2 * guess.fee_msat;
	let after = (
		after.0 - (AMOUNT_MSAT + fee_paid) / 1000,
		after.1 + (fee_paid - 2 * x_fee_msat) / 1000,
		after.2 + 1,
		after.3 + 1,
	);
	wait_balances([&wallet, &t1, &x, &t2], after).await;

	// W asks T1 to hold the payment until T2 is connected to it
	// (`async_payment`, as for an often-offline next node): T1 holds it,
	// complete, though it could route to T2 through X; T2 connects; T1
	// relays; R is paid.
	let mut held_route = route(f2);
	held_route[1].async_payment = true;
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet.pay_invoice_via_trampolines(&invoice, &held_route).expect("pay");
	wait_bucket(&t1, hash_of(&invoice), BucketStage::Held).await;
	let held = t1.trampoline().expect("T1 relays").core().held();
	assert_eq!(held.len(), 1);
	assert_eq!(held[0].next_node, t2.node_id().to_string());
	assert!(wallet.payment(&id).is_some_and(|p| p.status == PaymentStatus::Pending));
	t2.connect(t1.node_id(), t1.listen_addr()).await.expect("T2 connects to T1");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(common::wait_ldk_received(&recipient).await, AMOUNT_MSAT);
	assert_eq!(relayed(&t1, hash_of(&invoice)), vec![BucketStage::Relayed]);
	for node in [&wallet, &t1, &x, &t2] {
		wait_no_htlcs(node).await;
	}
	let after = paid_over_route(after);
	wait_balances([&wallet, &t1, &x, &t2], after).await;

	// T2 is offered one msat less than its fee: its NODE|26 travels back
	// through X to T1, which cannot read it and passes it on; W reads it.
	second_trampoline_refuses(&wallet, &t1, &recipient, &route(f2 - 1), &t2_policy).await;

	// T2 goes away: X cannot forward and fails the HTLC; T1 reads X's
	// failure in its own onion and answers W with a temporary failure.
	for node in [&wallet, &t1, &x, &t2] {
		wait_no_htlcs(node).await;
	}
	let _t2_stopped = net.stop(&t2).await.expect("stop T2");
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet.pay_invoice_via_trampolines(&invoice, &route(f2)).expect("pay");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert!(matches!(failed.status, PaymentStatus::Failed { .. }), "{failed:?}");
	assert_eq!(
		wallet.trampoline_failure(&hash_of(&invoice)),
		Some(TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::TemporaryTrampolineFailure,
		})
	);
	assert_eq!(failures(&t1, &hash_of(&invoice)), vec![FailureMessage::TemporaryTrampolineFailure]);
	for node in [&wallet, &t1, &x] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&wallet, after.0).await;
	wait_lightning_balance(&t1, after.1).await;
	wait_lightning_balance(&x, after.2).await;
}

/// Sends half of a trampoline payment to `invoice` whose outer total is the
/// whole: T waits for the other half. Returns the payment id and W's events
/// subscribed before the send.
fn send_half(
	wallet: &Node, trampoline: &Node, policy: &TrampolinePolicy,
	invoice: &lightning_invoice::Bolt11Invoice,
) -> (PaymentId, tokio::sync::broadcast::Receiver<NodeEvent>) {
	let hop = TrampolineRouteHop {
		node_id: trampoline.node_id(),
		fee_msat: policy.fee_msat(AMOUNT_MSAT),
		cltv_expiry_delta: policy.cltv_expiry_delta,
		async_payment: false,
	};
	let onion = trampoline_onion(&invoice.clone().into(), &[hop], wallet.best_block_height())
		.expect("onion");
	let events = wallet.subscribe();
	let send = OuterSend {
		payment_hash: hash_of(invoice),
		trampoline: trampoline.node_id(),
		trampoline_packet: onion.packet.to_bytes(),
		amount_msat: onion.first_amount_msat / 2,
		total_msat: onion.first_amount_msat,
		cltv_expiry_delta: onion.first_cltv_delta,
		outer_secret: PaymentSecret(rand::random()),
		payment_id: PaymentId(hash_of(invoice).0),
		retry: Retry::Attempts(0),
		max_routing_fee_msat: None,
		max_total_cltv_expiry_delta: None,
	};
	let state = (&**wallet.trampoline_sender(), TlvLayout::Spec, onion.shared_secrets.clone());
	let id = send_to_trampoline(&**wallet.channel_manager(), &send, Some(state)).expect("send");
	(id, events)
}

/// W pays over three channels to T, which pays R over two: three incoming
/// parts, one bucket, two outgoing parts. Then a bucket that never completes
/// times out with mpp_timeout and nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mpp_buckets_are_aggregated_resplit_and_time_out_when_incomplete() {
	// W's 45k channels carry about 40k each, so 100k takes all three; R
	// (ldk-node) lets 10% of a channel in flight, 70k of each 700k channel,
	// so T must split in two.
	const SMALL_CHANNEL_SAT: u64 = 45_000;
	const OUT_CHANNEL_SAT: u64 = 700_000;
	const MPP_AMOUNT_MSAT: u64 = 100_000_000;
	let mut net = RegtestNetwork::start().expect("regtest");
	let wallet = net.add_node("wallet").await.expect("wallet");
	let trampoline = net.add_node("trampoline").await.expect("trampoline");
	let recipient = common::start_ldk_node(&net, "recipient");
	net.fund(&[&wallet, &trampoline], 1).await.expect("fund");
	for _ in 0..3 {
		net.open_channel(&wallet, &trampoline, SMALL_CHANNEL_SAT, 0).await.expect("W-T");
	}
	for _ in 0..2 {
		open_private_to(&net, &trampoline, &recipient, OUT_CHANNEL_SAT).await;
	}
	common::sync_ldk_node(&recipient);
	wait_channels_usable(&[&wallet, &trampoline], 3).await;
	let policy = trampoline.config().trampoline.expect("harness nodes relay");
	let fee = policy.fee_msat(MPP_AMOUNT_MSAT);
	let before = (wallet.balances().lightning_sat, trampoline.balances().lightning_sat);

	let invoice = recipient_invoice(&recipient, MPP_AMOUNT_MSAT);
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, trampoline.node_id(), fee, policy.cltv_expiry_delta)
		.expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(
		paid.status,
		PaymentStatus::Succeeded,
		"{paid:?}: T answered {:?}, buckets {:?}",
		wallet.trampoline_failure(&hash_of(&invoice)),
		trampoline.trampoline().unwrap().core().buckets()
	);
	let received = common::wait_ldk_received(&recipient).await;
	assert_eq!(received, MPP_AMOUNT_MSAT);
	let buckets = trampoline.trampoline().unwrap().core().buckets();
	let [bucket] = buckets.as_slice() else { panic!("one bucket expected: {buckets:?}") };
	assert_eq!(bucket.payment_hash, hash_of(&invoice));
	assert_eq!(bucket.state, BucketStage::Relayed);
	assert_eq!(bucket.outer_total_msat, MPP_AMOUNT_MSAT + fee);
	assert_eq!(bucket.parts, 3, "one part per 45k channel");
	// Neither of R's channels could take it alone: both carried a part.
	let r_channels = recipient.list_channels();
	assert_eq!(r_channels.len(), 2);
	// T's side of each fell by more than 10k sat (reserve aside).
	assert!(
		r_channels.iter().all(|c| {
			c.inbound_capacity_msat
				+ c.counterparty_unspendable_punishment_reserve * 1000
				+ 10_000_000 < c.channel_value_sats * 1000
		}),
		"{r_channels:?}"
	);
	wait_lightning_balance(&wallet, before.0 - (MPP_AMOUNT_MSAT + fee) / 1000).await;
	wait_lightning_balance(&trampoline, before.1 + fee / 1000).await;

	// One part of a payment announced twice as large: T waits for the rest,
	// then LDK's MPP timer (three ticks) fails it with mpp_timeout.
	let before = (wallet.balances().lightning_sat, trampoline.balances().lightning_sat);
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let (id, events) = send_half(&wallet, &trampoline, &policy, &invoice);
	tick_until_failed(&trampoline, events, id).await;
	assert_eq!(
		wallet.trampoline_failure(&hash_of(&invoice)),
		Some(TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::MppTimeout
		})
	);
	assert_eq!(failures(&trampoline, &hash_of(&invoice)), vec![FailureMessage::MppTimeout]);
	for node in [&wallet, &trampoline] {
		wait_no_htlcs(node).await;
	}
	assert_eq!(wallet.balances().lightning_sat, before.0);
	assert_eq!(trampoline.balances().lightning_sat, before.1);
	assert!(recipient.next_event().is_none(), "R saw nothing of the incomplete payment");
}

/// Waits until `node`'s relay has a bucket for `hash` at `stage`.
async fn wait_bucket(node: &Node, hash: PaymentHash, stage: BucketStage) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while relayed(node, hash) != vec![stage] {
		assert!(tokio::time::Instant::now() < deadline, "bucket {:?}", relayed(node, hash));
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

/// A hold invoice of R's: R reports the payment claimable and waits for the
/// test to claim or fail it.
fn hold_invoice(
	recipient: &ldk_node::Node, preimage: [u8; 32],
) -> (lightning_invoice::Bolt11Invoice, ldk_node::lightning_types::payment::PaymentHash) {
	use bitcoin::hashes::sha256;
	let hash = ldk_node::lightning_types::payment::PaymentHash(
		sha256::Hash::hash(&preimage).to_byte_array(),
	);
	let description = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
		ldk_node::lightning_invoice::Description::new("held".into()).unwrap(),
	);
	let invoice = recipient
		.bolt11_payment()
		.receive_for_hash(AMOUNT_MSAT, &description, 3600, hash)
		.expect("hold invoice");
	(invoice.to_string().parse().unwrap(), hash)
}

/// T stops and starts again at each step of a relay, and each ends as it
/// must: a bucket with parts received still times out with mpp_timeout; an
/// outgoing payment in flight whose preimage arrives while T is down is
/// claimed on both sides; one that fails while T is down is failed back to
/// W with the recipient's error; one whose preimage T knows but cannot yet
/// give W (W away) is given after T's restart; one whose preimage T finds
/// on-chain after the restart is claimed from W. Nothing is lost, nothing
/// stays stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_survives_restarts_at_each_step() {
	let Network { mut net, wallet, trampoline, recipient, policy } = network().await;
	let fee = policy.fee_msat(AMOUNT_MSAT);
	let before = (wallet.balances().lightning_sat, trampoline.balances().lightning_sat);

	// 1. Parts received: half of a payment waits in its bucket across a
	// restart, then times out; the failure is wrapped with the secrets T
	// wrote before it acted.
	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let hash = hash_of(&invoice);
	let (id, events) = send_half(&wallet, &trampoline, &policy, &invoice);
	wait_bucket(&trampoline, hash, BucketStage::Receiving).await;
	let trampoline = net.restart(&trampoline).await.expect("restart");
	wait_channels_usable(&[&wallet, &trampoline], 1).await;
	assert_eq!(relayed(&trampoline, hash), vec![BucketStage::Receiving]);
	tick_until_failed(&trampoline, events, id).await;
	assert_eq!(
		wallet.trampoline_failure(&hash),
		Some(TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::MppTimeout
		})
	);
	wait_bucket(&trampoline, hash, BucketStage::Failed).await;

	// 2. Outbound in flight: R holds T's HTLC; T stops; R claims while T is
	// down; T comes back, learns the preimage and claims W's HTLC.
	let preimage: [u8; 32] = rand::random();
	let (invoice, r_hash) = hold_invoice(&recipient, preimage);
	let hash = hash_of(&invoice);
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, trampoline.node_id(), fee, policy.cltv_expiry_delta)
		.expect("pay");
	let claimable = common::wait_ldk_event(&recipient, DEADLINE, "R holds the HTLC", |e| match e {
		ldk_node::Event::PaymentClaimable { claimable_amount_msat, .. } => {
			Some(*claimable_amount_msat)
		},
		_ => None,
	})
	.await;
	assert_eq!(claimable, AMOUNT_MSAT);
	assert_eq!(relayed(&trampoline, hash), vec![BucketStage::Sending]);
	let stopped = net.stop(&trampoline).await.expect("stop");
	recipient
		.bolt11_payment()
		.claim_for_hash(
			r_hash,
			AMOUNT_MSAT,
			ldk_node::lightning_types::payment::PaymentPreimage(preimage),
		)
		.expect("claim");
	let trampoline = net.start_again(stopped).await.expect("start");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	wait_bucket(&trampoline, hash, BucketStage::Relayed).await;
	wait_lightning_balance(&wallet, before.0 - (AMOUNT_MSAT + fee) / 1000).await;
	wait_lightning_balance(&trampoline, before.1 + fee / 1000).await;

	// 3. Failure pending: R holds, T stops, R fails the payment while T is
	// down; T comes back and fails W's HTLC with R's answer.
	let (invoice, r_hash) = hold_invoice(&recipient, rand::random());
	let hash = hash_of(&invoice);
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, trampoline.node_id(), fee, policy.cltv_expiry_delta)
		.expect("pay");
	common::wait_ldk_event(&recipient, DEADLINE, "R holds the HTLC", |e| {
		matches!(e, ldk_node::Event::PaymentClaimable { .. }).then_some(())
	})
	.await;
	let stopped = net.stop(&trampoline).await.expect("stop");
	recipient.bolt11_payment().fail_for_hash(r_hash).expect("fail");
	let trampoline = net.start_again(stopped).await.expect("start");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert!(matches!(failed.status, PaymentStatus::Failed { .. }), "{failed:?}");
	assert!(
		matches!(
			wallet.trampoline_failure(&hash),
			Some(TrampolineFailure {
				hop: FailingHop::Trampoline(0),
				message: FailureMessage::IncorrectOrUnknownPaymentDetails { .. }
			})
		),
		"{:?}",
		wallet.trampoline_failure(&hash)
	);
	wait_bucket(&trampoline, hash, BucketStage::Failed).await;
	for node in [&wallet, &trampoline] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&wallet, before.0 - (AMOUNT_MSAT + fee) / 1000).await;
	wait_lightning_balance(&trampoline, before.1 + fee / 1000).await;

	// 4. Preimage known, incoming not yet claimed: W goes away while R
	// holds; R claims, T learns the preimage but cannot give it to W; T
	// stops and starts again with that claim pending; W comes back and is
	// paid.
	let preimage: [u8; 32] = rand::random();
	let (invoice, r_hash) = hold_invoice(&recipient, preimage);
	let hash = hash_of(&invoice);
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, trampoline.node_id(), fee, policy.cltv_expiry_delta)
		.expect("pay");
	common::wait_ldk_event(&recipient, DEADLINE, "R holds the HTLC", |e| {
		matches!(e, ldk_node::Event::PaymentClaimable { .. }).then_some(())
	})
	.await;
	let wallet_stopped = net.stop(&wallet).await.expect("stop W");
	let preimage = ldk_node::lightning_types::payment::PaymentPreimage(preimage);
	recipient.bolt11_payment().claim_for_hash(r_hash, AMOUNT_MSAT, preimage).expect("claim");
	wait_bucket(&trampoline, hash, BucketStage::Relayed).await;
	let trampoline = net.restart(&trampoline).await.expect("restart T");
	let wallet = net.start_again(wallet_stopped).await.expect("start W");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(paid.preimage, Some(preimage.0.to_lower_hex_string()));
	for node in [&wallet, &trampoline] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&wallet, before.0 - 2 * (AMOUNT_MSAT + fee) / 1000).await;
	wait_lightning_balance(&trampoline, before.1 + 2 * fee / 1000).await;

	// 5. Preimage learned on-chain: R holds, T stops, R claims and closes
	// the channel to T by force, its HTLC-success transaction showing the
	// preimage on-chain. T comes back, finds the preimage in a block and
	// claims W's HTLC off-chain.
	let preimage: [u8; 32] = rand::random();
	let (invoice, r_hash) = hold_invoice(&recipient, preimage);
	let hash = hash_of(&invoice);
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, trampoline.node_id(), fee, policy.cltv_expiry_delta)
		.expect("pay");
	common::wait_ldk_event(&recipient, DEADLINE, "R holds the HTLC", |e| {
		matches!(e, ldk_node::Event::PaymentClaimable { .. }).then_some(())
	})
	.await;
	let stopped = net.stop(&trampoline).await.expect("stop");
	let preimage = ldk_node::lightning_types::payment::PaymentPreimage(preimage);
	recipient.bolt11_payment().claim_for_hash(r_hash, AMOUNT_MSAT, preimage).expect("claim");
	let channel = recipient.list_channels().into_iter().next().expect("R's channel to T");
	recipient
		.force_close_channel(&channel.user_channel_id, channel.counterparty_node_id, None)
		.expect("force close");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("R's commitment broadcast");
	let trampoline = net.start_again(stopped).await.expect("start");
	assert_eq!(relayed(&trampoline, hash), vec![BucketStage::Sending]);
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while wallet.payment(&id).is_some_and(|p| p.status == PaymentStatus::Pending) {
		assert!(tokio::time::Instant::now() < deadline, "T never learned the preimage");
		net.mine(1).await.expect("mine");
		common::sync_ldk_node(&recipient);
		tokio::time::sleep(Duration::from_millis(200)).await;
	}
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	assert_eq!(paid.preimage, Some(preimage.0.to_lower_hex_string()));
	wait_bucket(&trampoline, hash, BucketStage::Relayed).await;
	wait_no_htlcs(&wallet).await;
	wait_lightning_balance(&wallet, before.0 - 3 * (AMOUNT_MSAT + fee) / 1000).await;
}

/// Interop with a trampoline sender we did not write: W's own LDK
/// `ChannelManager` builds the onion (`send_payment_with_route`, a route
/// whose `BlindedTail` lists the trampolines T and R). LDK 0.2.7 only builds
/// trampoline onions ending in a blinded path whose introduction node is the
/// last trampoline, here R's one-hop path from its BOLT 12 invoice (R has a
/// public channel, so its paths start at itself). T relays to R as a next
/// trampoline; R's LDK receives the trampoline payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_ldk_sender_pays_through_trampoline() {
	use lightning::blinded_path::IntroductionNode;
	use lightning::ln::channelmanager::RecipientOnionFields;
	use lightning::routing::router::{BlindedTail, Path, Route, RouteHop, TrampolineHop};
	use lightning::types::features::{ChannelFeatures, NodeFeatures};

	let Network { net: _net, wallet, trampoline, recipient, policy } = network_with(true).await;
	connect_recipient_to_wallet(&recipient, &wallet);

	// R's one-hop path: announced, its only peer has fewer than three
	// channels. Wait until R sees its own channel announced.
	let deadline = tokio::time::Instant::now() + DEADLINE;
	let invoice = loop {
		let offer = recipient.bolt12_payment().receive(AMOUNT_MSAT, "stock", None, None);
		let offer: lightning::offers::offer::Offer =
			offer.expect("offer").to_string().parse().expect("parse");
		let invoice = wallet.fetch_offer_invoice(&offer, None, DEADLINE).await.expect("invoice");
		let one_hop = invoice
			.payment_paths()
			.iter()
			.any(|p| p.introduction_node() == &IntroductionNode::NodeId(recipient.node_id()));
		if one_hop {
			break invoice;
		}
		assert!(tokio::time::Instant::now() < deadline, "R's invoice never had a one-hop path");
		tokio::time::sleep(Duration::from_millis(500)).await;
	};
	let path = invoice
		.payment_paths()
		.iter()
		.find(|p| p.introduction_node() == &IntroductionNode::NodeId(recipient.node_id()))
		.expect("one-hop path");
	let r_fee = u64::from(path.payinfo.fee_base_msat)
		+ AMOUNT_MSAT * u64::from(path.payinfo.fee_proportional_millionths) / 1_000_000;
	let t_fee = policy.fee_msat(AMOUNT_MSAT + r_fee);
	let w_t = wallet
		.channel_manager()
		.list_usable_channels()
		.into_iter()
		.find(|c| c.counterparty.node_id == trampoline.node_id())
		.and_then(|c| c.short_channel_id)
		.expect("W-T channel");
	let route = Route {
		paths: vec![Path {
			hops: vec![RouteHop {
				pubkey: trampoline.node_id(),
				node_features: NodeFeatures::empty(),
				short_channel_id: w_t,
				channel_features: ChannelFeatures::empty(),
				// Every trampoline's fee: the HTLC then carries the outer total.
				fee_msat: t_fee + r_fee,
				cltv_expiry_delta: 0,
				maybe_announced_channel: true,
			}],
			blinded_tail: Some(BlindedTail {
				trampoline_hops: vec![
					TrampolineHop {
						pubkey: trampoline.node_id(),
						node_features: NodeFeatures::empty(),
						fee_msat: t_fee,
						cltv_expiry_delta: u32::from(policy.cltv_expiry_delta),
					},
					TrampolineHop {
						pubkey: recipient.node_id(),
						node_features: NodeFeatures::empty(),
						fee_msat: r_fee,
						cltv_expiry_delta: u32::from(path.payinfo.cltv_expiry_delta),
					},
				],
				hops: path.blinded_hops().to_vec(),
				blinding_point: path.blinding_point(),
				excess_final_cltv_expiry_delta: 0,
				final_value_msat: AMOUNT_MSAT,
			}),
		}],
		route_params: None,
	};
	let w_before = wallet.balances().lightning_sat;
	let t_before = trampoline.balances().lightning_sat;
	let hash = invoice.payment_hash();
	let events = wallet.subscribe();
	wallet
		.channel_manager()
		.send_payment_with_route(
			route,
			hash,
			// No outer secret, as in LDK's own trampoline tests: T takes the
			// HTLC as a payment of its own.
			RecipientOnionFields::spontaneous_empty(),
			PaymentId(hash.0),
		)
		.expect("LDK sends");
	wallet
		.wait_for_event(events, DEADLINE, "W's LDK payment", |e| match e {
			NodeEvent::PaymentSent { payment_hash, .. } if *payment_hash == hash => Some(()),
			NodeEvent::PaymentFailed { payment_id, reason } if payment_id.0 == hash.0 => {
				panic!("the stock LDK trampoline payment failed: {reason}")
			},
			_ => None,
		})
		.await
		.expect("sent");
	let received = common::wait_ldk_event(&recipient, DEADLINE, "R paid", |e| match e {
		ldk_node::Event::PaymentReceived { amount_msat, payment_hash, .. } => {
			Some((*amount_msat, payment_hash.0))
		},
		_ => None,
	})
	.await;
	assert_eq!(received, (AMOUNT_MSAT + r_fee, hash.0));
	assert_eq!(relayed(&trampoline, hash), vec![BucketStage::Relayed]);
	wait_lightning_balance(&wallet, w_before - (AMOUNT_MSAT + r_fee + t_fee) / 1000).await;
	wait_lightning_balance(&trampoline, t_before + t_fee / 1000).await;
}

/// Stops R, has W pay R's invoice through T, and waits until T holds it.
async fn pay_offline_recipient(
	wallet: &Node, trampoline: &Node, recipient: &ldk_node::Node, policy: &TrampolinePolicy,
) -> (lightning_invoice::Bolt11Invoice, PaymentId, PaymentHash) {
	let invoice = recipient_invoice(recipient, AMOUNT_MSAT);
	let hash = hash_of(&invoice);
	recipient.stop().expect("R stops");
	common::wait_peer_offline(trampoline, recipient.node_id()).await;
	let fee = policy.fee_msat(AMOUNT_MSAT);
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, trampoline.node_id(), fee, policy.cltv_expiry_delta)
		.expect("pay");
	wait_bucket(trampoline, hash, BucketStage::Held).await;
	(invoice, id, hash)
}

/// `node`'s listing of `hash`'s outgoing payment.
fn partial_payment(node: &Node, hash: PaymentHash) -> PartialPayment {
	let listed = node.list_partial_payments();
	let found = listed.iter().find(|p| p.payment_hash.as_deref() == Some(&hash.to_string()));
	found.cloned().unwrap_or_else(|| panic!("no payment of {hash} listed: {listed:?}"))
}

/// The short channel id of `node`'s channel with `peer`, `BLOCKxTXxOUTPUT`.
fn channel_scid_with(node: &Node, peer: &Node) -> String {
	let peer = peer.node_id().to_string();
	let channel = node.list_channels().into_iter().find(|c| c.counterparty == peer);
	let scid = channel.and_then(|c| c.short_channel_id).expect("a confirmed channel");
	ldk_trampoline::node::format_scid(scid)
}

/// `wallet`'s payment of `hash`, pending with one part in flight on its
/// channel to `trampoline`.
fn in_flight_part(wallet: &Node, trampoline: &Node, hash: PaymentHash) -> OutgoingPart {
	let payment = partial_payment(wallet, hash);
	assert_eq!(payment.state, "pending", "{payment:?}");
	assert_eq!(payment.parts.len(), 1, "{payment:?}");
	let part = payment.parts[0].clone();
	assert!(matches!(part.state, PartState::InFlight { .. }), "{payment:?}");
	assert_eq!(part.path, vec![channel_scid_with(wallet, trampoline)], "{payment:?}");
	part
}

/// R is offline: T holds the complete bucket (nothing forwarded), tells the
/// operator (event + signed LSPS5 webhook call), keeps it held across its
/// own restart, and forwards it when R is back. A second
/// payment while R stays offline is failed back at the hold deadline with
/// temporary_trampoline_failure, and nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trampoline_holds_for_an_offline_recipient() {
	let (webhook, mut wake_calls) = common::wake_webhook().await;
	let Network { mut net, wallet, trampoline, recipient, policy } =
		network_configured(false, |config| config.wake_webhook = Some(webhook)).await;
	let fee = policy.fee_msat(AMOUNT_MSAT);
	let before = (wallet.balances().lightning_sat, trampoline.balances().lightning_sat);
	let events = trampoline.subscribe();
	let (_, id, hash) = pay_offline_recipient(&wallet, &trampoline, &recipient, &policy).await;

	// The operator is told: an event, and a signed LSPS5 call to the webhook
	// that LDK's own LSPS5 client validator accepts as from T.
	let held = trampoline
		.wait_for_event(events, DEADLINE, "the held event", |e| match e {
			NodeEvent::PaymentHeld { held } => Some(held.clone()),
			_ => None,
		})
		.await
		.expect("held event");
	assert_eq!(held.payment_hash, hash.to_string());
	assert_eq!(held.next_node, recipient.node_id().to_string());
	common::expect_wake_call(
		&mut wake_calls,
		WebhookNotification::payment_incoming(),
		trampoline.node_id(),
	)
	.await;
	// W's operator sees the payment pending with its one part in flight
	// on W's channel to T, and T's sees no partial payment in (the bucket
	// is complete: held, not receiving).
	let part = in_flight_part(&wallet, &trampoline, hash);
	assert_eq!(part.amount_msat, AMOUNT_MSAT + fee, "{part:?}");
	assert!(trampoline.list_partial_invoices().is_empty());
	let core = trampoline.trampoline().unwrap().core();
	assert_eq!(core.stats().held, 1);
	let held = core.held();
	assert_eq!(held.len(), 1, "{held:?}");
	assert_eq!(held[0].payment_hash, hash.to_string());
	assert_eq!(held[0].next_node, recipient.node_id().to_string());
	assert_eq!(held[0].amount_msat, AMOUNT_MSAT + policy.fee_msat(AMOUNT_MSAT));
	assert!(held[0].deadline_height > trampoline.best_block_height(), "{held:?}");
	let trampoline = net.restart(&trampoline).await.expect("restart");
	assert_eq!(relayed(&trampoline, hash), vec![BucketStage::Held]);
	assert_eq!(wallet.payment(&id).expect("record").status, PaymentStatus::Pending);

	recipient.start().expect("R is back");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let received = common::wait_ldk_received(&recipient).await;
	assert_eq!(received, AMOUNT_MSAT);
	wait_bucket(&trampoline, hash, BucketStage::Relayed).await;
	wait_lightning_balance(&wallet, before.0 - (AMOUNT_MSAT + fee) / 1000).await;
	wait_lightning_balance(&trampoline, before.1 + fee / 1000).await;

	// R goes away for good (once the first payment settled on T-R): at the
	// deadline T fails the held bucket back.
	wait_no_htlcs(&trampoline).await;
	let (invoice, id, hash) =
		pay_offline_recipient(&wallet, &trampoline, &recipient, &policy).await;
	let min_final = u32::try_from(invoice.min_final_cltv_expiry_delta()).expect("delta");
	net.mine(min_final + ldk_trampoline::sender::FINAL_CLTV_MARGIN).await.expect("mine");
	let failed = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert!(matches!(failed.status, PaymentStatus::Failed { .. }), "{failed:?}");
	assert_eq!(
		wallet.trampoline_failure(&hash),
		Some(TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::TemporaryTrampolineFailure
		})
	);
	wait_bucket(&trampoline, hash, BucketStage::Failed).await;
	for node in [&wallet, &trampoline] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&wallet, before.0 - (AMOUNT_MSAT + fee) / 1000).await;
	wait_lightning_balance(&trampoline, before.1 + fee / 1000).await;
}

/// A payer that flags `async_payment` toward a node id nobody knows (to tie
/// up T's inbound liquidity until the CLTV deadline) gets at most
/// `max_held_per_peer` payments held: the next is failed back at once with
/// temporary_trampoline_failure; the held one is failed back at its
/// deadline; nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_payment_holds_are_bounded_per_payer() {
	use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
	let Network { net, wallet, trampoline, recipient, policy } =
		network_configured(false, |config| config.trampoline_limits.max_held_per_peer = 1).await;
	let before = (wallet.balances().lightning_sat, trampoline.balances().lightning_sat);
	let nobody =
		PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[0x42; 32]).unwrap());
	let route = [
		TrampolineRouteHop {
			node_id: trampoline.node_id(),
			fee_msat: policy.fee_msat(AMOUNT_MSAT),
			cltv_expiry_delta: policy.cltv_expiry_delta,
			async_payment: false,
		},
		TrampolineRouteHop {
			node_id: nobody,
			fee_msat: 0,
			cltv_expiry_delta: 144,
			async_payment: true,
		},
	];
	let first = recipient_invoice(&recipient, AMOUNT_MSAT);
	let first_id = wallet.pay_invoice_via_trampolines(&first, &route).expect("pay");
	wait_bucket(&trampoline, hash_of(&first), BucketStage::Held).await;

	let second = recipient_invoice(&recipient, AMOUNT_MSAT);
	let second_id = wallet.pay_invoice_via_trampolines(&second, &route).expect("pay");
	let failed = wallet.wait_for_payment(second_id, DEADLINE).await.expect("outcome");
	assert!(matches!(failed.status, PaymentStatus::Failed { .. }), "{failed:?}");
	let refused = TrampolineFailure {
		hop: FailingHop::Trampoline(0),
		message: FailureMessage::TemporaryTrampolineFailure,
	};
	assert_eq!(wallet.trampoline_failure(&hash_of(&second)), Some(refused.clone()));
	let core = trampoline.trampoline().expect("relay on").core();
	let held = core.held();
	assert_eq!(held.len(), 1, "{held:?}");
	assert_eq!(held[0].payment_hash, hash_of(&first).to_string());
	assert_eq!(wallet.payment(&first_id).expect("record").status, PaymentStatus::Pending);

	// At its deadline the held one is failed back too.
	let blocks = held[0].deadline_height.saturating_sub(trampoline.best_block_height()) + 1;
	net.mine(blocks).await.expect("mine");
	let failed = wallet.wait_for_payment(first_id, DEADLINE).await.expect("outcome");
	assert!(matches!(failed.status, PaymentStatus::Failed { .. }), "{failed:?}");
	assert_eq!(wallet.trampoline_failure(&hash_of(&first)), Some(refused));
	for node in [&wallet, &trampoline] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&wallet, before.0).await;
	wait_lightning_balance(&trampoline, before.1).await;
	assert_eq!(core.stats().held, 0);
}

/// Issue 12 (kill -9 paragraph): a payment sent right after T comes back,
/// before W (reconnecting at most every 5 s, as a wallet's default) has
/// its channel to T again, failed at once with RouteNotFound. W now calls
/// T back at once and sends once the channel is reestablished: the payment
/// succeeds, R gets the amount, T its fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_sent_right_after_the_trampoline_restarts_succeeds() {
	let Network { mut net, wallet, trampoline, recipient, policy } =
		network_of(false, |w| w.reconnect_interval = Duration::from_secs(5), |_| {}).await;
	let fee_msat = policy.fee_msat(AMOUNT_MSAT);
	let (w_before, t_before) =
		(wallet.balances().lightning_sat, trampoline.balances().lightning_sat);
	let t_id = trampoline.node_id();
	let stopped = net.stop(&trampoline).await.expect("stop T");
	common::wait_peer_offline(&wallet, t_id).await;
	let trampoline = net.start_again(stopped).await.expect("start T");
	let usable = wallet.list_channels().iter().any(|c| c.usable);
	println!("W's channel to T usable when the payment is sent: {usable}");

	let invoice = recipient_invoice(&recipient, AMOUNT_MSAT);
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, t_id, fee_msat, policy.cltv_expiry_delta)
		.expect("pay right after T restarts");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	let received = common::wait_ldk_received(&recipient).await;
	assert_eq!(received, AMOUNT_MSAT);
	wait_lightning_balance(&wallet, w_before - (AMOUNT_MSAT + fee_msat) / 1000).await;
	wait_lightning_balance(&trampoline, t_before + fee_msat / 1000).await;
}

/// "An existing node": `examples/relay_node` composes LDK's parts by hand
/// (no `ldk_trampoline::node::Node`) and enables the plugin through
/// `Plugin::builder`. W pays R's invoice through it; then an offer of too
/// low a fee is refused with NODE|26 (the relay's checks are on, not a
/// plain pass-through). X's side of its channels grows by exactly its fee.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hand_composed_ldk_node_relays_through_the_plugin_builder() {
	let mut net = RegtestNetwork::start().expect("regtest");
	let wallet = net.add_node("wallet").await.expect("wallet");
	let recipient = net.add_node("recipient").await.expect("recipient");
	let rpc = net.bitcoind().rpc_config();
	let ldk_trampoline::node::RpcAuth::UserPass { user, password } = rpc.auth else {
		panic!("the harness's bitcoind takes a user and password");
	};
	let policy = TrampolinePolicy::default();
	let relay = relay_node::start(relay_node::RelayNodeConfig {
		data_dir: net.dir().join("relay_node"),
		bitcoind: (format!("{}:{}", rpc.host, rpc.port).parse().expect("address"), user, password),
		listen: "127.0.0.1:0".parse().expect("address"),
		trampoline: policy,
	})
	.await
	.expect("the example node starts");
	net.fund(&[&wallet, &recipient], 1).await.expect("fund");
	let (x, x_addr) = (relay.node_id(), relay.listen_addr());
	net.open_channel_to(&wallet, x, x_addr, CHANNEL_SAT, 0, false).await.expect("W-X");
	// R opens to X pushing half: X's side of X-R is what it relays with.
	let push_msat = CHANNEL_SAT * 1000 / 2;
	net.open_channel_to(&recipient, x, x_addr, CHANNEL_SAT, push_msat, false).await.expect("R-X");
	wait_channels_usable(&[&wallet, &recipient], 1).await;
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while !(relay.list_channels().len() == 2 && relay.list_channels().iter().all(|c| c.is_usable)) {
		assert!(tokio::time::Instant::now() < deadline, "X's channels not usable");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}

	let (w_before, r_before) =
		(wallet.balances().lightning_sat, recipient.balances().lightning_sat);
	// X funded neither channel: no commitment fee of its own to count.
	let x_before = relay.lightning_balance_sat();
	let fee_msat = policy.fee_msat(AMOUNT_MSAT);
	let invoice = recipient.create_invoice(Some(AMOUNT_MSAT), "via X", 3600).expect("invoice");
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, x, fee_msat, policy.cltv_expiry_delta)
		.expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");
	wait_lightning_balance(&recipient, r_before + AMOUNT_MSAT / 1000).await;
	wait_lightning_balance(&wallet, w_before - (AMOUNT_MSAT + fee_msat) / 1000).await;
	assert_eq!(relay.relayed(), (1, 0), "X's relay relayed it");
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while relay.lightning_balance_sat() != x_before + fee_msat / 1000 {
		let now = relay.lightning_balance_sat();
		assert!(tokio::time::Instant::now() < deadline, "X has {now} sat, not {x_before} + fee");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}

	// Too low a fee: X refuses with the spec's fee_insufficient (NODE|26).
	let invoice = recipient.create_invoice(Some(AMOUNT_MSAT), "via X, cheaply", 3600).unwrap();
	let id = wallet
		.pay_invoice_via_trampoline(&invoice, x, fee_msat - 1, policy.cltv_expiry_delta)
		.expect("pay");
	let paid = wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert!(matches!(paid.status, PaymentStatus::Failed { .. }), "{paid:?}");
	let fee_insufficient = FailureMessage::TrampolineFeeOrExpiryInsufficient {
		fee_base_msat: policy.fee_base_msat,
		fee_proportional_millionths: policy.fee_proportional_millionths,
		cltv_expiry_delta: policy.cltv_expiry_delta,
	};
	assert_eq!(
		wallet.trampoline_failure(&hash_of(&invoice)),
		Some(TrampolineFailure { hop: FailingHop::Trampoline(0), message: fee_insufficient })
	);
	assert_eq!(relay.relayed(), (1, 1));
	assert_eq!(
		relay.lightning_balance_sat(),
		x_before + fee_msat / 1000,
		"the refusal moved nothing"
	);
	wait_lightning_balance(&recipient, r_before + AMOUNT_MSAT / 1000).await;
	wait_lightning_balance(&wallet, w_before - (AMOUNT_MSAT + fee_msat) / 1000).await;
	relay.stop().await.expect("the example node stops");
}
