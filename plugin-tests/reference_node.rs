//! The reference node as operators run it: the `ldk-trampoline node` process
//! against the harness' bitcoind, driven through its control interface (the
//! `ldk-trampoline ctl` binary and the library client), paying a harness node;
//! and bad input failing with a clear message, a non-zero exit and no panic.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Network};
use common::relay_process::{ctl, ctl_err, free_port, node_args, NodeProcess, BIN, POLL};
use ldk_trampoline::control::client::ControlClient;
use ldk_trampoline::node::{Balances, ChannelInfo, NodeEvent, RpcAuth};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use serde_json::Value;
use tokio::process::Command;

const CHANNEL_SAT: u64 = 1_000_000;

/// Waits until `check` holds, re-evaluating `value` every [`POLL`].
macro_rules! eventually {
	($node:expr, $what:expr, $value:expr, $check:expr) => {{
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			$node.assert_running();
			let value = $value;
			if $check(&value) {
				break value;
			}
			if tokio::time::Instant::now() > deadline {
				panic!("timed out waiting for {}; last: {:?}", $what, value);
			}
			tokio::time::sleep(POLL).await;
		}
	}};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reference_node_process_pays_a_harness_node() {
	let mut net = RegtestNetwork::start().expect("regtest");
	let bob = net.add_node("bob").await.expect("bob");
	let work = tempfile::Builder::new().prefix("ldk-trampoline-refnode-").tempdir().unwrap();
	let rpc = net.bitcoind().rpc_config();
	let RpcAuth::UserPass { user, password } = &rpc.auth else { panic!("harness uses user/pass") };

	// Settings from a file (with a path relative to it) and from flags.
	let config = work.path().join("node.toml");
	std::fs::write(
		&config,
		format!(
			"network = \"regtest\"\ndata_dir = \"data\"\nbitcoind_rpc = \"{}\"\n\
			 bitcoind_rpc_user = \"{user}\"\nbitcoind_rpc_password = \"{password}\"\n\
			 alias = \"reference\"\nlog_level = \"trace\"\n",
			rpc.endpoint()
		),
	)
	.unwrap();
	let data_dir = work.path().join("data");
	let control = format!("127.0.0.1:{}", free_port());
	let config_arg = config.display().to_string();
	let args =
		["node", "--config", &config_arg, "--listen", "127.0.0.1:0", "--control-listen", &control];
	let mut node = NodeProcess::spawn(&args, work.path(), &data_dir);
	let client = ControlClient::new(&control).expect("client");
	let info = node.wait_ready(&client).await;
	assert_eq!(info.network, "regtest");
	assert_eq!(info.alias, "reference");
	assert_eq!(info.num_channels, 0);
	let getinfo = ctl(&control, &["getinfo"]).await;
	assert_eq!(getinfo["node_id"], info.node_id.as_str());

	// Fund its wallet.
	let address = ctl(&control, &["new-address"]).await;
	let address = Address::<NetworkUnchecked>::from_str(address["address"].as_str().unwrap())
		.expect("an address")
		.require_network(Network::Regtest)
		.expect("a regtest address");
	net.fund_addresses(&[address], 1).expect("fund");
	eventually!(
		node,
		"the funds to confirm",
		client.balances().await.expect("balances"),
		|b: &Balances| b.onchain.confirmed_sat == 50 * 100_000_000
	);

	// Open a channel to the harness node through the CLI.
	let peer = format!("{}@{}", bob.node_id(), bob.listen_addr());
	let opened = ctl(&control, &["open-channel", &peer, &CHANNEL_SAT.to_string()]).await;
	let channel_id = opened["channel_id"].as_str().expect("channel id").to_string();
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("funding broadcast");
	net.mine(6).await.expect("confirm");
	eventually!(
		node,
		"the channel to be usable on both sides",
		(client.list_channels().await.expect("channels").channels, bob.list_channels()),
		|(ours, theirs): &(Vec<ChannelInfo>, Vec<ChannelInfo>)| {
			ours.iter().any(|c| c.channel_id == channel_id && c.usable)
				&& theirs.iter().any(|c| c.usable)
		}
	);
	let channels = ctl(&control, &["list-channels"]).await;
	assert_eq!(channels["channels"][0]["capacity_sat"], CHANNEL_SAT);
	assert_eq!(channels["channels"][0]["counterparty"], bob.node_id().to_string().as_str());
	let before = ctl(&control, &["balances"]).await["lightning_sat"].as_u64().unwrap();
	assert_eq!(before, CHANNEL_SAT);

	// It pays the harness node's BOLT 11 invoice...
	let invoice = bob.create_invoice(Some(100_000_000), "from the reference node", 3600).unwrap();
	let received = bob.subscribe();
	let paid = ctl(&control, &["pay", &invoice.to_string()]).await;
	assert_eq!(paid["status"]["state"], "succeeded", "{paid}");
	assert_eq!(paid["kind"], "bolt11");
	assert_eq!(paid["amount_msat"], 100_000_000);
	assert_eq!(paid["fee_msat"], 0);
	let got = bob
		.wait_for_event(received, DEADLINE, "the invoice payment", |e| match e {
			NodeEvent::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
			_ => None,
		})
		.await
		.expect("bob is paid");
	assert_eq!(got, 100_000_000);

	// ...and its BOLT 12 offer.
	let offer = bob.create_offer(Some(30_000_000), "an offer").unwrap();
	let received = bob.subscribe();
	let paid = ctl(&control, &["pay", &offer.to_string(), "--timeout-secs", "60"]).await;
	assert_eq!(paid["status"]["state"], "succeeded", "{paid}");
	assert_eq!(paid["kind"], "bolt12");
	assert_eq!(paid["amount_msat"], 30_000_000);
	let got = bob
		.wait_for_event(received, DEADLINE, "the offer payment", |e| match e {
			NodeEvent::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
			_ => None,
		})
		.await
		.expect("bob is paid");
	assert_eq!(got, 30_000_000);

	// Balances moved by exactly the amounts (a direct channel charges no fee).
	eventually!(node, "bob's balance", bob.balances().lightning_sat, |s: &u64| *s == 130_000);
	eventually!(
		node,
		"the reference node's balance",
		client.balances().await.expect("balances").lightning_sat,
		|s: &u64| *s == before - 130_000
	);
	let balances = ctl(&control, &["balances"]).await;
	assert_eq!(balances["lightning_sat"], before - 130_000);
	let payments = ctl(&control, &["list-payments"]).await;
	let payments = payments["payments"].as_array().expect("payments").clone();
	assert_eq!(payments.len(), 2, "{payments:?}");
	assert!(payments
		.iter()
		.all(|p| p["direction"] == "outbound" && p["status"]["state"] == "succeeded"));

	// Bad requests get clear errors and leave the node running.
	let err = ctl_err(&control, &["connect", "nonsense"]).await;
	assert!(err.contains("400") && err.contains("expected NODE_ID@HOST:PORT"), "{err}");
	let err = ctl_err(&control, &["connect", "02zz@127.0.0.1:1"]).await;
	assert!(err.contains("invalid node id \"02zz\""), "{err}");
	let err = ctl_err(&control, &["close-channel", &"00".repeat(32)]).await;
	assert!(err.contains("404") && err.contains("no channel"), "{err}");
	let err = ctl_err(&control, &["close-channel", "xyz"]).await;
	assert!(err.contains("400") && err.contains("invalid channel id"), "{err}");
	let err = ctl_err(&control, &["pay", "lnbcrt1notaninvoice"]).await;
	assert!(err.contains("400") && err.contains("not a BOLT 11 invoice"), "{err}");
	let err = ctl_err(&control, &["pay", &invoice.to_string()]).await;
	assert!(err.contains("already paid"), "{err}");
	let err = ctl_err(&control, &["pay", &invoice.to_string(), "--timeout-secs", "99999999"]).await;
	assert!(err.contains("timeout_secs"), "{err}");
	// Raw HTTP: JSON errors with proper statuses; an empty body counts as `{}`.
	let http = reqwest::Client::builder().no_proxy().build().unwrap();
	let url = |path: &str| format!("http://{control}{path}");
	let answer = |response: reqwest::Response| async move {
		let status = response.status().as_u16();
		(status, response.json::<Value>().await.expect("a JSON answer"))
	};
	let (status, body) = answer(http.post(url("/v1/balances")).send().await.unwrap()).await;
	assert_eq!((status, body["lightning_sat"].as_u64()), (200, Some(before - 130_000)));
	let (status, body) = answer(http.get(url("/v1/getinfo")).send().await.unwrap()).await;
	assert_eq!(status, 405, "{body}");
	assert!(body["error"].as_str().unwrap().contains("POST"), "{body}");
	let (status, body) = answer(http.post(url("/v1/nope")).send().await.unwrap()).await;
	assert_eq!(status, 404, "{body}");
	let request = http.post(url("/v1/invoice")).body(r#"{"amount":1}"#);
	let (status, body) = answer(request.send().await.unwrap()).await;
	assert_eq!(status, 400, "{body}");
	assert!(body["error"].as_str().unwrap().contains("unknown field `amount`"), "{body}");
	let (status, body) = answer(http.post(url("/v1/pay")).body("{").send().await.unwrap()).await;
	assert_eq!(status, 400, "{body}");
	node.assert_running();

	// `stop` persists, answers and makes the process exit 0.
	let stopped = ctl(&control, &["stop"]).await;
	assert_eq!(stopped["stopped"], true);
	let status = node.wait_exit().await;
	assert!(status.success(), "exit status {status}\n{}", node.diagnostics());
	drop(node);

	// It is persistent: the same identity, channel and balance after a restart;
	// SIGTERM stops it cleanly too.
	let mut node = NodeProcess::spawn(&args, work.path(), &data_dir);
	let restarted = node.wait_ready(&client).await;
	assert_eq!(restarted.node_id, info.node_id);
	let channels = client.list_channels().await.expect("channels").channels;
	assert_eq!(channels.iter().map(|c| c.channel_id.as_str()).collect::<Vec<_>>(), [&channel_id]);
	assert_eq!(client.balances().await.expect("balances").lightning_sat, before - 130_000);
	node.sigterm();
	let status = node.wait_exit().await;
	assert!(status.success(), "exit status {status}\n{}", node.diagnostics());
	assert!(node.stderr().contains("SIGTERM"), "{}", node.stderr());
}

/// Runs `ldk-trampoline <args>` expecting a clean failure whose stderr names
/// every one of `expected`.
async fn assert_fails(case: &str, args: &[&str], expected: &[&str]) {
	let run = Command::new(BIN).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
	let out = tokio::time::timeout(DEADLINE, run)
		.await
		.unwrap_or_else(|_| panic!("{case}: no exit within {DEADLINE:?}"))
		.expect("the binary runs");
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert_eq!(out.status.code(), Some(1), "{case}: exit {}; stderr: {stderr}", out.status);
	assert!(!stderr.contains("panicked"), "{case}: {stderr}");
	assert!(stderr.starts_with("error: "), "{case}: {stderr}");
	for needle in expected {
		assert!(stderr.contains(needle), "{case}: stderr lacks {needle:?}: {stderr}");
	}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_a_clear_error() {
	let net = RegtestNetwork::start().expect("regtest");
	let work = tempfile::Builder::new().prefix("ldk-trampoline-badinput-").tempdir().unwrap();
	let rpc = net.bitcoind().rpc_config();
	let RpcAuth::UserPass { user, password } = &rpc.auth else { panic!("harness uses user/pass") };
	let endpoint = rpc.endpoint();
	let path = |name: &str| work.path().join(name).display().to_string();
	let node_args = |data_dir: &str, bitcoind: &str, network: &str| -> Vec<String> {
		node_args(network, data_dir, bitcoind, user, password, "127.0.0.1:0")
	};
	let check = |case: &'static str, args: Vec<String>, expected: Vec<String>| async move {
		let args: Vec<&str> = args.iter().map(String::as_str).collect();
		let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
		assert_fails(case, &args, &expected).await
	};

	// bitcoind unreachable.
	let closed = format!("127.0.0.1:{}", free_port());
	check(
		"unreachable bitcoind",
		node_args(&path("unreachable"), &closed, "regtest"),
		vec!["cannot reach bitcoind".into(), closed.clone()],
	)
	.await;

	// bitcoind on another chain.
	check(
		"wrong network",
		node_args(&path("signet"), &endpoint, "signet"),
		vec!["bitcoind runs the regtest chain but the node is configured for signet".into()],
	)
	.await;

	// Unusable data directories.
	let file = path("a-file");
	std::fs::write(&file, "not a directory").unwrap();
	check(
		"data dir is a file",
		node_args(&file, &endpoint, "regtest"),
		vec!["--data-dir".into(), file.clone(), "not a directory".into()],
	)
	.await;
	let under_file = format!("{file}/data");
	check(
		"data dir under a file",
		node_args(&under_file, &endpoint, "regtest"),
		vec!["cannot use the data directory".into(), under_file.clone()],
	)
	.await;
	let corrupt = path("corrupt");
	std::fs::create_dir(&corrupt).unwrap();
	// Private, as the node insists (a readable seed is refused first).
	let seed = Path::new(&corrupt).join("seed");
	std::fs::write(&seed, "short").unwrap();
	std::fs::set_permissions(&seed, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
	check(
		"corrupt seed",
		node_args(&corrupt, &endpoint, "regtest"),
		vec![corrupt.clone(), "is not a 32-byte seed".into()],
	)
	.await;

	// Bad config files and values.
	let write = |name: &str, text: String| {
		let p = path(name);
		std::fs::write(&p, text).unwrap();
		p
	};
	let good = format!(
		"data_dir = \"data\"\nbitcoind_rpc = \"{endpoint}\"\nbitcoind_rpc_user = \"{user}\"\n\
		 bitcoind_rpc_password = \"{password}\"\ncontrol_listen = \"127.0.0.1:0\"\n\
		 listen = \"127.0.0.1:0\"\n"
	);
	let unknown_key =
		write("unknown-key.toml", format!("network = \"regtest\"\nnetwrk = 1\n{good}"));
	check(
		"unknown config key",
		vec!["node".into(), "--config".into(), unknown_key.clone()],
		vec!["invalid config file".into(), unknown_key.clone(), "unknown field `netwrk`".into()],
	)
	.await;
	let bad_network = write("bad-network.toml", format!("network = \"regtst\"\n{good}"));
	check(
		"invalid network in the config",
		vec!["node".into(), "--config".into(), bad_network.clone()],
		vec![format!(
			"invalid value for `network` in {bad_network}: \"regtst\" (expected one of bitcoin, \
			 testnet, testnet4, signet, regtest)"
		)],
	)
	.await;
	let no_rpc = write("no-rpc.toml", "network = \"regtest\"\ndata_dir = \"data\"\n".into());
	check(
		"missing bitcoind_rpc",
		vec!["node".into(), "--config".into(), no_rpc],
		vec!["`bitcoind_rpc` is required (set it in the config file or pass --bitcoind-rpc)".into()],
	)
	.await;
	let syntax = write("syntax.toml", "network = regtest\n".into());
	check(
		"TOML syntax error",
		vec!["node".into(), "--config".into(), syntax.clone()],
		vec!["invalid config file".into(), syntax.clone(), "line 1".into()],
	)
	.await;
	let missing = path("missing.toml");
	check(
		"unreadable config file",
		vec!["node".into(), "--config".into(), missing.clone()],
		vec!["cannot read the config file".into(), missing.clone()],
	)
	.await;
	let mut bad_level = node_args(&path("level"), &endpoint, "regtest");
	bad_level.extend(["--log-level".into(), "loud".into()]);
	check("invalid flag value", bad_level, vec!["invalid value for --log-level: \"loud\"".into()])
		.await;

	// The client against a port where nothing listens.
	let nothing = format!("127.0.0.1:{}", free_port());
	check(
		"ctl without a node",
		vec!["ctl".into(), "--control".into(), nothing.clone(), "getinfo".into()],
		vec!["cannot reach the control interface".into(), nothing.clone()],
	)
	.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reference_node_pays_through_a_trampoline_and_reports_relay_stats() {
	let mut net = RegtestNetwork::start().expect("regtest");
	// Harness nodes relay trampoline payments with the default policy.
	let bob = net.add_node("bob").await.expect("bob");
	let carol = net.add_node("carol").await.expect("carol");
	let work = tempfile::Builder::new().prefix("ldk-trampoline-refnode-").tempdir().unwrap();
	let rpc = net.bitcoind().rpc_config();
	let RpcAuth::UserPass { user, password } = &rpc.auth else { panic!("harness uses user/pass") };
	let data_dir = work.path().join("data");
	let data_arg = data_dir.display().to_string();
	let control = format!("127.0.0.1:{}", free_port());
	let endpoint = rpc.endpoint();
	let mut args = node_args("regtest", &data_arg, &endpoint, user, password, &control);
	args.extend(["--trampoline-fee-base-msat", "2000"].map(String::from));
	let args: Vec<&str> = args.iter().map(String::as_str).collect();
	let mut node = NodeProcess::spawn(&args, work.path(), &data_dir);
	let client = ControlClient::new(&control).expect("client");
	let info = node.wait_ready(&client).await;
	let policy = info.trampoline.expect("the reference node relays by default");
	assert_eq!(policy.fee_base_msat, 2000);

	let address = ctl(&control, &["new-address"]).await;
	let address = Address::<NetworkUnchecked>::from_str(address["address"].as_str().unwrap())
		.unwrap()
		.require_network(Network::Regtest)
		.unwrap();
	net.fund_addresses(&[address], 1).expect("fund");
	net.fund(&[&bob], 1).await.expect("fund bob");
	eventually!(
		node,
		"the funds to confirm",
		client.balances().await.expect("balances"),
		|b: &Balances| b.onchain.confirmed_sat == 50 * 100_000_000
	);
	let peer = format!("{}@{}", bob.node_id(), bob.listen_addr());
	ctl(&control, &["open-channel", &peer, &CHANNEL_SAT.to_string()]).await;
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("funding broadcast");
	net.mine(6).await.expect("confirm");
	net.open_channel(&bob, &carol, CHANNEL_SAT, 0).await.expect("bob-carol");
	eventually!(
		node,
		"the channel to bob to be usable",
		client.list_channels().await.expect("channels").channels,
		|c: &Vec<ChannelInfo>| c.iter().any(|c| c.usable)
	);

	// The reference node knows only bob; bob (the trampoline) finds carol.
	// `auto` picks bob among the node's peers by his features, and offers
	// what the default policy (bob's) asks.
	let amount_msat = 20_000_000;
	let bob_policy = bob.config().trampoline.expect("bob relays");
	let fee_msat = bob_policy.fee_msat(amount_msat);
	let invoice = carol.create_invoice(Some(amount_msat), "via trampoline", 3600).unwrap();
	let received = carol.subscribe();
	let paid = ctl(&control, &["pay", &invoice.to_string(), "--trampoline", "auto"]).await;
	assert_eq!(paid["status"]["state"], "succeeded", "{paid}");
	assert_eq!(paid["kind"], "trampoline");
	assert_eq!(paid["amount_msat"], amount_msat + fee_msat);
	let got = carol
		.wait_for_event(received, DEADLINE, "the trampoline payment", |e| match e {
			NodeEvent::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
			_ => None,
		})
		.await
		.expect("carol is paid");
	assert_eq!(got, amount_msat);
	let stats = bob.trampoline().expect("bob relays").core().stats();
	assert_eq!(
		(stats.relayed, stats.failed, stats.relayed_in_msat),
		(1, 0, amount_msat + fee_msat)
	);
	eventually!(
		node,
		"the reference node's balance",
		client.balances().await.expect("balances").lightning_sat,
		|s: &u64| *s == CHANNEL_SAT - (amount_msat + fee_msat) / 1000
	);

	// Offered 1 msat, bob answers NODE|26 with his policy; within the budget
	// the node pays again with the fee bob asks.
	let invoice = carol.create_invoice(Some(amount_msat), "fee retry", 3600).unwrap();
	let budget = (2 * fee_msat).to_string();
	let bob_id = bob.node_id().to_string();
	let args = ["--trampoline", &bob_id, "--trampoline-fee-msat", "1"];
	let paid = ctl(
		&control,
		&[&["pay", &invoice.to_string()][..], &args, &["--trampoline-max-fee-msat", &budget]]
			.concat(),
	)
	.await;
	assert_eq!(paid["status"]["state"], "succeeded", "{paid}");
	assert_eq!(paid["amount_msat"], amount_msat + fee_msat);
	let stats = bob.trampoline().expect("bob relays").core().stats();
	assert_eq!((stats.relayed, stats.failed), (2, 1));
	// Without a budget, no second attempt.
	let invoice = carol.create_invoice(Some(amount_msat), "no budget", 3600).unwrap();
	let err = ctl_err(&control, &[&["pay", &invoice.to_string()][..], &args].concat()).await;
	assert!(err.contains("TrampolineFeeOrExpiryInsufficient") && err.contains("over the budget"));
	let stats = bob.trampoline().expect("bob relays").core().stats();
	assert_eq!((stats.relayed, stats.failed), (2, 2));

	// The reference node's own relay has seen nothing.
	let stats = ctl(&control, &["trampoline-stats"]).await;
	assert_eq!((stats["relayed"].as_u64(), stats["failed"].as_u64()), (Some(0), Some(0)));
	let held = ctl(&control, &["list-held"]).await;
	assert_eq!(held["held"].as_array().map(Vec::len), Some(0), "{held}");
	assert_eq!(held["htlcs"].as_array().map(Vec::len), Some(0), "htlc_hold on by default: {held}");
	let err = ctl_err(
		&control,
		&["pay", &invoice.to_string(), "--trampoline", "02zz", "--trampoline-fee-msat", "1"],
	)
	.await;
	assert!(err.contains("400") && err.contains("invalid trampoline node id"), "{err}");
	ctl(&control, &["stop"]).await;
	assert!(node.wait_exit().await.success());
}
