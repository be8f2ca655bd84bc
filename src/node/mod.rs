//! A Lightning node composed from LDK's real parts: bitcoind as chain source
//! (`lightning-block-sync`), a BDK on-chain wallet, `FilesystemStore`, the
//! background processor and a `PeerManager` on `lightning-net-tokio`.
//!
//! The regtest harness, the demo and the reference node all run this one
//! composition, so what the tests exercise is what operators run.

mod chain;
mod closing;
mod decode;
mod events;
pub mod forwards;
mod logger;
mod outgoing;
mod partial;
mod payments;
mod peers;
pub mod persist;
mod start;
pub mod types;
mod wallet;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::address::NetworkUnchecked;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, FeeRate, Network, Txid};
use lightning::chain::channelmonitor::Balance;
use lightning::ln::types::ChannelId;
use lightning::util::errors::APIError;
use lightning::util::logger::Level;
use lightning_background_processor::BackgroundProcessor;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use chain::{BitcoindRpcConfig, ChainError, RpcAuth};
pub use closing::{ClosingChannel, ClosingState};
pub use decode::{decode, DecodeError, Decoded, DecodedBolt11, DecodedBolt12Invoice, DecodedOffer};
pub use events::NodeEvent;
pub use forwards::{ForwardKind, ForwardOutcome, ForwardPage, ForwardRecord};
pub use outgoing::{OutgoingPart, PartState, PartialPayment};
pub use partial::{format_scid, PartialInvoice, PartialPart};
pub(crate) use payments::offer_amount_msat;
pub use payments::{PaymentDirection, PaymentRecord, PaymentStatus};
pub use peers::PeerInfo;
pub use wallet::{OnchainBalance, OnchainSend, SendAmount, WalletError};

use self::chain::FeeEstimator;
use self::closing::ClosingTxids;
use self::forwards::ForwardStore;
use self::payments::PaymentStore;
use self::peers::PeerStore;
use self::types::{
	ChainMonitor, ChannelManager, NetworkGraph, OnionMessenger, PeerManager, StaticInvoiceServer,
	Sweeper, TrampolineRelay,
};
use self::wallet::OnchainWallet;
use crate::htlc_hold::{HeldHtlcSummary, HtlcHold, HtlcHoldPolicy};
use crate::relay::{RelayLimits, TrampolinePolicy};
use crate::static_invoices::{StaticInvoicePolicy, StoredStaticInvoice};

/// How long a cooperative close is retried while LDK refuses it for an
/// in-flight monitor update or a disconnected peer.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// How long [`Node::close_channel`] waits for the closing transaction's
/// broadcast to name it.
const CLOSING_TXID_WAIT: Duration = Duration::from_secs(5);

/// What a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
	/// The chain, which bitcoind must run too.
	pub network: Network,
	/// Where the node keeps its seed, channel state, wallet and logs.
	pub data_dir: PathBuf,
	/// Where to accept peer connections; port 0 picks a free port.
	pub listen_addr: SocketAddr,
	/// bitcoind's RPC interface.
	pub bitcoind: BitcoindRpcConfig,
	/// The alias announced to the network (at most 32 bytes).
	pub alias: String,
	/// How often to poll bitcoind for new blocks.
	pub chain_poll_interval: Duration,
	/// The longest delay between attempts to reconnect to a channel peer
	/// that dropped (the first attempt is at once, then the delay doubles).
	pub reconnect_interval: Duration,
	/// The lowest level written to `<data_dir>/logs/ldk.log` (default: info).
	pub log_level: Level,
	/// Relay trampoline payments with this policy; `None` (the default) leaves
	/// the node exactly as without the plugin.
	pub trampoline: Option<TrampolinePolicy>,
	/// What payers may have in flight and held through the relay.
	pub trampoline_limits: RelayLimits,
	/// Serve static invoices for often-offline recipients with this policy
	/// (and hold onion messages for offline peers); `None` (the default) leaves
	/// the role off.
	pub static_invoice_server: Option<StaticInvoicePolicy>,
	/// Where to POST a signed LSPS5 `lsps5.payment_incoming` notification
	/// when the relay starts holding a payment for an offline peer (LSPS5's
	/// rules: `https://`, plain `http://` and local hosts on regtest only;
	/// see `parse_webhook_url`); `None` (the default): no call, only
	/// [`NodeEvent::PaymentHeld`].
	pub wake_webhook: Option<String>,
	/// A PEM certificate the wake-up webhook's client trusts besides the
	/// web's roots (a private CA, or a self-signed push service).
	pub wake_webhook_ca_cert: Option<PathBuf>,
	/// Hold HTLCs that payers flag `hold_htlc` until their recipient's
	/// `release_held_htlc` arrives (the sender's LSP of BOLTs PR 1149), within
	/// this policy; `None` (the default): the feature is not advertised.
	pub htlc_hold: Option<HtlcHoldPolicy>,
	/// How many forwarding records to keep (the newest; at least one):
	/// [`forwards::MAX_FORWARDS`] by default.
	pub max_forwards: usize,
}

