//! A regtest network for tests and the demo: one real bitcoind and any number of
//! [`Node`]s, each with its own data directory and loopback port.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use ldk_trampoline::regtest::RegtestNetwork;
//! let mut net = RegtestNetwork::start()?;
//! let alice = net.add_node("alice").await?;
//! let bob = net.add_node("bob").await?;
//! net.fund(&[&alice, &bob], 1).await?;
//! net.open_channel(&alice, &bob, 1_000_000, 0).await?;
//! # Ok(()) }
//! ```

mod bitcoind;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::{Address, Network};
use lightning::ln::types::ChannelId;
use lightning::util::logger::Level;

pub use bitcoind::{provision, run_provisioning_script, Bitcoind, BitcoindError};

use crate::node::{Node, NodeConfig, NodeError, NodeEvent};

/// How long harness operations wait before giving up.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Errors of the regtest harness.
#[derive(Debug, thiserror::Error)]
pub enum RegtestError {
	/// bitcoind.
	#[error(transparent)]
	Bitcoind(#[from] BitcoindError),
	/// A node.
	#[error(transparent)]
	Node(#[from] NodeError),
	/// The harness' own files.
	#[error("regtest harness: {0}")]
	Io(String),
}

/// How long [`RegtestNetwork::wait_for_gossip`] waits before mining a block
/// to have the channels announced again.
pub const GOSSIP_NUDGE_INTERVAL: Duration = Duration::from_secs(3);

/// Set this environment variable to keep the nodes' data directories (and
/// their logs) after a run.
pub const KEEP_NODES_ENV: &str = "LDK_TRAMPOLINE_KEEP_NODES";

/// A node stopped by [`RegtestNetwork::stop`]: its data directory and port.
#[derive(Debug)]
pub struct StoppedNode {
	config: NodeConfig,
}

/// bitcoind plus the nodes started against it; everything stops on drop.
pub struct RegtestNetwork {
	bitcoind: Bitcoind,
	dir: tempfile::TempDir,
	nodes: Vec<Arc<Node>>,
}

impl RegtestNetwork {
	/// Starts bitcoind (provisioning it if needed) and mines the first block.
	pub fn start() -> Result<Self, RegtestError> {
		Self::start_with_bitcoind_args(&[])
	}

	/// [`Self::start`], bitcoind started with extra command-line arguments.
	pub fn start_with_bitcoind_args(args: &[&str]) -> Result<Self, RegtestError> {
		let bitcoind = Bitcoind::start_with_args(args)?;
		bitcoind.mine(1, None)?;
		let mut dir = tempfile::Builder::new()
			.prefix("ldk-trampoline-nodes-")
			.tempdir()
			.map_err(|e| RegtestError::Io(e.to_string()))?;
		if std::env::var_os(KEEP_NODES_ENV).is_some() {
			dir.disable_cleanup(true);
			eprintln!("regtest node directories (kept): {}", dir.path().display());
		}
		Ok(Self { bitcoind, dir, nodes: Vec::new() })
	}

	/// The bitcoind.
	pub fn bitcoind(&self) -> &Bitcoind {
		&self.bitcoind
	}

	/// Where the harness keeps node data directories.
	pub fn dir(&self) -> &Path {
		self.dir.path()
	}

	/// The configuration the harness gives a node called `name`.
	pub fn node_config(&self, name: &str) -> NodeConfig {
		let mut config =
			NodeConfig::new(Network::Regtest, self.node_dir(name), self.bitcoind.rpc_config());
		config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
		config.alias = name.to_string();
		config.chain_poll_interval = Duration::from_millis(100);
		config.reconnect_interval = Duration::from_millis(500);
		config.log_level = Level::Trace;
		// Every harness node runs the plugin, so every test also checks that the
		// wrapper leaves ordinary traffic alone.
		config.trampoline = Some(crate::relay::TrampolinePolicy::default());
		config
	}

	/// The data directory of the node called `name`.
	pub fn node_dir(&self, name: &str) -> PathBuf {
		self.dir.path().join(name)
	}

	/// Starts a node with the harness' configuration.
	pub async fn add_node(&mut self, name: &str) -> Result<Arc<Node>, RegtestError> {
		self.add_node_with(self.node_config(name)).await
	}

	/// Starts a node with a configuration of the caller's (see [`Self::node_config`]).
	pub async fn add_node_with(&mut self, config: NodeConfig) -> Result<Arc<Node>, RegtestError> {
		let node = Node::start(config).await?;
		self.nodes.push(Arc::clone(&node));
		Ok(node)
	}

	/// Stops `node` and starts it again from its data directory on the same port.
	pub async fn restart(&mut self, node: &Arc<Node>) -> Result<Arc<Node>, RegtestError> {
		let stopped = self.stop(node).await?;
		self.start_again(stopped).await
	}

	/// Stops `node`; [`RegtestNetwork::start_again`] brings it back.
	pub async fn stop(&mut self, node: &Arc<Node>) -> Result<StoppedNode, RegtestError> {
		let mut config = node.config().clone();
		config.listen_addr = node.listen_addr();
		node.stop().await?;
		self.nodes.retain(|n| !Arc::ptr_eq(n, node));
		Ok(StoppedNode { config })
	}

	/// Starts a stopped node again from its data directory on the same port.
	pub async fn start_again(&mut self, stopped: StoppedNode) -> Result<Arc<Node>, RegtestError> {
		// The node's tasks hold it until they notice the stop; the data directory
		// lock is released when the last reference goes.
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			match Node::start(stopped.config.clone()).await {
				Ok(restarted) => {
					self.nodes.push(Arc::clone(&restarted));
					return Ok(restarted);
				},
				Err(NodeError::DataDir { .. } | NodeError::Config(_))
					if tokio::time::Instant::now() < deadline =>
				{
					tokio::time::sleep(Duration::from_millis(50)).await
				},
				Err(e) => return Err(e.into()),
			}
		}
	}

	/// Waits until `node` has learned `count` channels from gossip, each
	/// with both directions' updates, mining a block every
	/// [`GOSSIP_NUDGE_INTERVAL`] meanwhile: LDK announces a public channel
	/// again with each new block, which cures an update lost on the way.
	pub async fn wait_for_gossip(&self, node: &Node, count: usize) -> Result<(), RegtestError> {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			match node.wait_for_channels_in_graph(count, GOSSIP_NUDGE_INTERVAL).await {
				Ok(()) => return Ok(()),
				Err(NodeError::Timeout(..)) if tokio::time::Instant::now() < deadline => {
					self.mine(1).await?;
				},
				Err(e) => return Err(e.into()),
			}
		}
	}

