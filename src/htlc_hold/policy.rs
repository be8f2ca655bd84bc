//! The limits a sender's LSP puts on the HTLCs it holds for its peers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How much a node holds for its (often-offline) payers, and for how long.
///
/// An HTLC beyond a limit is never forwarded: it is failed back as soon as
/// LDK holds it (the hold loop's next pass, within a second), with
/// `temporary_node_failure` (LDK's own `unknown_next_peer` when its onion
/// could not be read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcHoldPolicy {
	/// HTLCs held at once for one peer.
	pub max_htlcs_per_peer: usize,
	/// Value held at once for one peer, msat.
	pub max_msat_per_peer: u64,
	/// HTLCs held at once for all peers together (committed ones: an add
	/// LDK has not committed yet locks no funds and does not count).
	pub max_htlcs: usize,
	/// A held HTLC is failed back this many blocks before LDK would time it
	/// out itself (39 blocks before the CLTV expiry of the HTLC it is to be
	/// forwarded as), so that the registry decides, and a release that comes
	/// just in time still leaves the recipient's side room to settle.
	pub deadline_margin_blocks: u32,
	/// A held HTLC is failed back after this long even if its expiry is far.
	pub max_hold: Duration,
}

impl HtlcHoldPolicy {
	/// Records a peer may have at once, whatever their state (held, refused,
	/// released, expired; committed or not): `max_htlcs_per_peer` held and as
	/// many refused (at least one). An add beyond is not recorded.
	pub fn max_records_per_peer(&self) -> usize {
		self.max_htlcs_per_peer.saturating_add(self.max_htlcs_per_peer.max(1))
	}
}

impl Default for HtlcHoldPolicy {
	fn default() -> Self {
		Self {
			max_htlcs_per_peer: 32,
			max_msat_per_peer: 10_000_000_000,
			max_htlcs: 10_000,
			deadline_margin_blocks: 12,
			max_hold: Duration::from_secs(24 * 3600),
		}
	}
}