impl NodeConfig {
	/// A configuration with the defaults for everything but the essentials.
	pub fn new(network: Network, data_dir: PathBuf, bitcoind: BitcoindRpcConfig) -> Self {
		Self {
			network,
			data_dir,
			listen_addr: SocketAddr::from(([127, 0, 0, 1], 9735)),
			bitcoind,
			alias: "ldk-trampoline".to_string(),
			chain_poll_interval: Duration::from_secs(1),
			reconnect_interval: Duration::from_secs(5),
			log_level: Level::Info,
			trampoline: None,
			trampoline_limits: RelayLimits::default(),
			static_invoice_server: None,
			wake_webhook: None,
			wake_webhook_ca_cert: None,
			htlc_hold: None,
			max_forwards: forwards::MAX_FORWARDS,
		}
	}
}

/// Errors a node reports to its user.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
	/// A configuration value is wrong.
	#[error("invalid configuration: {0}")]
	Config(String),
	/// The data directory cannot be used.
	#[error("cannot use the data directory {path}: {reason}")]
	DataDir {
		/// The data directory.
		path: String,
		/// What failed.
		reason: String,
	},
	/// A file holding the node's keys can be read by other local users.
	#[error("{path} holds the node's keys and can be read by other users (mode {mode:o}); run `chmod 600 {path}` and start again")]
	SecretExposed {
		/// The file.
		path: String,
		/// Its permission bits.
		mode: u32,
	},
	/// Stored state could not be read back.
	#[error("cannot read the node's stored {what}: {reason} (the data directory may be corrupt or from an incompatible version)")]
	StoredState {
		/// What was being read.
		what: &'static str,
		/// What failed.
		reason: String,
	},
	/// bitcoind.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The on-chain wallet.
	#[error(transparent)]
	Wallet(#[from] WalletError),
	/// The peer could not be reached.
	#[error("cannot connect to peer {node_id}@{addr}: {reason}")]
	Connect {
		/// The peer.
		node_id: PublicKey,
		/// Its address.
		addr: String,
		/// What failed.
		reason: String,
	},
	/// LDK refused a channel operation.
	#[error("channel operation failed: {0}")]
	Channel(String),
	/// LDK refused to start a payment, or a payment request is unusable.
	#[error("payment failed: {0}")]
	Payment(String),
	/// An on-chain address is not for the node's chain.
	#[error("the address {address} is not a {network} address")]
	WrongNetwork {
		/// The address given.
		address: String,
		/// The node's chain.
		network: Network,
	},
	/// The node is not connected to this peer.
	#[error("not connected to peer {0} (see `list-peers`)")]
	NotConnected(PublicKey),
	/// Disconnecting a channel peer without `force`.
	#[error("peer {node_id} has {channels} channel(s) with us and the node reconnects to channel peers at once; pass force to disconnect it anyway (the node then leaves it alone until `connect` or a restart)")]
	PeerHasChannels {
		/// The peer.
		node_id: PublicKey,
		/// How many channels we have with it.
		channels: usize,
	},
	/// Waiting for something took longer than the deadline.
	#[error("timed out after {0:?} waiting for {1}")]
	Timeout(Duration, String),
	/// The node has been stopped.
	#[error("the node is stopped")]
	Stopped,
}

