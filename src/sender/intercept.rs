//! The sending side of the message handler. LDK builds the outer onion to a
//! trampoline with a session key it keeps to itself, so it cannot read the
//! trampoline's doubly wrapped failures, and neither could we. For a payment
//! sent with [`super::send_to_trampoline`] over a direct channel to the
//! trampoline, the handler replaces LDK's one-hop onion with one it builds
//! from the same payload (the trampoline packet as type 20 or 66100, the
//! outer secret and total) and a session key it keeps, and peels the failures
//! that come back: through the trampoline layers too for the wallet's own
//! payments, or only the outer layer for a packet this node relays, whose
//! failure is passed on to the payer. LDK still sees the failure unchanged.
//! State is in memory: after a restart, failures of payments sent before it
//! are not decoded (a relay re-registers when it sends again).

use std::collections::HashMap;
use std::sync::Mutex;

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::msgs::{self, UpdateAddHTLC, UpdateFailHTLC};
use lightning::types::payment::{PaymentHash, PaymentSecret};

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
	outer_shared_secret: SharedSecret,
	trampoline_shared_secrets: Vec<SharedSecret>,
}

/// A failure that came back for a packet this node relayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayedFailure {
	/// The next node failed the outer HTLC itself (it could not read the
	/// trampoline packet, or its channel layer refused).
	Outer(FailureMessage),
	/// A failure from inside the trampoline route, still encrypted for the
	/// payer: to be wrapped and passed back.
	Opaque(Vec<u8>),
}

/// Trampoline payments this node sent, and what came back for them.
#[derive(Default)]
pub struct SenderState {
	pending: Mutex<HashMap<[u8; 32], SentOnion>>,
	htlcs: Mutex<HashMap<String, SentHtlc>>,
	failures: Mutex<HashMap<[u8; 32], TrampolineFailure>>,
	relayed: Mutex<HashMap<[u8; 32], RelayedFailure>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
	m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SenderState {
	/// Remembers a payment about to be sent through `onion.trampoline`.
	/// What an earlier attempt of the same payment answered is forgotten.
	pub(crate) fn register(&self, payment_hash: PaymentHash, onion: SentOnion) {
		lock(&self.relayed).remove(&payment_hash.0);
		lock(&self.failures).remove(&payment_hash.0);
		lock(&self.pending).insert(payment_hash.0, onion);
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

	/// Substitutes our own onion in an outgoing `update_add_htlc` of a
	/// registered payment sent straight to its trampoline.
	pub(crate) fn rewrite_add(&self, node_id: &PublicKey, add: &mut UpdateAddHTLC) {
		let pending = lock(&self.pending);
		let Some(send) = pending.get(&add.payment_hash.0) else { return };
		if send.trampoline != *node_id {
			return;
		}
		// The payload LDK put there for a one-hop path: the HTLC's own amount
		// and expiry, the outer secret and total, and the trampoline onion.
		let payload = OuterPayload::new(OuterHop::TrampolineEntry {
			amt_to_forward: add.amount_msat,
			outgoing_cltv_value: add.cltv_expiry,
			payment_data: Some(PaymentData {
				payment_secret: send.outer_secret,
				total_msat: send.total_msat,
			}),
			current_path_key: None,
			trampoline_onion: send.packet.clone(),
			layout: send.layout,
		});
		let Ok(payload) = payload.encode() else { return };
		let Ok(session_key) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) else { return };
		let Ok(built) = onion::build(
			&Secp256k1::new(),
			&session_key,
			&[SphinxHop { node_id: *node_id, payload }],
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
				outer_shared_secret: built.shared_secrets[0],
				trampoline_shared_secrets: send.trampoline_shared_secrets.clone(),
			},
		);
	}

	/// Reads an incoming `update_fail_htlc` of an HTLC we rewrote.
	pub(crate) fn on_fail(&self, fail: &UpdateFailHTLC) {
		let key = htlc_key(&fail.channel_id, fail.htlc_id);
		let Some(htlc) = lock(&self.htlcs).remove(&key) else { return };
		let Some(reason) = crate::handler::reason_of(fail) else { return };
		if !htlc.trampoline_shared_secrets.is_empty() {
			if let Ok(failure) = onion::decrypt_trampoline_error_packet(
				&reason,
				&[htlc.outer_shared_secret],
				&htlc.trampoline_shared_secrets,
			) {
				lock(&self.failures).insert(htlc.payment_hash, failure);
			}
			return;
		}
		let relayed = match onion::peel_error_packet(&reason, &[htlc.outer_shared_secret]) {
			Ok(PeeledError::Decrypted(failure)) => RelayedFailure::Outer(failure.message),
			Ok(PeeledError::Opaque(packet)) => RelayedFailure::Opaque(packet),
			Err(_) => return,
		};
		lock(&self.relayed).insert(htlc.payment_hash, relayed);
	}
}
