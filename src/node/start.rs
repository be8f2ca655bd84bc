//! Composition: builds every LDK component from the data directory, syncs them
//! to bitcoind's tip and starts the background work.

use std::fs::{File, OpenOptions};
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::BlockHash;
use lightning::chain::{BestBlock, Filter, Listen, Watch};
use lightning::ln::channelmanager::{ChainParameters, ChannelManagerReadArgs};
use lightning::ln::peer_handler::{IgnoringMessageHandler, MessageHandler};
use lightning::onion_message::messenger::DefaultMessageRouter;
use lightning::routing::gossip::P2PGossipSync;
use lightning::routing::router::DefaultRouter;
use lightning::routing::scoring::{
	ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::routing::utxo::UtxoLookup;
use lightning::sign::{EntropySource, KeysManager, NodeSigner};
use lightning::util::config::UserConfig;
use lightning::util::persist::{
	read_channel_monitors, KVStoreSync, CHANNEL_MANAGER_PERSISTENCE_KEY,
	CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE, CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
	NETWORK_GRAPH_PERSISTENCE_KEY, NETWORK_GRAPH_PERSISTENCE_PRIMARY_NAMESPACE,
	NETWORK_GRAPH_PERSISTENCE_SECONDARY_NAMESPACE, OUTPUT_SWEEPER_PERSISTENCE_KEY,
	OUTPUT_SWEEPER_PERSISTENCE_PRIMARY_NAMESPACE, OUTPUT_SWEEPER_PERSISTENCE_SECONDARY_NAMESPACE,
	SCORER_PERSISTENCE_KEY, SCORER_PERSISTENCE_PRIMARY_NAMESPACE,
	SCORER_PERSISTENCE_SECONDARY_NAMESPACE,
};
use lightning::util::ser::ReadableArgs;
use lightning::util::sweep::OutputSweeperSync;
use lightning_background_processor::{BackgroundProcessor, GossipSync as BpGossipSync};
use lightning_block_sync::init::{synchronize_listeners, validate_best_block_header};
use lightning_block_sync::poll::ChainPoller;
use lightning_block_sync::{SpvClient, UnboundedCache};
use lightning_persister::fs_store::FilesystemStore;
use tokio::sync::{broadcast, watch};

use super::chain::{BitcoindClient, FeeEstimator};
use super::closing::ClosingTxids;
use super::events::EventHandler;
use super::forwards::ForwardStore;
use super::logger::NodeLogger;
use super::payments::PaymentStore;
use super::peers::PeerStore;
use super::persist::ManagerFirst;
use super::types::{
	ChainMonitor, ChannelManager, GossipSync, NetworkGraph, OnionMessenger, PaymentRouter,
	PeerManager, Scorer, Sweeper,
};
use super::wallet::OnchainWallet;
use super::{Node, NodeConfig, NodeError};
use crate::plugin::wake::{parse_webhook_url, webhook_client};
use crate::plugin::{Plugin, PluginError, PluginEvent};
use crate::sender::SenderState;

type ChannelMonitor =
	lightning::chain::channelmonitor::ChannelMonitor<lightning::sign::InMemorySigner>;

/// Feeds every block to each component that follows the chain.
struct ChainListener {
	/// Told each height before the ChannelManager: the router bounds the
	/// relay's retries by it (it must never be behind LDK's height).
	plugin: Arc<SenderState>,
	channel_manager: Arc<ChannelManager>,
	chain_monitor: Arc<ChainMonitor>,
	wallet: Arc<OnchainWallet>,
	sweeper: Arc<Sweeper>,
	closing: Arc<ClosingTxids>,
}

impl Listen for ChainListener {
	fn filtered_block_connected(
		&self, header: &bitcoin::block::Header,
		txdata: &lightning::chain::transaction::TransactionData, height: u32,
	) {
		self.plugin.filtered_block_connected(header, txdata, height);
		for (_, tx) in txdata {
			self.closing.observe(tx, true);
		}
		self.channel_manager.filtered_block_connected(header, txdata, height);
		self.chain_monitor.filtered_block_connected(header, txdata, height);
		self.sweeper.filtered_block_connected(header, txdata, height);
	}

	fn block_connected(&self, block: &bitcoin::Block, height: u32) {
		self.plugin.block_connected(block, height);
		for tx in &block.txdata {
			self.closing.observe(tx, true);
		}
		self.wallet.block_connected(block, height);
		self.channel_manager.block_connected(block, height);
		self.chain_monitor.block_connected(block, height);
		self.sweeper.block_connected(block, height);
	}

	fn blocks_disconnected(&self, fork_point: BestBlock) {
		self.wallet.blocks_disconnected(fork_point);
		self.channel_manager.blocks_disconnected(fork_point);
		self.chain_monitor.blocks_disconnected(fork_point);
		self.sweeper.blocks_disconnected(fork_point);
	}
}

fn data_dir_err(path: &Path, reason: impl ToString) -> NodeError {
	NodeError::DataDir { path: path.display().to_string(), reason: reason.to_string() }
}

fn stored_err(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> NodeError {
	move |e| NodeError::StoredState { what, reason: e.to_string() }
}

/// Owner-only permissions of the data directory.
#[cfg(unix)]
const PRIVATE_DIR_MODE: u32 = 0o700;
/// Owner-only permissions of a file holding keys.
#[cfg(unix)]
const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates the data directory (and any missing parent) readable by its owner
/// only, and takes its lock, so that two processes never run one node.
fn lock_data_dir(dir: &Path) -> Result<File, NodeError> {
	let mut builder = std::fs::DirBuilder::new();
	builder.recursive(true);
	#[cfg(unix)]
	std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR_MODE);
	builder.create(dir).map_err(|e| data_dir_err(dir, e))?;
	let lock_path = dir.join("lock");
	let lock = OpenOptions::new()
		.create(true)
		.truncate(false)
		.write(true)
		.open(&lock_path)
		.map_err(|e| data_dir_err(dir, e))?;
	lock.try_lock().map_err(|_| data_dir_err(dir, "another process is running a node on it"))?;
	Ok(lock)
}

/// Writes `contents` to `dir/name` through `name.tmp`, both created readable
/// and writable by the owner only (never widened by a later chmod), synced
/// before the rename.
fn write_private_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), NodeError> {
	let path = dir.join(name);
	let tmp = dir.join(format!("{name}.tmp"));
	// A leftover from an interrupted start may have other permissions.
	match std::fs::remove_file(&tmp) {
		Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(data_dir_err(dir, e)),
		_ => {},
	}
	let mut options = OpenOptions::new();
	options.write(true).create_new(true);
	#[cfg(unix)]
	std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE_MODE);
	let mut file = options.open(&tmp).map_err(|e| data_dir_err(dir, e))?;
	std::io::Write::write_all(&mut file, contents).map_err(|e| data_dir_err(dir, e))?;
	file.sync_all().map_err(|e| data_dir_err(dir, e))?;
	std::fs::rename(&tmp, &path).map_err(|e| data_dir_err(dir, e))
}

