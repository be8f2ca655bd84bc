//! Onion messages held for offline peers.
//!
//! With `OnionMessenger::new_with_offline_peer_interception`, LDK hands the
//! node every onion message it would forward to a peer that is offline
//! (`Event::OnionMessageIntercepted`), and says when such a peer connects
//! (`Event::OnionMessagePeerConnected`). An async recipient is such a peer:
//! the invoice requests [`respond_to_static_invoice_request`] forwards and a
//! payer's `held_htlc_available` wait here until it comes back online.
//!
//! LDK does not limit these events, and anyone holding a recipient's offer
//! can send messages toward it. The mailbox therefore:
//! - keeps messages only for ids the caller admits (the node: peers we have
//!   a channel with, which is what an async recipient of this server is);
//! - bounds bytes, not only counts, per peer ([`MAX_BYTES_PER_PEER`],
//!   [`MAX_MESSAGES_PER_PEER`]) and in total ([`MAX_TOTAL_BYTES`]), and never
//!   drops one peer's mailbox to make room for another peer;
//! - keeps what a held payment needs against later junk. The messages are
//!   encrypted for the peer, so their type is unknown here; what is known is
//!   their order and size. The first [`PROTECTED_PER_PEER`] messages a peer
//!   is sent while offline are never pushed out, and beyond them a full
//!   mailbox drops large packets (over LDK's 1300-byte small packet, which a
//!   `held_htlc_available` always fits in) before small ones, the oldest
//!   first. A payer's `held_htlc_available` that arrives among the first
//!   messages survives any flood; one that arrives after a flood has started
//!   is pushed out only by at least [`MAX_MESSAGES_PER_PEER`] small messages
//!   sent after it.
//!
//! [`respond_to_static_invoice_request`]: lightning::ln::channelmanager::ChannelManager::respond_to_static_invoice_request

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bitcoin::secp256k1::PublicKey;
use lightning::ln::msgs::OnionMessage;
use lightning::util::ser::Writeable;

/// Most messages held per peer.
pub const MAX_MESSAGES_PER_PEER: usize = 64;
/// Most bytes held per peer (serialized onion messages). Holds the
/// protected messages at their largest (32 KiB packets) with room to spare.
pub const MAX_BYTES_PER_PEER: usize = 512 * 1024;
/// Most bytes held for all peers together.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;
/// Most peers with held messages; messages for a further peer are refused.
pub const MAX_PEERS: usize = 1000;
/// A peer's oldest messages never pushed out by later ones.
pub const PROTECTED_PER_PEER: usize = 8;
/// Onion message hop data of LDK's small packet; larger packets are the
/// first dropped from a full mailbox.
pub const SMALL_PACKET_HOP_DATA_LEN: usize = 1300;

/// Why a message was not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MailboxRefusal {
	/// The next hop is neither a channel peer nor a known async recipient.
	#[error("not a peer we keep messages for")]
	UnknownPeer,
	/// [`MAX_PEERS`] peers already have messages waiting.
	#[error("too many peers with held messages")]
	TooManyPeers,
	/// The message alone exceeds [`MAX_BYTES_PER_PEER`].
	#[error("message of {0} bytes is too large to hold")]
	TooLarge(usize),
	/// The total is at [`MAX_TOTAL_BYTES`] and nothing else can be dropped.
	#[error("the mailbox is full")]
	Full,
}

/// What [`OnionMessageMailbox::hold`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
	/// The peer had no message waiting before this one.
	pub first: bool,
	/// Messages dropped to make room (this peer's, or the largest mailbox's
	/// when the total was over).
	pub dropped: usize,
}

struct Message {
	message: OnionMessage,
	size: usize,
	small: bool,
}

#[derive(Default)]
struct Queue {
	messages: VecDeque<Message>,
	bytes: usize,
}

impl Queue {
	fn over(&self) -> bool {
		self.messages.len() > MAX_MESSAGES_PER_PEER || self.bytes > MAX_BYTES_PER_PEER
	}

