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
	/// Also advertise Electrum's trampoline feature bit, 151 (optional), next
	/// to the spec's 57, in `init`, the node announcement and our BOLT 11
	/// invoices (default `true`): Electrum treats a peer as a trampoline,
	/// and an invoice as payable end to end through trampolines, only if it
	/// sets 149 or 151.
	///
	/// Not eclair's 149: in eclair (`Features.scala`) 148/149 is
	/// `TrampolinePaymentPrototype`, eclair's own trampoline prototype, which
	/// eclair says does not match the spec proposal, does not announce
	/// ("clients have to assume support"), and on which its feature graph
	/// hangs `AsyncPaymentPrototype` (152/153): an eclair or Phoenix peer
	/// reading 149 from us would take us for an eclair-prototype trampoline
	/// as a whole. Electrum (`lnutil.py`, `trampoline.py`
	/// `is_legacy_relay`, `lnworker.py`) accepts 149 and 151 alike and took
	/// 150/151 for itself "because Phoenix cannot do end-to-end
	/// multi-trampoline routes": 151 tells Electrum exactly what we do (the
	/// 66100 onion, legacy failures, end-to-end trampoline receive) and
	/// promises eclair's peers nothing.
	#[serde(default = "advertise_legacy_feature_bit_default")]
	pub advertise_legacy_feature_bit: bool,
}

fn advertise_legacy_feature_bit_default() -> bool {
	true
}

/// A [`TrampolinePolicy`] the relay refuses to run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
	/// The delta does not cover LDK's fail-back buffer and the claim safety
	/// margin.
	#[error(
		"trampoline cltv_expiry_delta {delta} is below the minimum of {min} blocks (LDK fails \
		 incoming HTLCs back {LDK_FAIL_BACK_BUFFER} blocks before they expire, and the outgoing \
		 payment must stop being claimable {CLAIM_SAFETY_BLOCKS} blocks before that)"
	)]
	CltvExpiryDeltaTooSmall {
		/// The delta asked for.
		delta: u16,
		/// The smallest delta accepted.
		min: u16,
	},
}

impl Default for TrampolinePolicy {
	/// 1 sat + 0.1%, 288 blocks: between eclair's trampoline defaults and
	/// Electrum's cheapest fee level, with a delta that leaves room for an
	/// outgoing route of several hops.
	fn default() -> Self {
		Self {
			fee_base_msat: 1_000,
			fee_proportional_millionths: 1_000,
			cltv_expiry_delta: 288,
			advertise_legacy_feature_bit: true,
		}
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

	/// Refuses a policy that leaves the relay exposed: a `cltv_expiry_delta`
	/// below [`MIN_CLTV_EXPIRY_DELTA`].
	pub fn validate(&self) -> Result<(), PolicyError> {
		if self.cltv_expiry_delta < MIN_CLTV_EXPIRY_DELTA {
			return Err(PolicyError::CltvExpiryDeltaTooSmall {
				delta: self.cltv_expiry_delta,
				min: MIN_CLTV_EXPIRY_DELTA,
			});
		}
		Ok(())
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

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn validate_refuses_a_delta_below_the_ldk_derived_minimum() {
		// 39 (LDK's fail-back buffer) + 12 (claim safety) + 1: the relay rule
		// wants the next node's expiry strictly below the claim bound.
		assert_eq!(MIN_CLTV_EXPIRY_DELTA, 52);
		let policy = |cltv_expiry_delta| TrampolinePolicy {
			cltv_expiry_delta,
			..TrampolinePolicy::default()
		};
		assert_eq!(policy(MIN_CLTV_EXPIRY_DELTA).validate(), Ok(()));
		assert_eq!(TrampolinePolicy::default().validate(), Ok(()));
		for delta in [0, 18, 39, MIN_CLTV_EXPIRY_DELTA - 1] {
			let err = policy(delta).validate().unwrap_err();
			assert_eq!(err, PolicyError::CltvExpiryDeltaTooSmall { delta, min: 52 });
			assert!(err.to_string().contains("minimum of 52 blocks"), "{err}");
		}
	}

	struct NoLog;
	impl lightning::util::logger::Logger for NoLog {
		fn log(&self, _: lightning::util::logger::Record) {}
	}

	#[test]
	fn relay_core_refuses_an_unsafe_policy() {
		use std::sync::Arc;

		use super::super::memory_store::MemoryStore;
		use super::super::{RelayCore, RelayError, RelayLimits};

		let keys = Arc::new(lightning::sign::KeysManager::new(&[3; 32], 1, 0, true));
		let core = |cltv_expiry_delta| {
			RelayCore::new(
				Arc::clone(&keys) as _,
				Arc::new(MemoryStore::default()),
				TrampolinePolicy { cltv_expiry_delta, ..TrampolinePolicy::default() },
				RelayLimits::default(),
				Arc::new(NoLog),
			)
		};
		let refused = core(18).err().expect("a delta of 18 is refused");
		assert!(
			matches!(
				refused,
				RelayError::Policy(PolicyError::CltvExpiryDeltaTooSmall { delta: 18, min: 52 })
			),
			"{refused:?}"
		);
		assert!(core(MIN_CLTV_EXPIRY_DELTA).is_ok());
	}
}
