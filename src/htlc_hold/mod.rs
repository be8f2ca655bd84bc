//! The sender's LSP side of async payments (BOLTs PR 1149): an often-offline
//! payer locks in its HTLC with us flagged `hold_htlc` and goes away; we hold
//! it until the recipient, back online, sends us `release_held_htlc`.
//!
//! LDK 0.2.7 holds such HTLCs itself once `UserConfig::enable_htlc_hold` is
//! set (it then advertises `option_htlc_hold`), and releases one when a
//! `release_held_htlc` arrives over the blinded path it gave the payer. It
//! offers no way to list them, no limits and no deadline but the HTLC's
//! expiry. This module adds those, around LDK:
//!
//! * [`HtlcHold::on_add`] (called by [`crate::handler::TrampolineHandler`]
//!   for every `update_add_htlc` flagged `hold_htlc`, before LDK sees it)
//!   records the HTLC durably and provisionally, `Held` or `Refused` by the
//!   per-peer and per-node limits of [`HtlcHoldPolicy`]; the hold loop marks
//!   it committed once LDK lists it in a commitment, and drops it if LDK
//!   does not list it (an add LDK rejected or dropped);
//! * [`HoldReleaseHandler`] (the onion messenger's async payments handler)
//!   lets a `release_held_htlc` through to LDK only for an HTLC that is
//!   `Held`: a replay, or one for a refused or expired HTLC, is dropped;
//! * [`HtlcHold::tick`] fails refused and expired HTLCs back
//!   (`ChannelManager::fail_intercepted_htlc`, once, and only while LDK
//!   holds them), hands releases to LDK again after a restart (never past
//!   the deadline), and forgets HTLCs once they are settled.

mod policy;
mod registry;
mod release;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1};
use lightning::blinded_path::message::AsyncPaymentsContext;
use lightning::ln::channelmanager::{AChannelManager, InterceptId};
use lightning::ln::msgs::UpdateAddHTLC;
use lightning::ln::types::ChannelId;
use lightning::onion_message::async_payments::{AsyncPaymentsMessageHandler, ReleaseHeldHtlc};
use lightning::sign::{NodeSigner, Recipient};
use lightning::util::logger::Logger;
use lightning::util::persist::KVStoreSync;
use lightning::{log_error, log_info, log_warn};

use crate::onion::{self, FailureMessage, OnionPacket, OuterHop, OuterPayload};

pub use policy::HtlcHoldPolicy;
pub use registry::{Admission, HeldHtlc, HoldRefusal, HoldRegistry, HoldState};
pub use release::HoldReleaseHandler;

/// LDK 0.2.7 times a held HTLC out this many blocks before the CLTV expiry
/// of the HTLC it would be forwarded as (`HTLC_FAIL_BACK_BUFFER`).
pub const LDK_FAIL_BACK_BUFFER: u32 = 39;

/// Errors of the hold registry.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
	/// The KV store failed.
	#[error("held HTLC registry {what}: {reason}")]
	Io {
		/// What was being done.
		what: &'static str,
		/// The store's error.
		reason: String,
	},
	/// A record does not decode.
	#[error("held HTLC record {key} is corrupt: {reason}")]
	Corrupt {
		/// The record key.
		key: String,
		/// The decode error.
		reason: String,
	},
}

/// LDK's id of the HTLC `htlc_id` that `peer` added on `channel_id` (what
/// `ChannelManager` keys held HTLCs and release contexts with).
pub fn intercept_id(htlc_id: u64, channel_id: &ChannelId, peer: &PublicKey) -> InterceptId {
	let mut engine = sha256::Hash::engine();
	engine.input(&htlc_id.to_be_bytes());
	engine.input(&channel_id.0);
	engine.input(&peer.serialize());
	InterceptId(sha256::Hash::from_engine(engine).to_byte_array())
}

