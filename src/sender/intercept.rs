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
//! payer. The path of an HTLC that is not sent straight to the trampoline is
//! the one LDK's router chose for it, recorded by
//! [`super::TrampolineRouter`]. LDK still sees the failure unchanged (it
//! cannot attribute it and fails the payment without penalizing a channel).
//! State is in memory: after a restart, failures of payments sent before it
//! are not decoded (a relay re-registers when it sends again).

use std::collections::HashMap;
use std::sync::Mutex;

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::msgs::{self, UpdateAddHTLC, UpdateFailHTLC};
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

struct SentHtlc {
	payment_hash: [u8; 32],
	/// One per hop of the outer path, the trampoline last.
	outer_shared_secrets: Vec<SharedSecret>,
	trampoline_shared_secrets: Vec<SharedSecret>,
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

/// Trampoline payments this node sent, and what came back for them.
#[derive(Default)]
pub struct SenderState {
	pending: Mutex<HashMap<[u8; 32], SentOnion>>,
	/// Multi-hop paths LDK's router chose for registered payments.
	paths: Mutex<HashMap<[u8; 32], Vec<Path>>>,
	htlcs: Mutex<HashMap<String, SentHtlc>>,
	failures: Mutex<HashMap<[u8; 32], TrampolineFailure>>,
	relayed: Mutex<HashMap<[u8; 32], RelayedFailure>>,
	/// Relayed payments whose route-finding failures are classified, with
	/// the latest classification.
	routes: Mutex<HashMap<[u8; 32], Option<RouteShortfall>>>,
	/// Adversarial tests only: rewrites every outgoing `update_add_htlc`.
	tamper: Mutex<Option<OutboundTamper>>,
}

/// A function that rewrites an outgoing `update_add_htlc` (its onion) to the
/// given peer. For adversarial tests: it turns a node into a hostile payer.
pub type OutboundTamper = std::sync::Arc<dyn Fn(&PublicKey, &mut UpdateAddHTLC) + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
	m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SenderState {
	/// Remembers a payment about to be sent through `onion.trampoline`.
	/// What an earlier attempt of the same payment answered is forgotten.
	pub(crate) fn register(&self, payment_hash: PaymentHash, onion: SentOnion) {
		lock(&self.relayed).remove(&payment_hash.0);
		lock(&self.failures).remove(&payment_hash.0);
		lock(&self.paths).remove(&payment_hash.0);
		lock(&self.pending).insert(payment_hash.0, onion);
	}

	/// Asks [`super::TrampolineRouter`] to classify why no route is found
	/// for the payment with this hash, if that happens.
	pub(crate) fn watch_route(&self, payment_hash: &PaymentHash) {
		lock(&self.routes).insert(payment_hash.0, None);
	}

	/// Whether route-finding failures of this payment are classified.
	pub(crate) fn is_route_watched(&self, payment_hash: &PaymentHash) -> bool {
		lock(&self.routes).contains_key(&payment_hash.0)
	}

	/// Records why no route was found for a watched payment.
	pub(crate) fn record_shortfall(&self, payment_hash: &PaymentHash, shortfall: RouteShortfall) {
		if let Some(slot) = lock(&self.routes).get_mut(&payment_hash.0) {
			*slot = Some(shortfall);
		}
	}

	/// Why no route was found for a watched payment, if that happened;
	/// stops watching it.
	pub(crate) fn take_route_shortfall(
		&self, payment_hash: &PaymentHash,
	) -> Option<RouteShortfall> {
		lock(&self.routes).remove(&payment_hash.0).flatten()
	}

	/// Whether a payment with this hash is registered.
	pub(crate) fn is_registered(&self, payment_hash: &PaymentHash) -> bool {
		lock(&self.pending).contains_key(&payment_hash.0)
	}

	/// Remembers the multi-hop paths LDK's router chose for a registered
	/// payment, to build the onion of the HTLCs sent along them.
	pub(crate) fn record_paths(&self, payment_hash: &PaymentHash, paths: &[Path]) {
		let multi_hop = paths.iter().filter(|p| p.hops.len() > 1 && p.blinded_tail.is_none());
		lock(&self.paths).entry(payment_hash.0).or_default().extend(multi_hop.cloned());
	}

	/// The failure a trampoline (or the outer hop) reported for a payment of
	/// ours, decrypted through both layers.
	pub fn failure(&self, payment_hash: &PaymentHash) -> Option<TrampolineFailure> {
		lock(&self.failures).get(&payment_hash.0).cloned()
	}

	/// The failure that came back for a packet we relayed.
	pub fn relayed_failure(&self, payment_hash: &PaymentHash) -> Option<RelayedFailure> {
		lock(&self.relayed).get(&payment_hash.0).cloned()
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

	/// Substitutes our own onion in an outgoing `update_add_htlc` of a
	/// registered payment: sent straight to its trampoline, or along a path
	/// LDK's router chose for it.
	pub(crate) fn rewrite_add(&self, node_id: &PublicKey, add: &mut UpdateAddHTLC) {
		let pending = lock(&self.pending);
		let Some(send) = pending.get(&add.payment_hash.0) else { return };
		let Some(mut hops) = self.outer_hops(send, node_id, add) else { return };
		// The trampoline's payload as LDK wrote it: the amount and expiry the
		// path delivers, the outer secret and total, and the trampoline onion.
		let Some(last) = hops.last_mut() else { return };
		let (amt_to_forward, outgoing_cltv_value) = (last.amount_msat, last.cltv_expiry);
		let payload = OuterPayload::new(OuterHop::TrampolineEntry {
			amt_to_forward,
			outgoing_cltv_value,
			payment_data: Some(PaymentData {
				payment_secret: send.outer_secret,
				total_msat: send.total_msat,
			}),
			current_path_key: None,
			trampoline_onion: send.packet.clone(),
			layout: send.layout,
		});
		let Ok(payload) = payload.encode() else { return };
		last.payload = payload;
		let Ok(session_key) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) else { return };
		let sphinx: Vec<SphinxHop> = hops
			.into_iter()
			.map(|hop| SphinxHop { node_id: hop.node_id, payload: hop.payload })
			.collect();
		let Ok(built) = onion::build(
			&Secp256k1::new(),
			&session_key,
			&sphinx,
			&add.payment_hash.0,
			PAYMENT_ONION_HOP_PAYLOADS_LEN,
		) else {
			return;
		};
		let Ok(packet) = msgs::OnionPacket::try_from(&built.packet) else { return };
		add.onion_routing_packet = packet;

		lock(&self.htlcs).insert(
			htlc_key(&add.channel_id, add.htlc_id),
			SentHtlc {
				payment_hash: add.payment_hash.0,
				outer_shared_secrets: built.shared_secrets,
				trampoline_shared_secrets: send.trampoline_shared_secrets.clone(),
			},
		);
	}

	/// The hops of the outer path an HTLC to `node_id` takes, with what each
	/// receives; every payload but the trampoline's (left empty) filled in.
	/// Straight to the trampoline: one hop. Otherwise the recorded path
	/// through `node_id` to the trampoline whose amount is the HTLC's; the
	/// amounts and expiries follow from the HTLC's by the path's fees and
	/// CLTV deltas, as LDK computes them.
	fn outer_hops(
		&self, send: &SentOnion, node_id: &PublicKey, add: &UpdateAddHTLC,
	) -> Option<Vec<OuterHopPlan>> {
		if send.trampoline == *node_id {
			return Some(vec![OuterHopPlan {
				node_id: *node_id,
				amount_msat: add.amount_msat,
				cltv_expiry: add.cltv_expiry,
				payload: Vec::new(),
			}]);
		}
		let paths = lock(&self.paths);
		let path = paths.get(&add.payment_hash.0)?.iter().find(|path| {
			path.hops.first().is_some_and(|hop| hop.pubkey == *node_id)
				&& path.hops.last().is_some_and(|hop| hop.pubkey == send.trampoline)
				&& path.hops.iter().map(|hop| hop.fee_msat).sum::<u64>() == add.amount_msat
		})?;
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
		plan.push(OuterHopPlan {
			node_id: send.trampoline,
			amount_msat,
			cltv_expiry,
			payload: Vec::new(),
		});
		Some(plan)
	}

	/// Reads an incoming `update_fail_htlc` of an HTLC we rewrote.
	pub(crate) fn on_fail(&self, fail: &UpdateFailHTLC) {
		let key = htlc_key(&fail.channel_id, fail.htlc_id);
		let Some(htlc) = lock(&self.htlcs).remove(&key) else { return };
		let Some(reason) = crate::handler::reason_of(fail) else { return };
		if !htlc.trampoline_shared_secrets.is_empty() {
			if let Ok(failure) = onion::decrypt_trampoline_error_packet(
				&reason,
				&htlc.outer_shared_secrets,
				&htlc.trampoline_shared_secrets,
			) {
				lock(&self.failures).insert(htlc.payment_hash, failure);
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
		lock(&self.relayed).insert(htlc.payment_hash, relayed);
	}
}
