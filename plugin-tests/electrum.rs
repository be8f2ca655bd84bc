//! Electrum 4.3.4 (Debian's package, the trampoline wallet people run)
//! against our trampoline relay (issue 13), on a real regtest bitcoind with
//! a real ElectrumX:
//!
//! ```text
//! E (Electrum, trampoline mode) ==two private channels==> T --public--> T2 --private--> R (ldk-node 0.7.1)
//!                                   W (our wallet) --public--> T
//! ```
//!
//! T and T2 are reference nodes relaying trampoline payments. R's invoices
//! do not advertise trampoline support, so Electrum pays them through two
//! trampolines (`trampoline.py`, `create_trampoline_route`): T, its peer,
//! then T2, which it knows from its trampoline list (filled on regtest by
//! `electrum-conf/electrum_regtest.py`). W is a second reference node paying
//! with our sender.
//!
//! One network for every case, set up once, the cases run in sequence;
//! `ELECTRUM_CASE=<name>` runs one (and those before it that it builds on).
//! Electrum and ElectrumX are provisioned on first use
//! (`electrum-conf/provision-electrum.sh`); a missing part fails the test
//! with a message saying how to install it.

mod common;
#[path = "common/electrum.rs"]
mod electrum;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::{hash_of, relayed};
use electrum::{Electrum, ElectrumOptions, ElectrumX, BITCOIND_ARGS};
use ldk_trampoline::node::{Node, PaymentStatus};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::relay::{BucketStage, RelayStats, TrampolinePolicy};
use ldk_trampoline::sender::{TrampolineBudget, TrampolineRouteHop};
use lightning::types::payment::PaymentHash;

/// Each of E's two channels to T.
const ELECTRUM_CHANNEL_SAT: u64 = 400_000;
/// T-T2 and W-T: room for every case's payments.
const RELAY_CHANNEL_SAT: u64 = 2_000_000;
/// T2-R: ldk-node lets at most 10% of an inbound channel be in flight
/// (`max_inbound_htlc_value_in_flight_percent_of_channel`), and the MPP
/// case sends 500,000 sat to R at once.
const RECIPIENT_CHANNEL_SAT: u64 = 10_000_000;
/// Electrum's fee level 1 (`TRAMPOLINE_FEES[1]` in `trampoline.py`), where
/// it starts (`LNWallet.INITIAL_TRAMPOLINE_FEE_LEVEL`): eclair's default
/// fee, and eclair's 144 blocks, within Electrum's 576 per trampoline.
// The policy is about to gain fields (the legacy feature bit); these stay
// the defaults.
#[allow(clippy::needless_update)]
fn electrum_level_1() -> TrampolinePolicy {
	TrampolinePolicy {
		fee_base_msat: 1_000,
		fee_proportional_millionths: 100,
		cltv_expiry_delta: 144,
		..TrampolinePolicy::default()
	}
}
/// Electrum's `PR_PAID` (`invoices.py`).
const PR_PAID: u64 = 3;

struct Network {
	electrum: Electrum,
	trampoline: Arc<Node>,
	second: Arc<Node>,
	wallet: Arc<Node>,
	recipient: Arc<ldk_node::Node>,
	policy: TrampolinePolicy,
	/// Dropped after Electrum, before bitcoind.
	server: ElectrumX,
	/// Last: dropped after the nodes (its directory holds their logs).
	net: RegtestNetwork,
}