/// A held HTLC as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldHtlcSummary {
	/// The payer (our peer), hex.
	pub peer: String,
	/// The payment hash, hex.
	pub payment_hash: String,
	/// What it carries in, msat.
	pub amount_msat: u64,
	/// Held since, seconds since the Unix epoch.
	pub since_secs: u64,
	/// The height at which it is failed back if still held.
	pub deadline_height: u32,
	/// The time (seconds since the Unix epoch) at which it is failed back if
	/// still held.
	pub deadline_secs: u64,
	/// Where it stands and why: `held: ...`, `released: ...`, `expired: ...`
	/// or `refused: <the limit it broke>`.
	pub reason: String,
	/// LDK's intercept id, hex.
	pub intercept_id: String,
}

impl From<&HeldHtlc> for HeldHtlcSummary {
	fn from(htlc: &HeldHtlc) -> Self {
		let reason = match htlc.state {
			HoldState::Held => "held: awaiting the recipient's release_held_htlc".to_string(),
			HoldState::Refused { reason } => format!("refused: {reason}"),
			HoldState::Released { .. } => "released: forwarding".to_string(),
			HoldState::Expired => "expired: failing back".to_string(),
		};
		Self {
			peer: htlc.peer.to_string(),
			payment_hash: htlc.payment_hash.to_string(),
			amount_msat: htlc.amount_msat,
			since_secs: htlc.since_secs,
			deadline_height: htlc.deadline_height,
			deadline_secs: htlc.deadline_secs,
			reason,
			intercept_id: htlc.intercept_id.0.iter().map(|b| format!("{b:02x}")).collect(),
		}
	}
}

/// Something that happened to a held HTLC, for the node's event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldEvent {
	/// A payer's HTLC is now held for its recipient.
	Held(HeldHtlcSummary),
	/// A payer's HTLC was beyond a limit and is being failed back.
	Refused(HeldHtlcSummary),
	/// The recipient released it; LDK forwards it.
	Released(HeldHtlcSummary),
	/// LDK is failing it back to the payer (refused, or past its deadline);
	/// its record goes when the HTLC leaves the channel.
	FailedBack(HeldHtlcSummary),
	/// Its HTLC left the channel otherwise (released and settled, or
	/// resolved by LDK itself); its record is gone.
	Settled(HeldHtlcSummary),
}

impl HoldEvent {
	/// The HTLC it is about.
	pub fn summary(&self) -> &HeldHtlcSummary {
		match self {
			Self::Held(h) | Self::Refused(h) | Self::Released(h) | Self::FailedBack(h) => h,
			Self::Settled(h) => h,
		}
	}
}

/// Why a `release_held_htlc` was not handed to LDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IgnoredRelease {
	/// No HTLC of ours has that id.
	#[error("no held HTLC has this intercept id")]
	Unknown,
	/// The context names another HTLC than the one recorded under its id.
	#[error("the release names another HTLC than the one held under its id")]
	Mismatch,
	/// That HTLC was released already (a replay).
	#[error("the HTLC was released already")]
	AlreadyReleased,
	/// That HTLC was refused by a limit and is being failed back.
	#[error("the HTLC was refused by a limit")]
	Refused,
	/// That HTLC's deadline passed (it is being failed back, or will be at
	/// the hold loop's next pass).
	#[error("the HTLC's deadline passed")]
	Expired,
	/// The registry could not record the release.
	#[error("the release could not be recorded")]
	NotRecorded,
}

/// Where a recorded HTLC is, as one pass of [`HtlcHold::tick`] sees it.
#[derive(Clone, Copy, Debug)]
struct Whereabouts {
	/// Among its channel's pending inbound HTLCs now.
	in_channel: bool,
	/// LDK listed it as part of a commitment (now or at an earlier pass).
	committed: bool,
	/// LDK had handled its add more than [`UNLISTED_GRACE_PASSES`] passes
	/// before this one read the listing. LDK 0.2.7 lists an inbound HTLC
	/// only once the payer's `commitment_signed` covers it (a
	/// `RemoteAnnounced` one is left out of `ChannelDetails`), so an add it
	/// accepted is missing from the listing until then; one still missing
	/// after the grace was refused, or dropped on a disconnection.
	add_handled: bool,
	/// Its deadline (height or time) has come.
	past_deadline: bool,
}

