//! Unit tests of what `RelayCore` decides over the store: pruning and the
//! hold limits.

use std::sync::Arc;

use lightning::ln::types::ChannelId;
use lightning::sign::{KeysManager, NodeSigner};
use lightning::types::payment::PaymentHash;
use lightning::util::persist::KVStoreSync;

use super::memory_store::{bucket, htlc, MemoryStore};
use super::store::{htlc_key, BucketId, BucketState};
use super::{BucketStage, RelayCore, RelayLimits, TrampolinePolicy};
use crate::onion::FailureMessage;
use crate::testkit::NoLogger;

fn core(limits: RelayLimits) -> RelayCore {
	core_on(Arc::new(MemoryStore::default()), limits)
}

/// A relay over `kv` (a restart: the same store again).
fn core_on(kv: Arc<MemoryStore>, limits: RelayLimits) -> RelayCore {
	let keys = Arc::new(KeysManager::new(&[42; 32], 1_800_000_000, 0, true));
	RelayCore::new(
		keys as Arc<dyn NodeSigner + Send + Sync>,
		kv as Arc<dyn KVStoreSync + Send + Sync>,
		TrampolinePolicy::default(),
		limits,
		Arc::new(NoLogger),
	)
	.expect("core")
}

/// Puts bucket `n` in `state` with one HTLC of `peer`.
fn put(core: &RelayCore, n: u8, state: BucketState, peer: &str, resolved: bool) -> BucketId {
	let id = [n; 32];
	core.store.put_bucket(&id, super::store::BucketRecord { state, ..bucket(n) }).expect("bucket");
	let record =
		super::store::HtlcRecord { resolved, payment_hash: [n; 32], ..htlc(Some(id), peer, 1000) };
	core.store.put_htlc(&htlc_key(&ChannelId([n; 32]), 0), record).expect("htlc");
	id
}

#[test]
fn settled_buckets_go_into_the_history_with_their_records() {
	let core = core(RelayLimits::default());
	put(&core, 1, BucketState::Claimed { preimage: [0; 32] }, "aa", true);
	put(
		&core,
		2,
		BucketState::Failed { failure: Vec::new(), forwarded: None, reason: None },
		"aa",
		true,
	);
	core.prune(&[]);
	let counts = core.record_counts();
	assert_eq!((counts.buckets, counts.htlcs), (0, 0));
	let stats = core.stats();
	assert_eq!((stats.relayed, stats.failed, stats.sending), (1, 1, 0));
	let stages: Vec<BucketStage> = core.buckets().into_iter().map(|b| b.state).collect();
	assert!(stages.contains(&BucketStage::Relayed) && stages.contains(&BucketStage::Failed));
}

/// The operators' counters of pruned buckets survive a restart (the soak saw
/// 23 relayed where 109 payments had gone through: they were in memory only).
#[test]
fn the_totals_of_pruned_buckets_survive_a_restart() {
	let kv = Arc::new(MemoryStore::default());
	let core = core_on(Arc::clone(&kv), RelayLimits::default());
	put(&core, 1, BucketState::Claimed { preimage: [0; 32] }, "aa", true);
	put(&core, 2, BucketState::Claimed { preimage: [0; 32] }, "aa", true);
	let failed = BucketState::Failed { failure: Vec::new(), forwarded: None, reason: None };
	put(&core, 3, failed, "aa", true);
	core.prune(&[]);
	let before = core.stats();
	assert_eq!((before.relayed, before.failed), (2, 1));
	assert_eq!(before.relayed_in_msat, 2 * bucket(1).outer_total_msat);
	drop(core);
	let restarted = core_on(kv, RelayLimits::default());
	assert_eq!(restarted.record_counts().buckets, 0);
	assert_eq!(restarted.stats(), before);
}

#[test]
fn a_pruned_bucket_leaves_no_timings_behind() {
	let core = core(RelayLimits::default());
	// Receiving, its only HTLC resolved: LDK gave up on it.
	let over = put(&core, 1, BucketState::Receiving, "aa", true);
	let sending = put(&core, 2, BucketState::Sending { payment_id: [2; 32] }, "aa", true);
	core.metrics().received(&over);
	core.metrics().received(&sending);
	core.prune(&[]);
	assert_eq!(core.record_counts().buckets, 1);
	// The sending one is still timed.
	assert_eq!(core.metrics().timed_buckets(), 1);
}

