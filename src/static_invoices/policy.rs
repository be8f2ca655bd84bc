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

/// Most keys a [`RateLimiter`] tracks in one window; beyond it, new keys are
/// refused until the window turns (a flood of fresh keys cannot grow memory
/// past twice this).
pub const RATE_LIMITER_MAX_KEYS: usize = 100_000;

/// The per-recipient allowance of invoice requests is this many times the
/// per-(recipient, introduction node) one: burst times the factor, refill
/// divided by it.
pub const RECIPIENT_ALLOWANCE_FACTOR: u32 = 10;

/// A token bucket per key: `burst` tokens, one more every `refill`.
///
/// Keys live in two generations, each `window` long (at least the time to
/// refill a whole burst): a call finds its key in the current generation
/// or moves it there from the previous one, and when a window ends the
/// previous generation is dropped. A key dropped so has been idle for more
/// than a window, so its bucket would be full: forgetting it changes no
/// answer. Each call costs O(1) (dropping a generation is amortized over
/// the calls that filled it), and at most [`RATE_LIMITER_MAX_KEYS`] new
/// keys are taken per window.
#[derive(Debug)]
pub struct RateLimiter {
	current: HashMap<Vec<u8>, Bucket>,
	previous: HashMap<Vec<u8>, Bucket>,
	window_start: Option<Instant>,
	window: Duration,
	burst: u32,
	refill: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
	tokens: u32,
	last: Instant,
}

impl RateLimiter {
	/// A limiter allowing `burst` requests at once, then one per `refill`.
	pub fn new(burst: u32, refill: Duration) -> Self {
		let refill = refill.max(Duration::from_micros(1));
		let window = refill.saturating_mul(burst.max(1)).max(Duration::from_secs(1));
		Self {
			current: HashMap::new(),
			previous: HashMap::new(),
			window_start: None,
			window,
			burst,
			refill,
		}
	}

	/// Keys tracked (both generations).
	pub fn tracked_keys(&self) -> usize {
		self.current.len() + self.previous.len()
	}

	fn turn_window(&mut self, now: Instant) {
		let start = *self.window_start.get_or_insert(now);
		let elapsed = now.saturating_duration_since(start);
		if elapsed < self.window {
			return;
		}
		if elapsed >= self.window.saturating_mul(2) {
			// Every key is idle for longer than a window.
			self.previous.clear();
			self.current.clear();
		} else {
			self.previous = std::mem::take(&mut self.current);
		}
		self.window_start = Some(now);
	}

	/// Takes a token for `key` at time `now`; `false` when it has none left.
	pub fn allow(&mut self, key: &[u8], now: Instant) -> bool {
		self.turn_window(now);
		if !self.current.contains_key(key) {
			let bucket = match self.previous.remove(key) {
				Some(bucket) => bucket,
				None if self.current.len() >= RATE_LIMITER_MAX_KEYS => return false,
				None => Bucket { tokens: self.burst, last: now },
			};
			self.current.insert(key.to_vec(), bucket);
		}
		let Some(bucket) = self.current.get_mut(key) else {
			return false;
		};
		let elapsed = now.saturating_duration_since(bucket.last);
		let refilled = (elapsed.as_nanos() / self.refill.as_nanos()).min(u128::from(u32::MAX));
		if refilled > 0 {
			bucket.tokens = bucket.tokens.saturating_add(refilled as u32).min(self.burst);
			bucket.last += self.refill.saturating_mul(refilled as u32);
			if bucket.tokens == self.burst {
				bucket.last = now;
			}
		}
		if bucket.tokens == 0 {
			return false;
		}
		bucket.tokens -= 1;
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

	#[test]
	fn idle_keys_are_forgotten_and_new_keys_admitted() {
		let mut limiter = RateLimiter::new(10, Duration::from_millis(100));
		let t0 = Instant::now();
		for i in 0..RATE_LIMITER_MAX_KEYS as u32 {
			assert!(limiter.allow(&i.to_be_bytes(), t0));
		}
		assert!(!limiter.allow(b"new", t0), "the window's key budget is spent");
		// An hour later every key is idle: a new recipient is served.
		let later = t0 + Duration::from_secs(3600);
		assert!(limiter.allow(b"new", later), "idle keys were never forgotten");
		assert!(limiter.tracked_keys() <= 1, "{} keys kept", limiter.tracked_keys());
	}

	#[test]
	fn a_key_keeps_its_state_across_one_window_turn() {
		// Window = 3 x 1 s. A spent key carried over a turn stays limited.
		let mut limiter = RateLimiter::new(3, Duration::from_secs(1));
		let t0 = Instant::now();
		for _ in 0..3 {
			assert!(limiter.allow(b"a", t0));
		}
		assert!(limiter.allow(b"b", t0 + Duration::from_millis(2_999)));
		// The window turns at 3 s: a has three tokens back by then, b spent one
		// 1 ms before and must not get it back early.
		let t3 = t0 + Duration::from_secs(3);
		for _ in 0..2 {
			assert!(limiter.allow(b"b", t3));
		}
		assert!(!limiter.allow(b"b", t3), "b's spent token survived the turn");
		for _ in 0..3 {
			assert!(limiter.allow(b"a", t3));
		}
		assert!(!limiter.allow(b"a", t3));
	}
}