/// Refuses a key file that other local users can read (as ssh does with
/// private keys).
#[cfg(unix)]
fn check_private(file: &File, path: &Path) -> Result<(), NodeError> {
	use std::os::unix::fs::PermissionsExt;
	let mode = file.metadata().map_err(|e| data_dir_err(path, e))?.permissions().mode() & 0o777;
	if mode & 0o077 != 0 {
		return Err(NodeError::SecretExposed { path: path.display().to_string(), mode });
	}
	Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &File, _path: &Path) -> Result<(), NodeError> {
	Ok(())
}

/// Reads the node's 32-byte seed, creating it on first start; refuses one
/// that other users can read.
fn read_or_create_seed(dir: &Path) -> Result<[u8; 32], NodeError> {
	let path = dir.join("seed");
	match File::open(&path) {
		Ok(mut file) => {
			check_private(&file, &path)?;
			let mut bytes = Vec::with_capacity(32);
			std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 33), &mut bytes)
				.map_err(|e| data_dir_err(dir, format!("cannot read {}: {e}", path.display())))?;
			bytes
				.try_into()
				.map_err(|_| data_dir_err(dir, format!("{} is not a 32-byte seed", path.display())))
		},
		Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
			let seed: [u8; 32] = rand::random();
			write_private_file(dir, "seed", &seed)?;
			Ok(seed)
		},
		Err(e) => Err(data_dir_err(dir, format!("cannot read {}: {e}", path.display()))),
	}
}

