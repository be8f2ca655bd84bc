//! The relay's admission rules: one pure function per stage of a relayed
//! payment, of the bucket's record and of what LDK (or the payer's onion)
//! says, in the manner of eclair's `NodeRelay.validateRelay`. The handler and
//! the event hook only read, decide with these, write, and act.
//!
//! Stages: an incoming HTLC ([`check_onion_layers`], [`admit_to_bucket`]), the
//! bucket LDK reports claimable ([`check_identity`]), and what to do with it
//! ([`decide_relay`]).
//!
//! The rule behind the CLTV checks: the relay's outgoing payment must never
//! be claimable after its incoming HTLCs stop being claimable. LDK fails the
//! incoming HTLCs back at their `claim_deadline` (the lowest incoming
//! `cltv_expiry` minus [`LDK_FAIL_BACK_BUFFER`]); so every outgoing HTLC
//! expires at the latest [`CLAIM_SAFETY_BLOCKS`] before it, and a hold ends
//! before it too. The incoming `cltv_expiry` that counts is the HTLC's own,
//! never a value the payer wrote in its onion.

use super::dialect::FailReason;
use super::limits::RelayLimits;
use super::policy::{TrampolinePolicy, CLAIM_SAFETY_BLOCKS, LDK_FAIL_BACK_BUFFER};
use super::store::{BucketId, BucketRecord, BucketState, PeerLoad};
use crate::onion::FailureMessage;

/// Blocks kept between a held bucket's deadline and the CLTV its next node
/// must receive: the recipient's final delta (BOLT 11's default 18) plus a
/// margin for blocks found while the payment is forwarded.
pub const HOLD_SAFETY_BLOCKS: u32 = 18 + 6;

/// What an incoming HTLC itself carries (set by the channel, not the onion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HtlcFacts {
	/// `amount_msat`.
	pub amount_msat: u64,
	/// `cltv_expiry`.
	pub cltv_expiry: u32,
}

/// What the payer wrote in our outer onion payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OuterFacts {
	/// `amt_to_forward`.
	pub amt_to_forward: u64,
	/// `outgoing_cltv_value`.
	pub outgoing_cltv_value: u32,
	/// `payment_data.total_msat` (the HTLC's `amt_to_forward` without one).
	pub total_msat: u64,
}

/// What the payer asks us to forward, from our trampoline payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InnerFacts {
	/// `amt_to_forward`.
	pub amt_to_forward: u64,
	/// `outgoing_cltv_value`.
	pub outgoing_cltv_value: u32,
}

/// The final-node rules of the outer onion (BOLT 4) and of the trampoline
/// onion (PROTOCOL.md): the onion may not promise more than the HTLC brings,
/// and the trampoline payload no more than the outer one.
pub(crate) fn check_onion_layers(
	htlc: HtlcFacts, outer: OuterFacts, inner: InnerFacts,
) -> Result<(), FailReason> {
	check_onion_amounts(htlc, outer, inner).map_err(|message| FailReason::Verbatim { message })
}

fn check_onion_amounts(
	htlc: HtlcFacts, outer: OuterFacts, inner: InnerFacts,
) -> Result<(), FailureMessage> {
	if outer.amt_to_forward > htlc.amount_msat {
		return Err(FailureMessage::FinalIncorrectHtlcAmount {
			incoming_htlc_amt: htlc.amount_msat,
		});
	}
	if outer.outgoing_cltv_value > htlc.cltv_expiry {
		return Err(FailureMessage::FinalIncorrectCltvExpiry { cltv_expiry: htlc.cltv_expiry });
	}
	if inner.amt_to_forward > outer.total_msat {
		return Err(FailureMessage::FinalIncorrectHtlcAmount {
			incoming_htlc_amt: outer.amt_to_forward,
		});
	}
	if inner.outgoing_cltv_value > outer.outgoing_cltv_value {
		return Err(FailureMessage::FinalIncorrectCltvExpiry {
			cltv_expiry: outer.outgoing_cltv_value,
		});
	}
	Ok(())
}

/// Whether another bucket of the payment hash may still have HTLCs in LDK's
/// claimable set (LDK keeps one set per hash): a bucket not yet settled, or
/// settled with an HTLC whose fulfill or failure has not gone out.
pub(crate) fn is_live(bucket: &BucketRecord, unresolved_htlcs: usize) -> bool {
	!bucket.superseded && (!bucket.state.is_settled() || unresolved_htlcs > 0)
}

