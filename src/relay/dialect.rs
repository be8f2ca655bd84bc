//! The two trampoline dialects a payer may speak, and the one function that
//! turns every reason the relay fails a payment for into the failure message
//! of the payer's dialect ([`wire_failure`]).
//!
//! # Which dialect
//!
//! The dialect is the TLV the payer put the trampoline onion in, in the outer
//! payload of its HTLC to us: type 20 (`trampoline_onion_packet`, the BOLT 4
//! trampoline branch) is [`Dialect::Spec`], type 66100 (the experimental
//! number eclair, Phoenix and Electrum still send) is [`Dialect::Legacy`]. The
//! payload inside the trampoline onion does not decide it: our own sender
//! writes the legacy "trampoline to legacy recipient" payload (66097-66099)
//! inside a type-20 onion and reads spec failures, and Electrum writes 66098
//! inside 66100.
//!
//! # How each dialect reads failures
//!
//! *Spec*: the trampoline creates the failure with its trampoline onion's
//! shared secret and wraps it once more with its outer onion's; the payer
//! peels its outer secrets, then its trampoline secrets (the proposal's
//! "Returning errors"). Codes 25/26/27.
//!
//! *Legacy*: the failure is created (HMAC with `um`, first `ammag`
//! obfuscation) with the **outer onion's shared secret only**, as for any
//! final node:
//!
//! - Electrum decodes a failure with the secrets of the outer route alone:
//!   `lnworker.py` (`htlc_failed` -> `chan.decode_onion_error(error_bytes,
//!   route, htlc_id)`, `route` being the outer route to its trampoline) and
//!   `lnonion.py` (`_decode_onion_error`: for each hop of that route, XOR the
//!   `ammag` stream, compare the HMAC with `um`;
//!   `get_failure_msg_from_onion_error` then reads `failure_len` and the
//!   code). A packet it cannot match leaves `sender_idx = None`, and its pay
//!   loop then indexes `route[None]` and dies with a `TypeError` (4.3.4).
//! - eclair's trampoline relay does the same for the payers it relays for:
//!   `NodeRelay.scala` (`rejectPayment` -> `CMD_FAIL_HTLC(...,
//!   FailureReason.LocalFailure(failure))`, failures of the next node
//!   decrypted and re-issued as its own, `translateError`), and
//!   `PaymentPacket.scala` `buildHtlcFailure`: `Sphinx.FailurePacket.create(
//!   ss.outerOnionSecret, failure)` then `wrap(packet, ss.outerOnionSecret)`
//!   (`Sphinx.scala`: `create` is the `um` HMAC, `wrap` the `ammag` stream).
//!   eclair's own trampoline sender decrypts with the outer secrets too
//!   (`TrampolinePaymentLifecycle.scala`, `PaymentLifecycle.scala`).
//!
//! Legacy codes: `trampoline_fee_insufficient` (NODE|51) and
//! `trampoline_expiry_too_soon` (NODE|52), without data (eclair's
//! `FailureMessage.scala` gives them only the optional TLV stream; Electrum's
//! own forwarder raises them with `data=b''`), and the BOLT 4 codes. What
//! Electrum's pay loop (`lnworker.py` `pay_to_node`, 4.3.4 and 4.8.1) does
//! with each decides the choices below: NODE|51, NODE|52 and
//! `temporary_channel_failure` raise its trampoline fee level and retry;
//! `unknown_next_peer` and `temporary_node_failure` mark that trampoline route
//! failed and try another (with two trampolines it first falls back to one);
//! `mpp_timeout` and every other code (25, 26 and 27 included) end the
//! payment. "Another route" is a trap with one trampoline: Electrum 4.3.4
//! builds the same route again and its second identical failure trips
//! `assert r not in self.failed_trampoline_routes` (`lnworker.py` 1353),
//! ending `lnpay` with an AssertionError instead of a failed payment
//! (seen in `plugin-tests/electrum.rs`, case `unknown_recipient`). So an
//! unreachable next node is NODE|51, as eclair answers `RouteNotFound`:
//! Electrum raises its fee level until its table runs out, then fails
//! the payment cleanly (`NoPathFound`).

use serde::{Deserialize, Serialize};