/// Locks the data directory, reads (or creates) the seed and creates the
/// wallet database if there is none: the part of a start that touches the
/// keys on disk, all of it readable by the owner only.
fn prepare_data_dir(dir: &Path) -> Result<(File, [u8; 32]), NodeError> {
	let lock = lock_data_dir(dir)?;
	let seed = read_or_create_seed(dir)?;
	// BDK would create it with the process umask (0644): created here empty
	// but for its magic bytes, BDK loads it as a new wallet.
	if !dir.join(WALLET_DB).exists() {
		write_private_file(dir, WALLET_DB, super::wallet::STORE_MAGIC)?;
	}
	Ok((lock, seed))
}

/// The on-chain wallet's database in the data directory.
const WALLET_DB: &str = "wallet.db";

fn read_optional(
	store: &FilesystemStore, ns: (&str, &str), key: &str,
) -> Result<Option<Vec<u8>>, NodeError> {
	match KVStoreSync::read(store, ns.0, ns.1, key) {
		Ok(bytes) => Ok(Some(bytes)),
		Err(e) if e.kind() == lightning::io::ErrorKind::NotFound => Ok(None),
		Err(e) => {
			Err(NodeError::StoredState { what: "store entry", reason: format!("{key}: {e}") })
		},
	}
}

/// The channel configuration every node starts from.
fn user_config(hold_htlcs: bool) -> UserConfig {
	let mut config = UserConfig::default();
	// Anchor outputs need a fee-bumping wallet reserve for every channel; the
	// regtest network this node is built for runs legacy static-remote-key
	// channels, which every LDK peer (ldk-node included) accepts.
	config.channel_handshake_config.negotiate_anchors_zero_fee_htlc_tx = false;
	config.channel_handshake_config.max_inbound_htlc_value_in_flight_percent_of_channel = 100;
	config.channel_handshake_limits.force_announced_channel_preference = false;
	// A routing node forwards to its private (mobile) peers too.
	config.accept_forwards_to_priv_channels = true;
	// BOLT 12 invoices are paid by the event handler: directly, or through
	// trampolines for `Node::pay_offer_via_trampolines`.
	config.manually_handle_bolt12_invoices = true;
	// The sender's LSP role: LDK advertises `option_htlc_hold` and keeps
	// `hold_htlc` HTLCs until `release_held_htlc`.
	config.enable_htlc_hold = hold_htlcs;
	config
}

/// The plugin with the capabilities `config` turns on, telling its events
/// to the node's subscribers.
fn plugin_for(
	config: &NodeConfig, channel_manager: &Arc<ChannelManager>, router: &PaymentRouter,
	keys: &Arc<KeysManager>, store: &Arc<FilesystemStore>, logger: &Arc<NodeLogger>,
	events: broadcast::Sender<super::NodeEvent>,
) -> Result<Plugin<Arc<ChannelManager>>, NodeError> {
	let mut builder = Plugin::builder(
		Arc::clone(channel_manager),
		router,
		Arc::clone(keys) as Arc<dyn NodeSigner + Send + Sync>,
		Arc::clone(store) as Arc<dyn KVStoreSync + Send + Sync>,
		Arc::clone(logger) as Arc<dyn lightning::util::logger::Logger + Send + Sync>,
	)
	.trampoline_limits(config.trampoline_limits)
	.on_event(move |event| {
		let event = match event {
			PluginEvent::PaymentHeld { held } => super::NodeEvent::PaymentHeld { held },
			PluginEvent::HtlcHold { event } => super::NodeEvent::HtlcHold { event },
			PluginEvent::MessageHeld { peer } => super::NodeEvent::MessageHeld { peer },
		};
		// No subscriber is fine.
		let _ = events.send(event);
	});
	if let Some(policy) = config.trampoline {
		builder = builder.trampoline(policy);
	}
	if let Some(policy) = config.htlc_hold {
		builder = builder.htlc_hold(policy);
	}
	if let Some(policy) = config.static_invoice_server {
		builder = builder.static_invoices(policy);
	}
	if let Some(url) = &config.wake_webhook {
		builder = builder.wake_webhook(url.clone(), config.wake_webhook_ca_cert.clone());
	}
	builder.build().map_err(|e| match e {
		e @ (PluginError::WakeWebhook(_) | PluginError::HtlcHoldOff | PluginError::NoRuntime) => {
			NodeError::Config(e.to_string())
		},
		e => NodeError::StoredState { what: "plugin", reason: e.to_string() },
	})
}

