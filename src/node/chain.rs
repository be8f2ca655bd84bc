//! bitcoind as the node's chain source: blocks through `lightning-block-sync`,
//! broadcasting and fee estimates over bitcoind's JSON-RPC.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use bitcoin::{FeeRate, Network, Transaction};
use bitcoincore_rpc::RpcApi;
use lightning::chain::chaininterface::{
	BroadcasterInterface, ConfirmationTarget, FeeEstimator as LdkFeeEstimator,
	FEERATE_FLOOR_SATS_PER_KW,
};
use lightning::util::logger::Logger;
use lightning::{log_debug, log_warn};
use lightning_block_sync::http::HttpEndpoint;
use lightning_block_sync::rpc::RpcClient;
use serde::{Deserialize, Serialize};

use super::closing::ClosingTxids;
use super::logger::NodeLogger;

/// How to reach bitcoind's JSON-RPC interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitcoindRpcConfig {
	/// Host name or IP address, usually `127.0.0.1`.
	pub host: String,
	/// RPC port (18443 by default on regtest).
	pub port: u16,
	/// Credentials.
	pub auth: RpcAuth,
}

/// bitcoind RPC credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcAuth {
	/// `rpcuser` / `rpcpassword`.
	UserPass {
		/// User name.
		user: String,
		/// Password.
		password: String,
	},
	/// The `.cookie` file bitcoind writes into its data directory.
	CookieFile(PathBuf),
}

/// Errors reaching or using bitcoind.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
	/// bitcoind did not answer, or refused the credentials.
	#[error("cannot reach bitcoind's RPC at {endpoint}: {reason} (is bitcoind running, and are --bitcoind-rpc and its credentials right?)")]
	Unreachable {
		/// `host:port`.
		endpoint: String,
		/// What failed.
		reason: String,
	},
	/// bitcoind runs another chain than the node was configured for.
	#[error("bitcoind runs the {actual} chain but the node is configured for {expected}")]
	WrongNetwork {
		/// The configured network.
		expected: Network,
		/// What bitcoind reports.
		actual: String,
	},
	/// The cookie file could not be read.
	#[error("cannot read bitcoind's cookie file {path}: {reason}")]
	Cookie {
		/// The cookie file.
		path: String,
		/// What failed.
		reason: String,
	},
	/// An RPC call failed.
	#[error("bitcoind RPC {method} failed: {reason}")]
	Rpc {
		/// The RPC method.
		method: &'static str,
		/// What failed.
		reason: String,
	},
}

impl BitcoindRpcConfig {
	/// `host:port`.
	pub fn endpoint(&self) -> String {
		format!("{}:{}", self.host, self.port)
	}

	fn user_pass(&self) -> Result<(String, String), ChainError> {
		match &self.auth {
			RpcAuth::UserPass { user, password } => Ok((user.clone(), password.clone())),
			RpcAuth::CookieFile(path) => {
				let cookie_err = |reason: String| ChainError::Cookie {
					path: path.display().to_string(),
					reason,
				};
				let text = std::fs::read_to_string(path).map_err(|e| cookie_err(e.to_string()))?;
				let (user, password) = text
					.trim()
					.split_once(':')
					.ok_or_else(|| cookie_err("expected `user:password`".into()))?;
				Ok((user.to_string(), password.to_string()))
			},
		}
	}
}

/// bitcoind over JSON-RPC: an async block source for `lightning-block-sync` and a
/// blocking client for broadcasting and fee estimates.
pub struct BitcoindClient {
	blocks: Arc<RpcClient>,
	admin: bitcoincore_rpc::Client,
	logger: Arc<NodeLogger>,
	/// Told of every transaction broadcast (closing transactions are named).
	closing: OnceLock<Arc<ClosingTxids>>,
}

