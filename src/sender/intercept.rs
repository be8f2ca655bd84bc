//! The sending side of the message handler. LDK builds the outer onion to a
//! trampoline with a session key it keeps to itself, so it cannot read the
//! trampoline's doubly wrapped failures, and neither could we. For a payment
//! sent with [`super::send_to_trampoline`], the handler replaces LDK's onion
//! in each outgoing `update_add_htlc` with one it builds for the same path
//! (the intermediate hops' forward payloads, then the trampoline's payload:
//! the packet as type 20 or 66100, the outer secret and total) and a session
//! key it keeps, and peels the failures that come back: through the
//! trampoline layers too for the wallet's own payments, or only the outer
//! layers for a packet this node relays, whose failure is passed on to the
//! payer. The path of each HTLC is the one LDK's router chose for it,
//! recorded by [`super::TrampolineRouter`] (which must be the node's router). LDK still sees the failure unchanged (it
//! cannot attribute it and fails the payment without penalizing a channel).
//! An HTLC is substituted only if it is the one LDK sends along a path its
//! router chose for a registered payment (first channel, amount, expiry;
//! each path once): a forwarded HTLC that shares the payment hash keeps its
//! onion. State is in memory and kept for live payments only: after a
//! restart, failures of payments sent before it are not decoded (a relay
//! re-registers when it sends again).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::channelmanager::PaymentId;
use lightning::ln::msgs::{self, UpdateAddHTLC, UpdateFailHTLC};
use lightning::ln::types::ChannelId;
use lightning::routing::router::Path;
use lightning::types::payment::{PaymentHash, PaymentSecret};

use super::RouteShortfall;
use crate::onion::{
	self, FailureMessage, OnionPacket, OuterHop, OuterPayload, PaymentData, PeeledError, SphinxHop,
	TlvLayout, TrampolineFailure, PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use crate::relay::store::htlc_key;

/// What the handler needs to build the outer onion of a trampoline payment.
#[derive(Clone, Debug)]
pub struct SentOnion {
	/// The trampoline node paid (the substitution applies to HTLCs sent
	/// straight to it).
	pub trampoline: PublicKey,
	/// The trampoline packet.
	pub packet: OnionPacket,
	/// Type 20 (spec) or 66100 (legacy) for the packet.
	pub layout: TlvLayout,
	/// Our shared secrets with the trampolines of the packet, in route order
	/// (empty when relaying a packet built by someone else).
	pub trampoline_shared_secrets: Vec<SharedSecret>,
	/// The outer payment secret.
	pub outer_secret: PaymentSecret,
	/// The outer total of all parts.
	pub total_msat: u64,
}

/// An HTLC whose onion we substituted.
struct SentHtlc {
	payment_id: PaymentId,
	/// One per hop of the outer path, the trampoline last.
	outer_shared_secrets: Vec<SharedSecret>,
	trampoline_shared_secrets: Vec<SharedSecret>,
}

/// A path LDK's router chose for a registered payment. It substitutes the
/// onion of one HTLC at most: the one LDK sends along it.
struct SentPath {
	path: Path,
	used: bool,
}

/// A registered payment, live until [`SenderState::forget_payment`].
struct LivePayment {
	payment_hash: PaymentHash,
	onion: SentOnion,
	/// Every path LDK's router chose for it (retries add more).
	paths: Vec<SentPath>,
	/// What a trampoline (or the outer hop) answered, for our own packets.
	failure: Option<TrampolineFailure>,
	/// What came back, for a packet we relay.
	relayed: Option<RelayedFailure>,
}

/// How many failures of resolved payments [`SenderState::failure`] still
/// answers for (the oldest are forgotten first).
pub const FAILURE_HISTORY: usize = 1024;

/// How many items [`SenderState`] keeps, by kind (for tests and benches:
/// every count but the bounded failure history returns to zero once the
/// payments are resolved and forgotten).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderCounts {
	/// Registered payments not yet forgotten.
	pub payments: usize,
	/// Paths recorded for them.
	pub paths: usize,
	/// HTLCs whose onion was substituted and whose payment is live.
	pub htlcs: usize,
	/// Payments whose route-finding failures are classified.
	pub routes: usize,
	/// Failures of resolved payments kept for [`SenderState::failure`].
	pub history: usize,
}

