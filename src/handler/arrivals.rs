//! When each inbound HTLC arrived, and the total its payer announced when the
//! handler peeled a final payload: what LDK does not keep and an operator's
//! listing of partial payments shows ([`HtlcArrivals::pending`]).
//!
//! Keyed by the offering peer, channel and HTLC id: a peer cannot overwrite
//! what another peer's HTLCs arrived with. Bounded: at most
//! [`MAX_ARRIVALS_PER_PEER`] entries per peer (beyond, its adds are not
//! noted: a peer flooding adds on channels we do not have loses only its own
//! arrival times) and [`MAX_ARRIVALS`] in all, the oldest forgotten first;
//! an entry forgotten shows without its arrival time. Entries whose HTLC LDK
//! no longer holds go at each [`HtlcArrivals::retain_pending`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use bitcoin::secp256k1::PublicKey;
use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::types::ChannelId;

use crate::relay::now_ms;

/// How many inbound HTLCs the tracker remembers (LDK accepts at most 483
/// per channel).
pub const MAX_ARRIVALS: usize = 100_000;

/// How many inbound HTLCs of one peer the tracker remembers (483 on each of
/// 20 channels).
pub const MAX_ARRIVALS_PER_PEER: usize = 483 * 20;

/// How long an arrival is kept although LDK does not list its HTLC.
pub const PRUNE_GRACE_MS: u64 = 60_000;

/// An HTLC's key: the peer that offered it, its channel and its id.
type HtlcKey = (PublicKey, ChannelId, u64);

/// What the tracker knows of one inbound HTLC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
	/// When its `update_add_htlc` arrived, ms since the Unix epoch.
	pub arrived_at_ms: u64,
	/// The total of the (multi-part) payment its final payload announced,
	/// msat; `None` for a forward, or a payload the handler did not peel.
	pub announced_total_msat: Option<u64>,
}

#[derive(Default)]
struct Inner {
	by_htlc: HashMap<HtlcKey, Arrival>,
	order: VecDeque<HtlcKey>,
	per_peer: HashMap<PublicKey, usize>,
}

impl Inner {
	fn remove(&mut self, key: &HtlcKey) {
		if self.by_htlc.remove(key).is_some() {
			if let Some(count) = self.per_peer.get_mut(&key.0) {
				*count = count.saturating_sub(1);
				if *count == 0 {
					self.per_peer.remove(&key.0);
				}
			}
		}
	}
}

/// The inbound HTLCs' arrivals, keyed by channel and HTLC id.
#[derive(Default)]
pub struct HtlcArrivals {
	inner: Mutex<Inner>,
}

impl HtlcArrivals {
	/// Notes the add of `htlc_id` on `channel_id` by `peer` now (a re-used
	/// id, after a disconnection dropped the uncommitted add, is the new
	/// add's).
	pub fn note(
		&self, peer: PublicKey, channel_id: ChannelId, htlc_id: u64,
		announced_total_msat: Option<u64>,
	) {
		let arrival = Arrival { arrived_at_ms: now_ms(), announced_total_msat };
		let key = (peer, channel_id, htlc_id);
		let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		if let Some(known) = inner.by_htlc.get_mut(&key) {
			*known = arrival;
			return;
		}
		let count = inner.per_peer.get(&peer).copied().unwrap_or(0);
		if count >= MAX_ARRIVALS_PER_PEER {
			return;
		}
		inner.per_peer.insert(peer, count.saturating_add(1));
		inner.by_htlc.insert(key, arrival);
		inner.order.push_back(key);
		while inner.by_htlc.len() > MAX_ARRIVALS {
			let Some(oldest) = inner.order.pop_front() else { break };
			inner.remove(&oldest);
		}
	}

	/// What is known of the inbound HTLC `htlc_id` of `channel_id`, offered
	/// by `peer`.
	pub fn get(&self, peer: &PublicKey, channel_id: &ChannelId, htlc_id: u64) -> Option<Arrival> {
		let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		inner.by_htlc.get(&(*peer, *channel_id, htlc_id)).copied()
	}