/// What one pass does with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
	/// The HTLC left its channel, or LDK never took its add: forget the
	/// record.
	Forget,
	/// Keep holding.
	Hold,
	/// Past its deadline unreleased: record `Expired`, then fail it back.
	Expire,
	/// Fail it back if LDK holds it (refused, expired, or released but past
	/// its deadline before LDK acted on the release).
	FailBack,
	/// Hand its release to LDK again (a no-op once LDK acted on one).
	Release,
}

/// Passes (about a second each) an add LDK handled may stay out of its
/// channel's listing before its record is dropped: the payer's
/// `commitment_signed` normally follows the add within a round trip.
pub(crate) const UNLISTED_GRACE_PASSES: u64 = 60;

/// The rules of [`HtlcHold::tick`]. A record goes when its HTLC is not in
/// the channel and will not be: it was committed (so it has left), or LDK
/// had handled its add long enough before the listing was read (so LDK
/// rejected it, or dropped it on a disconnect: the payer may send it again,
/// and it is then recorded afresh), or its deadline passed. Past the deadline nothing is
/// released: failing comes first.
fn next_step(state: &HoldState, at: Whereabouts) -> Step {
	if !at.in_channel && (at.committed || at.add_handled || at.past_deadline) {
		return Step::Forget;
	}
	match state {
		HoldState::Held if at.past_deadline => Step::Expire,
		HoldState::Held => Step::Hold,
		HoldState::Refused { .. } | HoldState::Expired => Step::FailBack,
		HoldState::Released { .. } if at.past_deadline => Step::FailBack,
		HoldState::Released { .. } => Step::Release,
	}
}

/// What a pass of the hold loop needs of LDK (the channel manager, or a
/// unit test's stand-in).
trait LdkHold {
	/// The pending inbound HTLCs of every channel, by channel and HTLC id:
	/// `true` when part of a commitment (LDK 0.2.7 lists no other: a
	/// `RemoteAnnounced` HTLC is left out until the payer commits to it).
	fn inbound_htlcs(&self) -> HashMap<(ChannelId, u64), bool>;
	/// Whether LDK holds `id` (it is in its `pending_intercepted_htlcs`):
	/// read without side effects.
	fn holds(&self, id: &InterceptId) -> bool;
	/// `fail_intercepted_htlc`: whether LDK took it.
	fn fail(&self, id: InterceptId) -> bool;
	/// Hands LDK a release.
	fn release(&self, context: AsyncPaymentsContext);
}

/// The channel manager as [`LdkHold`].
struct Ldk<'a, C: AChannelManager + ?Sized>(&'a C);

impl<C: AChannelManager + ?Sized> LdkHold for Ldk<'_, C> {
	fn inbound_htlcs(&self) -> HashMap<(ChannelId, u64), bool> {
		let channels = self.0.get_cm().list_channels();
		channels
			.iter()
			.flat_map(|c| {
				c.pending_inbound_htlcs
					.iter()
					.map(|h| ((c.channel_id, h.htlc_id), h.state.is_some()))
			})
			.collect()
	}

	fn holds(&self, id: &InterceptId) -> bool {
		// LDK 0.2.7 has no other way to ask; `fail_intercepted_htlc` on an
		// HTLC it does not hold errs, but flags the ChannelManager for a save
		// first.
		self.0.get_cm().intercepted_htlc_inbound_amount_msat(*id).is_some()
	}

	fn fail(&self, id: InterceptId) -> bool {
		self.0.get_cm().fail_intercepted_htlc(id).is_ok()
	}

	fn release(&self, context: AsyncPaymentsContext) {
		self.0.get_cm().handle_release_held_htlc(ReleaseHeldHtlc {}, context)
	}
}

