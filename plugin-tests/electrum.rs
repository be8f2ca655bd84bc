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
//! `ELECTRUM_CASE=<name>[,<name>...]` runs those (and those before them that
//! they build on).
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
use ldk_trampoline::relay::{BucketStage, RelayLimits, RelayStats, TrampolinePolicy};
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
	network_with(policy, RelayLimits::default(), RelayLimits::default()).await
}

/// [`network`], with T under `limits` and T2 under `second_limits`.
async fn network_with(
	policy: TrampolinePolicy, limits: RelayLimits, second_limits: RelayLimits,
) -> Network {
	let mut net = RegtestNetwork::start_with_bitcoind_args(&BITCOIND_ARGS).expect("regtest");
	let relay = |name: &str| {
		let mut config = net.node_config(name);
		config.trampoline = Some(policy);
		config
	};
	let (mut t_config, mut t2_config) = (relay("trampoline"), relay("second"));
	t_config.trampoline_limits = limits;
	t2_config.trampoline_limits = second_limits;
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
	std::env::var("ELECTRUM_CASE").map_or(true, |only| only.split(',').any(|name| name == case))
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
	/// Waits until E, T and T2 have no HTLC left, E spent `sent_msat` since
	/// `before`, T gained `t_msat` and T2 `t2_msat` (the nodes report whole
	/// sat, rounded down).
	async fn wait_settled(&self, before: &Balances, sent_msat: u64, t_msat: u64, t2_msat: u64) {
		self.electrum.wait_no_htlcs().await;
		self.electrum.wait_lightning_msat(before.electrum_msat - sent_msat).await;
		for node in [&self.trampoline, &self.second] {
			wait_no_htlcs(node).await;
		}
		wait_lightning_balance(&self.trampoline, before.trampoline_sat + t_msat / 1000).await;
		wait_lightning_balance(&self.second, before.second_sat + t2_msat / 1000).await;
	}

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
		self.wait_settled(&before, sent, fee, second_fee).await;

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

/// An invoice of R for `amount_msat`, and its hash; then R stops and T2
/// sees it offline.
async fn invoice_of_stopped_recipient(
	network: &Network, amount_msat: u64,
) -> (String, PaymentHash) {
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let parsed: lightning_invoice::Bolt11Invoice = invoice.parse().expect("R's invoice");
	network.recipient.stop().expect("R stops");
	common::wait_peer_offline(&network.second, network.recipient.node_id()).await;
	(invoice, hash_of(&parsed))
}

/// Case d: R is offline when E pays. T relays to T2, T2 holds the
/// complete bucket (R is its peer) until R is back, then pays R: Electrum
/// waits on its HTLC and sees one successful attempt.
async fn offline_recipient(network: &Network) {
	// 20,000 sat: T2's fee 3,000 msat, T's 3,000 msat (3,000.3 rounded down).
	let amount_msat = 20_000_000;
	let (invoice, hash) = invoice_of_stopped_recipient(network, amount_msat).await;
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

/// The trampoline hops of each route Electrum built, in order
/// (`trampoline hops: [...]` in its log), as node ids.
fn trampoline_hops_tried(electrum: &Electrum) -> Vec<Vec<String>> {
	const MARK: &str = "trampoline hops: ";
	electrum
		.log()
		.lines()
		.filter_map(|line| line.split(MARK).nth(1))
		.map(|rest| {
			rest.trim_matches(|c| c == '[' || c == ']' || c == ' ')
				.split(',')
				.map(|hop| hop.trim().trim_matches('\'').to_string())
				.filter(|hop| !hop.is_empty())
				.collect()
		})
		.collect()
}

/// Case g: E pays an invoice of one of our nodes, T2, end to end with T as
/// its only trampoline. T2's invoice sets bit 151 and carries no route
/// hint (T2's channel to T is public), so Electrum takes T2 for a
/// trampoline-capable recipient (`is_legacy_relay` in `trampoline.py`):
/// its trampoline onion is [T: next trampoline T2] [T2: receive], in 66100.
/// T relays the peeled packet to T2 (legacy, as E spoke) and T2 receives it
/// as the final trampoline (the handler turns it into a receive of its
/// invoice for LDK). T keeps its fee; T2 gets the amount and relays
/// nothing. Without 151 in T2's invoice Electrum would pay it as a legacy
/// recipient through two trampolines (T, then T2 from its list, then T2
/// again as the recipient), which this case would see in the hops and fees.
async fn electrum_pays_our_invoice(network: &Network) {
	let amount_msat = 40_000_000;
	let before = network.balances().await;
	let before_second = stats(&network.second);
	let invoice = network.second.create_invoice(Some(amount_msat), "to T2", 3600).expect("inv");
	assert!(invoice
		.features()
		.is_some_and(|f| f.le_flags().get(18).is_some_and(|b| b & 0x80 != 0)));
	assert!(invoice.route_hints().is_empty(), "{invoice}");
	let hash = hash_of(&invoice);
	let hops_before = trampoline_hops_tried(&network.electrum).len();
	let paid = network.electrum.lnpay(&invoice.to_string()).await.expect("lnpay answers");
	assert!(paid.success, "{paid:?}\n{}", network.electrum.log_tail(40));
	assert_eq!(paid.attempts.len(), 1, "{paid:?}");
	assert_eq!(paid.attempts[0].2, "Success");
	let hops = trampoline_hops_tried(&network.electrum);
	assert_eq!(
		hops[hops_before..],
		[vec![network.trampoline.node_id().to_string(), network.second.node_id().to_string()]],
		"one trampoline, then T2 as the recipient"
	);
	assert!(network.electrum.fee_levels_tried().iter().all(|level| *level == 1));

	// One trampoline, T: its fee on the amount, at level 1.
	let fee = network.policy.fee_msat(amount_msat);
	let sent = amount_msat + fee;
	let hex = invoice.payment_hash().to_string();
	assert_eq!(
		network.electrum.settled_payment(&hex).await,
		Some((-(sent as i64), Some(fee as i64)))
	);
	let deadline = tokio::time::Instant::now() + DEADLINE;
	let received = loop {
		let record = network.second.list_payments().into_iter().find(|p| {
			p.payment_hash.as_deref() == Some(hex.as_str())
				&& p.direction == ldk_trampoline::node::PaymentDirection::Inbound
		});
		if let Some(record) = record.filter(|r| r.status == PaymentStatus::Succeeded) {
			break record;
		}
		assert!(tokio::time::Instant::now() < deadline, "T2 never received");
		tokio::time::sleep(Duration::from_millis(50)).await;
	};
	assert_eq!(received.amount_msat, Some(amount_msat));
	network.wait_settled(&before, sent, fee, amount_msat).await;
	let buckets = network.trampoline.trampoline().expect("relay on").core().buckets();
	let bucket = buckets.iter().find(|b| b.payment_hash == hash).expect("T's bucket");
	assert_eq!((bucket.state, bucket.outer_total_msat), (BucketStage::Relayed, sent));
	assert_eq!(bucket.dialect, ldk_trampoline::relay::Dialect::Legacy);
	// T2 received: no bucket of its own, nothing relayed.
	assert!(relayed(&network.second, hash).is_empty());
	assert_eq!(stats(&network.second).relayed, before_second.relayed);
}

/// Case h: E pays R, which rejects the payment (R does not know the
/// payment: it fails it back as LDK does an unknown payment hash,
/// `incorrect_or_unknown_payment_details`). T2 tells T, T tells E, in the
/// legacy dialect; Electrum reads the code, drops to one trampoline (its
/// pay loop does so on any other code while it has two). T, now the last
/// trampoline, must pay R itself through T2, whose forwarding fee level 1
/// leaves no room for (it pays exactly our fee): NODE|51. At level 2 T
/// pays R through T2, R rejects again, and Electrum ends the payment with
/// that code. No HTLC stays, balances are restored.
async fn recipient_rejects(network: &Network) {
	use bitcoin::hashes::{sha256, Hash as _};
	let amount_msat = 30_000_000;
	let before = network.balances().await;
	let hash = sha256::Hash::hash(&rand::random::<[u8; 32]>());
	let description = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
		ldk_node::lightning_invoice::Description::new("rejected".into()).expect("text"),
	);
	let ldk_hash = lightning::types::payment::PaymentHash(hash.to_byte_array());
	let invoice = network
		.recipient
		.bolt11_payment()
		.receive_for_hash(amount_msat, &description, 3600, ldk_hash)
		.expect("invoice")
		.to_string();
	let refuse = async {
		let mut refused = 0;
		loop {
			common::wait_ldk_event(&network.recipient, DEADLINE, "a claimable payment", |e| {
				matches!(e, ldk_node::Event::PaymentClaimable { payment_hash, .. }
					if *payment_hash == ldk_hash)
				.then_some(())
			})
			.await;
			network.recipient.bolt11_payment().fail_for_hash(ldk_hash).expect("R refuses");
			refused += 1;
			eprintln!("R refused attempt {refused}");
		}
	};
	let paid = tokio::select! {
		paid = network.electrum.lnpay(&invoice) => paid.expect("lnpay answers, no crash"),
		() = refuse => unreachable!(),
	};
	assert!(!paid.success, "{paid:?}");
	let codes: Vec<&str> = paid.attempts.iter().map(|a| a.2.as_str()).collect();
	let rejected = "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS";
	assert_eq!(codes, [rejected, "TRAMPOLINE_FEE_INSUFFICIENT", rejected], "{paid:?}");
	let hops = trampoline_hops_tried(&network.electrum);
	let (t, t2) = (network.trampoline.node_id().to_string(), network.second.node_id().to_string());
	let r = network.recipient.node_id().to_string();
	let alone = vec![t.clone(), r.clone()];
	assert_eq!(hops[hops.len() - 3..], [vec![t, t2, r], alone.clone(), alone]);
	let levels = network.electrum.fee_levels_tried();
	assert_eq!(levels[levels.len() - 3..], [1, 1, 2]);
	// What T put on the wire for E: R's answer, readable, twice, and its
	// NODE|51 in between.
	let mut failures: Vec<u16> = network
		.trampoline
		.trampoline()
		.expect("relay on")
		.core()
		.failures_sent(&ldk_hash)
		.iter()
		.map(|f| f.code())
		.collect();
	failures.sort_unstable();
	use ldk_trampoline::onion::codes;
	assert_eq!(
		failures,
		[
			codes::TRAMPOLINE_FEE_INSUFFICIENT,
			codes::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
			codes::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
		]
	);
	network.wait_settled(&before, 0, 0, 0).await;
	assert!(!network.electrum.log().contains("Traceback"), "{}", network.electrum.log_tail(60));
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
	if selected("electrum_pays_our_invoice") {
		electrum_pays_our_invoice(&network).await;
		eprintln!("electrum_pays_our_invoice passed after {:?}", started.elapsed());
	}
	if selected("recipient_rejects") {
		recipient_rejects(&network).await;
		eprintln!("recipient_rejects passed after {:?}", started.elapsed());
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
///
/// Run for 100,000 sat and 10,000 sat (the README's table; for 10,000 sat
/// level 3 falls 1,000 msat short at T2: 5,000 + 5,000 against our 11,000).
async fn fee_escalation(network: &Network, amount_msat: u64) {
	let before = network.balances().await;
	let levels_before = network.electrum.fee_levels_tried().len();
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let paid = network.electrum.lnpay(&invoice).await.expect("lnpay answers, no crash");
	assert!(paid.success, "{paid:?}\n{}", network.electrum.log_tail(40));
	let codes: Vec<&str> = paid.attempts.iter().map(|a| a.2.as_str()).collect();
	assert_eq!(
		codes,
		["TRAMPOLINE_FEE_INSUFFICIENT"; 3].iter().copied().chain(["Success"]).collect::<Vec<_>>()
	);
	assert_eq!(network.electrum.fee_levels_tried()[levels_before..], [1, 2, 3, 4]);
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
	eprintln!("{amount_msat} msat at level 4: T keeps {fee} msat, T2 {second_fee} msat");
	let sent = amount_msat + fee + second_fee;
	network.wait_settled(&before, sent, fee, second_fee).await;
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
	network.wait_settled(&before, 0, 0, 0).await;
	assert!(stats(&network.trampoline).failed > before_t.failed);
	assert!(!network.electrum.log().contains("Traceback"), "{}", network.electrum.log_tail(60));
}

/// What E may have in flight at T in the failures' network
/// (`RelayLimits::max_live_msat_per_peer`): either of E's channels' worth,
/// not both.
const MAX_LIVE_MSAT: u64 = 450_000_000;

/// Case d4: E pays 500,000 sat, more than either of its channels holds, in
/// two parts; T admits the first part and refuses the second
/// ([`MAX_LIVE_MSAT`]: `temporary_node_failure` for it), so its bucket
/// stays incomplete until LDK's MPP timer gives up on it (three timer
/// ticks, made here) and T fails the first part with `mpp_timeout`.
/// Electrum waits for its whole bucket to fail (`htlc_failed`, "bucket
/// still active"), reports the last failure, `MPP_TIMEOUT`, and ends the
/// payment (its pay loop gives up on that code): no crash, no HTLC left,
/// balances restored, nothing relayed.
async fn mpp_timeout(network: &Network) {
	let before = network.balances().await;
	let before_t = stats(&network.trampoline);
	let invoice = recipient_invoice(&network.recipient, 500_000_000);
	let parsed: lightning_invoice::Bolt11Invoice = invoice.parse().expect("R's invoice");
	let tick = async {
		loop {
			network.trampoline.channel_manager().timer_tick_occurred();
			tokio::time::sleep(Duration::from_millis(500)).await;
		}
	};
	let paid = tokio::select! {
		paid = network.electrum.lnpay(&invoice) => paid.expect("lnpay answers, no crash"),
		() = tick => unreachable!(),
	};
	assert!(!paid.success, "{paid:?}");
	let codes: Vec<&str> = paid.attempts.iter().map(|a| a.2.as_str()).collect();
	assert_eq!(codes, ["MPP_TIMEOUT"], "{paid:?}");
	let mut sent: Vec<u16> = network
		.trampoline
		.trampoline()
		.expect("relay on")
		.core()
		.failures_sent(&hash_of(&parsed))
		.iter()
		.map(|f| f.code())
		.collect();
	sent.sort_unstable();
	use ldk_trampoline::onion::codes;
	assert_eq!(sent, [codes::MPP_TIMEOUT, codes::TEMPORARY_NODE_FAILURE]);
	network.wait_settled(&before, 0, 0, 0).await;
	assert_eq!(stats(&network.trampoline).relayed, before_t.relayed);
	assert!(relayed(&network.second, hash_of(&parsed)).is_empty());
	assert!(!network.electrum.log().contains("Traceback"), "{}", network.electrum.log_tail(60));
}

/// How long T2 holds a payment for an offline recipient in the failures'
/// network (`RelayLimits::max_hold_secs`).
const HOLD_SECS: u64 = 5;

/// Case d3: R is offline and stays so. T2 holds the bucket (at level 4,
/// after three NODE|51) and, after [`HOLD_SECS`], fails it back
/// (`HoldExpired`): `temporary_node_failure` for the legacy payer, passed
/// on by T. Electrum reads it, drops to one trampoline (T, which then
/// cannot reach R: NODE|51, escalated until Electrum's levels run out), and
/// ends the payment with a failure it read: no crash, no HTLC left,
/// balances restored.
async fn hold_expired(network: &Network) {
	let before = network.balances().await;
	let amount_msat = 20_000_000;
	let (invoice, hash) = invoice_of_stopped_recipient(network, amount_msat).await;
	let held = async {
		wait_bucket(&network.second, hash, BucketStage::Held).await;
		eprintln!("T2 holds");
	};
	let (paid, ()) = tokio::join!(network.electrum.lnpay(&invoice), held);
	let paid = paid.expect("lnpay answers, no crash");
	eprintln!("hold_expired: {paid:?}");
	assert!(!paid.success, "{paid:?}");
	let codes: Vec<&str> = paid.attempts.iter().map(|a| a.2.as_str()).collect();
	// Levels 1-3 refused by T (our default fee), the hold at level 4 expires
	// (temporary_node_failure), then T alone cannot reach R (offline):
	// NODE|51 at levels 4, 5 and 6, and Electrum has no level left.
	let fee = "TRAMPOLINE_FEE_INSUFFICIENT";
	assert_eq!(codes, [fee, fee, fee, "TEMPORARY_NODE_FAILURE", fee, fee, fee], "{paid:?}");
	let levels = network.electrum.fee_levels_tried();
	assert_eq!(levels[levels.len() - 7..], [1, 2, 3, 4, 4, 5, 6]);
	for node in [&network.trampoline, &network.second] {
		let sent = node.trampoline().expect("relay on").core().failures_sent(&hash);
		assert!(
			sent.contains(&ldk_trampoline::onion::FailureMessage::TemporaryNodeFailure),
			"{sent:?}"
		);
	}
	assert_eq!(stats(&network.second).held, 0);
	network.wait_settled(&before, 0, 0, 0).await;
	assert!(!network.electrum.log().contains("Traceback"), "{}", network.electrum.log_tail(60));
	network.recipient.start().expect("R is back");
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
	let limits = RelayLimits { max_live_msat_per_peer: MAX_LIVE_MSAT, ..RelayLimits::default() };
	let second_limits = RelayLimits { max_hold_secs: HOLD_SECS, ..RelayLimits::default() };
	let network = network_with(TrampolinePolicy::default(), limits, second_limits).await;
	let started = std::time::Instant::now();
	if selected("fee_escalation") {
		fee_escalation(&network, 100_000_000).await;
		eprintln!("fee_escalation passed after {:?}", started.elapsed());
	}
	if selected("fee_escalation_10k") {
		fee_escalation(&network, 10_000_000).await;
		eprintln!("fee_escalation_10k passed after {:?}", started.elapsed());
	}
	if selected("unknown_recipient") {
		unknown_recipient(&network).await;
		eprintln!("unknown_recipient passed after {:?}", started.elapsed());
	}
	if selected("mpp_timeout") {
		mpp_timeout(&network).await;
		eprintln!("mpp_timeout passed after {:?}", started.elapsed());
	}
	if selected("hold_expired") {
		hold_expired(&network).await;
		eprintln!("hold_expired passed after {:?}", started.elapsed());
	}
}

/// Starts E3, an Electrum wallet forwarding trampoline payments, with a
/// channel to T and one from W.
async fn start_forwarder(network: &Network) -> Electrum {
	let net = &network.net;
	let options = ElectrumOptions {
		trampolines: vec![(network.second.node_id(), network.second.listen_addr())],
		listen: true,
		forward_trampoline_payments: true,
		gossip: false,
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
	e3
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
async fn wallet_pays_through_electrum(network: &Network, e3: &Electrum) {
	let (fee, second_fee) = two_trampoline_fees(&network.policy, 20_000_000);
	// 20,000 sat at level 1: T2's fee 3,000 msat, T's 3,000 (3,000.3
	// rounded down); E3 keeps the 4,000 msat left of what W offered.
	assert_eq!((fee, second_fee), (3_000, 3_000));
	// E3's own costs (T's and T2's fees at its level 1) and its margin.
	wallet_pays_r_through_e3(network, e3, fee + second_fee + 4_000).await;
}

/// W pays `invoice` through `route` within `budget` and succeeds (else the
/// test fails with what the first trampoline, `first`, logged); returns the
/// payment hash.
async fn wallet_pays(
	network: &Network, invoice: &lightning_invoice::Bolt11Invoice, route: &[TrampolineRouteHop],
	budget: TrampolineBudget, first: &Electrum,
) -> PaymentHash {
	let id =
		network.wallet.pay_invoice_via_trampolines_within(invoice, route, budget).expect("pay");
	let paid = network.wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	let hash = hash_of(invoice);
	assert_eq!(
		paid.status,
		PaymentStatus::Succeeded,
		"{paid:?}: {:?}\n{}",
		network.wallet.trampoline_failure(&hash),
		first.log_tail(60)
	);
	hash
}

/// W pays R 20,000 sat through E3, offering it `e3_fee` (and nothing more
/// to escalate to): one attempt, R paid, E3 keeps `e3_fee` less what it
/// paid T and T2 at its level 1 (each keeps exactly its fee), W spends the
/// amount and `e3_fee`, T and T2 relayed one bucket each.
async fn wallet_pays_r_through_e3(network: &Network, e3: &Electrum, e3_fee: u64) {
	let amount_msat = 20_000_000;
	let (fee, second_fee) = two_trampoline_fees(&network.policy, amount_msat);
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let invoice = lightning_invoice::Bolt11Invoice::from_str(&invoice).expect("R's invoice");
	let (hop, budget) = through_e3(e3, e3_fee, e3_fee);
	let before = network.balances().await;
	let e3_before = e3.lightning_msat().await;
	let hash = wallet_pays(network, &invoice, &[hop], budget, e3).await;
	// At the first attempt: nothing read, nothing escalated.
	assert_eq!(network.wallet.trampoline_failure(&hash), None);
	assert_eq!(common::wait_ldk_received(&network.recipient).await, amount_msat);
	e3.wait_no_htlcs().await;
	e3.wait_lightning_msat(e3_before + e3_fee - fee - second_fee).await;
	for node in [&network.wallet, &network.trampoline, &network.second] {
		wait_no_htlcs(node).await;
	}
	wait_lightning_balance(&network.wallet, before.wallet_sat - (amount_msat + e3_fee) / 1000)
		.await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat + fee / 1000).await;
	wait_lightning_balance(&network.second, before.second_sat + second_fee / 1000).await;
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
	let e3 = start_forwarder(&network).await;
	let started = std::time::Instant::now();
	if selected("wallet_pays_through_electrum") {
		wallet_pays_through_electrum(&network, &e3).await;
		eprintln!("wallet_pays_through_electrum passed after {:?}", started.elapsed());
	}
	if selected("electrum_forwarder_takes_any_fee") {
		electrum_forwarder_takes_any_fee(&network, &e3).await;
		eprintln!("electrum_forwarder_takes_any_fee passed after {:?}", started.elapsed());
	}
	if selected("electrum_forwarder_unknown_recipient") {
		electrum_forwarder_unknown_recipient(&network, &e3).await;
		eprintln!("electrum_forwarder_unknown_recipient passed after {:?}", started.elapsed());
	}
	if selected("electrum_then_us") {
		electrum_then_us(&network).await;
		eprintln!("electrum_then_us passed after {:?}", started.elapsed());
	}
	assert!(!e3.log().contains("Traceback"), "{}", e3.log_tail(60));
}

/// W's route through E3 to R, offering E3 `e3_fee` and its delta (see
/// [`wallet_pays_through_electrum`]), within `budget_msat` of fees.
fn through_e3(
	e3: &Electrum, e3_fee: u64, budget_msat: u64,
) -> (TrampolineRouteHop, TrampolineBudget) {
	let e3_cltv_delta = 2 * 576 + 144;
	let hop = TrampolineRouteHop {
		node_id: e3.node_id(),
		fee_msat: e3_fee,
		cltv_expiry_delta: e3_cltv_delta,
		async_payment: false,
	};
	(
		hop,
		TrampolineBudget { max_fee_msat: budget_msat, max_cltv_expiry_delta: e3_cltv_delta.into() },
	)
}

/// Case j: W offers E3 500 msat, below the 1,000 msat (and 576 blocks)
/// Electrum's forwarder asks at least (`pay_to_node`: `fwd_trampoline_fee
/// < 1000` is NODE|51, `fwd_trampoline_cltv_delta < 576` NODE|52). Electrum
/// 4.3.4 applies those checks only to an end-to-end forward (a next
/// trampoline onion, `fwd_trampoline_onion`); a legacy forward like ours
/// (invoice data for E3 to pay) is never refused for its fee: E3 forwards
/// at a loss, paying T and T2 their 3,000 msat each out of the 500 it got
/// (it does not compare the two either: "todo" in `pay_to_node`). So no
/// NODE|51 or NODE|52 can come from E3 for W; what our sender reads from it
/// is `unknown_next_peer` (case k).
async fn electrum_forwarder_takes_any_fee(network: &Network, e3: &Electrum) {
	// E3 loses 5,500 msat.
	wallet_pays_r_through_e3(network, e3, 500).await;
}

/// Case k: W pays, through E3, a node nobody knows. E3 pays it through T
/// and T2 (one attempt, `attempts=1` for a forward), T2 finds no route, T
/// passes T2's NODE|51 to E3, and E3 answers W `unknown_next_peer` (its
/// forwarder's answer to any failed forward, `PaymentFailure` in
/// `lnpeer.py`). Our sender reads it, takes it for a failed trampoline
/// route, has no other and ends the payment: no HTLC left, balances
/// restored.
async fn electrum_forwarder_unknown_recipient(network: &Network, e3: &Electrum) {
	let invoice = unknown_recipient_invoice(20_000_000);
	let invoice = lightning_invoice::Bolt11Invoice::from_str(&invoice).expect("the invoice");
	let (hop, budget) = through_e3(e3, 10_000, 10_000);
	let before = network.balances().await;
	let e3_before = e3.lightning_msat().await;
	let id =
		network.wallet.pay_invoice_via_trampolines_within(&invoice, &[hop], budget).expect("pay");
	let paid = network.wallet.wait_for_payment(id, DEADLINE).await.expect("outcome");
	assert!(matches!(paid.status, PaymentStatus::Failed { .. }), "{paid:?}");
	assert_eq!(
		network.wallet.trampoline_failure(&hash_of(&invoice)),
		Some(ldk_trampoline::onion::TrampolineFailure {
			hop: ldk_trampoline::onion::FailingHop::Trampoline(0),
			message: ldk_trampoline::onion::FailureMessage::UnknownNextPeer,
		}),
		"{paid:?}"
	);
	e3.wait_no_htlcs().await;
	for node in [&network.wallet, &network.trampoline, &network.second] {
		wait_no_htlcs(node).await;
	}
	e3.wait_lightning_msat(e3_before).await;
	wait_lightning_balance(&network.wallet, before.wallet_sat).await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat).await;
	wait_lightning_balance(&network.second, before.second_sat).await;
}

/// Case i: T asks more blocks (600) than any of Electrum's fee levels
/// offers (576 at every level of `TRAMPOLINE_FEES`), at Electrum's level-1
/// fee. T answers each attempt with the legacy NODE|52
/// (`trampoline_expiry_too_soon`) under its outer secret; Electrum reads
/// it and raises its level (its pay loop treats 52 like 51) through levels
/// 1 to 5; level 6 (100,000 msat + 3,000 ppm) fails its own fee sanity
/// check for 10,000 sat (`is_fee_sane`: over 1%), so it ends the payment
/// there (`NoPathFound`): no crash, no HTLC left, balances restored.
async fn expiry_too_soon(network: &Network) {
	let before = network.balances().await;
	let invoice = recipient_invoice(&network.recipient, 10_000_000);
	let parsed: lightning_invoice::Bolt11Invoice = invoice.parse().expect("R's invoice");
	let paid = network.electrum.lnpay(&invoice).await.expect("lnpay answers, no crash");
	assert!(!paid.success, "{paid:?}");
	let codes: Vec<&str> = paid.attempts.iter().map(|a| a.2.as_str()).collect();
	assert_eq!(codes, ["TRAMPOLINE_EXPIRY_TOO_SOON"; 5], "{paid:?}");
	assert_eq!(network.electrum.fee_levels_tried(), [1, 2, 3, 4, 5]);
	let failures =
		network.trampoline.trampoline().expect("relay on").core().failures_sent(&hash_of(&parsed));
	assert_eq!(failures.len(), 5, "{failures:?}");
	for failure in &failures {
		assert_eq!(failure.code(), ldk_trampoline::onion::codes::TRAMPOLINE_EXPIRY_TOO_SOON);
	}
	network.wait_settled(&before, 0, 0, 0).await;
	assert!(relayed(&network.second, hash_of(&parsed)).is_empty(), "T2 never saw it");
	assert!(!network.electrum.log().contains("Traceback"), "{}", network.electrum.log_tail(60));
}

/// A delta no Electrum fee level covers: NODE|52 for every legacy payer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn electrum_reads_expiry_too_soon_through_its_levels_and_ends_cleanly() {
	let policy = TrampolinePolicy { cltv_expiry_delta: 600, ..electrum_level_1() };
	let network = network(policy).await;
	expiry_too_soon(&network).await;
}

/// Case l: two trampolines, an Electrum forwarder first and us second, for
/// an Electrum payer:
///
/// ```text
/// E1 --> E4 (Electrum forwarding trampoline payments, gossip mode) --> T --> R
/// ```
///
/// E1 pays R's plain invoice through two trampolines: E4, its peer, then T
/// from its trampoline list. E4 forwards E1's peeled trampoline packet to
/// T (66100, its own random outer secret), T pays R (the legacy
/// "trampoline to legacy recipient" payload E1 wrote for it) over a direct
/// channel opened for the case. All at E1's level 1; E4 and T each keep
/// exactly the fee E1 offered them.
async fn electrum_then_us(network: &Network) {
	let net = &network.net;
	let t = (network.trampoline.node_id(), network.trampoline.listen_addr());
	let forwarder = ElectrumOptions {
		listen: true,
		forward_trampoline_payments: true,
		gossip: true,
		..ElectrumOptions::default()
	};
	let e4 = Electrum::start(net, &network.server, &net.dir().join("electrum4"), &forwarder).await;
	let payer = ElectrumOptions { trampolines: vec![t], ..ElectrumOptions::default() };
	let e1 = Electrum::start(net, &network.server, &net.dir().join("electrum1"), &payer).await;
	e4.fund(net, 1).await;
	e1.fund(net, 1).await;
	let e4_to_t = e4.open_channel(t.0, t.1, ELECTRUM_CHANNEL_SAT, 0).await;
	let e4_addr = e4.listen_addr().expect("E4 listens");
	let e1_to_e4 = e1.open_channel(e4.node_id(), e4_addr, ELECTRUM_CHANNEL_SAT, 0).await;
	net.bitcoind().wait_for_mempool(2, DEADLINE).expect("E4's and E1's funding transactions");
	// Confirms them with W's channel to E4 (case m).
	net.open_channel_to(&network.wallet, e4.node_id(), e4_addr, RELAY_CHANNEL_SAT, 0, false)
		.await
		.expect("W-E4");
	common::open_channel_to_ldk_node(
		net,
		&network.trampoline,
		&network.recipient,
		RELAY_CHANNEL_SAT,
		0,
		false,
	)
	.await;
	e4.wait_channel_usable(&e4_to_t).await;
	e4.wait_channel_usable(&e1_to_e4).await;
	e1.wait_channel_usable(&e1_to_e4).await;
	wait_channels_usable(&network.trampoline).await;

	let amount_msat = 30_000_000;
	let fee = network.policy.fee_msat(amount_msat);
	let e4_fee = network.policy.fee_msat(amount_msat + fee);
	let sent = amount_msat + fee + e4_fee;
	let before = network.balances().await;
	let e4_before = e4.lightning_msat().await;
	let e1_before = e1.lightning_msat().await;
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let parsed: lightning_invoice::Bolt11Invoice = invoice.parse().expect("R's invoice");
	let hash = hash_of(&parsed);
	let paid = e1.lnpay(&invoice).await.expect("lnpay answers");
	assert!(paid.success, "{paid:?}\n{}\n--- E4 ---\n{}", e1.log_tail(40), e4.log_tail(40));
	assert_eq!(paid.attempts.len(), 1, "{paid:?}");
	assert_eq!(e1.fee_levels_tried(), [1]);
	let r = network.recipient.node_id().to_string();
	assert_eq!(
		trampoline_hops_tried(&e1),
		[vec![e4.node_id().to_string(), t.0.to_string(), r]],
		"E4, then T"
	);
	assert_eq!(common::wait_ldk_received(&network.recipient).await, amount_msat);
	let hex = parsed.payment_hash().to_string();
	assert_eq!(e1.settled_payment(&hex).await, Some((-(sent as i64), Some((fee + e4_fee) as i64))));
	for wallet in [&e1, &e4] {
		wallet.wait_no_htlcs().await;
	}
	wait_no_htlcs(&network.trampoline).await;
	e1.wait_lightning_msat(e1_before - sent).await;
	e4.wait_lightning_msat(e4_before + e4_fee).await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat + fee / 1000).await;
	let buckets = network.trampoline.trampoline().expect("relay on").core().buckets();
	let bucket = buckets.iter().find(|b| b.payment_hash == hash).expect("T's bucket");
	assert_eq!(bucket.state, BucketStage::Relayed);
	assert_eq!(bucket.outer_total_msat, amount_msat + fee);
	assert_eq!(bucket.dialect, ldk_trampoline::relay::Dialect::Legacy);
	eprintln!("electrum_then_us: E1 paid {sent} msat; E4 kept {e4_fee}, T {fee}");
	wallet_through_e4_then_us(network, &e4).await;
	for wallet in [&e1, &e4] {
		assert!(!wallet.log().contains("Traceback"), "{}", wallet.log_tail(60));
	}
}

/// Case m: our wallet W pays R through two trampolines, E4 (an Electrum
/// forwarder, end to end: W's onion names T after it) then T, offering E4
/// 500 msat. Electrum's forwarder refuses an end-to-end forward paying it
/// less than 1,000 msat with the legacy NODE|51; our sender reads it and
/// raises every trampoline one Electrum level (`Escalation::RaiseFee`:
/// T from 4,000 msat, level 1, to 6,000, level 2; E4 from 500 to level 1,
/// 4,000 msat), which the budget admits exactly, and pays. Each keeps what
/// it was offered the second time; W spent the amount and 10,000 msat.
async fn wallet_through_e4_then_us(network: &Network, e4: &Electrum) {
	wait_channels_usable(&network.wallet).await;
	let amount_msat = 30_000_000;
	let invoice = recipient_invoice(&network.recipient, amount_msat);
	let invoice = lightning_invoice::Bolt11Invoice::from_str(&invoice).expect("R's invoice");
	let t_fee = network.policy.fee_msat(amount_msat);
	assert_eq!(t_fee, 4_000);
	let (raised_t_fee, raised_e4_fee) = (6_000, 4_000);
	let e4_cltv_delta = 600;
	let route = [
		TrampolineRouteHop {
			node_id: e4.node_id(),
			fee_msat: 500,
			cltv_expiry_delta: e4_cltv_delta,
			async_payment: false,
		},
		TrampolineRouteHop {
			node_id: network.trampoline.node_id(),
			fee_msat: t_fee,
			cltv_expiry_delta: network.policy.cltv_expiry_delta,
			async_payment: false,
		},
	];
	let budget = TrampolineBudget {
		max_fee_msat: raised_t_fee + raised_e4_fee,
		max_cltv_expiry_delta: u32::from(e4_cltv_delta + network.policy.cltv_expiry_delta),
	};
	let before = network.balances().await;
	let e4_before = e4.lightning_msat().await;
	let hash = wallet_pays(network, &invoice, &route, budget, e4).await;
	assert_eq!(common::wait_ldk_received(&network.recipient).await, amount_msat);
	e4.wait_no_htlcs().await;
	e4.wait_lightning_msat(e4_before + raised_e4_fee).await;
	for node in [&network.wallet, &network.trampoline] {
		wait_no_htlcs(node).await;
	}
	let spent = amount_msat + raised_t_fee + raised_e4_fee;
	wait_lightning_balance(&network.wallet, before.wallet_sat - spent / 1000).await;
	wait_lightning_balance(&network.trampoline, before.trampoline_sat + raised_t_fee / 1000).await;
	let buckets = network.trampoline.trampoline().expect("relay on").core().buckets();
	let bucket = buckets.iter().find(|b| b.payment_hash == hash).expect("T's bucket");
	assert_eq!(bucket.state, BucketStage::Relayed);
	assert_eq!(bucket.outer_total_msat, amount_msat + raised_t_fee);
	// One bucket at T: the first attempt ended at E4.
	assert_eq!(relayed(&network.trampoline, hash), vec![BucketStage::Relayed]);
	eprintln!("wallet_through_e4_then_us: W spent {spent} msat");
}