	/// Drops the oldest large message past the protected ones, else the
	/// oldest small one; `false` when only protected messages are left.
	fn drop_one(&mut self) -> bool {
		let unprotected = || self.messages.iter().enumerate().skip(PROTECTED_PER_PEER);
		let victim =
			unprotected().find(|(_, m)| !m.small).or_else(|| unprotected().next()).map(|(i, _)| i);
		let Some(message) = victim.and_then(|i| self.messages.remove(i)) else {
			return false;
		};
		self.bytes = self.bytes.saturating_sub(message.size);
		true
	}
}

#[derive(Default)]
struct Queues {
	peers: HashMap<PublicKey, Queue>,
	bytes: usize,
}

/// Onion messages waiting for their next-hop peer to connect (in memory).
#[derive(Default)]
pub struct OnionMessageMailbox {
	queues: Mutex<Queues>,
}

impl OnionMessageMailbox {
	/// An empty mailbox.
	pub fn new() -> Self {
		Self::default()
	}

	/// Holds `message` for `peer` if `admit(peer)` (asked only for a peer with
	/// nothing held yet), dropping other messages as the module explains.
	pub fn hold(
		&self, peer: PublicKey, message: OnionMessage, admit: impl FnOnce(&PublicKey) -> bool,
	) -> Result<Held, MailboxRefusal> {
		let size = message.serialized_length();
		if size > MAX_BYTES_PER_PEER {
			return Err(MailboxRefusal::TooLarge(size));
		}
		let small = message.onion_routing_packet.hop_data.len() <= SMALL_PACKET_HOP_DATA_LEN;
		let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
		let first = !queues.peers.contains_key(&peer);
		if first {
			if !admit(&peer) {
				return Err(MailboxRefusal::UnknownPeer);
			}
			if queues.peers.len() >= MAX_PEERS {
				return Err(MailboxRefusal::TooManyPeers);
			}
		}
		let mut dropped = 0;
		let Queues { peers, bytes } = &mut *queues;
		let queue = peers.entry(peer).or_default();
		queue.messages.push_back(Message { message, size, small });
		queue.bytes = queue.bytes.saturating_add(size);
		*bytes = bytes.saturating_add(size);
		while queue.over() {
			let before = queue.bytes;
			if !queue.drop_one() {
				break;
			}
			*bytes = bytes.saturating_sub(before - queue.bytes);
			dropped += 1;
		}
		while *bytes > MAX_TOTAL_BYTES {
			let largest = peers
				.values_mut()
				.filter(|q| q.messages.len() > PROTECTED_PER_PEER)
				.max_by_key(|q| q.bytes);
			let Some(largest) = largest else {
				// Only protected messages are left: refuse this one instead.
				if let Some(queue) = peers.get_mut(&peer) {
					if let Some(last) = queue.messages.pop_back() {
						queue.bytes = queue.bytes.saturating_sub(last.size);
						*bytes = bytes.saturating_sub(last.size);
					}
					if queue.messages.is_empty() {
						peers.remove(&peer);
					}
				}
				return Err(MailboxRefusal::Full);
			};
			let before = largest.bytes;
			if !largest.drop_one() {
				break;
			}
			*bytes = bytes.saturating_sub(before - largest.bytes);
			dropped += 1;
		}
		Ok(Held { first, dropped })
	}

	/// Takes every message held for `peer`, oldest first.
	pub fn take(&self, peer: &PublicKey) -> Vec<OnionMessage> {
		let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
		let Some(queue) = queues.peers.remove(peer) else {
			return Vec::new();
		};
		queues.bytes = queues.bytes.saturating_sub(queue.bytes);
		queue.messages.into_iter().map(|m| m.message).collect()
	}

	/// Messages held for `peer`.
	pub fn held_for(&self, peer: &PublicKey) -> usize {
		let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
		queues.peers.get(peer).map_or(0, |q| q.messages.len())
	}

	/// Bytes held for `peer`.
	pub fn bytes_for(&self, peer: &PublicKey) -> usize {
		let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
		queues.peers.get(peer).map_or(0, |q| q.bytes)
	}

	/// Bytes held for all peers.
	pub fn total_bytes(&self) -> usize {
		self.queues.lock().unwrap_or_else(|p| p.into_inner()).bytes
	}
}

#[cfg(test)]
mod tests {
	use bitcoin::secp256k1::{Secp256k1, SecretKey};
	use lightning::onion_message::packet::Packet;

