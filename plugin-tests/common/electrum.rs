//! Electrum 4.3.4 wallets for the regtest tests, with the ElectrumX server
//! they need, against the harness' bitcoind.
//!
//! Both are provisioned on first use by `electrum-conf/provision-electrum.sh`
//! (Debian's `electrum`, PyPI's `e-x` in a virtualenv in the cache) and
//! stopped when dropped. An Electrum wallet runs as a foreground daemon
//! (`electrum --regtest -D <dir> daemon`, through `electrum-conf/electrum_regtest.py`,
//! which fills Electrum's trampoline list on regtest) and is driven over its
//! JSON-RPC interface. Every wait has a deadline; nothing sleeps to wait.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use ldk_trampoline::node::RpcAuth;
use ldk_trampoline::regtest::{run_provisioning_script, Bitcoind, RegtestNetwork, DEADLINE};
use serde_json::{json, Value};

const PROVISION_SCRIPT: &str = include_str!("../../electrum-conf/provision-electrum.sh");
const WRAPPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/electrum-conf/electrum_regtest.py");
const RPC_USER: &str = "electrum";
const RPC_PASSWORD: &str = "regtest";
/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(100);
/// Electrum gives up on a payment after 120 s (`LNWallet.PAYMENT_TIMEOUT`);
/// `lnpay` answers after that at the latest.
const LNPAY_TIMEOUT: Duration = Duration::from_secs(180);

/// Electrum's fee rate on regtest (its hardcoded 180,000 sat/kvB makes
/// HTLCs below about 30,000 sat dust): 1,000 sat/kw on its channels, the
/// reference node's own non-anchor channel rate.
const REGTEST_FEERATE_SAT_PER_KVB: u32 = 4_000;

/// The arguments bitcoind needs for ElectrumX 2.0 (`REQUIRED_DAEMON_INDEXES`
/// in `electrumx/lib/coins.py`).
pub const BITCOIND_ARGS: [&str; 2] = ["-txindex=1", "-txospenderindex=1"];

/// How to install by hand what the provisioning script installs.
const HOW_TO_INSTALL: &str = "run electrum-conf/provision-electrum.sh (as root, or with sudo): it \
	installs Debian's `electrum` 4.3.4, `libleveldb-dev`, `python3-venv` and `python3-dev` with \
	apt-get, and PyPI's `e-x` and `plyvel` into a virtualenv under \
	~/.cache/ldk-trampoline/electrum-4.3.4";

/// The directory holding `electrum`, `electrumx_server` and Debian's
/// `python3`, provisioned once per test binary. Panics, saying how to
/// install them, if that fails: these tests never skip.
pub fn provision() -> &'static Path {
	static DIR: OnceLock<PathBuf> = OnceLock::new();
	DIR.get_or_init(|| run_provisioning().unwrap_or_else(|e| panic!("{e}; {HOW_TO_INSTALL}")))
}

fn run_provisioning() -> Result<PathBuf, String> {
	let dir = run_provisioning_script(PROVISION_SCRIPT)
		.map_err(|e| format!("provisioning Electrum failed: {e}"))?;
	for exe in ["electrum", "electrumx_server", "python3"] {
		if !dir.join(exe).exists() {
			return Err(format!("provisioning Electrum left no {exe} in {}", dir.display()));
		}
	}
	Ok(dir)
}

fn free_port() -> u16 {
	TcpListener::bind("127.0.0.1:0")
		.and_then(|l| l.local_addr())
		.map(|a| a.port())
		.expect("a free loopback port")
}

/// A log file for a child process' stdout and stderr.
fn log_file(path: &Path) -> (Stdio, Stdio) {
	let file = std::fs::File::create(path).expect("log file");
	let copy = file.try_clone().expect("log file handle");
	(Stdio::from(file), Stdio::from(copy))
}

/// The last `lines` lines of a log, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
	let text = std::fs::read_to_string(path).unwrap_or_default();
	let all: Vec<&str> = text.lines().collect();
	all[all.len().saturating_sub(lines)..].join("\n")
}

fn stop_child(child: &mut Child) {
	let _ = child.kill();
	let _ = child.wait();
}

/// A running ElectrumX, indexing the harness' bitcoind.
pub struct ElectrumX {
	child: Child,
	port: u16,
	log: PathBuf,
}