/// A channel, as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
	/// The channel id (hex).
	pub channel_id: String,
	/// The peer.
	pub counterparty: String,
	/// Short channel id once confirmed, as a number.
	pub short_channel_id: Option<u64>,
	/// The same short channel id as `BLOCKxTXxOUTPUT` (funding block height,
	/// transaction index in the block, funding output index).
	#[serde(default)]
	pub scid: Option<String>,
	/// The funding transaction, once negotiated.
	#[serde(default)]
	pub funding_txid: Option<String>,
	/// The funding transaction's output that is the channel.
	#[serde(default)]
	pub funding_output_index: Option<u16>,
	/// Confirmations of the funding transaction (0 while in the mempool),
	/// once LDK knows the funding transaction.
	#[serde(default)]
	pub confirmations: Option<u32>,
	/// Confirmations the funding transaction needs before the channel is
	/// ready (set for channels we opened, or once the peer told us).
	#[serde(default)]
	pub confirmations_required: Option<u32>,
	/// Channel capacity.
	pub capacity_sat: u64,
	/// What we can send now.
	pub outbound_msat: u64,
	/// What we can receive now.
	pub inbound_msat: u64,
	/// Both sides have sent `channel_ready`.
	pub ready: bool,
	/// Ready and the peer is connected.
	pub usable: bool,
	/// The peer is connected now (whether or not the channel is ready).
	#[serde(default)]
	pub peer_connected: bool,
	/// Announced to the network for forwarding.
	pub public: bool,
	/// HTLCs the peer offered us that are not yet settled on both commitments.
	#[serde(default)]
	pub pending_inbound_htlcs: usize,
	/// HTLCs we offered the peer that are not yet settled on both commitments.
	#[serde(default)]
	pub pending_outbound_htlcs: usize,
}

/// The node's balances. Every satoshi of ours is in exactly one of
/// `onchain`, `lightning_sat` (less the commitment fee it includes),
/// `closing_sat` (or `closing_maybe_sat` if the peer does not take it) and
/// `sweeping_sat`, so their sum changes only by payments and on-chain fees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
	/// On-chain wallet.
	pub onchain: OnchainBalance,
	/// Our side of every open channel, in satoshis, before the commitment
	/// transaction fee (which the channel opener pays): it moves by exactly the
	/// amounts and routing fees of payments. Channels being closed are not
	/// in it but in `closing_sat`.
	pub lightning_sat: u64,
	/// What we would get back on-chain if every channel closed now, after
	/// commitment fees, including closed channels' outputs awaiting confirmations.
	pub lightning_claimable_sat: u64,
	/// What channels being closed still hold for us, in satoshis: LDK's
	/// claimable amount of each balance of their monitors (our output while
	/// the closing transaction confirms, after its fee; outputs awaiting
	/// their confirmations or CSV delay; HTLCs we can claim by preimage,
	/// forwarded HTLCs awaiting their timeout, a revoked commitment's
	/// outputs), before the on-chain fees of claiming them. It goes to
	/// `sweeping_sat` when the outputs are handed to the sweeper. LDK counts
	/// a cooperative close's output as our side of the last commitment
	/// transaction until the output reaches the sweeper, so for the channel
	/// opener it is off by the difference between the commitment and the
	/// closing transaction's fee (exact for the other side).
	#[serde(default)]
	pub closing_sat: u64,
	/// HTLCs of channels being closed that are ours only if the peer does
	/// not claim them first (our own payments' HTLCs awaiting their timeout,
	/// inbound HTLCs whose preimage we lack), in satoshis; not in `closing_sat`.
	#[serde(default)]
	pub closing_maybe_sat: u64,
	/// Outputs of closed channels the output sweeper tracks whose sweep into
	/// the on-chain wallet has not confirmed, in satoshis before the sweep's
	/// fee (once it confirms they are in `onchain`).
	#[serde(default)]
	pub sweeping_sat: u64,
}

