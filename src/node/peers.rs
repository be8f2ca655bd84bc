//! Peer connections: connecting, remembering channel peers' addresses so that
//! connections are restored after a restart or a drop, and node announcements.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use lightning::ln::msgs::SocketAddress;
use lightning::util::persist::KVStoreSync;
use tokio::sync::watch;

use super::types::{PeerManager, Store};
use super::{Node, NodeError};

const PEERS_NAMESPACE: &str = "peers";
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);

/// How soon a channel peer that dropped is first called back; the delay
/// doubles with each failed attempt, up to the node's reconnect interval.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// The longest delay between calls to a dropped peer while a payment waits
/// for it.
const URGENT_RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// How often the reconnect loop looks for channel peers that dropped.
const DROP_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// When to call a dropped peer back next, and the delay after that.
struct Backoff {
	due: tokio::time::Instant,
	delay: Duration,
}

impl Backoff {
	fn new(now: tokio::time::Instant) -> Self {
		Self { due: now, delay: FIRST_RECONNECT_DELAY }
	}

	/// After a failed attempt: wait the delay, double it up to `max`.
	fn failed(&mut self, now: tokio::time::Instant, max: Duration) {
		self.due = now + self.delay.min(max);
		self.delay = self.delay.saturating_mul(2).min(max);
	}
}

/// Addresses of the peers we connected to, persisted in the node's store.
pub(super) struct PeerStore {
	addresses: Mutex<HashMap<PublicKey, SocketAddr>>,
	store: Arc<Store>,
	/// Wakes the reconnect loop to call every dropped peer back at once.
	reconnect_now: tokio::sync::Notify,
	/// Until when dropped peers are called back every
	/// [`URGENT_RECONNECT_DELAY`] (a payment waits for one).
	urgent_until: Mutex<Option<tokio::time::Instant>>,
	/// Channel peers the operator disconnected: not called back until
	/// [`Node::connect`] (or a restart).
	left_alone: Mutex<HashSet<PublicKey>>,
}

/// A connected peer, as `list-peers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerInfo {
	/// The peer's public key (hex).
	pub node_id: String,
	/// Its address as the connection sees it (`host:port`), when known.
	pub address: Option<String>,
	/// Whether the peer connected to us (rather than we to it).
	pub inbound: bool,
	/// How many channels we have with it, in any state.
	pub channels: usize,
	/// The feature bits of its `init` message, lowest first.
	pub features: Vec<usize>,
	/// The trampoline dialects among them.
	pub trampoline: crate::sender::TrampolineDialects,
}

impl PeerStore {
	pub(super) fn load(store: Arc<Store>) -> Result<Self, NodeError> {
		let stored = |reason: String| NodeError::StoredState { what: "peer addresses", reason };
		let mut addresses = HashMap::new();
		for key in
			KVStoreSync::list(&*store, PEERS_NAMESPACE, "").map_err(|e| stored(e.to_string()))?
		{
			let bytes = KVStoreSync::read(&*store, PEERS_NAMESPACE, "", &key)
				.map_err(|e| stored(e.to_string()))?;
			let node_id: PublicKey =
				key.parse().map_err(|_| stored(format!("bad node id {key}")))?;
			let addr = String::from_utf8_lossy(&bytes)
				.parse()
				.map_err(|_| stored(format!("bad address for {key}")))?;
			addresses.insert(node_id, addr);
		}
		Ok(Self {
			addresses: Mutex::new(addresses),
			store,
			reconnect_now: tokio::sync::Notify::new(),
			urgent_until: Mutex::new(None),
			left_alone: Mutex::new(HashSet::new()),
		})
	}

	/// Asks the reconnect loop to call every dropped channel peer back now,
	/// whatever its backoff, and then every [`URGENT_RECONNECT_DELAY`] for
	/// `urgent` (a payment waits for one of them).
	pub(super) fn reconnect_soon(&self, urgent: Duration) {
		let until = tokio::time::Instant::now() + urgent;
		let mut urgent_until = self.urgent_until.lock().unwrap_or_else(|p| p.into_inner());
		*urgent_until = Some(urgent_until.map_or(until, |u| u.max(until)));
		drop(urgent_until);
		self.reconnect_now.notify_one();
	}

	/// The longest delay between two calls to a dropped peer now: `max`,
	/// or [`URGENT_RECONNECT_DELAY`] while a payment waits.
	fn max_delay(&self, max: Duration) -> Duration {
		let urgent_until = *self.urgent_until.lock().unwrap_or_else(|p| p.into_inner());
		match urgent_until {
			Some(until) if tokio::time::Instant::now() < until => URGENT_RECONNECT_DELAY.min(max),
			_ => max,
		}
	}

