//! A regtest bitcoind: provisioned by `bitcoind-conf/provision-bitcoind.sh`,
//! started on free loopback ports in a temporary data directory, stopped on drop.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, Amount, BlockHash, CompressedPublicKey, Network};
use bitcoincore_rpc::RpcApi;

use crate::node::{BitcoindRpcConfig, RpcAuth};

const PROVISION_SCRIPT: &str = include_str!("../../bitcoind-conf/provision-bitcoind.sh");
const BITCOIN_CONF: &str = include_str!("../../bitcoind-conf/bitcoin.conf");
const RPC_USER: &str = "ldk";
const RPC_PASSWORD: &str = "trampoline";

/// Errors starting or driving bitcoind.
#[derive(Debug, thiserror::Error)]
pub enum BitcoindError {
	/// The provisioning script failed.
	#[error("provisioning bitcoind failed: {0}")]
	Provision(String),
	/// bitcoind did not start or did not answer.
	#[error("bitcoind did not start: {0}")]
	Start(String),
	/// An RPC call failed.
	#[error("bitcoind RPC {method} failed: {reason}")]
	Rpc {
		/// The method.
		method: &'static str,
		/// What failed.
		reason: String,
	},
}

/// Returns the directory holding `bitcoind` and `bitcoin-cli`, building them on
/// first use (see `bitcoind-conf/provision-bitcoind.sh`; honours `BITCOIND_EXE`).
pub fn provision() -> Result<PathBuf, BitcoindError> {
	let dir = run_provisioning_script(PROVISION_SCRIPT).map_err(BitcoindError::Provision)?;
	if !dir.join("bitcoind").is_file() {
		return Err(BitcoindError::Provision(format!("no bitcoind in {}", dir.display())));
	}
	Ok(dir)
}

/// Runs a provisioning script (its text) with bash, its messages going to
/// our stderr, and returns the directory it printed on its last line of
/// stdout. `Err` says why it could not run or how it exited.
pub fn run_provisioning_script(script: &str) -> Result<PathBuf, String> {
	let mut child = Command::new("bash")
		.args(["-s", "--"])
		.stdin(Stdio::piped())
		.stdout(Stdio::piped())
		.stderr(Stdio::inherit())
		.spawn()
		.map_err(|e| format!("cannot run bash: {e}"))?;
	child
		.stdin
		.take()
		.ok_or("no stdin for bash")?
		.write_all(script.as_bytes())
		.map_err(|e| format!("cannot feed the script to bash: {e}"))?;
	let output = child.wait_with_output().map_err(|e| e.to_string())?;
	if !output.status.success() {
		return Err(format!("the script exited with {} (its messages are above)", output.status));
	}
	let stdout = String::from_utf8_lossy(&output.stdout);
	Ok(PathBuf::from(stdout.lines().last().map(str::trim).unwrap_or_default()))
}

fn free_port() -> Result<u16, BitcoindError> {
	TcpListener::bind("127.0.0.1:0")
		.and_then(|l| l.local_addr())
		.map(|a| a.port())
		.map_err(|e| BitcoindError::Start(format!("no free port: {e}")))
}

/// A running regtest bitcoind.
pub struct Bitcoind {
	child: Child,
	datadir: tempfile::TempDir,
	rpc_port: u16,
	client: bitcoincore_rpc::Client,
	burn_address: Address,
}

impl Bitcoind {
	/// Provisions and starts bitcoind in a fresh temporary data directory.
	pub fn start() -> Result<Self, BitcoindError> {
		Self::start_with_args(&[])
	}

	/// [`Self::start`] with extra command-line arguments, e.g. the
	/// `-txindex=1` an Electrum server needs.
	pub fn start_with_args(args: &[&str]) -> Result<Self, BitcoindError> {
		let bin_dir = provision()?;
		let mut last_error = String::new();
		// A port picked as free may be taken before bitcoind binds it: retry.
		for _ in 0..3 {
			match Self::start_once(&bin_dir.join("bitcoind"), args) {
				Ok(bitcoind) => return Ok(bitcoind),
				Err(e) => last_error = e.to_string(),
			}
		}
		Err(BitcoindError::Start(last_error))
	}

	fn start_once(exe: &Path, args: &[&str]) -> Result<Self, BitcoindError> {
		let datadir = tempfile::Builder::new()
			.prefix("ldk-trampoline-bitcoind-")
			.tempdir()
			.map_err(|e| BitcoindError::Start(format!("cannot create a data directory: {e}")))?;
		let conf = datadir.path().join("bitcoin.conf");
		std::fs::write(&conf, BITCOIN_CONF).map_err(|e| BitcoindError::Start(e.to_string()))?;
		let rpc_port = free_port()?;
		let mut child = Command::new(exe)
			.arg(format!("-conf={}", conf.display()))
			.arg(format!("-datadir={}", datadir.path().display()))
			.arg(format!("-rpcport={rpc_port}"))
			.args(args)
			.stdout(Stdio::null())
			.stderr(Stdio::piped())
			.spawn()
			.map_err(|e| BitcoindError::Start(format!("cannot run {}: {e}", exe.display())))?;
		let client = bitcoincore_rpc::Client::new(
			&format!("http://127.0.0.1:{rpc_port}"),
			bitcoincore_rpc::Auth::UserPass(RPC_USER.into(), RPC_PASSWORD.into()),
		)
		.map_err(|e| BitcoindError::Start(e.to_string()))?;
		let deadline = Instant::now() + Duration::from_secs(60);
		loop {
			if let Ok(Some(status)) = child.try_wait() {
				let mut stderr = String::new();
				if let Some(mut pipe) = child.stderr.take() {
					let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
				}
				return Err(BitcoindError::Start(format!(
					"bitcoind exited with {status}: {stderr}"
				)));
			}
			if client.call::<serde_json::Value>("getblockchaininfo", &[]).is_ok() {
				break;
			}
			if Instant::now() > deadline {
				let _ = child.kill();
				return Err(BitcoindError::Start("RPC not ready after 60 s".into()));
			}
			std::thread::sleep(Duration::from_millis(50));
		}
		let secp = Secp256k1::new();
		let key = SecretKey::new(&mut rand::thread_rng()).public_key(&secp);
		let burn_address = Address::p2wpkh(&CompressedPublicKey(key), Network::Regtest);
		Ok(Self { child, datadir, rpc_port, client, burn_address })
	}