impl ElectrumX {
	/// Starts ElectrumX against `bitcoind` (started with [`BITCOIND_ARGS`]),
	/// its database and log in `dir`, and waits until it serves clients (it
	/// opens its port once it has caught up with bitcoind).
	pub async fn start(bitcoind: &Bitcoind, dir: &Path) -> Self {
		let bins = provision();
		std::fs::create_dir_all(dir.join("db")).expect("ElectrumX directory");
		let rpc = bitcoind.rpc_config();
		let RpcAuth::UserPass { user, password } = rpc.auth else { panic!("user/pass RPC") };
		let port = free_port();
		let log = dir.join("electrumx.log");
		let (stdout, stderr) = log_file(&log);
		let child = Command::new(bins.join("electrumx_server"))
			.env_clear()
			.env("DB_DIRECTORY", dir.join("db"))
			.env("DB_ENGINE", "leveldb")
			.env("DAEMON_URL", format!("http://{user}:{password}@{}:{}/", rpc.host, rpc.port))
			.env("COIN", "Bitcoin")
			.env("NET", "regtest")
			.env("SERVICES", format!("tcp://127.0.0.1:{port}"))
			.env("PEER_DISCOVERY", "off")
			.env("PEER_ANNOUNCE", "")
			.env("ALLOW_ROOT", "1")
			.env("CACHE_MB", "100")
			.env("DAEMON_POLL_INTERVAL_BLOCKS", "100")
			.env("DAEMON_POLL_INTERVAL_MEMPOOL", "100")
			.env("LOG_LEVEL", "info")
			.stdout(stdout)
			.stderr(stderr)
			.spawn()
			.expect("ElectrumX starts");
		let mut server = Self { child, port, log };
		server.wait_listening().await;
		server
	}

	async fn wait_listening(&mut self) {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			if let Ok(Some(status)) = self.child.try_wait() {
				panic!("ElectrumX exited with {status}:\n{}", tail(&self.log, 30));
			}
			if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
				return;
			}
			assert!(
				tokio::time::Instant::now() < deadline,
				"ElectrumX not listening after {DEADLINE:?}:\n{}",
				tail(&self.log, 30)
			);
			tokio::time::sleep(POLL).await;
		}
	}

	/// The `host:port:t` (plain TCP) address Electrum connects to.
	pub fn server_string(&self) -> String {
		format!("127.0.0.1:{}:t", self.port)
	}
}

impl Drop for ElectrumX {
	fn drop(&mut self) {
		stop_child(&mut self.child);
	}
}

/// How an Electrum wallet is configured.
#[derive(Clone, Debug, Default)]
pub struct ElectrumOptions {
	/// Trampolines Electrum takes for known ones (its hardcoded list,
	/// empty on regtest): the second trampoline of a payment to a
	/// recipient without trampoline support.
	pub trampolines: Vec<(PublicKey, SocketAddr)>,
	/// Listen for Lightning peers (`lightning_listen`) on a free port.
	pub listen: bool,
	/// Forward payments, trampoline ones included
	/// (`lightning_forward_payments`, `lightning_forward_trampoline_payments`).
	pub forward_trampoline_payments: bool,
	/// Gossip mode (`use_gossip`) instead of trampoline mode: Electrum
	/// routes its own payments over the channel graph. Electrum 4.3.4
	/// forwards a trampoline payment to a next trampoline that is its peer
	/// only in this mode (in trampoline mode it drops the onion: it pays its
	/// peer as the recipient, `create_routes_for_payment` in `lnworker.py`).
	pub gossip: bool,
}

/// One of Electrum's channels, from `list_channels`.
#[derive(Clone, Debug)]
pub struct ElectrumChannel {
	/// `txid:index` of the funding output.
	pub channel_point: String,
	/// `OPEN` when usable (Electrum's `ChannelState`).
	pub state: String,
	/// `GOOD` when the peer is connected and reestablished.
	pub peer_state: String,
	/// The peer.
	pub remote_pubkey: String,
	/// Ours, in sat (Electrum rounds msat down).
	pub local_balance_sat: u64,
	/// Theirs, in sat.
	pub remote_balance_sat: u64,
	/// Sat in HTLCs we offered, not yet settled.
	pub local_unsettled_sent_sat: u64,
	/// Sat in HTLCs they offered, not yet settled.
	pub remote_unsettled_sent_sat: u64,
}