/// Whether a new (not retransmitted) HTLC may join `bucket` (`None`: it
/// would create it). `other_live` says whether another bucket of the same
/// payment hash is live ([`is_live`]); `load` is what the offering peer
/// already has in flight.
pub(crate) fn admit_to_bucket(
	id: &BucketId, bucket: Option<&BucketRecord>, other_live: bool, load: &PeerLoad,
	amount_msat: u64, limits: &RelayLimits,
) -> Result<(), FailReason> {
	match bucket {
		Some(bucket) if bucket.state != BucketState::Receiving => {
			// Already relayed or failed: a late part or a retry of the payer
			// cannot join it, and gets the bucket's answer.
			let failure = match &bucket.state {
				BucketState::Failed { reason: Some(reason), .. } => Some(reason.clone()),
				BucketState::Failed { failure, .. } => {
					FailureMessage::decode(failure).ok().map(FailReason::from_recorded)
				},
				_ => None,
			};
			return Err(failure.unwrap_or(FailReason::OverLimits));
		},
		Some(_) => {},
		// One bucket per payment hash in LDK at a time: LDK would mix them
		// in one claimable set, and a settled one's cleanup by payment hash
		// would touch the other's HTLCs.
		None if other_live => return Err(FailReason::OverLimits),
		None => {},
	}
	let new_for_peer = !load.buckets.contains(id);
	if new_for_peer && load.buckets.len() >= limits.max_live_buckets_per_peer {
		return Err(FailReason::OverLimits);
	}
	if load.msat.saturating_add(amount_msat) > limits.max_live_msat_per_peer {
		return Err(FailReason::OverLimits);
	}
	Ok(())
}

/// A claimable payment that carries a bucket's TLV but is not that bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forgery {
	/// Another payment hash.
	PaymentHash,
	/// Not paid with the secret LDK issued for the bucket (a keysend, or an
	/// invoice payment naming the bucket).
	PaymentSecret,
}

/// A claimable payment is the bucket it names only if its payment hash and
/// the payment secret LDK checked are the bucket's: the LDK-issued secret
/// never leaves this node, so nobody else can produce it.
pub(crate) fn check_identity(
	bucket: &BucketRecord, payment_hash: &[u8; 32], payment_secret: Option<&[u8; 32]>,
) -> Result<(), Forgery> {
	if bucket.payment_hash != *payment_hash {
		return Err(Forgery::PaymentHash);
	}
	if payment_secret != Some(&bucket.ldk_secret) {
		return Err(Forgery::PaymentSecret);
	}
	Ok(())
}

/// The claim deadline of a bucket: LDK's, or what LDK derives it from.
pub(crate) fn claim_deadline(bucket: &BucketRecord) -> u32 {
	bucket
		.claim_deadline
		.unwrap_or_else(|| bucket.min_incoming_cltv.saturating_sub(LDK_FAIL_BACK_BUFFER))
}

/// The latest expiry an outgoing HTLC of a bucket whose claim deadline is
/// `claim_deadline` may have: [`CLAIM_SAFETY_BLOCKS`] before it.
pub(crate) fn expiry_limit(claim_deadline: u32) -> u32 {
	claim_deadline.saturating_sub(CLAIM_SAFETY_BLOCKS)
}

/// What [`decide_relay`] is given.
#[derive(Clone, Debug)]
pub(crate) struct RelayInputs<'a> {
	/// Our policy.
	pub policy: &'a TrampolinePolicy,
	/// Our limits.
	pub limits: &'a RelayLimits,
	/// The chain height now.
	pub height: u32,
	/// Seconds since the Unix epoch now.
	pub now_secs: u64,
	/// What the claimable HTLCs bring (LDK's `amount_msat`), msat.
	pub amount_msat: u64,
	/// The lowest incoming `cltv_expiry` of the bucket's HTLCs.
	pub min_incoming_cltv: u32,
	/// LDK's claim deadline of the bucket ([`claim_deadline`]).
	pub claim_deadline: u32,
	/// What the payer asks us to forward.
	pub inner: InnerFacts,
	/// The bucket's state.
	pub state: &'a BucketState,
	/// The next node is to be waited for (our offline peer, or flagged
	/// `async_payment` and not connected).
	pub next_offline: bool,
	/// For a bucket not yet held: whether the payer's and the node's hold
	/// limits have room for it (`Err` names the limit).
	pub hold_room: Result<(), &'static str>,
}

