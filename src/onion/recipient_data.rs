//! The decrypted `encrypted_recipient_data` TLVs of a payment blinded path
//! (BOLT 4 `encrypted_data_tlv`): 1 padding, 2 short_channel_id, 4 next_node_id,
//! 6 path_id, 8 next_path_key_override, 10 payment_relay, 12
//! payment_constraints, 14 allowed_features.

use bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::payment::{PaymentConstraints, PaymentRelay};
use lightning::util::ser::Writeable;

use crate::onion::tlv::{
	decode_point, read_exact, read_stream, PayloadError, TlvRecord, TlvWriter, UnknownTlvs,
};

/// TLV type numbers of `encrypted_data_tlv`.
pub mod types {
	/// `padding`.
	pub const PADDING: u64 = 1;
	/// `short_channel_id`.
	pub const SHORT_CHANNEL_ID: u64 = 2;
	/// `next_node_id`.
	pub const NEXT_NODE_ID: u64 = 4;
	/// `path_id`.
	pub const PATH_ID: u64 = 6;
	/// `next_path_key_override`.
	pub const NEXT_PATH_KEY_OVERRIDE: u64 = 8;
	/// `payment_relay`.
	pub const PAYMENT_RELAY: u64 = 10;
	/// `payment_constraints`.
	pub const PAYMENT_CONSTRAINTS: u64 = 12;
	/// `allowed_features`.
	pub const ALLOWED_FEATURES: u64 = 14;
}

/// Where a blinded intermediate hop relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextBlindedHop {
	/// Over this channel (type 2).
	ShortChannelId(u64),
	/// To this node (type 4), as in a blinded trampoline path.
	NodeId(PublicKey),
}

/// What the recipient of a blinded path told one of its hops.
#[derive(Clone, Debug, PartialEq)]
pub enum RecipientData {
	/// An intermediate hop.
	Forward {
		/// The next hop.
		next: NextBlindedHop,
		/// Fees and CLTV delta to apply (required for payments).
		payment_relay: PaymentRelay,
		/// Limits on the HTLC.
		payment_constraints: Option<PaymentConstraints>,
		/// Features the hop may use, big-endian.
		allowed_features: Option<Vec<u8>>,
		/// Path key to send to the next hop instead of the derived one.
		next_path_key_override: Option<PublicKey>,
	},
	/// The recipient itself.
	Receive {
		/// The recipient's own data, to recognize the payment.
		path_id: Vec<u8>,
		/// Limits on the HTLC.
		payment_constraints: Option<PaymentConstraints>,
		/// Features the sender may use, big-endian.
		allowed_features: Option<Vec<u8>>,
	},
}

/// Decoded `encrypted_data_tlv`. Padding is checked for being a valid record and
/// then dropped, so re-encoding yields the unpadded stream.
#[derive(Clone, Debug, PartialEq)]
pub struct RecipientDataTlvs {
	/// The data.
	pub data: RecipientData,
	/// Unknown odd records, preserved.
	pub unknown_tlvs: UnknownTlvs,
}

impl RecipientDataTlvs {
	/// Data without unknown records.
	pub fn new(data: RecipientData) -> Self {
		Self { data, unknown_tlvs: UnknownTlvs::new() }
	}

