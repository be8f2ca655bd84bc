//! A hostile payer against the trampoline relay (issue 12), on a real regtest
//! bitcoind: our node H (the hostile payer, whose outer onions say what the
//! test likes) --public--> T (the relay) --private--> R (ldk-node 0.7.1,
//! colluding where a case needs it: it holds HTLCs and claims when told),
//! plus a raw peer without a channel.
//!
//! One network for every case (set up once, about a minute). In each case:
//! T's balance never drops, the attacker's HTLCs end failed or paid, no HTLC
//! stays pending, and T's relay records return to their baseline (settled
//! buckets are pruned). `HOSTILE_CASE=<name>` runs one case only.

mod common;

use common::{hash_of, relayed, tick_until_failed};
#[path = "common/hostile.rs"]
mod hostile_payer;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use hostile_payer::{outcome, wait_until, HostilePayer, Outcome, OuterLie, RawPeer};
use ldk_trampoline::node::{format_scid, Node, NodeConfig, NodeEvent, PaymentStatus};
use ldk_trampoline::onion::{
	FailingHop, FailureMessage, PaymentData, TlvLayout, TrampolineFailure,
};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::relay::store::bucket_id;
use ldk_trampoline::relay::{BucketStage, RecordCounts, TrampolinePolicy, BUCKET_TLV_TYPE};
use ldk_trampoline::sender::{
	send_to_trampoline, trampoline_onion, OuterSend, TrampolineBudget, TrampolineOnion,
	TrampolineRouteHop,
};
use lightning::chain::channelmonitor::HTLC_FAIL_BACK_BUFFER;
use lightning::ln::channelmanager::{PaymentId, Retry};
use lightning::types::payment::{PaymentHash, PaymentSecret};

const CHANNEL_SAT: u64 = 1_000_000;
const AMOUNT_MSAT: u64 = 10_000_000;
/// T's bound on one payer's live buckets in this network.
const LIVE_BUCKETS_PER_PEER: usize = 3;

struct Network {
	payer: HostilePayer,
	trampoline: Arc<Node>,
	recipient: Arc<ldk_node::Node>,
	policy: TrampolinePolicy,
	baseline: RecordCounts,
	/// Last: dropped after the nodes (its directory holds their logs).
	net: RegtestNetwork,
}

/// T's limits in this network: few live buckets per payer.
fn limit_live_buckets(config: &mut NodeConfig) {
	config.trampoline_limits.max_live_buckets_per_peer = LIVE_BUCKETS_PER_PEER;
}

async fn network() -> Network {
	let mut net = RegtestNetwork::start().expect("regtest");
	let policy = TrampolinePolicy::default();
	let wallet = net.add_node("hostile").await.expect("hostile payer");
	let mut config = net.node_config("trampoline");
	config.trampoline = Some(policy);
	limit_live_buckets(&mut config);
	let trampoline = net.add_node_with(config).await.expect("trampoline");
	let recipient = common::start_ldk_node(&net, "recipient");
	net.fund(&[&wallet, &trampoline], 1).await.expect("fund");
	net.open_channel(&wallet, &trampoline, CHANNEL_SAT, 0).await.expect("H-T");
	common::open_channel_to_ldk_node(&net, &trampoline, &recipient, CHANNEL_SAT, 0, false).await;
	wait_channels_usable(&wallet).await;
	wait_channels_usable(&trampoline).await;
	let baseline = counts(&trampoline);
	Network { net, payer: HostilePayer::new(wallet), trampoline, recipient, policy, baseline }
}

impl Network {
	fn wallet(&self) -> &Arc<Node> {
		&self.payer.node
	}

	fn hop(&self, fee_msat: u64) -> TrampolineRouteHop {
		TrampolineRouteHop {
			node_id: self.trampoline.node_id(),
			fee_msat,
			cltv_expiry_delta: self.policy.cltv_expiry_delta,
			async_payment: false,
		}
	}

	/// The trampoline onion an honest payer builds for `invoice` through T.
	fn onion(&self, invoice: &lightning_invoice::Bolt11Invoice) -> TrampolineOnion {
		let hop = self.hop(self.policy.fee_msat(AMOUNT_MSAT));
		trampoline_onion(&invoice.clone().into(), &[hop], self.wallet().best_block_height())
			.expect("onion")
	}