/// How the outgoing payment may be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RelayPlan {
	/// The next node's final CLTV delta from the current height.
	pub final_cltv_delta: u32,
	/// The most blocks the outgoing route may take from the current height,
	/// final delta included: its HTLCs expire at least
	/// [`CLAIM_SAFETY_BLOCKS`] before the incoming claim deadline.
	pub max_total_cltv_expiry_delta: u32,
	/// The most the outgoing route may spend in fees: the payer's surplus
	/// beyond our fee.
	pub max_routing_fee_msat: u64,
	/// The latest expiry any outgoing HTLC may have, LDK's retries included
	/// ([`expiry_limit`]): LDK applies `max_total_cltv_expiry_delta` to the
	/// height of each attempt, so the router clamps each attempt to this.
	pub expiry_limit: u32,
}

/// What to do with a complete bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RelayDecision {
	/// Pay the next node within this plan.
	Relay(RelayPlan),
	/// Hold it until the next node is back, at most until this height.
	Hold {
		/// The height at which it is failed back if still held.
		deadline_height: u32,
	},
	/// It is held and stays so.
	KeepHolding,
	/// Fail it back for this reason.
	Fail(FailReason),
}

/// The relay decision for a complete bucket (LDK reported it claimable, or
/// the hold loop looks at it again).
pub(crate) fn decide_relay(input: &RelayInputs<'_>) -> RelayDecision {
	let RelayInputs { policy, limits, height, now_secs, amount_msat, inner, .. } = *input;
	let claim_bound = expiry_limit(input.claim_deadline);
	if let BucketState::Held { deadline_height, since_secs, .. } = input.state {
		if height >= *deadline_height || height >= claim_bound {
			return RelayDecision::Fail(FailReason::HoldExpired);
		}
		if now_secs >= since_secs.saturating_add(limits.max_hold_secs) {
			return RelayDecision::Fail(FailReason::HoldExpired);
		}
	}
	let fee = policy.fee_msat(inner.amt_to_forward);
	let Some(max_routing_fee_msat) =
		amount_msat.checked_sub(inner.amt_to_forward).and_then(|s| s.checked_sub(fee))
	else {
		return RelayDecision::Fail(FailReason::FeeInsufficient);
	};
	let cltv_budget = input.min_incoming_cltv.saturating_sub(inner.outgoing_cltv_value);
	if cltv_budget < u32::from(policy.cltv_expiry_delta)
		|| inner.outgoing_cltv_value <= height
		// The final hop alone must fit before the claim deadline (with
		// LDK's extra block).
		|| inner.outgoing_cltv_value.saturating_add(1) >= claim_bound
	{
		return RelayDecision::Fail(FailReason::ExpiryTooSoon);
	}

	let holdable = matches!(input.state, BucketState::Receiving | BucketState::Held { .. });
	if input.next_offline && holdable {
		let deadline_height = inner
			.outgoing_cltv_value
			.saturating_sub(HOLD_SAFETY_BLOCKS)
			.min(claim_bound.saturating_sub(1));
		if height >= deadline_height {
			return RelayDecision::Fail(FailReason::HoldExpired);
		}
		if matches!(input.state, BucketState::Held { .. }) {
			return RelayDecision::KeepHolding;
		}
		if input.hold_room.is_err() {
			return RelayDecision::Fail(FailReason::OverLimits);
		}
		return RelayDecision::Hold { deadline_height };
	}

	let final_cltv_delta = inner.outgoing_cltv_value - height;
	// LDK's router wants the limit strictly above the final delta: when the
	// payer offered exactly our delta, the outgoing route may take one block
	// of it (we keep `cltv_expiry_delta - 1`), but never past the claim
	// bound.
	let by_policy = input
		.min_incoming_cltv
		.saturating_sub(u32::from(policy.cltv_expiry_delta))
		.saturating_sub(height)
		.max(final_cltv_delta.saturating_add(1));
	// LDK sets the first outgoing HTLC's expiry at height + 1 + the route's
	// total: one block less, so that it ends within the claim bound.
	let max_total_cltv_expiry_delta = by_policy.min(claim_bound - height - 1);
	RelayDecision::Relay(RelayPlan {
		final_cltv_delta,
		max_total_cltv_expiry_delta,
		max_routing_fee_msat,
		expiry_limit: claim_bound,
	})
}

