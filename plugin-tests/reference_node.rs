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
use common::relay_process::{
	ctl, ctl_err, free_port, node_args, run_ctl_with, Control, NodeProcess, BIN, POLL,
};
use ldk_trampoline::control::auth::Role;
use ldk_trampoline::control::client::{ClientOptions, ControlClient, TokenSource};
use ldk_trampoline::node::forwards::fail_reason_words;
use ldk_trampoline::node::{
	Balances, ChannelInfo, ForwardKind, ForwardOutcome, NodeEvent, RpcAuth,
};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::relay::{Dialect, FailReason};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

const CHANNEL_SAT: u64 = 1_000_000;

/// `ctl events` run with the read-only token, its lines read as they come.
struct EventTail {
	_child: tokio::process::Child,
	lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl EventTail {
	/// Starts `ctl events`; returns once it printed `subscribed` (the node
	/// is listening).
	async fn start(control: &Control) -> Self {
		let token = control.token_file(Role::ReadOnly).display().to_string();
		let mut child = Command::new(BIN)
			.args(["ctl", "--control", &control.address, "--control-token-file", &token])
			.arg("events")
			.stdin(Stdio::null())
			.stdout(Stdio::piped())
			.kill_on_drop(true)
			.spawn()
			.expect("ctl runs");
		let stdout = child.stdout.take().expect("piped");
		let mut tail = Self { _child: child, lines: tokio::io::BufReader::new(stdout).lines() };
		let first = tail.until(|seen| !seen.is_empty()).await;
		assert_eq!(first, [serde_json::json!({ "type": "subscribed" })]);
		tail
	}

	/// Waits for `ctl events` to end (the node stopped): no line is left.
	async fn ended(&mut self) {
		let rest = tokio::time::timeout(DEADLINE, self.lines.next_line()).await;
		let rest = rest.expect("ctl events still runs").expect("ctl's stdout");
		assert_eq!(rest, None, "ctl events printed more");
	}

	/// The events it prints until `enough` holds of those seen.
	async fn until(&mut self, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
		let mut seen = Vec::new();
		while !enough(&seen) {
			let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
				.await
				.unwrap_or_else(|_| panic!("ctl events printed nothing more; so far {seen:?}"))
				.expect("ctl's stdout")
				.unwrap_or_else(|| panic!("ctl events ended; so far {seen:?}"));
			seen.push(serde_json::from_str(&line).expect("one JSON object per line"));
		}
		seen
	}
}

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
	let data_dir = work.path().join("data");
	let control = Control::new(&data_dir);
	std::fs::write(
		&config,
		format!(
			"network = \"regtest\"\ndata_dir = \"data\"\nbitcoind_rpc = \"{}\"\n\
			 bitcoind_rpc_user = \"{user}\"\nbitcoind_rpc_password = \"{password}\"\n\
			 alias = \"reference\"\nlog_level = \"trace\"\ncontrol_listen = \"{control}\"\n",
			rpc.endpoint()
		),
	)
	.unwrap();
	let config_arg = config.display().to_string();
	let args = ["node", "--config", &config_arg, "--listen", "127.0.0.1:0"];
	let mut node = NodeProcess::spawn(&args, work.path(), &data_dir);
	let client = control.client();
	let info = node.wait_ready(&client).await;
	assert_eq!(info.network, "regtest");
	assert_eq!(info.alias, "reference");
	assert_eq!(info.num_channels, 0);
	let getinfo = ctl(&control, &["getinfo"]).await;
	assert_eq!(getinfo["node_id"], info.node_id.as_str());
	// `ctl` finds the address and the token from the node's config file alone.
	let out = run_ctl_with(&["--config", &config_arg], &["getinfo"]).await;
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	let getinfo: Value = serde_json::from_slice(&out.stdout).expect("JSON");
	assert_eq!(getinfo["node_id"], info.node_id.as_str());
	// Both token files are the owner's only.
	for role in [Role::Admin, Role::ReadOnly] {
		use std::os::unix::fs::PermissionsExt;
		let path = control.token_file(role);
		let mode = std::fs::metadata(&path).expect("token file").permissions().mode();
		assert_eq!(mode & 0o777, 0o600, "{}", path.display());
	}

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

	// `ctl events`, with the read-only token, tails what follows.
	let mut tail = EventTail::start(&control).await;

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
	assert_eq!(channels["channels"][0]["peer_connected"], true, "{channels}");
	assert_eq!(channels["closing"], serde_json::json!([]), "{channels}");
	// The scid names the funding transaction's block, index and output.
	let channel = &channels["channels"][0];
	let funding: bitcoin::Txid = channel["funding_txid"].as_str().unwrap().parse().unwrap();
	let confirmations = channel["confirmations"].as_u64().expect("confirmations") as u32;
	let funded_at = net.bitcoind().height().unwrap() + 1 - confirmations;
	let index = net.bitcoind().tx_index_in_block(funded_at, &funding).unwrap().expect("in block");
	let scid = format!("{funded_at}x{index}x{}", channel["funding_output_index"]);
	assert_eq!(channel["scid"], scid.as_str(), "{channels}");
	let before = ctl(&control, &["balances"]).await["lightning_sat"].as_u64().unwrap();
	assert_eq!(before, CHANNEL_SAT);

