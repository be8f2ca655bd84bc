//! The trampoline relay: buckets, the trampoline policy, paying the next node
//! through LDK's router, and settling the bucket with the outcome.
//!
//! [`Trampoline::new`] (called by [`crate::plugin::PluginBuilder::build`],
//! the entry point for a node author) hands back the [`TrampolineHandler`]
//! to give `PeerManager` instead of the `ChannelManager`, and the
//! [`TrampolineRelay`] whose [`handle_event`](TrampolineRelay::handle_event)
//! the plugin's event handler calls first.

pub mod dialect;
mod events;
pub mod limits;
#[cfg(test)]
pub(crate) mod memory_store;
pub mod metrics;
pub mod policy;
pub(crate) mod rules;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, OnceLock};

use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::types::ChannelId;

use bitcoin::hashes::{sha256, Hash, HashEngine, Hmac, HmacEngine};
use bitcoin::secp256k1::{All, PublicKey, Secp256k1};
use lightning::ln::channelmanager::{AChannelManager, PaymentId};
use lightning::log_error;
use lightning::sign::{NodeSigner, Recipient};
use lightning::types::payment::PaymentHash;
use lightning::util::logger::Logger;
use lightning::util::persist::KVStoreSync;

pub use dialect::{wire_failure, Dialect, FailReason};
pub use events::HookOutcome;
pub use limits::RelayLimits;
pub use metrics::RelayMetrics;
pub use policy::{PolicyError, TrampolinePolicy};
pub use store::{BucketState, RecordCounts, RelayStore, SettledTotals, StoreError};

use store::{parse_htlc_key, BucketId, BucketRecord, HtlcRecord};

use crate::handler::arrivals::HtlcArrivals;
use crate::handler::TrampolineHandler;
use crate::htlc_hold::HtlcHold;
use crate::onion::{FailureMessage, TrampolinePayload};
use crate::sender::SenderState;

/// The odd custom TLV (>= 65536) of a rewritten onion that names its bucket
/// (32-byte bucket id).
pub const BUCKET_TLV_TYPE: u64 = 0x0074_7261_6d71; // "tramq", odd