impl BitcoindClient {
	/// Connects to bitcoind and checks that it runs `network`.
	pub fn connect(
		config: &BitcoindRpcConfig, network: Network, logger: Arc<NodeLogger>,
	) -> Result<Self, ChainError> {
		let (user, password) = config.user_pass()?;
		let url = format!("http://{}", config.endpoint());
		let unreachable =
			|reason: String| ChainError::Unreachable { endpoint: config.endpoint(), reason };
		let admin = bitcoincore_rpc::Client::new(
			&url,
			bitcoincore_rpc::Auth::UserPass(user.clone(), password.clone()),
		)
		.map_err(|e| unreachable(e.to_string()))?;
		let info: serde_json::Value =
			admin.call("getblockchaininfo", &[]).map_err(|e| unreachable(e.to_string()))?;
		let chain = info["chain"].as_str().unwrap_or_default().to_string();
		if chain_name(network) != chain {
			return Err(ChainError::WrongNetwork { expected: network, actual: chain });
		}
		let credentials =
			base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
		let endpoint = HttpEndpoint::for_host(config.host.clone()).with_port(config.port);
		let blocks = Arc::new(RpcClient::new(&credentials, endpoint));
		Ok(Self { blocks, admin, logger, closing: OnceLock::new() })
	}

	/// From now on, tells `closing` of every transaction broadcast.
	pub(super) fn observe_broadcasts(&self, closing: Arc<ClosingTxids>) {
		let _ = self.closing.set(closing);
	}

	/// The async block source.
	pub fn block_source(&self) -> Arc<RpcClient> {
		Arc::clone(&self.blocks)
	}

	/// The current block height.
	pub fn block_height(&self) -> Result<u64, ChainError> {
		self.admin
			.call("getblockcount", &[])
			.map_err(|e| ChainError::Rpc { method: "getblockcount", reason: e.to_string() })
	}

	/// Hands `tx` to bitcoind's mempool, answering bitcoind's reason when it
	/// refuses it (unlike [`BroadcasterInterface::broadcast_transactions`],
	/// which only logs it).
	pub fn send_raw_transaction(&self, tx: &Transaction) -> Result<bitcoin::Txid, String> {
		let hex = bitcoin::consensus::encode::serialize_hex(tx);
		match self.admin.call::<bitcoin::Txid>("sendrawtransaction", &[hex.into()]) {
			Ok(txid) => {
				log_debug!(self.logger, "Broadcast {txid}");
				Ok(txid)
			},
			Err(e) => {
				log_warn!(self.logger, "Broadcast of {} failed: {}", tx.compute_txid(), e);
				Err(e.to_string())
			},
		}
	}

	/// bitcoind's estimate for confirmation within `blocks`, if it has one.
	fn estimate_sat_per_kw(&self, blocks: u16) -> Option<u32> {
		let answer: serde_json::Value =
			self.admin.call("estimatesmartfee", &[blocks.into(), "ECONOMICAL".into()]).ok()?;
		let btc_per_kvb = answer["feerate"].as_f64()?;
		// BTC/kvB -> sat/kw: * 1e8 sat/BTC / 4 (weight units per vbyte).
		Some((btc_per_kvb * 100_000_000.0 / 4.0) as u32)
	}
}

impl BroadcasterInterface for BitcoindClient {
	fn broadcast_transactions(&self, txs: &[&Transaction]) {
		for tx in txs {
			if let Some(closing) = self.closing.get() {
				closing.observe(tx, false);
			}
			let hex = bitcoin::consensus::encode::serialize_hex(tx);
			match self.admin.call::<serde_json::Value>("sendrawtransaction", &[hex.into()]) {
				Ok(_) => log_debug!(self.logger, "Broadcast {}", tx.compute_txid()),
				// LDK rebroadcasts; "already in the chain or mempool" is expected.
				Err(e) => {
					log_warn!(self.logger, "Broadcast of {} failed: {}", tx.compute_txid(), e)
				},
			}
		}
	}
}