impl Node {
	/// Starts a node: reads or creates its state in `config.data_dir`, syncs to
	/// bitcoind's tip, listens for peers and reconnects to known ones.
	pub async fn start(config: NodeConfig) -> Result<Arc<Node>, NodeError> {
		if config.alias.len() > 32 {
			return Err(NodeError::Config(format!(
				"alias {:?} is {} bytes long; at most 32 are allowed",
				config.alias,
				config.alias.len()
			)));
		}
		if let Some(url) = config.wake_webhook.as_deref() {
			// Checked before anything is written (the plugin builds its client
			// again from the same settings).
			parse_webhook_url(url, config.network).map_err(|e| NodeError::Config(e.to_string()))?;
			webhook_client(config.wake_webhook_ca_cert.as_deref())
				.map_err(|e| NodeError::Config(e.to_string()))?;
		}
		let dir = config.data_dir.clone();
		let (data_dir_lock, seed) = prepare_data_dir(&dir)?;
		let logger = Arc::new(
			NodeLogger::open(&dir.join("logs").join("ldk.log"), config.log_level, &config.alias)
				.map_err(|e| data_dir_err(&dir, e))?,
		);

		let bitcoind = {
			let (rpc, network, logger) =
				(config.bitcoind.clone(), config.network, Arc::clone(&logger));
			tokio::task::spawn_blocking(move || BitcoindClient::connect(&rpc, network, logger))
				.await
				.map_err(|e| NodeError::Config(e.to_string()))??
		};
		let bitcoind = Arc::new(bitcoind);
		let fee_estimator = Arc::new(FeeEstimator::default());
		fee_estimator.refresh(&bitcoind);
		let block_source = bitcoind.block_source();

		let store = Arc::new(FilesystemStore::new(dir.join("ldk")));
		let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
		let keys_manager =
			Arc::new(KeysManager::new(&seed, now.as_secs(), now.subsec_nanos(), true));
		let wallet = Arc::new(OnchainWallet::open(
			&dir.join(WALLET_DB),
			&seed,
			config.network,
			Arc::clone(&bitcoind),
			Arc::clone(&logger),
		)?);

		let mut monitors: Vec<(BlockHash, ChannelMonitor)> = read_channel_monitors(
			Arc::clone(&store),
			Arc::clone(&keys_manager),
			Arc::clone(&keys_manager),
		)
		.map_err(|e| stored_err("channel monitors")(&e))?;
		let closing = Arc::new(ClosingTxids::load(Arc::clone(&store))?);
		for (_, monitor) in &monitors {
			let funding = monitor.get_funding_txo().into_bitcoin_outpoint();
			closing.watch_funding(funding, monitor.channel_id());
		}
		bitcoind.observe_broadcasts(Arc::clone(&closing));
		let manager_first = ManagerFirst::new(Arc::clone(&store), Arc::clone(&logger));
		// The background processor's and the sweeper's store: its manager
		// writes go through `manager_first`'s flush.
		let bp_store = Arc::new(manager_first.manager_store());
		let chain_monitor: Arc<ChainMonitor> = Arc::new(ChainMonitor::new(
			None::<Arc<dyn Filter + Send + Sync>>,
			Arc::clone(&bitcoind),
			Arc::clone(&logger),
			Arc::clone(&fee_estimator),
			Arc::new(manager_first.persister()),
			Arc::clone(&keys_manager),
			keys_manager.get_peer_storage_key(),
		));

		let network_graph = match read_optional(
			&store,
			(
				NETWORK_GRAPH_PERSISTENCE_PRIMARY_NAMESPACE,
				NETWORK_GRAPH_PERSISTENCE_SECONDARY_NAMESPACE,
			),
			NETWORK_GRAPH_PERSISTENCE_KEY,
		)? {
			Some(bytes) => NetworkGraph::read(&mut Cursor::new(bytes), Arc::clone(&logger))
				.map_err(|e| stored_err("network graph")(&format!("{e:?}")))?,
			None => NetworkGraph::new(config.network, Arc::clone(&logger)),
		};
		let network_graph = Arc::new(network_graph);
		let decay = ProbabilisticScoringDecayParameters::default();
		let scorer: Scorer = match read_optional(
			&store,
			(SCORER_PERSISTENCE_PRIMARY_NAMESPACE, SCORER_PERSISTENCE_SECONDARY_NAMESPACE),
			SCORER_PERSISTENCE_KEY,
		)? {
			Some(bytes) => ProbabilisticScorer::read(
				&mut Cursor::new(bytes),
				(decay, Arc::clone(&network_graph), Arc::clone(&logger)),
			)
			.map_err(|e| stored_err("scorer")(&format!("{e:?}")))?,
			None => {
				ProbabilisticScorer::new(decay, Arc::clone(&network_graph), Arc::clone(&logger))
			},
		};
		let scorer = Arc::new(Mutex::new(scorer));
		let trampoline_sender = Arc::new(SenderState::default());
		let router = Arc::new(PaymentRouter::new(
			Arc::new(DefaultRouter::new(
				Arc::clone(&network_graph),
				Arc::clone(&logger),
				Arc::clone(&keys_manager),
				Arc::clone(&scorer),
				ProbabilisticScoringFeeParameters::default(),
			)),
			Arc::clone(&trampoline_sender),
		));
		let message_router = Arc::new(DefaultMessageRouter::new(
			Arc::clone(&network_graph),
			Arc::clone(&keys_manager),
		));

		let tip = validate_best_block_header(&*block_source)
			.await
			.map_err(|e| stored_err("chain tip")(&format!("{e:?}")))?;
		let channel_manager = match read_optional(
			&store,
			(
				CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
				CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
			),
			CHANNEL_MANAGER_PERSISTENCE_KEY,
		)? {
			Some(bytes) => {
				let monitor_refs = monitors.iter().map(|(_, m)| m).collect();
				let args = ChannelManagerReadArgs::new(
					Arc::clone(&keys_manager),
					Arc::clone(&keys_manager),
					Arc::clone(&keys_manager),
					Arc::clone(&fee_estimator),
					Arc::clone(&chain_monitor),
					Arc::clone(&bitcoind),
					Arc::clone(&router),
					Arc::clone(&message_router),
					Arc::clone(&logger),
					user_config(config.htlc_hold.is_some()),
					monitor_refs,
				);
				<(BlockHash, ChannelManager)>::read(&mut Cursor::new(bytes), args)
					.map_err(|e| stored_err("channel manager")(&format!("{e:?}")))?
					.1
			},
			None => ChannelManager::new(
				Arc::clone(&fee_estimator),
				Arc::clone(&chain_monitor),
				Arc::clone(&bitcoind),
				Arc::clone(&router),
				Arc::clone(&message_router),
				Arc::clone(&logger),
				Arc::clone(&keys_manager),
				Arc::clone(&keys_manager),
				Arc::clone(&keys_manager),
				user_config(config.htlc_hold.is_some()),
				ChainParameters {
					network: config.network,
					best_block: BestBlock::new(tip.to_best_block().block_hash, tip.height),
				},
				now.as_secs() as u32,
			),
		};
		let channel_manager = Arc::new(channel_manager);

		let sweeper_args = (
			Arc::clone(&bitcoind),
			Arc::clone(&fee_estimator),
			None::<Arc<dyn Filter + Send + Sync>>,
			Arc::clone(&keys_manager),
			Arc::clone(&wallet),
			Arc::clone(&bp_store),
			Arc::clone(&logger),
		);
		let sweeper: Arc<Sweeper> = Arc::new(
			match read_optional(
				&store,
				(
					OUTPUT_SWEEPER_PERSISTENCE_PRIMARY_NAMESPACE,
					OUTPUT_SWEEPER_PERSISTENCE_SECONDARY_NAMESPACE,
				),
				OUTPUT_SWEEPER_PERSISTENCE_KEY,
			)? {
				Some(bytes) => {
					<(BestBlock, Sweeper)>::read(&mut Cursor::new(bytes), sweeper_args)
						.map_err(|e| stored_err("output sweeper")(&format!("{e:?}")))?
						.1
				},
				None => OutputSweeperSync::new(
					channel_manager.current_best_block(),
					sweeper_args.0,
					sweeper_args.1,
					sweeper_args.2,
					sweeper_args.3,
					sweeper_args.4,
					sweeper_args.5,
					sweeper_args.6,
				),
			},
		);

		// Bring every component to bitcoind's tip before going online.
		let mut header_cache = UnboundedCache::new();
		let monitor_listeners: Vec<_> = monitors
			.drain(..)
			.map(|(hash, monitor)| {
				(
					hash,
					(
						monitor,
						Arc::clone(&bitcoind),
						Arc::clone(&fee_estimator),
						Arc::clone(&logger),
					),
				)
			})
			.collect();
		let chain_tip = {
			let mut listeners: Vec<(BlockHash, &(dyn Listen + Send + Sync))> = vec![
				(channel_manager.current_best_block().block_hash, &*channel_manager),
				(wallet.current_best_block().block_hash, &*wallet),
				(sweeper.current_best_block().block_hash, &*sweeper),
			];
			for (hash, listener) in &monitor_listeners {
				listeners.push((*hash, listener));
			}
			synchronize_listeners(&*block_source, config.network, &mut header_cache, listeners)
				.await
				.map_err(|e| stored_err("chain sync")(&format!("{e:?}")))?
		};
		for (_, (monitor, ..)) in monitor_listeners {
			let channel_id = monitor.channel_id();
			chain_monitor.watch_channel(channel_id, monitor).map_err(|_| {
				stored_err("channel monitor")(&format!("{channel_id} cannot be watched"))
			})?;
		}
		// From here on a monitor reaches the disk only after a manager that
		// knows its update (rust-lightning issue 4286's window, closed).
		manager_first.attach(&channel_manager, &chain_monitor);

		let gossip_sync: Arc<GossipSync> = Arc::new(P2PGossipSync::new(
			Arc::clone(&network_graph),
			None::<Arc<dyn UtxoLookup + Send + Sync>>,
			Arc::clone(&logger),
		));
		let (events, _) = broadcast::channel(1024);
		let plugin = Arc::new(plugin_for(
			&config,
			&channel_manager,
			&router,
			&keys_manager,
			&store,
			&logger,
			events.clone(),
		)?);
		// A static invoice server holds onion messages for offline peers (its
		// async recipients) instead of dropping them.
		let new_messenger = if plugin.intercepts_offline_peers() {
			OnionMessenger::new_with_offline_peer_interception
		} else {
			OnionMessenger::new
		};
		let onion_messenger: Arc<OnionMessenger> = Arc::new(new_messenger(
			Arc::clone(&keys_manager),
			Arc::clone(&keys_manager),
			Arc::clone(&logger),
			Arc::clone(&channel_manager),
			Arc::clone(&message_router),
			Arc::clone(&channel_manager),
			plugin.async_payments_handler(),
			IgnoringMessageHandler {},
			IgnoringMessageHandler {},
		));
		let peer_manager: Arc<PeerManager> = Arc::new(PeerManager::new(
			MessageHandler {
				chan_handler: plugin.message_handler(),
				route_handler: Arc::clone(&gossip_sync),
				onion_message_handler: Arc::clone(&onion_messenger),
				custom_message_handler: IgnoringMessageHandler {},
				send_only_message_handler: Arc::clone(&chain_monitor),
			},
			now.as_secs() as u32,
			&keys_manager.get_secure_random_bytes(),
			Arc::clone(&logger),
			Arc::clone(&keys_manager),
		));

		let listener = tokio::net::TcpListener::bind(config.listen_addr).await.map_err(|e| {
			NodeError::Config(format!("cannot listen on {}: {e}", config.listen_addr))
		})?;
		let listen_addr = listener.local_addr().map_err(|e| NodeError::Config(e.to_string()))?;

		let payments = Arc::new(PaymentStore::load(Arc::clone(&store))?);
		let forwards = Arc::new(
			ForwardStore::load(
				Arc::clone(&store) as Arc<dyn KVStoreSync + Send + Sync>,
				config.max_forwards,
				Arc::clone(&logger) as Arc<dyn lightning::util::logger::Logger + Send + Sync>,
			)
			.map_err(|e| NodeError::StoredState { what: "forwards", reason: e.to_string() })?,
		);
		if let Some(relay) = plugin.relay() {
			// Before any event: the relay tells the history of every bucket it settles.
			relay.set_observer(Arc::clone(&forwards) as Arc<dyn crate::relay::SettleObserver>);
		}
		let peers = Arc::new(PeerStore::load(Arc::clone(&store))?);
		let trampoline_retries = Arc::new(crate::sender::TrampolineRetries::default());
		let outgoing = Arc::new(super::outgoing::OutgoingParts::default());
		let event_handler = EventHandler {
			outgoing: Arc::clone(&outgoing),
			channel_manager: Arc::clone(&channel_manager),
			wallet: Arc::clone(&wallet),
			fee_estimator: Arc::clone(&fee_estimator),
			sweeper: Arc::clone(&sweeper),
			closing: Arc::clone(&closing),
			peer_manager: Arc::clone(&peer_manager),
			payments: Arc::clone(&payments),
			forwards: Arc::clone(&forwards),
			plugin: Arc::clone(&plugin),
			trampoline_retries: Arc::clone(&trampoline_retries),
			onion_messenger: Arc::clone(&onion_messenger),
			events: events.clone(),
			logger: Arc::clone(&logger),
			runtime: tokio::runtime::Handle::current(),
		};
		// Settle what a crash interrupted (claims first: funds safety).
		plugin.resume();
		let background = BackgroundProcessor::start(
			bp_store,
			event_handler,
			Arc::clone(&chain_monitor),
			Arc::clone(&channel_manager),
			Some(Arc::clone(&onion_messenger)),
			BpGossipSync::p2p(Arc::clone(&gossip_sync)),
			Arc::clone(&peer_manager),
			lightning_background_processor::NO_LIQUIDITY_MANAGER_SYNC,
			Some(Arc::clone(&sweeper)),
			Arc::clone(&logger),
			Some(Arc::clone(&scorer)),
		);

		let (stop_signal, stop_rx) = watch::channel(false);
		let node = Arc::new(Node {
			config: config.clone(),
			listen_addr,
			channel_manager: Arc::clone(&channel_manager),
			chain_monitor: Arc::clone(&chain_monitor),
			peer_manager: Arc::clone(&peer_manager),
			network_graph,
			wallet: Arc::clone(&wallet),
			fee_estimator: Arc::clone(&fee_estimator),
			sweeper: Arc::clone(&sweeper),
			closing: Arc::clone(&closing),
			payments,
			forwards,
			peers,
			plugin: Arc::clone(&plugin),
			trampoline_retries,
			outgoing,
			onion_messenger: Arc::clone(&onion_messenger),
			events,
			background: Mutex::new(Some(background)),
			persistence: manager_first,
			tasks: Mutex::new(Vec::new()),
			stop_signal,
			data_dir_lock: Mutex::new(Some(data_dir_lock)),
		});

		let chain_listener = ChainListener {
			plugin: plugin.chain_listener(),
			channel_manager,
			chain_monitor,
			wallet,
			sweeper,
			closing,
		};
		let mut tasks = vec![
			tokio::spawn(accept_peers(listener, Arc::clone(&peer_manager))),
			tokio::spawn(follow_chain(
				chain_tip,
				header_cache,
				chain_listener,
				bitcoind,
				fee_estimator,
				config.network,
				config.chain_poll_interval,
				stop_rx.clone(),
			)),
		];
		tasks.push(tokio::spawn(Arc::clone(&node).reconnect_peers(stop_rx.clone())));
		tasks.push(tokio::spawn(plugin.run(stop_rx.clone())));
		tasks.push(tokio::spawn(Arc::clone(&node).announce_node(stop_rx)));
		*node.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
		Ok(node)
	}
}