	/// An outer onion around `onion`'s packet: the given secret and total,
	/// everything else honest.
	fn lie(&self, onion: &TrampolineOnion, secret: PaymentSecret, total_msat: u64) -> OuterLie {
		OuterLie {
			trampoline: self.trampoline.node_id(),
			packet: onion.packet.clone(),
			layout: TlvLayout::Spec,
			amt_to_forward: None,
			outgoing_cltv_value: None,
			payment_data: Some(PaymentData { payment_secret: secret, total_msat }),
			custom_tlvs: Vec::new(),
		}
	}

	fn balances(&self) -> (u64, u64) {
		(self.wallet().balances().lightning_sat, self.trampoline.balances().lightning_sat)
	}

	/// The end of every case: no HTLC pending at H or T, the balances are
	/// `expected` (T's never below what it had), and T's records are back
	/// to the baseline.
	async fn settled(&self, before: (u64, u64), expected: (u64, u64)) {
		for node in [self.wallet(), &self.trampoline] {
			wait_no_htlcs(node).await;
		}
		assert!(expected.1 >= before.1, "a case may not expect T to lose");
		wait_lightning_balance(self.wallet(), expected.0).await;
		wait_lightning_balance(&self.trampoline, expected.1).await;
		let baseline = self.baseline;
		wait_until("T's records are back to the baseline", || counts(&self.trampoline) == baseline)
			.await;
	}
}

fn counts(node: &Node) -> RecordCounts {
	node.trampoline().expect("relay on").core().record_counts()
}

fn selected(case: &str) -> bool {
	std::env::var("HOSTILE_CASE").map_or(true, |only| only == case)
}

/// Every attack of issue 12's hostile payer, on one network.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_payer_never_makes_the_relay_pay_unpaid() {
	let started = std::time::Instant::now();
	let mut network = network().await;
	println!("network ready in {:?}", started.elapsed());
	macro_rules! case {
		($name:literal, $case:ident) => {
			if selected($name) {
				let at = std::time::Instant::now();
				$case(&mut network).await;
				println!("case {}: passed in {:?}", $name, at.elapsed());
			}
		};
	}
	case!("outer_cltv_lie", outer_cltv_lie_cannot_outlive_the_incoming_htlc);
	case!("forged_bucket_id", claimable_naming_another_bucket_is_failed);
	case!("retry_then_restart", restart_never_fails_the_live_retry_by_hash);
	case!("no_channel_adds", adds_on_channels_that_do_not_exist_write_nothing);
	case!("live_bucket_limit", live_buckets_per_payer_are_bounded);
	case!("one_part_failed", one_part_failed_by_ldk_keeps_its_bucket);
	println!("hostile payer cases: {:?} in all", started.elapsed());
}