/// Errors of the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
	/// The plugin store.
	#[error(transparent)]
	Store(#[from] StoreError),
	/// The node signer refused the ECDH the plugin secret is derived from,
	/// or to sign an invoice.
	#[error("the node signer refused (plugin secret or invoice signature)")]
	Signer,
	/// The relay policy is unsafe.
	#[error(transparent)]
	Policy(#[from] PolicyError),
	/// An invoice rebuilt with our trampoline features is not valid.
	#[error("the invoice with trampoline features is invalid: {0}")]
	Invoice(String),
}

/// Seconds an HTLC record whose HTLC LDK never listed is kept (an add LDK
/// refused, or one a disconnection dropped before it was committed).
const UNSEEN_GRACE_SECS: u64 = 60;

/// How many settled buckets, and failures sent, operators can still list
/// once their records are pruned.
const HISTORY_LEN: usize = 1_000;

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
	std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Now, ms since the Unix epoch (0 before it).
pub(crate) fn now_ms() -> u64 {
	std::time::SystemTime::now()
		.duration_since(std::time::UNIX_EPOCH)
		.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the relay still shows of pruned buckets: the latest ones, and
/// running totals.
#[derive(Default)]
struct History {
	settled: VecDeque<BucketSummary>,
	/// (payment hash, encoded failure) of HTLCs whose records are gone.
	failures: VecDeque<([u8; 32], Vec<u8>)>,
	/// What the pruned buckets came to (on disk unless `totals_unsaved`).
	totals: SettledTotals,
	/// The last write of `totals` failed.
	totals_unsaved: bool,
	/// Buckets counted in `totals` whose records are not removed yet.
	counted: HashSet<BucketId>,
}

impl History {
	fn remember_failure(&mut self, payment_hash: [u8; 32], failure: Vec<u8>) {
		self.failures.push_back((payment_hash, failure));
		if self.failures.len() > HISTORY_LEN {
			self.failures.pop_front();
		}
	}
}

/// State shared by the message handler and the event hook.
pub struct RelayCore {
	pub(crate) store: RelayStore,
	pub(crate) signer: Arc<dyn NodeSigner + Send + Sync>,
	pub(crate) secp: Secp256k1<All>,
	pub(crate) policy: TrampolinePolicy,
	pub(crate) limits: RelayLimits,
	pub(crate) logger: Arc<dyn Logger + Send + Sync>,
	plugin_secret: [u8; 32],
	/// The peers connected to us now (the message handler keeps it): a next
	/// node flagged `async_payment` is waited for until it is here.
	connected: Mutex<HashSet<PublicKey>>,
	/// Events in a row the hook could not persist the outcome of.
	pub(crate) replays: AtomicU32,
	/// HTLC records whose HTLC the prune pass saw in its channel.
	seen: Mutex<HashSet<String>>,
	/// Receiving buckets the prune pass found without HTLC records.
	empty: Mutex<HashSet<BucketId>>,
	history: Mutex<History>,
	/// Fees, failures, refusals and step timings, in memory.
	metrics: Arc<RelayMetrics>,
	/// A relayed payment was routed by another router than the
	/// [`crate::sender::TrampolineRouter`] sharing the relay's sender state
	/// (a node wired wrongly): its retries would not be bounded by the
	/// incoming HTLCs' expiry, so nothing more is relayed.
	pub(crate) router_unbound: AtomicBool,
}

impl RelayCore {
	/// Loads the plugin state from `kv` and derives the plugin secret from the
	/// node key.
	pub fn new(
		signer: Arc<dyn NodeSigner + Send + Sync>, kv: Arc<dyn KVStoreSync + Send + Sync>,
		policy: TrampolinePolicy, limits: RelayLimits, logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, RelayError> {
		policy.validate()?;
		// ECDH with a point nobody knows the discrete log of: only the node's
		// key yields this secret, and it is the same after every restart.
		let point = nums_point();
		let plugin_secret =
			signer.ecdh(Recipient::Node, &point, None).map_err(|()| RelayError::Signer)?;
		let store = RelayStore::load(kv)?;
		// A counter never keeps the relay (and its claims) from starting.
		let totals = store.settled_totals().unwrap_or_else(|e| {
			log_error!(logger, "Relay totals unreadable, counting from zero: {e}");
			SettledTotals::default()
		});
		let history = History { totals, ..History::default() };
		Ok(Self {
			store,
			signer,
			secp: Secp256k1::new(),
			policy,
			limits,
			logger,
			plugin_secret: plugin_secret.secret_bytes(),
			connected: Mutex::new(HashSet::new()),
			replays: AtomicU32::new(0),
			seen: Mutex::new(HashSet::new()),
			empty: Mutex::new(HashSet::new()),
			history: Mutex::new(history),
			metrics: Arc::default(),
			router_unbound: AtomicBool::new(false),
		})
	}

	/// The relay's live metrics (fees earned, failures and refusals by
	/// reason and code, step timings), since the node started.
	pub fn metrics(&self) -> &Arc<RelayMetrics> {
		&self.metrics
	}

	fn history(&self) -> std::sync::MutexGuard<'_, History> {
		self.history.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// The relay's records. Reading them is safe; writing them bypasses the
	/// relay's rules (benches and tests only).
	pub fn store(&self) -> &RelayStore {
		&self.store
	}

	/// The relay's limits.
	pub fn limits(&self) -> &RelayLimits {
		&self.limits
	}

	/// Whether holding bucket `id` (bringing `amount_msat`) stays within the
	/// hold limits of each of its payers and of the node; `Err` names the
	/// limit it would pass.
	pub(crate) fn hold_room(&self, id: &BucketId, amount_msat: u64) -> Result<(), &'static str> {
		let held = self.store.held_buckets();
		if held.len() >= self.limits.max_held {
			return Err("max_held");
		}
		let payers: HashSet<String> =
			self.store.htlcs_of(id).into_iter().map(|(_, h)| h.peer).collect();
		let mut per_payer: HashMap<&String, (usize, u64)> = HashMap::new();
		for (held_id, bucket) in &held {
			let BucketState::Held { amount_msat, .. } = bucket.state else { continue };
			let peers: HashSet<String> =
				self.store.htlcs_of(held_id).into_iter().map(|(_, h)| h.peer).collect();
			for payer in payers.iter().filter(|p| peers.contains(*p)) {
				let entry = per_payer.entry(payer).or_default();
				entry.0 += 1;
				entry.1 = entry.1.saturating_add(amount_msat);
			}
		}
		for (count, msat) in per_payer.values() {
			if *count >= self.limits.max_held_per_peer {
				return Err("max_held_per_peer");
			}
			if msat.saturating_add(amount_msat) > self.limits.max_held_msat_per_peer {
				return Err("max_held_msat_per_peer");
			}
		}
		if payers.is_empty() && amount_msat > self.limits.max_held_msat_per_peer {
			return Err("max_held_msat_per_peer");
		}
		Ok(())
	}

	/// Whether failing back by payment hash may be done for this settled
	/// bucket: it still has an HTLC out and no newer bucket of its hash was
	/// admitted (which only happens once this one is resolved).
	pub(crate) fn may_fail_by_hash(&self, id: &BucketId, bucket: &BucketRecord) -> bool {
		!bucket.superseded && self.store.htlcs_of(id).iter().any(|(_, h)| !h.resolved)
	}

	/// Marks the HTLC of `channel_id` / `htlc_id` resolved (its fulfill or
	/// failure is going out), if it is one of ours. Writes nothing to disk
	/// (it runs where every peer waits): the next flush does.
	pub(crate) fn htlc_resolved(&self, channel_id: &ChannelId, htlc_id: u64) {
		let key = store::htlc_key(channel_id, htlc_id);
		self.store.update_htlc_deferred(&key, |h| h.resolved = true);
	}

	/// Forgets what is over: an HTLC that left its channel (seen there by an
	/// earlier pass, or never listed by LDK for a minute) is resolved; a
	/// bucket whose HTLCs are all resolved and that is settled (or that LDK
	/// gave up on while receiving or held) goes, with its HTLC records, into
	/// the operators' history. A bucket still sending is kept whatever its
	/// HTLCs do. Costs in proportion to the records kept, which this keeps to
	/// the live ones.
	///
	/// [`TrampolineRelay::tick`] calls it with the channel manager's
	/// `list_channels()`. It is only the pruning part: a node must run
	/// `tick` itself, which also drives the holds and flushes deferred
	/// writes.
	pub fn prune(&self, channels: &[ChannelDetails]) {
		let in_channels: HashSet<(ChannelId, u64)> = channels
			.iter()
			.flat_map(|c| c.pending_inbound_htlcs.iter().map(|h| (c.channel_id, h.htlc_id)))
			.collect();
		let now = now_secs();
		{
			let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
			for (key, htlc) in self.store.htlcs() {
				let Some(at) = parse_htlc_key(&key) else { continue };
				if in_channels.contains(&at) {
					seen.insert(key);
					continue;
				}
				let gone = seen.remove(&key)
					|| now >= htlc.recorded_secs.saturating_add(UNSEEN_GRACE_SECS);
				if !gone {
					continue;
				}
				if htlc.bucket.is_none() {
					// Under the history lock: a reader sees the failure in
					// the store or in the history, never in both.
					let mut history = self.history();
					if let Err(e) = self.store.remove_htlc(&key) {
						log_error!(self.logger, "Cannot prune HTLC record {key}: {e}");
					} else if let Some(failure) = htlc.failure_sent {
						history.remember_failure(htlc.payment_hash, failure);
					}
				} else if !htlc.resolved {
					self.store.update_htlc_deferred(&key, |h| h.resolved = true);
				}
			}
		}
		let mut empty = self.empty.lock().unwrap_or_else(|p| p.into_inner());
		let mut forgotten = Vec::new();
		let mut over_buckets = Vec::new();
		for (id, bucket) in self.store.buckets() {
			let htlcs = self.store.htlcs_of(&id);
			// Resolved and gone from its channel: while LDK still has the
			// HTLC, a reconnection makes it send its failure again, which
			// only the record lets us rewrite for the payer.
			let out = |(key, h): &(String, HtlcRecord)| {
				!h.resolved || parse_htlc_key(key).is_some_and(|at| in_channels.contains(&at))
			};
			if htlcs.iter().any(out) {
				empty.remove(&id);
				continue;
			}
			let over = match bucket.state {
				BucketState::Claimed { .. } | BucketState::Failed { .. } => true,
				// Created by an HTLC whose record is about to be written:
				// only a second pass that finds none forgets it.
				BucketState::Receiving | BucketState::Held { .. } if htlcs.is_empty() => {
					!empty.insert(id)
				},
				// LDK failed every part by itself.
				BucketState::Receiving | BucketState::Held { .. } => true,
				BucketState::Sending { .. } => false,
			};
			if !over {
				continue;
			}
			empty.remove(&id);
			over_buckets.push((id, htlcs, self.summary(&id, &bucket)));
		}
		drop(empty);
		// Under the history lock: a reader sees a bucket and its failures in
		// the store or in the history, never in both.
		let mut history = self.history();
		let mut totals = history.totals;
		for (id, _, summary) in &over_buckets {
			if history.counted.insert(*id) {
				totals.count(summary);
			}
		}
		// Counted on disk, once per pass, before the records go: a crash
		// between the two counts a bucket twice, never not at all. A failed
		// write is tried again at the next pass; the records go anyway (a
		// counter never keeps the store from shrinking).
		if totals != history.totals || history.totals_unsaved {
			history.totals = totals;
			history.totals_unsaved = match self.store.put_settled_totals(&totals) {
				Ok(()) => false,
				Err(e) => {
					if !history.totals_unsaved {
						log_error!(
							self.logger,
							"Cannot write the relay's totals (will retry): {e}"
						);
					}
					true
				},
			};
		}
		for (id, htlcs, summary) in over_buckets {
			if let Err(e) = self.store.remove_bucket(&id) {
				log_error!(
					self.logger,
					"Cannot prune trampoline bucket {}: {e}",
					summary.payment_hash
				);
				continue;
			}
			history.counted.remove(&id);
			self.metrics.forget(&id);
			for (key, htlc) in &htlcs {
				if let Some(failure) = &htlc.failure_sent {
					history.remember_failure(htlc.payment_hash, failure.clone());
				}
				forgotten.push(key.clone());
			}
			let summary = BucketSummary {
				state: match summary.state {
					BucketStage::Relayed => BucketStage::Relayed,
					_ => BucketStage::Failed,
				},
				..summary
			};
			history.settled.push_back(summary);
			if history.settled.len() > HISTORY_LEN {
				history.settled.pop_front();
			}
		}
		drop(history);
		let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
		for key in forgotten {
			seen.remove(&key);
		}
	}

	fn summary(&self, id: &BucketId, bucket: &BucketRecord) -> BucketSummary {
		BucketSummary {
			payment_hash: PaymentHash(bucket.payment_hash),
			parts: self.store.htlcs_of(id).len(),
			outer_total_msat: bucket.outer_total_msat,
			dialect: bucket.dialect,
			state: match bucket.state {
				BucketState::Receiving => BucketStage::Receiving,
				BucketState::Held { .. } => BucketStage::Held,
				BucketState::Sending { .. } => BucketStage::Sending,
				BucketState::Claimed { .. } => BucketStage::Relayed,
				BucketState::Failed { .. } => BucketStage::Failed,
			},
		}
	}

	/// Records that `peer` connected (`true`) or disconnected.
	pub(crate) fn set_connected(&self, peer: PublicKey, connected: bool) {
		let mut peers = self.connected.lock().unwrap_or_else(|p| p.into_inner());
		if connected {
			peers.insert(peer);
		} else {
			peers.remove(&peer);
		}
	}

	/// Whether `peer` is connected to us now.
	pub(crate) fn is_connected(&self, peer: &PublicKey) -> bool {
		self.connected.lock().unwrap_or_else(|p| p.into_inner()).contains(peer)
	}

	/// HMAC-SHA256 of the plugin secret over a label and parts: deterministic
	/// keys and ids.
	pub(crate) fn derive(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
		let mut engine = HmacEngine::<sha256::Hash>::new(&self.plugin_secret);
		engine.input(label);
		for part in parts {
			engine.input(part);
		}
		Hmac::<sha256::Hash>::from_engine(engine).to_byte_array()
	}

	/// The relay's policy.
	pub fn policy(&self) -> &TrampolinePolicy {
		&self.policy
	}

	/// `invoice` (one of ours) advertising what this relay does: bit 57 and,
	/// with [`TrampolinePolicy::advertise_legacy_feature_bit`], Electrum's
	/// 151, signed again with the node key. Electrum pays an invoice that
	/// sets 149 or 151 end to end through trampolines (`trampoline.py`
	/// `is_legacy_relay`): with us as its trampoline, its onion names us as
	/// the next trampoline too, and we receive it (the message handler
	/// turns it into a receive of this invoice).
	pub fn advertise_in_invoice(
		&self, invoice: lightning_invoice::Bolt11Invoice,
	) -> Result<lightning_invoice::Bolt11Invoice, RelayError> {
		use lightning::types::features::Bolt11InvoiceFeatures;
		use lightning_invoice::{Bolt11Invoice, RawTaggedField, TaggedField};

		let features = |current: Option<&Bolt11InvoiceFeatures>| {
			let flags = current.map(|f| f.le_flags().to_vec()).unwrap_or_default();
			Bolt11InvoiceFeatures::from_le_bytes(crate::handler::with_trampoline_bits(
				&flags,
				Some(&self.policy),
			))
		};
		let (mut raw, _, _) = invoice.into_signed_raw().into_parts();
		let mut found = false;
		for field in raw.data.tagged_fields.iter_mut() {
			if let RawTaggedField::KnownSemantics(TaggedField::Features(current)) = field {
				*current = features(Some(current));
				found = true;
			}
		}
		if !found {
			raw.data
				.tagged_fields
				.push(RawTaggedField::KnownSemantics(TaggedField::Features(features(None))));
		}
		let to_sign = raw.clone();
		let signed = raw
			.sign(|_| self.signer.sign_invoice(&to_sign, Recipient::Node))
			.map_err(|()| RelayError::Signer)?;
		Bolt11Invoice::from_signed(signed).map_err(|e| RelayError::Invoice(e.to_string()))
	}

	/// Counts of the buckets this node has seen, by state (operator
	/// visibility): the live ones, and the settled ones pruned since start.
	pub fn stats(&self) -> RelayStats {
		// The history lock is held while the store is read: pruning moves a
		// bucket from one to the other under it.
		let history = self.history();
		let totals = history.totals;
		let mut stats = RelayStats {
			relayed: totals.relayed,
			failed: totals.failed,
			relayed_in_msat: totals.relayed_in_msat,
			legacy: totals.legacy,
			..RelayStats::default()
		};
		let pruned = totals.relayed.saturating_add(totals.failed);
		stats.spec = pruned.saturating_sub(totals.legacy);
		for (_, bucket) in self.store.buckets() {
			match bucket.dialect {
				Dialect::Spec => stats.spec += 1,
				Dialect::Legacy => stats.legacy += 1,
			}
			match bucket.state {
				BucketState::Receiving => stats.receiving += 1,
				BucketState::Held { .. } => stats.held += 1,
				BucketState::Sending { .. } => stats.sending += 1,
				BucketState::Claimed { .. } => {
					stats.relayed += 1;
					stats.relayed_in_msat =
						stats.relayed_in_msat.saturating_add(bucket.outer_total_msat);
				},
				BucketState::Failed { .. } => stats.failed += 1,
			}
		}
		stats
	}

	/// Every bucket (incoming trampoline payment, possibly multi-part), for
	/// operators: its parts so far and where it stands; the settled ones
	/// whose records were pruned (the latest thousand) first.
	pub fn buckets(&self) -> Vec<BucketSummary> {
		let history = self.history();
		let mut buckets: Vec<BucketSummary> = history.settled.iter().cloned().collect();
		buckets.extend(self.store.buckets().iter().map(|(id, bucket)| self.summary(id, bucket)));
		buckets
	}

	/// The buckets held for an offline next node, oldest first (operators:
	/// what waits, for whom, until when).
	pub fn held(&self) -> Vec<HeldBucket> {
		let mut held: Vec<HeldBucket> = self
			.store
			.held_buckets()
			.into_iter()
			.filter_map(|(_, bucket)| {
				let BucketState::Held { amount_msat, since_secs, deadline_height } = bucket.state
				else {
					return None;
				};
				let next_node = TrampolinePayload::decode(&bucket.trampoline_payload)
					.ok()
					.and_then(|payload| payload.hop.next_node_id())
					.map(|node_id| node_id.to_string())
					.unwrap_or_default();
				Some(HeldBucket {
					payment_hash: PaymentHash(bucket.payment_hash).to_string(),
					next_node,
					amount_msat,
					since_secs,
					deadline_height,
				})
			})
			.collect();
		held.sort_by_key(|h| h.since_secs);
		held
	}

	/// How many records the relay keeps (buckets and HTLCs): what a flood
	/// would grow, and what pruning brings back down.
	pub fn record_counts(&self) -> RecordCounts {
		self.store.counts()
	}

	/// The failures this node put on the wire for HTLCs of `payment_hash`, in
	/// no particular order (operator visibility; tests assert on them).
	pub fn failures_sent(&self, payment_hash: &PaymentHash) -> Vec<FailureMessage> {
		let history = self.history();
		let mut sent: Vec<Vec<u8>> = history
			.failures
			.iter()
			.filter(|(hash, _)| *hash == payment_hash.0)
			.map(|(_, failure)| failure.clone())
			.collect();
		sent.extend(self.store.failures_sent(&payment_hash.0));
		sent.iter().filter_map(|bytes| FailureMessage::decode(bytes).ok()).collect()
	}
}

/// Where a bucket stands, for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketStage {
	/// Waiting for all its parts.
	Receiving,
	/// Complete, held until the next node (our peer) is back online.
	Held,
	/// The outgoing payment is in flight.
	Sending,
	/// Relayed: the outgoing payment succeeded and the incoming parts are claimed.
	Relayed,
	/// Failed back to the payer.
	Failed,
}

/// An incoming trampoline payment as operators see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSummary {
	/// The payment hash.
	pub payment_hash: PaymentHash,
	/// How many incoming HTLCs (MPP parts) it has had.
	pub parts: usize,
	/// The outer total the payer announced, msat.
	pub outer_total_msat: u64,
	/// The dialect its payer spoke (its failures are in it).
	pub dialect: Dialect,
	/// Where it stands.
	pub state: BucketStage,
}