async fn network(policy: TrampolinePolicy) -> Network {
	let mut net = RegtestNetwork::start_with_bitcoind_args(&BITCOIND_ARGS).expect("regtest");
	let relay = |name: &str| {
		let mut config = net.node_config(name);
		config.trampoline = Some(policy);
		config
	};
	let (t_config, t2_config) = (relay("trampoline"), relay("second"));
	let trampoline = net.add_node_with(t_config).await.expect("T");
	let second = net.add_node_with(t2_config).await.expect("T2");
	let wallet = net.add_node("wallet").await.expect("W");
	let recipient = common::start_ldk_node(&net, "recipient");
	net.fund(&[&trampoline, &second, &wallet], 1).await.expect("fund");
	net.open_channel(&trampoline, &second, RELAY_CHANNEL_SAT, 0).await.expect("T-T2");
	net.open_channel(&wallet, &trampoline, RELAY_CHANNEL_SAT, 0).await.expect("W-T");
	common::open_channel_to_ldk_node(&net, &second, &recipient, RECIPIENT_CHANNEL_SAT, 0, false)
		.await;

	let server = ElectrumX::start(net.bitcoind(), &net.dir().join("electrumx")).await;
	let options = ElectrumOptions {
		trampolines: vec![(second.node_id(), second.listen_addr())],
		..ElectrumOptions::default()
	};
	let electrum = Electrum::start(&net, &server, &net.dir().join("electrum"), &options).await;
	electrum.fund(&net, 1).await;
	open_electrum_channels(&net, &electrum, &trampoline).await;
	for node in [&trampoline, &second, &wallet] {
		wait_channels_usable(node).await;
	}
	Network { electrum, trampoline, second, wallet, recipient, policy, server, net }
}

/// E opens two channels to T, confirmed together.
async fn open_electrum_channels(net: &RegtestNetwork, electrum: &Electrum, trampoline: &Node) {
	let (id, addr) = (trampoline.node_id(), trampoline.listen_addr());
	let first = electrum.open_channel(id, addr, ELECTRUM_CHANNEL_SAT, 0).await;
	let second = electrum.open_channel(id, addr, ELECTRUM_CHANNEL_SAT, 0).await;
	net.bitcoind().wait_for_mempool(2, DEADLINE).expect("both funding transactions");
	net.mine(6).await.expect("confirm");
	for point in [first, second] {
		electrum.wait_channel_usable(&point).await;
	}
}