/// Theft path 1. H's HTLC to T expires late, but its outer and trampoline
/// onions both say an early CLTV (the trampoline one is what R gets). Before
/// the fix T's LDK took the onion's value as the claimable HTLC's expiry and
/// failed H's HTLC back 39 blocks before it, while R (colluding: a hold
/// invoice) could still claim T's outgoing HTLC, whose expiry LDK's router
/// had raised by its shadow offset: T paid R and got nothing. Now the
/// claimable expires with the HTLC, the outgoing payment before it: R's late
/// claim pays T too.
async fn outer_cltv_lie_cannot_outlive_the_incoming_htlc(n: &mut Network) {
	const EXTRA_CLTV: u32 = 100;
	let before = n.balances();
	let fee = n.policy.fee_msat(AMOUNT_MSAT);
	let preimage: [u8; 32] = rand::random();
	let (invoice, r_hash) = hold_invoice(&n.recipient, preimage);
	let hash = hash_of(&invoice);
	let height = n.wallet().best_block_height();
	let onion = n.onion(&invoice);
	let inner_cltv = height + onion.final_cltv_delta;
	let mut lie = n.lie(&onion, PaymentSecret(rand::random()), onion.first_amount_msat);
	lie.outgoing_cltv_value = Some(inner_cltv);
	let (id, events) =
		n.payer.send(hash, onion.first_amount_msat, onion.first_cltv_delta + EXTRA_CLTV, lie);
	let claimable = common::wait_ldk_event(&n.recipient, DEADLINE, "R holds", |e| match e {
		ldk_node::Event::PaymentClaimable { claimable_amount_msat, .. } => {
			Some(*claimable_amount_msat)
		},
		_ => None,
	})
	.await;
	assert_eq!(claimable, AMOUNT_MSAT);
	let incoming = n.trampoline.channel_manager().list_channels();
	let htlc_expiry = incoming
		.iter()
		.flat_map(|c| c.pending_inbound_htlcs.iter())
		.map(|h| h.cltv_expiry)
		.max()
		.expect("H's HTLC at T");
	assert!(htlc_expiry >= inner_cltv + u32::from(n.policy.cltv_expiry_delta) + EXTRA_CLTV);

	// Past the height at which LDK failed back a claimable expiring at the
	// lie (and one more block, so that T handled that height completely).
	let lie_deadline = inner_cltv - HTLC_FAIL_BACK_BUFFER;
	let now = n.trampoline.best_block_height();
	n.net.mine(lie_deadline + 1 - now).await.expect("mine");
	n.net.mine(1).await.expect("mine");
	common::sync_ldk_node(&n.recipient);

	// R claims late.
	let preimage = ldk_node::lightning_types::payment::PaymentPreimage(preimage);
	n.recipient.bolt11_payment().claim_for_hash(r_hash, AMOUNT_MSAT, preimage).expect("R claims");
	assert_eq!(
		outcome(n.wallet(), events, id).await,
		Outcome::Sent,
		"T failed H's HTLC back before R's claim: T paid R for nothing"
	);
	assert_eq!(common::wait_ldk_received(&n.recipient).await, AMOUNT_MSAT);
	let expected = (before.0 - (AMOUNT_MSAT + fee) / 1000, before.1 + fee / 1000);
	n.settled(before, expected).await;
}

/// Theft path 2. H sends half of a bucket to T (it waits for the rest),
/// then pays T a keysend, and one of T's own invoices, each naming that
/// bucket in the relay's bucket TLV. Before the fix T took either for the
/// bucket and paid R. Now both are failed back, the bucket is never relayed
/// (it times out incomplete), and R sees nothing.
async fn claimable_naming_another_bucket_is_failed(n: &mut Network) {
	let before = n.balances();
	let invoice = recipient_invoice(&n.recipient, AMOUNT_MSAT);
	let hash = hash_of(&invoice);
	let onion = n.onion(&invoice);
	let secret = PaymentSecret(rand::random());
	let half = onion.first_amount_msat / 2;
	let lie = n.lie(&onion, secret, onion.first_amount_msat);
	let (half_id, half_events) = n.payer.send(hash, half, onion.first_cltv_delta, lie);
	wait_bucket(&n.trampoline, hash, BucketStage::Receiving).await;
	assert_partial_set_of_one_half(n, hash, onion.first_amount_msat, half).await;
	let named = vec![(BUCKET_TLV_TYPE, bucket_id(&hash, &secret).to_vec())];

	let (id, events) =
		n.payer.keysend(n.trampoline.node_id(), onion.first_amount_msat, named.clone());
	let keysend = outcome(n.wallet(), events, id).await;
	assert!(matches!(keysend, Outcome::Failed(_)), "a keysend naming the bucket: {keysend:?}");
	assert_eq!(relayed(&n.trampoline, hash), vec![BucketStage::Receiving], "never relayed");

	let t_invoice =
		n.trampoline.create_invoice(Some(onion.first_amount_msat), "forged", 3600).expect("inv");
	let (id, events) = n.payer.pay_invoice_with_tlvs(&t_invoice, named);
	let paid = outcome(n.wallet(), events, id).await;
	assert!(matches!(paid, Outcome::Failed(_)), "an invoice payment naming the bucket: {paid:?}");
	assert_eq!(relayed(&n.trampoline, hash), vec![BucketStage::Receiving], "never relayed");

	// The half times out; R never saw anything of it, and the operator's
	// listing no longer shows it.
	tick_until_failed(&n.trampoline, half_events, half_id).await;
	let listed = n.trampoline.list_partial_invoices();
	assert!(listed.iter().all(|p| p.payment_hash != hash.to_string()), "{listed:?}");
	assert_eq!(
		n.trampoline.trampoline().unwrap().core().failures_sent(&hash),
		vec![FailureMessage::MppTimeout]
	);
	recipient_saw_nothing(&n.recipient, hash);
	n.settled(before, before).await;
}