#[derive(Default)]
struct Inner {
	payments: HashMap<PaymentId, LivePayment>,
	/// The live payments of each hash, oldest first.
	by_hash: HashMap<PaymentHash, Vec<PaymentId>>,
	htlcs: HashMap<String, SentHtlc>,
	/// Relayed payments: the latest expiry their HTLCs may have, and why no
	/// route was found, if that happened.
	routes: HashMap<PaymentId, WatchedRoute>,
	/// Failures of forgotten payments, oldest first, at most
	/// [`FAILURE_HISTORY`].
	history: VecDeque<(PaymentHash, TrampolineFailure)>,
}

/// What the router is told about a payment the relay makes.
#[derive(Clone, Copy, Debug)]
struct WatchedRoute {
	/// The latest `cltv_expiry` any HTLC of the payment may have.
	expiry_limit: u32,
	/// Why no route was found, once that happened.
	shortfall: Option<RouteShortfall>,
	/// A [`super::TrampolineRouter`] sharing this state was asked for a
	/// route of the payment: the `ChannelManager` routes through it.
	routed: bool,
}

impl Inner {
	/// The first unused path of a live payment of `add`'s hash that `add`
	/// is the HTLC of: sent on that path's first channel (`scids`: the
	/// add's channel's ids) to `node_id`, with the path's amount, and the
	/// expiry LDK gives it at `height` (or the block before: one may have
	/// come between the send and this message).
	fn find_path(
		&self, node_id: &PublicKey, add: &UpdateAddHTLC, scids: &[u64], height: u32,
	) -> Option<(PaymentId, usize)> {
		let ids = self.by_hash.get(&add.payment_hash)?;
		ids.iter().find_map(|id| {
			let payment = self.payments.get(id)?;
			let index = payment.paths.iter().position(|sent| {
				!sent.used
					&& is_htlc_of(
						&sent.path,
						&payment.onion.trampoline,
						node_id,
						add,
						scids,
						height,
					)
			})?;
			Some((*id, index))
		})
	}
}

/// Whether `add` is the HTLC LDK sends along `path` (to `trampoline`).
fn is_htlc_of(
	path: &Path, trampoline: &PublicKey, node_id: &PublicKey, add: &UpdateAddHTLC, scids: &[u64],
	height: u32,
) -> bool {
	let (Some(first), Some(last)) = (path.hops.first(), path.hops.last()) else { return false };
	if first.pubkey != *node_id
		|| last.pubkey != *trampoline
		|| !scids.contains(&first.short_channel_id)
	{
		return false;
	}
	let amount = path.hops.iter().try_fold(0u64, |sum, hop| sum.checked_add(hop.fee_msat));
	let delta = path.hops.iter().try_fold(0u32, |sum, hop| sum.checked_add(hop.cltv_expiry_delta));
	let (Some(amount), Some(delta)) = (amount, delta) else { return false };
	// LDK's first HTLC expiry: the best block + 1 + every hop's delta.
	let sent_at = add.cltv_expiry.checked_sub(delta).and_then(|c| c.checked_sub(1));
	amount == add.amount_msat
		&& sent_at.is_some_and(|h| h == height || h.checked_add(1) == Some(height))
}

/// One hop of an outer path being built: who, what it receives, and its
/// payload.
struct OuterHopPlan {
	node_id: PublicKey,
	amount_msat: u64,
	cltv_expiry: u32,
	payload: Vec<u8>,
}

/// A failure that came back for a packet this node relayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayedFailure {
	/// The next node failed the outer HTLC itself (it could not read the
	/// trampoline packet, or its channel layer refused).
	Outer(FailureMessage),
	/// A node between us and the next trampoline failed the HTLC (its
	/// channel onwards was unusable, our fee to it too low, ...).
	OnTheWay(FailureMessage),
	/// A failure from inside the trampoline route, still encrypted for the
	/// payer: to be wrapped and passed back.
	Opaque(Vec<u8>),
}

/// Trampoline payments this node sent, and what came back for them. Only
/// live payments are kept: the node's event handler calls
/// [`SenderState::forget_payment`] once it has handled a payment's
/// `PaymentSent` or `PaymentFailed` (the relay's hook does for its own).
#[derive(Default)]
pub struct SenderState {
	inner: Mutex<Inner>,
	/// Adversarial tests only: rewrites every outgoing `update_add_htlc`.
	tamper: Mutex<Option<OutboundTamper>>,
	/// The chain height, never below LDK's ([`Self::best_block_updated`]).
	chain_height: AtomicU32,
}