	use super::*;

	fn key(byte: u8) -> PublicKey {
		let secret = SecretKey::from_slice(&[byte.max(1); 32]).expect("valid key");
		PublicKey::from_secret_key(&Secp256k1::signing_only(), &secret)
	}

	/// A message whose hop data is `len` bytes, tagged by its first byte.
	fn message(tag: u8, len: usize) -> OnionMessage {
		let mut hop_data = vec![0; len];
		hop_data[0] = tag;
		OnionMessage {
			blinding_point: key(9),
			onion_routing_packet: Packet {
				version: 0,
				public_key: key(8),
				hop_data,
				hmac: [0; 32],
			},
		}
	}

	const SMALL: usize = SMALL_PACKET_HOP_DATA_LEN;
	const BIG: usize = 32_768;

	fn tags(messages: &[OnionMessage]) -> Vec<u8> {
		messages.iter().map(|m| m.onion_routing_packet.hop_data[0]).collect()
	}

	#[test]
	fn a_held_payment_message_is_not_pushed_out_by_junk() {
		let mailbox = OnionMessageMailbox::new();
		let (recipient, admit) = (key(1), |_: &PublicKey| true);
		// The payer's held_htlc_available (a small packet) comes first...
		assert!(mailbox.hold(recipient, message(0xaa, SMALL), admit).unwrap().first);
		// ...then anyone with the offer sends 200 junk messages, small and big.
		for i in 0..200 {
			let len = if i % 2 == 0 { SMALL } else { BIG };
			mailbox.hold(recipient, message(1, len), admit).unwrap();
		}
		let held = mailbox.take(&recipient);
		assert_eq!(held[0].onion_routing_packet.hop_data[0], 0xaa, "payer's message kept");
		assert!(held.len() <= MAX_MESSAGES_PER_PEER);
	}

	#[test]
	fn big_junk_is_dropped_before_a_small_message_that_came_after_it() {
		let mailbox = OnionMessageMailbox::new();
		let (recipient, admit) = (key(1), |_: &PublicKey| true);
		for _ in 0..PROTECTED_PER_PEER + 5 {
			mailbox.hold(recipient, message(1, BIG), admit).unwrap();
		}
		mailbox.hold(recipient, message(0xaa, SMALL), admit).unwrap();
		for _ in 0..100 {
			mailbox.hold(recipient, message(1, BIG), admit).unwrap();
		}
		assert!(tags(&mailbox.take(&recipient)).contains(&0xaa), "payer's message kept");
	}

	#[test]
	fn bytes_are_bounded_per_peer_and_in_total() {
		let mailbox = OnionMessageMailbox::new();
		let admit = |_: &PublicKey| true;
		for _ in 0..1000 {
			mailbox.hold(key(1), message(1, BIG), admit).unwrap();
		}
		assert!(mailbox.bytes_for(&key(1)) <= MAX_BYTES_PER_PEER, "{}", mailbox.bytes_for(&key(1)));
		assert!(mailbox.held_for(&key(1)) <= MAX_MESSAGES_PER_PEER);
		for peer in 2..=200u8 {
			for _ in 0..20 {
				let _ = mailbox.hold(key(peer), message(1, BIG), admit);
			}
		}
		assert!(mailbox.total_bytes() <= MAX_TOTAL_BYTES, "{}", mailbox.total_bytes());
		let counted: usize = (1..=200u8).map(|p| mailbox.bytes_for(&key(p))).sum();
		assert_eq!(counted, mailbox.total_bytes());
	}

	#[test]
	fn ids_that_are_not_admitted_are_refused() {
		let mailbox = OnionMessageMailbox::new();
		let (peer, stranger) = (key(1), key(2));
		let admit = |id: &PublicKey| *id == peer;
		assert!(mailbox.hold(peer, message(1, SMALL), admit).is_ok());
		assert_eq!(
			mailbox.hold(stranger, message(1, SMALL), admit),
			Err(MailboxRefusal::UnknownPeer)
		);
		assert_eq!(mailbox.held_for(&stranger), 0);
		assert_eq!(mailbox.total_bytes(), mailbox.bytes_for(&peer));
	}
}