impl ElectrumChannel {
	fn from_json(value: &Value) -> Option<Self> {
		let text = |key: &str| value.get(key)?.as_str().map(str::to_string);
		let sat = |key: &str| value.get(key)?.as_u64();
		Some(Self {
			channel_point: text("channel_point")?,
			state: text("state")?,
			peer_state: text("peer_state")?,
			remote_pubkey: text("remote_pubkey")?,
			local_balance_sat: sat("local_balance")?,
			remote_balance_sat: sat("remote_balance")?,
			local_unsettled_sent_sat: sat("local_unsettled_sent")?,
			remote_unsettled_sent_sat: sat("remote_unsettled_sent")?,
		})
	}

	/// Open, its peer connected: Electrum can pay over it.
	pub fn usable(&self) -> bool {
		self.state == "OPEN" && self.peer_state == "GOOD"
	}
}

/// What `lnpay` answered.
#[derive(Clone, Debug)]
pub struct LnPay {
	/// Whether the payment succeeded.
	pub success: bool,
	/// The preimage, hex, on success.
	pub preimage: Option<String>,
	/// One line per HTLC attempt: hops, channel, and "Success" or the
	/// failure's code name (Electrum's `HtlcLog.formatted_tuple`).
	pub attempts: Vec<(String, String, String)>,
}

impl LnPay {
	fn from_json(value: &Value) -> Option<Self> {
		let attempts = value
			.get("log")?
			.as_array()?
			.iter()
			.map(|entry| {
				let field = |i: usize| entry.get(i).map(json_text).unwrap_or_default();
				(field(0), field(1), field(2))
			})
			.collect();
		Some(Self {
			success: value.get("success")?.as_bool()?,
			preimage: value.get("preimage").and_then(Value::as_str).map(str::to_string),
			attempts,
		})
	}
}

fn json_text(value: &Value) -> String {
	value.as_str().map_or_else(|| value.to_string(), str::to_string)
}

/// A sat amount as the BTC decimal Electrum's commands take.
pub fn btc(sat: u64) -> String {
	format!("{}.{:08}", sat / 100_000_000, sat % 100_000_000)
}

/// A BTC decimal of Electrum's (`"0.00123456789"`) in msat, exactly.
pub fn btc_to_msat(text: &str) -> Option<u64> {
	let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
	if fraction.len() > 11 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
		return None;
	}
	let whole: u64 = whole.parse().ok()?;
	let fraction: u64 = format!("{fraction:0<11}").parse().ok()?;
	whole.checked_mul(100_000_000_000)?.checked_add(fraction)
}

/// A running Electrum wallet (daemon and one loaded wallet).
pub struct Electrum {
	child: Child,
	dir: PathBuf,
	url: String,
	http: reqwest::Client,
	node_id: PublicKey,
	listen: Option<SocketAddr>,
}

impl Electrum {
	/// Starts an Electrum daemon in `dir` connected to `server` only, creates
	/// and loads a fresh wallet, and waits until it has synced to bitcoind's
	/// tip.
	pub async fn start(
		net: &RegtestNetwork, server: &ElectrumX, dir: &Path, options: &ElectrumOptions,
	) -> Self {
		let bins = provision();
		let rpc_port = free_port();
		let listen = options.listen.then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
		write_config(dir, server, rpc_port, listen, options);
		let (stdout, stderr) = log_file(&dir.join("electrum-daemon.log"));
		let child = Command::new(bins.join("python3"))
			.arg(WRAPPER)
			.args(["--regtest", "-D"])
			.arg(dir)
			.arg("daemon")
			.env("ELECTRUM_REGTEST_TRAMPOLINES", trampoline_list(&options.trampolines))
			.env("ELECTRUM_REGTEST_FEERATE", REGTEST_FEERATE_SAT_PER_KVB.to_string())
			.stdin(Stdio::null())
			.stdout(stdout)
			.stderr(stderr)
			.spawn()
			.expect("the Electrum daemon starts");
		let http = reqwest::Client::builder().build().expect("HTTP client");
		let mut wallet = Self {
			child,
			dir: dir.to_path_buf(),
			url: format!("http://127.0.0.1:{rpc_port}/"),
			http,
			// Replaced by the wallet's own once it is loaded.
			node_id: placeholder_key(),
			listen,
		};
		wallet.wait_rpc().await;
		wallet.call_ok("create", json!({})).await;
		wallet.call_ok("load_wallet", json!({})).await;
		let node_id = wallet.call_ok("nodeid", json!({})).await;
		let node_id = json_text(&node_id);
		let hex = node_id.split('@').next().unwrap_or_default();
		wallet.node_id = PublicKey::from_str(hex).expect("Electrum's node id");
		wallet.wait_synced(net.bitcoind().height().expect("height")).await;
		wallet
	}

