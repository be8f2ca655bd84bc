//! Static invoice server end to end on a real regtest bitcoind: our node S
//! serves the static invoices of an often-offline ldk-node 0.7.1 recipient R
//! (AsyncPaymentsRole::Client), and an ldk-node payer P gets R's invoice from
//! S while R is offline and pays it when R is back; then the sender's LSP
//! hold, where a mobile payer's HTLC waits at its LSP.
//!
//! P --public--> S --private--> R, both channels opened by S (the first
//! tests); P -private- S (holds) -public- L (serves) -private- R (the hold
//! tests).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::Secp256k1;
use ldk_node::config::AsyncPaymentsRole;
use ldk_trampoline::htlc_hold::{HeldHtlcSummary, HoldEvent, HtlcHoldPolicy};
use ldk_trampoline::node::{Node, NodeEvent};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::static_invoices::{StaticInvoicePolicy, StaticInvoiceStats};
use lightning::blinded_path::message::{AsyncPaymentsContext, BlindedMessagePath, MessageContext};
use lightning::ln::channelmanager::InterceptId;
use lightning::onion_message::async_payments::{AsyncPaymentsMessage, ReleaseHeldHtlc};
use lightning::onion_message::messenger::{Destination, MessageSendInstructions};
use lightning::routing::gossip::NodeId;
use lightning::sign::{RandomBytes, ReceiveAuthKey};
use lightning_liquidity::lsps5::msgs::WebhookNotification;