	/// Encodes the TLV stream (no length prefix), ready for
	/// [`crate::onion::blinding::encrypt_recipient_data`].
	pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
		use types::*;
		let mut w = TlvWriter::new();
		let (constraints, features) = match &self.data {
			RecipientData::Forward {
				next,
				payment_relay,
				payment_constraints,
				allowed_features,
				next_path_key_override,
			} => {
				match next {
					NextBlindedHop::ShortChannelId(scid) => {
						w.put(SHORT_CHANNEL_ID, scid.to_be_bytes().to_vec())
					},
					NextBlindedHop::NodeId(node_id) => {
						w.put(NEXT_NODE_ID, node_id.serialize().to_vec())
					},
				}
				w.put_opt(
					NEXT_PATH_KEY_OVERRIDE,
					next_path_key_override.map(|k| k.serialize().to_vec()),
				);
				w.put(PAYMENT_RELAY, payment_relay.encode());
				(payment_constraints, allowed_features)
			},
			RecipientData::Receive { path_id, payment_constraints, allowed_features } => {
				w.put(PATH_ID, path_id.clone());
				(payment_constraints, allowed_features)
			},
		};
		w.put_opt(PAYMENT_CONSTRAINTS, constraints.as_ref().map(Writeable::encode));
		w.put_opt(ALLOWED_FEATURES, features.clone());
		w.finish_stream(&self.unknown_tlvs)
	}

	/// Decodes a decrypted TLV stream. Offsets in errors are within the stream.
	pub fn decode(stream: &[u8]) -> Result<Self, PayloadError> {
		use types::*;
		let records = read_stream(stream, 0)?;
		let mut scid: Option<(u64, TlvRecord<'_>)> = None;
		let mut node_id: Option<(PublicKey, TlvRecord<'_>)> = None;
		let mut path_id: Option<(Vec<u8>, TlvRecord<'_>)> = None;
		let mut path_key_override: Option<(PublicKey, TlvRecord<'_>)> = None;
		let mut relay: Option<(PaymentRelay, TlvRecord<'_>)> = None;
		let mut constraints = None;
		let mut features = None;
		let mut unknown_tlvs = UnknownTlvs::new();
		for r in &records {
			match r.tlv_type {
				PADDING => {},
				SHORT_CHANNEL_ID => {
					if r.value.len() != 8 {
						return Err(r.invalid("short_channel_id must be 8 bytes"));
					}
					scid = Some((read_exact::<u64>(r.value).map_err(|e| r.invalid(e))?, *r));
				},
				NEXT_NODE_ID => {
					node_id = Some((decode_point(r.value).map_err(|e| r.invalid(e))?, *r))
				},
				PATH_ID => path_id = Some((r.value.to_vec(), *r)),
				NEXT_PATH_KEY_OVERRIDE => {
					path_key_override = Some((decode_point(r.value).map_err(|e| r.invalid(e))?, *r))
				},
				PAYMENT_RELAY => {
					relay =
						Some((read_exact::<PaymentRelay>(r.value).map_err(|e| r.invalid(e))?, *r))
				},
				PAYMENT_CONSTRAINTS => {
					constraints =
						Some(read_exact::<PaymentConstraints>(r.value).map_err(|e| r.invalid(e))?)
				},
				ALLOWED_FEATURES => features = Some(r.value.to_vec()),
				_ => unknown_tlvs.push_unknown(r)?,
			}
		}
		let next = match (scid, node_id) {
			(Some(_), Some((_, record))) => {
				return Err(record.forbidden("short_channel_id and next_node_id are exclusive"))
			},
			(Some((scid, _)), None) => Some(NextBlindedHop::ShortChannelId(scid)),
			(None, Some((node_id, _))) => Some(NextBlindedHop::NodeId(node_id)),
			(None, None) => None,
		};
		let data = match next {
			Some(next) => {
				if let Some((_, record)) = path_id {
					return Err(record.forbidden("path_id is only for the recipient"));
				}
				RecipientData::Forward {
					next,
					payment_relay: relay
						.map(|(relay, _)| relay)
						.ok_or(PayloadError::MissingType { tlv_type: PAYMENT_RELAY })?,
					payment_constraints: constraints,
					allowed_features: features,
					next_path_key_override: path_key_override.map(|(k, _)| k),
				}
			},
			None => {
				let reason = "only intermediate hops relay";
				if let Some((_, record)) = relay {
					return Err(record.forbidden(reason));
				}
				if let Some((_, record)) = path_key_override {
					return Err(record.forbidden(reason));
				}
				RecipientData::Receive {
					path_id: path_id
						.map(|(p, _)| p)
						.ok_or(PayloadError::MissingType { tlv_type: PATH_ID })?,
					payment_constraints: constraints,
					allowed_features: features,
				}
			},
		};
		Ok(Self { data, unknown_tlvs })
	}
}
