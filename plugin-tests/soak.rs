//! kill -9 soak of the trampoline relay: the reference node (`ldk-trampoline
//! node`, a process) relays trampoline payments of a harness payer W to an
//! ldk-node recipient R, single-part and multi-part, while it is SIGKILLed
//! at random moments and restarted from the same data directory. At the end
//! every payment has succeeded or failed, no HTLC is pending anywhere, no
//! relay bucket is live, and each node's balance moved by exactly what its
//! payment records say (the relay's by the trampoline fees it earned).
//!
//! `SOAK_KILLS` (default 30) sets the number of kills, `SOAK_SEED` the
//! random seed (printed, so that a failing run can be replayed).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use common::relay_process::{ctl, free_port, node_args, Control, NodeProcess};
use ldk_trampoline::control::client::ControlClient;
use ldk_trampoline::control::{OpenChannelRequest, PayRequest};
use ldk_trampoline::node::{Node, PaymentDirection, PaymentStatus, RpcAuth};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::relay::TrampolinePolicy;
use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::channelmanager::PaymentId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What LDK logs when it force-closes a channel on restart because the
/// ChannelMonitor on disk is newer than the ChannelManager (rust-lightning
/// issue 4286: a kill between the two writes).
const STALE_MANAGER: &str = "A ChannelManager is stale compared to the current ChannelMonitor!";
/// The opposite, which would be a violation of the `chain::Watch` API.
const STALE_MONITOR: &str = "A ChannelMonitor is stale compared to the current ChannelManager!";
/// Each of W's two channels to T.
const WT_CHANNEL_SAT: u64 = 300_000;
/// T's channel to R.
const TR_CHANNEL_SAT: u64 = 5_000_000;
/// W's payments in flight at most.
const MAX_IN_FLIGHT: usize = 6;
/// How long the end waits for every payment and HTLC to settle.
const SETTLE_DEADLINE: Duration = Duration::from_secs(180);
/// An upper bound on the on-chain fees of one force close (commitment
/// transaction and sweeps at regtest fee rates), for the accounting of
/// force-closed channels.
const FORCE_CLOSE_FEE_BOUND_SAT: u64 = 30_000;

/// The relay T: the reference node process, restarted after every kill.
struct Relay {
	args: Vec<String>,
	work: PathBuf,
	data_dir: PathBuf,
	client: ControlClient,
	control: Control,
	process: NodeProcess,
	node_id: PublicKey,
	listen: SocketAddr,
}

impl Relay {
	fn spawn_process(
		args: &[String], work: &std::path::Path, data_dir: &std::path::Path,
	) -> NodeProcess {
		let args: Vec<&str> = args.iter().map(String::as_str).collect();
		NodeProcess::spawn(&args, work, data_dir)
	}

	/// Starts the process again from its data directory.
	fn respawn(&mut self) {
		self.process = Self::spawn_process(&self.args, &self.work, &self.data_dir);
	}

	/// How many times LDK logged `needle` over every run so far.
	fn log_count(&self, needle: &str) -> usize {
		self.process.ldk_log().matches(needle).count()
	}
}

/// What a payment of the soak was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
	/// W → T → R, one part.
	Single,
	/// W → T → R over both of W's channels.
	Mpp,
	/// T → W directly (to give W back outbound liquidity).
	Rebalance,
}

/// A payment the soak started.
struct Sent {
	kind: Kind,
	/// The invoice's amount.
	amount_msat: u64,
	/// The trampoline fee W offered (0 for a rebalance).
	fee_msat: u64,
	id: PaymentId,
	/// The kill count when it was sent.
	after_kills: usize,
}

/// W's channels to T.
fn wt_channels(w: &Node, t: &PublicKey) -> Vec<ChannelDetails> {
	let channels = w.channel_manager().list_channels();
	channels.into_iter().filter(|c| c.counterparty.node_id == *t).collect()
}