async fn accept_peers(listener: tokio::net::TcpListener, peer_manager: Arc<PeerManager>) {
	loop {
		let Ok((stream, _)) = listener.accept().await else {
			continue;
		};
		let Ok(stream) = stream.into_std() else {
			continue;
		};
		tokio::spawn(lightning_net_tokio::setup_inbound(Arc::clone(&peer_manager), stream));
	}
}

#[allow(clippy::too_many_arguments)]
async fn follow_chain(
	tip: lightning_block_sync::poll::ValidatedBlockHeader, mut cache: UnboundedCache,
	listener: ChainListener, bitcoind: Arc<BitcoindClient>, fee_estimator: Arc<FeeEstimator>,
	network: bitcoin::Network, interval: Duration, mut stop: watch::Receiver<bool>,
) {
	let poller = ChainPoller::new(bitcoind.block_source(), network);
	let mut client = SpvClient::new(tip, poller, &mut cache, &listener);
	let mut last_fee_refresh = std::time::Instant::now();
	loop {
		tokio::select! {
			_ = stop.changed() => return,
			_ = tokio::time::sleep(interval) => {},
		}
		// Errors are transient (bitcoind restarting, a reorg in progress): retry.
		let _ = client.poll_best_tip().await;
		if last_fee_refresh.elapsed() > Duration::from_secs(60) {
			let (bitcoind, fee_estimator) = (Arc::clone(&bitcoind), Arc::clone(&fee_estimator));
			let _ = tokio::task::spawn_blocking(move || fee_estimator.refresh(&bitcoind)).await;
			last_fee_refresh = std::time::Instant::now();
		}
	}
}