use super::policy::TrampolinePolicy;
use crate::onion::{FailureMessage, TlvLayout};
use crate::sender::RelayedFailure;

/// Electrum's trampoline feature bit (optional; 150 is its required twin),
/// which we advertise next to the spec's 57 when
/// [`TrampolinePolicy::advertise_legacy_feature_bit`] is set (see there why
/// not eclair's 149).
pub const LEGACY_TRAMPOLINE_FEATURE_BIT: usize = 151;

/// `le_flags` (a feature vector, least significant byte first) with `bit`
/// set: LDK refuses custom bits below 256 through its setters, so features
/// are rebuilt from their bytes (`Features::from_le_bytes`).
pub fn with_feature_bit(le_flags: &[u8], bit: usize) -> Vec<u8> {
	let mut flags = le_flags.to_vec();
	let byte = bit / 8;
	if flags.len() <= byte {
		flags.resize(byte + 1, 0);
	}
	flags[byte] |= 1 << (bit % 8);
	flags
}

/// The trampoline dialect a payer spoke to us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
	/// The trampoline onion came in type 20: failures 25/26/27, wrapped with
	/// our trampoline then our outer secret. Records written before the
	/// dialect was recorded read as this (the only answer they had).
	#[default]
	Spec,
	/// The trampoline onion came in type 66100 (eclair, Phoenix, Electrum):
	/// legacy codes, created with our outer secret only.
	Legacy,
}

impl Dialect {
	/// The dialect of a payer whose outer payload carried the trampoline
	/// onion in `layout` (type 20 or 66100).
	pub fn of_outer_onion(layout: TlvLayout) -> Self {
		match layout {
			TlvLayout::Spec => Self::Spec,
			TlvLayout::Legacy => Self::Legacy,
		}
	}

	/// Its name, as in records and metric labels: `spec` or `legacy`.
	pub fn name(self) -> &'static str {
		match self {
			Self::Spec => "spec",
			Self::Legacy => "legacy",
		}
	}
}

/// Why the relay fails a trampoline HTLC or bucket back: every reason, in the
/// relay's own terms. [`wire_failure`] says what each payer is told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum FailReason {
	/// The payer left us less than our policy's fee.
	FeeInsufficient,
	/// The payer left us less than our CLTV delta, or an expiry already
	/// (nearly) past.
	ExpiryTooSoon,
	/// No route to the next node within what the payer left for routing; one
	/// exists without its limits (eclair answers RouteNotFound the same way:
	/// the payer should offer more).
	NoRouteWithinBudget,
	/// Routes to the next node exist but lack the liquidity.
	NoLiquidity,
	/// The next node is unknown or cannot be reached at all, or needs
	/// features we do not have.
	UnknownNextNode,
	/// A held bucket reached its deadline (or the longest hold) before the
	/// next node came back.
	HoldExpired,
	/// The payer's (or the node's) limits on live or held payments are full,
	/// or another bucket of the payment hash is still live.
	OverLimits,
	/// The payer split the payment over several trampolines (inner total
	/// above the inner amount), which is not relayed yet.
	PayerSplit,
	/// A node between us and the next trampoline failed our HTLC (its
	/// channel onwards unusable, our fee to it too low): another attempt,
	/// paid more, may take another route.
	FailedOnTheWay,
	/// The next trampoline failed our HTLC at its outer layer with this
	/// (readable) message.
	NextNodeFailed {
		/// What it said.
		#[serde(with = "encoded_failure")]
		message: FailureMessage,
	},
	/// A failure from further down the trampoline route, encrypted for the
	/// payer, that a legacy payer cannot read (it decrypts outer layers
	/// only).
	DownstreamUnreadable,
	/// The recipient rejected the payment (LDK does not hand us its bytes).
	RecipientRejected {
		/// What the bucket brought in, msat.
		htlc_msat: u64,
		/// Our height.
		height: u32,
	},
	/// LDK gave up on an incomplete bucket.
	MppTimeout,
	/// A shape of trampoline payment this version does not relay (inside a
	/// blinded path).
	Unsupported,
	/// Our own trouble: the store, LDK refusing a payment secret or the send.
	Internal,
	/// The payer's own onion is wrong (unpeelable trampoline onion, bad
	/// payload, amounts or expiries the HTLC does not carry), or we are the
	/// final recipient and this is its answer: the same message in both
	/// dialects.
	Verbatim {
		/// The message.
		#[serde(with = "encoded_failure")]
		message: FailureMessage,
	},
}

