//! What one payer, and all payers together, may have in flight through the
//! relay: the bounds that keep a flooding peer from growing the relay's
//! records, or from holding its inbound liquidity, without limit.

use serde::{Deserialize, Serialize};

/// The relay's resource limits. Beyond any of them a new HTLC or hold is
/// refused with `temporary_trampoline_failure` (NODE|25): the payer may try
/// again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayLimits {
	/// Buckets one peer may have HTLCs in that are not resolved yet.
	pub max_live_buckets_per_peer: usize,
	/// What one peer's unresolved HTLCs may add up to, msat.
	pub max_live_msat_per_peer: u64,
	/// Held payments (waiting for an offline next node) one peer may have
	/// HTLCs in.
	pub max_held_per_peer: usize,
	/// What one peer's held payments may add up to, msat.
	pub max_held_msat_per_peer: u64,
	/// Held payments on the whole node.
	pub max_held: usize,
	/// The longest a payment is held, seconds (it is failed back earlier if
	/// its CLTV deadline comes first).
	pub max_hold_secs: u64,
}

impl Default for RelayLimits {
	/// 64 live buckets and 0.5 BTC per peer; 16 held payments and 0.1 BTC
	/// per peer, 1,000 on the node, for at most a day (the sender's-LSP
	/// hold's defaults, `HtlcHoldPolicy`, for the value and the time).
	fn default() -> Self {
		Self {
			max_live_buckets_per_peer: 64,
			max_live_msat_per_peer: 50_000_000_000,
			max_held_per_peer: 16,
			max_held_msat_per_peer: 10_000_000_000,
			max_held: 1_000,
			max_hold_secs: 24 * 3600,
		}
	}
}