	/// The wallet's Lightning node id.
	pub fn node_id(&self) -> PublicKey {
		self.node_id
	}

	/// Where it listens for Lightning peers, if asked to.
	pub fn listen_addr(&self) -> Option<SocketAddr> {
		self.listen
	}

	/// The daemon's own log (`log_to_file`), for assertions and failures.
	pub fn log(&self) -> String {
		let dir = self.dir.join("regtest").join("logs");
		let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
			.map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
			.unwrap_or_default();
		files.sort();
		files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect::<Vec<_>>().join("")
	}

	/// The last lines of its logs, for failure messages.
	pub fn log_tail(&self, lines: usize) -> String {
		let log = self.log();
		let all: Vec<&str> = log.lines().collect();
		let daemon = tail(&self.dir.join("electrum-daemon.log"), 10);
		format!(
			"{}\n--- daemon stderr ---\n{daemon}",
			all[all.len().saturating_sub(lines)..].join("\n")
		)
	}

	async fn wait_rpc(&mut self) {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			if let Ok(Some(status)) = self.child.try_wait() {
				panic!("the Electrum daemon exited with {status}:\n{}", self.log_tail(30));
			}
			if self.call("ping", json!({})).await.is_ok() {
				return;
			}
			assert!(
				tokio::time::Instant::now() < deadline,
				"Electrum's RPC not up after {DEADLINE:?}:\n{}",
				self.log_tail(30)
			);
			tokio::time::sleep(POLL).await;
		}
	}

	/// Calls a command over JSON-RPC, within `timeout`; `Err` carries
	/// Electrum's error message (or why there was no answer).
	pub async fn call_within(
		&self, method: &str, params: Value, timeout: Duration,
	) -> Result<Value, String> {
		let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
		let response = self
			.http
			.post(&self.url)
			.basic_auth(RPC_USER, Some(RPC_PASSWORD))
			.json(&body)
			.timeout(timeout)
			.send()
			.await
			.map_err(|e| format!("{method}: no answer: {e}"))?;
		let status = response.status();
		let text = response.text().await.map_err(|e| format!("{method}: {e}"))?;
		let answer: Value =
			serde_json::from_str(&text).map_err(|_| format!("{method}: HTTP {status}: {text}"))?;
		if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
			let message = error.get("message").map(json_text).unwrap_or_else(|| error.to_string());
			return Err(format!("{method}: {message}"));
		}
		Ok(answer.get("result").cloned().unwrap_or(Value::Null))
	}

	/// [`Self::call_within`] 30 s.
	pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
		self.call_within(method, params, Duration::from_secs(30)).await
	}

	/// [`Self::call`], panicking with Electrum's log on an error.
	pub async fn call_ok(&self, method: &str, params: Value) -> Value {
		match self.call(method, params).await {
			Ok(value) => value,
			Err(e) => panic!("Electrum {e}\n{}", self.log_tail(30)),
		}
	}

	/// Waits until Electrum's chain and wallet are at `height`.
	pub async fn wait_synced(&self, height: u32) {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			let info = self.call_ok("getinfo", json!({})).await;
			let at = info.get("blockchain_height").and_then(Value::as_u64).unwrap_or(0);
			let synced = self.call_ok("is_synchronized", json!({})).await;
			if at >= u64::from(height) && synced == Value::Bool(true) {
				return;
			}
			assert!(
				tokio::time::Instant::now() < deadline,
				"Electrum at height {at} (synchronized: {synced}), bitcoind at {height}: {info}"
			);
			tokio::time::sleep(POLL).await;
		}
	}

	/// Gives the wallet `coinbases` mature coinbases (50 BTC each at low
	/// heights) and waits until it sees them confirmed.
	pub async fn fund(&self, net: &RegtestNetwork, coinbases: u32) {
		let address = self.call_ok("createnewaddress", json!({})).await;
		let address = bitcoin::Address::from_str(&json_text(&address))
			.expect("an address")
			.require_network(bitcoin::Network::Regtest)
			.expect("a regtest address");
		net.fund_addresses(&[address], coinbases).expect("mine to Electrum");
		net.sync_all().await.expect("nodes sync");
		self.wait_synced(net.bitcoind().height().expect("height")).await;
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			let balance = self.call_ok("getbalance", json!({})).await;
			let confirmed = balance.get("confirmed").and_then(Value::as_str).unwrap_or("0");
			if btc_to_msat(confirmed).unwrap_or(0) > 0 && balance.get("unmatured").is_none() {
				return;
			}
			assert!(tokio::time::Instant::now() < deadline, "Electrum never funded: {balance}");
			tokio::time::sleep(POLL).await;
		}
	}

	/// Opens a channel of `sat` to `peer` at `addr`, giving the peer
	/// `push_sat` of it, and returns its funding outpoint; the funding
	/// transaction is then in the mempool, to be confirmed by the caller
	/// ([`Self::wait_channel_usable`]).
	pub async fn open_channel(
		&self, peer: PublicKey, addr: SocketAddr, sat: u64, push_sat: u64,
	) -> String {
		let params = json!({
			"connection_string": format!("{peer}@{addr}"),
			"amount": btc(sat),
			"push_amount": btc(push_sat),
		});
		match self.call_within("open_channel", params, DEADLINE).await {
			Ok(point) => json_text(&point),
			Err(e) => panic!("Electrum {e}\n{}", self.log_tail(30)),
		}
	}

	/// Waits until the channel funded at `channel_point` is open and its
	/// peer connected.
	pub async fn wait_channel_usable(&self, channel_point: &str) -> ElectrumChannel {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			let channels = self.channels().await;
			if let Some(c) = channels.iter().find(|c| c.channel_point == channel_point) {
				if c.usable() {
					return c.clone();
				}
			}
			assert!(
				tokio::time::Instant::now() < deadline,
				"channel {channel_point} not usable: {channels:?}\n{}",
				self.log_tail(30)
			);
			tokio::time::sleep(POLL).await;
		}
	}

	/// Its channels.
	pub async fn channels(&self) -> Vec<ElectrumChannel> {
		let list = self.call_ok("list_channels", json!({})).await;
		let entries = list.as_array().cloned().unwrap_or_default();
		entries
			.iter()
			.filter(|c| c.get("type").and_then(Value::as_str) == Some("CHANNEL"))
			.map(|c| ElectrumChannel::from_json(c).unwrap_or_else(|| panic!("channel entry {c}")))
			.collect()
	}

	/// Waits until no channel has an unsettled HTLC.
	pub async fn wait_no_htlcs(&self) {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			let channels = self.channels().await;
			if channels
				.iter()
				.all(|c| c.local_unsettled_sent_sat == 0 && c.remote_unsettled_sent_sat == 0)
			{
				return;
			}
			assert!(tokio::time::Instant::now() < deadline, "HTLCs stay: {channels:?}");
			tokio::time::sleep(POLL).await;
		}
	}

	/// The wallet's Lightning balance in msat (`getbalance`'s `lightning`).
	pub async fn lightning_msat(&self) -> u64 {
		let balance = self.call_ok("getbalance", json!({})).await;
		let lightning = balance.get("lightning").and_then(Value::as_str).unwrap_or("0");
		btc_to_msat(lightning).unwrap_or_else(|| panic!("balance {balance}"))
	}

	/// Waits until the wallet's Lightning balance is `msat` (a received
	/// payment is marked paid before its HTLC is settled on both sides).
	pub async fn wait_lightning_msat(&self, msat: u64) {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			let now = self.lightning_msat().await;
			if now == msat {
				return;
			}
			assert!(
				tokio::time::Instant::now() < deadline,
				"Electrum's Lightning balance is {now} msat, expected {msat}"
			);
			tokio::time::sleep(POLL).await;
		}
	}

	/// Creates a payment request of `sat` and returns its BOLT 11 invoice.
	pub async fn add_request(&self, sat: u64, memo: &str) -> String {
		let params = json!({ "amount": btc(sat), "memo": memo, "expiration": 3600 });
		let request = self.call_ok("add_request", params).await;
		request
			.get("lightning_invoice")
			.and_then(Value::as_str)
			.unwrap_or_else(|| panic!("no lightning invoice in {request}"))
			.to_string()
	}

	/// The status of the payment request for `payment_hash` (hex): 3 is paid
	/// (Electrum's `PR_PAID`).
	pub async fn request_status(&self, payment_hash: &str) -> Option<u64> {
		let request = self.call("get_request", json!({ "request_id": payment_hash })).await.ok()?;
		request.get("status").and_then(Value::as_u64)
	}

	/// Pays a BOLT 11 invoice; `Err` is Electrum's error when `lnpay` itself
	/// failed (rather than answering an unsuccessful payment).
	pub async fn lnpay(&self, invoice: &str) -> Result<LnPay, String> {
		let answer =
			self.call_within("lnpay", json!({ "invoice": invoice }), LNPAY_TIMEOUT).await?;
		LnPay::from_json(&answer).ok_or_else(|| format!("lnpay answered {answer}"))
	}

	/// The settled Lightning payment for `payment_hash` (hex) in
	/// `lightning_history`: its signed amount (fees included) and fee, msat.
	pub async fn settled_payment(&self, payment_hash: &str) -> Option<(i64, Option<i64>)> {
		let history = self.call_ok("lightning_history", json!({})).await;
		let entry = history
			.as_array()?
			.iter()
			.find(|e| e.get("payment_hash").and_then(Value::as_str) == Some(payment_hash))?;
		let amount = entry.get("amount_msat")?.as_i64()?;
		Some((amount, entry.get("fee_msat").and_then(Value::as_i64)))
	}

	/// The trampoline fee levels Electrum built routes with, in order
	/// (`created route with trampoline fee level=N` in its log).
	pub fn fee_levels_tried(&self) -> Vec<u32> {
		const MARK: &str = "created route with trampoline fee level=";
		self.log()
			.lines()
			.filter_map(|line| line.split(MARK).nth(1))
			.filter_map(|rest| rest.trim().parse().ok())
			.collect()
	}
}