/// Our layer of a held HTLC's onion.
enum OurLayer {
	/// Not peelable by us (LDK rejects the HTLC).
	Unreadable,
	/// We are its final node: LDK holds only forwards.
	ForUs,
	/// A forward: our layer's shared secret, and the CLTV expiry of the HTLC
	/// it is to be forwarded as (`None` for a blinded hop, whose value is in
	/// the encrypted data).
	Forward { shared_secret: [u8; 32], outgoing_cltv: Option<u32> },
}

/// The plugin's hold: policy, registry, and what happened since the last
/// [`HtlcHold::tick`].
pub struct HtlcHold {
	policy: HtlcHoldPolicy,
	signer: Arc<dyn NodeSigner + Send + Sync>,
	secp: Secp256k1<All>,
	registry: HoldRegistry,
	logger: Arc<dyn Logger + Send + Sync>,
	events: Mutex<Vec<HoldEvent>>,
	/// Passes of [`HtlcHold::tick`] begun (counted before each reads LDK's
	/// listing).
	passes: AtomicU64,
	/// HTLCs LDK accepted to fail back from us (failed once, announced once;
	/// their record goes when they leave the channel).
	failed_back: Mutex<HashSet<InterceptId>>,
	/// HTLCs the hold failed back itself (`fail_intercepted_htlc` taken), by
	/// channel and HTLC id, with the onion secret to create the payer's
	/// `temporary_node_failure` with, until their record goes. A failure LDK
	/// made for its own reasons is not here and is not replaced.
	failing: Mutex<HashMap<(ChannelId, u64), [u8; 32]>>,
}