/// Waits until every channel of `node` is usable.
async fn wait_channels_usable(node: &Node) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	loop {
		let channels = node.list_channels();
		if !channels.is_empty() && channels.iter().all(|c| c.usable) {
			return;
		}
		assert!(tokio::time::Instant::now() < deadline, "channels not usable: {channels:?}");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

/// Waits until no channel of `node` has an HTLC pending.
async fn wait_no_htlcs(node: &Node) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	loop {
		let channels = node.list_channels();
		if channels.iter().all(|c| c.pending_inbound_htlcs + c.pending_outbound_htlcs == 0) {
			return;
		}
		assert!(tokio::time::Instant::now() < deadline, "HTLCs stay: {channels:?}");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

/// Waits until `node`'s Lightning balance is `sat`, give or take the
/// rounding of its channels: LDK reports each channel's balance in whole
/// sat, rounded down, so a node whose msat are spread over `n` channels can
/// show up to `n - 1` sat less than the sum. (The fees themselves are
/// checked to the msat through the buckets' amounts.)
async fn wait_lightning_balance(node: &Node, sat: u64) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	let slack = (node.list_channels().len() as u64).saturating_sub(1);
	loop {
		let now = node.balances().lightning_sat;
		if now <= sat && now + slack >= sat {
			return;
		}
		assert!(
			tokio::time::Instant::now() < deadline,
			"balance is {now} sat, expected {sat} (less at most {slack})"
		);
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

fn stats(node: &Node) -> RelayStats {
	node.trampoline().expect("relay on").core().stats()
}

fn recipient_invoice(recipient: &ldk_node::Node, amount_msat: u64) -> String {
	let description = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
		ldk_node::lightning_invoice::Description::new("from Electrum".into()).expect("text"),
	);
	let invoice =
		recipient.bolt11_payment().receive(amount_msat, &description, 3600).expect("invoice");
	invoice.to_string()
}

fn selected(case: &str) -> bool {
	std::env::var("ELECTRUM_CASE").map_or(true, |only| only == case)
}

/// What one payment from Electrum to R through T and T2 should cost: T2's
/// fee on the amount, T's on the amount plus T2's fee (Electrum's
/// `fee_for_edge`, like our policy's, rounds down).
fn two_trampoline_fees(policy: &TrampolinePolicy, amount_msat: u64) -> (u64, u64) {
	let second = policy.fee_msat(amount_msat);
	(policy.fee_msat(amount_msat + second), second)
}

/// Every balance a case looks at, msat where the node reports msat.
#[derive(Clone, Copy, Debug)]
struct Balances {
	electrum_msat: u64,
	trampoline_sat: u64,
	second_sat: u64,
	wallet_sat: u64,
}

impl Network {
	async fn balances(&self) -> Balances {
		Balances {
			electrum_msat: self.electrum.lightning_msat().await,
			trampoline_sat: self.trampoline.balances().lightning_sat,
			second_sat: self.second.balances().lightning_sat,
			wallet_sat: self.wallet.balances().lightning_sat,
		}
	}

	/// E pays R `amount_msat` through T and T2 at fee level 1: one attempt,
	/// R receives the amount, each trampoline keeps exactly its fee, E's
	/// history shows the amount plus both fees, and T's bucket of `parts`
	/// parts is relayed. Returns the fees (T's, T2's).
	async fn electrum_pays_recipient(&self, amount_msat: u64, parts: usize) -> (u64, u64) {
		let invoice = recipient_invoice(&self.recipient, amount_msat);
		self.electrum_pays(&invoice, amount_msat, parts, async {}).await
	}

	/// [`Self::electrum_pays_recipient`] for R's `invoice` of
	/// `amount_msat`, running `meanwhile` while Electrum pays.
	async fn electrum_pays(
		&self, invoice: &str, amount_msat: u64, parts: usize,
		meanwhile: impl std::future::Future<Output = ()>,
	) -> (u64, u64) {
		let before = self.balances().await;
		let before_stats = stats(&self.trampoline);
		let parsed: lightning_invoice::Bolt11Invoice = invoice.parse().expect("R's invoice");
		let hash = hash_of(&parsed);
		let (paid, ()) = tokio::join!(self.electrum.lnpay(invoice), meanwhile);
		let paid = paid.expect("lnpay answers");
		assert!(paid.success, "{paid:?}\n{}", self.electrum.log_tail(40));
		// Electrum's log ends at the first part that succeeds (`pay_to_node`
		// returns on it): one line, whatever the number of parts.
		assert_eq!(paid.attempts.len(), 1, "no failed attempt: {paid:?}");
		assert!(paid.attempts.iter().all(|a| a.2 == "Success"), "{paid:?}");
		assert!(self.electrum.fee_levels_tried().iter().all(|level| *level == 1));
		let received = common::wait_ldk_received(&self.recipient).await;
		assert_eq!(received, amount_msat);

		let (fee, second_fee) = two_trampoline_fees(&self.policy, amount_msat);
		let sent = amount_msat + fee + second_fee;
		let hex = parsed.payment_hash().to_string();
		let history = self.electrum.settled_payment(&hex).await;
		assert_eq!(history, Some((-(sent as i64), Some((fee + second_fee) as i64))));
		self.electrum.wait_no_htlcs().await;
		self.electrum.wait_lightning_msat(before.electrum_msat - sent).await;
		for node in [&self.trampoline, &self.second] {
			wait_no_htlcs(node).await;
		}
		wait_lightning_balance(&self.trampoline, before.trampoline_sat + fee / 1000).await;
		wait_lightning_balance(&self.second, before.second_sat + second_fee / 1000).await;

		let buckets = self.trampoline.trampoline().expect("relay on").core().buckets();
		let bucket = buckets.iter().find(|b| b.payment_hash == hash).expect("T's bucket");
		assert_eq!(bucket.state, BucketStage::Relayed);
		assert_eq!(bucket.parts, parts, "{bucket:?}");
		assert_eq!(bucket.outer_total_msat, sent);
		let after_stats = stats(&self.trampoline);
		assert_eq!(after_stats.relayed, before_stats.relayed + 1);
		assert_eq!(after_stats.relayed_in_msat, before_stats.relayed_in_msat + sent);
		// T2's bucket brought in the amount and T2's fee: T kept exactly
		// its fee, and T2 (R received the amount) exactly its own.
		let buckets = self.second.trampoline().expect("relay on").core().buckets();
		let bucket = buckets.iter().find(|b| b.payment_hash == hash).expect("T2's bucket");
		assert_eq!(bucket.state, BucketStage::Relayed);
		assert_eq!(bucket.outer_total_msat, amount_msat + second_fee);
		(fee, second_fee)
	}
}

/// Case a: E pays a plain BOLT 11 invoice of R, one part over one channel.
async fn single_part(network: &Network) {
	// 100,000 sat: T2's fee 11,000 msat, T's 11,001 msat.
	let (fee, second_fee) = network.electrum_pays_recipient(100_000_000, 1).await;
	assert_eq!((fee, second_fee), (11_001, 11_000));
}

/// Case b: E pays more than either of its channels can carry: two parts,
/// one per channel, aggregated by T into one bucket and relayed.
async fn multi_part(network: &Network) {
	let channels = network.electrum.channels().await;
	let largest = channels.iter().map(|c| c.local_balance_sat).max().expect("channels");
	let total: u64 = channels.iter().map(|c| c.local_balance_sat).sum();
	let amount_sat = 500_000;
	assert!(largest < amount_sat && amount_sat + 10_000 < total, "{channels:?}");
	network.electrum_pays_recipient(amount_sat * 1000, 2).await;
}

/// Case c: our wallet W pays an Electrum invoice through T with our
/// sender: E's request is paid, E receives the amount, T keeps its fee.
async fn wallet_pays_electrum(network: &Network) {
	let amount_sat = 50_000;
	let before = network.balances().await;
	let invoice = network.electrum.add_request(amount_sat, "from our wallet").await;
	let invoice = lightning_invoice::Bolt11Invoice::from_str(&invoice).expect("E's invoice");
	let fee = network.policy.fee_msat(amount_sat * 1000);
	let hop = TrampolineRouteHop {
		node_id: network.trampoline.node_id(),
		fee_msat: fee,
		cltv_expiry_delta: network.policy.cltv_expiry_delta,
		async_payment: false,
	};
	let budget = TrampolineBudget { max_fee_msat: fee, max_cltv_expiry_delta: 1_008 };
	let id =
		network.wallet.pay_invoice_via_trampolines_within(&invoice, &[hop], budget).expect("pay");
	let paid = network.wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(paid.status, PaymentStatus::Succeeded, "{paid:?}");

	let hex = invoice.payment_hash().to_string();
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while network.electrum.request_status(&hex).await != Some(PR_PAID) {
		assert!(tokio::time::Instant::now() < deadline, "E's request never paid");
		tokio::time::sleep(Duration::from_millis(100)).await;
	}
	network.electrum.wait_no_htlcs().await;
	network.electrum.wait_lightning_msat(before.electrum_msat + amount_sat * 1000).await;
	for node in [&network.wallet, &network.trampoline] {
		wait_no_htlcs(node).await;
	}
	let spent = amount_sat + fee / 1000;
	wait_lightning_balance(&network.wallet, before.wallet_sat - spent).await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat + fee / 1000).await;
	assert_eq!(relayed(&network.trampoline, hash_of(&invoice)), vec![BucketStage::Relayed]);
}

/// Waits until `node`'s relay has a bucket for `hash` at `stage`.
async fn wait_bucket(node: &Node, hash: PaymentHash, stage: BucketStage) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while !relayed(node, hash).contains(&stage) {
		assert!(tokio::time::Instant::now() < deadline, "bucket {:?}", relayed(node, hash));
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

/// Case d: R is offline when E pays. T relays to T2, T2 holds the
/// complete bucket (R is its peer) until R is back, then pays R: Electrum
/// waits on its HTLC and sees one successful attempt.
async fn offline_recipient(network: &Network) {
	// 20,000 sat: T2's fee 3,000 msat, T's 3,000 msat (3,000.3 rounded down).
	let amount_msat = 20_000_000;
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let parsed: lightning_invoice::Bolt11Invoice = invoice.parse().expect("R's invoice");
	let hash = hash_of(&parsed);
	network.recipient.stop().expect("R stops");
	common::wait_peer_offline(&network.second, network.recipient.node_id()).await;
	let back = async {
		wait_bucket(&network.second, hash, BucketStage::Held).await;
		assert_eq!(stats(&network.second).held, 1);
		// T's outgoing payment waits on T2 meanwhile.
		assert_eq!(relayed(&network.trampoline, hash), vec![BucketStage::Sending]);
		network.recipient.start().expect("R is back");
	};
	let fees = network.electrum_pays(&invoice, amount_msat, 1, back).await;
	assert_eq!(fees, (3_000, 3_000));
	assert_eq!(stats(&network.second).held, 0);
}

/// Case e: E pays another Electrum wallet, E2, whose only channel is with
/// T. E2's invoice advertises trampoline support (bit 151) and routes via
/// T, which is not in Electrum's trampoline list, so Electrum pays end to
/// end through T alone (`is_legacy_relay` in `trampoline.py`): T forwards
/// the peeled trampoline packet to E2 (legacy 66100, as E spoke), and E2
/// receives it as the final trampoline. T keeps exactly its fee.
async fn electrum_pays_electrum(network: &Network) {
	let dir = network.net.dir().join("electrum2");
	let e2 =
		Electrum::start(&network.net, &network.server, &dir, &ElectrumOptions::default()).await;
	e2.fund(&network.net, 1).await;
	let (id, addr) = (network.trampoline.node_id(), network.trampoline.listen_addr());
	let point = e2.open_channel(id, addr, ELECTRUM_CHANNEL_SAT, ELECTRUM_CHANNEL_SAT / 2).await;
	network.net.bitcoind().wait_for_mempool(1, DEADLINE).expect("funding transaction");
	network.net.mine(6).await.expect("confirm");
	e2.wait_channel_usable(&point).await;
	network.electrum.wait_synced(network.net.bitcoind().height().expect("height")).await;
	wait_channels_usable(&network.trampoline).await;

	let amount_sat = 30_000;
	let before = network.balances().await;
	let e2_before = e2.lightning_msat().await;
	let invoice = e2.add_request(amount_sat, "Electrum to Electrum").await;
	let parsed = lightning_invoice::Bolt11Invoice::from_str(&invoice).expect("E2's invoice");
	let paid = network.electrum.lnpay(&invoice).await.expect("lnpay answers");
	assert!(
		paid.success,
		"{paid:?}
{}",
		network.electrum.log_tail(40)
	);
	assert_eq!(paid.attempts.len(), 1, "{paid:?}");
	// One trampoline, T: its fee on the amount, at level 1.
	let fee = network.policy.fee_msat(amount_sat * 1000);
	let sent = amount_sat * 1000 + fee;
	let hex = parsed.payment_hash().to_string();
	assert_eq!(
		network.electrum.settled_payment(&hex).await,
		Some((-(sent as i64), Some(fee as i64)))
	);
	network.electrum.wait_lightning_msat(before.electrum_msat - sent).await;
	e2.wait_lightning_msat(e2_before + amount_sat * 1000).await;
	assert_eq!(e2.request_status(&hex).await, Some(PR_PAID));
	wait_no_htlcs(&network.trampoline).await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat + fee / 1000).await;
	let buckets = network.trampoline.trampoline().expect("relay on").core().buckets();
	let bucket = buckets.iter().find(|b| b.payment_hash == hash_of(&parsed)).expect("T's bucket");
	assert_eq!((bucket.state, bucket.outer_total_msat), (BucketStage::Relayed, sent));
}

/// Electrum pays through our relay, and our wallet pays Electrum, with the
/// relays at Electrum's first fee level (eclair's default policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn electrum_pays_through_the_relay_and_is_paid_through_it() {
	let network = network(electrum_level_1()).await;
	let started = std::time::Instant::now();
	if selected("single_part") {
		single_part(&network).await;
		eprintln!("single_part passed after {:?}", started.elapsed());
	}
	if selected("multi_part") {
		multi_part(&network).await;
		eprintln!("multi_part passed after {:?}", started.elapsed());
	}
	if selected("wallet_pays_electrum") {
		wallet_pays_electrum(&network).await;
		eprintln!("wallet_pays_electrum passed after {:?}", started.elapsed());
	}
	if selected("offline_recipient") {
		offline_recipient(&network).await;
		eprintln!("offline_recipient passed after {:?}", started.elapsed());
	}
	if selected("electrum_pays_electrum") {
		electrum_pays_electrum(&network).await;
		eprintln!("electrum_pays_electrum passed after {:?}", started.elapsed());
	}
}