impl Drop for Electrum {
	fn drop(&mut self) {
		stop_child(&mut self.child);
	}
}

fn placeholder_key() -> PublicKey {
	let secp = bitcoin::secp256k1::Secp256k1::signing_only();
	let key = bitcoin::secp256k1::SecretKey::from_slice(&[1; 32]).expect("a valid key");
	PublicKey::from_secret_key(&secp, &key)
}

fn trampoline_list(trampolines: &[(PublicKey, SocketAddr)]) -> String {
	trampolines.iter().map(|(id, addr)| format!("{id}@{addr}")).collect::<Vec<_>>().join(",")
}

/// Electrum's config file (`<dir>/regtest/config`), written before the
/// daemon starts: RPC on a fixed port, one server, trampoline mode (no
/// gossip), logs to file.
fn write_config(
	dir: &Path, server: &ElectrumX, rpc_port: u16, listen: Option<SocketAddr>,
	options: &ElectrumOptions,
) {
	let mut config = json!({
		"config_version": 3,
		"rpcuser": RPC_USER,
		"rpcpassword": RPC_PASSWORD,
		"rpchost": "127.0.0.1",
		"rpcport": rpc_port,
		"rpcsock": "tcp",
		"server": server.server_string(),
		"oneserver": true,
		"auto_connect": false,
		"use_gossip": options.gossip,
		"log_to_file": true,
		"lightning_forward_payments": options.forward_trampoline_payments,
		"lightning_forward_trampoline_payments": options.forward_trampoline_payments,
	});
	if let (Some(addr), Some(map)) = (listen, config.as_object_mut()) {
		map.insert("lightning_listen".into(), Value::String(addr.to_string()));
	}
	let network_dir = dir.join("regtest");
	std::fs::create_dir_all(&network_dir).expect("Electrum directory");
	let text = serde_json::to_string_pretty(&config).expect("JSON");
	std::fs::write(network_dir.join("config"), text).expect("Electrum config");
}
