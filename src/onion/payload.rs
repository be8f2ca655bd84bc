//! The outer (payment onion) hop payload: typed encode and decode of types 2, 4,
//! 6, 8, 10, 12, 16, 18 and 20 (plus 66100, the legacy eclair trampoline onion,
//! and 5482373484, keysend).

use bitcoin::secp256k1::PublicKey;
use lightning::types::payment::PaymentPreimage;

use crate::onion::fields::PaymentData;
use crate::onion::packet::OnionPacket;
use crate::onion::tlv::{
	decode_msat, decode_point, decode_tu32, encode_tu64, read_exact, read_stream,
	strip_length_prefix, PayloadError, TlvRecord, TlvWriter, UnknownTlvs,
};

/// TLV type numbers of the payment onion payload.
pub mod types {
	/// `amt_to_forward` (tu64).
	pub const AMT_TO_FORWARD: u64 = 2;
	/// `outgoing_cltv_value` (tu32).
	pub const OUTGOING_CLTV_VALUE: u64 = 4;
	/// `short_channel_id` (u64).
	pub const SHORT_CHANNEL_ID: u64 = 6;
	/// `payment_data` (32 bytes + tu64).
	pub const PAYMENT_DATA: u64 = 8;
	/// `encrypted_recipient_data` (bytes).
	pub const ENCRYPTED_RECIPIENT_DATA: u64 = 10;
	/// `current_path_key` (point).
	pub const CURRENT_PATH_KEY: u64 = 12;
	/// `outgoing_node_id` (point), trampoline payloads only.
	pub const OUTGOING_NODE_ID: u64 = 14;
	/// `payment_metadata` (bytes).
	pub const PAYMENT_METADATA: u64 = 16;
	/// `total_amount_msat` (tu64).
	pub const TOTAL_AMOUNT_MSAT: u64 = 18;
	/// `trampoline_onion_packet` (onion packet), spec layout.
	pub const TRAMPOLINE_ONION_PACKET: u64 = 20;
	/// `recipient_features` (bytes), trampoline payloads only.
	pub const RECIPIENT_FEATURES: u64 = 21;
	/// `recipient_blinded_paths`, trampoline payloads only.
	pub const RECIPIENT_BLINDED_PATHS: u64 = 22;
	/// Legacy eclair `invoice_features`.
	pub const LEGACY_INVOICE_FEATURES: u64 = 66097;
	/// Legacy eclair `outgoing_node_id`.
	pub const LEGACY_OUTGOING_NODE_ID: u64 = 66098;
	/// Legacy eclair `invoice_routing_info`.
	pub const LEGACY_INVOICE_ROUTING_INFO: u64 = 66099;
	/// Legacy eclair `trampoline_onion` (outer payload).
	pub const LEGACY_TRAMPOLINE_ONION: u64 = 66100;
	/// Legacy eclair `outgoing_blinded_paths`.
	pub const LEGACY_OUTGOING_BLINDED_PATHS: u64 = 66102;
	/// Eclair `async_payment` flag (empty value).
	pub const ASYNC_PAYMENT: u64 = 181_324_718;
	/// bLIP 3 keysend preimage.
	pub const KEYSEND_PREIMAGE: u64 = 5_482_373_484;
}

/// Which TLV numbering a trampoline field uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TlvLayout {
	/// The trampoline proposal (bolts PR 836): 14, 20, 21, 22.
	#[default]
	Spec,
	/// The numbering of older eclair / Phoenix / Electrum: 66097..=66102.
	Legacy,
}