/// An invoice of a node nobody knows, for `amount_msat`.
fn unknown_recipient_invoice(amount_msat: u64) -> String {
	use bitcoin::hashes::{sha256, Hash as _};
	use bitcoin::secp256k1::{Secp256k1, SecretKey};
	use lightning_invoice::{Currency, InvoiceBuilder};

	let secp = Secp256k1::new();
	let key = SecretKey::new(&mut rand::thread_rng());
	let hash = sha256::Hash::hash(&rand::random::<[u8; 32]>());
	InvoiceBuilder::new(Currency::Regtest)
		.description("nobody".into())
		.payment_hash(hash)
		.payment_secret(lightning::types::payment::PaymentSecret(rand::random()))
		.amount_milli_satoshis(amount_msat)
		.current_timestamp()
		.min_final_cltv_expiry_delta(144)
		.basic_mpp()
		.build_signed(|digest| secp.sign_ecdsa_recoverable(digest, &key))
		.expect("a signed invoice")
		.to_string()
}

/// Case d1: T asks our default fee (1,000 msat + 1,000 ppm), above
/// Electrum's level 1. Electrum reads T's legacy NODE|51
/// (`trampoline_fee_insufficient`), raises its level after each refusal
/// and succeeds at level 4 (7,000 msat + 1,000 ppm), the first that covers
/// both trampolines; each trampoline keeps what Electrum offered it.
async fn fee_escalation(network: &Network) {
	let amount_msat = 100_000_000;
	let before = network.balances().await;
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let paid = network.electrum.lnpay(&invoice).await.expect("lnpay answers, no crash");
	assert!(paid.success, "{paid:?}\n{}", network.electrum.log_tail(40));
	let codes: Vec<&str> = paid.attempts.iter().map(|a| a.2.as_str()).collect();
	assert_eq!(
		codes,
		["TRAMPOLINE_FEE_INSUFFICIENT"; 3].iter().copied().chain(["Success"]).collect::<Vec<_>>()
	);
	assert_eq!(network.electrum.fee_levels_tried(), [1, 2, 3, 4]);
	assert_eq!(common::wait_ldk_received(&network.recipient).await, amount_msat);
	// Level 4 for both: T2 gets 7,000 + 1,000 ppm of the amount, T the same
	// of the amount plus T2's fee.
	#[allow(clippy::needless_update)]
	let level_4 = TrampolinePolicy {
		fee_base_msat: 7_000,
		fee_proportional_millionths: 1_000,
		cltv_expiry_delta: 576,
		..TrampolinePolicy::default()
	};
	let (fee, second_fee) = two_trampoline_fees(&level_4, amount_msat);
	network.electrum.wait_no_htlcs().await;
	let sent = amount_msat + fee + second_fee;
	network.electrum.wait_lightning_msat(before.electrum_msat - sent).await;
	for node in [&network.trampoline, &network.second] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&network.trampoline, before.trampoline_sat + fee / 1000).await;
	wait_lightning_balance(&network.second, before.second_sat + second_fee / 1000).await;
}