impl FailReason {
	/// Its name, as in records (the `reason` tag) and metric labels.
	pub fn name(&self) -> &'static str {
		match self {
			Self::FeeInsufficient => "fee_insufficient",
			Self::ExpiryTooSoon => "expiry_too_soon",
			Self::NoRouteWithinBudget => "no_route_within_budget",
			Self::NoLiquidity => "no_liquidity",
			Self::UnknownNextNode => "unknown_next_node",
			Self::HoldExpired => "hold_expired",
			Self::OverLimits => "over_limits",
			Self::PayerSplit => "payer_split",
			Self::FailedOnTheWay => "failed_on_the_way",
			Self::NextNodeFailed { .. } => "next_node_failed",
			Self::DownstreamUnreadable => "downstream_unreadable",
			Self::RecipientRejected { .. } => "recipient_rejected",
			Self::MppTimeout => "mpp_timeout",
			Self::Unsupported => "unsupported",
			Self::Internal => "internal",
			Self::Verbatim { .. } => "verbatim",
		}
	}

	/// The reason behind a spec failure recorded by a version that stored
	/// only the message (records written before reasons were).
	pub fn from_recorded(message: FailureMessage) -> Self {
		match message {
			FailureMessage::TrampolineFeeOrExpiryInsufficient { .. } => Self::FeeInsufficient,
			FailureMessage::TemporaryTrampolineFailure => Self::Internal,
			FailureMessage::UnknownNextTrampoline => Self::UnknownNextNode,
			FailureMessage::MppTimeout => Self::MppTimeout,
			FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat, height } => {
				Self::RecipientRejected { htlc_msat, height }
			},
			message => Self::Verbatim { message },
		}
	}
}

/// What a payer speaking `dialect` is told when our outgoing payment to the
/// next trampoline failed with `relayed`: a reason, a packet from further
/// down to pass back (`Err`, spec payers only), or `None`: decide from LDK's
/// view of the payment.
///
/// - A packet encrypted for the payer (from a later trampoline or the
///   recipient's trampoline layer): passed back to a spec payer; a legacy
///   payer decrypts outer layers only and cannot read it:
///   [`FailReason::DownstreamUnreadable`].
/// - The next trampoline's own readable answer: passed on to a legacy payer
///   (eclair's `translateError` does so; a second trampoline's NODE|51
///   raises the payer's fee level); for a spec payer LDK's view decides, as
///   before.
/// - A node on the way failed: [`FailReason::FailedOnTheWay`].
pub fn answer_relayed(
	relayed: RelayedFailure, dialect: Dialect,
) -> Option<Result<FailReason, Vec<u8>>> {
	match (relayed, dialect) {
		(RelayedFailure::Opaque(_), Dialect::Legacy) => Some(Ok(FailReason::DownstreamUnreadable)),
		(RelayedFailure::Opaque(packet), Dialect::Spec) => Some(Err(packet)),
		(RelayedFailure::Outer(message), Dialect::Legacy) => {
			Some(Ok(FailReason::NextNodeFailed { message }))
		},
		(RelayedFailure::Outer(_), Dialect::Spec) => None,
		(RelayedFailure::OnTheWay(_), _) => Some(Ok(FailReason::FailedOnTheWay)),
	}
}