const CHANNEL_SAT: u64 = 1_000_000;
const AMOUNT_MSAT: u64 = 5_000_000;
const RECIPIENT_ID: &[u8] = b"recipient-r";

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while !done() {
		assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

fn stats(server: &Node) -> StaticInvoiceStats {
	server.static_invoice_server().expect("server role on").core().stats()
}

struct TestNet {
	_net: RegtestNetwork,
	server: Arc<Node>,
	payer: Arc<ldk_node::Node>,
	recipient: Arc<ldk_node::Node>,
}

async fn network() -> TestNet {
	let (net, server, payer, mut recipients) =
		network_with(StaticInvoicePolicy::default(), &["recipient"]).await;
	let recipient = recipients.remove(0);
	TestNet { _net: net, server, payer, recipient }
}

/// S serving static invoices under `policy`, a payer P and async
/// recipients (ldk-node clients) named `recipients`, each on a private
/// channel from S.
async fn network_with(
	policy: StaticInvoicePolicy, recipients: &[&str],
) -> (RegtestNetwork, Arc<Node>, Arc<ldk_node::Node>, Vec<Arc<ldk_node::Node>>) {
	let mut net = RegtestNetwork::start().expect("regtest");
	let mut config = net.node_config("server");
	config.static_invoice_server = Some(policy);
	let server = net.add_node_with(config).await.expect("server");
	let payer = common::start_ldk_node(&net, "payer");
	let recipients: Vec<_> = recipients
		.iter()
		.map(|name| common::start_ldk_node_with_role(&net, name, Some(AsyncPaymentsRole::Client)))
		.collect();
	net.fund(&[&server], 1 + recipients.len() as u32).await.expect("fund");
	// S-P is announced: LDK builds S's blinded message paths with S as the
	// introduction node only once S is a public node in its own graph.
	let peers = std::iter::once((&payer, CHANNEL_SAT * 500, true))
		.chain(recipients.iter().map(|r| (r, 0, false)));
	for (peer, push_msat, announce) in peers {
		common::open_channel_to_ldk_node(&net, &server, peer, CHANNEL_SAT, push_msat, announce)
			.await;
	}
	wait_until("usable channels", || server.list_channels().iter().all(|c| c.usable)).await;
	let s_id = NodeId::from_pubkey(&server.node_id());
	wait_until("S in its own graph", || {
		server.network_graph().read_only().nodes().contains_key(&s_id)
	})
	.await;
	(net, server, payer, recipients)
}

/// Registers `recipient` with S under `id` and waits for its async offer.
async fn register(
	server: &Node, recipient: &ldk_node::Node, id: &[u8],
) -> ldk_node::lightning::offers::offer::Offer {
	let paths = server
		.static_invoice_server()
		.expect("server role on")
		.paths_for_recipient(id.to_vec(), None)
		.expect("paths");
	recipient.bolt12_payment().set_paths_to_static_invoice_server(paths).expect("paths set");
	let mut offer = None;
	wait_until("the recipient's async offer", || {
		offer = recipient.bolt12_payment().receive_async().ok();
		offer.is_some()
	})
	.await;
	offer.expect("offer")
}

/// R registers with S and goes offline; P (a public node, which does not
/// hold at an LSP but waits online) fetches R's invoice from S; the
/// `held_htlc_available` P then sends R is held by S and delivered when R is
/// back; R releases and is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_recipient_is_paid_through_our_static_invoice() {
	let TestNet { _net, server, payer, recipient } = network().await;
	let hex_id: String = RECIPIENT_ID.iter().map(|b| format!("{b:02x}")).collect();

	// Registration: S hands R paths; R asks for offer paths and sends its invoices.
	let offer = register(&server, &recipient, RECIPIENT_ID).await;
	let listed = server.list_static_invoices();
	assert!(!listed.is_empty(), "R's offer is only usable once S confirmed an invoice");
	for invoice in &listed {
		assert_eq!(invoice.recipient_id, hex_id);
		assert!(invoice.slot < StaticInvoicePolicy::default().max_slots_per_recipient);
		assert!(invoice.size_bytes > 0);
		assert!(invoice.expires_at > invoice.stored_at);
	}
	assert_eq!(stats(&server).stored, listed.len() as u64);
	assert_eq!(stats(&server).served, 0);

	// R must be able to route its release to P (public) through S.
	let p_id = ldk_node::lightning::routing::gossip::NodeId::from_pubkey(&payer.node_id());
	wait_until("P's node announcement at R", || {
		recipient.network_graph().node(&p_id).is_some_and(|n| n.announcement_info.is_some())
	})
	.await;
	// R goes offline; P asks R's offer for an invoice and S answers with R's.
	recipient.stop().expect("R stops");
	wait_until("S to see R disconnect", || server.list_channels().iter().any(|c| !c.usable)).await;
	let payment_id = payer
		.bolt12_payment()
		.send_using_amount(&offer, AMOUNT_MSAT, None, None, None)
		.expect("pay");
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while stats(&server).served == 0 {
		let log = std::fs::read_to_string(server.config().data_dir.join("logs").join("ldk.log"))
			.unwrap_or_default();
		let lines: Vec<_> = log
			.lines()
			.filter(|l| {
				l.contains("tatic invoice")
					|| l.contains("nvoice request")
					|| l.contains("nion message")
			})
			.collect();
		assert!(
			tokio::time::Instant::now() < deadline,
			"S did not serve R's invoice: {:?}\n{}",
			stats(&server),
			lines[lines.len().saturating_sub(40)..].join("\n")
		);
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
	// P may retry its invoice request over another path: each is answered.
	assert!(stats(&server).served >= 1);
	// P got it and told R (through S, which holds the message for offline R)
	// that an HTLC awaits its release.
	let mailbox = server.static_invoice_server().expect("server role on").mailbox();
	wait_until("held_htlc_available held for R", || mailbox.held_for(&recipient.node_id()) > 0)
		.await;

	// R comes back: S delivers what it held for R on reconnection; R
	// answers P's `held_htlc_available` with `release_held_htlc` (routed to
	// P through S), and P, online all along, sends the HTLC.
	recipient.start().expect("R restarts");
	wait_until("S to deliver the held messages to R", || {
		mailbox.held_for(&recipient.node_id()) == 0
	})
	.await;
	assert_eq!(common::wait_ldk_received(&recipient).await, AMOUNT_MSAT);
	common::wait_ldk_event(&payer, DEADLINE, "P's payment to succeed", |e| match e {
		ldk_node::Event::PaymentSuccessful { payment_id: Some(id), .. } if *id == payment_id => {
			Some(())
		},
		_ => None,
	})
	.await;
}

/// Quotas and the rate limit on a real network: R1's invoices beyond its
/// slot quota are refused (one is kept, R1's offer works), a second
/// recipient R2 registers unaffected; a flood of invoice requests for R's
/// offer is cut by the rate limiter while R2's offer is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_and_rate_limits_hold_on_a_real_network() {
	// One slot per recipient (LDK recipients fill up to 10); a burst of 3
	// requests, then one an hour.
	let policy = StaticInvoicePolicy {
		max_slots_per_recipient: 1,
		rate_limit_burst: 3,
		rate_limit_refill: Duration::from_secs(3600),
		..StaticInvoicePolicy::default()
	};
	let (_net, server, payer, recipients) = network_with(policy, &["r1", "r2"]).await;
	let (r1, r2) = (&recipients[0], &recipients[1]);
	let offer1 = register(&server, r1, b"r1").await;
	let hex = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
	let stored = |id: &[u8]| {
		server.list_static_invoices().iter().filter(|i| i.recipient_id == hex(id)).count()
	};
	wait_until("R1's invoices beyond its quota refused", || stats(&server).refused > 0).await;
	assert_eq!(stored(b"r1"), 1, "{:?}", server.list_static_invoices());
	let offer2 = register(&server, r2, b"r2").await;
	assert_eq!(stored(b"r2"), 1, "R2 is held to its own quota, not R1's");

	// R1 and R2 go offline; P floods R1's offer with invoice requests.
	r1.stop().expect("R1 stops");
	r2.stop().expect("R2 stops");
	let before = stats(&server);
	for _ in 0..8 {
		payer
			.bolt12_payment()
			.send_using_amount(&offer1, AMOUNT_MSAT, None, None, None)
			.expect("pay");
	}
	wait_until("the flood to be cut", || stats(&server).rate_limited > before.rate_limited).await;
	let served_r1 = stats(&server).served - before.served;
	assert!(served_r1 <= u64::from(policy.rate_limit_burst), "{:?}", stats(&server));
	// R2's offer is still served.
	let served = stats(&server).served;
	payer.bolt12_payment().send_using_amount(&offer2, AMOUNT_MSAT, None, None, None).expect("pay");
	wait_until("R2's invoice served", || stats(&server).served > served).await;
}