/// Case d2: E pays a node nobody knows. T2 cannot reach it; Electrum
/// drops to one trampoline (T) and T cannot reach it either. Electrum ends
/// the payment with the failure it read (`lnpay` answers, unsuccessful,
/// every attempt's failure named), no HTLC stays, balances are restored.
///
/// Which code ends it cleanly matters: Electrum 4.3.4 retries
/// `unknown_next_peer` and `temporary_node_failure` on "another" route, but
/// with one trampoline left the route is the same, and the second identical
/// failure trips `assert r not in self.failed_trampoline_routes`
/// (`lnworker.py` line 1353): an AssertionError out of `lnpay`, not a
/// failed payment. eclair answers an unreachable recipient with
/// `trampoline_fee_insufficient`, which Electrum escalates until its levels
/// run out and then ends with a plain failure.
async fn unknown_recipient(network: &Network) {
	let before = network.balances().await;
	let before_t = stats(&network.trampoline);
	let invoice = unknown_recipient_invoice(10_000_000);
	let paid = network.electrum.lnpay(&invoice).await.expect("lnpay answers, no crash");
	assert!(!paid.success, "{paid:?}");
	assert!(paid.attempts.len() >= 2, "two trampolines, then one: {paid:?}");
	for attempt in &paid.attempts {
		assert!(!attempt.2.is_empty() && attempt.2 != "None", "unreadable failure: {paid:?}");
	}
	network.electrum.wait_no_htlcs().await;
	for node in [&network.trampoline, &network.second] {
		wait_no_htlcs(node).await;
	}
	network.electrum.wait_lightning_msat(before.electrum_msat).await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat).await;
	wait_lightning_balance(&network.second, before.second_sat).await;
	assert!(stats(&network.trampoline).failed > before_t.failed);
	assert!(!network.electrum.log().contains("Traceback"), "{}", network.electrum.log_tail(60));
}

