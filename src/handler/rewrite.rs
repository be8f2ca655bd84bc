//! Inbound `update_add_htlc`: detect a trampoline forward, record it, and hand
//! LDK a one-hop onion to ourselves whose final payload is a plain receive.

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, SecretKey};
use lightning::ln::channelmanager::AChannelManager;
use lightning::ln::msgs::{self, UpdateAddHTLC};
use lightning::sign::Recipient;
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning::{log_debug, log_error, log_info};

use crate::onion::{
	self, FailureMessage, NextPacket, OnionPacket, OuterHop, OuterPayload, PaymentData,
	PeeledOnion, SphinxHop, TrampolineHop, TrampolinePayload, UnknownTlvs,
	PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use crate::relay::store::{bucket_id, htlc_key, BucketRecord, BucketState, HtlcRecord};
use crate::relay::{RelayCore, BUCKET_TLV_TYPE};

/// How long the payment secret LDK issues for a bucket stays valid.
const BUCKET_SECRET_EXPIRY_SECS: u32 = 24 * 3600;

/// The two things the inbound rewrite asks of the node: its id and a payment
/// secret for a new bucket. Every `AChannelManager` provides them; a benchmark
/// can provide them without a live channel manager.
pub trait InboundNode {
	/// The node's id (`ChannelManager::get_our_node_id`).
	fn our_node_id(&self) -> PublicKey;
	/// A payment secret LDK will accept for `payment_hash`
	/// (`ChannelManager::create_inbound_payment_for_hash`), `None` if the
	/// expiry is out of range.
	fn create_inbound_payment_for_hash(
		&self, payment_hash: PaymentHash, invoice_expiry_delta_secs: u32,
	) -> Option<PaymentSecret>;
}

impl<C: AChannelManager + ?Sized> InboundNode for C {
	fn our_node_id(&self) -> PublicKey {
		self.get_cm().get_our_node_id()
	}

	fn create_inbound_payment_for_hash(
		&self, payment_hash: PaymentHash, invoice_expiry_delta_secs: u32,
	) -> Option<PaymentSecret> {
		self.get_cm()
			.create_inbound_payment_for_hash(payment_hash, None, invoice_expiry_delta_secs, None)
			.ok()
	}
}

/// What to do with an inbound HTLC.
enum Decision {
	/// Not a trampoline forward: LDK handles it as is.
	PassThrough,
	/// A valid trampoline forward of this bucket.
	Forward { bucket: [u8; 32], ldk_secret: PaymentSecret, amt: u64, cltv: u32, total: u64 },
	/// Fail it with this message, wrapped with these secrets.
	Reject { failure: FailureMessage },
}

/// Returns the message to hand LDK instead of `msg`, or `None` to pass it
/// through. Never panics on peer data; on a store failure it passes the HTLC
/// through, and LDK rejects it as it would without the plugin.
pub(super) fn rewrite_add<N: InboundNode + ?Sized>(
	core: &RelayCore, node: &N, msg: &UpdateAddHTLC,
) -> Option<UpdateAddHTLC> {
	if msg.blinding_point.is_some() || msg.onion_routing_packet.version != 0 {
		return None;
	}
	let pubkey = msg.onion_routing_packet.public_key.ok()?;
	let packet = OnionPacket::new(
		pubkey,
		msg.onion_routing_packet.hop_data.to_vec(),
		msg.onion_routing_packet.hmac,
	)
	.ok()?;
	let ecdh = |key: &PublicKey| core.signer.ecdh(Recipient::Node, key, None);
	// An outer onion we cannot peel is LDK's to reject (malformed).
	let outer = onion::peel(&core.secp, &packet, &msg.payment_hash.0, ecdh).ok()?;
	if !outer.is_final() {
		return None;
	}
	let payload = OuterPayload::decode(&outer.payload).ok()?;
	let OuterHop::TrampolineEntry {
		amt_to_forward,
		outgoing_cltv_value,
		payment_data,
		current_path_key: None,
		trampoline_onion,
		..
	} = payload.hop
	else {
		return None;
	};
	let outer_ss = outer.shared_secret;
	let key = htlc_key(&msg.channel_id, msg.htlc_id);

	let mut trampoline_ss = None;
	let decision = match onion::peel(&core.secp, &trampoline_onion, &msg.payment_hash.0, ecdh) {
		Err(e) => Decision::Reject { failure: e.to_failure(&trampoline_onion.to_bytes()) },
		Ok(inner) => {
			trampoline_ss = Some(inner.shared_secret);
			match TrampolinePayload::decode(&inner.payload) {
				Err(e) => Decision::Reject { failure: e.to_failure() },
				Ok(TrampolinePayload { hop, .. }) => decide(
					core,
					node,
					msg,
					&key,
					hop,
					&inner,
					amt_to_forward,
					outgoing_cltv_value,
					payment_data,
				),
			}
		},
	};

	let (bucket, payment_data, amt, cltv, custom, reject) = match decision {
		Decision::PassThrough => return None,
		Decision::Forward { bucket, ldk_secret, amt, cltv, total } => (
			Some(bucket),
			PaymentData { payment_secret: ldk_secret, total_msat: total },
			amt,
			cltv,
			vec![(BUCKET_TLV_TYPE, bucket.to_vec())],
			None,
		),
		Decision::Reject { failure } => {
			log_info!(core.logger, "Rejecting trampoline HTLC {key}: {failure:?}");
			// A secret LDK never issued: LDK fails the HTLC, and the outgoing
			// failure is replaced with `failure`.
			let bogus =
				PaymentSecret(core.derive(b"reject", &[&msg.payment_hash.0, key.as_bytes()]));
			(
				None,
				PaymentData { payment_secret: bogus, total_msat: msg.amount_msat },
				msg.amount_msat,
				msg.cltv_expiry,
				Vec::new(),
				Some(failure.encode()),
			)
		},
	};

	let session_key = core.derive(b"rewrite", &[&pubkey.serialize(), &msg.payment_hash.0]);
	let session_key = SecretKey::from_slice(&session_key).ok()?;
	let receive = OuterPayload {
		hop: OuterHop::Receive {
			amt_to_forward: amt,
			outgoing_cltv_value: cltv,
			payment_data: Some(payment_data),
			payment_metadata: None,
			keysend_preimage: None,
		},
		unknown_tlvs: UnknownTlvs::from_records(custom).ok()?,
	};
	let hop = SphinxHop { node_id: node.our_node_id(), payload: receive.encode().ok()? };
	let built = match onion::build(
		&core.secp,
		&session_key,
		&[hop],
		&msg.payment_hash.0,
		PAYMENT_ONION_HOP_PAYLOADS_LEN,
	) {
		Ok(built) => built,
		Err(e) => {
			log_error!(core.logger, "Cannot rewrite trampoline HTLC {key}: {e}");
			return None;
		},
	};
	let record = HtlcRecord {
		payment_hash: msg.payment_hash.0,
		bucket,
		outer_shared_secret: outer_ss.secret_bytes(),
		trampoline_shared_secret: trampoline_ss.map(|s: SharedSecret| s.secret_bytes()),
		rewrite_shared_secret: built.shared_secrets[0].secret_bytes(),
		reject,
		failure_sent: core.store.htlc(&key).and_then(|h| h.failure_sent),
	};
	if let Err(e) = core.store.put_htlc(&key, record) {
		log_error!(core.logger, "Cannot record trampoline HTLC {key}, leaving it to LDK: {e}");
		return None;
	}
	let onion_routing_packet = msgs::OnionPacket::try_from(&built.packet).ok()?;
	log_debug!(core.logger, "Rewrote trampoline HTLC {key} for LDK");
	Some(UpdateAddHTLC { onion_routing_packet, ..msg.clone() })
}

#[allow(clippy::too_many_arguments)]
fn decide<N: InboundNode + ?Sized>(
	core: &RelayCore, node: &N, msg: &UpdateAddHTLC, key: &str, hop: TrampolineHop,
	inner: &PeeledOnion, amt_to_forward: u64, outgoing_cltv_value: u32,
	payment_data: Option<PaymentData>,
) -> Decision {
	let (inner_amt, inner_cltv, next_packet) = match (hop, &inner.next) {
		(TrampolineHop::Receive { .. } | TrampolineHop::BlindedReceive { .. }, _) => {
			return Decision::PassThrough
		},
		(
			TrampolineHop::ToLegacyRecipient { amt_to_forward, outgoing_cltv_value, .. }
			| TrampolineHop::ToBlindedPaths { amt_to_forward, outgoing_cltv_value, .. },
			_,
		) => (amt_to_forward, outgoing_cltv_value, None),
		(
			TrampolineHop::ToTrampoline { amt_to_forward, outgoing_cltv_value, .. },
			NextPacket::Forward(next),
		) => (amt_to_forward, outgoing_cltv_value, Some(next.to_bytes())),
		// A next trampoline but nothing left for it in the onion.
		(TrampolineHop::ToTrampoline { .. }, NextPacket::Final) => {
			return Decision::Reject {
				failure: FailureMessage::InvalidOnionPayload {
					tlv_type: onion::types::OUTGOING_NODE_ID,
					offset: 0,
				},
			}
		},
		// Not relayed by this version: inside a blinded path.
		_ => return Decision::Reject { failure: FailureMessage::TemporaryTrampolineFailure },
	};
	// Without outer payment_data (LDK's trampoline sender without a secret),
	// the HTLC is a payment of its own: its amount is the total.
	let payment_data = payment_data.unwrap_or_else(|| PaymentData {
		payment_secret: PaymentSecret(
			core.derive(b"no outer secret", &[&msg.payment_hash.0, key.as_bytes()]),
		),
		total_msat: amt_to_forward,
	});
	// The final-node rules of the trampoline onion (PROTOCOL.md).
	if inner_amt > payment_data.total_msat {
		return Decision::Reject {
			failure: FailureMessage::FinalIncorrectHtlcAmount { incoming_htlc_amt: amt_to_forward },
		};
	}
	if inner_cltv > outgoing_cltv_value {
		return Decision::Reject {
			failure: FailureMessage::FinalIncorrectCltvExpiry { cltv_expiry: outgoing_cltv_value },
		};
	}

	let payment_hash = PaymentHash(msg.payment_hash.0);
	let id = bucket_id(&payment_hash, &payment_data.payment_secret);
	let known_htlc = core.store.htlc(key).is_some();
	let bucket = match core.store.bucket(&id) {
		Some(bucket) => {
			if bucket.state != BucketState::Receiving && !known_htlc {
				// The bucket is already relayed (or failed): a late part or a
				// retry of the payer cannot join it, and gets the bucket's answer.
				let failure = match &bucket.state {
					BucketState::Failed { failure, .. } => FailureMessage::decode(failure).ok(),
					_ => None,
				};
				return Decision::Reject {
					failure: failure.unwrap_or(FailureMessage::TemporaryTrampolineFailure),
				};
			}
			let min_cltv = bucket.min_incoming_cltv.min(msg.cltv_expiry);
			match core.store.update_bucket(&id, |b| b.min_incoming_cltv = min_cltv) {
				Ok(Some(b)) => b,
				_ => {
					return Decision::Reject { failure: FailureMessage::TemporaryTrampolineFailure }
				},
			}
		},
		None => {
			let Some(ldk_secret) =
				node.create_inbound_payment_for_hash(payment_hash, BUCKET_SECRET_EXPIRY_SECS)
			else {
				return Decision::Reject { failure: FailureMessage::TemporaryTrampolineFailure };
			};
			let record = BucketRecord {
				payment_hash: payment_hash.0,
				outer_secret: payment_data.payment_secret.0,
				outer_total_msat: payment_data.total_msat,
				ldk_secret: ldk_secret.0,
				min_incoming_cltv: msg.cltv_expiry,
				trampoline_payload: inner.payload.clone(),
				next_packet,
				payment_id: None,
				state: BucketState::Receiving,
			};
			if core.store.put_bucket(&id, record.clone()).is_err() {
				return Decision::Reject { failure: FailureMessage::TemporaryTrampolineFailure };
			}
			record
		},
	};
	Decision::Forward {
		bucket: id,
		ldk_secret: PaymentSecret(bucket.ldk_secret),
		amt: amt_to_forward,
		cltv: outgoing_cltv_value,
		total: payment_data.total_msat,
	}
}