/// The sender's LSP network of BOLTs PR 1149: P (ldk-node client) -private-
/// S (ours, holds `hold_htlc` HTLCs) -public- L (ours, static invoice server
/// and mailbox) -private- R (ldk-node client). LDK cannot hold an HTLC for
/// its own offline peer, so the holding node and the recipient's LSP differ.
struct HoldNet {
	net: RegtestNetwork,
	/// Calls to L's wake-up webhook.
	wake_calls: tokio::sync::mpsc::UnboundedReceiver<common::WakeCall>,
	lsp: Arc<Node>,
	server: Arc<Node>,
	payers: Vec<Arc<ldk_node::Node>>,
	recipient: Arc<ldk_node::Node>,
}

async fn hold_network(policy: HtlcHoldPolicy, payers: &[&str]) -> HoldNet {
	let mut net = RegtestNetwork::start().expect("regtest");
	let mut config = net.node_config("lsp");
	config.htlc_hold = Some(policy);
	let lsp = net.add_node_with(config).await.expect("lsp");
	let mut config = net.node_config("server");
	config.static_invoice_server = Some(StaticInvoicePolicy::default());
	let (webhook, wake_calls) = common::wake_webhook().await;
	config.wake_webhook = Some(webhook);
	let server = net.add_node_with(config).await.expect("server");
	let payers: Vec<_> = payers
		.iter()
		.map(|name| common::start_ldk_node_with_role(&net, name, Some(AsyncPaymentsRole::Client)))
		.collect();
	let recipient =
		common::start_ldk_node_with_role(&net, "recipient", Some(AsyncPaymentsRole::Client));
	net.fund(&[&lsp, &server], 1 + payers.len() as u32).await.expect("fund");
	net.open_channel(&lsp, &server, CHANNEL_SAT * 2, 0).await.expect("S-L");
	let private = payers
		.iter()
		.map(|p| (&lsp, p, CHANNEL_SAT * 500))
		.chain(std::iter::once((&server, &recipient, 0)));
	for (from, peer, push_msat) in private {
		common::open_channel_to_ldk_node(&net, from, peer, CHANNEL_SAT, push_msat, false).await;
	}
	for node in [&lsp, &server] {
		wait_until("usable channels", || node.list_channels().iter().all(|c| c.usable)).await;
		net.wait_for_gossip(node, 1).await.expect("S-L in the graph");
	}
	for payer in &payers {
		wait_until("S-L in the payer's graph", || {
			!payer.network_graph().list_channels().is_empty()
		})
		.await;
	}
	HoldNet { net, wake_calls, lsp, server, payers, recipient }
}

