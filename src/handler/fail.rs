//! Outbound `update_fail_htlc` for a rewritten HTLC: replace LDK's failure
//! (created with the rewritten onion's secret, which the origin does not know)
//! with the failure the origin must see, created with the trampoline shared
//! secret and wrapped with the outer one.
//!
//! This runs inside `get_and_clear_pending_msg_events`, which every peer's
//! messages wait on: nothing here writes to disk. What it records (the HTLC
//! resolved, the failure sent, a bucket LDK gave up on) changes the relay's
//! cache at once and reaches the disk at the relay's next tick.

use bitcoin::secp256k1::ecdh::SharedSecret;
use lightning::ln::msgs::UpdateFailHTLC;
use lightning::util::ser::{LengthReadable, Writeable};
use lightning::{log_error, log_info};

use crate::onion::{self, FailureMessage};
use crate::relay::dialect::{wire_failure, Dialect, FailReason};
use crate::relay::store::{htlc_key, BucketState};
use crate::relay::RelayCore;

/// Offset of `reason`'s u16 length in an encoded `update_fail_htlc`
/// (after `channel_id` and `htlc_id`).
const REASON_OFFSET: usize = 32 + 8;

/// Rewrites `fail` in place if it fails an HTLC the plugin rewrote.
pub(super) fn rewrite_fail(core: &RelayCore, fail: &mut UpdateFailHTLC) {
	let key = htlc_key(&fail.channel_id, fail.htlc_id);
	let Some(record) = core.store.htlc(&key) else { return };
	let Some(ldk_reason) = reason_of(fail) else {
		log_error!(core.logger, "Cannot read LDK's update_fail_htlc for {key}");
		return;
	};
	let from_ldk = SharedSecret::from_bytes(record.rewrite_shared_secret);
	let ldk_failure = onion::decrypt_error_packet(&ldk_reason, &[from_ldk]).ok().map(|f| f.message);

	let bucket_state = record.bucket.as_ref().and_then(|id| core.store.bucket(id)).map(|b| b.state);
	let receiving = matches!(bucket_state, Some(BucketState::Receiving | BucketState::Held { .. }));
	let (reason, forwarded) = match (&record.reject_reason, &record.reject, bucket_state) {
		(Some(reason), _, _) => (reason.clone(), None),
		(None, Some(reject), _) => (recorded_reason(reject), None),
		(None, None, Some(BucketState::Failed { reason: Some(reason), forwarded, .. })) => {
			(reason, forwarded)
		},
		(None, None, Some(BucketState::Failed { failure, forwarded, .. })) => {
			(recorded_reason(&failure), forwarded)
		},
		(None, None, _) => (map_ldk_failure(ldk_failure.as_ref(), record.final_receive), None),
	};
	let dialect = record.dialect;
	let failure = wire_failure(&reason, dialect, &core.policy);

	let outer = SharedSecret::from_bytes(record.outer_shared_secret);
	let packet = failure_packet(
		dialect,
		&outer,
		record.trampoline_shared_secret.map(SharedSecret::from_bytes),
		forwarded,
		&failure,
	);
	let passing_on = matches!(packet, FailurePacket::PassedOn(_));
	let packet = packet.into_bytes();
	let Some(rewritten) = with_reason(fail, &packet) else {
		log_error!(core.logger, "Cannot rewrite update_fail_htlc for {key}");
		return;
	};
	*fail = rewritten;
	let encoded = failure.encode();
	let refused = record.reject.is_some() || record.reject_reason.is_some();
	if refused && record.failure_sent.is_none() {
		// Once per HTLC: a failure sent again (a reconnection) is not counted.
		core.metrics().refused(dialect, &reason, &failure);
	}
	core.store.update_htlc_deferred(&key, |h| {
		h.resolved = true;
		if !passing_on {
			h.failure_sent = Some(encoded.clone());
		}
	});
	if passing_on {
		// What the next trampoline said is for the origin's eyes only.
		log_info!(core.logger, "Failing trampoline HTLC {key} with the next trampoline's failure");
		return;
	}
	log_info!(
		core.logger,
		"Failing trampoline HTLC {key} ({dialect:?}) with {failure:?} for {reason:?} (LDK said {ldk_failure:?})"
	);
	if let (None, true, Some(id)) = (&record.reject, receiving, &record.bucket) {
		// LDK failed a part by itself. Only once it has failed every part
		// (MPP timeout, or its expiry drawing near while held) is the bucket
		// over; a single extra or late part it refused leaves the rest.
		let all_failed = core.store.htlcs_of(id).iter().all(|(_, h)| h.resolved);
		if all_failed {
			core.metrics().failed(dialect, &reason, Some(&failure));
			core.metrics().settled(id);
			let spec = wire_failure(&reason, Dialect::Spec, &core.policy).encode();
			core.store.update_bucket_deferred(id, |b| {
				b.state =
					BucketState::Failed { failure: spec, forwarded: None, reason: Some(reason) }
			});
		}
	}
}