/// A function that rewrites an outgoing `update_add_htlc` (its onion) to the
/// given peer. For adversarial tests: it turns a node into a hostile payer.
pub type OutboundTamper = std::sync::Arc<dyn Fn(&PublicKey, &mut UpdateAddHTLC) + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
	m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The payment `event` ends, if it ends one (`PaymentSent`, `PaymentFailed`).
pub fn ended_payment(event: &lightning::events::Event) -> Option<PaymentId> {
	use lightning::events::Event;
	match event {
		Event::PaymentSent { payment_id, .. } => *payment_id,
		Event::PaymentFailed { payment_id, .. } => Some(*payment_id),
		_ => None,
	}
}

/// The chain listener a node places ahead of its `ChannelManager`
/// ([`crate::plugin::Plugin::chain_listener`]): each connected block's
/// height reaches [`SenderState::best_block_updated`] first.
impl lightning::chain::Listen for SenderState {
	fn filtered_block_connected(
		&self, _header: &bitcoin::block::Header,
		_txdata: &lightning::chain::transaction::TransactionData, height: u32,
	) {
		self.best_block_updated(height);
	}

	fn blocks_disconnected(&self, _fork_point: lightning::chain::BestBlock) {
		// The height never goes down: after a reorg a height above LDK's only
		// tightens the bound.
	}
}

