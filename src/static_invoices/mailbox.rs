//! Onion messages held for offline peers.
//!
//! With `OnionMessenger::new_with_offline_peer_interception`, LDK hands the
//! node every onion message it would forward to a peer that is offline
//! (`Event::OnionMessageIntercepted`), and says when such a peer connects
//! (`Event::OnionMessagePeerConnected`). An async recipient is such a peer:
//! the invoice requests [`respond_to_static_invoice_request`] forwards and a
//! payer's `held_htlc_available` wait here until it comes back online.
//!
//! [`respond_to_static_invoice_request`]: lightning::ln::channelmanager::ChannelManager::respond_to_static_invoice_request

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bitcoin::secp256k1::PublicKey;
use lightning::ln::msgs::OnionMessage;

/// Most messages held per peer; the oldest is dropped beyond.
pub const MAX_MESSAGES_PER_PEER: usize = 30;
/// Most peers with held messages; the peer with the longest queue is dropped
/// beyond.
pub const MAX_PEERS: usize = 1000;

/// Onion messages waiting for their next-hop peer to connect (in memory).
#[derive(Default)]
pub struct OnionMessageMailbox {
	queues: Mutex<HashMap<PublicKey, VecDeque<OnionMessage>>>,
}

impl OnionMessageMailbox {
	/// An empty mailbox.
	pub fn new() -> Self {
		Self::default()
	}

	/// Holds `message` for `peer`.
	pub fn hold(&self, peer: PublicKey, message: OnionMessage) {
		let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
		let queue = queues.entry(peer).or_default();
		if queue.len() >= MAX_MESSAGES_PER_PEER {
			queue.pop_front();
		}
		queue.push_back(message);
		if queues.len() > MAX_PEERS {
			let longest = queues.iter().max_by_key(|(_, q)| q.len()).map(|(p, _)| *p);
			if let Some(longest) = longest {
				queues.remove(&longest);
			}
		}
	}

	/// Takes every message held for `peer`, oldest first.
	pub fn take(&self, peer: &PublicKey) -> Vec<OnionMessage> {
		let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
		queues.remove(peer).map(Vec::from).unwrap_or_default()
	}

	/// Messages held for `peer`.
	pub fn held_for(&self, peer: &PublicKey) -> usize {
		let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
		queues.get(peer).map_or(0, VecDeque::len)
	}
}