	/// Forgets every HTLC `channels` (LDK's list) no longer hold inbound,
	/// except those noted in the last [`PRUNE_GRACE_MS`] (an add noted
	/// before LDK lists it, or after `channels` was taken).
	pub fn retain_pending(&self, channels: &[ChannelDetails]) {
		let pending: HashSet<HtlcKey> = channels
			.iter()
			.flat_map(|c| {
				let peer = c.counterparty.node_id;
				c.pending_inbound_htlcs.iter().map(move |h| (peer, c.channel_id, h.htlc_id))
			})
			.collect();
		let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		let recent = now_ms().saturating_sub(PRUNE_GRACE_MS);
		let gone: Vec<HtlcKey> = inner
			.by_htlc
			.iter()
			.filter(|(key, arrival)| !pending.contains(key) && arrival.arrived_at_ms < recent)
			.map(|(key, _)| *key)
			.collect();
		for key in &gone {
			inner.remove(key);
		}
		let Inner { by_htlc, order, .. } = &mut *inner;
		order.retain(|key| by_htlc.contains_key(key));
	}

	/// How many HTLCs it remembers.
	pub fn len(&self) -> usize {
		self.inner.lock().unwrap_or_else(|e| e.into_inner()).by_htlc.len()
	}

	/// Whether it remembers none.
	pub fn is_empty(&self) -> bool {
		self.len() == 0
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	impl HtlcArrivals {
		/// Makes every arrival `ms` older.
		fn age_all(&self, ms: u64) {
			let mut inner = self.inner.lock().unwrap();
			for arrival in inner.by_htlc.values_mut() {
				arrival.arrived_at_ms = arrival.arrived_at_ms.saturating_sub(ms);
			}
		}
	}

	fn peer(byte: u8) -> PublicKey {
		let secret = bitcoin::secp256k1::SecretKey::from_slice(&[byte; 32]).expect("key");
		PublicKey::from_secret_key(&bitcoin::secp256k1::Secp256k1::new(), &secret)
	}

	#[test]
	fn a_flooding_peer_notes_only_its_share_and_cannot_touch_another_peers() {
		let arrivals = HtlcArrivals::default();
		let channel = ChannelId([1; 32]);
		let (honest, flooder) = (peer(1), peer(2));
		arrivals.note(honest, channel, 0, Some(7));
		for id in 0..(MAX_ARRIVALS_PER_PEER as u64 + 10) {
			arrivals.note(flooder, channel, id, Some(1));
		}
		assert_eq!(arrivals.len(), MAX_ARRIVALS_PER_PEER + 1);
		assert_eq!(arrivals.get(&flooder, &channel, MAX_ARRIVALS_PER_PEER as u64), None);
		// The same channel and id from another peer is another HTLC.
		assert_eq!(
			arrivals.get(&honest, &channel, 0).and_then(|a| a.announced_total_msat),
			Some(7)
		);
		// A re-used id keeps one entry, with the new add's total.
		arrivals.note(honest, channel, 0, Some(5));
		assert_eq!(
			arrivals.get(&honest, &channel, 0).and_then(|a| a.announced_total_msat),
			Some(5)
		);
		// A fresh arrival LDK does not list yet stays; an old one goes, and
		// the peer's share is free again.
		arrivals.retain_pending(&[]);
		assert_eq!(arrivals.len(), MAX_ARRIVALS_PER_PEER + 1);
		arrivals.age_all(PRUNE_GRACE_MS + 1);
		arrivals.retain_pending(&[]);
		assert!(arrivals.is_empty());
		arrivals.note(flooder, channel, 1, None);
		assert_eq!(arrivals.len(), 1);
	}

	#[test]
	fn the_oldest_arrivals_go_beyond_the_bound() {
		let arrivals = HtlcArrivals::default();
		let channel = ChannelId([1; 32]);
		let peers: Vec<PublicKey> = (1..=11).map(peer).collect();
		let mut noted = 0u64;
		'fill: for p in &peers {
			for _ in 0..MAX_ARRIVALS_PER_PEER {
				if noted == MAX_ARRIVALS as u64 + 10 {
					break 'fill;
				}
				arrivals.note(*p, channel, noted, None);
				noted += 1;
			}
		}
		assert_eq!(arrivals.len(), MAX_ARRIVALS);
		assert_eq!(arrivals.get(&peers[0], &channel, 9), None);
		assert!(arrivals.get(&peers[0], &channel, 10).is_some());
	}
}