impl SenderState {
	fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
		lock(&self.inner)
	}

	/// Remembers payment `payment_id` about to be sent through
	/// `onion.trampoline`; `false` (and nothing changed) if that payment is
	/// live already (sent again: LDK refuses the duplicate). What an earlier
	/// payment of the hash answered (a forgotten one's) is forgotten.
	pub(crate) fn register(
		&self, payment_id: PaymentId, payment_hash: PaymentHash, onion: SentOnion,
	) -> bool {
		let mut inner = self.inner();
		if inner.payments.contains_key(&payment_id) {
			return false;
		}
		inner.history.retain(|(hash, _)| *hash != payment_hash);
		let live =
			LivePayment { payment_hash, onion, paths: Vec::new(), failure: None, relayed: None };
		inner.payments.insert(payment_id, live);
		inner.by_hash.entry(payment_hash).or_default().push(payment_id);
		true
	}

	/// [`Self::forget_payment`] of the payment `event` ended, if it ends one
	/// (`PaymentSent`, `PaymentFailed`): call it once the event is handled.
	pub fn forget_ended_payment(&self, event: &lightning::events::Event) {
		if let Some(payment_id) = ended_payment(event) {
			self.forget_payment(&payment_id);
		}
	}

	/// Forgets everything about payment `payment_id` (its onion, paths,
	/// HTLCs and route classification), keeping its failure, if any, for
	/// [`Self::failure`] unless a newer payment of its hash is live. Call it
	/// once the payment's `PaymentSent` or `PaymentFailed` is handled, or
	/// when LDK refused to start it.
	pub fn forget_payment(&self, payment_id: &PaymentId) {
		let mut inner = self.inner();
		inner.routes.remove(payment_id);
		let Some(payment) = inner.payments.remove(payment_id) else { return };
		inner.htlcs.retain(|_, htlc| htlc.payment_id != *payment_id);
		let others_live = match inner.by_hash.get_mut(&payment.payment_hash) {
			Some(ids) => {
				ids.retain(|id| id != payment_id);
				!ids.is_empty()
			},
			None => false,
		};
		if !others_live {
			inner.by_hash.remove(&payment.payment_hash);
			if let Some(failure) = payment.failure {
				if inner.history.len() >= FAILURE_HISTORY {
					inner.history.pop_front();
				}
				inner.history.push_back((payment.payment_hash, failure));
			}
		}
	}

	/// How many items are kept, by kind.
	pub fn counts(&self) -> SenderCounts {
		let inner = self.inner();
		SenderCounts {
			payments: inner.payments.len(),
			paths: inner.payments.values().map(|p| p.paths.len()).sum(),
			htlcs: inner.htlcs.len(),
			routes: inner.routes.len(),
			history: inner.history.len(),
		}
	}

	/// Watches the routes of payment `payment_id`, which the relay makes:
	/// [`super::TrampolineRouter`] finds only routes whose HTLCs expire by
	/// `expiry_limit` (a retry LDK makes blocks later included) and
	/// classifies why no route is found, if that happens.
	pub(crate) fn watch_route(&self, payment_id: PaymentId, expiry_limit: u32) {
		let route = WatchedRoute { expiry_limit, shortfall: None, routed: false };
		self.inner().routes.insert(payment_id, route);
	}

	/// The latest expiry the HTLCs of a watched payment may have, as the
	/// router asks before routing it (which it notes: [`Self::was_routed`]).
	pub(crate) fn expiry_limit(&self, payment_id: &PaymentId) -> Option<u32> {
		let mut inner = self.inner();
		let route = inner.routes.get_mut(payment_id)?;
		route.routed = true;
		Some(route.expiry_limit)
	}

	/// Whether a router sharing this state routed watched payment
	/// `payment_id`. `false` once LDK accepted the payment means that the
	/// `ChannelManager` routes through another router: the relay's retries
	/// would not be bounded.
	pub(crate) fn was_routed(&self, payment_id: &PaymentId) -> bool {
		self.inner().routes.get(payment_id).is_some_and(|route| route.routed)
	}

	/// Records why no route was found for a watched payment.
	pub(crate) fn record_shortfall(&self, payment_id: &PaymentId, shortfall: RouteShortfall) {
		if let Some(route) = self.inner().routes.get_mut(payment_id) {
			route.shortfall = Some(shortfall);
		}
	}

	/// Why no route was found for a watched payment, if that happened;
	/// stops watching it.
	pub(crate) fn take_route_shortfall(&self, payment_id: &PaymentId) -> Option<RouteShortfall> {
		self.inner().routes.remove(payment_id).and_then(|route| route.shortfall)
	}

	/// Tells the router the chain height: call it with each block's height
	/// *before* the `ChannelManager` connects the block, so that the
	/// router's height is never below LDK's. It never goes down (after a
	/// reorg a height above LDK's only tightens the bound). The relay also
	/// reports LDK's height at every send and tick; a watched payment is
	/// routed only once a height is known.
	pub fn best_block_updated(&self, height: u32) {
		self.chain_height.fetch_max(height, Ordering::AcqRel);
	}

	/// The chain height the router counts expiries from (0: not known yet).
	pub(crate) fn chain_height(&self) -> u32 {
		self.chain_height.load(Ordering::Acquire)
	}

	/// Whether payment `payment_id` is registered (and live).
	pub(crate) fn is_registered(&self, payment_id: &PaymentId) -> bool {
		self.inner().payments.contains_key(payment_id)
	}

	/// Remembers the paths LDK's router chose for a registered payment, to
	/// recognise the HTLCs sent along them and build their onion.
	pub(crate) fn record_paths(&self, payment_id: &PaymentId, paths: &[Path]) {
		let mut inner = self.inner();
		let Some(payment) = inner.payments.get_mut(payment_id) else { return };
		let plain = paths.iter().filter(|p| p.blinded_tail.is_none());
		payment.paths.extend(plain.map(|path| SentPath { path: path.clone(), used: false }));
	}

	/// The failure a trampoline (or the outer hop) reported for a payment of
	/// ours with this hash, decrypted through both layers: the newest live
	/// payment's, else the last forgotten one's (at most
	/// [`FAILURE_HISTORY`] are kept).
	pub fn failure(&self, payment_hash: &PaymentHash) -> Option<TrampolineFailure> {
		let inner = self.inner();
		if let Some(ids) = inner.by_hash.get(payment_hash) {
			return ids.last().and_then(|id| inner.payments.get(id)?.failure.clone());
		}
		inner.history.iter().rev().find(|(hash, _)| hash == payment_hash).map(|(_, f)| f.clone())
	}

	/// The failure reported for live payment `payment_id`.
	pub(crate) fn failure_of(&self, payment_id: &PaymentId) -> Option<TrampolineFailure> {
		self.inner().payments.get(payment_id)?.failure.clone()
	}

	/// The failure that came back for a packet we relay as payment
	/// `payment_id`.
	pub fn relayed_failure(&self, payment_id: &PaymentId) -> Option<RelayedFailure> {
		self.inner().payments.get(payment_id)?.relayed.clone()
	}

	/// Makes this node a hostile payer: `tamper` sees (and may rewrite) every
	/// outgoing `update_add_htlc` after the trampoline substitution. `None`
	/// stops it. For adversarial tests only.
	#[doc(hidden)]
	pub fn set_outbound_tamper(&self, tamper: Option<OutboundTamper>) {
		*lock(&self.tamper) = tamper;
	}

	/// Applies the test hook of [`Self::set_outbound_tamper`], if any.
	pub(crate) fn tamper_add(&self, node_id: &PublicKey, add: &mut UpdateAddHTLC) {
		let tamper = lock(&self.tamper).clone();
		if let Some(tamper) = tamper {
			tamper(node_id, add);
		}
	}

	/// Substitutes our own onion in an outgoing `update_add_htlc` that is
	/// the HTLC LDK sends along a path its router chose for a registered
	/// payment: to `node_id`, on that path's first channel (`scids` gives
	/// the add's channel's short channel ids and aliases, asked only when a
	/// live payment has the add's hash), with the path's amount and expiry
	/// (LDK's at `height`, the best block). Each path takes one HTLC; any
	/// other add (a forwarded HTLC of the same hash) is left untouched.
	pub(crate) fn rewrite_add(
		&self, node_id: &PublicKey, add: &mut UpdateAddHTLC,
		scids: impl FnOnce(&ChannelId) -> Vec<u64>, height: u32,
	) {
		let mut inner = self.inner();
		if !inner.by_hash.contains_key(&add.payment_hash) {
			return;
		}
		let scids = scids(&add.channel_id);
		let Some((payment_id, index)) = inner.find_path(node_id, add, &scids, height) else {
			return;
		};
		let Some(payment) = inner.payments.get_mut(&payment_id) else { return };
		let Some(sent) = payment.paths.get_mut(index) else { return };
		sent.used = true;
		let Some(built) = outer_onion(&payment.onion, &sent.path, add) else { return };
		let Ok(packet) = msgs::OnionPacket::try_from(&built.packet) else { return };
		add.onion_routing_packet = packet;
		let trampoline_shared_secrets = payment.onion.trampoline_shared_secrets.clone();
		inner.htlcs.insert(
			htlc_key(&add.channel_id, add.htlc_id),
			SentHtlc {
				payment_id,
				outer_shared_secrets: built.shared_secrets,
				trampoline_shared_secrets,
			},
		);
	}

	/// Reads an incoming `update_fail_htlc` of an HTLC we rewrote.
	pub(crate) fn on_fail(&self, fail: &UpdateFailHTLC) {
		let key = htlc_key(&fail.channel_id, fail.htlc_id);
		let mut inner = self.inner();
		let Some(htlc) = inner.htlcs.remove(&key) else { return };
		let Some(reason) = crate::handler::reason_of(fail) else { return };
		let Some(payment) = inner.payments.get_mut(&htlc.payment_id) else { return };
		if !htlc.trampoline_shared_secrets.is_empty() {
			if let Ok(failure) = onion::decrypt_trampoline_error_packet(
				&reason,
				&htlc.outer_shared_secrets,
				&htlc.trampoline_shared_secrets,
			) {
				payment.failure =
					Some(attribute(failure, payment.onion.layout, htlc.outer_shared_secrets.len()));
			}
			return;
		}
		let trampoline_index = htlc.outer_shared_secrets.len().saturating_sub(1);
		let relayed = match onion::peel_error_packet(&reason, &htlc.outer_shared_secrets) {
			Ok(PeeledError::Decrypted(failure)) if failure.hop_index == trampoline_index => {
				RelayedFailure::Outer(failure.message)
			},
			Ok(PeeledError::Decrypted(failure)) => RelayedFailure::OnTheWay(failure.message),
			Ok(PeeledError::Opaque(packet)) => RelayedFailure::Opaque(packet),
			Err(_) => return,
		};
		payment.relayed = Some(relayed);
	}
}