/// What S published about a held HTLC of `payer`'s.
fn hold_event_of(
	payer: &ldk_node::Node, kind: fn(&HoldEvent) -> Option<&HeldHtlcSummary>,
) -> impl FnMut(&NodeEvent) -> Option<HeldHtlcSummary> + '_ {
	move |e| match e {
		NodeEvent::HtlcHold { event } => {
			kind(event).filter(|h| h.peer == payer.node_id().to_string()).cloned()
		},
		_ => None,
	}
}

fn held(e: &HoldEvent) -> Option<&HeldHtlcSummary> {
	matches!(e, HoldEvent::Held(_)).then(|| e.summary())
}

async fn wait_payment_failed(
	payer: &ldk_node::Node, id: ldk_node::lightning::ln::channelmanager::PaymentId,
) {
	common::wait_ldk_event(payer, DEADLINE, "the payment to fail", |e| match e {
		ldk_node::Event::PaymentFailed { payment_id: Some(p), .. } if *p == id => Some(()),
		_ => None,
	})
	.await
}

async fn wait_lightning_balance(node: &ldk_node::Node, sat: u64) {
	wait_until("the lightning balance", || node.list_balances().total_lightning_balance_sats == sat)
		.await
}

/// R registers with L and goes offline; P pays R's offer: L serves R's
/// invoice, P's HTLC is held at S (recorded, listed, kept across a restart
/// of S), R comes back and releases it, and is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn htlc_held_at_the_senders_lsp_is_released_by_the_recipient() {
	let HoldNet { mut net, mut wake_calls, lsp, server, payers, recipient } =
		hold_network(HtlcHoldPolicy::default(), &["payer"]).await;
	let payer = &payers[0];
	let offer = register(&server, &recipient, RECIPIENT_ID).await;
	let r_before = recipient.list_balances().total_lightning_balance_sats;
	recipient.stop().expect("R stops");
	wait_until("L to see R disconnect", || server.list_channels().iter().any(|c| !c.usable)).await;

	let before = payer.list_balances().total_lightning_balance_sats;
	let events = lsp.subscribe();
	let payment_id = payer
		.bolt12_payment()
		.send_using_amount(&offer, AMOUNT_MSAT, None, None, None)
		.expect("pay");
	let held_htlc = lsp
		.wait_for_event(events, DEADLINE, "S to hold P's HTLC", hold_event_of(payer, held))
		.await
		.expect("held");
	assert!(held_htlc.amount_msat >= AMOUNT_MSAT, "{held_htlc:?}");
	assert!(held_htlc.deadline_height > lsp.best_block_height() + 84, "{held_htlc:?}");
	assert_eq!(lsp.list_held_htlcs(), vec![held_htlc.clone()]);
	// P told R (through L, which keeps the message while R is away).
	let mailbox = server.static_invoice_server().expect("server role on").mailbox();
	wait_until("held_htlc_available held for R", || mailbox.held_for(&recipient.node_id()) > 0)
		.await;
	assert!(payment_pending(payer, &payment_id));
	// L's operator is asked to wake R: a signed LSPS5 onion_message_incoming.
	common::expect_wake_call(
		&mut wake_calls,
		WebhookNotification::onion_message_incoming(),
		server.node_id(),
	)
	.await;

	// L forges a release for it (the right intercept id, over a path L built
	// itself): S's onion messenger finds it unauthenticated and drops it.
	forge_release(&server, &lsp, &held_htlc).await;
	assert_eq!(lsp.list_held_htlcs(), vec![held_htlc.clone()], "still held");
	assert!(payment_pending(payer, &payment_id));

	// S restarts while holding: the HTLC is still held and listed.
	let lsp = net.restart(&lsp).await.expect("S restarts");
	assert_eq!(lsp.list_held_htlcs(), vec![held_htlc.clone()]);
	wait_until("S reconnected", || {
		let channels = lsp.list_channels();
		channels.len() == 2 && channels.iter().all(|c| c.usable)
	})
	.await;

	// R comes back, gets P's held_htlc_available from L, releases the HTLC.
	let events = lsp.subscribe();
	recipient.start().expect("R restarts");
	assert_eq!(common::wait_ldk_received(&recipient).await, AMOUNT_MSAT);
	let hash = common::wait_ldk_event(payer, DEADLINE, "P's payment to succeed", |e| match e {
		ldk_node::Event::PaymentSuccessful { payment_id: Some(id), payment_hash, .. }
			if *id == payment_id =>
		{
			Some(payment_hash.to_string())
		},
		_ => None,
	})
	.await;
	assert_eq!(held_htlc.payment_hash, hash, "S listed the hash P paid");
	// S saw R's release (recorded before LDK forwarded), then forgot the
	// settled HTLC.
	let mut released = None;
	let gone = lsp
		.wait_for_event(events, DEADLINE, "S to release, then forget the HTLC", |e| {
			let NodeEvent::HtlcHold { event } = e else { return None };
			match event {
				HoldEvent::Released(h) => released = Some(h.clone()),
				HoldEvent::Settled(h) if released.is_some() => return Some(h.clone()),
				_ => {},
			}
			None
		})
		.await
		.expect("released, then settled");
	assert_eq!(gone.payment_hash, held_htlc.payment_hash);
	assert!(gone.reason.starts_with("released"), "{gone:?}");
	assert!(lsp.list_held_htlcs().is_empty());
	wait_lightning_balance(&recipient, r_before + AMOUNT_MSAT / 1000).await;
	let spent = before - payer.list_balances().total_lightning_balance_sats;
	assert!(spent >= AMOUNT_MSAT / 1000, "P spent {spent} sat");
}