/// The failure message a payer speaking `dialect` gets for `reason`, with
/// our `policy` in the spec's NODE|26. The one place the relay's reasons
/// become codes.
///
/// Legacy choices, for what Electrum's pay loop does with them (see the
/// module documentation): what more fee could fix (our fee or delta, no
/// route within the budget, a failure on the way to the next trampoline) is
/// NODE|51, NODE|52 or `temporary_channel_failure`, so that it raises its fee
/// level; what another trampoline route could fix (no liquidity, limits, a
/// hold that expired, our own trouble, a split we do not relay, a failure it
/// could not read) is `temporary_node_failure`; an unknown or unreachable
/// next node is NODE|51 (see the module documentation); a readable failure of the next trampoline is passed
/// on as it is, as eclair does (a NODE|51 of a second trampoline then raises
/// the payer's fee level, which Electrum applies to every trampoline).
pub fn wire_failure(
	reason: &FailReason, dialect: Dialect, policy: &TrampolinePolicy,
) -> FailureMessage {
	use FailReason as R;
	match dialect {
		Dialect::Spec => match reason {
			R::FeeInsufficient | R::ExpiryTooSoon | R::NoRouteWithinBudget => policy.insufficient(),
			R::UnknownNextNode => FailureMessage::UnknownNextTrampoline,
			R::NoLiquidity
			| R::HoldExpired
			| R::OverLimits
			| R::PayerSplit
			| R::FailedOnTheWay
			| R::NextNodeFailed { .. }
			| R::DownstreamUnreadable
			| R::Unsupported
			| R::Internal => FailureMessage::TemporaryTrampolineFailure,
			R::RecipientRejected { htlc_msat, height } => {
				FailureMessage::IncorrectOrUnknownPaymentDetails {
					htlc_msat: *htlc_msat,
					height: *height,
				}
			},
			R::MppTimeout => FailureMessage::MppTimeout,
			R::Verbatim { message } => message.clone(),
		},
		Dialect::Legacy => match reason {
			R::FeeInsufficient | R::NoRouteWithinBudget | R::UnknownNextNode => {
				FailureMessage::TrampolineFeeInsufficient
			},
			R::ExpiryTooSoon => FailureMessage::TrampolineExpiryTooSoon,
			R::FailedOnTheWay => {
				FailureMessage::TemporaryChannelFailure { channel_update: Vec::new() }
			},
			R::NoLiquidity
			| R::HoldExpired
			| R::OverLimits
			| R::PayerSplit
			| R::DownstreamUnreadable
			| R::Unsupported
			| R::Internal => FailureMessage::TemporaryNodeFailure,
			R::NextNodeFailed { message } => legacy_readable(message),
			R::RecipientRejected { htlc_msat, height } => {
				FailureMessage::IncorrectOrUnknownPaymentDetails {
					htlc_msat: *htlc_msat,
					height: *height,
				}
			},
			R::MppTimeout => FailureMessage::MppTimeout,
			R::Verbatim { message } => legacy_readable(message),
		},
	}
}

/// A [`FailureMessage`] in a record: its BOLT 4 encoding.
mod encoded_failure {
	use serde::{Deserialize, Deserializer, Serialize, Serializer};

	use crate::onion::FailureMessage;

	pub(super) fn serialize<S: Serializer>(
		message: &FailureMessage, serializer: S,
	) -> Result<S::Ok, S::Error> {
		message.encode().serialize(serializer)
	}

	pub(super) fn deserialize<'de, D: Deserializer<'de>>(
		deserializer: D,
	) -> Result<FailureMessage, D::Error> {
		let bytes = Vec::<u8>::deserialize(deserializer)?;
		FailureMessage::decode(&bytes).map_err(serde::de::Error::custom)
	}
}