/// A running node. Stop it with [`Node::stop`] before dropping it to persist
/// everything cleanly (a crash is safe too: every state change is persisted
/// before it is acted on).
pub struct Node {
	config: NodeConfig,
	listen_addr: SocketAddr,
	channel_manager: Arc<ChannelManager>,
	chain_monitor: Arc<ChainMonitor>,
	peer_manager: Arc<PeerManager>,
	network_graph: Arc<NetworkGraph>,
	wallet: Arc<OnchainWallet>,
	fee_estimator: Arc<FeeEstimator>,
	sweeper: Arc<Sweeper>,
	closing: Arc<ClosingTxids>,
	payments: Arc<PaymentStore>,
	forwards: Arc<ForwardStore>,
	peers: Arc<PeerStore>,
	plugin: Arc<types::Plugin>,
	trampoline_retries: Arc<crate::sender::TrampolineRetries>,
	outgoing: Arc<outgoing::OutgoingParts>,
	onion_messenger: Arc<OnionMessenger>,
	events: broadcast::Sender<NodeEvent>,
	background: Mutex<Option<BackgroundProcessor>>,
	/// Manager-first persistence (stopped after the background processor).
	persistence: Arc<persist::ManagerFirst>,
	tasks: Mutex<Vec<JoinHandle<()>>>,
	stop_signal: watch::Sender<bool>,
	/// Held while the node runs; released by [`Node::stop`].
	data_dir_lock: Mutex<Option<std::fs::File>>,
}

impl Node {
	/// This node's public key.
	pub fn node_id(&self) -> PublicKey {
		self.channel_manager.get_our_node_id()
	}

	/// Where the node accepts peer connections.
	pub fn listen_addr(&self) -> SocketAddr {
		self.listen_addr
	}

	/// The configuration the node runs with.
	pub fn config(&self) -> &NodeConfig {
		&self.config
	}

	/// The height of the best block the channel manager has seen.
	pub fn best_block_height(&self) -> u32 {
		self.channel_manager.current_best_block().height
	}

	/// The LDK channel manager, for what this API does not cover.
	pub fn channel_manager(&self) -> &Arc<ChannelManager> {
		&self.channel_manager
	}

	/// The LDK onion messenger, for what this API does not cover.
	pub fn onion_messenger(&self) -> &Arc<OnionMessenger> {
		&self.onion_messenger
	}

	/// The forwarding history after `index_offset` (from the oldest kept
	/// when `None` or 0), oldest first, at most `limit` records
	/// ([`forwards::DEFAULT_FORWARDS_PAGE`] when 0, at most
	/// [`forwards::MAX_FORWARDS_PAGE`]): plain channel forwards and relayed
	/// trampoline payments, succeeded and failed, as LND's `fwdinghistory`
	/// pages them. Pass the page's `next_index_offset` for the next one.
	pub fn list_forwards(&self, index_offset: Option<u64>, limit: usize) -> ForwardPage {
		self.forwards.list(index_offset, limit)
	}

	/// The trampoline relay, when [`NodeConfig::trampoline`] is set.
	pub fn trampoline(&self) -> Option<&Arc<TrampolineRelay>> {
		self.plugin.relay()
	}

	/// The wallet side of the plugin: trampoline payments sent, what their
	/// trampolines answered, and [`crate::sender::send_to_trampoline`]'s state
	/// argument for payments built by hand.
	pub fn trampoline_sender(&self) -> &Arc<crate::sender::SenderState> {
		self.plugin.sender()
	}

	/// The static invoice server, when [`NodeConfig::static_invoice_server`]
	/// is set.
	pub fn static_invoice_server(&self) -> Option<&Arc<StaticInvoiceServer>> {
		self.plugin.static_invoices()
	}

	/// The hold of HTLCs for often-offline payers, when
	/// [`NodeConfig::htlc_hold`] is set.
	pub fn htlc_hold(&self) -> Option<&Arc<HtlcHold>> {
		self.plugin.htlc_hold()
	}

	/// Every HTLC this node holds for an often-offline payer (peer, amount,
	/// payment hash, held since, deadline, reason), oldest first; empty when
	/// the role is off.
	pub fn list_held_htlcs(&self) -> Vec<HeldHtlcSummary> {
		self.plugin.list_held_htlcs()
	}