/// `from` sends `to` a `release_held_htlc` naming `held` over a blinded
/// path `from` made (not `to`), and waits until `to` has dropped it.
async fn forge_release(from: &Node, to: &Node, held: &HeldHtlcSummary) {
	let mut intercept_id = [0; 32];
	for (i, byte) in intercept_id.iter_mut().enumerate() {
		*byte = u8::from_str_radix(&held.intercept_id[2 * i..2 * i + 2], 16).expect("hex");
	}
	let context = MessageContext::AsyncPayments(AsyncPaymentsContext::ReleaseHeldHtlc {
		intercept_id: InterceptId(intercept_id),
		prev_outbound_scid_alias: 0,
		htlc_id: 0,
	});
	let path = BlindedMessagePath::new(
		&[],
		to.node_id(),
		ReceiveAuthKey([42; 32]),
		context,
		&RandomBytes::new([7; 32]),
		&Secp256k1::new(),
	);
	let log_path = to.config().data_dir.join("logs").join("ldk.log");
	// The path's data is sealed with a key `to` never used: `to` cannot read
	// its hop data and drops the message.
	let count = |log: &str| log.matches("Unable to decode our hop data").count();
	let before = count(&std::fs::read_to_string(&log_path).unwrap_or_default());
	from.onion_messenger()
		.send_onion_message(
			AsyncPaymentsMessage::ReleaseHeldHtlc(ReleaseHeldHtlc {}),
			MessageSendInstructions::WithoutReplyPath {
				destination: Destination::BlindedPath(path),
			},
		)
		.expect("sent");
	wait_until("S to drop the forged release", || {
		count(&std::fs::read_to_string(&log_path).unwrap_or_default()) > before
	})
	.await;
}

/// The log of the ldk-node called `name`.
fn ldk_node_log(net: &RegtestNetwork, name: &str) -> String {
	let dir = net.dir().join(name);
	std::fs::read_to_string(dir.join("logs").join("ldk_node.log"))
		.or_else(|_| std::fs::read_to_string(dir.join("ldk_node.log")))
		.unwrap_or_default()
}

/// Whether ldk-node still shows the payment pending.
fn payment_pending(
	payer: &ldk_node::Node, id: &ldk_node::lightning::ln::channelmanager::PaymentId,
) -> bool {
	payer.payment(id).map(|p| p.status) == Some(ldk_node::payment::PaymentStatus::Pending)
}

