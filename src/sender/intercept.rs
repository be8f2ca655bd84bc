//! The wallet side of the message handler: LDK builds the outer onion to the
//! trampoline with a session key it keeps to itself, so it cannot read the
//! trampoline's doubly wrapped failures, and neither could we. For a payment
//! sent with [`super::send_to_trampoline`] over a direct channel to the
//! trampoline, the handler replaces LDK's one-hop onion with one it builds from
//! the same payload and a session key it keeps, and decrypts the failures that
//! come back (outer layer, then trampoline layer). LDK still sees the failure
//! unchanged. State is in memory: after a restart, failures of payments sent
//! before it are not decoded.

use std::collections::HashMap;
use std::sync::Mutex;

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::msgs::{self, UpdateAddHTLC, UpdateFailHTLC};
use lightning::types::payment::{PaymentHash, PaymentSecret};

use crate::onion::{
	self, OnionPacket, OuterHop, OuterPayload, PaymentData, SphinxHop, TlvLayout,
	TrampolineFailure, PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use crate::relay::store::htlc_key;

struct PendingSend {
	trampoline: PublicKey,
	packet: OnionPacket,
	trampoline_shared_secret: SharedSecret,
	outer_secret: PaymentSecret,
}

struct SentHtlc {
	payment_hash: [u8; 32],
	outer_shared_secret: SharedSecret,
	trampoline_shared_secret: SharedSecret,
}

/// Trampoline payments this node sent, and what their trampolines answered.
#[derive(Default)]
pub struct SenderState {
	pending: Mutex<HashMap<[u8; 32], PendingSend>>,
	htlcs: Mutex<HashMap<String, SentHtlc>>,
	failures: Mutex<HashMap<[u8; 32], TrampolineFailure>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
	m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SenderState {
	/// Remembers a payment about to be sent through `trampoline`.
	pub(super) fn register(
		&self, payment_hash: PaymentHash, trampoline: PublicKey, packet: OnionPacket,
		trampoline_shared_secret: SharedSecret, outer_secret: PaymentSecret,
	) {
		lock(&self.pending).insert(
			payment_hash.0,
			PendingSend { trampoline, packet, trampoline_shared_secret, outer_secret },
		);
	}

	/// The failure the trampoline (or the outer hop) reported for a payment,
	/// decrypted through both layers.
	pub fn failure(&self, payment_hash: &PaymentHash) -> Option<TrampolineFailure> {
		lock(&self.failures).get(&payment_hash.0).cloned()
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
		// and expiry, our outer secret and total, and the trampoline onion.
		let payload = OuterPayload::new(OuterHop::TrampolineEntry {
			amt_to_forward: add.amount_msat,
			outgoing_cltv_value: add.cltv_expiry,
			payment_data: Some(PaymentData {
				payment_secret: send.outer_secret,
				total_msat: add.amount_msat,
			}),
			current_path_key: None,
			trampoline_onion: send.packet.clone(),
			layout: TlvLayout::Legacy,
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
		let mut hop_data = [0u8; 20 * 65];
		hop_data.copy_from_slice(built.packet.hop_payloads());
		add.onion_routing_packet = msgs::OnionPacket {
			version: 0,
			public_key: Ok(*built.packet.public_key()),
			hop_data,
			hmac: *built.packet.hmac(),
		};
		lock(&self.htlcs).insert(
			htlc_key(&add.channel_id, add.htlc_id),
			SentHtlc {
				payment_hash: add.payment_hash.0,
				outer_shared_secret: built.shared_secrets[0],
				trampoline_shared_secret: send.trampoline_shared_secret,
			},
		);
	}

	/// Decrypts an incoming `update_fail_htlc` of an HTLC we rewrote.
	pub(crate) fn on_fail(&self, fail: &UpdateFailHTLC) {
		let key = htlc_key(&fail.channel_id, fail.htlc_id);
		let Some(htlc) = lock(&self.htlcs).remove(&key) else { return };
		let Some(reason) = crate::handler::reason_of(fail) else { return };
		if let Ok(failure) = onion::decrypt_trampoline_error_packet(
			&reason,
			&[htlc.outer_shared_secret],
			&[htlc.trampoline_shared_secret],
		) {
			lock(&self.failures).insert(htlc.payment_hash, failure);
		}
	}
}