	/// How nodes reach this bitcoind.
	pub fn rpc_config(&self) -> BitcoindRpcConfig {
		BitcoindRpcConfig {
			host: "127.0.0.1".into(),
			port: self.rpc_port,
			auth: RpcAuth::UserPass { user: RPC_USER.into(), password: RPC_PASSWORD.into() },
		}
	}

	/// The data directory.
	pub fn datadir(&self) -> &Path {
		self.datadir.path()
	}

	/// The current height.
	pub fn height(&self) -> Result<u32, BitcoindError> {
		self.client
			.call("getblockcount", &[])
			.map_err(|e| BitcoindError::Rpc { method: "getblockcount", reason: e.to_string() })
	}

	/// Mines `count` blocks paying to `address` (to nobody's wallet if `None`).
	pub fn mine(
		&self, count: u32, address: Option<&Address>,
	) -> Result<Vec<BlockHash>, BitcoindError> {
		let address = address.unwrap_or(&self.burn_address).to_string();
		self.client
			.call("generatetoaddress", &[count.into(), address.into()])
			.map_err(|e| BitcoindError::Rpc { method: "generatetoaddress", reason: e.to_string() })
	}

	/// The fee of a mempool transaction, in satoshis.
	pub fn mempool_fee_sat(&self, txid: &bitcoin::Txid) -> Result<u64, BitcoindError> {
		let err = |reason: String| BitcoindError::Rpc { method: "getmempoolentry", reason };
		let entry: serde_json::Value = self
			.client
			.call("getmempoolentry", &[txid.to_string().into()])
			.map_err(|e| err(e.to_string()))?;
		let btc =
			entry["fees"]["base"].as_f64().ok_or_else(|| err(format!("no fee in {entry}")))?;
		Amount::from_btc(btc).map(|a| a.to_sat()).map_err(|e| err(e.to_string()))
	}

	/// The position of `txid` in the block at `height`, if it is there.
	pub fn tx_index_in_block(
		&self, height: u32, txid: &bitcoin::Txid,
	) -> Result<Option<usize>, BitcoindError> {
		let hash: String = self
			.client
			.call("getblockhash", &[height.into()])
			.map_err(|e| BitcoindError::Rpc { method: "getblockhash", reason: e.to_string() })?;
		let block: serde_json::Value = self
			.client
			.call("getblock", &[hash.into(), 1.into()])
			.map_err(|e| BitcoindError::Rpc { method: "getblock", reason: e.to_string() })?;
		let txid = txid.to_string();
		Ok(block["tx"]
			.as_array()
			.and_then(|txs| txs.iter().position(|t| t.as_str() == Some(&txid))))
	}

	/// Whether `txid` waits in the mempool.
	pub fn in_mempool(&self, txid: &bitcoin::Txid) -> Result<bool, BitcoindError> {
		let txids: Vec<String> = self
			.client
			.call("getrawmempool", &[])
			.map_err(|e| BitcoindError::Rpc { method: "getrawmempool", reason: e.to_string() })?;
		Ok(txids.contains(&txid.to_string()))
	}

	/// Transactions waiting in the mempool.
	pub fn mempool_len(&self) -> Result<usize, BitcoindError> {
		let txids: Vec<String> = self
			.client
			.call("getrawmempool", &[])
			.map_err(|e| BitcoindError::Rpc { method: "getrawmempool", reason: e.to_string() })?;
		Ok(txids.len())
	}

	/// Waits until the mempool holds at least `count` transactions.
	pub fn wait_for_mempool(&self, count: usize, timeout: Duration) -> Result<(), BitcoindError> {
		let deadline = Instant::now() + timeout;
		while self.mempool_len()? < count {
			if Instant::now() > deadline {
				return Err(BitcoindError::Rpc {
					method: "getrawmempool",
					reason: format!("fewer than {count} transactions after {timeout:?}"),
				});
			}
			std::thread::sleep(Duration::from_millis(20));
		}
		Ok(())
	}
}

impl Drop for Bitcoind {
	fn drop(&mut self) {
		let _ = self.client.call::<serde_json::Value>("stop", &[]);
		let deadline = Instant::now() + Duration::from_secs(10);
		while Instant::now() < deadline {
			if let Ok(Some(_)) = self.child.try_wait() {
				return;
			}
			std::thread::sleep(Duration::from_millis(50));
		}
		let _ = self.child.kill();
		let _ = self.child.wait();
	}
}
