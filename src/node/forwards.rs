//! The node's forwarding history: one record per payment forwarded through
//! us, plain channel forwards (LDK's `PaymentForwarded` and failed forwards,
//! `HTLCHandlingFailed`) and relayed trampoline payments (told by the relay
//! through [`SettleObserver`] when it settles a bucket), persisted in the
//! node's `KVStore` under the `forwards` namespace.
//!
//! Each record has a monotonic index (its key, zero-padded), written before
//! it is listed; the newest [`MAX_FORWARDS`] (or the configured bound) are
//! kept and the older ones removed from the store as new ones come. A record
//! that does not read at start is logged and skipped. Pagination follows
//! LND's `fwdinghistory`: oldest first, from just after `index_offset`.

use crate::relay::now_ms;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lightning::util::logger::Logger;
use lightning::util::persist::KVStoreSync;
use lightning::{log_error, log_info};
use serde::{Deserialize, Serialize};

use crate::relay::{Dialect, FailReason, SettleObserver, SettledBucket};

/// The `KVStore` namespace of the records.
const FORWARDS_NAMESPACE: &str = "forwards";

/// How many forwarding records a node keeps unless configured otherwise:
/// the newest ten thousand (a few MB on disk).
pub const MAX_FORWARDS: usize = 10_000;

/// The most records one page of [`ForwardStore::list`] holds.
pub const MAX_FORWARDS_PAGE: usize = 1_000;

/// The records in a page when the caller does not say (limit 0).
pub const DEFAULT_FORWARDS_PAGE: usize = 100;

/// Errors of the forwarding history.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
	/// The KV store failed.
	#[error("forwarding history {what}: {reason}")]
	Io {
		/// What was being done.
		what: &'static str,
		/// The store's error.
		reason: String,
	},
	/// A record does not encode.
	#[error("forwarding record cannot be encoded: {0}")]
	Encode(String),
	/// Every index was used (never, at one record per forward).
	#[error("forwarding history indices exhausted")]
	IndexExhausted,
}

/// What was forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardKind {
	/// A plain HTLC forward from one of our channels to another (LDK's own).
	Channel,
	/// A trampoline payment the relay received and paid onwards.
	Trampoline,
}

/// How a forward ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ForwardOutcome {
	/// Forwarded: the next node revealed the preimage and we claimed.
	Succeeded,
	/// Failed back to the previous node.
	Failed {
		/// Why, in words.
		reason: String,
	},
}

/// One forward, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardRecord {
	/// Its place in the history: increasing, never reused (the pagination
	/// cursor).
	pub index: u64,
	/// Plain channel forward or relayed trampoline payment.
	pub kind: ForwardKind,
	/// The payment hash, hex (trampoline only: LDK does not give it for a
	/// channel forward).
	pub payment_hash: Option<String>,
	/// What came in, msat (unknown for a failed channel forward).
	pub in_msat: Option<u64>,
	/// What went out, routing fees of a trampoline payment included, msat
	/// (unknown, or none, for a failed forward).
	pub out_msat: Option<u64>,
	/// What we earned, `in_msat - out_msat`, msat (none for a failed forward).
	pub fee_msat: Option<u64>,
	/// The channels it came in on, hex (several for a multi-part trampoline
	/// payment).
	pub incoming_channel_ids: Vec<String>,
	/// The channel it went out on, hex (channel forwards).
	pub outgoing_channel_id: Option<String>,
	/// The next node, hex: the peer of a channel forward, the next node of a
	/// trampoline payment.
	pub next_node: Option<String>,
	/// The dialect a trampoline payer spoke (`spec` or `legacy`).
	pub dialect: Option<Dialect>,
	/// When its first HTLC arrived, milliseconds since the Unix epoch
	/// (trampoline only, to the second).
	pub started_at_ms: Option<u64>,
	/// When it settled (was recorded), milliseconds since the Unix epoch.
	pub settled_at_ms: u64,
	/// `settled_at_ms - started_at_ms`, when the start is known.
	pub duration_ms: Option<u64>,
	/// How it ended.
	pub outcome: ForwardOutcome,
}

/// One page of the history: oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardPage {
	/// The records after the requested offset, oldest first.
	pub forwards: Vec<ForwardRecord>,
	/// The `index_offset` of the next page (the index of the last record
	/// here), or `None` when no record comes after this page.
	pub next_index_offset: Option<u64>,
}