fn now_secs() -> u64 {
	SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl HtlcHold {
	/// Loads the registry from `kv`. `signer` (the node's) peels the onion
	/// of a held HTLC to learn when LDK would time it out.
	pub fn new(
		kv: Arc<dyn KVStoreSync + Send + Sync>, policy: HtlcHoldPolicy,
		signer: Arc<dyn NodeSigner + Send + Sync>, logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, HoldError> {
		Ok(Self {
			policy,
			signer,
			secp: Secp256k1::new(),
			registry: HoldRegistry::load(kv)?,
			logger,
			events: Mutex::new(Vec::new()),
			// Records loaded at start count as handled at pass 0, long
			// before the first pass: LDK keeps no uncommitted add across a
			// restart, so an unlisted one goes at once.
			passes: AtomicU64::new(UNLISTED_GRACE_PASSES),
			failed_back: Mutex::new(HashSet::new()),
			failing: Mutex::new(HashMap::new()),
		})
	}

	/// The limits in force.
	pub fn policy(&self) -> &HtlcHoldPolicy {
		&self.policy
	}

	/// The registry.
	pub fn registry(&self) -> &HoldRegistry {
		&self.registry
	}

	/// Every HTLC in the registry (held, or on its way out), oldest first.
	pub fn list(&self) -> Vec<HeldHtlcSummary> {
		let mut all = self.registry.all();
		all.sort_by_key(|h| (h.since_secs, h.htlc_id));
		all.iter().map(HeldHtlcSummary::from).collect()
	}

	fn lock_failing(&self) -> std::sync::MutexGuard<'_, HashMap<(ChannelId, u64), [u8; 32]>> {
		self.failing.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// The error packet to send the payer instead of LDK's for HTLC
	/// `htlc_id` of `channel_id`, if the hold is failing it back (the
	/// message handler calls this for every outgoing `update_fail_htlc`,
	/// retransmissions too).
	pub(crate) fn failure_packet(&self, channel_id: &ChannelId, htlc_id: u64) -> Option<Vec<u8>> {
		let secret = *self.lock_failing().get(&(*channel_id, htlc_id))?;
		let failure = FailureMessage::TemporaryNodeFailure;
		log_info!(self.logger, "Failing held HTLC {htlc_id} back with {failure:?}");
		Some(onion::create_error_packet(&SharedSecret::from_bytes(secret), &failure))
	}

	fn push(&self, event: HoldEvent) {
		self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
	}

	/// What our layer of `msg`'s onion says.
	fn peel(&self, msg: &UpdateAddHTLC) -> OurLayer {
		self.try_peel(msg).unwrap_or(OurLayer::Unreadable)
	}

	fn try_peel(&self, msg: &UpdateAddHTLC) -> Option<OurLayer> {
		if msg.blinding_point.is_some() || msg.onion_routing_packet.version != 0 {
			return None;
		}
		let packet = OnionPacket::new(
			msg.onion_routing_packet.public_key.ok()?,
			msg.onion_routing_packet.hop_data.to_vec(),
			msg.onion_routing_packet.hmac,
		)
		.ok()?;
		let ecdh = |key: &PublicKey| self.signer.ecdh(Recipient::Node, key, None);
		let peeled = onion::peel(&self.secp, &packet, &msg.payment_hash.0, ecdh).ok()?;
		let outgoing_cltv = match OuterPayload::decode(&peeled.payload).map(|p| p.hop) {
			Ok(OuterHop::Forward { outgoing_cltv_value, .. }) => Some(outgoing_cltv_value),
			Ok(
				OuterHop::Receive { .. }
				| OuterHop::TrampolineEntry { .. }
				| OuterHop::BlindedReceive { .. },
			) => return Some(OurLayer::ForUs),
			_ => None,
		};
		Some(OurLayer::Forward {
			shared_secret: peeled.shared_secret.secret_bytes(),
			outgoing_cltv,
		})
	}

	/// Records `msg` (flagged `hold_htlc`) from `peer` at chain height
	/// `height`, before LDK sees it, provisionally; an HTLC for us (not a
	/// forward) is not held by LDK and not recorded. `forwarding_cltv_delta`
	/// (our channel's `cltv_expiry_delta`) stands in for the onion's outgoing
	/// CLTV when it cannot be read. `listed`: LDK already lists an HTLC with
	/// this id in the channel, so it rejects this add (a skipped id) and
	/// nothing is recorded or changed. Call [`HtlcHold::add_handled`] once LDK
	/// has handled the add. A registry that cannot write logs the error, as
	/// does a peer with [`HtlcHoldPolicy::max_records_per_peer`] records: LDK
	/// still holds the HTLC and times it out itself, and no release reaches
	/// it (the filter does not know it).
	pub fn on_add(
		&self, peer: PublicKey, msg: &UpdateAddHTLC, height: u32, forwarding_cltv_delta: u16,
		listed: bool,
	) {
		if listed {
			log_warn!(
				self.logger,
				"Not recording HTLC {} from {peer}: its channel already has an HTLC with that id",
				msg.htlc_id
			);
			return;
		}
		let now = now_secs();
		let (onion_shared_secret, outgoing_cltv) = match self.peel(msg) {
			OurLayer::Forward { shared_secret, outgoing_cltv } => {
				(Some(shared_secret), outgoing_cltv)
			},
			OurLayer::ForUs => return,
			OurLayer::Unreadable => (None, None),
		};
		let outgoing_cltv = outgoing_cltv
			.unwrap_or(msg.cltv_expiry.saturating_sub(u32::from(forwarding_cltv_delta)));
		let deadline_height = outgoing_cltv
			.saturating_sub(LDK_FAIL_BACK_BUFFER)
			.saturating_sub(self.policy.deadline_margin_blocks);
		let record = HeldHtlc {
			intercept_id: intercept_id(msg.htlc_id, &msg.channel_id, &peer),
			peer,
			channel_id: msg.channel_id,
			htlc_id: msg.htlc_id,
			amount_msat: msg.amount_msat,
			payment_hash: msg.payment_hash,
			cltv_expiry: msg.cltv_expiry,
			since_secs: now,
			deadline_height,
			deadline_secs: now.saturating_add(self.policy.max_hold.as_secs()),
			state: HoldState::Held,
			onion_shared_secret,
			committed: false,
		};
		match self.registry.admit(&self.policy, record, height) {
			Ok(Admission::Recorded(record)) => {
				let summary = HeldHtlcSummary::from(&*record);
				match record.state {
					HoldState::Refused { reason } => {
						log_warn!(
							self.logger,
							"Refusing to hold HTLC {} of {} from {peer}: {reason}",
							msg.htlc_id,
							msg.payment_hash
						);
						self.push(HoldEvent::Refused(summary));
					},
					_ => {
						log_info!(
							self.logger,
							"Holding HTLC {} of {} ({} msat) from {peer} until height {} for its release",
							msg.htlc_id,
							msg.payment_hash,
							msg.amount_msat,
							record.deadline_height
						);
						self.push(HoldEvent::Held(summary));
					},
				}
			},
			Ok(Admission::Known) => {},
			Ok(Admission::PeerFull) => log_warn!(
				self.logger,
				"Not recording HTLC {} of {} from {peer}: the peer has {} records already \
				 (max_records_per_peer); LDK times it out itself",
				msg.htlc_id,
				msg.payment_hash,
				self.policy.max_records_per_peer()
			),
			Err(e) => log_error!(self.logger, "Cannot record held HTLC {}: {e}", msg.htlc_id),
		}
	}

	/// LDK has handled `msg` from `peer` (after [`HtlcHold::on_add`]): from
	/// the next pass on, a provisional record of it that LDK does not list is
	/// dropped.
	pub fn add_handled(&self, peer: &PublicKey, msg: &UpdateAddHTLC) {
		let id = intercept_id(msg.htlc_id, &msg.channel_id, peer);
		self.registry.add_handled(&id, self.passes.load(Ordering::SeqCst));
	}

	/// Decides on a `release_held_htlc` for `intercept_id` (the context LDK
	/// authenticated) at chain height `height`: `Ok` when the HTLC is held,
	/// before its deadline, and now recorded as released, so LDK may forward
	/// it.
	pub fn on_release(
		&self, intercept_id: &InterceptId, htlc_id: u64, prev_outbound_scid_alias: u64, height: u32,
	) -> Result<(), IgnoredRelease> {
		let now = now_secs();
		let released = HoldState::Released { prev_outbound_scid_alias, released_secs: now };
		let outcome = self
			.registry
			.transition(intercept_id, released, |r| {
				r.state == HoldState::Held
					&& r.htlc_id == htlc_id
					&& height < r.deadline_height
					&& now < r.deadline_secs
			})
			.map_err(|e| {
				log_error!(self.logger, "Cannot record the release of a held HTLC: {e}");
				IgnoredRelease::NotRecorded
			})?;
		match outcome {
			Ok(record) => {
				log_info!(
					self.logger,
					"Releasing held HTLC {} of {} from {}",
					record.htlc_id,
					record.payment_hash,
					record.peer
				);
				self.push(HoldEvent::Released(HeldHtlcSummary::from(&record)));
				Ok(())
			},
			Err(None) => Err(IgnoredRelease::Unknown),
			Err(Some(record)) => Err(match record.state {
				_ if record.htlc_id != htlc_id => IgnoredRelease::Mismatch,
				HoldState::Released { .. } => IgnoredRelease::AlreadyReleased,
				HoldState::Refused { .. } => IgnoredRelease::Refused,
				HoldState::Expired | HoldState::Held => IgnoredRelease::Expired,
			}),
		}
	}

	/// One pass over the registry at chain height `height`: marks records
	/// committed once LDK lists their HTLC in a commitment; fails back
	/// refused HTLCs and held ones past their deadline, once, while LDK holds
	/// them (never calling LDK for one it does not hold); hands recorded
	/// releases to LDK again while their HTLC waits and the deadline has not
	/// come (LDK drops a release that comes before the HTLC is ready for it,
	/// and after a restart; it ignores one it already acted on); and forgets
	/// records whose HTLC left the channel or whose add LDK never took.
	/// Returns what happened since the last pass.
	pub fn tick<CM: Deref>(&self, cm: &CM, height: u32) -> Vec<HoldEvent>
	where
		CM::Target: AChannelManager,
	{
		self.pass(&Ldk(&**cm), height)
	}

	fn pass(&self, ldk: &impl LdkHold, height: u32) -> Vec<HoldEvent> {
		// Counted before the listing is read: an add handled at a lower count
		// is in the listing if LDK kept it.
		let pass = self.passes.fetch_add(1, Ordering::SeqCst).saturating_add(1);
		let now = now_secs();
		let listed = ldk.inbound_htlcs();
		let mut settled = Vec::new();
		let mut failed_back = self.failed_back.lock().unwrap_or_else(|p| p.into_inner());
		for (mut record, handled) in self.registry.entries() {
			let id = record.intercept_id;
			let listing = listed.get(&(record.channel_id, record.htlc_id)).copied();
			if listing == Some(true) && !record.committed {
				match self.registry.commit(&id, self.policy.max_htlcs) {
					Ok(Some(committed)) => {
						if committed.state != record.state {
							log_warn!(
								self.logger,
								"Refusing to hold HTLC {} of {} from {}: {}",
								committed.htlc_id,
								committed.payment_hash,
								committed.peer,
								HoldRefusal::NodeCount
							);
							self.push(HoldEvent::Refused(HeldHtlcSummary::from(&committed)));
						}
						record = committed;
					},
					Ok(None) => {},
					Err(e) => log_error!(self.logger, "Cannot record a committed held HTLC: {e}"),
				}
			}
			let whereabouts = Whereabouts {
				in_channel: listing.is_some(),
				committed: record.committed,
				add_handled: handled
					.is_some_and(|at| at.saturating_add(UNLISTED_GRACE_PASSES) < pass),
				past_deadline: height >= record.deadline_height || now >= record.deadline_secs,
			};
			let fail_back = match next_step(&record.state, whereabouts) {
				Step::Forget => {
					settled.push((record, handled));
					continue;
				},
				Step::Hold => false,
				Step::FailBack => true,
				Step::Expire => {
					match self
						.registry
						.transition(&id, HoldState::Expired, |r| r.state == HoldState::Held)
					{
						Ok(Ok(expired)) => {
							log_warn!(
								self.logger,
								"Held HTLC {} of {} from {} reached its deadline unreleased: failing it back",
								expired.htlc_id,
								expired.payment_hash,
								expired.peer
							);
							record = expired;
							true
						},
						Ok(Err(_)) => continue,
						Err(e) => {
							log_error!(self.logger, "Cannot record an expired held HTLC: {e}");
							continue;
						},
					}
				},
				Step::Release => {
					if let HoldState::Released { prev_outbound_scid_alias, .. } = record.state {
						ldk.release(AsyncPaymentsContext::ReleaseHeldHtlc {
							intercept_id: id,
							prev_outbound_scid_alias,
							htlc_id: record.htlc_id,
						});
					}
					false
				},
			};
			// Only an HTLC LDK holds, and once: `fail_intercepted_htlc` on
			// any other errs after flagging the ChannelManager for a save.
			if fail_back && !failed_back.contains(&id) && ldk.holds(&id) {
				// LDK fails an intercepted HTLC with `unknown_next_peer`, a
				// permanent failure of the next channel; the payer is told
				// `temporary_node_failure` instead: it may pay again. Set
				// before the call: LDK may put the failure on the wire at once.
				let key = (record.channel_id, record.htlc_id);
				if let Some(secret) = record.onion_shared_secret {
					self.lock_failing().insert(key, secret);
				}
				if ldk.fail(id) {
					failed_back.insert(id);
					self.push(HoldEvent::FailedBack(HeldHtlcSummary::from(&record)));
				} else {
					// LDK let go of it meanwhile: its failure, if any, is not ours.
					self.lock_failing().remove(&key);
				}
			}
		}
		for (record, handled) in settled {
			let id = record.intercept_id;
			match self.registry.remove_unless_sent_again(&id, handled) {
				Ok(true) => {
					self.lock_failing().remove(&(record.channel_id, record.htlc_id));
					if !failed_back.remove(&id) {
						self.push(HoldEvent::Settled(HeldHtlcSummary::from(&record)));
					}
				},
				Ok(false) => {},
				Err(e) => log_error!(self.logger, "Cannot forget a settled held HTLC: {e}"),
			}
		}
		std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
	}
}