/// A trampoline payment held until its next node is back online.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldBucket {
	/// The payment hash, hex.
	pub payment_hash: String,
	/// The offline next node it waits for, hex.
	pub next_node: String,
	/// What its incoming parts bring in, msat.
	pub amount_msat: u64,
	/// Held since, seconds since the Unix epoch.
	pub since_secs: u64,
	/// The height at which it is failed back if still held.
	pub deadline_height: u32,
}

/// What a trampoline node has relayed, for operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayStats {
	/// Buckets waiting for all their parts.
	pub receiving: usize,
	/// Buckets held until their next node is back online.
	#[serde(default)]
	pub held: usize,
	/// Buckets whose outgoing payment is in flight.
	pub sending: usize,
	/// Buckets relayed (outgoing payment fulfilled, incoming claimed).
	pub relayed: usize,
	/// Buckets failed back to the payer.
	pub failed: usize,
	/// What relayed buckets brought in, fees included.
	pub relayed_in_msat: u64,
	/// Buckets (live and pruned, as above) whose payer spoke the spec
	/// dialect (trampoline onion in type 20).
	#[serde(default)]
	pub spec: usize,
	/// Buckets whose payer spoke the legacy dialect (66100: eclair, Phoenix,
	/// Electrum), answered with legacy failures.
	#[serde(default)]
	pub legacy: usize,
}