/// Who answered, as the escalation reads it: a legacy trampoline (paid with
/// the packet in 66100) answers with its outer onion's secret only, so its
/// failures (and those of the trampolines after it, which it re-issues as
/// its own, as eclair and our relay do) decrypt at the last outer hop,
/// which is the first trampoline: [`FailingHop::Trampoline`]`(0)`. A spec
/// trampoline's answer at the outer layer (it could not read the packet)
/// keeps its outer index. `outer_hops` is the outer path's length.
///
/// [`FailingHop::Trampoline`]: crate::onion::FailingHop::Trampoline
pub(crate) fn attribute(
	failure: TrampolineFailure, layout: TlvLayout, outer_hops: usize,
) -> TrampolineFailure {
	use crate::onion::FailingHop;
	match (layout, failure.hop) {
		(TlvLayout::Legacy, FailingHop::Outer(index)) if index + 1 == outer_hops => {
			TrampolineFailure { hop: FailingHop::Trampoline(0), ..failure }
		},
		_ => failure,
	}
}

/// Our outer onion for the HTLC `add` LDK sends along `path`: the
/// intermediate hops' forward payloads, then the trampoline's (the amount
/// and expiry the path delivers, the outer secret and total, the trampoline
/// packet), under a fresh session key.
fn outer_onion(send: &SentOnion, path: &Path, add: &UpdateAddHTLC) -> Option<onion::BuiltOnion> {
	let mut hops = outer_hops(path, add)?;
	let last = hops.last_mut()?;
	let payload = OuterPayload::new(OuterHop::TrampolineEntry {
		amt_to_forward: last.amount_msat,
		outgoing_cltv_value: last.cltv_expiry,
		payment_data: Some(PaymentData {
			payment_secret: send.outer_secret,
			total_msat: send.total_msat,
		}),
		current_path_key: None,
		trampoline_onion: send.packet.clone(),
		layout: send.layout,
	});
	last.payload = payload.encode().ok()?;
	let session_key = SecretKey::from_slice(&rand::random::<[u8; 32]>()).ok()?;
	let sphinx: Vec<SphinxHop> = hops
		.into_iter()
		.map(|hop| SphinxHop { node_id: hop.node_id, payload: hop.payload })
		.collect();
	onion::build(
		&Secp256k1::new(),
		&session_key,
		&sphinx,
		&add.payment_hash.0,
		PAYMENT_ONION_HOP_PAYLOADS_LEN,
	)
	.ok()
}