	/// Whether the reconnect loop is to leave `node_id` alone.
	fn is_left_alone(&self, node_id: &PublicKey) -> bool {
		self.left_alone.lock().unwrap_or_else(|p| p.into_inner()).contains(node_id)
	}

	/// Leaves `node_id` alone (`true`) or calls it back again (`false`).
	fn leave_alone(&self, node_id: PublicKey, alone: bool) {
		let mut left_alone = self.left_alone.lock().unwrap_or_else(|p| p.into_inner());
		if alone {
			left_alone.insert(node_id);
		} else {
			left_alone.remove(&node_id);
		}
	}

	fn remember(&self, node_id: PublicKey, addr: SocketAddr) -> Result<(), NodeError> {
		let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
		if addresses.get(&node_id) != Some(&addr) {
			KVStoreSync::write(
				&*self.store,
				PEERS_NAMESPACE,
				"",
				&node_id.to_string(),
				addr.to_string().into_bytes(),
			)
			.map_err(|e| NodeError::StoredState {
				what: "peer addresses",
				reason: e.to_string(),
			})?;
			addresses.insert(node_id, addr);
		}
		Ok(())
	}

	fn snapshot(&self) -> Vec<(PublicKey, SocketAddr)> {
		self.addresses
			.lock()
			.unwrap_or_else(|p| p.into_inner())
			.iter()
			.map(|(k, v)| (*k, *v))
			.collect()
	}
}

/// Resolves an address from gossip or an onion message to a socket address.
pub(super) fn to_socket_addr(address: &SocketAddress) -> Option<SocketAddr> {
	match address {
		SocketAddress::TcpIpV4 { addr, port } => Some(SocketAddr::from((*addr, *port))),
		SocketAddress::TcpIpV6 { addr, port } => Some(SocketAddr::from((*addr, *port))),
		SocketAddress::Hostname { hostname, port } => {
			(hostname.as_str(), *port).to_socket_addrs().ok()?.next()
		},
		_ => None,
	}
}

/// Connects to a peer and waits until the handshake is done.
pub(super) async fn connect(
	peer_manager: &Arc<PeerManager>, node_id: PublicKey, addr: SocketAddr,
) -> Result<(), NodeError> {
	if peer_manager.peer_by_node_id(&node_id).is_some() {
		return Ok(());
	}
	let failed = |reason: &str| NodeError::Connect {
		node_id,
		addr: addr.to_string(),
		reason: reason.into(),
	};
	let connection = lightning_net_tokio::connect_outbound(Arc::clone(peer_manager), node_id, addr)
		.await
		.ok_or_else(|| failed("TCP connection failed"))?;
	let mut connection = Box::pin(connection);
	let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
	loop {
		if peer_manager.peer_by_node_id(&node_id).is_some() {
			return Ok(());
		}
		tokio::select! {
			_ = &mut connection => return Err(failed("the peer disconnected during the handshake (wrong node id?)")),
			_ = tokio::time::sleep_until(deadline) => return Err(failed("handshake timed out")),
			_ = tokio::time::sleep(Duration::from_millis(10)) => {},
		}
	}
}

impl Node {
	/// Connects to a peer (if not connected yet) and remembers its address, so
	/// the node reconnects to it after drops and restarts.
	pub async fn connect(&self, node_id: PublicKey, addr: SocketAddr) -> Result<(), NodeError> {
		connect(&self.peer_manager, node_id, addr).await?;
		self.peers.leave_alone(node_id, false);
		self.peers.remember(node_id, addr)
	}

	/// The connected peers: node id, address, direction, how many channels
	/// we have with each, and the features of its `init` message with the
	/// trampoline dialects among them (spec bits 56/57, eclair's 148/149,
	/// Electrum's 150/151).
	pub fn list_peers(&self) -> Vec<PeerInfo> {
		let channels = self.channel_manager.list_channels();
		self.peer_manager
			.list_peers()
			.into_iter()
			.map(|peer| {
				let flags = peer.init_features.le_flags();
				PeerInfo {
					node_id: peer.counterparty_node_id.to_string(),
					address: peer.socket_address.map(|a| a.to_string()),
					inbound: peer.is_inbound_connection,
					channels: channels
						.iter()
						.filter(|c| c.counterparty.node_id == peer.counterparty_node_id)
						.count(),
					features: crate::sender::feature_bits(flags),
					trampoline: crate::sender::TrampolineDialects::of_flags(flags),
				}
			})
			.collect()
	}