/// A point with no known discrete logarithm: the first valid x coordinate
/// hashed from a fixed label.
fn nums_point() -> PublicKey {
	let mut counter = 0u32;
	loop {
		let mut engine = sha256::Hash::engine();
		engine.input(b"ldk-trampoline plugin secret");
		engine.input(&counter.to_be_bytes());
		let x = sha256::Hash::from_engine(engine).to_byte_array();
		let mut bytes = [2u8; 33];
		bytes[1..].copy_from_slice(&x);
		if let Ok(point) = PublicKey::from_slice(&bytes) {
			return point;
		}
		counter += 1;
	}
}

/// The plugin, assembled for one node.
pub struct Trampoline<CM: Deref + Clone>
where
	CM::Target: AChannelManager,
{
	/// The message handler to give `PeerManager` (as `chan_handler`).
	pub handler: Arc<TrampolineHandler<CM>>,
	/// The event hook, `None` when relaying is disabled.
	pub relay: Option<Arc<TrampolineRelay<CM>>>,
	/// The wallet side: trampoline payments sent and their decrypted failures.
	pub sender: Arc<SenderState>,
	/// When each inbound HTLC arrived (and the total its final payload
	/// announced), noted by the handler: for listing partial payments.
	pub arrivals: Arc<HtlcArrivals>,
}