	// It pays the harness node's BOLT 11 invoice...
	let invoice = bob.create_invoice(Some(100_000_000), "from the reference node", 3600).unwrap();
	// ...but only when asked with the admin token, the right Host and a JSON body.
	refused_requests_run_nothing(&control, &invoice.to_string(), &channel_id).await;
	node.assert_running();
	assert_eq!(ctl(&control, &["list-payments"]).await["payments"], serde_json::json!([]));
	assert_eq!(ctl(&control, &["balances"]).await["lightning_sat"], before);
	// Nothing is held in: no partial payment.
	let partial = ctl(&control, &["list-partial-invoices"]).await;
	assert_eq!(partial, serde_json::json!({ "partial_invoices": [] }));
	let channels = ctl(&control, &["list-channels"]).await;
	assert_eq!(channels["channels"][0]["usable"], true, "not closed: {channels}");
	assert_eq!(bob.balances().lightning_sat, 0, "bob was not paid");
	assert!(bob.list_payments().is_empty(), "bob saw no payment");
	let succeeded = "ldk_trampoline_payments{direction=\"outbound\",state=\"succeeded\"}";
	assert_eq!(metric(&scrape(&control).await, succeeded), Some(0.0));
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

	// `ctl events` printed the channel's and both payments' events, in order.
	let sent = |e: &Value| e["type"] == "payment_sent";
	let events = tail.until(|seen| seen.iter().filter(|e| sent(e)).count() == 2).await;
	let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
	let of_the_payments: Vec<&str> = kinds
		.iter()
		.copied()
		.filter(|k| ["channel_pending", "channel_ready", "payment_sent"].contains(k))
		.collect();
	assert_eq!(
		of_the_payments,
		["channel_pending", "channel_ready", "payment_sent", "payment_sent"],
		"{events:?}"
	);
	let sent: Vec<&Value> = events.iter().filter(|e| sent(e)).collect();
	assert_eq!(sent[0]["payment_hash"], invoice.payment_hash().to_string().as_str());
	assert_eq!(sent[0]["fee_msat"], 0);
	assert_eq!(events[0]["channel_id"], channel_id.as_str(), "{events:?}");

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
	// The scrape moved by exactly the two payments.
	let scraped = scrape(&control).await;
	assert_eq!(metric(&scraped, succeeded), Some(2.0), "{scraped}");
	assert_eq!(metric(&scraped, "ldk_trampoline_relay_relayed_total"), Some(0.0), "{scraped}");
	assert_eq!(metric(&scraped, "ldk_trampoline_held_htlcs"), Some(0.0), "{scraped}");
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
	let token = control.admin_token();
	let url = |path: &str| format!("http://{control}{path}");
	let post = |path: &str| {
		http.post(url(path)).bearer_auth(&token).header("content-type", "application/json")
	};
	let answer = |response: reqwest::Response| async move {
		let status = response.status().as_u16();
		(status, response.json::<Value>().await.expect("a JSON answer"))
	};
	let (status, body) = answer(post("/v1/balances").send().await.unwrap()).await;
	assert_eq!((status, body["lightning_sat"].as_u64()), (200, Some(before - 130_000)));
	let request = http.get(url("/v1/getinfo")).bearer_auth(&token);
	let (status, body) =
		answer(request.header("content-type", "application/json").send().await.unwrap()).await;
	assert_eq!(status, 405, "{body}");
	assert!(body["error"].as_str().unwrap().contains("POST"), "{body}");
	let (status, body) = answer(post("/v1/nope").send().await.unwrap()).await;
	assert_eq!(status, 404, "{body}");
	let request = post("/v1/invoice").body(r#"{"amount":1}"#);
	let (status, body) = answer(request.send().await.unwrap()).await;
	assert_eq!(status, 400, "{body}");
	assert!(body["error"].as_str().unwrap().contains("unknown field `amount`"), "{body}");
	let (status, body) = answer(post("/v1/pay").body("{").send().await.unwrap()).await;
	assert_eq!(status, 400, "{body}");
	node.assert_running();

	// `stop` persists, answers and makes the process exit 0.
	let stopped = ctl(&control, &["stop"]).await;
	assert_eq!(stopped["stopped"], true);
	let status = node.wait_exit().await;
	assert!(status.success(), "exit status {status}\n{}", node.diagnostics());
	drop(node);
	// The open event stream did not hold the stop up, and ended with it.
	tail.ended().await;

	// A stopped node leaves no token behind.
	assert!(
		!control.token_file(Role::Admin).exists() && !control.token_file(Role::ReadOnly).exists()
	);

	// It is persistent: the same identity, channel and balance after a restart;
	// SIGTERM stops it cleanly too. The restart writes fresh tokens.
	let mut node = NodeProcess::spawn(&args, work.path(), &data_dir);
	let restarted = node.wait_ready(&client).await;
	assert_ne!(control.admin_token(), token, "a fresh token at each start");
	assert_eq!(restarted.node_id, info.node_id);
	let channels = client.list_channels().await.expect("channels").channels;
	assert_eq!(channels.iter().map(|c| c.channel_id.as_str()).collect::<Vec<_>>(), [&channel_id]);
	assert_eq!(client.balances().await.expect("balances").lightning_sat, before - 130_000);

	// A force close names our commitment transaction; the channel stays
	// listed as closing with it, across a restart, and its funds move from
	// `lightning_sat` to `closing_sat`.
	let closed = ctl(&control, &["close-channel", &channel_id, "--force"]).await;
	let closing_txid = closed["closing_txid"].as_str().expect("closing txid").to_string();
	let commitment: bitcoin::Txid = closing_txid.parse().expect("txid");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("commitment broadcast");
	assert!(net.bitcoind().in_mempool(&commitment).unwrap());
	node.sigterm();
	assert!(node.wait_exit().await.success(), "{}", node.diagnostics());
	let mut node = NodeProcess::spawn(&args, work.path(), &data_dir);
	node.wait_ready(&client).await;
	let channels = ctl(&control, &["list-channels"]).await;
	assert_eq!(channels["channels"], serde_json::json!([]), "{channels}");
	assert_eq!(channels["closing"][0]["channel_id"], channel_id.as_str(), "{channels}");
	assert_eq!(channels["closing"][0]["closing_txid"], closing_txid.as_str(), "{channels}");
	assert_eq!(channels["closing"][0]["state"], "waiting_for_closing_tx", "{channels}");
	let balances = client.balances().await.expect("balances");
	assert_eq!(balances.lightning_sat, 0, "{balances:?}");
	assert!(
		balances.closing_sat > 0 && balances.closing_sat < before - 130_000,
		"our side less the commitment fee: {balances:?}"
	);
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

	// A control interface off loopback without TLS.
	let mut exposed = node_args(&path("exposed"), &endpoint, "regtest");
	let at = exposed.iter().position(|a| a == "--control-listen").unwrap() + 1;
	exposed[at] = "0.0.0.0:0".into();
	check(
		"control off loopback without TLS",
		exposed,
		vec!["0.0.0.0:0".into(), "not a loopback address".into(), "control_tls_cert".into()],
	)
	.await;
	assert!(!Path::new(&path("exposed")).exists(), "refused before anything is created");

	// The client against a port where nothing listens.
	let nothing = format!("127.0.0.1:{}", free_port());
	let token = path("token");
	std::fs::write(&token, "ab".repeat(32)).unwrap();
	check(
		"ctl without a node",
		vec![
			"ctl".into(),
			"--control".into(),
			nothing.clone(),
			"--control-token-file".into(),
			token,
			"getinfo".into(),
		],
		vec!["cannot reach the control interface".into(), nothing.clone()],
	)
	.await;
	// Without a token file (no node ever ran with that data directory).
	let no_node = path("no-node");
	check(
		"ctl without a token",
		vec![
			"ctl".into(),
			"--control".into(),
			nothing.clone(),
			"--data-dir".into(),
			no_node.clone(),
			"getinfo".into(),
		],
		vec!["cannot read the control token file".into(), no_node, "--control-token-file".into()],
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
	let control = Control::new(&data_dir);
	let endpoint = rpc.endpoint();
	let mut args = node_args("regtest", &data_arg, &endpoint, user, password, &control.address);
	args.extend(["--trampoline-fee-base-msat", "2000"].map(String::from));
	let args: Vec<&str> = args.iter().map(String::as_str).collect();
	let mut node = NodeProcess::spawn(&args, work.path(), &data_dir);
	let client = control.client();
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
	// Bob's metrics before: nothing relayed, failed or timed.
	let before = samples(&scrape_of(&bob));
	for metric in [
		"ldk_trampoline_relay_fees_earned_msat_total",
		"ldk_trampoline_relay_failures_total",
		"ldk_trampoline_relay_refusals_total",
		"ldk_trampoline_relay_step_seconds_count",
	] {
		assert_eq!(total(&before, metric), 0.0, "{metric}");
	}
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
	// Bob's forwarding history: relayed, refused (1 msat offered), relayed
	// with the fee asked, refused, oldest first, each relayed one with bob's
	// fee (he pays carol over their direct channel).
	let forwards = common::wait_forwards(&bob, 4).await;
	let outcomes: Vec<_> = forwards.iter().map(|f| (f.kind, f.fee_msat, f.dialect)).collect();
	let relayed = (ForwardKind::Trampoline, Some(fee_msat), Some(Dialect::Spec));
	let refused = (ForwardKind::Trampoline, None, Some(Dialect::Spec));
	assert_eq!(outcomes, vec![relayed, refused, relayed, refused], "{forwards:?}");
	assert_eq!(forwards[0].in_msat, Some(amount_msat + fee_msat));
	assert_eq!(forwards[0].out_msat, Some(amount_msat));
	assert_eq!(forwards[1].in_msat, Some(amount_msat + 1));
	let ForwardOutcome::Failed { reason } = &forwards[1].outcome else { panic!("{forwards:?}") };
	assert_eq!(reason, &fail_reason_words(&FailReason::FeeInsufficient));
	// Pages of two: oldest first, the cursor is the last index.
	let page = bob.list_forwards(None, 2);
	assert_eq!(page.forwards, forwards[..2]);
	assert_eq!(page.next_index_offset, Some(forwards[1].index));
	let page = bob.list_forwards(page.next_index_offset, 2);
	assert_eq!((page.forwards.as_slice(), page.next_index_offset), (&forwards[2..], None));

	// Bob's metrics moved by exactly these forwards: the fees are theirs,
	// each refused one is a failure with the code the payer was told
	// (NODE|26, spec), every bucket was timed to claimable, the relayed two
	// to sent and to settled; nothing was refused at the door.
	let text = scrape_of(&bob);
	let after = samples(&text);
	let fees: u64 = forwards.iter().filter_map(|f| f.fee_msat).sum();
	assert_eq!(fees, 2 * fee_msat);
	assert_eq!(total(&after, "ldk_trampoline_relay_fees_earned_msat_total"), fees as f64, "{text}");
	let failed = forwards.iter().filter(|f| matches!(f.outcome, ForwardOutcome::Failed { .. }));
	let failed = failed.count() as f64;
	assert_eq!(total(&after, "ldk_trampoline_relay_failures_total"), failed, "{text}");
	let told = "ldk_trampoline_relay_failures_total{dialect=\"spec\",reason=\"fee_insufficient\",code=\"0x201a\"}";
	assert_eq!(metric(&text, told), Some(failed), "{text}");
	assert_eq!(total(&after, "ldk_trampoline_relay_refusals_total"), 0.0, "{text}");
	let relayed = (forwards.len() as f64) - failed;
	for (step, count) in [
		("receive_to_claimable", forwards.len() as f64),
		("claimable_to_sent", relayed),
		("sent_to_settled", relayed),
	] {
		let series = format!("ldk_trampoline_relay_step_seconds_count{{step=\"{step}\"}}");
		assert_eq!(metric(&text, &series), Some(count), "{series} in\n{text}");
	}
	assert_eq!(bob.trampoline().expect("bob relays").core().metrics().timed_buckets(), 0);

	// The reference node forwards nothing (it pays): an empty page, and
	// its shape.
	let empty = ctl(&control, &["list-forwards"]).await;
	assert_eq!(empty, serde_json::json!({ "forwards": [], "next_index_offset": null }));
	let empty = ctl(&control, &["list-forwards", "--index-offset", "7", "--limit", "5"]).await;
	assert_eq!(empty, serde_json::json!({ "forwards": [], "next_index_offset": null }));

	// The reference node's own relay has seen nothing; its scrape parses.
	let scraped = scrape(&control).await;
	assert_eq!(metric(&scraped, "ldk_trampoline_relay_fees_earned_msat_total"), Some(0.0));
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

	everyday_commands(&net, &control, &info.node_id, &bob, &carol).await;
	node.assert_running();
	ctl(&control, &["stop"]).await;
	assert!(node.wait_exit().await.success());
}

/// The numbers after `have ` and `need ` in a "not enough on-chain funds" error.
fn have_and_need(err: &str) -> (u64, u64) {
	let number = |after: &str| -> u64 {
		let start =
			err.find(after).unwrap_or_else(|| panic!("no {after:?} in {err}")) + after.len();
		let digits: String = err[start..].chars().take_while(char::is_ascii_digit).collect();
		digits.parse().unwrap_or_else(|_| panic!("no number after {after:?} in {err}"))
	};
	(number("have "), number("need "))
}

/// The reference node's wallet balance, confirmed and unconfirmed.
async fn onchain_total(control: &Control) -> u64 {
	let onchain = control.client().balances().await.expect("balances").onchain;
	onchain.confirmed_sat + onchain.unconfirmed_sat
}

/// `send-onchain`, `list-peers`, `disconnect` and `decode` against the
/// running reference node (`node_id`), which has a channel to `bob` (a
/// trampoline relay) and none to `carol` (another).
async fn everyday_commands(
	net: &RegtestNetwork, control: &Control, node_id: &str, bob: &ldk_trampoline::node::Node,
	carol: &ldk_trampoline::node::Node,
) {
	use bitcoincore_rpc::RpcApi;
	let rpc = net.bitcoind().rpc_config();
	let RpcAuth::UserPass { user, password } = &rpc.auth else { panic!("harness uses user/pass") };
	let bitcoind = bitcoincore_rpc::Client::new(
		&format!("http://{}", rpc.endpoint()),
		bitcoincore_rpc::Auth::UserPass(user.clone(), password.clone()),
	)
	.expect("bitcoind client");
	// The harness' bitcoind has no wallet: the recipient is a key of ours.
	let secp = bitcoin::secp256k1::Secp256k1::new();
	let key = bitcoin::secp256k1::SecretKey::from_slice(&[0x42; 32]).unwrap();
	let key = bitcoin::CompressedPublicKey(key.public_key(&secp));
	let target = Address::p2wpkh(&key, Network::Regtest).to_string();

	// send-onchain: the wallet counts the spend at once, by the amount and
	// the fee exactly, at the rate asked; the coins arrive once mined.
	let before = onchain_total(control).await;
	let args = ["send-onchain", "--address", &target, "--amount-sat", "250000"];
	let sent = ctl(control, &[&args[..], &["--fee-rate-sat-per-vb", "3"]].concat()).await;
	assert_eq!(sent["amount_sat"], 250_000, "{sent}");
	let fee = sent["fee_sat"].as_u64().expect("fee");
	let vsize = sent["vsize"].as_u64().expect("vsize");
	// BDK charges the rate on the weight (vsize rounds it up to whole vbytes).
	assert!((3 * (vsize - 1)..=3 * vsize).contains(&fee), "fee {fee} for {vsize} vB at 3 sat/vB");
	assert_eq!(onchain_total(control).await, before - 250_000 - fee, "{sent}");
	let txid: bitcoin::Txid = sent["txid"].as_str().expect("txid").parse().expect("a txid");
	net.bitcoind().wait_for_mempool(1, DEADLINE).expect("the send is broadcast");
	net.mine(1).await.expect("mine");
	let paid: Vec<Value> = (0..2)
		.filter_map(|vout: u32| {
			bitcoind.call::<Value>("gettxout", &[txid.to_string().into(), vout.into()]).ok()
		})
		.filter(|out| out["scriptPubKey"]["address"] == target.as_str())
		.collect();
	assert_eq!(paid.len(), 1, "one output to {target} in {txid}: {paid:?}");
	assert_eq!(paid[0]["value"].as_f64(), Some(0.0025), "{paid:?}");
	assert!(paid[0]["confirmations"].as_u64() >= Some(1), "{paid:?}");
	assert!(bitcoind.get_raw_mempool().expect("mempool").is_empty());

	// Refusals name their cause: too much, another chain, no address.
	let total = onchain_total(control).await;
	let err =
		ctl_err(control, &["send-onchain", "--address", &target, "--amount-sat", "10000000000"])
			.await;
	assert!(err.contains("400") && err.contains("not enough on-chain funds"), "{err}");
	let (have, need) = have_and_need(&err);
	assert_eq!(have, total, "{err}");
	assert!(need > 10_000_000_000, "{err}");
	let mainnet = Address::p2wpkh(&key, Network::Bitcoin).to_string();
	let err =
		ctl_err(control, &["send-onchain", "--address", &mainnet, "--amount-sat", "1000"]).await;
	assert!(err.contains("400") && err.contains("is not a regtest address"), "{err}");
	let err = ctl_err(control, &["send-onchain", "--address", "nonsense", "--all"]).await;
	assert!(err.contains("400") && err.contains("invalid address"), "{err}");
	let err = ctl_err(control, &[&args[..], &["--fee-rate-sat-per-vb", "0"]].concat()).await;
	assert!(err.contains("fee_rate_sat_per_vb 0"), "{err}");
	assert_eq!(onchain_total(control).await, total, "a refused send spends nothing");

	// list-peers: bob, with our channel and his trampoline bits (the spec's
	// 57 and Electrum's 151, as our relay advertises).
	let peers = ctl(control, &["list-peers"]).await;
	let bob_id = bob.node_id().to_string();
	let listed = peers["peers"].as_array().expect("peers").clone();
	assert_eq!(listed.len(), 1, "{peers}");
	assert_eq!(listed[0]["node_id"], bob_id.as_str());
	assert_eq!(listed[0]["channels"], 1);
	assert_eq!(listed[0]["inbound"], false);
	assert_eq!(listed[0]["address"], bob.listen_addr().to_string().as_str());
	assert_eq!(
		listed[0]["trampoline"],
		serde_json::json!({ "spec": true, "eclair_legacy": false, "electrum_legacy": true })
	);
	let features = listed[0]["features"].as_array().expect("features");
	assert!(features.contains(&57.into()) && features.contains(&151.into()), "{peers}");
	// carol, once connected, without a channel.
	let carol_id = carol.node_id().to_string();
	ctl(control, &["connect", &format!("{carol_id}@{}", carol.listen_addr())]).await;
	let peers = ctl(control, &["list-peers"]).await;
	let carol_entry = peers["peers"]
		.as_array()
		.expect("peers")
		.iter()
		.find(|p| p["node_id"] == carol_id.as_str())
		.unwrap_or_else(|| panic!("carol listed: {peers}"))
		.clone();
	assert_eq!(carol_entry["channels"], 0);
	assert_eq!(carol_entry["trampoline"]["spec"], true, "{peers}");

	// disconnect: carol goes and stays gone; bob (a channel peer) only with
	// --force, and is then not called back until `connect`.
	let listed_ids = |peers: &Value| -> Vec<String> {
		peers["peers"]
			.as_array()
			.expect("peers")
			.iter()
			.filter_map(|p| p["node_id"].as_str().map(String::from))
			.collect()
	};
	let gone = ctl(control, &["disconnect", "--node-id", &carol_id]).await;
	assert_eq!(gone["node_id"], carol_id.as_str());
	tokio::time::sleep(std::time::Duration::from_secs(1)).await;
	assert_eq!(listed_ids(&ctl(control, &["list-peers"]).await), [bob_id.as_str()]);
	let err = ctl_err(control, &["disconnect", "--node-id", &carol_id]).await;
	assert!(err.contains("404") && err.contains(&format!("not connected to peer {carol_id}")));
	let err = ctl_err(control, &["disconnect", "--node-id", &bob_id]).await;
	assert!(err.contains("400") && err.contains("has 1 channel(s)") && err.contains("force"));
	assert_eq!(listed_ids(&ctl(control, &["list-peers"]).await), [bob_id.as_str()]);
	let err = ctl_err(control, &["disconnect", "--node-id", "02zz"]).await;
	assert!(err.contains("400") && err.contains("invalid node id"), "{err}");
	ctl(control, &["disconnect", "--node-id", &bob_id, "--force"]).await;
	tokio::time::sleep(std::time::Duration::from_secs(2)).await;
	assert_eq!(listed_ids(&ctl(control, &["list-peers"]).await), Vec::<String>::new());
	ctl(control, &["connect", &format!("{bob_id}@{}", bob.listen_addr())]).await;
	assert_eq!(listed_ids(&ctl(control, &["list-peers"]).await), [bob_id.as_str()]);

	// decode: the node's own invoice and offer, field by field.
	let made = ctl(
		control,
		&[
			"invoice",
			"--amount-msat",
			"12345",
			"--description",
			"decode me",
			"--expiry-secs",
			"600",
		],
	)
	.await;
	let decoded = ctl(control, &["decode", made["invoice"].as_str().expect("invoice")]).await;
	assert_eq!(decoded["type"], "bolt11_invoice", "{decoded}");
	assert_eq!(decoded["network"], "regtest");
	assert_eq!(decoded["amount_msat"], 12_345);
	assert_eq!(decoded["payee"], node_id);
	assert_eq!(decoded["payment_hash"], made["payment_hash"]);
	assert_eq!(decoded["description"], "decode me");
	assert_eq!(decoded["expiry_secs"], 600);
	assert_eq!(decoded["expired"], false);
	assert!(decoded["route_hints"].as_u64().is_some(), "{decoded}");
	let features = decoded["features"].as_array().expect("features");
	assert!(features.contains(&14.into()), "payment_secret required: {decoded}");
	assert!(decoded["trampoline"]["spec"].is_boolean(), "{decoded}");
	let made = ctl(control, &["offer", "--amount-msat", "5000", "--description", "an offer"]).await;
	let decoded = ctl(control, &["decode", made["offer"].as_str().expect("offer")]).await;
	assert_eq!(decoded["type"], "bolt12_offer", "{decoded}");
	assert_eq!(decoded["amount_msat"], 5000);
	assert_eq!(decoded["description"], "an offer");
	assert_eq!(decoded["expired"], false);
	let paths = decoded["paths"].as_u64().expect("paths");
	assert!(paths > 0 || decoded["issuer_signing_pubkey"] == node_id, "{decoded}");
	let err = ctl_err(control, &["decode", "nonsense"]).await;
	assert!(err.contains("400") && err.contains("not a BOLT 11 invoice"), "{err}");
	let err = ctl_err(control, &["decode", "lno1qqqq"]).await;
	assert!(err.contains("400") && err.contains("invalid BOLT 12 offer"), "{err}");

	// The read-only token lists peers and decodes, but neither sends nor
	// disconnects.
	let read_only = control.token_file(Role::ReadOnly).display().to_string();
	let flags = ["--control", &control.address, "--control-token-file", &read_only];
	let out = run_ctl_with(&flags, &["list-peers"]).await;
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	let out = run_ctl_with(&flags, &["decode", made["offer"].as_str().expect("offer")]).await;
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	for refused in [&args[..], &["disconnect", "--node-id", &bob_id, "--force"]] {
		let out = run_ctl_with(&flags, refused).await;
		let stderr = String::from_utf8_lossy(&out.stderr);
		assert!(
			stderr.contains("403") && stderr.contains("read-only token"),
			"{refused:?}: {stderr}"
		);
	}
	assert_eq!(listed_ids(&ctl(control, &["list-peers"]).await), [bob_id.as_str()]);

	// --all drains the wallet to the address, less the fee; then there is
	// nothing left to send.
	let total = onchain_total(control).await;
	let drained = ctl(control, &["send-onchain", "--address", &target, "--all"]).await;
	let fee = drained["fee_sat"].as_u64().expect("fee");
	assert_eq!(drained["amount_sat"].as_u64(), Some(total - fee), "{drained}");
	assert_eq!(onchain_total(control).await, 0, "{drained}");
	let err = ctl_err(control, &["send-onchain", "--address", &target, "--all"]).await;
	assert!(err.contains("400") && err.contains("nothing to send"), "{err}");
	let err = ctl_err(control, &args).await;
	assert!(err.contains("not enough on-chain funds: have 0 sat"), "{err}");
}

/// A refused request: (case, path, token, Host, Content-Type, Origin, body,
/// status).
type Case<'a> =
	(&'a str, &'a str, Option<&'a str>, &'a str, Option<&'a str>, Option<&'a str>, &'a str, u16);

/// Requests that lack the admin token, name another Host, come from a web
/// page or are not JSON: each gets its status and a JSON error, and none
/// pays `invoice` or closes `channel_id` (the caller checks the node after).
async fn refused_requests_run_nothing(control: &Control, invoice: &str, channel_id: &str) {
	let http = reqwest::Client::builder().no_proxy().build().unwrap();
	let admin = control.admin_token();
	let read_only = std::fs::read_to_string(control.token_file(Role::ReadOnly)).unwrap();
	let pay = serde_json::json!({ "request": invoice, "timeout_secs": 5 }).to_string();
	let close = serde_json::json!({ "channel_id": channel_id, "force": true }).to_string();
	let json = "application/json";
	let host = control.address.as_str();
	// (case, path, token, Host, Content-Type, Origin, body, status)
	let cases: [Case; 12] = [
		("no token", "/v1/pay", None, host, Some(json), None, &pay, 401),
		("wrong token", "/v1/pay", Some(&"00".repeat(32)), host, Some(json), None, &pay, 401),
		("token prefix", "/v1/pay", Some(&admin[..32]), host, Some(json), None, &pay, 401),
		("read-only token on pay", "/v1/pay", Some(&read_only), host, Some(json), None, &pay, 403),
		("foreign Host", "/v1/pay", Some(&admin), "evil.example:80", Some(json), None, &pay, 403),
		(
			"rebound Host",
			"/v1/pay",
			Some(&admin),
			"attacker.example:9736",
			Some(json),
			None,
			&pay,
			403,
		),
		("text/plain body", "/v1/pay", Some(&admin), host, Some("text/plain"), None, &pay, 415),
		("no Content-Type", "/v1/pay", Some(&admin), host, None, None, &pay, 415),
		(
			"form body",
			"/v1/pay",
			Some(&admin),
			host,
			Some("application/x-www-form-urlencoded"),
			None,
			&pay,
			415,
		),
		(
			"cross-origin browser POST",
			"/v1/pay",
			None,
			host,
			Some("text/plain"),
			Some("http://evil.example"),
			&pay,
			403,
		),
		("no token on close", "/v1/close-channel", None, host, Some(json), None, &close, 401),
		(
			"read-only token on close",
			"/v1/close-channel",
			Some(&read_only),
			host,
			Some(json),
			None,
			&close,
			403,
		),
	];
	for (case, path, token, host, content_type, origin, body, status) in cases {
		let mut request = http
			.post(format!("http://{}{path}", control.address))
			.header("host", host)
			.body(body.to_string());
		if let Some(token) = token {
			request = request.bearer_auth(token);
		}
		if let Some(content_type) = content_type {
			request = request.header("content-type", content_type);
		}
		if let Some(origin) = origin {
			request = request.header("origin", origin);
		}
		let response = request.send().await.unwrap_or_else(|e| panic!("{case}: {e}"));
		assert_eq!(response.status().as_u16(), status, "{case}");
		assert!(
			!response.headers().keys().any(|h| h.as_str().starts_with("access-control-")),
			"{case}: no CORS headers: {:?}",
			response.headers()
		);
		let answer: Value = response.json().await.unwrap_or_else(|e| panic!("{case}: {e}"));
		assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{case}: {answer}");
	}
	// A browser's preflight gets no CORS answer either.
	let preflight = http
		.request(reqwest::Method::OPTIONS, format!("http://{}/v1/pay", control.address))
		.header("origin", "http://evil.example")
		.header("access-control-request-method", "POST")
		.send()
		.await
		.unwrap();
	assert!(!preflight.status().is_success(), "{}", preflight.status());
	assert!(!preflight.headers().keys().any(|h| h.as_str().starts_with("access-control-")));

	// The read-only token lists; `ctl` with it is refused a payment, clearly.
	let read_only_file = control.token_file(Role::ReadOnly).display().to_string();
	let flags = ["--control", host, "--control-token-file", &read_only_file];
	let out = run_ctl_with(&flags, &["list-payments"]).await;
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	let out = run_ctl_with(&flags, &["pay", invoice]).await;
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert_eq!(out.status.code(), Some(1), "{stderr}");
	assert!(stderr.contains("403") && stderr.contains("read-only token"), "{stderr}");
	// And the library client without a token is told what to send.
	let anonymous = ControlClient::new(host).expect("client");
	let err = anonymous.list_payments().await.expect_err("refused").to_string();
	assert!(err.contains("401") && err.contains("Authorization: Bearer"), "{err}");
	let wrong = ClientOptions { token: Some(TokenSource::Token("ab".repeat(32))), ca_cert: None };
	let err = ControlClient::with_options(host, wrong)
		.unwrap()
		.pay(&ldk_trampoline::control::PayRequest {
			request: invoice.into(),
			amount_msat: None,
			timeout_secs: Some(5),
			trampoline: None,
			trampoline_fee_msat: None,
			trampoline_cltv_expiry_delta: None,
			trampoline_max_fee_msat: None,
		})
		.await
		.expect_err("refused")
		.to_string();
	assert!(err.contains("401") && err.contains("wrong token"), "{err}");
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files `control.crt` and `control.key` in `dir`.
fn self_signed_cert(dir: &Path) -> (String, String) {
	let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
	let rcgen::CertifiedKey { cert, key_pair } =
		rcgen::generate_simple_self_signed(names).expect("certificate");
	let (cert_path, key_path) = (dir.join("control.crt"), dir.join("control.key"));
	std::fs::write(&cert_path, cert.pem()).unwrap();
	std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
	(cert_path.display().to_string(), key_path.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_interface_over_tls_off_loopback_works_with_ctl() {
	let net = RegtestNetwork::start().expect("regtest");
	let work = tempfile::Builder::new().prefix("ldk-trampoline-tls-").tempdir().unwrap();
	let rpc = net.bitcoind().rpc_config();
	let RpcAuth::UserPass { user, password } = &rpc.auth else { panic!("harness uses user/pass") };
	let (cert, _key) = self_signed_cert(work.path());
	let port = free_port();
	// On every interface, so TLS is required; reached as localhost.
	let config = work.path().join("node.toml");
	std::fs::write(
		&config,
		format!(
			"network = \"regtest\"\ndata_dir = \"data\"\nbitcoind_rpc = \"{}\"\n\
			 bitcoind_rpc_user = \"{user}\"\nbitcoind_rpc_password = \"{password}\"\n\
			 listen = \"127.0.0.1:0\"\ncontrol_listen = \"0.0.0.0:{port}\"\n\
			 control_tls_cert = \"control.crt\"\ncontrol_tls_key = \"control.key\"\n\
			 control_hosts = [\"localhost:{port}\"]\n",
			rpc.endpoint()
		),
	)
	.unwrap();
	let data_dir = work.path().join("data");
	let config_arg = config.display().to_string();
	let mut node = NodeProcess::spawn(&["node", "--config", &config_arg], work.path(), &data_dir);
	let https = format!("https://localhost:{port}");
	let options = ClientOptions {
		token: Some(TokenSource::File(Role::Admin.token_path(&data_dir))),
		ca_cert: Some(cert.clone().into()),
	};
	let client = ControlClient::with_options(&https, options).expect("client");
	let info = node.wait_ready(&client).await;
	assert_eq!(info.network, "regtest");

	// `ctl` with the config only: https and the certificate come from it.
	let flags = ["--config", config_arg.as_str(), "--control", https.as_str()];
	let out = run_ctl_with(&flags, &["getinfo"]).await;
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	let getinfo: Value = serde_json::from_slice(&out.stdout).expect("JSON");
	assert_eq!(getinfo["node_id"], info.node_id.as_str());
	let out = run_ctl_with(&flags, &["new-address"]).await;
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

	// Without trusting the certificate, or over plain http: no answer.
	let data_arg = data_dir.display().to_string();
	let out = run_ctl_with(&["--control", &https, "--data-dir", &data_arg], &["getinfo"]).await;
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert_eq!(out.status.code(), Some(1), "{stderr}");
	assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
	let plain = format!("http://localhost:{port}");
	let out = run_ctl_with(&["--control", &plain, "--data-dir", &data_arg], &["getinfo"]).await;
	assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
	// A Host the operator did not list is refused over TLS too.
	let ip = format!("https://127.0.0.1:{port}");
	let options = ClientOptions {
		token: Some(TokenSource::File(Role::Admin.token_path(&data_dir))),
		ca_cert: Some(cert.into()),
	};
	let by_ip = ControlClient::with_options(&ip, options).expect("client");
	let err = by_ip.getinfo().await.expect_err("Host 127.0.0.1 not listed").to_string();
	assert!(err.contains("403") && err.contains("Host"), "{err}");

	let out = run_ctl_with(&flags, &["stop"]).await;
	assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
	assert!(node.wait_exit().await.success());
}

/// `GET /metrics` with the read-only token (as a Prometheus scraper sends
/// it: no body, no Content-Type); checks the answer is OpenMetrics text.
async fn scrape(control: &Control) -> String {
	let token = std::fs::read_to_string(control.token_file(Role::ReadOnly)).unwrap();
	let http = reqwest::Client::builder().no_proxy().build().unwrap();
	let url = format!("http://{}/metrics", control.address);
	let refused = http.get(&url).send().await.unwrap();
	assert_eq!(refused.status().as_u16(), 401, "a scrape needs a token too");
	let response = http.get(&url).bearer_auth(token.trim()).send().await.unwrap();
	assert_eq!(response.status().as_u16(), 200);
	let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
	assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
	let text = response.text().await.unwrap();
	assert!(text.ends_with("# EOF\n"), "{text}");
	samples(&text);
	text
}

/// Every sample of a scrape, read by `prometheus-parse` (which must read
/// every line but OpenMetrics' closing `# EOF`; a histogram is one sample,
/// its `_count` and `_sum` untyped ones).
fn samples(text: &str) -> Vec<prometheus_parse::Sample> {
	use prometheus_parse::LineInfo;
	for line in text.lines() {
		let unread = matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty);
		assert!(!unread || line == "# EOF", "a line the parser does not read: {line:?}\n{text}");
	}
	let lines = text.lines().map(|l| Ok(l.to_string()));
	prometheus_parse::Scrape::parse(lines).expect("the scrape parses").samples
}

/// The sum of the samples of `metric` over all its labels.
fn total(samples: &[prometheus_parse::Sample], metric: &str) -> f64 {
	samples
		.iter()
		.filter(|s| s.metric == metric)
		.map(|s| match s.value {
			prometheus_parse::Value::Counter(v)
			| prometheus_parse::Value::Gauge(v)
			| prometheus_parse::Value::Untyped(v) => v,
			_ => panic!("{metric} is not a number: {s:?}"),
		})
		.sum()
}

/// `node`'s own scrape (a harness node has no control interface: the text
/// `/metrics` would answer), checked as [`scrape`] checks one.
fn scrape_of(node: &ldk_trampoline::node::Node) -> String {
	use ldk_trampoline::control::metrics::{render, Snapshot};
	let text = render(&Snapshot::of(node)).expect("encodes");
	assert!(text.ends_with("# EOF\n"), "{text}");
	samples(&text);
	text
}

/// The value of the sample `series` in a scrape.
fn metric(text: &str, series: &str) -> Option<f64> {
	text.lines()
		.find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
		.and_then(|v| v.trim().parse().ok())
}
