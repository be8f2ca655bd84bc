//! When each inbound HTLC arrived, and the total its payer announced when the
//! handler peeled a final payload: what LDK does not keep and an operator's
//! listing of partial payments shows ([`HtlcArrivals::pending`]).
//!
//! Bounded: at most [`MAX_ARRIVALS`] entries, the oldest forgotten first (a
//! peer flooding adds on channels we do not have cannot grow it; an entry
//! forgotten that way only shows without its arrival time). Entries whose
//! HTLC LDK no longer holds go at each [`HtlcArrivals::pending`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::types::ChannelId;

/// How many inbound HTLCs the tracker remembers (LDK accepts at most 483
/// per channel).
pub const MAX_ARRIVALS: usize = 100_000;

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
	by_htlc: HashMap<(ChannelId, u64), Arrival>,
	order: VecDeque<(ChannelId, u64)>,
}

/// The inbound HTLCs' arrivals, keyed by channel and HTLC id.
#[derive(Default)]
pub struct HtlcArrivals {
	inner: Mutex<Inner>,
}

impl HtlcArrivals {
	/// Notes the add of `htlc_id` on `channel_id` now (a re-used id, after a
	/// disconnection dropped the uncommitted add, is the new add's).
	pub fn note(&self, channel_id: ChannelId, htlc_id: u64, announced_total_msat: Option<u64>) {
		let arrival = Arrival { arrived_at_ms: now_ms(), announced_total_msat };
		let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		if inner.by_htlc.insert((channel_id, htlc_id), arrival).is_none() {
			inner.order.push_back((channel_id, htlc_id));
		}
		while inner.by_htlc.len() > MAX_ARRIVALS {
			let Some(oldest) = inner.order.pop_front() else { break };
			inner.by_htlc.remove(&oldest);
		}
	}

	/// What is known of the inbound HTLC `htlc_id` of `channel_id`.
	pub fn get(&self, channel_id: &ChannelId, htlc_id: u64) -> Option<Arrival> {
		let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		inner.by_htlc.get(&(*channel_id, htlc_id)).copied()
	}

	/// Forgets every HTLC `channels` (LDK's list) no longer hold inbound.
	pub fn retain_pending(&self, channels: &[ChannelDetails]) {
		let pending: std::collections::HashSet<(ChannelId, u64)> = channels
			.iter()
			.flat_map(|c| c.pending_inbound_htlcs.iter().map(|h| (c.channel_id, h.htlc_id)))
			.collect();
		let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		inner.by_htlc.retain(|key, _| pending.contains(key));
		let Inner { by_htlc, order } = &mut *inner;
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

fn now_ms() -> u64 {
	std::time::SystemTime::now()
		.duration_since(std::time::UNIX_EPOCH)
		.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn the_oldest_arrivals_go_beyond_the_bound() {
		let arrivals = HtlcArrivals::default();
		let channel = ChannelId([1; 32]);
		for id in 0..(MAX_ARRIVALS as u64 + 10) {
			arrivals.note(channel, id, None);
		}
		assert_eq!(arrivals.len(), MAX_ARRIVALS);
		assert_eq!(arrivals.get(&channel, 9), None);
		assert!(arrivals.get(&channel, 10).is_some());
		// A re-used id keeps one entry, with the new add's total.
		arrivals.note(channel, 10, Some(5));
		assert_eq!(arrivals.len(), MAX_ARRIVALS);
		assert_eq!(arrivals.get(&channel, 10).and_then(|a| a.announced_total_msat), Some(5));
		// Nothing LDK does not hold stays.
		arrivals.retain_pending(&[]);
		assert!(arrivals.is_empty());
	}
}