#[cfg(all(test, unix))]
mod tests {
	use std::os::unix::fs::PermissionsExt;

	use super::*;

	fn mode(path: &Path) -> u32 {
		std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
	}

	#[test]
	fn fresh_data_dir_is_private_to_the_owner() {
		let parent = tempfile::tempdir().expect("tempdir");
		let dir = parent.path().join("node");
		let (_lock, _seed) = prepare_data_dir(&dir).expect("prepare");
		assert_eq!(mode(&dir), 0o700, "data dir");
		assert_eq!(mode(&dir.join("seed")), 0o600, "seed");
		assert_eq!(mode(&dir.join("wallet.db")), 0o600, "wallet db");
		assert!(!dir.join("seed.tmp").exists());
		assert!(!dir.join("wallet.db.tmp").exists());
	}

	#[test]
	fn seed_readable_by_others_is_refused_with_the_fix() {
		let parent = tempfile::tempdir().expect("tempdir");
		let dir = parent.path().join("node");
		drop(prepare_data_dir(&dir).expect("first start"));
		let seed = dir.join("seed");
		std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).expect("chmod");
		let err = prepare_data_dir(&dir).expect_err("a 0644 seed must be refused");
		assert!(
			matches!(&err, NodeError::SecretExposed { path, mode: 0o644 } if path == &seed.display().to_string()),
			"{err:?}"
		);
		let message = err.to_string();
		assert!(message.contains(&format!("chmod 600 {}", seed.display())), "{message}");
		// Readable by the group only is refused as well; 0400 is accepted.
		std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o640)).expect("chmod");
		assert!(matches!(
			prepare_data_dir(&dir),
			Err(NodeError::SecretExposed { mode: 0o640, .. })
		));
		std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o400)).expect("chmod");
		prepare_data_dir(&dir).expect("a 0400 seed is private");
	}
}
