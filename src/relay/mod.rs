//! The trampoline relay: buckets, the trampoline policy, paying the next node
//! through LDK's router, and settling the bucket with the outcome.
//!
//! [`Trampoline::new`] is the plugin's entry point for a node author: it hands
//! back the [`TrampolineHandler`] to give `PeerManager` instead of the
//! `ChannelManager`, and the [`TrampolineRelay`] whose
//! [`handle_event`](TrampolineRelay::handle_event) the node's event handler
//! calls first.

mod events;
pub mod policy;
pub mod store;

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use bitcoin::hashes::{sha256, Hash, HashEngine, Hmac, HmacEngine};
use bitcoin::secp256k1::{All, PublicKey, Secp256k1};
use lightning::ln::channelmanager::AChannelManager;
use lightning::sign::{NodeSigner, Recipient};
use lightning::types::payment::PaymentHash;
use lightning::util::logger::Logger;
use lightning::util::persist::KVStoreSync;

pub use events::HookOutcome;
pub use policy::TrampolinePolicy;
pub use store::{BucketState, RecordCounts, RelayStore, StoreError};

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
	/// The node signer refused the ECDH the plugin secret is derived from.
	#[error("the node signer cannot derive the plugin secret")]
	Signer,
}

/// State shared by the message handler and the event hook.
pub struct RelayCore {
	pub(crate) store: RelayStore,
	pub(crate) signer: Arc<dyn NodeSigner + Send + Sync>,
	pub(crate) secp: Secp256k1<All>,
	pub(crate) policy: TrampolinePolicy,
	pub(crate) logger: Arc<dyn Logger + Send + Sync>,
	plugin_secret: [u8; 32],
	/// The peers connected to us now (the message handler keeps it): a next
	/// node flagged `async_payment` is waited for until it is here.
	connected: Mutex<HashSet<PublicKey>>,
}

impl RelayCore {
	/// Loads the plugin state from `kv` and derives the plugin secret from the
	/// node key.
	pub fn new(
		signer: Arc<dyn NodeSigner + Send + Sync>, kv: Arc<dyn KVStoreSync + Send + Sync>,
		policy: TrampolinePolicy, logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, RelayError> {
		// ECDH with a point nobody knows the discrete log of: only the node's
		// key yields this secret, and it is the same after every restart.
		let point = nums_point();
		let plugin_secret =
			signer.ecdh(Recipient::Node, &point, None).map_err(|()| RelayError::Signer)?;
		Ok(Self {
			store: RelayStore::load(kv)?,
			signer,
			secp: Secp256k1::new(),
			policy,
			logger,
			plugin_secret: plugin_secret.secret_bytes(),
			connected: Mutex::new(HashSet::new()),
		})
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

	/// Counts of the buckets this node has seen, by state (operator visibility).
	pub fn stats(&self) -> RelayStats {
		let mut stats = RelayStats::default();
		for (_, bucket) in self.store.buckets() {
			match bucket.state {
				BucketState::Receiving => stats.receiving += 1,
				BucketState::Held { .. } => stats.held += 1,
				BucketState::Sending { .. } => stats.sending += 1,
				BucketState::Claimed { .. } => {
					stats.relayed += 1;
					stats.relayed_in_msat += bucket.outer_total_msat;
				},
				BucketState::Failed { .. } => stats.failed += 1,
			}
		}
		stats
	}

	/// Every bucket (incoming trampoline payment, possibly multi-part), for
	/// operators: its parts so far and where it stands.
	pub fn buckets(&self) -> Vec<BucketSummary> {
		self.store
			.buckets()
			.into_iter()
			.map(|(id, bucket)| BucketSummary {
				payment_hash: PaymentHash(bucket.payment_hash),
				parts: self.store.htlcs_of(&id).len(),
				outer_total_msat: bucket.outer_total_msat,
				state: match bucket.state {
					BucketState::Receiving => BucketStage::Receiving,
					BucketState::Held { .. } => BucketStage::Held,
					BucketState::Sending { .. } => BucketStage::Sending,
					BucketState::Claimed { .. } => BucketStage::Relayed,
					BucketState::Failed { .. } => BucketStage::Failed,
				},
			})
			.collect()
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
		self.store
			.failures_sent()
			.into_iter()
			.filter(|(_, h)| h.payment_hash == payment_hash.0)
			.filter_map(|(_, h)| FailureMessage::decode(h.failure_sent.as_deref()?).ok())
			.collect()
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
}

impl<CM: Deref + Clone> Trampoline<CM>
where
	CM::Target: AChannelManager,
{
	/// Builds the plugin around `channel_manager`. With `policy: None` the
	/// handler passes everything through and there is no relay. `sender` is
	/// the state the channel manager's [`crate::sender::TrampolineRouter`]
	/// was given (create it with `SenderState::default()` before the channel
	/// manager). `hold`, if the node holds HTLCs for often-offline payers,
	/// is shown every `update_add_htlc` flagged `hold_htlc`.
	pub fn new(
		channel_manager: CM, signer: Arc<dyn NodeSigner + Send + Sync>,
		kv: Arc<dyn KVStoreSync + Send + Sync>, policy: Option<TrampolinePolicy>,
		sender: Arc<SenderState>, hold: Option<Arc<HtlcHold>>,
		logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, RelayError> {
		let Some(policy) = policy else {
			let handler =
				TrampolineHandler::new(channel_manager, None, Some(Arc::clone(&sender)), hold);
			return Ok(Self { handler: Arc::new(handler), relay: None, sender });
		};
		let core = Arc::new(RelayCore::new(signer, kv, policy, logger)?);
		let handler = TrampolineHandler::new(
			channel_manager.clone(),
			Some(Arc::clone(&core)),
			Some(Arc::clone(&sender)),
			hold,
		);
		Ok(Self {
			handler: Arc::new(handler),
			relay: Some(Arc::new(TrampolineRelay {
				cm: channel_manager,
				core,
				sender: Arc::clone(&sender),
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
}

impl<CM: Deref> TrampolineRelay<CM>
where
	CM::Target: AChannelManager,
{
	/// The shared state (policy, records).
	pub fn core(&self) -> &Arc<RelayCore> {
		&self.core
	}
}