	/// Disconnects a connected peer. A peer we have a channel with is
	/// refused ([`NodeError::PeerHasChannels`]) unless `force`: the node
	/// would call it back at once; with `force` it is left alone until
	/// [`Node::connect`] names it again (or the node restarts), and its
	/// channels stay open but unusable meanwhile.
	pub fn disconnect(&self, node_id: PublicKey, force: bool) -> Result<(), NodeError> {
		if !self.is_connected(&node_id) {
			return Err(NodeError::NotConnected(node_id));
		}
		let channels = self
			.channel_manager
			.list_channels()
			.iter()
			.filter(|c| c.counterparty.node_id == node_id)
			.count();
		if channels > 0 {
			if !force {
				return Err(NodeError::PeerHasChannels { node_id, channels });
			}
			self.peers.leave_alone(node_id, true);
		}
		self.peer_manager.disconnect_by_node_id(node_id);
		Ok(())
	}

	/// Whether a peer is connected.
	pub fn is_connected(&self, node_id: &PublicKey) -> bool {
		self.peer_manager.peer_by_node_id(node_id).is_some()
	}

	/// Node ids of the connected peers.
	pub fn connected_peers(&self) -> Vec<PublicKey> {
		self.peer_manager.list_peers().into_iter().map(|p| p.counterparty_node_id).collect()
	}

	/// Reconnects to every remembered peer we have a channel with, when it
	/// drops: at once, then with a delay doubling from
	/// [`FIRST_RECONNECT_DELAY`] up to the configured reconnect interval
	/// while attempts fail; every dropped peer at once when
	/// [`PeerStore::reconnect_soon`] asks.
	pub(super) async fn reconnect_peers(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
		let mut backoff: HashMap<PublicKey, Backoff> = HashMap::new();
		loop {
			let dropped: Vec<(PublicKey, SocketAddr)> = self
				.peers
				.snapshot()
				.into_iter()
				.filter(|(node_id, _)| {
					!self.is_connected(node_id) && !self.peers.is_left_alone(node_id)
				})
				.collect();
			let with_channels: Vec<PublicKey> = if dropped.is_empty() {
				Vec::new()
			} else {
				self.channel_manager
					.list_channels()
					.iter()
					.map(|c| c.counterparty.node_id)
					.collect()
			};
			let now = tokio::time::Instant::now();
			backoff.retain(|node_id, _| {
				with_channels.contains(node_id) && dropped.iter().any(|(d, _)| d == node_id)
			});
			for (node_id, addr) in dropped {
				if !with_channels.contains(&node_id) {
					continue;
				}
				let entry = backoff.entry(node_id).or_insert_with(|| Backoff::new(now));
				if entry.due > now {
					continue;
				}
				match connect(&self.peer_manager, node_id, addr).await {
					Ok(()) => {
						backoff.remove(&node_id);
					},
					Err(_) => {
						let max = self.peers.max_delay(self.config.reconnect_interval);
						entry.failed(tokio::time::Instant::now(), max);
					},
				}
			}
			let now = tokio::time::Instant::now();
			let next = backoff
				.values()
				.map(|b| b.due)
				.min()
				.unwrap_or(now + DROP_CHECK_INTERVAL)
				.min(now + DROP_CHECK_INTERVAL);
			tokio::select! {
				_ = stop.changed() => return,
				_ = self.peers.reconnect_now.notified() => {
					for entry in backoff.values_mut() {
						entry.due = now;
					}
				},
				_ = tokio::time::sleep_until(next) => {},
			}
		}
	}

	/// Announces the node (alias, address, features) while it has public channels.
	pub(super) async fn announce_node(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
		let mut events = self.subscribe();
		loop {
			if self.channel_manager.list_channels().iter().any(|c| c.is_announced && c.is_usable) {
				self.broadcast_node_announcement();
			}
			tokio::select! {
				_ = stop.changed() => return,
				_ = events.recv() => {},
				_ = tokio::time::sleep(ANNOUNCE_INTERVAL) => {},
			}
		}
	}

	fn broadcast_node_announcement(&self) {
		let mut alias = [0u8; 32];
		let bytes = self.config.alias.as_bytes();
		alias[..bytes.len()].copy_from_slice(bytes);
		let address = match self.listen_addr {
			SocketAddr::V4(a) => SocketAddress::TcpIpV4 { addr: a.ip().octets(), port: a.port() },
			SocketAddr::V6(a) => SocketAddress::TcpIpV6 { addr: a.ip().octets(), port: a.port() },
		};
		self.peer_manager.broadcast_node_announcement([0; 3], alias, vec![address]);
	}
}