/// Limits and the deadline on a real network: S holds one HTLC per peer;
/// P1's second is failed back at once while P2's is held; when the chain
/// reaches the deadline with R still away, both held HTLCs are failed back
/// and P1's and P2's balances are what they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_htlcs_beyond_a_limit_or_past_their_deadline_are_failed_back() {
	let policy = HtlcHoldPolicy { max_htlcs_per_peer: 1, ..HtlcHoldPolicy::default() };
	let HoldNet { net, lsp, server, payers, recipient, .. } =
		hold_network(policy, &["p1", "p2"]).await;
	let (p1, p2) = (&payers[0], &payers[1]);
	let offer = register(&server, &recipient, RECIPIENT_ID).await;
	recipient.stop().expect("R stops");
	wait_until("L to see R disconnect", || server.list_channels().iter().any(|c| !c.usable)).await;
	let before: Vec<u64> =
		payers.iter().map(|p| p.list_balances().total_lightning_balance_sats).collect();

	let pay = |payer: &ldk_node::Node| {
		payer
			.bolt12_payment()
			.send_using_amount(&offer, AMOUNT_MSAT, None, None, None)
			.expect("pay")
	};
	let events = lsp.subscribe();
	let first = pay(p1);
	let held_1 = lsp
		.wait_for_event(events, DEADLINE, "P1's first HTLC held", hold_event_of(p1, held))
		.await
		.expect("held");
	// P1's second: beyond its limit, failed back at once, never forwarded.
	let events = lsp.subscribe();
	let second = pay(p1);
	let mut refusal = None;
	lsp.wait_for_event(events, DEADLINE, "P1's second refused and failed back", |e| {
		let NodeEvent::HtlcHold { event } = e else { return None };
		match event {
			HoldEvent::Refused(h) => refusal = Some(h.clone()),
			HoldEvent::FailedBack(h) => return refusal.as_ref().filter(|r| *r == h).map(|_| ()),
			_ => {},
		}
		None
	})
	.await
	.expect("refused, then failed back");
	let refusal = refusal.expect("refused");
	assert_eq!(refusal.peer, p1.node_id().to_string());
	assert!(refusal.reason.contains("max_htlcs_per_peer"), "{refusal:?}");
	// P1 read S's failure: temporary_node_failure (LDK would have said
	// unknown_next_peer, a permanent failure of the channel).
	let from_s = format!("Onion Error[from {}: TemporaryNodeFailure(0x2002)]", lsp.node_id());
	wait_until("P1 to read temporary_node_failure from S", || {
		ldk_node_log(&net, "p1").contains(&from_s)
	})
	.await;
	wait_payment_failed(p1, second).await;
	// P2 is not affected by P1's limit.
	let events = lsp.subscribe();
	let _ = pay(p2);
	let held_2 = lsp
		.wait_for_event(events, DEADLINE, "P2's HTLC held", hold_event_of(p2, held))
		.await
		.expect("held");
	let mut listed = lsp.list_held_htlcs();
	listed.retain(|h| h.reason.starts_with("held"));
	assert_eq!(listed.len(), 2, "{listed:?}");
	assert!(payment_pending(p1, &first));

	// The chain reaches each deadline with R still away (block by block in
	// life: mining past both at once would let LDK time the earlier one out
	// itself, 12 blocks after our deadline).
	let mut deadlines = [(held_1.deadline_height, p1), (held_2.deadline_height, p2)];
	deadlines.sort_by_key(|(height, _)| *height);
	let mut events = lsp.subscribe();
	let mut failed = std::collections::HashMap::new();
	for (deadline, payer) in deadlines {
		net.mine(deadline.saturating_sub(lsp.best_block_height())).await.expect("mine");
		let payer = payer.node_id().to_string();
		while !failed.contains_key(&payer) {
			let event = tokio::time::timeout(DEADLINE, events.recv())
				.await
				.expect("failed back by S, not timed out by LDK")
				.expect("event");
			if let NodeEvent::HtlcHold { event: HoldEvent::FailedBack(h) } = event {
				failed.insert(h.peer.clone(), h);
			}
		}
		assert_eq!(failed[&payer].deadline_height, deadline);
		assert!(failed[&payer].reason.starts_with("expired"), "{failed:?}");
	}
	wait_until("P2 to read temporary_node_failure from S", || {
		ldk_node_log(&net, "p2").contains(&from_s)
	})
	.await;
	wait_payment_failed(p1, first).await;
	for (payer, sat) in payers.iter().zip(before) {
		common::sync_ldk_node(payer);
		wait_lightning_balance(payer, sat).await;
	}
	wait_until("S to forget them", || lsp.list_held_htlcs().is_empty()).await;
}