	/// The incoming multi-part payments whose parts we hold and have not
	/// claimed: trampoline buckets still receiving parts and payments to
	/// us, each with its parts (incoming channel, amount, CLTV, arrival).
	/// A set goes when it is claimed or failed back (LDK's MPP timeout
	/// fails an incomplete one after three timer ticks).
	pub fn list_partial_invoices(&self) -> Vec<PartialInvoice> {
		let buckets = self.trampoline().map(|r| r.core().buckets()).unwrap_or_default();
		let held = self
			.list_held_htlcs()
			.iter()
			.filter_map(|h| {
				let bytes = <[u8; 32] as hex::FromHex>::from_hex(&h.payment_hash).ok()?;
				Some(lightning::types::payment::PaymentHash(bytes))
			})
			.collect();
		let channels = self.channel_manager.list_channels();
		partial::partial_invoices(&channels, self.plugin.arrivals(), &buckets, &held)
	}

	/// Each outgoing payment LDK still tracks or whose parts are kept (the
	/// latest thousand), the relay's too, with its parts: the channels of
	/// each finished part's path, its amount and outcome (the failing
	/// channel or node, and a trampoline's code), and the HTLCs in flight.
	pub fn list_partial_payments(&self) -> Vec<PartialPayment> {
		let recent = self.channel_manager.list_recent_payments();
		let channels = self.channel_manager.list_channels();
		self.outgoing.list(&recent, &channels)
	}

	/// Every static invoice this node stores for async recipients (recipient
	/// id in hex, slot, size, expiry); empty when the server role is off.
	pub fn list_static_invoices(&self) -> Vec<StoredStaticInvoice> {
		self.static_invoice_server().map(|s| s.list()).unwrap_or_default()
	}

	/// What the trampoline answered for a payment sent with
	/// [`Node::pay_invoice_via_trampoline`], decrypted through the outer and
	/// the trampoline layer (in memory: not kept across restarts).
	pub fn trampoline_failure(
		&self, payment_hash: &lightning::types::payment::PaymentHash,
	) -> Option<crate::onion::TrampolineFailure> {
		self.trampoline_sender().failure(payment_hash)
	}

	/// The public network graph as learned from gossip.
	pub fn network_graph(&self) -> &Arc<NetworkGraph> {
		&self.network_graph
	}

	/// Waits until the network graph holds `count` channels, each with both
	/// directions' updates (what the router needs to use them).
	pub async fn wait_for_channels_in_graph(
		&self, count: usize, timeout: Duration,
	) -> Result<(), NodeError> {
		let deadline = deadline_after(timeout);
		loop {
			let complete = {
				let graph = self.network_graph.read_only();
				let channels = graph.channels();
				channels
					.unordered_iter()
					.filter(|(_, c)| c.one_to_two.is_some() && c.two_to_one.is_some())
					.count()
			};
			if complete >= count {
				return Ok(());
			}
			if tokio::time::Instant::now() > deadline {
				let graph = self.network_graph.read_only();
				let seen: Vec<String> = graph
					.channels()
					.unordered_iter()
					.map(|(scid, c)| {
						format!("{scid}: {}/{}", c.one_to_two.is_some(), c.two_to_one.is_some())
					})
					.collect();
				return Err(NodeError::Timeout(
					timeout,
					format!(
						"{count} channels in the graph with both directions' updates (seen: {})",
						seen.join(", ")
					),
				));
			}
			tokio::time::sleep(Duration::from_millis(50)).await;
		}
	}