/// `message` for a legacy payer: the spec-only trampoline codes (which every
/// legacy wallet answers by giving up) become their legacy counterparts; the
/// rest is a BOLT 4 code it knows.
fn legacy_readable(message: &FailureMessage) -> FailureMessage {
	match message {
		FailureMessage::TrampolineFeeOrExpiryInsufficient { .. } => {
			FailureMessage::TrampolineFeeInsufficient
		},
		FailureMessage::TemporaryTrampolineFailure => FailureMessage::TemporaryNodeFailure,
		FailureMessage::UnknownNextTrampoline => FailureMessage::UnknownNextPeer,
		other => other.clone(),
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::onion::codes;

	fn policy() -> TrampolinePolicy {
		TrampolinePolicy {
			fee_base_msat: 1_000,
			fee_proportional_millionths: 100,
			cltv_expiry_delta: 144,
			..TrampolinePolicy::default()
		}
	}

	fn code(reason: FailReason, dialect: Dialect) -> u16 {
		wire_failure(&reason, dialect, &policy()).code()
	}

	const NODE_26: u16 = codes::TRAMPOLINE_FEE_OR_EXPIRY_INSUFFICIENT;

	/// One of each reason.
	fn every_reason() -> [FailReason; 16] {
		[
			FailReason::FeeInsufficient,
			FailReason::ExpiryTooSoon,
			FailReason::NoRouteWithinBudget,
			FailReason::NoLiquidity,
			FailReason::UnknownNextNode,
			FailReason::HoldExpired,
			FailReason::OverLimits,
			FailReason::PayerSplit,
			FailReason::FailedOnTheWay,
			FailReason::NextNodeFailed { message: FailureMessage::TemporaryTrampolineFailure },
			FailReason::DownstreamUnreadable,
			FailReason::RecipientRejected { htlc_msat: 1, height: 1 },
			FailReason::MppTimeout,
			FailReason::Unsupported,
			FailReason::Internal,
			FailReason::Verbatim { message: FailureMessage::UnknownNextTrampoline },
		]
	}

	#[test]
	fn bit_151_is_set_in_le_flags() {
		use lightning::types::features::InitFeatures;
		let mut features = InitFeatures::empty();
		features.set_trampoline_routing_optional();
		let with = InitFeatures::from_le_bytes(with_feature_bit(
			features.le_flags(),
			LEGACY_TRAMPOLINE_FEATURE_BIT,
		));
		assert!(with.supports_trampoline_routing());
		assert_eq!(with.le_flags().len(), 19);
		assert_eq!(with.le_flags()[18], 0x80);
		assert!(!with.requires_unknown_bits(), "151 is optional");
		assert!(crate::sender::speaks_trampoline(&with));
		// Idempotent, and keeps the other bits.
		assert_eq!(with_feature_bit(with.le_flags(), 151), with.le_flags());
		assert_eq!(with_feature_bit(&[0xff], 9), vec![0xff, 0x02]);
	}

	#[test]
	fn the_dialect_is_the_outer_onion_type() {
		assert_eq!(Dialect::of_outer_onion(TlvLayout::Spec), Dialect::Spec);
		assert_eq!(Dialect::of_outer_onion(TlvLayout::Legacy), Dialect::Legacy);
		assert_eq!(Dialect::default(), Dialect::Spec);
	}

	#[test]
	fn fee_insufficient() {
		assert_eq!(
			wire_failure(&FailReason::FeeInsufficient, Dialect::Spec, &policy()),
			policy().insufficient()
		);
		assert_eq!(
			wire_failure(&FailReason::FeeInsufficient, Dialect::Legacy, &policy()),
			FailureMessage::TrampolineFeeInsufficient
		);
		assert_eq!(code(FailReason::FeeInsufficient, Dialect::Legacy), 0x2033);
	}

	#[test]
	fn expiry_too_soon() {
		assert_eq!(code(FailReason::ExpiryTooSoon, Dialect::Spec), NODE_26);
		assert_eq!(
			wire_failure(&FailReason::ExpiryTooSoon, Dialect::Legacy, &policy()),
			FailureMessage::TrampolineExpiryTooSoon
		);
		assert_eq!(code(FailReason::ExpiryTooSoon, Dialect::Legacy), 0x2034);
	}

	#[test]
	fn no_route_within_budget() {
		assert_eq!(code(FailReason::NoRouteWithinBudget, Dialect::Spec), NODE_26);
		assert_eq!(
			code(FailReason::NoRouteWithinBudget, Dialect::Legacy),
			codes::TRAMPOLINE_FEE_INSUFFICIENT
		);
	}

	#[test]
	fn no_liquidity() {
		assert_eq!(
			code(FailReason::NoLiquidity, Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		assert_eq!(code(FailReason::NoLiquidity, Dialect::Legacy), codes::TEMPORARY_NODE_FAILURE);
	}

	#[test]
	fn unknown_next_node() {
		assert_eq!(
			code(FailReason::UnknownNextNode, Dialect::Spec),
			codes::UNKNOWN_NEXT_TRAMPOLINE
		);
		// Not `unknown_next_peer`: Electrum would retry the same single
		// trampoline route and crash on its own assertion.
		assert_eq!(
			code(FailReason::UnknownNextNode, Dialect::Legacy),
			codes::TRAMPOLINE_FEE_INSUFFICIENT
		);
	}

	#[test]
	fn hold_expired() {
		assert_eq!(
			code(FailReason::HoldExpired, Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		assert_eq!(code(FailReason::HoldExpired, Dialect::Legacy), codes::TEMPORARY_NODE_FAILURE);
	}

	#[test]
	fn over_limits() {
		assert_eq!(
			code(FailReason::OverLimits, Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		assert_eq!(code(FailReason::OverLimits, Dialect::Legacy), codes::TEMPORARY_NODE_FAILURE);
	}

	#[test]
	fn payer_split() {
		assert_eq!(
			code(FailReason::PayerSplit, Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		assert_eq!(code(FailReason::PayerSplit, Dialect::Legacy), codes::TEMPORARY_NODE_FAILURE);
	}

	#[test]
	fn failed_on_the_way() {
		assert_eq!(
			code(FailReason::FailedOnTheWay, Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		// Electrum raises its fee level on temporary_channel_failure.
		assert_eq!(
			wire_failure(&FailReason::FailedOnTheWay, Dialect::Legacy, &policy()),
			FailureMessage::TemporaryChannelFailure { channel_update: Vec::new() }
		);
	}

	#[test]
	fn next_node_failed() {
		let said = |message| FailReason::NextNodeFailed { message };
		assert_eq!(
			code(said(FailureMessage::TrampolineFeeInsufficient), Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		// Passed on, as eclair does: the payer raises its (global) fee level.
		assert_eq!(
			code(said(FailureMessage::TrampolineFeeInsufficient), Dialect::Legacy),
			codes::TRAMPOLINE_FEE_INSUFFICIENT
		);
		assert_eq!(
			code(said(FailureMessage::UnknownNextPeer), Dialect::Legacy),
			codes::UNKNOWN_NEXT_PEER
		);
		// A spec trampoline's codes end a legacy payment: translated.
		assert_eq!(
			code(said(policy().insufficient()), Dialect::Legacy),
			codes::TRAMPOLINE_FEE_INSUFFICIENT
		);
		assert_eq!(
			code(said(FailureMessage::TemporaryTrampolineFailure), Dialect::Legacy),
			codes::TEMPORARY_NODE_FAILURE
		);
		assert_eq!(
			code(said(FailureMessage::UnknownNextTrampoline), Dialect::Legacy),
			codes::UNKNOWN_NEXT_PEER
		);
	}

	#[test]
	fn downstream_unreadable() {
		assert_eq!(
			code(FailReason::DownstreamUnreadable, Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		assert_eq!(
			code(FailReason::DownstreamUnreadable, Dialect::Legacy),
			codes::TEMPORARY_NODE_FAILURE
		);
	}

	#[test]
	fn recipient_rejected() {
		let reason = FailReason::RecipientRejected { htlc_msat: 5, height: 7 };
		let expected = FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: 5, height: 7 };
		assert_eq!(wire_failure(&reason, Dialect::Spec, &policy()), expected);
		assert_eq!(wire_failure(&reason, Dialect::Legacy, &policy()), expected);
	}

	#[test]
	fn mpp_timeout() {
		assert_eq!(code(FailReason::MppTimeout, Dialect::Spec), codes::MPP_TIMEOUT);
		assert_eq!(code(FailReason::MppTimeout, Dialect::Legacy), codes::MPP_TIMEOUT);
	}

	#[test]
	fn unsupported() {
		assert_eq!(
			code(FailReason::Unsupported, Dialect::Spec),
			codes::TEMPORARY_TRAMPOLINE_FAILURE
		);
		assert_eq!(code(FailReason::Unsupported, Dialect::Legacy), codes::TEMPORARY_NODE_FAILURE);
	}

	#[test]
	fn internal() {
		assert_eq!(code(FailReason::Internal, Dialect::Spec), codes::TEMPORARY_TRAMPOLINE_FAILURE);
		assert_eq!(code(FailReason::Internal, Dialect::Legacy), codes::TEMPORARY_NODE_FAILURE);
	}

	#[test]
	fn verbatim() {
		let message = FailureMessage::InvalidOnionPayload { tlv_type: 66098, offset: 3 };
		let reason = FailReason::Verbatim { message: message.clone() };
		assert_eq!(wire_failure(&reason, Dialect::Spec, &policy()), message);
		assert_eq!(wire_failure(&reason, Dialect::Legacy, &policy()), message);
		let hmac = FailureMessage::InvalidOnionHmac { sha256_of_onion: [1; 32] };
		let reason = FailReason::Verbatim { message: hmac.clone() };
		assert_eq!(wire_failure(&reason, Dialect::Legacy, &policy()), hmac);
	}

	#[test]
	fn no_legacy_answer_is_a_code_that_ends_an_electrum_payment_by_accident() {
		// Every reason's legacy code is one Electrum 4.3.4 knows
		// (OnionFailureCode in lnonion.py), never 25/26/27.
		for reason in every_reason() {
			let code = code(reason.clone(), Dialect::Legacy);
			assert!(
				![codes::TEMPORARY_TRAMPOLINE_FAILURE, NODE_26, codes::UNKNOWN_NEXT_TRAMPOLINE]
					.contains(&code),
				"{reason:?} -> {code:#06x}"
			);
		}
	}

	#[test]
	fn what_comes_back_from_beyond_us_is_answered_in_the_payers_dialect() {
		let packet = vec![7; 292];
		let opaque = || RelayedFailure::Opaque(packet.clone());
		assert_eq!(answer_relayed(opaque(), Dialect::Spec), Some(Err(packet.clone())));
		assert_eq!(
			answer_relayed(opaque(), Dialect::Legacy),
			Some(Ok(FailReason::DownstreamUnreadable))
		);
		let said = || RelayedFailure::Outer(FailureMessage::TrampolineFeeInsufficient);
		assert_eq!(answer_relayed(said(), Dialect::Spec), None);
		assert_eq!(
			answer_relayed(said(), Dialect::Legacy),
			Some(Ok(FailReason::NextNodeFailed {
				message: FailureMessage::TrampolineFeeInsufficient
			}))
		);
		for dialect in [Dialect::Spec, Dialect::Legacy] {
			let on_the_way = RelayedFailure::OnTheWay(FailureMessage::TemporaryNodeFailure);
			assert_eq!(answer_relayed(on_the_way, dialect), Some(Ok(FailReason::FailedOnTheWay)));
		}
	}

	#[test]
	fn reasons_round_trip_through_their_record_encoding() {
		for reason in [
			FailReason::ExpiryTooSoon,
			FailReason::NextNodeFailed { message: FailureMessage::TrampolineFeeInsufficient },
			FailReason::RecipientRejected { htlc_msat: 9, height: 800 },
			FailReason::Verbatim {
				message: FailureMessage::FinalIncorrectHtlcAmount { incoming_htlc_amt: 4 },
			},
		] {
			let json = serde_json::to_vec(&reason).unwrap();
			assert_eq!(serde_json::from_slice::<FailReason>(&json).unwrap(), reason);
		}
		assert_eq!(serde_json::to_string(&Dialect::Legacy).unwrap(), "\"legacy\"");
	}

	#[test]
	fn names_are_the_record_names() {
		for dialect in [Dialect::Spec, Dialect::Legacy] {
			assert_eq!(serde_json::to_string(&dialect).unwrap(), format!("\"{}\"", dialect.name()));
		}
		for reason in every_reason() {
			let json = serde_json::to_value(&reason).unwrap();
			assert_eq!(json["reason"], reason.name(), "{reason:?}");
		}
	}

	#[test]
	fn old_records_keep_their_meaning() {
		assert_eq!(FailReason::from_recorded(policy().insufficient()), FailReason::FeeInsufficient);
		assert_eq!(
			FailReason::from_recorded(FailureMessage::TemporaryTrampolineFailure),
			FailReason::Internal
		);
		assert_eq!(
			FailReason::from_recorded(FailureMessage::UnknownNextTrampoline),
			FailReason::UnknownNextNode
		);
		assert_eq!(FailReason::from_recorded(FailureMessage::MppTimeout), FailReason::MppTimeout);
		let message = FailureMessage::FinalIncorrectCltvExpiry { cltv_expiry: 3 };
		assert_eq!(FailReason::from_recorded(message.clone()), FailReason::Verbatim { message });
		// Spec records keep their spec answer.
		for message in [policy().insufficient(), FailureMessage::UnknownNextTrampoline] {
			let reason = FailReason::from_recorded(message.clone());
			assert_eq!(wire_failure(&reason, Dialect::Spec, &policy()), message);
		}
	}
}
