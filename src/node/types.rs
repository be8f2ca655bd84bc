//! The concrete LDK types a [`Node`](super::Node) is composed of.

use std::sync::{Arc, Mutex};

use lightning::chain::chainmonitor;
use lightning::ln::peer_handler::IgnoringMessageHandler;
use lightning::routing::gossip;
use lightning::routing::router::DefaultRouter;
use lightning::routing::scoring::{ProbabilisticScorer, ProbabilisticScoringFeeParameters};
use lightning::routing::utxo::UtxoLookup;
use lightning::sign::{InMemorySigner, KeysManager};
use lightning::util::sweep::OutputSweeperSync;
use lightning_net_tokio::SocketDescriptor;
use lightning_persister::fs_store::FilesystemStore;

use super::chain::{BitcoindClient, FeeEstimator};
use super::logger::NodeLogger;
use super::persist::{ManagerFirstStore, MonitorPersister};
use super::wallet::OnchainWallet;

/// The node's logger.
pub type Logger = NodeLogger;
/// The persistent key-value store every component writes to.
pub type Store = FilesystemStore;
/// The transaction broadcaster (bitcoind's `sendrawtransaction`).
pub type Broadcaster = BitcoindClient;

/// The chain monitor watching every channel's on-chain state.
pub type ChainMonitor = chainmonitor::ChainMonitor<
	InMemorySigner,
	Arc<dyn lightning::chain::Filter + Send + Sync>,
	Arc<Broadcaster>,
	Arc<FeeEstimator>,
	Arc<Logger>,
	Arc<MonitorPersister>,
	Arc<KeysManager>,
>;

/// The public network graph learned from gossip.
pub type NetworkGraph = gossip::NetworkGraph<Arc<Logger>>;

/// The scorer the router learns from.
pub type Scorer = ProbabilisticScorer<Arc<NetworkGraph>, Arc<Logger>>;

/// LDK's default payment router.
pub type Router = DefaultRouter<
	Arc<NetworkGraph>,
	Arc<Logger>,
	Arc<KeysManager>,
	Arc<Mutex<Scorer>>,
	ProbabilisticScoringFeeParameters,
	Scorer,
>;

/// LDK's default onion message router.
pub type MessageRouter = lightning::onion_message::messenger::DefaultMessageRouter<
	Arc<NetworkGraph>,
	Arc<Logger>,
	Arc<KeysManager>,
>;

/// The channel manager.
pub type ChannelManager = lightning::ln::channelmanager::ChannelManager<
	Arc<ChainMonitor>,
	Arc<Broadcaster>,
	Arc<KeysManager>,
	Arc<KeysManager>,
	Arc<KeysManager>,
	Arc<FeeEstimator>,
	Arc<PaymentRouter>,
	Arc<MessageRouter>,
	Arc<Logger>,
>;

/// The channel manager's router: LDK's, with the paths of trampoline
/// payments recorded for the plugin's message handler.
pub type PaymentRouter = crate::sender::TrampolineRouter<Arc<Router>>;

/// The onion messenger (BOLT 12 offers and async payments).
pub type OnionMessenger = lightning::onion_message::messenger::OnionMessenger<
	Arc<KeysManager>,
	Arc<KeysManager>,
	Arc<Logger>,
	Arc<ChannelManager>,
	Arc<MessageRouter>,
	Arc<ChannelManager>,
	Arc<AsyncPaymentsHandler>,
	IgnoringMessageHandler,
	IgnoringMessageHandler,
>;

/// The onion messenger's async payments handler: the channel manager's,
/// with `release_held_htlc` filtered through the hold registry.
pub type AsyncPaymentsHandler = crate::htlc_hold::HoldReleaseHandler<Arc<ChannelManager>>;

/// Gossip validation without a UTXO lookup.
pub type GossipSync =
	gossip::P2PGossipSync<Arc<NetworkGraph>, Arc<dyn UtxoLookup + Send + Sync>, Arc<Logger>>;

/// The channel message handler `PeerManager` talks to: the trampoline plugin's
/// wrapper around the channel manager (a pass-through when relaying is off).
pub type ChannelMessageHandler = crate::handler::TrampolineHandler<Arc<ChannelManager>>;

/// The trampoline relay's event hook.
pub type TrampolineRelay = crate::relay::TrampolineRelay<Arc<ChannelManager>>;

/// The static invoice server's event hook and store.
pub type StaticInvoiceServer = crate::static_invoices::StaticInvoiceServer<Arc<ChannelManager>>;

/// The plugin, wired into the node ([`crate::plugin::Plugin::builder`]).
pub type Plugin = crate::plugin::Plugin<Arc<ChannelManager>>;

/// The peer manager, speaking to peers over `lightning-net-tokio`.
pub type PeerManager = lightning::ln::peer_handler::PeerManager<
	SocketDescriptor,
	Arc<ChannelMessageHandler>,
	Arc<GossipSync>,
	Arc<OnionMessenger>,
	Arc<Logger>,
	IgnoringMessageHandler,
	Arc<KeysManager>,
	Arc<ChainMonitor>,
>;

/// Sweeps outputs of closed channels back into the on-chain wallet.
pub type Sweeper = OutputSweeperSync<
	Arc<Broadcaster>,
	Arc<OnchainWallet>,
	Arc<FeeEstimator>,
	Arc<dyn lightning::chain::Filter + Send + Sync>,
	Arc<ManagerFirstStore>,
	Arc<Logger>,
	Arc<KeysManager>,
>;