#[cfg(test)]
mod tests {
	use super::*;

	const HEIGHT: u32 = 1_000;

	fn policy() -> TrampolinePolicy {
		TrampolinePolicy {
			fee_base_msat: 1_000,
			fee_proportional_millionths: 1_000,
			cltv_expiry_delta: 144,
			..TrampolinePolicy::default()
		}
	}

	fn bucket(state: BucketState) -> BucketRecord {
		BucketRecord {
			payment_hash: [1; 32],
			outer_secret: [2; 32],
			outer_total_msat: 1_000_000,
			ldk_secret: [3; 32],
			min_incoming_cltv: HEIGHT + 300,
			trampoline_payload: Vec::new(),
			next_packet: None,
			payment_id: None,
			state,
			claim_deadline: None,
			superseded: false,
			dialect: Default::default(),
		}
	}

	fn htlc() -> HtlcFacts {
		HtlcFacts { amount_msat: 1_002_000, cltv_expiry: HEIGHT + 300 }
	}

	fn outer() -> OuterFacts {
		OuterFacts {
			amt_to_forward: 1_002_000,
			outgoing_cltv_value: HEIGHT + 300,
			total_msat: 1_002_000,
		}
	}

	fn inner() -> InnerFacts {
		InnerFacts { amt_to_forward: 1_000_000, outgoing_cltv_value: HEIGHT + 100 }
	}

	#[test]
	fn onion_layers_may_not_promise_more_than_the_htlc() {
		assert_eq!(check_onion_layers(htlc(), outer(), inner()), Ok(()));
		// The payer may give more than its onion says.
		let low = OuterFacts { amt_to_forward: 1, outgoing_cltv_value: HEIGHT + 100, ..outer() };
		assert_eq!(check_onion_layers(htlc(), low, inner()), Ok(()));
		let amount = OuterFacts { amt_to_forward: 1_002_001, ..outer() };
		assert_eq!(
			check_onion_layers(htlc(), amount, inner()),
			Err(FailReason::Verbatim {
				message: FailureMessage::FinalIncorrectHtlcAmount { incoming_htlc_amt: 1_002_000 }
			})
		);
		let cltv = OuterFacts { outgoing_cltv_value: HEIGHT + 301, ..outer() };
		assert_eq!(
			check_onion_layers(htlc(), cltv, inner()),
			Err(FailReason::Verbatim {
				message: FailureMessage::FinalIncorrectCltvExpiry { cltv_expiry: HEIGHT + 300 }
			})
		);
		let total = OuterFacts { total_msat: 999_999, ..outer() };
		assert!(matches!(
			check_onion_layers(htlc(), total, inner()),
			Err(FailReason::Verbatim { message: FailureMessage::FinalIncorrectHtlcAmount { .. } })
		));
		let inner_cltv = InnerFacts { outgoing_cltv_value: HEIGHT + 301, ..inner() };
		assert!(matches!(
			check_onion_layers(htlc(), outer(), inner_cltv),
			Err(FailReason::Verbatim { message: FailureMessage::FinalIncorrectCltvExpiry { .. } })
		));
	}

	fn limits() -> RelayLimits {
		RelayLimits {
			max_live_buckets_per_peer: 2,
			max_live_msat_per_peer: 5_000,
			..Default::default()
		}
	}

	#[test]
	fn a_bucket_admits_parts_while_receiving_only() {
		let load = PeerLoad::default();
		let receiving = bucket(BucketState::Receiving);
		assert_eq!(admit_to_bucket(&[9; 32], Some(&receiving), false, &load, 1, &limits()), Ok(()));
		let failed = bucket(BucketState::Failed {
			failure: FailureMessage::MppTimeout.encode(),
			forwarded: None,
			reason: None,
		});
		assert_eq!(
			admit_to_bucket(&[9; 32], Some(&failed), false, &load, 1, &limits()),
			Err(FailReason::MppTimeout)
		);
		// A bucket failed with a reason: a late part gets that reason (the
		// handler puts it in the payer's dialect).
		let expired = bucket(BucketState::Failed {
			failure: FailureMessage::TemporaryTrampolineFailure.encode(),
			forwarded: None,
			reason: Some(FailReason::HoldExpired),
		});
		assert_eq!(
			admit_to_bucket(&[9; 32], Some(&expired), false, &load, 1, &limits()),
			Err(FailReason::HoldExpired)
		);
		let sending = bucket(BucketState::Sending { payment_id: [0; 32] });
		assert_eq!(
			admit_to_bucket(&[9; 32], Some(&sending), false, &load, 1, &limits()),
			Err(FailReason::OverLimits)
		);
	}