/// A forward to record: a [`ForwardRecord`] before it gets its index and
/// settle time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewForward {
	/// See [`ForwardRecord::kind`].
	pub kind: ForwardKind,
	/// See [`ForwardRecord::payment_hash`].
	pub payment_hash: Option<String>,
	/// See [`ForwardRecord::in_msat`].
	pub in_msat: Option<u64>,
	/// See [`ForwardRecord::out_msat`].
	pub out_msat: Option<u64>,
	/// See [`ForwardRecord::incoming_channel_ids`].
	pub incoming_channel_ids: Vec<String>,
	/// See [`ForwardRecord::outgoing_channel_id`].
	pub outgoing_channel_id: Option<String>,
	/// See [`ForwardRecord::next_node`].
	pub next_node: Option<String>,
	/// See [`ForwardRecord::dialect`].
	pub dialect: Option<Dialect>,
	/// See [`ForwardRecord::started_at_ms`].
	pub started_at_ms: Option<u64>,
	/// See [`ForwardRecord::outcome`].
	pub outcome: ForwardOutcome,
}

impl NewForward {
	/// What the relay's settled `bucket` is as a forward.
	pub fn from_bucket(bucket: &SettledBucket) -> Self {
		let outcome = match &bucket.failure {
			None => ForwardOutcome::Succeeded,
			Some(reason) => ForwardOutcome::Failed { reason: fail_reason_words(reason) },
		};
		Self {
			kind: ForwardKind::Trampoline,
			payment_hash: Some(bucket.payment_hash.to_string()),
			in_msat: Some(bucket.in_msat),
			out_msat: bucket.out_msat,
			incoming_channel_ids: bucket.incoming_channels.iter().map(|c| c.to_string()).collect(),
			outgoing_channel_id: None,
			next_node: bucket.next_node.map(|n| n.to_string()),
			dialect: Some(bucket.dialect),
			started_at_ms: bucket.started_secs.and_then(|s| s.checked_mul(1000)),
			outcome,
		}
	}
}

/// A relay failure reason in words, for operators.
pub fn fail_reason_words(reason: &FailReason) -> String {
	let words = match reason {
		FailReason::FeeInsufficient => "the payer left less than our fee",
		FailReason::ExpiryTooSoon => "the payer left less than our CLTV delta",
		FailReason::NoRouteWithinBudget => "no route to the next node within the payer's budget",
		FailReason::NoLiquidity => "no route to the next node with the liquidity",
		FailReason::UnknownNextNode => "the next node is unknown or unreachable",
		FailReason::HoldExpired => "held until its deadline, the next node did not come back",
		FailReason::OverLimits => "over the payer's or the node's limits",
		FailReason::PayerSplit => "the payer split it over several trampolines",
		FailReason::FailedOnTheWay => "a node on the way to the next trampoline failed it",
		FailReason::NextNodeFailed { message } => {
			return format!("the next trampoline failed it: {message:?}")
		},
		FailReason::DownstreamUnreadable => {
			"failed further down the route (unreadable to the payer)"
		},
		FailReason::RecipientRejected { .. } => "the recipient rejected it",
		FailReason::MppTimeout => "not all its parts arrived in time",
		FailReason::Unsupported => "a kind of trampoline payment not relayed",
		FailReason::Internal => "our own trouble (store or send)",
		FailReason::Verbatim { message } => return format!("the payer's onion: {message:?}"),
	};
	words.to_string()
}

struct History {
	records: BTreeMap<u64, ForwardRecord>,
	/// The index of the next record.
	next_index: u64,
}

/// The forwarding history: its one owner. Records are written to the store
/// before they are listed.
pub struct ForwardStore {
	history: Mutex<History>,
	kv: Arc<dyn KVStoreSync + Send + Sync>,
	max_records: usize,
	logger: Arc<dyn Logger + Send + Sync>,
}

fn key(index: u64) -> String {
	format!("{index:020}")
}