/// Electrum against our *default* policy and against failures: it must
/// read every failure we send it (legacy dialect: NODE|51/52 and the other
/// legacy codes under the outer secret alone). Before the dialect, Electrum
/// 4.3.4 could not decode a single failure of ours and its pay loop crashed
/// (`lnworker.py` line 1313, `route[sender_idx]` with `sender_idx` None);
/// with `unknown_next_peer` for an unreachable recipient, `lnpay` ended in
/// Electrum's AssertionError (see `unknown_recipient`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn electrum_reads_our_failures_escalates_and_ends_cleanly() {
	let network = network(TrampolinePolicy::default()).await;
	let started = std::time::Instant::now();
	if selected("fee_escalation") {
		fee_escalation(&network).await;
		eprintln!("fee_escalation passed after {:?}", started.elapsed());
	}
	if selected("unknown_recipient") {
		unknown_recipient(&network).await;
		eprintln!("unknown_recipient passed after {:?}", started.elapsed());
	}
}

/// Case f: our wallet W pays R through an Electrum wallet E3 configured to
/// forward trampoline payments: W --> E3 (its only trampoline, given R's
/// invoice data, legacy layout) --> E3 pays R itself, in trampoline mode,
/// through T and T2. Our onion suits Electrum 4.3.4: `invoice_features` as
/// a u64, a final hop for R after E3 (else E3 takes itself for the
/// recipient), and E3's expiry as a delta (it adds its own height). E3
/// pays T and T2 at its level 1 (576 blocks each) out of what W offered
/// it: W offers it those 1,152 blocks and 144 more, so that E3's HTLC to T
/// expires before W's to E3 (Electrum 4.3.4 does not check it for a
/// legacy forward).
async fn wallet_pays_through_electrum(network: &Network) {
	let net = &network.net;
	let options = ElectrumOptions {
		trampolines: vec![(network.second.node_id(), network.second.listen_addr())],
		listen: true,
		forward_trampoline_payments: true,
	};
	let e3 = Electrum::start(net, &network.server, &net.dir().join("electrum3"), &options).await;
	e3.fund(net, 1).await;
	let (t_id, t_addr) = (network.trampoline.node_id(), network.trampoline.listen_addr());
	let point = e3.open_channel(t_id, t_addr, ELECTRUM_CHANNEL_SAT, 0).await;
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("E3's funding transaction");
	let e3_addr = e3.listen_addr().expect("E3 listens");
	// Confirms E3's channel to T with W's to E3.
	net.open_channel_to(&network.wallet, e3.node_id(), e3_addr, RELAY_CHANNEL_SAT, 0, false)
		.await
		.expect("W-E3");
	e3.wait_channel_usable(&point).await;
	for channel in e3.channels().await {
		e3.wait_channel_usable(&channel.channel_point).await;
	}
	wait_channels_usable(&network.wallet).await;
	wait_channels_usable(&network.trampoline).await;

	let amount_msat = 20_000_000;
	let (fee, second_fee) = two_trampoline_fees(&network.policy, amount_msat);
	// E3's own costs (T's and T2's fees at its level 1) and its margin.
	let e3_fee = fee + second_fee + 4_000;
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let invoice = lightning_invoice::Bolt11Invoice::from_str(&invoice).expect("R's invoice");
	let e3_cltv_delta = 2 * 576 + 144;
	let hop = TrampolineRouteHop {
		node_id: e3.node_id(),
		fee_msat: e3_fee,
		cltv_expiry_delta: e3_cltv_delta,
		async_payment: false,
	};
	let budget =
		TrampolineBudget { max_fee_msat: e3_fee, max_cltv_expiry_delta: e3_cltv_delta.into() };
	let before = network.balances().await;
	let e3_before = e3.lightning_msat().await;
	let id =
		network.wallet.pay_invoice_via_trampolines_within(&invoice, &[hop], budget).expect("pay");
	let paid = network.wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert_eq!(
		paid.status,
		PaymentStatus::Succeeded,
		"{paid:?}: {:?}\n{}",
		network.wallet.trampoline_failure(&hash_of(&invoice)),
		e3.log_tail(60)
	);
	assert_eq!(common::wait_ldk_received(&network.recipient).await, amount_msat);
	// 20,000 sat at level 1: T2's fee 3,000 msat, T's 3,000 (3,000.3
	// rounded down); E3 keeps the 4,000 msat left of what W offered.
	assert_eq!((fee, second_fee), (3_000, 3_000));
	e3.wait_no_htlcs().await;
	e3.wait_lightning_msat(e3_before + e3_fee - fee - second_fee).await;
	for node in [&network.wallet, &network.trampoline, &network.second] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&network.wallet, before.wallet_sat - (amount_msat + e3_fee) / 1000)
		.await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat + fee / 1000).await;
	wait_lightning_balance(&network.second, before.second_sat + second_fee / 1000).await;
	let hash = hash_of(&invoice);
	for (node, total) in [
		(&network.trampoline, amount_msat + fee + second_fee),
		(&network.second, amount_msat + second_fee),
	] {
		let buckets = node.trampoline().expect("relay on").core().buckets();
		let bucket = buckets.iter().find(|b| b.payment_hash == hash).expect("a bucket");
		assert_eq!((bucket.state, bucket.outer_total_msat), (BucketStage::Relayed, total));
	}
}

/// Our sender through an Electrum trampoline forwarder (issue 13, build
/// item 3): before the sender's legacy onion suited Electrum 4.3.4, E3
/// failed W's HTLC with invalid_onion_version ("UnexpectedEndOfStream" on
/// a 3-byte `invoice_features`, which it reads as a u64), and with the
/// features padded, with incorrect_or_unknown_payment_details (no hop after
/// it in the trampoline onion: it took itself for the recipient).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_wallet_pays_through_an_electrum_trampoline() {
	let network = network(electrum_level_1()).await;
	wallet_pays_through_electrum(&network).await;
}
