//! A minimal LDK node composed by hand from LDK's own parts (no
//! `ldk_trampoline::node::Node`), with the trampoline plugin enabled
//! through [`Plugin::builder`]: the wiring an existing LDK node adds is
//! marked `// plugin:` below.
//!
//! It follows bitcoind over RPC, keeps its state in a `FilesystemStore`,
//! accepts peers on `listen`, accepts inbound channels and relays
//! trampoline payments over them. It has no on-chain wallet (it opens no
//! channel: its peers open to it, pushing it the liquidity it relays with;
//! what closed channels pay it is swept to its keys' destination script).
//!
//! Regtest only, and a first start only: it refuses a data directory that
//! holds a seed already, because reading back a `ChannelManager` and its
//! monitors (LDK's usual code) is left out; its seed is written (0600) so
//! that what it holds is not lost with the process. Its fee rates are
//! fixed, which suits regtest only; and it writes monitors and the manager
//! in LDK's default order (the reference node's `node/persist.rs` guards
//! against rust-lightning issue 4286 on top).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::PublicKey;
use bitcoin::Network;
use ldk_trampoline::plugin::Plugin;
use ldk_trampoline::relay::TrampolinePolicy;
use ldk_trampoline::sender::TrampolineRouter;
use lightning::chain::chaininterface::{
	BroadcasterInterface, ConfirmationTarget, FeeEstimator as LdkFeeEstimator,
};
use lightning::chain::{chainmonitor, BestBlock, Filter};
use lightning::events::{Event, ReplayEvent};
use lightning::ln::channelmanager::{ChainParameters, ChannelManager as LdkChannelManager};
use lightning::ln::peer_handler::{
	IgnoringMessageHandler, MessageHandler, PeerManager as LdkPeerManager,
};
use lightning::onion_message::messenger::{
	DefaultMessageRouter, OnionMessenger as LdkOnionMessenger,
};
use lightning::routing::gossip::{NetworkGraph as LdkNetworkGraph, P2PGossipSync};
use lightning::routing::router::DefaultRouter;
use lightning::routing::scoring::{
	ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::routing::utxo::UtxoLookup;
use lightning::sign::{
	ChangeDestinationSourceSync, EntropySource, InMemorySigner, KeysManager, NodeSigner,
	SignerProvider,
};
use lightning::util::config::UserConfig;
use lightning::util::logger::{Logger, Record};
use lightning::util::persist::KVStoreSync;
use lightning::util::sweep::OutputSweeperSync;
use lightning_background_processor::{BackgroundProcessor, GossipSync};
use lightning_block_sync::http::HttpEndpoint;
use lightning_block_sync::init::validate_best_block_header;
use lightning_block_sync::poll::ChainPoller;
use lightning_block_sync::rpc::RpcClient;
use lightning_block_sync::{SpvClient, UnboundedCache};
use lightning_net_tokio::SocketDescriptor;
use lightning_persister::fs_store::FilesystemStore;
use tokio::sync::watch;

/// What the node needs to start.
pub struct RelayNodeConfig {
	/// Where its state goes (created if missing; must be fresh).
	pub data_dir: PathBuf,
	/// bitcoind's RPC address, user and password (regtest).
	pub bitcoind: (SocketAddr, String, String),
	/// Where it accepts peers (port 0: any free port).
	pub listen: SocketAddr,
	/// The relay's fee and CLTV delta.
	pub trampoline: TrampolinePolicy,
}

/// Prints LDK's log lines at info and above to stderr.
pub struct StderrLogger;

impl Logger for StderrLogger {
	fn log(&self, record: Record) {
		if record.level >= lightning::util::logger::Level::Info {
			eprintln!("{} {}: {}", record.level, record.module_path, record.args);
		}
	}
}

/// Regtest fee rates (ldk-node's fallbacks: bitcoind has no estimates).
pub struct FixedFees;

impl LdkFeeEstimator for FixedFees {
	fn get_est_sat_per_1000_weight(&self, target: ConfirmationTarget) -> u32 {
		match target {
			ConfirmationTarget::MaximumFeeEstimate => 8000,
			ConfirmationTarget::UrgentOnChainSweep => 5000,
			ConfirmationTarget::MinAllowedAnchorChannelRemoteFee
			| ConfirmationTarget::MinAllowedNonAnchorChannelRemoteFee => 253,
			_ => 1000,
		}
	}
}

/// Sweeps what closed channels pay us to the keys manager's destination
/// script (derived from the seed).
pub struct SweepToDestinationScript(Arc<KeysManager>);

impl ChangeDestinationSourceSync for SweepToDestinationScript {
	fn get_change_destination_script(&self) -> Result<bitcoin::ScriptBuf, ()> {
		self.0.get_destination_script([0; 32])
	}
}

/// Broadcasts through bitcoind's `sendrawtransaction`.
pub struct Bitcoind {
	rpc: Arc<RpcClient>,
	runtime: tokio::runtime::Handle,
}

impl BroadcasterInterface for Bitcoind {
	fn broadcast_transactions(&self, txs: &[&bitcoin::Transaction]) {
		// Several transactions are a package (LDK: broadcast together).
		let hex: Vec<serde_json::Value> = txs
			.iter()
			.map(|tx| serde_json::Value::String(bitcoin::consensus::encode::serialize_hex(tx)))
			.collect();
		let rpc = Arc::clone(&self.rpc);
		self.runtime.spawn(async move {
			let sent: Result<serde_json::Value, _> = match &hex[..] {
				[one] => rpc.call_method("sendrawtransaction", std::slice::from_ref(one)).await,
				_ => rpc.call_method("submitpackage", &[serde_json::Value::Array(hex)]).await,
			};
			if let Err(e) = sent {
				eprintln!("cannot broadcast: {e}");
			}
		});
	}
}

type ChainMonitor = chainmonitor::ChainMonitor<
	InMemorySigner,
	Arc<dyn Filter + Send + Sync>,
	Arc<Bitcoind>,
	Arc<FixedFees>,
	Arc<StderrLogger>,
	Arc<FilesystemStore>,
	Arc<KeysManager>,
>;
type NetworkGraph = LdkNetworkGraph<Arc<StderrLogger>>;
type Scorer = ProbabilisticScorer<Arc<NetworkGraph>, Arc<StderrLogger>>;
type Router = DefaultRouter<
	Arc<NetworkGraph>,
	Arc<StderrLogger>,
	Arc<KeysManager>,
	Arc<Mutex<Scorer>>,
	ProbabilisticScoringFeeParameters,
	Scorer,
>;
type MessageRouter = DefaultMessageRouter<Arc<NetworkGraph>, Arc<StderrLogger>, Arc<KeysManager>>;
type ChannelManager = LdkChannelManager<
	Arc<ChainMonitor>,
	Arc<Bitcoind>,
	Arc<KeysManager>,
	Arc<KeysManager>,
	Arc<KeysManager>,
	Arc<FixedFees>,
	Arc<TrampolineRouter<Arc<Router>>>,
	Arc<MessageRouter>,
	Arc<StderrLogger>,
>;
type TrampolinePlugin = Plugin<Arc<ChannelManager>>;
type Sweeper = OutputSweeperSync<
	Arc<Bitcoind>,
	Arc<SweepToDestinationScript>,
	Arc<FixedFees>,
	Arc<dyn Filter + Send + Sync>,
	Arc<FilesystemStore>,
	Arc<StderrLogger>,
	Arc<KeysManager>,
>;
type OnionMessenger = LdkOnionMessenger<
	Arc<KeysManager>,
	Arc<KeysManager>,
	Arc<StderrLogger>,
	Arc<ChannelManager>,
	Arc<MessageRouter>,
	Arc<ChannelManager>,
	Arc<ldk_trampoline::htlc_hold::HoldReleaseHandler<Arc<ChannelManager>>>,
	IgnoringMessageHandler,
	IgnoringMessageHandler,
>;
type Gossip =
	P2PGossipSync<Arc<NetworkGraph>, Arc<dyn UtxoLookup + Send + Sync>, Arc<StderrLogger>>;
type PeerManager = LdkPeerManager<
	SocketDescriptor,
	Arc<ldk_trampoline::handler::TrampolineHandler<Arc<ChannelManager>>>,
	Arc<Gossip>,
	Arc<OnionMessenger>,
	Arc<StderrLogger>,
	IgnoringMessageHandler,
	Arc<KeysManager>,
	Arc<ChainMonitor>,
>;

/// A running node.
pub struct RelayNode {
	channel_manager: Arc<ChannelManager>,
	chain_monitor: Arc<ChainMonitor>,
	plugin: Arc<TrampolinePlugin>,
	listen_addr: SocketAddr,
	background: Option<BackgroundProcessor>,
	stop: watch::Sender<bool>,
	tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RelayNode {
	/// Its node id.
	pub fn node_id(&self) -> PublicKey {
		self.channel_manager.get_our_node_id()
	}

	/// Where it accepts peers.
	pub fn listen_addr(&self) -> SocketAddr {
		self.listen_addr
	}

	/// Its channels, as LDK lists them.
	pub fn list_channels(&self) -> Vec<lightning::ln::channel_state::ChannelDetails> {
		self.channel_manager.list_channels()
	}

	/// What its channels would pay it on chain now, in satoshis (on-chain
	/// fees not counted), as LDK's monitors see it.
	pub fn lightning_balance_sat(&self) -> u64 {
		let balances = self.chain_monitor.get_claimable_balances(&[]);
		balances.iter().map(|balance| balance.claimable_amount_satoshis()).sum()
	}

	/// The trampoline payments it relayed (outgoing paid, incoming claimed)
	/// and failed back, as its relay counts them.
	pub fn relayed(&self) -> (usize, usize) {
		let stats = self.plugin.relay().map(|relay| relay.core().stats()).unwrap_or_default();
		(stats.relayed, stats.failed)
	}

	/// Stops its tasks and the background processor (which persists the
	/// `ChannelManager` one last time).
	pub async fn stop(mut self) -> Result<(), Box<dyn Error>> {
		let _ = self.stop.send(true);
		for task in self.tasks.drain(..) {
			task.abort();
		}
		if let Some(background) = self.background.take() {
			tokio::task::spawn_blocking(move || background.stop()).await??;
		}
		Ok(())
	}
}

/// Starts the node.
pub async fn start(config: RelayNodeConfig) -> Result<RelayNode, Box<dyn Error>> {
	std::fs::create_dir_all(&config.data_dir)?;
	let seed_path = config.data_dir.join("seed");
	if seed_path.exists() {
		return Err(format!(
			"{} exists: this example starts on a fresh data directory only",
			seed_path.display()
		)
		.into());
	}
	let mut seed = [0u8; 32];
	std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
	{
		use std::io::Write;
		use std::os::unix::fs::OpenOptionsExt;
		let mut file = std::fs::OpenOptions::new()
			.write(true)
			.create_new(true)
			.mode(0o600)
			.open(&seed_path)?;
		file.write_all(&seed)?;
		file.sync_all()?;
	}
	let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
	let keys = Arc::new(KeysManager::new(&seed, now.as_secs(), now.subsec_nanos(), true));
	let logger = Arc::new(StderrLogger);
	let store = Arc::new(FilesystemStore::new(config.data_dir.clone()));
	let fees = Arc::new(FixedFees);
	let (address, user, password) = &config.bitcoind;
	let credentials = base64::Engine::encode(
		&base64::engine::general_purpose::STANDARD,
		format!("{user}:{password}"),
	);
	let endpoint = HttpEndpoint::for_host(address.ip().to_string()).with_port(address.port());
	let rpc = Arc::new(RpcClient::new(&credentials, endpoint));
	let bitcoind =
		Arc::new(Bitcoind { rpc: Arc::clone(&rpc), runtime: tokio::runtime::Handle::current() });
	let chain_monitor: Arc<ChainMonitor> = Arc::new(chainmonitor::ChainMonitor::new(
		None,
		Arc::clone(&bitcoind),
		Arc::clone(&logger),
		Arc::clone(&fees),
		Arc::clone(&store),
		Arc::clone(&keys),
		keys.get_peer_storage_key(),
	));
	let graph = Arc::new(NetworkGraph::new(Network::Regtest, Arc::clone(&logger)));
	let scorer = Arc::new(Mutex::new(ProbabilisticScorer::new(
		ProbabilisticScoringDecayParameters::default(),
		Arc::clone(&graph),
		Arc::clone(&logger),
	)));
	// plugin: the router wrapped, before the ChannelManager takes it.
	let router = Arc::new(TrampolineRouter::new(
		Arc::new(DefaultRouter::new(
			Arc::clone(&graph),
			Arc::clone(&logger),
			Arc::clone(&keys),
			Arc::clone(&scorer),
			ProbabilisticScoringFeeParameters::default(),
		)),
		Arc::default(),
	));
	let message_router = Arc::new(DefaultMessageRouter::new(Arc::clone(&graph), Arc::clone(&keys)));
	let tip = validate_best_block_header(&*rpc).await.map_err(|e| format!("{e:?}"))?;
	let best_block = BestBlock::new(tip.to_best_block().block_hash, tip.height);
	let channel_manager = Arc::new(ChannelManager::new(
		Arc::clone(&fees),
		Arc::clone(&chain_monitor),
		Arc::clone(&bitcoind),
		Arc::clone(&router),
		Arc::clone(&message_router),
		Arc::clone(&logger),
		Arc::clone(&keys),
		Arc::clone(&keys),
		Arc::clone(&keys),
		UserConfig::default(),
		ChainParameters { network: Network::Regtest, best_block },
		now.as_secs() as u32,
	));

	// plugin: one builder, everything the node plugs in comes from it.
	let plugin = Arc::new(
		Plugin::builder(
			Arc::clone(&channel_manager),
			&router,
			Arc::clone(&keys) as Arc<dyn NodeSigner + Send + Sync>,
			Arc::clone(&store) as Arc<dyn KVStoreSync + Send + Sync>,
			Arc::clone(&logger) as Arc<dyn Logger + Send + Sync>,
		)
		.trampoline(config.trampoline)
		.build()?,
	);

	let gossip: Arc<Gossip> =
		Arc::new(P2PGossipSync::new(Arc::clone(&graph), None, Arc::clone(&logger)));
	let messenger: Arc<OnionMessenger> = Arc::new(LdkOnionMessenger::new(
		Arc::clone(&keys),
		Arc::clone(&keys),
		Arc::clone(&logger),
		Arc::clone(&channel_manager),
		Arc::clone(&message_router),
		Arc::clone(&channel_manager),
		plugin.async_payments_handler(), // plugin
		IgnoringMessageHandler {},
		IgnoringMessageHandler {},
	));
	let peer_manager: Arc<PeerManager> = Arc::new(LdkPeerManager::new(
		MessageHandler {
			chan_handler: plugin.message_handler(), // plugin
			route_handler: Arc::clone(&gossip),
			onion_message_handler: Arc::clone(&messenger),
			custom_message_handler: IgnoringMessageHandler {},
			send_only_message_handler: Arc::clone(&chain_monitor),
		},
		now.as_secs() as u32,
		&keys.get_secure_random_bytes(),
		Arc::clone(&logger),
		Arc::clone(&keys),
	));

	let sweeper: Arc<Sweeper> = Arc::new(OutputSweeperSync::new(
		best_block,
		Arc::clone(&bitcoind),
		Arc::clone(&fees),
		None,
		Arc::clone(&keys),
		Arc::new(SweepToDestinationScript(Arc::clone(&keys))),
		Arc::clone(&store),
		Arc::clone(&logger),
	));
	// The node's own event handling: a relay that opens no channel and
	// receives nothing itself sweeps what closed channels pay it, and fails
	// back payments to it (a keysend, say) at once rather than holding them.
	let own_events = {
		let (sweeper, cm) = (Arc::clone(&sweeper), Arc::clone(&channel_manager));
		move |event: Event| -> Result<(), ReplayEvent> {
			match event {
				Event::SpendableOutputs { outputs, channel_id } => sweeper
					.track_spendable_outputs(outputs, channel_id, false, None)
					.map_err(|()| ReplayEvent())?,
				Event::PaymentClaimable { payment_hash, .. } => {
					cm.fail_htlc_backwards(&payment_hash)
				},
				_ => {},
			}
			Ok(())
		}
	};
	let background = BackgroundProcessor::start(
		Arc::clone(&store),
		plugin.event_handler(Arc::clone(&messenger), own_events), // plugin
		Arc::clone(&chain_monitor),
		Arc::clone(&channel_manager),
		Some(Arc::clone(&messenger)),
		GossipSync::p2p(Arc::clone(&gossip)),
		Arc::clone(&peer_manager),
		lightning_background_processor::NO_LIQUIDITY_MANAGER_SYNC,
		Some(Arc::clone(&sweeper)),
		Arc::clone(&logger),
		Some(Arc::clone(&scorer)),
	);

	let (stop, stop_rx) = watch::channel(false);
	let listener = tokio::net::TcpListener::bind(config.listen).await?;
	let listen_addr = listener.local_addr()?;
	let accept = {
		let peer_manager = Arc::clone(&peer_manager);
		tokio::spawn(async move {
			while let Ok((stream, _)) = listener.accept().await {
				if let Ok(stream) = stream.into_std() {
					tokio::spawn(lightning_net_tokio::setup_inbound(
						Arc::clone(&peer_manager),
						stream,
					));
				}
			}
		})
	};
	let follow = {
		// plugin: its chain listener goes ahead of the ChannelManager.
		let ldk = (Arc::clone(&channel_manager), Arc::new((Arc::clone(&chain_monitor), sweeper)));
		let listener = (plugin.chain_listener(), Arc::new(ldk));
		tokio::spawn(async move {
			let mut cache = UnboundedCache::new();
			let poller = ChainPoller::new(rpc, Network::Regtest);
			let mut client = SpvClient::new(tip, poller, &mut cache, &listener);
			loop {
				let _ = client.poll_best_tip().await;
				tokio::time::sleep(Duration::from_millis(200)).await;
			}
		})
	};
	// plugin: its one background task.
	let run = tokio::spawn(Arc::clone(&plugin).run(stop_rx));
	Ok(RelayNode {
		channel_manager,
		chain_monitor,
		plugin,
		listen_addr,
		background: Some(background),
		stop,
		tasks: vec![accept, follow, run],
	})
}