/// T's listing of partial payments shows the bucket's one part (once LDK
/// committed its HTLC: the bucket is recorded at the add): the payer's
/// channel, `half` of the `total_msat` its onion announced, a CLTV ahead of
/// the chain, and when it arrived.
async fn assert_partial_set_of_one_half(
	n: &Network, hash: PaymentHash, total_msat: u64, half: u64,
) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	let set = loop {
		let listed = n.trampoline.list_partial_invoices();
		if let Some(set) = listed.into_iter().find(|p| p.payment_hash == hash.to_string()) {
			break set;
		}
		assert!(tokio::time::Instant::now() < deadline, "the incomplete bucket is never listed");
		tokio::time::sleep(Duration::from_millis(50)).await;
	};
	assert_eq!(set.kind, "trampoline");
	assert_eq!((set.total_msat, set.received_msat), (Some(total_msat), half), "{set:?}");
	assert_eq!(set.parts.len(), 1, "{set:?}");
	let part = &set.parts[0];
	let payer = n.wallet().node_id().to_string();
	let channel = n.trampoline.list_channels().into_iter().find(|c| c.counterparty == payer);
	let channel = channel.expect("the payer's channel");
	assert_eq!(part.channel_id, channel.channel_id);
	assert_eq!(part.short_channel_id, channel.short_channel_id.map(format_scid));
	assert_eq!((part.peer.as_str(), part.amount_msat), (payer.as_str(), half));
	assert!(part.cltv_expiry > n.trampoline.best_block_height(), "{part:?}");
	let now_ms = std::time::SystemTime::now()
		.duration_since(std::time::UNIX_EPOCH)
		.map(|d| d.as_millis() as u64)
		.unwrap_or(0);
	let arrived = part.arrived_at_ms.expect("its arrival was noted");
	assert!(arrived <= now_ms && now_ms - arrived < 600_000, "arrived {arrived}, now {now_ms}");
}

/// Theft path 3. H offers T one msat less than its fee: T fails that bucket
/// (NODE|26); H pays again with the fee asked, which is a second bucket of
/// the same payment hash (a new outer secret), relayed to R, which holds it.
/// T restarts while that outgoing payment is live. Before the fix the
/// restart failed the first bucket again by payment hash, which failed the
/// live retry's HTLCs, and R's claim then paid R out of T's pocket. Now the
/// retry completes.
async fn restart_never_fails_the_live_retry_by_hash(n: &mut Network) {
	let before = n.balances();
	let fee = n.policy.fee_msat(AMOUNT_MSAT);
	let preimage: [u8; 32] = rand::random();
	let (invoice, r_hash) = hold_invoice(&n.recipient, preimage);
	let hash = hash_of(&invoice);
	let short = TrampolineRouteHop { fee_msat: fee - 1, ..n.hop(fee) };
	let budget = TrampolineBudget {
		max_fee_msat: 2 * fee,
		max_cltv_expiry_delta: 2 * u32::from(n.policy.cltv_expiry_delta),
	};
	let id =
		n.wallet().pay_invoice_via_trampolines_within(&invoice, &[short], budget).expect("pay");
	common::wait_ldk_event(&n.recipient, DEADLINE, "R holds the retry", |e| {
		matches!(e, ldk_node::Event::PaymentClaimable { .. }).then_some(())
	})
	.await;
	let mut stages = relayed(&n.trampoline, hash);
	stages.sort_by_key(|stage| format!("{stage:?}"));
	assert_eq!(stages, vec![BucketStage::Failed, BucketStage::Sending], "two buckets, one hash");

	n.trampoline = n.net.restart(&n.trampoline).await.expect("restart T");
	wait_channels_usable(&n.trampoline).await;
	let preimage = ldk_node::lightning_types::payment::PaymentPreimage(preimage);
	n.recipient.bolt11_payment().claim_for_hash(r_hash, AMOUNT_MSAT, preimage).expect("R claims");
	let paid = n.wallet().wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(
		paid.status,
		PaymentStatus::Succeeded,
		"the restart failed the live retry: {paid:?}"
	);
	assert_eq!(common::wait_ldk_received(&n.recipient).await, AMOUNT_MSAT);
	let expected = (before.0 - (AMOUNT_MSAT + fee) / 1000, before.1 + fee / 1000);
	n.settled(before, expected).await;
}

