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
	let (recorded, forwarded) = match (&record.reject, bucket_state) {
		(Some(reject), _) => (Some(reject.clone()), None),
		(None, Some(BucketState::Failed { failure, forwarded })) => (Some(failure), forwarded),
		(None, _) => (None, None),
	};
	let failure = recorded
		.and_then(|bytes| FailureMessage::decode(&bytes).ok())
		.unwrap_or_else(|| map_ldk_failure(ldk_failure.as_ref()));

	let outer = SharedSecret::from_bytes(record.outer_shared_secret);
	let passing_on = forwarded.is_some() && record.trampoline_shared_secret.is_some();
	let packet = match (record.trampoline_shared_secret, forwarded) {
		// A failure from further down the trampoline route: pass it on with
		// our trampoline layer, then our outer layer.
		(Some(tss), Some(mut packet)) => {
			onion::wrap_trampoline_error_packet(
				&SharedSecret::from_bytes(tss),
				&outer,
				&mut packet,
			);
			packet
		},
		(Some(tss), None) => {
			onion::create_trampoline_error_packet(&SharedSecret::from_bytes(tss), &outer, &failure)
		},
		// The trampoline onion could not be peeled: only the outer layer exists.
		(None, _) => onion::create_error_packet(&outer, &failure),
	};
	let Some(rewritten) = with_reason(fail, &packet) else {
		log_error!(core.logger, "Cannot rewrite update_fail_htlc for {key}");
		return;
	};
	*fail = rewritten;
	let encoded = failure.encode();
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
		"Failing trampoline HTLC {key} with {failure:?} (LDK said {ldk_failure:?})"
	);
	if let (None, true, Some(id)) = (&record.reject, receiving, &record.bucket) {
		// LDK failed a part by itself. Only once it has failed every part
		// (MPP timeout, or its expiry drawing near while held) is the bucket
		// over; a single extra or late part it refused leaves the rest.
		let all_failed = core.store.htlcs_of(id).iter().all(|(_, h)| h.resolved);
		if all_failed {
			core.store.update_bucket_deferred(id, |b| {
				b.state = BucketState::Failed { failure: encoded, forwarded: None }
			});
		}
	}
}

/// What the origin sees when LDK failed a rewritten HTLC by itself.
fn map_ldk_failure(ldk: Option<&FailureMessage>) -> FailureMessage {
	match ldk {
		// The bucket never completed: the payer may retry.
		Some(FailureMessage::MppTimeout) => FailureMessage::MppTimeout,
		_ => FailureMessage::TemporaryTrampolineFailure,
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
