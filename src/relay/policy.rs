//! The fee and CLTV budget a trampoline node asks for relaying.

use serde::{Deserialize, Serialize};

use crate::onion::FailureMessage;

/// What this node charges to relay a trampoline payment, announced to payers in
/// `trampoline_fee_or_expiry_insufficient` (NODE|26) when they offer less.
///
/// The fee is `fee_base_msat + amount * fee_proportional_millionths / 1e6` of the
/// amount forwarded to the next node, and is kept whole: the routing fees of
/// the outgoing payment come out of what the payer offers beyond it (the node
/// keeps what routing does not spend).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrampolinePolicy {
	/// Base fee, msat.
	pub fee_base_msat: u32,
	/// Proportional fee, millionths of the forwarded amount.
	pub fee_proportional_millionths: u32,
	/// Blocks the node keeps between the incoming HTLC expiry and the expiry
	/// the next node receives.
	pub cltv_expiry_delta: u16,
}

impl Default for TrampolinePolicy {
	/// 1 sat + 0.1%, 288 blocks: between eclair's trampoline defaults and
	/// Electrum's cheapest fee level, with a delta that leaves room for an
	/// outgoing route of several hops.
	fn default() -> Self {
		Self { fee_base_msat: 1_000, fee_proportional_millionths: 1_000, cltv_expiry_delta: 288 }
	}
}

impl TrampolinePolicy {
	/// The NODE|26 answer carrying this policy.
	pub fn insufficient(&self) -> FailureMessage {
		FailureMessage::TrampolineFeeOrExpiryInsufficient {
			fee_base_msat: self.fee_base_msat,
			fee_proportional_millionths: self.fee_proportional_millionths,
			cltv_expiry_delta: self.cltv_expiry_delta,
		}
	}

	/// The fee for forwarding `amount_msat`.
	pub fn fee_msat(&self, amount_msat: u64) -> u64 {
		u64::from(self.fee_base_msat).saturating_add(
			(u128::from(amount_msat) * u128::from(self.fee_proportional_millionths) / 1_000_000)
				as u64,
		)
	}
}

/// LDK 0.2.7's `HTLC_FAIL_BACK_BUFFER`: a claimable HTLC not claimed by
/// `cltv_expiry - 39` is failed back by LDK itself (the `claim_deadline` of
/// `Event::PaymentClaimable`).
pub const LDK_FAIL_BACK_BUFFER: u32 = lightning::chain::channelmonitor::HTLC_FAIL_BACK_BUFFER;

/// Blocks kept between the latest expiry of the relay's outgoing HTLCs and
/// the claim deadline of its incoming ones: the preimage of an outgoing HTLC
/// claimed on chain at its expiry is final after `ANTI_REORG_DELAY` (6)
/// blocks, plus LDK's `LATENCY_GRACE_PERIOD_BLOCKS` (3, crate-private) and 3
/// blocks of slack for the event to be handled.
pub const CLAIM_SAFETY_BLOCKS: u32 = lightning::chain::channelmonitor::ANTI_REORG_DELAY + 3 + 3;

/// The smallest `cltv_expiry_delta` a relay may ask: with less, an honest
/// payer offering exactly the delta leaves the outgoing payment claimable
/// after LDK has failed the incoming HTLCs back.
pub const MIN_CLTV_EXPIRY_DELTA: u16 = (LDK_FAIL_BACK_BUFFER + CLAIM_SAFETY_BLOCKS + 1) as u16;