	/// Subscribes to the node's events. Events emitted before the call are not seen:
	/// subscribe before starting what you want to wait for.
	pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
		self.events.subscribe()
	}

	/// Waits until `pick` returns `Some` for an event, or the deadline passes.
	pub async fn wait_for_event<T>(
		&self, mut events: broadcast::Receiver<NodeEvent>, timeout: Duration, what: &str,
		mut pick: impl FnMut(&NodeEvent) -> Option<T>,
	) -> Result<T, NodeError> {
		let deadline = deadline_after(timeout);
		loop {
			let event = match tokio::time::timeout_at(deadline, events.recv()).await {
				Err(_) => return Err(NodeError::Timeout(timeout, what.to_string())),
				Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
				Ok(Err(broadcast::error::RecvError::Closed)) => return Err(NodeError::Stopped),
				Ok(Ok(event)) => event,
			};
			if let Some(found) = pick(&event) {
				return Ok(found);
			}
		}
	}

	/// A fresh on-chain receive address.
	pub fn new_address(&self) -> Result<Address, NodeError> {
		Ok(self.wallet.new_address()?)
	}

	/// Pays `amount` on-chain to `address` from the BDK wallet, at `fee_rate`
	/// (bitcoind's estimate for six blocks when `None`), and broadcasts it
	/// through bitcoind. The balance shows the spend at once (as unconfirmed
	/// change). Fails with [`WalletError::NotEnoughFunds`] naming what the
	/// wallet has and what the send needs, and with
	/// [`NodeError::WrongNetwork`] for an address of another chain.
	pub fn send_onchain(
		&self, address: &Address<NetworkUnchecked>, amount: SendAmount, fee_rate: Option<FeeRate>,
	) -> Result<OnchainSend, NodeError> {
		let network = self.config.network;
		let address =
			address.clone().require_network(network).map_err(|_| NodeError::WrongNetwork {
				address: address.clone().assume_checked().to_string(),
				network,
			})?;
		let fee_rate = fee_rate.unwrap_or_else(|| self.fee_estimator.funding_fee_rate());
		Ok(self.wallet.send_to_address(&address, amount, fee_rate)?)
	}

	/// On-chain and Lightning balances, closing channels and pending sweeps
	/// included (see [`Balances`]).
	pub fn balances(&self) -> Balances {
		let mut balances = Balances { onchain: self.wallet.balance(), ..Default::default() };
		let open: HashSet<ChannelId> =
			self.channel_manager.list_channels().iter().map(|c| c.channel_id).collect();
		for channel_id in self.chain_monitor.list_monitors() {
			let Ok(monitor) = self.chain_monitor.get_monitor(channel_id) else { continue };
			let claimable = monitor.get_claimable_balances();
			if !open.contains(&channel_id) {
				let amounts = closing::claimable(&claimable);
				balances.closing_sat = balances.closing_sat.saturating_add(amounts.claimable_sat);
				balances.closing_maybe_sat =
					balances.closing_maybe_sat.saturating_add(amounts.maybe_sat);
			}
			for balance in &claimable {
				match balance {
					Balance::ClaimableOnChannelClose {
						balance_candidates,
						confirmed_balance_candidate_index,
						..
					} => {
						let current = balance_candidates
							.get(*confirmed_balance_candidate_index)
							.filter(|_| *confirmed_balance_candidate_index != 0)
							.or(balance_candidates.last());
						if let Some(current) = current {
							if open.contains(&channel_id) {
								balances.lightning_sat = balances.lightning_sat.saturating_add(
									current
										.amount_satoshis
										.saturating_add(current.transaction_fee_satoshis),
								);
							}
							balances.lightning_claimable_sat = balances
								.lightning_claimable_sat
								.saturating_add(current.amount_satoshis);
						}
					},
					// Only what is ours: HTLCs in flight are counted once they resolve.
					Balance::ClaimableAwaitingConfirmations { amount_satoshis, .. } => {
						balances.lightning_claimable_sat =
							balances.lightning_claimable_sat.saturating_add(*amount_satoshis);
					},
					_ => {},
				}
			}
		}
		balances.sweeping_sat = closing::sweeping_sat(&self.sweeper.tracked_spendable_outputs());
		balances
	}

	/// Every open channel (from negotiation until the channel manager has
	/// closed it) with its state; see [`Node::list_closing_channels`] for
	/// the channels after that.
	pub fn list_channels(&self) -> Vec<ChannelInfo> {
		self.channel_manager
			.list_channels()
			.into_iter()
			.map(|c| {
				let funding = c.funding_txo.map(|f| f.into_bitcoin_outpoint());
				ChannelInfo {
					channel_id: c.channel_id.to_string(),
					counterparty: c.counterparty.node_id.to_string(),
					short_channel_id: c.short_channel_id,
					scid: c.short_channel_id.map(format_scid),
					funding_txid: funding.map(|f| f.txid.to_string()),
					funding_output_index: funding.and_then(|f| u16::try_from(f.vout).ok()),
					confirmations: c.confirmations,
					confirmations_required: c.confirmations_required,
					capacity_sat: c.channel_value_satoshis,
					outbound_msat: c.outbound_capacity_msat,
					inbound_msat: c.inbound_capacity_msat,
					ready: c.is_channel_ready,
					usable: c.is_usable,
					peer_connected: self
						.peer_manager
						.peer_by_node_id(&c.counterparty.node_id)
						.is_some(),
					public: c.is_announced,
					pending_inbound_htlcs: c.pending_inbound_htlcs.len(),
					pending_outbound_htlcs: c.pending_outbound_htlcs.len(),
				}
			})
			.collect()
	}

	/// Every channel the channel manager has closed whose funds are not all
	/// back in the on-chain wallet: its closing transaction, where its funds
	/// are ([`ClosingState`]) and how much. A channel stays listed until its
	/// monitor has nothing left to claim and the sweep of its outputs has 6
	/// confirmations.
	pub fn list_closing_channels(&self) -> Vec<ClosingChannel> {
		let open: HashSet<ChannelId> =
			self.channel_manager.list_channels().iter().map(|c| c.channel_id).collect();
		let outputs = self.sweeper.tracked_spendable_outputs();
		let height = self.sweeper.current_best_block().height;
		let mut closing = Vec::new();
		for channel_id in self.chain_monitor.list_monitors() {
			if open.contains(&channel_id) {
				continue;
			}
			let Ok(monitor) = self.chain_monitor.get_monitor(channel_id) else { continue };
			let funding = monitor.get_funding_txo().into_bitcoin_outpoint();
			let balances = monitor.get_claimable_balances();
			let counterparty = monitor.get_counterparty_node_id().to_string();
			drop(monitor);
			let swept: Vec<_> = outputs
				.iter()
				.filter(|o| o.channel_id == Some(channel_id) && closing::still_closing(o, height))
				.collect();
			match closing::closing_channel(
				channel_id,
				counterparty,
				funding,
				self.closing.closing_txid(&channel_id),
				&balances,
				&swept,
			) {
				Some(channel) => closing.push(channel),
				None => self.closing.forget(&channel_id),
			}
		}
		closing
	}

	/// Opens a channel of `amount_sat` to a peer, connecting first if needed, and
	/// returns its id once the funding transaction is broadcast. Wait for
	/// [`NodeEvent::ChannelReady`] (after confirmations) before paying over it.
	pub async fn open_channel(
		&self, node_id: PublicKey, addr: SocketAddr, amount_sat: u64, push_msat: u64,
		announce: bool,
	) -> Result<ChannelId, NodeError> {
		self.connect(node_id, addr).await?;
		let mut config = self.channel_manager.get_current_config();
		config.channel_handshake_config.announce_for_forwarding = announce;
		let events = self.subscribe();
		let user_channel_id = u128::from_be_bytes(rand::random());
		let temporary_id = self
			.channel_manager
			.create_channel(node_id, amount_sat, push_msat, user_channel_id, None, Some(config))
			.map_err(|e| NodeError::Channel(format!("{e:?}")))?;
		self.wait_for_event(
			events,
			Duration::from_secs(30),
			"the channel to be funded",
			|e| match e {
				NodeEvent::ChannelPending { user_channel_id: id, channel_id, .. }
					if *id == user_channel_id =>
				{
					Some(Ok(*channel_id))
				},
				NodeEvent::ChannelClosed { user_channel_id: id, reason, .. }
					if *id == user_channel_id =>
				{
					Some(Err(NodeError::Channel(format!(
						"channel {temporary_id} closed while opening: {reason}"
					))))
				},
				_ => None,
			},
		)
		.await?
	}

	/// Closes a channel cooperatively, or unilaterally with `force`, and
	/// returns the closing (or our commitment) transaction's id once the
	/// node has broadcast it, if that happens within 5 s (a cooperative close
	/// negotiates the fee with the peer first; the channel is then in
	/// [`Node::list_closing_channels`] with the txid as soon as it is known).
	/// A cooperative close waits up to 10 s for the channel to become
	/// closable (an in-flight monitor update, a reconnecting peer).
	pub async fn close_channel(
		&self, channel_id: &ChannelId, force: bool,
	) -> Result<Option<Txid>, NodeError> {
		let (counterparty, funding) = self
			.channel_manager
			.list_channels()
			.into_iter()
			.find(|c| c.channel_id == *channel_id)
			.map(|c| (c.counterparty.node_id, c.funding_txo))
			.ok_or_else(|| NodeError::Channel(format!("no channel {channel_id}")))?;
		if let Some(funding) = funding {
			self.closing.watch_funding(funding.into_bitcoin_outpoint(), *channel_id);
		}
		if force {
			self.channel_manager
				.force_close_broadcasting_latest_txn(
					channel_id,
					&counterparty,
					"closed by the operator".to_string(),
				)
				.map_err(|e| NodeError::Channel(format!("{e:?}")))?;
		} else {
			self.start_cooperative_close(channel_id, &counterparty).await?;
		}
		let deadline = deadline_after(CLOSING_TXID_WAIT);
		loop {
			if let Some(txid) = self.closing.closing_txid(channel_id) {
				return Ok(Some(txid));
			}
			if tokio::time::Instant::now() >= deadline {
				return Ok(None);
			}
			tokio::time::sleep(Duration::from_millis(20)).await;
		}
	}

	async fn start_cooperative_close(
		&self, channel_id: &ChannelId, counterparty: &PublicKey,
	) -> Result<(), NodeError> {
		// LDK refuses to begin a shutdown while a monitor update is in
		// flight (monitors are written after the manager, `persist`): right
		// after a payment that lasts until the next flush, so try again
		// until `CLOSE_WAIT` has passed (also over a short disconnection).
		let deadline = deadline_after(CLOSE_WAIT);
		loop {
			match self.channel_manager.close_channel(channel_id, counterparty) {
				Ok(()) => return Ok(()),
				Err(APIError::ChannelUnavailable { .. })
					if tokio::time::Instant::now() < deadline =>
				{
					tokio::time::sleep(Duration::from_millis(20)).await;
				},
				Err(e) => return Err(NodeError::Channel(format!("{e:?}"))),
			}
		}
	}

	/// Waits until the channel manager and the wallet have seen block `height`.
	pub async fn wait_for_height(&self, height: u32, timeout: Duration) -> Result<(), NodeError> {
		let deadline = deadline_after(timeout);
		while self.best_block_height() < height || self.wallet.current_best_block().height < height
		{
			if tokio::time::Instant::now() >= deadline {
				return Err(NodeError::Timeout(timeout, format!("block {height}")));
			}
			tokio::time::sleep(Duration::from_millis(50)).await;
		}
		Ok(())
	}

	/// Stops the node: disconnects peers, stops background work and persists
	/// the final state.
	pub async fn stop(&self) -> Result<(), NodeError> {
		let _ = self.stop_signal.send(true);
		let tasks: Vec<_> =
			std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
		for task in tasks {
			task.abort();
			let _ = task.await;
		}
		self.peer_manager.disconnect_all_peers();
		let background = self.background.lock().unwrap_or_else(|p| p.into_inner()).take();
		if let Some(background) = background {
			tokio::task::spawn_blocking(move || background.stop())
				.await
				.map_err(|e| NodeError::Channel(format!("background processor panicked: {e}")))?
				.map_err(|e| NodeError::DataDir {
					path: self.config.data_dir.display().to_string(),
					reason: format!("final persist failed: {e}"),
				})?;
		}
		// Nothing of this instance may write once another may own the data.
		self.persistence.stop();
		// Another process (or a restart) may now take the data directory.
		self.data_dir_lock.lock().unwrap_or_else(|p| p.into_inner()).take();
		Ok(())
	}
}

/// `now + timeout`, saturating far in the future for absurd timeouts.
fn deadline_after(timeout: Duration) -> tokio::time::Instant {
	let now = tokio::time::Instant::now();
	now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

impl Drop for Node {
	fn drop(&mut self) {
		let _ = self.stop_signal.send(true);
		for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
			task.abort();
		}
	}
}
