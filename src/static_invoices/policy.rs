//! The limits the static invoice server enforces, and its rate limiter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the static invoice server accepts and how often it answers.
///
/// Quotas are per recipient id, the identifier this node gave the recipient
/// with `ChannelManager::blinded_paths_for_async_recipient`: it is carried
/// inside our own encrypted blinded-path context, so a recipient cannot spend
/// another recipient's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticInvoicePolicy {
	/// Slots a recipient may use (slot numbers `0..max_slots_per_recipient`).
	/// LDK 0.2.7 recipients use up to 10 offers, hence 10 slots.
	pub max_slots_per_recipient: u16,
	/// Total size of one recipient's stored invoices, in bytes.
	pub max_bytes_per_recipient: u64,
	/// Largest single invoice accepted, in bytes (serialized TLV stream).
	pub max_invoice_bytes: u64,
	/// Invoices stored for all recipients together.
	pub max_invoices: u64,
	/// Requests (and persists) a recipient id may burst before being limited.
	pub rate_limit_burst: u32,
	/// One more request is allowed per this interval, up to the burst.
	pub rate_limit_refill: Duration,
}

impl Default for StaticInvoicePolicy {
	fn default() -> Self {
		Self {
			max_slots_per_recipient: 10,
			max_bytes_per_recipient: 64 * 1024,
			// An onion message carries at most ~32 KiB; a served invoice must fit
			// in one together with its reply path.
			max_invoice_bytes: 16 * 1024,
			max_invoices: 1_000_000,
			rate_limit_burst: 10,
			rate_limit_refill: Duration::from_millis(100),
		}
	}
}

/// Most keys a [`RateLimiter`] tracks; beyond it, new keys are refused until
/// idle ones are forgotten (a flood of fresh keys cannot grow memory).
pub const RATE_LIMITER_MAX_KEYS: usize = 100_000;

/// A token bucket per key: `burst` tokens, one more every `refill`.
///
/// Full buckets idle for a minute are forgotten.
#[derive(Debug)]
pub struct RateLimiter {
	buckets: HashMap<Vec<u8>, (u32, Instant)>,
	burst: u32,
	refill: Duration,
}

impl RateLimiter {
	/// A limiter allowing `burst` requests at once, then one per `refill`.
	pub fn new(burst: u32, refill: Duration) -> Self {
		Self { buckets: HashMap::new(), burst, refill: refill.max(Duration::from_micros(1)) }
	}

	/// Takes a token for `key` at time `now`; `false` when it has none left.
	pub fn allow(&mut self, key: &[u8], now: Instant) -> bool {
		if !self.buckets.contains_key(key) && self.buckets.len() >= RATE_LIMITER_MAX_KEYS {
			let (burst, refill) = (self.burst, self.refill);
			self.buckets.retain(|_, (tokens, last)| {
				let idle = now.saturating_duration_since(*last);
				*tokens < burst || idle < refill.max(Duration::from_secs(60))
			});
			if self.buckets.len() >= RATE_LIMITER_MAX_KEYS {
				return false;
			}
		}
		let (tokens, last) = self.buckets.entry(key.to_vec()).or_insert((self.burst, now));
		let elapsed = now.saturating_duration_since(*last);
		let refilled = (elapsed.as_nanos() / self.refill.as_nanos()).min(u128::from(u32::MAX));
		if refilled > 0 {
			*tokens = tokens.saturating_add(refilled as u32).min(self.burst);
			*last += self.refill * refilled as u32;
			if *tokens == self.burst {
				*last = now;
			}
		}
		if *tokens == 0 {
			return false;
		}
		*tokens -= 1;
		true
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn burst_then_refill_per_key() {
		let mut limiter = RateLimiter::new(3, Duration::from_secs(1));
		let t0 = Instant::now();
		for _ in 0..3 {
			assert!(limiter.allow(b"a", t0));
		}
		assert!(!limiter.allow(b"a", t0), "burst spent");
		assert!(limiter.allow(b"b", t0), "other keys unaffected");
		assert!(!limiter.allow(b"a", t0 + Duration::from_millis(999)));
		assert!(limiter.allow(b"a", t0 + Duration::from_secs(1)), "one token back");
		assert!(!limiter.allow(b"a", t0 + Duration::from_secs(1)));
		for _ in 0..3 {
			assert!(limiter.allow(b"a", t0 + Duration::from_secs(100)));
		}
		assert!(!limiter.allow(b"a", t0 + Duration::from_secs(100)), "capped at the burst");
	}
}