/// The hops of `path` (which ends at the trampoline) for the HTLC `add`,
/// with what each receives; every payload but the trampoline's (left empty)
/// filled in. The amounts and expiries follow from the HTLC's by the path's
/// fees and CLTV deltas, as LDK computes them.
fn outer_hops(path: &Path, add: &UpdateAddHTLC) -> Option<Vec<OuterHopPlan>> {
	let mut plan = Vec::with_capacity(path.hops.len());
	let (mut amount_msat, mut cltv_expiry) = (add.amount_msat, add.cltv_expiry);
	for (hop, next) in path.hops.iter().zip(path.hops.iter().skip(1)) {
		let amt_to_forward = amount_msat.checked_sub(hop.fee_msat)?;
		let outgoing_cltv_value = cltv_expiry.checked_sub(hop.cltv_expiry_delta)?;
		let payload = OuterPayload::new(OuterHop::Forward {
			short_channel_id: next.short_channel_id,
			amt_to_forward,
			outgoing_cltv_value,
		})
		.encode()
		.ok()?;
		plan.push(OuterHopPlan { node_id: hop.pubkey, amount_msat, cltv_expiry, payload });
		(amount_msat, cltv_expiry) = (amt_to_forward, outgoing_cltv_value);
	}
	let trampoline = path.hops.last()?.pubkey;
	plan.push(OuterHopPlan { node_id: trampoline, amount_msat, cltv_expiry, payload: Vec::new() });
	Some(plan)
}

#[cfg(test)]
mod tests {
	use super::*;
	use lightning::routing::router::RouteHop;
	use lightning::types::features::{ChannelFeatures, NodeFeatures};

	use crate::onion::FailingHop;

	const HEIGHT: u32 = 800;
	const SCID: u64 = 42;