/// Why LDK failed a rewritten HTLC by itself: an incomplete bucket (the
/// payer may retry), the recipient's answer when the payment was to us
/// (`final_receive`: LDK is the recipient), else our own trouble.
fn map_ldk_failure(ldk: Option<&FailureMessage>, final_receive: bool) -> FailReason {
	match ldk {
		Some(FailureMessage::MppTimeout) => FailReason::MppTimeout,
		Some(message) if final_receive => FailReason::Verbatim { message: message.clone() },
		_ => FailReason::Internal,
	}
}

/// The reason behind a failure recorded as its spec message only (records of
/// older versions).
fn recorded_reason(bytes: &[u8]) -> FailReason {
	FailureMessage::decode(bytes).map_or(FailReason::Internal, FailReason::from_recorded)
}

/// An error packet for the payer, and whether it is ours or passed on.
#[derive(Debug, PartialEq, Eq)]
enum FailurePacket {
	/// Created by us.
	Ours(Vec<u8>),
	/// A failure from further down the trampoline route, wrapped with our
	/// layers.
	PassedOn(Vec<u8>),
}

impl FailurePacket {
	fn into_bytes(self) -> Vec<u8> {
		match self {
			Self::Ours(bytes) | Self::PassedOn(bytes) => bytes,
		}
	}
}

/// The error packet a payer speaking `dialect` can decrypt, for `failure`
/// (ours) or `forwarded` (a packet from further down, for a spec payer
/// only). `outer` and `trampoline` are our secrets of its HTLC's onions
/// (`trampoline`: `None` if its trampoline onion could not be peeled).
///
/// - Legacy: `failure`, created with the outer secret only, as eclair's
///   relay and Electrum's decoder do (see [`crate::relay::dialect`]). A
///   forwarded packet is never passed to a legacy payer: it decrypts outer
///   layers only and could not read it (the relay records a reason a legacy
///   payer can read instead; this is the last guard).
/// - Spec: created with the trampoline secret, then wrapped with the outer
///   one; a forwarded packet wrapped with both.
fn failure_packet(
	dialect: Dialect, outer: &SharedSecret, trampoline: Option<SharedSecret>,
	forwarded: Option<Vec<u8>>, failure: &FailureMessage,
) -> FailurePacket {
	match (dialect, trampoline, forwarded) {
		(Dialect::Legacy, _, _) | (Dialect::Spec, None, _) => {
			FailurePacket::Ours(onion::create_error_packet(outer, failure))
		},
		(Dialect::Spec, Some(tss), Some(mut packet)) => {
			onion::wrap_trampoline_error_packet(&tss, outer, &mut packet);
			FailurePacket::PassedOn(packet)
		},
		(Dialect::Spec, Some(tss), None) => {
			FailurePacket::Ours(onion::create_trampoline_error_packet(&tss, outer, failure))
		},
	}
}

/// `reason` of an `update_fail_htlc`, which LDK keeps crate-private, read from
/// the wire encoding.
pub(crate) fn reason_of(fail: &UpdateFailHTLC) -> Option<Vec<u8>> {
	let bytes = fail.encode();
	let len = u16::from_be_bytes(bytes.get(REASON_OFFSET..REASON_OFFSET + 2)?.try_into().ok()?);
	bytes.get(REASON_OFFSET + 2..REASON_OFFSET + 2 + usize::from(len)).map(|r| r.to_vec())
}

/// `fail` with `reason` replaced and no attribution data, through the wire
/// encoding.
pub(super) fn with_reason(fail: &UpdateFailHTLC, reason: &[u8]) -> Option<UpdateFailHTLC> {
	let mut bytes = Vec::with_capacity(REASON_OFFSET + 2 + reason.len());
	bytes.extend_from_slice(&fail.channel_id.0);
	bytes.extend_from_slice(&fail.htlc_id.to_be_bytes());
	bytes.extend_from_slice(&u16::try_from(reason.len()).ok()?.to_be_bytes());
	bytes.extend_from_slice(reason);
	UpdateFailHTLC::read_from_fixed_length_buffer(&mut bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
	use super::*;
	use lightning::ln::types::ChannelId;

	#[test]
	fn reason_round_trips_through_the_wire_encoding() {
		let wire = [[7u8; 32].as_slice(), &42u64.to_be_bytes(), &[0, 1, 9]].concat();
		let original = UpdateFailHTLC::read_from_fixed_length_buffer(&mut wire.as_slice()).unwrap();
		assert_eq!(reason_of(&original).unwrap(), vec![9]);
		let fail = with_reason(&original, &[1, 2, 3]).unwrap();
		assert_eq!(fail.channel_id, ChannelId([7; 32]));
		assert_eq!(fail.htlc_id, 42);
		assert_eq!(fail.attribution_data, None);
		assert_eq!(reason_of(&fail).unwrap(), vec![1, 2, 3]);
	}
}