/// Item 4, records: a peer without a channel sends valid trampoline adds
/// on channel ids that do not exist. LDK refuses each (an error message
/// back); T writes nothing for them. Before the fix each left a bucket
/// (`Receiving` for ever) and an HTLC record.
async fn adds_on_channels_that_do_not_exist_write_nothing(n: &mut Network) {
	const ADDS: usize = 5;
	let before = n.balances();
	let raw = RawPeer::connect(n.trampoline.node_id(), n.trampoline.listen_addr()).await;
	let invoice = recipient_invoice(&n.recipient, AMOUNT_MSAT);
	let hash = hash_of(&invoice);
	let onion = n.onion(&invoice);
	let cltv = n.trampoline.best_block_height() + onion.first_cltv_delta + 1;
	let adds = (0..ADDS)
		.map(|_| {
			let lie = n.lie(&onion, PaymentSecret(rand::random()), onion.first_amount_msat);
			let mut add = hostile_payer::add_on_no_channel(
				hash,
				onion.first_amount_msat,
				cltv,
				// A placeholder (one empty TLV record), replaced by the lie below.
				hostile_payer::one_hop_onion(n.trampoline.node_id(), vec![2, 2, 0], &hash),
			);
			add.onion_routing_packet = lie.onion_for(&add);
			add
		})
		.collect();
	raw.send_adds(adds);
	let errors = raw.wait_errors(ADDS).await;
	println!("T answered the adds on no channel: {:?}", errors[0].data);
	assert_eq!(counts(&n.trampoline), n.baseline, "records written for adds on no channel");
	assert!(relayed(&n.trampoline, hash).is_empty());
	n.settled(before, before).await;
}

/// Item 4, limits: H opens as many live buckets as T allows it (halves of
/// payments, waiting for the rest); the next is refused with
/// temporary_trampoline_failure (NODE|25), which H reads through both
/// layers. The waiting ones time out and nothing moves.
async fn live_buckets_per_payer_are_bounded(n: &mut Network) {
	let before = n.balances();
	let mut waiting = Vec::new();
	for _ in 0..LIVE_BUCKETS_PER_PEER {
		let invoice = recipient_invoice(&n.recipient, AMOUNT_MSAT);
		let (id, events) = send_half(n, &invoice);
		wait_bucket(&n.trampoline, hash_of(&invoice), BucketStage::Receiving).await;
		waiting.push((id, events));
	}
	let invoice = recipient_invoice(&n.recipient, AMOUNT_MSAT);
	let hash = hash_of(&invoice);
	let (id, events) = send_half(n, &invoice);
	let refused = outcome(n.wallet(), events, id).await;
	assert!(matches!(refused, Outcome::Failed(_)), "one bucket too many: {refused:?}");
	assert_eq!(
		n.wallet().trampoline_failure(&hash),
		Some(TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::TemporaryTrampolineFailure
		})
	);
	assert!(relayed(&n.trampoline, hash).iter().all(|s| *s != BucketStage::Receiving));
	for (id, events) in waiting {
		tick_until_failed(&n.trampoline, events, id).await;
	}
	n.settled(before, before).await;
}

/// Item 11: H sends half of a bucket, then an extra part under the same
/// outer secret announcing another total, which LDK fails alone (its total
/// differs from the set's), then the other half. Before the fix LDK's
/// failure of the extra part failed the whole bucket, and the other half was
/// refused. Now the bucket completes and is relayed; R is paid.
async fn one_part_failed_by_ldk_keeps_its_bucket(n: &mut Network) {
	const EXTRA_MSAT: u64 = 1_000_000;
	let before = n.balances();
	let fee = n.policy.fee_msat(AMOUNT_MSAT);
	let invoice = recipient_invoice(&n.recipient, AMOUNT_MSAT);
	let hash = hash_of(&invoice);
	let onion = n.onion(&invoice);
	let total = onion.first_amount_msat;
	let secret = PaymentSecret(rand::random());
	let first = total / 2;
	let (first_id, first_events) =
		n.payer.send(hash, first, onion.first_cltv_delta, n.lie(&onion, secret, total));
	wait_bucket(&n.trampoline, hash, BucketStage::Receiving).await;

	let (id, events) =
		n.payer.send(hash, EXTRA_MSAT, onion.first_cltv_delta, n.lie(&onion, secret, total + 1));
	let extra = outcome(n.wallet(), events, id).await;
	assert!(matches!(extra, Outcome::Failed(_)), "the extra part: {extra:?}");
	assert_eq!(relayed(&n.trampoline, hash), vec![BucketStage::Receiving], "the bucket lives on");

	let (second_id, second_events) =
		n.payer.send(hash, total - first, onion.first_cltv_delta, n.lie(&onion, secret, total));
	assert_eq!(outcome(n.wallet(), second_events, second_id).await, Outcome::Sent);
	assert_eq!(outcome(n.wallet(), first_events, first_id).await, Outcome::Sent);
	assert_eq!(common::wait_ldk_received(&n.recipient).await, AMOUNT_MSAT);
	assert_eq!(relayed(&n.trampoline, hash), vec![BucketStage::Relayed]);
	let expected = (before.0 - (AMOUNT_MSAT + fee) / 1000, before.1 + fee / 1000);
	n.settled(before, expected).await;
}