fn ldk_invoice(r: &ldk_node::Node, amount_msat: u64) -> lightning_invoice::Bolt11Invoice {
	let description = ldk_node::lightning_invoice::Bolt11InvoiceDescription::Direct(
		ldk_node::lightning_invoice::Description::new("soak".into()).unwrap(),
	);
	let invoice = r.bolt11_payment().receive(amount_msat, &description, 3600).expect("invoice");
	invoice.to_string().parse().unwrap()
}

/// Waits (at most `deadline`) until `$check` returns `Ok(value)`, with the
/// relay process asserted alive; `Err(last)` is shown on timeout.
macro_rules! wait_until {
	($relay:expr, $deadline:expr, $what:expr, $check:expr) => {{
		let until = tokio::time::Instant::now() + $deadline;
		loop {
			$relay.process.assert_running();
			match async { $check }.await {
				Ok(value) => break value,
				Err(last) if tokio::time::Instant::now() > until => {
					panic!("timed out waiting for {}; last: {:?}", $what, last)
				},
				Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
			}
		}
	}};
}

/// Whether T's control interface answers, W has a usable channel to T and T
/// a usable channel to R.
async fn links_up(relay: &Relay, w: &Node) -> Result<(), String> {
	let t_channels = relay.client.list_channels().await.map_err(|e| e.to_string())?.channels;
	if !t_channels.iter().any(|c| c.usable && c.capacity_sat == TR_CHANNEL_SAT) {
		return Err(format!("T has no usable channel to R: {t_channels:?}"));
	}
	if !wt_channels(w, &relay.node_id).iter().any(|c| c.is_usable) {
		return Err("W has no usable channel to T".into());
	}
	Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_survives_sigkill_with_payments_in_flight() {
	let kills_wanted: usize =
		std::env::var("SOAK_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(30);
	let seed: u64 =
		std::env::var("SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
	println!("soak: {kills_wanted} kills, SOAK_SEED={seed}");
	let mut rng = StdRng::seed_from_u64(seed);

	let mut net = RegtestNetwork::start().expect("regtest");
	let w = net.add_node("w").await.expect("w");
	let r = common::start_ldk_node(&net, "r");

	// T, on fixed ports so that peers find it again after every restart.
	let work = tempfile::Builder::new().prefix("ldk-trampoline-soak-").tempdir().unwrap();
	let rpc = net.bitcoind().rpc_config();
	let RpcAuth::UserPass { user, password } = &rpc.auth else { panic!("harness uses user/pass") };
	let data_dir = work.path().join("data");
	let control = Control::new(&data_dir);
	let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
	let mut args = node_args(
		"regtest",
		&data_dir.display().to_string(),
		&rpc.endpoint(),
		user,
		password,
		&control.address,
	);
	let at = args.iter().position(|a| a == "--listen").expect("--listen") + 1;
	args[at] = listen.to_string();
	let client = control.client();
	let mut process = Relay::spawn_process(&args, work.path(), &data_dir);
	let info = process.wait_ready(&client).await;
	let policy: TrampolinePolicy = info.trampoline.expect("the reference node relays");
	let mut relay = Relay {
		args,
		work: work.path().to_path_buf(),
		data_dir,
		client,
		control,
		process,
		node_id: info.node_id.parse().expect("node id"),
		listen,
	};

	// Channels: W ⇉ T (two, private, so that MPP has two paths) and T → R.
	let address = relay.client.new_address().await.expect("address").address;
	let address: bitcoin::Address<bitcoin::address::NetworkUnchecked> = address.parse().unwrap();
	net.fund_addresses(&[address.require_network(bitcoin::Network::Regtest).unwrap()], 1)
		.expect("fund T");
	net.fund(&[&w], 1).await.expect("fund W");
	wait_until!(relay, DEADLINE, "T's funds", {
		let b = relay.client.balances().await.map_err(|e| e.to_string())?;
		if b.onchain.confirmed_sat > 0 {
			Ok(())
		} else {
			Err(format!("{b:?}"))
		}
	});
	open_t_to_r(&net, &relay, &r).await;
	for _ in 0..2 {
		net.open_channel_to(&w, relay.node_id, relay.listen, WT_CHANNEL_SAT, 0, false)
			.await
			.expect("W opens to T");
	}
	wait_until!(relay, DEADLINE, "every channel usable", {
		let up = links_up(&relay, &w).await;
		let both = wt_channels(&w, &relay.node_id).iter().filter(|c| c.is_usable).count() == 2;
		up.and_then(|()| if both { Ok(()) } else { Err("one W-T channel not usable".into()) })
	});

	let before = Totals::read(&relay, &w, &r).await;
	println!("soak: balances before {before:?}");

	let mut sent: Vec<Sent> = Vec::new();
	let mut kills = 0;
	let mut early_kills = 0;
	let mut start_failures = Vec::new();
	let (mut stale_seen, mut reopened) = (0, 0);
	while kills < kills_wanted {
		// One kill in five lands while T starts (reading its state, resuming
		// its relay, reconnecting); the others while payments are in flight.
		let early = rng.gen_ratio(1, 5);
		if early {
			tokio::time::sleep(Duration::from_millis(rng.gen_range(50..1500))).await;
			early_kills += 1;
		} else {
			relay.process.wait_ready(&relay.client).await;
			if relay.log_count(STALE_MANAGER) > stale_seen {
				stale_seen = relay.log_count(STALE_MANAGER);
				println!("soak: kill {kills} left a stale ChannelManager (rust-lightning 4286)");
				reopened += reopen_closed(&net, &relay, &w, &r).await;
			}
			wait_until!(relay, DEADLINE, "the links after a restart", links_up(&relay, &w).await);
			if let Some(rebalance) = rebalance(&relay, &w, kills) {
				sent.push(rebalance);
			}
			let until =
				tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(200..3000));
			while tokio::time::Instant::now() < until {
				let in_flight = sent
					.iter()
					.filter(|s| s.kind != Kind::Rebalance)
					.filter(|s| w.payment(&s.id).map(|p| p.status) == Some(PaymentStatus::Pending))
					.count();
				if in_flight < MAX_IN_FLIGHT {
					match pay(&mut rng, &w, &r, &relay, &policy, kills) {
						Ok(Some(payment)) => sent.push(payment),
						Ok(None) => {},
						Err(e) => start_failures.push(e),
					}
				}
				tokio::time::sleep(Duration::from_millis(rng.gen_range(10..150))).await;
			}
		}
		relay.process.sigkill().await;
		kills += 1;
		relay.respawn();
	}
	println!(
		"soak: {kills} kills ({early_kills} while starting), {} payments sent, {} refused at once",
		sent.len(),
		start_failures.len()
	);

	// The end: T runs again; everything settles.
	relay.process.wait_ready(&relay.client).await;
	if relay.log_count(STALE_MANAGER) > stale_seen {
		reopened += reopen_closed(&net, &relay, &w, &r).await;
	}
	wait_until!(relay, DEADLINE, "the links at the end", links_up(&relay, &w).await);
	let stale_closes = relay.log_count(STALE_MANAGER);
	let stale_monitors = relay.log_count(STALE_MONITOR);
	// HTLCs of a force-closed channel resolve on chain: blocks must come.
	let mine_while_settling = stale_closes > 0;
	let t_payments = wait_until!(relay, SETTLE_DEADLINE, "every payment to settle", {
		if mine_while_settling {
			net.mine(1).await.map_err(|e| e.to_string())?;
		}
		let t_payments = relay.client.list_payments().await.map_err(|e| e.to_string())?.payments;
		let pending: Vec<String> = sent
			.iter()
			.filter(|s| match s.kind {
				Kind::Rebalance => t_payments
					.iter()
					.any(|p| p.id == s.id_hex() && p.status == PaymentStatus::Pending),
				_ => w.payment(&s.id).map(|p| p.status) == Some(PaymentStatus::Pending),
			})
			.map(|s| format!("{:?} {} msat after {} kills", s.kind, s.amount_msat, s.after_kills))
			.collect();
		if pending.is_empty() {
			Ok(t_payments)
		} else {
			Err(pending.join("; "))
		}
	});
	wait_until!(relay, SETTLE_DEADLINE, "no HTLC pending on any node", {
		if mine_while_settling {
			net.mine(1).await.map_err(|e| e.to_string())?;
		}
		no_pending_htlcs(&relay, &w, &r).await
	});
	let stats = ctl(&relay.control, &["trampoline-stats"]).await;
	println!("soak: T's trampoline-stats {stats}");
	let live = ["receiving", "held", "sending"].map(|k| stats[k].as_u64().expect(k));
	assert_eq!(live, [0, 0, 0], "buckets left in a non-terminal state: {stats}");

	// Outcomes, from the records.
	let mut outcomes: std::collections::BTreeMap<(Kind, String), usize> = Default::default();
	let (mut w_out_msat, mut fees_msat, mut rebalanced_msat) = (0u64, 0u64, 0u64);
	for s in &sent {
		let status = match s.kind {
			Kind::Rebalance => t_payments
				.iter()
				.find(|p| p.id == s.id_hex())
				.map(|p| p.status.clone())
				.unwrap_or(PaymentStatus::Failed { reason: "T has no record".into() }),
			_ => w.payment(&s.id).expect("W's record").status,
		};
		let outcome = match &status {
			PaymentStatus::Succeeded => {
				match s.kind {
					Kind::Rebalance => rebalanced_msat += s.amount_msat,
					_ => {
						w_out_msat += s.amount_msat + s.fee_msat;
						fees_msat += s.fee_msat;
					},
				}
				"succeeded".to_string()
			},
			PaymentStatus::Failed { reason } => format!("failed: {}", short(reason)),
			PaymentStatus::Pending => unreachable!("settled above"),
		};
		*outcomes.entry((s.kind, outcome)).or_default() += 1;
	}
	for ((kind, outcome), count) in &outcomes {
		println!("soak: {count:4} × {kind:?} {outcome}");
	}
	for e in &start_failures {
		println!("soak: refused at once: {e}");
	}
	let r_in_msat: u64 = r
		.list_payments()
		.iter()
		.filter(|p| p.direction == ldk_node::payment::PaymentDirection::Inbound)
		.filter(|p| matches!(p.kind, ldk_node::payment::PaymentKind::Bolt11 { .. }))
		.filter(|p| p.status == ldk_node::payment::PaymentStatus::Succeeded)
		.filter_map(|p| p.amount_msat)
		.sum();
	let w_in_msat: u64 = w
		.list_payments()
		.iter()
		.filter(|p| {
			p.direction == PaymentDirection::Inbound && p.status == PaymentStatus::Succeeded
		})
		.filter_map(|p| p.amount_msat)
		.sum();
	println!(
		"soak: W paid {w_out_msat} msat (fees {fees_msat}), R received {r_in_msat}, T gave back \
		 {rebalanced_msat} (W received {w_in_msat}); {stale_closes} channel(s) force-closed on \
		 restart as stale (rust-lightning 4286), {stale_monitors} stale monitor(s)"
	);
	let w_succeeded: Vec<[u8; 32]> = sent
		.iter()
		.filter(|s| s.kind != Kind::Rebalance)
		.filter(|s| w.payment(&s.id).map(|p| p.status) == Some(PaymentStatus::Succeeded))
		.map(|s| s.id.0)
		.collect();
	// Every payment W saw succeed is a bucket T relayed, and T's counters
	// (pruned buckets included) survive its kills. A kill between counting
	// a pruned bucket and removing its record counts it twice: at least.
	let relayed = stats["relayed"].as_u64().expect("relayed");
	println!(
		"soak: T counts {relayed} relayed buckets, W saw {} relayed payments",
		w_succeeded.len()
	);
	assert!(
		relayed >= w_succeeded.len() as u64,
		"T's counters lost relayed buckets across its kills: {relayed} for {}",
		w_succeeded.len()
	);
	for p in r.list_payments() {
		let paid_by_w = w_succeeded.contains(&p.id.0);
		if p.direction == ldk_node::payment::PaymentDirection::Inbound
			&& matches!(p.kind, ldk_node::payment::PaymentKind::Bolt11 { .. })
			&& p.status == ldk_node::payment::PaymentStatus::Succeeded
			&& (!paid_by_w || p.amount_msat.is_some_and(|a| a % 1_000_000 != 0))
		{
			let ours = sent.iter().find(|s| s.id.0 == p.id.0);
			let w_status = ours.and_then(|s| w.payment(&s.id)).map(|r| r.status);
			println!(
				"soak: R received {:?} msat for {:?} ({:?} of {:?} msat sent after {:?} kills; W: {w_status:?})",
				p.amount_msat,
				p.id,
				ours.map(|s| s.kind),
				ours.map(|s| s.amount_msat),
				ours.map(|s| s.after_kills)
			);
		}
	}
	assert_eq!(stale_monitors, 0, "a ChannelMonitor older than the ChannelManager");
	assert_eq!(w_in_msat, rebalanced_msat, "W received what T says it paid it");
	assert_eq!(
		w_out_msat - fees_msat,
		r_in_msat,
		"R received exactly what W's succeeded payments were for"
	);

	// Balances. Every amount is whole satoshis, so the sat balances are exact.
	let closes = stale_closes.max(closed_channels(&relay, &w).await + reopened);
	let after = if closes == 0 {
		Totals::read(&relay, &w, &r).await
	} else {
		sweep_closed_channels(&net, &relay, &w, &r).await
	};
	println!("soak: balances after {after:?}; {closes} channel(s) closed");
	let delta = |a: u64, b: u64| a as i64 - b as i64;
	let w_expected = (w_in_msat as i64 - w_out_msat as i64) / 1000;
	let r_expected = r_in_msat as i64 / 1000;
	let t_expected = (fees_msat as i64 - rebalanced_msat as i64) / 1000;
	let deltas = [
		delta(after.w, before.w) - w_expected,
		delta(after.t, before.t) - t_expected,
		delta(after.r, before.r) - r_expected,
	];
	if closes == 0 {
		assert_eq!(deltas, [0, 0, 0], "W, T and R moved by other than their records say");
	} else {
		// On-chain fees of the closes (and of reopening) are the only loss.
		let bound = FORCE_CLOSE_FEE_BOUND_SAT as i64 * closes as i64;
		assert!(
			deltas.iter().all(|d| *d <= 0 && *d >= -bound) && deltas.iter().sum::<i64>() >= -bound,
			"funds lost beyond the on-chain fees of {closes} close(s): {deltas:?}"
		);
	}
	// The node writes a monitor only after a manager that knows its update
	// (node::persist): no kill may leave a manager behind its monitor.
	assert_eq!(
		stale_closes, 0,
		"{stale_closes} channel(s) force-closed as stale (rust-lightning 4286) in {kills} kills"
	);
}

impl Sent {
	fn id_hex(&self) -> String {
		hex::DisplayHex::to_lower_hex_string(&self.id.0[..])
	}
}

/// The first line of a failure reason, shortened for the outcome table.
fn short(reason: &str) -> String {
	reason.lines().next().unwrap_or_default().chars().take(80).collect()
}

/// Starts a W → T → R payment: multi-part (more than W can send over
/// either channel alone) one time in four when W's two channels allow it,
/// else single-part. `Ok(None)` when W has too little outbound liquidity.
fn pay(
	rng: &mut StdRng, w: &Node, r: &ldk_node::Node, relay: &Relay, policy: &TrampolinePolicy,
	kills: usize,
) -> Result<Option<Sent>, String> {
	const SAT_K: u64 = 1_000_000; // 1000 sat: keeps the fee whole satoshis
	let limits: Vec<u64> = wt_channels(w, &relay.node_id)
		.iter()
		.filter(|c| c.is_usable)
		.map(|c| c.next_outbound_htlc_limit_msat)
		.collect();
	let (max, total) = (limits.iter().copied().max().unwrap_or(0), limits.iter().sum::<u64>());
	let mpp_amount = (max / SAT_K + rng.gen_range(1..=20)) * SAT_K;
	let (kind, amount_msat) = if limits.len() > 1
		&& rng.gen_ratio(1, 4)
		&& mpp_amount + policy.fee_msat(mpp_amount) < total * 9 / 10
	{
		(Kind::Mpp, mpp_amount)
	} else {
		let amount = rng.gen_range(1..=20) * SAT_K;
		if amount + policy.fee_msat(amount) > max * 9 / 10 {
			return Ok(None);
		}
		(Kind::Single, amount)
	};
	let fee_msat = policy.fee_msat(amount_msat);
	let invoice = ldk_invoice(r, amount_msat);
	let id = w
		.pay_invoice_via_trampoline(&invoice, relay.node_id, fee_msat, policy.cltv_expiry_delta)
		.map_err(|e| format!("{kind:?} {amount_msat} msat: {e}"))?;
	Ok(Some(Sent { kind, amount_msat, fee_msat, id, after_kills: kills }))
}

/// When W has spent more than half of its channels to T, T pays W back
/// (in the background: a kill may interrupt it too).
fn rebalance(relay: &Relay, w: &Node, kills: usize) -> Option<Sent> {
	let channels = wt_channels(w, &relay.node_id);
	let outbound: u64 = channels.iter().map(|c| c.outbound_capacity_msat).sum();
	if outbound > WT_CHANNEL_SAT * 1000 {
		return None;
	}
	let inbound: u64 = channels.iter().map(|c| c.inbound_capacity_msat).sum();
	let amount_msat = inbound / 2 / 1_000_000 * 1_000_000;
	if amount_msat == 0 {
		return None;
	}
	let invoice = w.create_invoice(Some(amount_msat), "rebalance", 3600).expect("invoice");
	let id = PaymentId(invoice.payment_hash().to_byte_array());
	let request = PayRequest {
		request: invoice.to_string(),
		amount_msat: None,
		timeout_secs: Some(60),
		trampoline: None,
		trampoline_fee_msat: None,
		trampoline_cltv_expiry_delta: None,
		trampoline_max_fee_msat: None,
	};
	let client = relay.client.clone();
	// The outcome is read from T's records at the end.
	tokio::spawn(async move { client.pay(&request).await });
	Some(Sent { kind: Kind::Rebalance, amount_msat, fee_msat: 0, id, after_kills: kills })
}

/// Each node's own funds, in satoshis: Lightning (our side of open
/// channels, before commitment fees) plus on-chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Totals {
	w: u64,
	t: u64,
	r: u64,
}

impl Totals {
	async fn read(relay: &Relay, w: &Node, r: &ldk_node::Node) -> Self {
		let onchain = |b: ldk_trampoline::node::OnchainBalance| b.confirmed_sat + b.unconfirmed_sat;
		let wb = w.balances();
		let tb = relay.client.balances().await.expect("T's balances");
		common::sync_ldk_node(r);
		let rb = r.list_balances();
		Totals {
			w: wb.lightning_sat + onchain(wb.onchain),
			t: tb.lightning_sat + onchain(tb.onchain),
			r: rb.total_lightning_balance_sats + rb.total_onchain_balance_sats,
		}
	}
}

/// `Ok` once no channel of W, T or R has an HTLC in flight.
async fn no_pending_htlcs(relay: &Relay, w: &Node, r: &ldk_node::Node) -> Result<(), String> {
	let mut pending = Vec::new();
	for c in w.channel_manager().list_channels() {
		if !c.pending_inbound_htlcs.is_empty() || !c.pending_outbound_htlcs.is_empty() {
			pending.push(format!(
				"W {}: {:?} in, {:?} out",
				c.channel_id, c.pending_inbound_htlcs, c.pending_outbound_htlcs
			));
		}
	}
	for c in relay.client.list_channels().await.map_err(|e| e.to_string())?.channels {
		if c.pending_inbound_htlcs + c.pending_outbound_htlcs > 0 {
			pending.push(format!(
				"T {}: {} in, {} out",
				c.channel_id, c.pending_inbound_htlcs, c.pending_outbound_htlcs
			));
		}
	}
	// ldk-node shows no HTLC list: an HTLC in flight is a balance of its own.
	for b in r.list_balances().lightning_balances {
		if !matches!(b, ldk_node::LightningBalance::ClaimableOnChannelClose { .. }) {
			pending.push(format!("R: {b:?}"));
		}
	}
	match pending.is_empty() {
		true => Ok(()),
		false => Err(pending.join("; ")),
	}
}

/// How many channels W and T have lost since they were opened (W's two to
/// T, T's one to R).
async fn closed_channels(relay: &Relay, w: &Node) -> usize {
	let wt = wt_channels(w, &relay.node_id).len();
	let t = relay.client.list_channels().await.expect("T's channels").channels;
	let tr = t.iter().filter(|c| c.capacity_sat == TR_CHANNEL_SAT).count();
	(2 - wt.min(2)) + (1 - tr.min(1))
}

/// Mines until the outputs of every closed channel are back in the wallets
/// of their owners (the broadcaster's own output waits out its CSV delay of
/// 144 blocks), and returns the totals then: at least 160 blocks, then until
/// R has nothing left from closures and the totals stop moving.
async fn sweep_closed_channels(
	net: &RegtestNetwork, relay: &Relay, w: &Node, r: &ldk_node::Node,
) -> Totals {
	let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
	let mut mined = 0;
	let mut last: Option<Totals> = None;
	loop {
		net.mine(6).await.expect("mine");
		mined += 6;
		let totals = Totals::read(relay, w, r).await;
		let r_closing = !r.list_balances().pending_balances_from_channel_closures.is_empty();
		if mined >= 160 && !r_closing && last == Some(totals) {
			return totals;
		}
		last = Some(totals);
		assert!(
			tokio::time::Instant::now() < deadline,
			"closed channels never swept: {totals:?} after {mined} blocks"
		);
	}
}

/// Reopens what a force close took: T's channel to R, or W's channels to T
/// when none is left. Returns how many channels it opened.
async fn reopen_closed(
	net: &RegtestNetwork, relay: &Relay, w: &Arc<Node>, r: &ldk_node::Node,
) -> usize {
	let mut opened = 0;
	// W learns of the close from T's error on reconnection (or the
	// commitment transaction on chain): wait until it lists only what T does.
	let until = tokio::time::Instant::now() + DEADLINE;
	let t_channels = loop {
		let t_channels = relay.client.list_channels().await.expect("T's channels").channels;
		let t_ids: Vec<&str> = t_channels.iter().map(|c| c.channel_id.as_str()).collect();
		let w_ids: Vec<String> =
			wt_channels(w, &relay.node_id).iter().map(|c| c.channel_id.to_string()).collect();
		if w_ids.iter().all(|id| t_ids.contains(&id.as_str())) {
			break t_channels;
		}
		assert!(tokio::time::Instant::now() < until, "W never saw T's force close: {w_ids:?}");
		net.mine(1).await.expect("mine");
	};
	if !t_channels.iter().any(|c| c.capacity_sat == TR_CHANNEL_SAT) {
		open_t_to_r(net, relay, r).await;
		opened += 1;
	}
	if wt_channels(w, &relay.node_id).is_empty() {
		net.open_channel_to(w, relay.node_id, relay.listen, WT_CHANNEL_SAT, 0, false)
			.await
			.expect("W opens to T again");
		opened += 1;
	}
	opened
}

/// T opens its channel to R; waits until R sees it ready.
async fn open_t_to_r(net: &RegtestNetwork, relay: &Relay, r: &ldk_node::Node) {
	let open = OpenChannelRequest {
		peer: format!("{}@{}", r.node_id(), common::ldk_node_addr(r)),
		amount_sat: TR_CHANNEL_SAT,
		push_msat: 0,
		private: true,
	};
	relay.client.open_channel(&open).await.expect("T opens to R");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("funding broadcast");
	net.mine(6).await.expect("confirm");
	common::sync_ldk_node(r);
	common::wait_ldk_event(r, DEADLINE, "R's channel ready", |e| {
		matches!(e, ldk_node::Event::ChannelReady { .. }).then_some(())
	})
	.await;
}