#[test]
fn a_sending_bucket_is_kept_whatever_its_htlcs_do() {
	let core = core(RelayLimits::default());
	// Its HTLC was never listed by LDK (recorded long ago): resolved, but the
	// outgoing payment's outcome is still to come.
	put(&core, 1, BucketState::Sending { payment_id: [5; 32] }, "aa", false);
	core.prune(&[]);
	core.prune(&[]);
	assert_eq!(core.record_counts().buckets, 1);
	assert!(core.store.htlcs_of(&[1; 32]).iter().all(|(_, h)| h.resolved));
}

#[test]
fn a_failed_bucket_waits_for_its_htlcs() {
	let core = core(RelayLimits::default());
	let id = put(
		&core,
		1,
		BucketState::Failed { failure: Vec::new(), forwarded: None, reason: None },
		"aa",
		false,
	);
	// Recorded just now and not yet listed by LDK: still out.
	core.store.update_htlc_deferred(&htlc_key(&ChannelId([1; 32]), 0), |h| {
		h.recorded_secs = super::now_secs()
	});
	core.prune(&[]);
	assert_eq!(core.record_counts().buckets, 1, "an HTLC is still out");
	core.store.update_htlc_deferred(&htlc_key(&ChannelId([1; 32]), 0), |h| h.recorded_secs = 0);
	core.prune(&[]);
	assert!(core.store.bucket(&id).is_none(), "gone once its HTLC left");
}

#[test]
fn a_receiving_bucket_without_records_goes_on_the_second_pass() {
	let core = core(RelayLimits::default());
	core.store.put_bucket(&[3; 32], bucket(3)).expect("bucket");
	core.prune(&[]);
	assert!(core.store.bucket(&[3; 32]).is_some(), "its first HTLC may be on its way to disk");
	core.prune(&[]);
	assert!(core.store.bucket(&[3; 32]).is_none());
}

#[test]
fn a_pruned_rejection_keeps_its_failure_for_the_operator() {
	let core = core(RelayLimits::default());
	let failure = FailureMessage::TemporaryTrampolineFailure;
	let record =
		super::store::HtlcRecord { failure_sent: Some(failure.encode()), ..htlc(None, "aa", 1000) };
	core.store.put_htlc(&htlc_key(&ChannelId([4; 32]), 7), record).expect("htlc");
	core.prune(&[]);
	assert_eq!(core.record_counts().htlcs, 0);
	assert_eq!(core.failures_sent(&PaymentHash([9; 32])), vec![failure]);
}

#[test]
fn holds_are_bounded_per_payer_and_on_the_node() {
	let limits = RelayLimits { max_held_per_peer: 2, max_held: 3, ..RelayLimits::default() };
	let core = core(limits);
	let held = BucketState::Held { amount_msat: 1000, since_secs: 0, deadline_height: 900 };
	put(&core, 1, held.clone(), "aa", false);
	put(&core, 2, held.clone(), "aa", false);
	let third = put(&core, 3, BucketState::Receiving, "aa", false);
	assert_eq!(core.hold_room(&third, 1000), Err("max_held_per_peer"));
	let other = put(&core, 4, BucketState::Receiving, "bb", false);
	assert_eq!(core.hold_room(&other, 1000), Ok(()));
	put(&core, 5, held, "cc", false);
	assert_eq!(core.hold_room(&other, 1000), Err("max_held"));
	let big = RelayLimits { max_held_msat_per_peer: 1500, ..RelayLimits::default() };
	let core = self::core(big);
	put(
		&core,
		1,
		BucketState::Held { amount_msat: 1000, since_secs: 0, deadline_height: 900 },
		"aa",
		false,
	);
	let next = put(&core, 2, BucketState::Receiving, "aa", false);
	assert_eq!(core.hold_room(&next, 1000), Err("max_held_msat_per_peer"));
}