/// What an outer payload asks this node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OuterHop {
	/// Relay over a channel (non-blinded intermediate hop).
	Forward {
		/// Channel to relay over.
		short_channel_id: u64,
		/// Amount to forward, msat.
		amt_to_forward: u64,
		/// CLTV expiry of the outgoing HTLC.
		outgoing_cltv_value: u32,
	},
	/// This node is the recipient (non-blinded final hop).
	Receive {
		/// Amount of this HTLC the sender intends us to receive, msat.
		amt_to_forward: u64,
		/// Expected CLTV expiry.
		outgoing_cltv_value: u32,
		/// Payment secret and total amount.
		payment_data: Option<PaymentData>,
		/// Invoice payment metadata.
		payment_metadata: Option<Vec<u8>>,
		/// Keysend preimage (bLIP 3).
		keysend_preimage: Option<PaymentPreimage>,
	},
	/// This node is a trampoline node (or a trampoline recipient): the payload
	/// carries a trampoline onion.
	TrampolineEntry {
		/// Amount of this HTLC, msat.
		amt_to_forward: u64,
		/// CLTV expiry of this HTLC.
		outgoing_cltv_value: u32,
		/// Secret and total of the (multi-part) payment to this trampoline node.
		payment_data: Option<PaymentData>,
		/// Path key to decrypt the trampoline onion when this node is inside a
		/// blinded path.
		current_path_key: Option<PublicKey>,
		/// The trampoline onion.
		trampoline_onion: OnionPacket,
		/// Whether the onion is in type 20 (spec) or 66100 (legacy eclair).
		layout: TlvLayout,
	},
	/// Intermediate hop of a blinded path.
	BlindedForward {
		/// Data to decrypt with the path key.
		encrypted_recipient_data: Vec<u8>,
		/// Set for the introduction node of the path.
		current_path_key: Option<PublicKey>,
	},
	/// Final hop of a blinded path.
	BlindedReceive {
		/// Amount of this HTLC, msat.
		amt_to_forward: u64,
		/// Expected CLTV expiry.
		outgoing_cltv_value: u32,
		/// Total of all parts; `None` means `amt_to_forward` (BOLT 4 asks senders to set it).
		total_amount_msat: Option<u64>,
		/// Data to decrypt with the path key.
		encrypted_recipient_data: Vec<u8>,
		/// Set when this node is also the introduction node.
		current_path_key: Option<PublicKey>,
	},
}

/// A decoded outer hop payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OuterPayload {
	/// What this hop must do.
	pub hop: OuterHop,
	/// Unknown odd records, preserved.
	pub unknown_tlvs: UnknownTlvs,
}

impl OuterPayload {
	/// A payload without unknown records.
	pub fn new(hop: OuterHop) -> Self {
		Self { hop, unknown_tlvs: UnknownTlvs::new() }
	}

	/// Encodes the payload, BigSize length prefix included (ready for
	/// [`crate::onion::SphinxHop`]).
	pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
		use types::*;
		let mut w = TlvWriter::new();
		match &self.hop {
			OuterHop::Forward { short_channel_id, amt_to_forward, outgoing_cltv_value } => {
				w.put(AMT_TO_FORWARD, encode_tu64(*amt_to_forward));
				w.put(OUTGOING_CLTV_VALUE, encode_tu64(u64::from(*outgoing_cltv_value)));
				w.put(SHORT_CHANNEL_ID, short_channel_id.to_be_bytes().to_vec());
			},
			OuterHop::Receive {
				amt_to_forward,
				outgoing_cltv_value,
				payment_data,
				payment_metadata,
				keysend_preimage,
			} => {
				w.put(AMT_TO_FORWARD, encode_tu64(*amt_to_forward));
				w.put(OUTGOING_CLTV_VALUE, encode_tu64(u64::from(*outgoing_cltv_value)));
				w.put_opt(PAYMENT_DATA, payment_data.map(|d| d.encode()));
				w.put_opt(PAYMENT_METADATA, payment_metadata.clone());
				w.put_opt(KEYSEND_PREIMAGE, keysend_preimage.map(|p| p.0.to_vec()));
			},
			OuterHop::TrampolineEntry {
				amt_to_forward,
				outgoing_cltv_value,
				payment_data,
				current_path_key,
				trampoline_onion,
				layout,
			} => {
				w.put(AMT_TO_FORWARD, encode_tu64(*amt_to_forward));
				w.put(OUTGOING_CLTV_VALUE, encode_tu64(u64::from(*outgoing_cltv_value)));
				w.put_opt(PAYMENT_DATA, payment_data.map(|d| d.encode()));
				w.put_opt(CURRENT_PATH_KEY, current_path_key.map(|k| k.serialize().to_vec()));
				let onion_type = match layout {
					TlvLayout::Spec => TRAMPOLINE_ONION_PACKET,
					TlvLayout::Legacy => LEGACY_TRAMPOLINE_ONION,
				};
				w.put(onion_type, trampoline_onion.to_bytes());
			},
			OuterHop::BlindedForward { encrypted_recipient_data, current_path_key } => {
				w.put(ENCRYPTED_RECIPIENT_DATA, encrypted_recipient_data.clone());
				w.put_opt(CURRENT_PATH_KEY, current_path_key.map(|k| k.serialize().to_vec()));
			},
			OuterHop::BlindedReceive {
				amt_to_forward,
				outgoing_cltv_value,
				total_amount_msat,
				encrypted_recipient_data,
				current_path_key,
			} => {
				w.put(AMT_TO_FORWARD, encode_tu64(*amt_to_forward));
				w.put(OUTGOING_CLTV_VALUE, encode_tu64(u64::from(*outgoing_cltv_value)));
				w.put(ENCRYPTED_RECIPIENT_DATA, encrypted_recipient_data.clone());
				w.put_opt(CURRENT_PATH_KEY, current_path_key.map(|k| k.serialize().to_vec()));
				w.put_opt(TOTAL_AMOUNT_MSAT, total_amount_msat.map(encode_tu64));
			},
		}
		w.finish_payload(&self.unknown_tlvs)
	}

	/// Decodes a hop payload (BigSize length prefix included, as returned by
	/// [`crate::onion::peel`]).
	pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
		let (stream, base) = strip_length_prefix(payload)?;
		let records = read_stream(stream, base)?;
		let mut f = OuterFields::default();
		for record in &records {
			f.absorb(record)?;
		}
		f.into_payload()
	}
}

