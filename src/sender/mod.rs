//! Paying a BOLT 11 invoice through one trampoline node (legacy TLVs): the
//! wallet builds the trampoline onion for the trampoline with a
//! "trampoline to legacy recipient" payload, and pays the trampoline natively
//! with LDK, the onion riding in custom TLV 66100 (LDK sends custom TLVs >=
//! 65536 as they are, so no onion substitution is needed).

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::channelmanager::{AChannelManager, PaymentId, RecipientOnionFields, Retry};
use lightning::routing::router::{PaymentParameters, RouteParameters};
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning_invoice::Bolt11Invoice;

mod intercept;
pub use intercept::SenderState;

use crate::onion::{
	self, exact_hop_payloads_len, types, LegacyRouteHintHop, OnionPacket, PaymentData, SphinxHop,
	TrampolineHop, TrampolinePayload,
};

/// `hop_payloads` size of the trampoline onion: eclair's and Electrum's legacy
/// size, grown only if the payload (route hints) needs more.
pub const TRAMPOLINE_HOP_PAYLOADS_LEN: usize = 400;

/// Blocks added to the invoice's `min_final_cltv_expiry_delta`, for blocks
/// found while the payment is in flight.
pub const FINAL_CLTV_MARGIN: u32 = 6;

/// Errors of [`pay_invoice_via_trampoline`].
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
	/// The invoice has no amount.
	#[error("the invoice has no amount")]
	NoAmount,
	/// The trampoline onion cannot be built.
	#[error("cannot build the trampoline onion: {0}")]
	Onion(String),
	/// LDK refused to start the payment.
	#[error("LDK refused the payment: {0}")]
	Send(String),
}

/// A trampoline payment in flight.
#[derive(Clone, Debug)]
pub struct TrampolineSend {
	/// LDK's payment id (the invoice's payment hash).
	pub payment_id: PaymentId,
	/// What is paid to the trampoline: invoice amount plus trampoline fee.
	pub amount_msat: u64,
	/// The trampoline onion's shared secret with the trampoline node, to read a
	/// trampoline failure once the outer layer is removed.
	pub trampoline_shared_secret: SharedSecret,
}

/// A trampoline onion for one trampoline hop to a legacy BOLT 11 recipient.
#[derive(Clone, Debug)]
pub struct LegacyTrampolineOnion {
	/// The trampoline packet (what goes in TLV 66100).
	pub packet: OnionPacket,
	/// The trampoline onion's shared secret with the trampoline node.
	pub shared_secret: SharedSecret,
	/// The invoice amount (what the recipient gets).
	pub amount_msat: u64,
	/// The recipient's final CLTV delta from the current height.
	pub final_cltv_delta: u32,
}

/// Builds the trampoline onion for `trampoline` carrying the data of
/// `invoice` (66098 recipient, 66097 features, 66099 route hints, the invoice
/// secret and total), for the recipient to receive at `height + min_final_cltv
/// + FINAL_CLTV_MARGIN`.
pub fn legacy_trampoline_onion(
	invoice: &Bolt11Invoice, trampoline: PublicKey, height: u32,
) -> Result<LegacyTrampolineOnion, SenderError> {
	let amount_msat = invoice.amount_milli_satoshis().ok_or(SenderError::NoAmount)?;
	let final_cltv_delta = u32::try_from(invoice.min_final_cltv_expiry_delta())
		.unwrap_or(u32::MAX / 2)
		+ FINAL_CLTV_MARGIN;
	let payment_hash = PaymentHash(invoice.payment_hash().to_byte_array());
	let hints = invoice
		.route_hints()
		.iter()
		.map(|hint| {
			hint.0
				.iter()
				.map(|hop| LegacyRouteHintHop {
					node_id: hop.src_node_id,
					short_channel_id: hop.short_channel_id,
					fee_base_msat: hop.fees.base_msat,
					fee_proportional_millionths: hop.fees.proportional_millionths,
					cltv_expiry_delta: hop.cltv_expiry_delta,
				})
				.collect()
		})
		.collect();
	let features = invoice.features().map(|f| f.le_flags().iter().rev().copied().collect());
	let payload = TrampolinePayload::new(TrampolineHop::ToLegacyRecipient {
		amt_to_forward: amount_msat,
		outgoing_cltv_value: height + final_cltv_delta,
		outgoing_node_id: invoice.recover_payee_pub_key(),
		payment_data: PaymentData {
			payment_secret: *invoice.payment_secret(),
			total_msat: amount_msat,
		},
		payment_metadata: invoice.payment_metadata().cloned(),
		invoice_features: features,
		invoice_routing_info: hints,
	})
	.encode()
	.map_err(|e| SenderError::Onion(e.to_string()))?;
	let hops = [SphinxHop { node_id: trampoline, payload }];
	let len = exact_hop_payloads_len(&hops).max(TRAMPOLINE_HOP_PAYLOADS_LEN);
	let session_key = SecretKey::from_slice(&rand::random::<[u8; 32]>())
		.map_err(|e| SenderError::Onion(e.to_string()))?;
	let built = onion::build(&Secp256k1::new(), &session_key, &hops, &payment_hash.0, len)
		.map_err(|e| SenderError::Onion(e.to_string()))?;
	Ok(LegacyTrampolineOnion {
		packet: built.packet,
		shared_secret: built.shared_secrets[0],
		amount_msat,
		final_cltv_delta,
	})
}