impl ForwardStore {
	/// Loads the history from `kv`, keeping at most `max_records` (at least
	/// one). A record that does not read is logged and skipped; only a store
	/// that cannot list its keys fails.
	pub fn load(
		kv: Arc<dyn KVStoreSync + Send + Sync>, max_records: usize,
		logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, ForwardError> {
		let keys = KVStoreSync::list(&*kv, FORWARDS_NAMESPACE, "")
			.map_err(|e| ForwardError::Io { what: "listing", reason: e.to_string() })?;
		let mut records = BTreeMap::new();
		let mut next_index = 1u64;
		for key in keys {
			let Ok(index) = key.parse::<u64>() else {
				log_error!(logger, "Skipping forwarding record {key}: not an index");
				continue;
			};
			// Even an unreadable record's index is never given again.
			next_index = next_index.max(index.saturating_add(1));
			let record = KVStoreSync::read(&*kv, FORWARDS_NAMESPACE, "", &key)
				.map_err(|e| e.to_string())
				.and_then(|bytes| {
					serde_json::from_slice::<ForwardRecord>(&bytes).map_err(|e| e.to_string())
				});
			match record {
				Ok(record) if record.index == index => {
					records.insert(index, record);
				},
				Ok(record) => log_error!(
					logger,
					"Skipping forwarding record {key}: it says index {}",
					record.index
				),
				Err(e) => log_error!(logger, "Skipping unreadable forwarding record {key}: {e}"),
			}
		}
		let store = Self {
			history: Mutex::new(History { records, next_index }),
			kv,
			max_records: max_records.max(1),
			logger,
		};
		store.prune(&mut store.lock());
		Ok(store)
	}

	fn lock(&self) -> MutexGuard<'_, History> {
		self.history.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// Removes the oldest records beyond the bound, from the store then
	/// from memory (a failed removal is logged; the next start prunes it).
	fn prune(&self, history: &mut History) {
		while history.records.len() > self.max_records {
			let Some((index, _)) = history.records.pop_first() else { break };
			if let Err(e) =
				KVStoreSync::remove(&*self.kv, FORWARDS_NAMESPACE, "", &key(index), false)
			{
				log_error!(self.logger, "Cannot remove forwarding record {index}: {e}");
			}
		}
	}

	/// Records `forward`, settled now: written to the store, then listed.
	/// Returns the record with its index.
	pub fn record(&self, forward: NewForward) -> Result<ForwardRecord, ForwardError> {
		self.record_at(forward, now_ms())
	}

	/// [`Self::record`], settled at `settled_at_ms`.
	pub fn record_at(
		&self, forward: NewForward, settled_at_ms: u64,
	) -> Result<ForwardRecord, ForwardError> {
		let fee_msat = match (forward.in_msat, forward.out_msat) {
			(Some(inbound), Some(outbound)) => inbound.checked_sub(outbound),
			_ => None,
		};
		let duration_ms = forward.started_at_ms.and_then(|s| settled_at_ms.checked_sub(s));
		// Under the lock: indices are written in order.
		let mut history = self.lock();
		let index = history.next_index;
		let next_index = index.checked_add(1).ok_or(ForwardError::IndexExhausted)?;
		let record = ForwardRecord {
			index,
			kind: forward.kind,
			payment_hash: forward.payment_hash,
			in_msat: forward.in_msat,
			out_msat: forward.out_msat,
			fee_msat,
			incoming_channel_ids: forward.incoming_channel_ids,
			outgoing_channel_id: forward.outgoing_channel_id,
			next_node: forward.next_node,
			dialect: forward.dialect,
			started_at_ms: forward.started_at_ms,
			settled_at_ms,
			duration_ms,
			outcome: forward.outcome,
		};
		let bytes = serde_json::to_vec(&record).map_err(|e| ForwardError::Encode(e.to_string()))?;
		KVStoreSync::write(&*self.kv, FORWARDS_NAMESPACE, "", &key(index), bytes)
			.map_err(|e| ForwardError::Io { what: "writing", reason: e.to_string() })?;
		history.next_index = next_index;
		history.records.insert(index, record.clone());
		self.prune(&mut history);
		Ok(record)
	}

	/// The records after `index_offset` (from the oldest kept when `None` or
	/// 0), oldest first, at most `limit` ([`DEFAULT_FORWARDS_PAGE`] when 0,
	/// at most [`MAX_FORWARDS_PAGE`]).
	pub fn list(&self, index_offset: Option<u64>, limit: usize) -> ForwardPage {
		let limit = match limit {
			0 => DEFAULT_FORWARDS_PAGE,
			n => n.min(MAX_FORWARDS_PAGE),
		};
		let history = self.lock();
		let after = index_offset.unwrap_or(0);
		let mut range = history.records.range(after.saturating_add(1)..).map(|(_, r)| r);
		let forwards: Vec<ForwardRecord> = range.by_ref().take(limit).cloned().collect();
		let more = range.next().is_some();
		let next_index_offset = forwards.last().map(|r| r.index).filter(|_| more);
		ForwardPage { forwards, next_index_offset }
	}

	/// How many records are kept.
	pub fn len(&self) -> usize {
		self.lock().records.len()
	}

	/// Whether no record is kept.
	pub fn is_empty(&self) -> bool {
		self.len() == 0
	}
}

impl SettleObserver for ForwardStore {
	fn bucket_settled(&self, bucket: &SettledBucket) {
		match self.record(NewForward::from_bucket(bucket)) {
			Ok(record) => log_info!(
				self.logger,
				"Forward {}: trampoline {} {:?}",
				record.index,
				bucket.payment_hash,
				record.outcome
			),
			// Informational: LDK's and the relay's own state are authoritative.
			Err(e) => log_error!(
				self.logger,
				"Cannot record the trampoline forward {}: {e}",
				bucket.payment_hash
			),
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::testkit::{MemoryStore, NoLogger};

	fn forward(in_msat: u64, out_msat: u64) -> NewForward {
		NewForward {
			kind: ForwardKind::Channel,
			payment_hash: None,
			in_msat: Some(in_msat),
			out_msat: Some(out_msat),
			incoming_channel_ids: vec!["aa".repeat(32)],
			outgoing_channel_id: Some("bb".repeat(32)),
			next_node: None,
			dialect: None,
			started_at_ms: Some(1_000),
			outcome: ForwardOutcome::Succeeded,
		}
	}

	fn open(kv: &Arc<MemoryStore>, max: usize) -> ForwardStore {
		let kv = Arc::clone(kv) as Arc<dyn KVStoreSync + Send + Sync>;
		ForwardStore::load(kv, max, Arc::new(NoLogger)).expect("loads")
	}

	fn indices(page: &ForwardPage) -> Vec<u64> {
		page.forwards.iter().map(|r| r.index).collect()
	}

	#[test]
	fn records_amounts_fee_and_duration() {
		let kv = Arc::new(MemoryStore::default());
		let store = open(&kv, 10);
		let record = store.record_at(forward(10_100, 10_000), 3_500).expect("records");
		assert_eq!(record.index, 1);
		assert_eq!(record.fee_msat, Some(100));
		assert_eq!(record.duration_ms, Some(2_500));
		// An out above the in (never from LDK) has no fee rather than a wrap.
		let odd = store.record_at(forward(1, 2), 0).expect("records");
		assert_eq!((odd.fee_msat, odd.duration_ms), (None, None));
	}

	#[test]
	fn pages_oldest_first_with_a_stable_cursor() {
		let kv = Arc::new(MemoryStore::default());
		let store = open(&kv, 100);
		for i in 0..25 {
			store.record(forward(1_000 + i, 1_000)).expect("records");
		}
		let first = store.list(None, 10);
		assert_eq!(indices(&first), (1..=10).collect::<Vec<_>>());
		assert_eq!(first.next_index_offset, Some(10));
		// New records do not move the pages already read.
		store.record(forward(5, 1)).expect("records");
		let second = store.list(first.next_index_offset, 10);
		assert_eq!(indices(&second), (11..=20).collect::<Vec<_>>());
		let last = store.list(second.next_index_offset, 10);
		assert_eq!(indices(&last), (21..=26).collect::<Vec<_>>());
		assert_eq!(last.next_index_offset, None);
		assert!(store.list(Some(26), 10).forwards.is_empty());
		// Limit 0 is the default page, and no page exceeds the cap.
		assert_eq!(store.list(Some(0), 0).forwards.len(), 26);
		assert_eq!(store.list(None, usize::MAX).forwards.len(), 26);
	}

	#[test]
	fn keeps_the_newest_within_the_bound_in_memory_and_on_disk() {
		let kv = Arc::new(MemoryStore::default());
		let store = open(&kv, 5);
		for i in 0..12 {
			store.record(forward(100 + i, 100)).expect("records");
		}
		assert_eq!(store.len(), 5);
		assert_eq!(indices(&store.list(None, 100)), vec![8, 9, 10, 11, 12]);
		let on_disk = KVStoreSync::list(&*kv, FORWARDS_NAMESPACE, "").expect("lists");
		assert_eq!(on_disk.len(), 5);
		// A lower bound at the next start prunes at once.
		let reopened = open(&kv, 2);
		assert_eq!(indices(&reopened.list(None, 100)), vec![11, 12]);
		assert_eq!(KVStoreSync::list(&*kv, FORWARDS_NAMESPACE, "").expect("lists").len(), 2);
	}

	#[test]
	fn survives_a_reopen_and_continues_the_indices() {
		let kv = Arc::new(MemoryStore::default());
		let store = open(&kv, 10);
		let first = store.record(forward(2_000, 1_990)).expect("records");
		store.record(forward(3_000, 2_990)).expect("records");
		drop(store);
		let reopened = open(&kv, 10);
		let page = reopened.list(None, 10);
		assert_eq!(page.forwards.len(), 2);
		assert_eq!(page.forwards[0], first);
		let next = reopened.record(forward(1, 1)).expect("records");
		assert_eq!(next.index, 3);
	}

	#[test]
	fn an_unreadable_record_is_skipped_and_its_index_not_reused() {
		let kv = Arc::new(MemoryStore::default());
		let store = open(&kv, 10);
		store.record(forward(2_000, 1_990)).expect("records");
		store.record(forward(3_000, 2_990)).expect("records");
		drop(store);
		KVStoreSync::write(&*kv, FORWARDS_NAMESPACE, "", &key(2), b"{not json".to_vec())
			.expect("writes");
		KVStoreSync::write(&*kv, FORWARDS_NAMESPACE, "", "junk", b"{}".to_vec()).expect("writes");
		let reopened = open(&kv, 10);
		assert_eq!(indices(&reopened.list(None, 10)), vec![1]);
		assert_eq!(reopened.record(forward(1, 1)).expect("records").index, 3);
	}

	#[test]
	fn a_failed_write_lists_nothing_and_keeps_the_index() {
		let kv = Arc::new(MemoryStore::default());
		let store = open(&kv, 10);
		kv.set_failing(true);
		assert!(matches!(store.record(forward(2, 1)), Err(ForwardError::Io { .. })));
		assert!(store.is_empty());
		kv.set_failing(false);
		assert_eq!(store.record(forward(2, 1)).expect("records").index, 1);
	}

	#[test]
	fn a_settled_bucket_is_a_trampoline_forward() {
		use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
		use lightning::ln::types::ChannelId;
		use lightning::types::payment::PaymentHash;
		let kv = Arc::new(MemoryStore::default());
		let store = open(&kv, 10);
		let secp = Secp256k1::new();
		let next =
			PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[3; 32]).expect("key"));
		let mut bucket = SettledBucket {
			payment_hash: PaymentHash([7; 32]),
			dialect: Dialect::Legacy,
			in_msat: 101_100,
			out_msat: Some(100_050),
			incoming_channels: vec![ChannelId([1; 32])],
			next_node: Some(next),
			started_secs: Some(10),
			failure: None,
		};
		store.bucket_settled(&bucket);
		bucket.out_msat = None;
		bucket.failure = Some(FailReason::NoLiquidity);
		store.bucket_settled(&bucket);
		let page = store.list(None, 10);
		let [relayed, failed] = &page.forwards[..] else { panic!("two records: {page:?}") };
		assert_eq!(relayed.kind, ForwardKind::Trampoline);
		assert_eq!(relayed.payment_hash.as_deref(), Some(&*"07".repeat(32)));
		assert_eq!(
			(relayed.in_msat, relayed.out_msat, relayed.fee_msat),
			(Some(101_100), Some(100_050), Some(1_050))
		);
		assert_eq!(relayed.dialect, Some(Dialect::Legacy));
		assert_eq!(relayed.next_node, Some(next.to_string()));
		assert_eq!(relayed.incoming_channel_ids, vec!["01".repeat(32)]);
		assert_eq!(relayed.started_at_ms, Some(10_000));
		assert_eq!(relayed.outcome, ForwardOutcome::Succeeded);
		assert_eq!(failed.fee_msat, None);
		assert_eq!(
			failed.outcome,
			ForwardOutcome::Failed { reason: fail_reason_words(&FailReason::NoLiquidity) }
		);
	}
}