/// Raw fields of an outer payload, before deciding which kind it is.
#[derive(Default)]
struct OuterFields<'a> {
	amt: Option<u64>,
	cltv: Option<u32>,
	scid: Option<(u64, TlvRecord<'a>)>,
	payment_data: Option<(PaymentData, TlvRecord<'a>)>,
	encrypted_data: Option<(Vec<u8>, TlvRecord<'a>)>,
	path_key: Option<(PublicKey, TlvRecord<'a>)>,
	metadata: Option<(Vec<u8>, TlvRecord<'a>)>,
	total: Option<(u64, TlvRecord<'a>)>,
	onion: Option<(OnionPacket, TlvLayout, TlvRecord<'a>)>,
	keysend: Option<(PaymentPreimage, TlvRecord<'a>)>,
	unknown: UnknownTlvs,
	/// Every record, to reject extras in blinded payloads.
	all: Vec<TlvRecord<'a>>,
}

impl<'a> OuterFields<'a> {
	fn absorb(&mut self, r: &TlvRecord<'a>) -> Result<(), PayloadError> {
		use types::*;
		self.all.push(*r);
		match r.tlv_type {
			AMT_TO_FORWARD => self.amt = Some(decode_msat(r.value).map_err(|e| r.invalid(e))?),
			OUTGOING_CLTV_VALUE => {
				self.cltv = Some(decode_tu32(r.value).map_err(|e| r.invalid(e))?)
			},
			SHORT_CHANNEL_ID => {
				if r.value.len() != 8 {
					return Err(r.invalid("short_channel_id must be 8 bytes"));
				}
				self.scid = Some((read_exact::<u64>(r.value).map_err(|e| r.invalid(e))?, *r));
			},
			PAYMENT_DATA => {
				self.payment_data =
					Some((PaymentData::decode(r.value).map_err(|e| r.invalid(e))?, *r))
			},
			ENCRYPTED_RECIPIENT_DATA => self.encrypted_data = Some((r.value.to_vec(), *r)),
			CURRENT_PATH_KEY => {
				self.path_key = Some((decode_point(r.value).map_err(|e| r.invalid(e))?, *r))
			},
			PAYMENT_METADATA => self.metadata = Some((r.value.to_vec(), *r)),
			TOTAL_AMOUNT_MSAT => {
				self.total = Some((decode_msat(r.value).map_err(|e| r.invalid(e))?, *r))
			},
			TRAMPOLINE_ONION_PACKET | LEGACY_TRAMPOLINE_ONION => {
				if let Some((_, _, first)) = &self.onion {
					return Err(r.forbidden(if first.tlv_type == TRAMPOLINE_ONION_PACKET {
						"a trampoline onion is already present in type 20"
					} else {
						"a trampoline onion is already present in type 66100"
					}));
				}
				let packet = OnionPacket::from_bytes(r.value)
					.map_err(|_| r.invalid("not a valid version-0 onion packet"))?;
				let layout = if r.tlv_type == TRAMPOLINE_ONION_PACKET {
					TlvLayout::Spec
				} else {
					TlvLayout::Legacy
				};
				self.onion = Some((packet, layout, *r));
			},
			KEYSEND_PREIMAGE => {
				let bytes: [u8; 32] = read_exact(r.value).map_err(|e| r.invalid(e))?;
				self.keysend = Some((PaymentPreimage(bytes), *r));
			},
			_ => self.unknown.push_unknown(r)?,
		}
		Ok(())
	}

	fn require_amt_cltv(&self) -> Result<(u64, u32), PayloadError> {
		let amt = self.amt.ok_or(PayloadError::MissingType { tlv_type: types::AMT_TO_FORWARD })?;
		let cltv =
			self.cltv.ok_or(PayloadError::MissingType { tlv_type: types::OUTGOING_CLTV_VALUE })?;
		Ok((amt, cltv))
	}

	fn forbid<T>(
		field: &Option<(T, TlvRecord<'a>)>, reason: &'static str,
	) -> Result<(), PayloadError> {
		match field {
			Some((_, record)) => Err(record.forbidden(reason)),
			None => Ok(()),
		}
	}

	fn only_allow(&self, allowed: &[u64], reason: &'static str) -> Result<(), PayloadError> {
		match self.all.iter().find(|r| !allowed.contains(&r.tlv_type)) {
			Some(record) => Err(record.forbidden(reason)),
			None => Ok(()),
		}
	}

	fn into_payload(self) -> Result<OuterPayload, PayloadError> {
		use types::*;
		let hop = if let Some((trampoline_onion, layout, _)) = self.onion.clone() {
			let (amt_to_forward, outgoing_cltv_value) = self.require_amt_cltv()?;
			let reason = "not allowed next to a trampoline onion";
			Self::forbid(&self.scid, reason)?;
			Self::forbid(&self.encrypted_data, reason)?;
			Self::forbid(&self.metadata, reason)?;
			Self::forbid(&self.total, reason)?;
			Self::forbid(&self.keysend, reason)?;
			OuterHop::TrampolineEntry {
				amt_to_forward,
				outgoing_cltv_value,
				payment_data: self.payment_data.map(|(d, _)| d),
				current_path_key: self.path_key.map(|(k, _)| k),
				trampoline_onion,
				layout,
			}
		} else if let Some((encrypted_recipient_data, _)) = self.encrypted_data.clone() {
			let current_path_key = self.path_key.map(|(k, _)| k);
			if self.amt.is_some() || self.cltv.is_some() || self.total.is_some() {
				self.only_allow(
					&[
						AMT_TO_FORWARD,
						OUTGOING_CLTV_VALUE,
						ENCRYPTED_RECIPIENT_DATA,
						CURRENT_PATH_KEY,
						TOTAL_AMOUNT_MSAT,
					],
					"a blinded final payload only carries types 2, 4, 10, 12 and 18",
				)?;
				let (amt_to_forward, outgoing_cltv_value) = self.require_amt_cltv()?;
				OuterHop::BlindedReceive {
					amt_to_forward,
					outgoing_cltv_value,
					total_amount_msat: self.total.map(|(t, _)| t),
					encrypted_recipient_data,
					current_path_key,
				}
			} else {
				self.only_allow(
					&[ENCRYPTED_RECIPIENT_DATA, CURRENT_PATH_KEY],
					"a blinded intermediate payload only carries types 10 and 12",
				)?;
				OuterHop::BlindedForward { encrypted_recipient_data, current_path_key }
			}
		} else if self.path_key.is_some() {
			return Err(PayloadError::MissingType { tlv_type: ENCRYPTED_RECIPIENT_DATA });
		} else if let Some((short_channel_id, _)) = self.scid {
			let (amt_to_forward, outgoing_cltv_value) = self.require_amt_cltv()?;
			let reason = "not allowed in a payload that relays over a channel";
			Self::forbid(&self.payment_data, reason)?;
			Self::forbid(&self.metadata, reason)?;
			Self::forbid(&self.total, reason)?;
			Self::forbid(&self.keysend, reason)?;
			OuterHop::Forward { short_channel_id, amt_to_forward, outgoing_cltv_value }
		} else {
			let (amt_to_forward, outgoing_cltv_value) = self.require_amt_cltv()?;
			Self::forbid(&self.total, "total_amount_msat is only for blinded payments")?;
			OuterHop::Receive {
				amt_to_forward,
				outgoing_cltv_value,
				payment_data: self.payment_data.map(|(d, _)| d),
				payment_metadata: self.metadata.map(|(m, _)| m),
				keysend_preimage: self.keysend.map(|(p, _)| p),
			}
		};
		Ok(OuterPayload { hop, unknown_tlvs: self.unknown })
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use hex::FromHex;

	fn bytes(s: &str) -> Vec<u8> {
		Vec::<u8>::from_hex(&s.replace(' ', "")).unwrap()
	}

	#[test]
	fn forward_roundtrip() {
		let payload = bytes("15 020405f5f488 04030c35fa 060808bbaa0000070451");
		let decoded = OuterPayload::decode(&payload).unwrap();
		assert_eq!(
			decoded.hop,
			OuterHop::Forward {
				short_channel_id: 0x08bbaa0000070451,
				amt_to_forward: 100_005_000,
				outgoing_cltv_value: 800_250
			}
		);
		assert_eq!(decoded.encode().unwrap(), payload);
	}

	#[test]
	fn unknown_odd_is_kept_and_unknown_even_rejected() {
		let with_odd = bytes("0b 020102 040103 0503aabbcc");
		let decoded = OuterPayload::decode(&with_odd).unwrap();
		assert_eq!(decoded.unknown_tlvs.records(), &[(5, vec![0xaa, 0xbb, 0xcc])]);
		assert_eq!(decoded.encode().unwrap(), with_odd);

		let with_even = bytes("0b 020102 040103 1a03aabbcc");
		let err = OuterPayload::decode(&with_even).unwrap_err();
		assert_eq!(err, PayloadError::UnknownEvenType { tlv_type: 0x1a, offset: 7 });
		assert_eq!(
			err.to_failure(),
			crate::onion::FailureMessage::InvalidOnionPayload { tlv_type: 0x1a, offset: 7 }
		);
	}

	#[test]
	fn non_ascending_and_duplicate_types_are_rejected() {
		let swapped = bytes("06 040103 020102");
		assert_eq!(
			OuterPayload::decode(&swapped).unwrap_err(),
			PayloadError::NotAscending { tlv_type: 2, previous: 4, offset: 4 }
		);
		let duplicate = bytes("09 020102 020103 040101");
		assert!(matches!(
			OuterPayload::decode(&duplicate).unwrap_err(),
			PayloadError::NotAscending { tlv_type: 2, previous: 2, .. }
		));
	}

	#[test]
	fn amounts_must_be_minimal() {
		// amt_to_forward with a leading zero byte.
		let payload = bytes("07 02020001 040103");
		assert!(matches!(
			OuterPayload::decode(&payload).unwrap_err(),
			PayloadError::InvalidValue { tlv_type: 2, offset: 1, .. }
		));
		// outgoing_cltv_value of 5 bytes.
		let payload = bytes("0a 020101 04050102030405");
		assert!(matches!(
			OuterPayload::decode(&payload).unwrap_err(),
			PayloadError::InvalidValue { tlv_type: 4, .. }
		));
	}

	#[test]
	fn length_prefix_must_match() {
		assert!(matches!(
			OuterPayload::decode(&bytes("07 020102 040103")).unwrap_err(),
			PayloadError::BadLengthPrefix { .. }
		));
	}

	#[test]
	fn blinded_intermediate_rejects_extra_fields() {
		let payload = bytes("07 0a01ff 0d02abcd");
		assert!(matches!(
			OuterPayload::decode(&payload).unwrap_err(),
			PayloadError::ForbiddenType { tlv_type: 13, .. }
		));
	}
}