	/// Gives every node `coinbases` mature coinbase outputs (50 BTC each at low
	/// heights) and waits until their wallets see them.
	pub async fn fund(&self, nodes: &[&Arc<Node>], coinbases: u32) -> Result<(), RegtestError> {
		let mut addresses = Vec::new();
		for node in nodes {
			addresses.push(node.new_address()?);
		}
		self.fund_addresses(&addresses, coinbases)?;
		self.sync_all().await
	}

	/// Mines `coinbases` blocks to each address, then 100 more so they mature.
	pub fn fund_addresses(
		&self, addresses: &[Address], coinbases: u32,
	) -> Result<(), RegtestError> {
		for address in addresses {
			self.bitcoind.mine(coinbases, Some(address))?;
		}
		self.bitcoind.mine(100, None)?;
		Ok(())
	}

	/// Mines `count` blocks and waits until every node has seen them.
	pub async fn mine(&self, count: u32) -> Result<(), RegtestError> {
		self.bitcoind.mine(count, None)?;
		self.sync_all().await
	}

	/// Waits until every node has seen bitcoind's tip.
	pub async fn sync_all(&self) -> Result<(), RegtestError> {
		let height = self.bitcoind.height()?;
		for node in &self.nodes {
			node.wait_for_height(height, DEADLINE).await?;
		}
		Ok(())
	}

	/// Opens an announced channel from `from` to `to`, confirms it with six
	/// blocks and waits until both sides can use it.
	pub async fn open_channel(
		&self, from: &Arc<Node>, to: &Arc<Node>, amount_sat: u64, push_msat: u64,
	) -> Result<ChannelId, RegtestError> {
		self.open_channel_to(from, to.node_id(), to.listen_addr(), amount_sat, push_msat, true)
			.await
			.map(|(id, _)| id)
	}

	/// Opens a channel to any peer (a third-party node too), confirms it and waits
	/// until `from` sees it ready. Returns the channel id and its funding block height.
	pub async fn open_channel_to(
		&self, from: &Arc<Node>, to: bitcoin::secp256k1::PublicKey, addr: SocketAddr,
		amount_sat: u64, push_msat: u64, announce: bool,
	) -> Result<(ChannelId, u32), RegtestError> {
		let events = from.subscribe();
		let channel_id = from.open_channel(to, addr, amount_sat, push_msat, announce).await?;
		self.bitcoind.wait_for_mempool(1, DEADLINE)?;
		self.mine(6).await?;
		from.wait_for_event(events, DEADLINE, "the channel to be ready", |e| match e {
			NodeEvent::ChannelReady { channel_id: id, .. } if *id == channel_id => Some(()),
			_ => None,
		})
		.await?;
		Ok((channel_id, self.bitcoind.height()?))
	}
}

impl Drop for RegtestNetwork {
	fn drop(&mut self) {
		// Nodes first (they talk to bitcoind), then bitcoind via its own Drop.
		self.nodes.clear();
	}
}