	#[test]
	fn one_live_bucket_per_payment_hash() {
		let load = PeerLoad::default();
		assert_eq!(
			admit_to_bucket(&[9; 32], None, true, &load, 1, &limits()),
			Err(FailReason::OverLimits)
		);
		assert_eq!(admit_to_bucket(&[9; 32], None, false, &load, 1, &limits()), Ok(()));
		// Live: not settled, or settled with an HTLC still out.
		assert!(is_live(&bucket(BucketState::Sending { payment_id: [0; 32] }), 0));
		let failed =
			bucket(BucketState::Failed { failure: Vec::new(), forwarded: None, reason: None });
		assert!(is_live(&failed, 1));
		assert!(!is_live(&failed, 0));
		assert!(!is_live(&BucketRecord { superseded: true, ..failed }, 1));
	}

	#[test]
	fn a_payer_is_bounded_in_live_buckets_and_value() {
		let mut load = PeerLoad::default();
		load.buckets.insert([1; 32]);
		load.buckets.insert([2; 32]);
		load.msat = 4_000;
		// A third bucket is refused, a part of one it has is not.
		assert_eq!(
			admit_to_bucket(&[3; 32], None, false, &load, 1, &limits()),
			Err(FailReason::OverLimits)
		);
		let receiving = bucket(BucketState::Receiving);
		assert_eq!(
			admit_to_bucket(&[2; 32], Some(&receiving), false, &load, 1_000, &limits()),
			Ok(())
		);
		assert_eq!(
			admit_to_bucket(&[2; 32], Some(&receiving), false, &load, 1_001, &limits()),
			Err(FailReason::OverLimits)
		);
		load.msat = u64::MAX;
		assert!(admit_to_bucket(&[2; 32], Some(&receiving), false, &load, 1, &limits()).is_err());
	}

	#[test]
	fn only_the_ldk_issued_secret_and_hash_identify_a_bucket() {
		let b = bucket(BucketState::Receiving);
		assert_eq!(check_identity(&b, &[1; 32], Some(&[3; 32])), Ok(()));
		assert_eq!(check_identity(&b, &[1; 32], None), Err(Forgery::PaymentSecret));
		assert_eq!(check_identity(&b, &[1; 32], Some(&[4; 32])), Err(Forgery::PaymentSecret));
		assert_eq!(check_identity(&b, &[5; 32], Some(&[3; 32])), Err(Forgery::PaymentHash));
	}