/// Sends half of an honest trampoline payment to `invoice` (outer total the
/// whole): T waits for the rest. H reads T's failures of it.
fn send_half(
	n: &Network, invoice: &lightning_invoice::Bolt11Invoice,
) -> (PaymentId, tokio::sync::broadcast::Receiver<NodeEvent>) {
	let onion = n.onion(invoice);
	let events = n.wallet().subscribe();
	let send = OuterSend {
		payment_hash: hash_of(invoice),
		trampoline: n.trampoline.node_id(),
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
	let sender = &**n.wallet().trampoline_sender();
	let state = (sender, TlvLayout::Spec, onion.shared_secrets.clone());
	let id = send_to_trampoline(&**n.wallet().channel_manager(), &send, Some(state)).expect("send");
	(id, events)
}

fn recipient_invoice(
	recipient: &ldk_node::Node, amount_msat: u64,
) -> lightning_invoice::Bolt11Invoice {
	let description = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
		ldk_node::lightning_invoice::Description::new("hostile".into()).unwrap(),
	);
	let invoice =
		recipient.bolt11_payment().receive(amount_msat, &description, 3600).expect("invoice");
	invoice.to_string().parse().unwrap()
}

/// A hold invoice of R's: R reports the payment claimable and waits for the
/// test to claim it (the colluding recipient).
fn hold_invoice(
	recipient: &ldk_node::Node, preimage: [u8; 32],
) -> (lightning_invoice::Bolt11Invoice, ldk_node::lightning_types::payment::PaymentHash) {
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

/// Checks that R has no event about `hash` (and acknowledges R's events).
fn recipient_saw_nothing(recipient: &ldk_node::Node, hash: PaymentHash) {
	while let Some(event) = recipient.next_event() {
		recipient.event_handled().expect("event handled");
		let about = match &event {
			ldk_node::Event::PaymentReceived { payment_hash, .. }
			| ldk_node::Event::PaymentClaimable { payment_hash, .. } => Some(payment_hash.0),
			_ => None,
		};
		assert_ne!(about, Some(hash.0), "R saw the payment: {event:?}");
	}
}

/// Waits until `node`'s relay has a bucket for `hash` at `stage`.
async fn wait_bucket(node: &Node, hash: PaymentHash, stage: BucketStage) {
	wait_until(&format!("a bucket at {stage:?}"), || relayed(node, hash) == vec![stage]).await;
}

/// Waits until `node`'s Lightning balance is `sat`.
async fn wait_lightning_balance(node: &Node, sat: u64) {
	wait_until(&format!("{} sat", sat), || node.balances().lightning_sat == sat).await;
}

/// Waits until no channel of `node` has an HTLC in flight.
async fn wait_no_htlcs(node: &Node) {
	wait_until("no HTLC pending", || {
		node.channel_manager()
			.list_channels()
			.iter()
			.all(|c| c.pending_inbound_htlcs.is_empty() && c.pending_outbound_htlcs.is_empty())
	})
	.await;
}

/// Waits until every channel of `node` is usable.
async fn wait_channels_usable(node: &Node) {
	wait_until("channels usable", || {
		let channels = node.list_channels();
		!channels.is_empty() && channels.iter().all(|c| c.usable)
	})
	.await;
}