/// Pays `amount_msat` to `trampoline` with `trampoline_packet` (serialized) in
/// TLV 66100 and a fresh random outer payment secret, so that the trampoline
/// receives it with `to_trampoline_cltv_delta` blocks from now. Returns the
/// payment id (the payment hash).
///
/// With `state` (the wallet's [`SenderState`], shared with its message
/// handler) and the trampoline's shared secret, the trampoline's failures are
/// decrypted and available from [`SenderState::failure`].
#[allow(clippy::too_many_arguments)]
pub fn send_to_trampoline<C: AChannelManager + ?Sized>(
	cm: &C, payment_hash: PaymentHash, trampoline_packet: Vec<u8>, trampoline: PublicKey,
	amount_msat: u64, to_trampoline_cltv_delta: u32, state: Option<(&SenderState, SharedSecret)>,
) -> Result<PaymentId, SenderError> {
	let cm = cm.get_cm();
	// The outer payment_secret is fresh and random (not the invoice's).
	let outer_secret = PaymentSecret(rand::random());
	if let Some((state, trampoline_shared_secret)) = state {
		if let Ok(packet) = OnionPacket::from_bytes(&trampoline_packet) {
			state.register(
				payment_hash,
				trampoline,
				packet,
				trampoline_shared_secret,
				outer_secret,
			);
		}
	}
	let outer = RecipientOnionFields::secret_only(outer_secret)
		.with_custom_tlvs(vec![(types::LEGACY_TRAMPOLINE_ONION, trampoline_packet)])
		.map_err(|()| SenderError::Onion("custom TLV rejected by LDK".into()))?;
	let mut params = PaymentParameters::from_node_id(trampoline, to_trampoline_cltv_delta);
	if cm.list_usable_channels().iter().any(|c| c.counterparty.node_id == trampoline) {
		// Paying our own trampoline peer (the wallet case): offer the delta
		// asked, without LDK's shadow CLTV offset on top (LDK's router needs
		// one block of room above the final delta).
		params = params.with_max_total_cltv_expiry_delta(to_trampoline_cltv_delta + 1);
	}
	let route_params = RouteParameters::from_payment_params_and_value(params, amount_msat);
	let payment_id = PaymentId(payment_hash.0);
	// No retries: LDK would resend the same trampoline onion at the same fee,
	// which the trampoline answers as before (escalation is the sender's job).
	cm.send_payment(payment_hash, outer, payment_id, route_params, Retry::Attempts(0))
		.map_err(|e| SenderError::Send(format!("{e:?}")))?;
	Ok(payment_id)
}

/// Pays `invoice` through `trampoline`, offering it `fee_msat` and
/// `cltv_expiry_delta` blocks. Returns once LDK has started the payment; its
/// outcome arrives as LDK's `PaymentSent` / `PaymentFailed`.
pub fn pay_invoice_via_trampoline<C: AChannelManager + ?Sized>(
	cm: &C, invoice: &Bolt11Invoice, trampoline: PublicKey, fee_msat: u64, cltv_expiry_delta: u16,
	state: Option<&SenderState>,
) -> Result<TrampolineSend, SenderError> {
	let height = cm.get_cm().current_best_block().height;
	let onion = legacy_trampoline_onion(invoice, trampoline, height)?;
	let payment_id = send_to_trampoline(
		cm,
		PaymentHash(invoice.payment_hash().to_byte_array()),
		onion.packet.to_bytes(),
		trampoline,
		onion.amount_msat + fee_msat,
		onion.final_cltv_delta + u32::from(cltv_expiry_delta),
		state.map(|s| (s, onion.shared_secret)),
	)?;
	Ok(TrampolineSend {
		payment_id,
		amount_msat: onion.amount_msat + fee_msat,
		trampoline_shared_secret: onion.shared_secret,
	})
}