	fn input<'a>(
		policy: &'a TrampolinePolicy, limits: &'a RelayLimits, state: &'a BucketState,
	) -> RelayInputs<'a> {
		let min_incoming_cltv = HEIGHT + 300;
		RelayInputs {
			policy,
			limits,
			height: HEIGHT,
			now_secs: 1_000_000,
			amount_msat: 1_002_000,
			min_incoming_cltv,
			claim_deadline: min_incoming_cltv - LDK_FAIL_BACK_BUFFER,
			inner: inner(),
			state,
			next_offline: false,
			hold_room: Ok(()),
		}
	}

	#[test]
	fn relays_within_the_fee_and_before_the_claim_deadline() {
		let (policy, limits, state) = (policy(), RelayLimits::default(), BucketState::Receiving);
		let RelayDecision::Relay(plan) = decide_relay(&input(&policy, &limits, &state)) else {
			panic!("relayed");
		};
		assert_eq!(plan.final_cltv_delta, 100);
		assert_eq!(plan.max_routing_fee_msat, 0);
		// 300 - 144 from the policy; the claim bound (300 - 39 - 12) is later.
		assert_eq!(plan.max_total_cltv_expiry_delta, 156);
		// Every attempt, a retry blocks later too, ends by the claim bound.
		assert_eq!(plan.expiry_limit, HEIGHT + 300 - 39 - 12);
	}

	#[test]
	fn the_claim_deadline_bounds_the_outgoing_route() {
		let (policy, limits, state) = (policy(), RelayLimits::default(), BucketState::Receiving);
		// LDK says it fails the HTLCs back earlier than their expiry implies
		// (an onion value it was handed): the outgoing route must fit before.
		let early = RelayInputs { claim_deadline: HEIGHT + 130, ..input(&policy, &limits, &state) };
		let RelayDecision::Relay(plan) = decide_relay(&early) else { panic!("relayed") };
		// One block less than the room: LDK adds one to the first hop.
		assert_eq!(plan.max_total_cltv_expiry_delta, 130 - CLAIM_SAFETY_BLOCKS - 1);
		// The route takes all the room: the first attempt's HTLC (at
		// height + 1 + the limit) expires at the limit.
		assert_eq!(plan.expiry_limit, HEIGHT + 130 - CLAIM_SAFETY_BLOCKS);
		assert_eq!(HEIGHT + 1 + plan.max_total_cltv_expiry_delta, plan.expiry_limit);
		// No room even for the final hop: the payer must offer more.
		let late = RelayInputs { claim_deadline: HEIGHT + 112, ..input(&policy, &limits, &state) };
		assert_eq!(decide_relay(&late), RelayDecision::Fail(FailReason::ExpiryTooSoon));
		// A policy delta below the minimum cannot push the route past it.
		let tiny = TrampolinePolicy { cltv_expiry_delta: 1, ..policy };
		let exact = RelayInputs {
			min_incoming_cltv: HEIGHT + 101,
			claim_deadline: HEIGHT + 101 - LDK_FAIL_BACK_BUFFER,
			..input(&tiny, &limits, &state)
		};
		assert_eq!(decide_relay(&exact), RelayDecision::Fail(FailReason::ExpiryTooSoon));
	}

	#[test]
	fn fee_and_cltv_shortfalls_get_the_policy() {
		let (policy, limits, state) = (policy(), RelayLimits::default(), BucketState::Receiving);
		let short = RelayInputs { amount_msat: 1_001_999, ..input(&policy, &limits, &state) };
		assert_eq!(decide_relay(&short), RelayDecision::Fail(FailReason::FeeInsufficient));
		let cltv =
			RelayInputs { min_incoming_cltv: HEIGHT + 243, ..input(&policy, &limits, &state) };
		assert_eq!(decide_relay(&cltv), RelayDecision::Fail(FailReason::ExpiryTooSoon));
		let expired = RelayInputs {
			inner: InnerFacts { outgoing_cltv_value: HEIGHT, ..inner() },
			..input(&policy, &limits, &state)
		};
		assert_eq!(decide_relay(&expired), RelayDecision::Fail(FailReason::ExpiryTooSoon));
		let huge = RelayInputs {
			inner: InnerFacts { amt_to_forward: u64::MAX, ..inner() },
			..input(&policy, &limits, &state)
		};
		assert_eq!(decide_relay(&huge), RelayDecision::Fail(FailReason::FeeInsufficient));
	}

	#[test]
	fn holds_are_bounded_by_deadline_time_and_room() {
		let (policy, limits) = (policy(), RelayLimits::default());
		let receiving = BucketState::Receiving;
		let offline = RelayInputs { next_offline: true, ..input(&policy, &limits, &receiving) };
		assert_eq!(
			decide_relay(&offline),
			RelayDecision::Hold { deadline_height: HEIGHT + 100 - HOLD_SAFETY_BLOCKS }
		);
		let full = RelayInputs { hold_room: Err("max_held_per_peer"), ..offline.clone() };
		assert_eq!(decide_relay(&full), RelayDecision::Fail(FailReason::OverLimits));
		let held = BucketState::Held {
			amount_msat: 1_002_000,
			since_secs: 1_000_000,
			deadline_height: HEIGHT + 76,
		};
		let waiting = RelayInputs { next_offline: true, ..input(&policy, &limits, &held) };
		assert_eq!(decide_relay(&waiting), RelayDecision::KeepHolding);
		// Back online: relayed.
		let back = RelayInputs { next_offline: false, ..waiting.clone() };
		assert!(matches!(decide_relay(&back), RelayDecision::Relay(_)));
		// Past the deadline, or held for longer than allowed: failed back.
		let late = RelayInputs { height: HEIGHT + 76, ..waiting.clone() };
		assert_eq!(decide_relay(&late), RelayDecision::Fail(FailReason::HoldExpired));
		let long = RelayInputs { now_secs: 1_000_000 + limits.max_hold_secs, ..waiting };
		assert_eq!(decide_relay(&long), RelayDecision::Fail(FailReason::HoldExpired));
	}
}
