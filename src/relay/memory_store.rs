//! Test support for the relay's unit tests: record fixtures (and the
//! in-memory store of `testkit`).

use super::store::{BucketId, BucketRecord, BucketState, HtlcRecord};
pub(crate) use crate::testkit::MemoryStore;

/// A receiving bucket of payment hash `[hash; 32]`.
pub(crate) fn bucket(hash: u8) -> BucketRecord {
	BucketRecord {
		payment_hash: [hash; 32],
		outer_secret: [1; 32],
		outer_total_msat: 1000,
		ldk_secret: [2; 32],
		min_incoming_cltv: 500,
		trampoline_payload: vec![0],
		next_packet: None,
		payment_id: None,
		state: BucketState::Receiving,
		claim_deadline: None,
		superseded: false,
		dialect: Default::default(),
	}
}

/// An unresolved HTLC record of `peer`, recorded long ago.
pub(crate) fn htlc(bucket: Option<BucketId>, peer: &str, amount_msat: u64) -> HtlcRecord {
	HtlcRecord {
		payment_hash: [9; 32],
		bucket,
		outer_shared_secret: [0; 32],
		trampoline_shared_secret: None,
		rewrite_shared_secret: [0; 32],
		reject: None,
		failure_sent: None,
		peer: peer.to_string(),
		amount_msat,
		cltv_expiry: 600,
		recorded_secs: 0,
		resolved: false,
		reject_reason: None,
		dialect: Default::default(),
		final_receive: false,
	}
}