	fn key(byte: u8) -> PublicKey {
		PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[byte; 32]).unwrap())
	}

	fn trampoline() -> PublicKey {
		key(2)
	}

	fn sent_onion() -> SentOnion {
		SentOnion {
			trampoline: trampoline(),
			packet: OnionPacket::new(key(3), vec![0; 400], [0; 32]).unwrap(),
			layout: TlvLayout::Legacy,
			trampoline_shared_secrets: Vec::new(),
			outer_secret: PaymentSecret([5; 32]),
			total_msat: 10_000,
		}
	}

	fn hop(pubkey: PublicKey, scid: u64, fee_msat: u64, cltv_expiry_delta: u32) -> RouteHop {
		RouteHop {
			pubkey,
			node_features: NodeFeatures::empty(),
			short_channel_id: scid,
			channel_features: ChannelFeatures::empty(),
			fee_msat,
			cltv_expiry_delta,
			maybe_announced_channel: true,
		}
	}

	/// A path straight to the trampoline over channel [`SCID`].
	fn direct_path(amount_msat: u64) -> Path {
		Path { hops: vec![hop(trampoline(), SCID, amount_msat, 40)], blinded_tail: None }
	}

	/// The add LDK sends along [`direct_path`] at [`HEIGHT`].
	fn add(htlc_id: u64, hash: PaymentHash, amount_msat: u64, cltv_expiry: u32) -> UpdateAddHTLC {
		UpdateAddHTLC {
			channel_id: ChannelId([1; 32]),
			htlc_id,
			amount_msat,
			payment_hash: hash,
			cltv_expiry,
			skimmed_fee_msat: None,
			onion_routing_packet: msgs::OnionPacket {
				version: 0,
				public_key: Ok(key(9)),
				hop_data: [7; 20 * 65],
				hmac: [7; 32],
			},
			blinding_point: None,
			hold_htlc: None,
		}
	}

	fn our_channel(_: &ChannelId) -> Vec<u64> {
		vec![SCID]
	}

	/// Registers payment `id` of `hash` with one direct path of
	/// `amount_msat`.
	fn registered(state: &SenderState, id: u8, hash: PaymentHash, amount_msat: u64) -> PaymentId {
		let payment_id = PaymentId([id; 32]);
		assert!(state.register(payment_id, hash, sent_onion()));
		state.record_paths(&payment_id, &[direct_path(amount_msat)]);
		payment_id
	}

	fn rewritten(state: &SenderState, add: &mut UpdateAddHTLC) -> bool {
		let before = add.onion_routing_packet.clone();
		state.rewrite_add(&trampoline(), add, our_channel, HEIGHT);
		add.onion_routing_packet != before
	}

	#[test]
	fn a_forwarded_htlc_sharing_a_registered_hash_keeps_its_onion() {
		let state = SenderState::default();
		let hash = PaymentHash([4; 32]);
		registered(&state, 1, hash, 10_000);
		let ours_cltv = HEIGHT + 1 + 40;
		// A third party's HTLC of the same hash, forwarded to the same
		// trampoline: another amount, another expiry, another channel.
		let mut other_amount = add(0, hash, 9_000, ours_cltv);
		assert!(!rewritten(&state, &mut other_amount), "another amount got our onion");
		let mut other_cltv = add(1, hash, 10_000, ours_cltv + 10);
		assert!(!rewritten(&state, &mut other_cltv), "another expiry got our onion");
		let mut other_channel = add(2, hash, 10_000, ours_cltv);
		let before = other_channel.onion_routing_packet.clone();
		state.rewrite_add(&trampoline(), &mut other_channel, |_| vec![SCID + 1], HEIGHT);
		assert_eq!(other_channel.onion_routing_packet, before, "another channel got our onion");
		assert_eq!(state.counts().htlcs, 0);
		// Ours is rewritten (with a block found since it was sent, too);
		// its path then takes no other HTLC.
		let mut ours = add(3, hash, 10_000, ours_cltv - 1);
		assert!(rewritten(&state, &mut ours), "our HTLC kept LDK's onion");
		let mut again = add(4, hash, 10_000, ours_cltv);
		assert!(!rewritten(&state, &mut again), "one path substituted two HTLCs");
		assert_eq!(state.counts().htlcs, 1);
	}

	#[test]
	fn maps_return_to_empty_once_payments_are_forgotten() {
		let state = SenderState::default();
		let mut ids = Vec::new();
		for n in 0..10u8 {
			let hash = PaymentHash([n; 32]);
			let id = registered(&state, n, hash, 10_000);
			state.watch_route(id, HEIGHT + 200);
			let mut htlc = add(u64::from(n), hash, 10_000, HEIGHT + 41);
			assert!(rewritten(&state, &mut htlc));
			ids.push(id);
		}
		// A relayed payment that is not registered (to a legacy recipient)
		// has its route watched only.
		state.watch_route(PaymentId([99; 32]), HEIGHT + 200);
		let live = state.counts();
		assert_eq!(
			live,
			SenderCounts { payments: 10, paths: 10, htlcs: 10, routes: 11, history: 0 }
		);
		for id in ids.iter().chain([&PaymentId([99; 32])]) {
			state.forget_payment(id);
		}
		assert_eq!(state.counts(), SenderCounts::default());
		let inner = state.inner();
		assert!(inner.by_hash.is_empty());
	}

	fn failure(message: FailureMessage) -> TrampolineFailure {
		TrampolineFailure { hop: FailingHop::Trampoline(0), message }
	}

	#[test]
	fn a_forgotten_failure_is_kept_for_its_hash_unless_a_newer_attempt_is_live() {
		let state = SenderState::default();
		let hash = PaymentHash([4; 32]);
		let first = registered(&state, 1, hash, 10_000);
		state.inner().payments.get_mut(&first).unwrap().failure =
			Some(failure(FailureMessage::UnknownNextTrampoline));
		assert_eq!(state.failure_of(&first), Some(failure(FailureMessage::UnknownNextTrampoline)));
		// A retry is registered before the first attempt's event is done:
		// the hash's failure is the retry's (none yet).
		let retry = registered(&state, 2, hash, 11_000);
		state.forget_payment(&first);
		assert_eq!(state.failure(&hash), None);
		state.inner().payments.get_mut(&retry).unwrap().failure =
			Some(failure(FailureMessage::TemporaryTrampolineFailure));
		state.forget_payment(&retry);
		assert_eq!(state.failure(&hash), Some(failure(FailureMessage::TemporaryTrampolineFailure)));
		assert_eq!(state.counts().history, 1);
		// The history is bounded.
		for n in 0..=FAILURE_HISTORY {
			let mut bytes = [0; 32];
			bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
			let (id, hash) = (PaymentId(bytes), PaymentHash(bytes));
			assert!(state.register(id, hash, sent_onion()));
			state.inner().payments.get_mut(&id).unwrap().failure =
				Some(failure(FailureMessage::MppTimeout));
			state.forget_payment(&id);
		}
		assert_eq!(state.counts().history, FAILURE_HISTORY);
		assert_eq!(state.failure(&PaymentHash([4; 32])), None, "the oldest went first");
	}

	#[test]
	fn a_legacy_trampolines_outer_answer_is_the_first_trampolines() {
		let at =
			|hop| TrampolineFailure { hop, message: FailureMessage::TrampolineFeeInsufficient };
		// Two outer hops (a node, then the trampoline).
		assert_eq!(
			attribute(at(FailingHop::Outer(1)), TlvLayout::Legacy, 2),
			at(FailingHop::Trampoline(0))
		);
		// The node on the way stays an outer hop; a spec trampoline's
		// outer answer too.
		assert_eq!(
			attribute(at(FailingHop::Outer(0)), TlvLayout::Legacy, 2),
			at(FailingHop::Outer(0))
		);
		assert_eq!(
			attribute(at(FailingHop::Outer(1)), TlvLayout::Spec, 2),
			at(FailingHop::Outer(1))
		);
		assert_eq!(
			attribute(at(FailingHop::Trampoline(1)), TlvLayout::Legacy, 2),
			at(FailingHop::Trampoline(1))
		);
	}

	#[test]
	fn a_legacy_failure_is_decrypted_and_attributed_to_the_trampoline() {
		// A legacy trampoline (Electrum's forwarder) fails our HTLC with
		// NODE|51 under the outer secret only.
		let state = SenderState::default();
		let hash = PaymentHash([4; 32]);
		let id = PaymentId([1; 32]);
		let mut onion = sent_onion();
		onion.trampoline_shared_secrets = vec![SharedSecret::from_bytes([8; 32])];
		assert!(state.register(id, hash, onion));
		state.record_paths(&id, &[direct_path(10_000)]);
		let mut htlc = add(0, hash, 10_000, HEIGHT + 41);
		assert!(rewritten(&state, &mut htlc));
		let outer = state.inner().htlcs.values().next().unwrap().outer_shared_secrets[0];
		let packet = onion::create_error_packet(&outer, &FailureMessage::TrampolineFeeInsufficient);
		let wire = [
			[1u8; 32].as_slice(),
			&0u64.to_be_bytes(),
			&(packet.len() as u16).to_be_bytes(),
			&packet,
		]
		.concat();
		let fail = <UpdateFailHTLC as lightning::util::ser::LengthReadable>::read_from_fixed_length_buffer(&mut wire.as_slice()).unwrap();
		state.on_fail(&fail);
		assert_eq!(
			state.failure_of(&id),
			Some(TrampolineFailure {
				hop: FailingHop::Trampoline(0),
				message: FailureMessage::TrampolineFeeInsufficient
			})
		);
	}

	#[test]
	fn a_payment_sent_again_under_a_live_id_keeps_its_state() {
		let state = SenderState::default();
		let hash = PaymentHash([4; 32]);
		let id = registered(&state, 1, hash, 10_000);
		assert!(!state.register(id, hash, sent_onion()));
		assert_eq!(state.counts().paths, 1);
	}
}