impl<CM: Deref + Clone> Trampoline<CM>
where
	CM::Target: AChannelManager,
{
	/// Builds the plugin around `channel_manager`. With `policy: None` the
	/// handler passes everything through and there is no relay. `sender` is
	/// the state the channel manager's [`crate::sender::TrampolineRouter`]
	/// was given (create it with `SenderState::default()` before the channel
	/// manager). `limits` bound what payers may have in flight and held.
	/// `hold`, if the node holds HTLCs for often-offline payers, is shown
	/// every `update_add_htlc` flagged `hold_htlc`.
	///
	/// Funds safety: give each block's height to
	/// [`SenderState::best_block_updated`] before the channel manager
	/// connects it (a chain listener placed ahead of it), so that LDK's
	/// retries of a relayed payment are bounded by a height never behind
	/// LDK's; without it the bound is only as fresh as the last
	/// [`TrampolineRelay::tick`].
	#[allow(clippy::too_many_arguments)]
	pub fn new(
		channel_manager: CM, signer: Arc<dyn NodeSigner + Send + Sync>,
		kv: Arc<dyn KVStoreSync + Send + Sync>, policy: Option<TrampolinePolicy>,
		limits: RelayLimits, sender: Arc<SenderState>, hold: Option<Arc<HtlcHold>>,
		logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, RelayError> {
		let arrivals = Arc::new(HtlcArrivals::default());
		let Some(policy) = policy else {
			let handler =
				TrampolineHandler::new(channel_manager, None, Some(Arc::clone(&sender)), hold)
					.with_arrivals(Arc::clone(&arrivals));
			return Ok(Self { handler: Arc::new(handler), relay: None, sender, arrivals });
		};
		let core = Arc::new(RelayCore::new(signer, kv, policy, limits, logger)?);
		// Funds safety after a restart: LDK may retry the outgoing payments
		// of buckets still sending as soon as anything processes its
		// forwards; each is routed within its bucket's limit (and not at
		// all until a height is known).
		for (_, bucket) in core.store.buckets() {
			if let BucketState::Sending { payment_id } = bucket.state {
				let limit = rules::expiry_limit(rules::claim_deadline(&bucket));
				sender.watch_route(PaymentId(payment_id), limit);
			}
		}
		let handler = TrampolineHandler::new(
			channel_manager.clone(),
			Some(Arc::clone(&core)),
			Some(Arc::clone(&sender)),
			hold,
		)
		.with_arrivals(Arc::clone(&arrivals));
		Ok(Self {
			arrivals,
			handler: Arc::new(handler),
			relay: Some(Arc::new(TrampolineRelay {
				cm: channel_manager,
				core,
				sender: Arc::clone(&sender),
				observer: OnceLock::new(),
			})),
			sender,
		})
	}
}

/// The event side of the relay: call [`Self::handle_event`] before the node's
/// own event handling.
pub struct TrampolineRelay<CM: Deref>
where
	CM::Target: AChannelManager,
{
	cm: CM,
	core: Arc<RelayCore>,
	sender: Arc<SenderState>,
	observer: OnceLock<Arc<dyn SettleObserver>>,
}

impl<CM: Deref> TrampolineRelay<CM>
where
	CM::Target: AChannelManager,
{
	/// The shared state (policy, records).
	pub fn core(&self) -> &Arc<RelayCore> {
		&self.core
	}

	/// Tells `observer` of every bucket the relay settles from now on (set
	/// it before the node starts handling events). One observer per relay:
	/// `false` (and `observer` dropped) if one is set already.
	pub fn set_observer(&self, observer: Arc<dyn SettleObserver>) -> bool {
		self.observer.set(observer).is_ok()
	}

	/// Tells the observer, if any, of a bucket just settled (built only if
	/// there is one).
	pub(crate) fn notify_settled(&self, settled: impl FnOnce() -> SettledBucket) {
		if let Some(observer) = self.observer.get() {
			observer.bucket_settled(&settled());
		}
	}
}

/// A bucket the relay just settled (once per bucket, when its claim or
/// failure is recorded), as told to a [`SettleObserver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledBucket {
	/// The payment hash.
	pub payment_hash: PaymentHash,
	/// The dialect its payer spoke.
	pub dialect: Dialect,
	/// What its incoming HTLCs brought in, msat (the outer total the payer
	/// announced when no HTLC amount is known).
	pub in_msat: u64,
	/// What left our channels for the next node, its routing fees
	/// included, msat: known for a relayed bucket only.
	pub out_msat: Option<u64>,
	/// The channels its incoming HTLCs came in on.
	pub incoming_channels: Vec<ChannelId>,
	/// The next node of its trampoline payload, if it names one.
	pub next_node: Option<PublicKey>,
	/// When its first HTLC was recorded, seconds since the Unix epoch.
	pub started_secs: Option<u64>,
	/// `None`: relayed (the outgoing payment succeeded, the incoming HTLCs
	/// are claimed); else why it was failed back.
	pub failure: Option<FailReason>,
}

/// Learns of the buckets a [`TrampolineRelay`] settles (a node's forwarding
/// history, say). Called on the event handler's thread, after the relay
/// recorded the outcome: it must not call back into the relay's events.
pub trait SettleObserver: Send + Sync {
	/// `bucket` was relayed or failed back.
	fn bucket_settled(&self, bucket: &SettledBucket);
}