/// bitcoind's chain name for `network`.
pub fn chain_name(network: Network) -> &'static str {
	match network {
		Network::Bitcoin => "main",
		Network::Testnet => "test",
		Network::Testnet4 => "testnet4",
		Network::Signet => "signet",
		Network::Regtest => "regtest",
	}
}

const TARGETS: [ConfirmationTarget; 8] = [
	ConfirmationTarget::MaximumFeeEstimate,
	ConfirmationTarget::UrgentOnChainSweep,
	ConfirmationTarget::MinAllowedAnchorChannelRemoteFee,
	ConfirmationTarget::MinAllowedNonAnchorChannelRemoteFee,
	ConfirmationTarget::AnchorChannelFee,
	ConfirmationTarget::NonAnchorChannelFee,
	ConfirmationTarget::ChannelCloseMinimum,
	ConfirmationTarget::OutputSpendingFee,
];

/// Fee rates per LDK confirmation target, refreshed from bitcoind's
/// `estimatesmartfee` and falling back to fixed rates where bitcoind has no
/// estimate (always the case on a fresh regtest chain). The fallbacks are
/// ldk-node's, so both kinds of node agree on channel fee rates.
pub struct FeeEstimator {
	sat_per_kw: [AtomicU32; 8],
	funding_sat_per_kw: AtomicU32,
}

impl Default for FeeEstimator {
	fn default() -> Self {
		Self {
			sat_per_kw: TARGETS.map(|t| AtomicU32::new(fallback_sat_per_kw(t))),
			funding_sat_per_kw: AtomicU32::new(1000),
		}
	}
}

impl FeeEstimator {
	/// Refreshes the cached rates from bitcoind.
	pub fn refresh(&self, client: &BitcoindClient) {
		for (i, target) in TARGETS.iter().enumerate() {
			let blocks = match target {
				ConfirmationTarget::MaximumFeeEstimate | ConfirmationTarget::UrgentOnChainSweep => {
					1
				},
				ConfirmationTarget::MinAllowedAnchorChannelRemoteFee
				| ConfirmationTarget::MinAllowedNonAnchorChannelRemoteFee => 1008,
				ConfirmationTarget::ChannelCloseMinimum => 144,
				_ => 6,
			};
			let rate = client
				.estimate_sat_per_kw(blocks)
				.unwrap_or_else(|| fallback_sat_per_kw(*target))
				.max(FEERATE_FLOOR_SATS_PER_KW);
			self.sat_per_kw[i].store(rate, Ordering::Relaxed);
		}
		let funding = client.estimate_sat_per_kw(6).unwrap_or(1000).max(FEERATE_FLOOR_SATS_PER_KW);
		self.funding_sat_per_kw.store(funding, Ordering::Relaxed);
	}

	/// The fee rate for funding and other wallet transactions.
	pub fn funding_fee_rate(&self) -> FeeRate {
		FeeRate::from_sat_per_kwu(self.funding_sat_per_kw.load(Ordering::Relaxed) as u64)
	}
}

impl LdkFeeEstimator for FeeEstimator {
	fn get_est_sat_per_1000_weight(&self, target: ConfirmationTarget) -> u32 {
		let index = TARGETS.iter().position(|t| *t == target).unwrap_or(0);
		self.sat_per_kw[index].load(Ordering::Relaxed)
	}
}

fn fallback_sat_per_kw(target: ConfirmationTarget) -> u32 {
	match target {
		ConfirmationTarget::MaximumFeeEstimate => 8000,
		ConfirmationTarget::UrgentOnChainSweep => 5000,
		ConfirmationTarget::MinAllowedAnchorChannelRemoteFee
		| ConfirmationTarget::MinAllowedNonAnchorChannelRemoteFee => FEERATE_FLOOR_SATS_PER_KW,
		ConfirmationTarget::AnchorChannelFee => 500,
		ConfirmationTarget::NonAnchorChannelFee => 1000,
		ConfirmationTarget::ChannelCloseMinimum => 500,
		ConfirmationTarget::OutputSpendingFee => 1000,
	}
}
