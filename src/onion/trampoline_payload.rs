//! The trampoline onion hop payload, in the spec layout (bolts PR 836: 2, 4, 8,
//! 10, 12, 14, 16, 18, 21, 22) and in the legacy eclair / Phoenix / Electrum
//! layout (66097 `invoice_features`, 66098 `outgoing_node_id`, 66099
//! `invoice_routing_info`, 66102 `outgoing_blinded_paths`, 181324718
//! `async_payment`).

use bitcoin::secp256k1::PublicKey;

use crate::onion::fields::{LegacyRouteHintHop, PaymentBlindedPath, PaymentData};
use crate::onion::payload::{types, TlvLayout};
use crate::onion::tlv::{
	decode_msat, decode_point, decode_tu32, encode_tu64, read_stream, strip_length_prefix,
	PayloadError, TlvRecord, TlvWriter, UnknownTlvs,
};

/// What a trampoline payload asks this node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrampolineHop {
	/// Find a route to the next trampoline node and relay.
	ToTrampoline {
		/// Amount the next trampoline node must receive, msat.
		amt_to_forward: u64,
		/// CLTV expiry the next trampoline node must receive.
		outgoing_cltv_value: u32,
		/// The next trampoline node (type 14, or 66098 in the legacy layout).
		outgoing_node_id: PublicKey,
		/// Eclair's `async_payment` flag: hold the payment until the recipient is
		/// online.
		async_payment: bool,
		/// Which numbering the payload uses (kept to answer in kind).
		layout: TlvLayout,
	},
	/// Legacy only: pay a recipient that does not support trampoline, with the
	/// data of its BOLT 11 invoice.
	ToLegacyRecipient {
		/// Amount the recipient must receive, msat.
		amt_to_forward: u64,
		/// CLTV expiry the recipient must receive.
		outgoing_cltv_value: u32,
		/// The recipient (66098).
		outgoing_node_id: PublicKey,
		/// The invoice's payment secret and the total amount (8).
		payment_data: PaymentData,
		/// The invoice's payment metadata (16).
		payment_metadata: Option<Vec<u8>>,
		/// The invoice's feature bits, big-endian (66097).
		invoice_features: Option<Vec<u8>>,
		/// The invoice's route hints (66099).
		invoice_routing_info: Vec<Vec<LegacyRouteHintHop>>,
	},
	/// Pay a recipient that does not support trampoline through its blinded paths.
	ToBlindedPaths {
		/// Amount the recipient must receive, msat.
		amt_to_forward: u64,
		/// CLTV expiry the recipient must receive.
		outgoing_cltv_value: u32,
		/// The recipient's blinded paths (22, or 66102), at least one.
		paths: Vec<PaymentBlindedPath>,
		/// The recipient's (BOLT 12 invoice) features, big-endian (21, or 66097).
		recipient_features: Option<Vec<u8>>,
		/// Which numbering the payload uses.
		layout: TlvLayout,
	},
	/// This trampoline node is inside a blinded path: the next trampoline node is
	/// in the encrypted data.
	BlindedForward {
		/// Data to decrypt with the path key (10).
		encrypted_recipient_data: Vec<u8>,
		/// Path key, when this node is the introduction node (12).
		current_path_key: Option<PublicKey>,
	},
	/// This node is the recipient, at the end of a blinded path.
	BlindedReceive {
		/// Amount to receive, msat.
		amt_to_forward: u64,
		/// Expected CLTV expiry.
		outgoing_cltv_value: u32,
		/// Total of all parts (18); `None` means `amt_to_forward`.
		total_amount_msat: Option<u64>,
		/// Data to decrypt with the path key (10).
		encrypted_recipient_data: Vec<u8>,
		/// Path key, when this node is also the introduction node (12).
		current_path_key: Option<PublicKey>,
	},
	/// This node is the recipient of a trampoline payment.
	Receive {
		/// Amount to receive, msat.
		amt_to_forward: u64,
		/// Expected CLTV expiry.
		outgoing_cltv_value: u32,
		/// The invoice's payment secret and the total amount.
		payment_data: Option<PaymentData>,
		/// The invoice's payment metadata.
		payment_metadata: Option<Vec<u8>>,
	},
}

/// A decoded trampoline hop payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrampolinePayload {
	/// What this hop must do.
	pub hop: TrampolineHop,
	/// Unknown odd records, preserved.
	pub unknown_tlvs: UnknownTlvs,
}

impl TrampolineHop {
	/// The node this hop names as next: the legacy recipient or the next
	/// trampoline (`None` for blinded paths, blinded hops and receives).
	pub fn next_node_id(&self) -> Option<PublicKey> {
		match self {
			Self::ToLegacyRecipient { outgoing_node_id, .. }
			| Self::ToTrampoline { outgoing_node_id, .. } => Some(*outgoing_node_id),
			_ => None,
		}
	}
}

impl TrampolinePayload {
	/// A payload without unknown records.
	pub fn new(hop: TrampolineHop) -> Self {
		Self { hop, unknown_tlvs: UnknownTlvs::new() }
	}

	/// Encodes the payload, BigSize length prefix included.
	pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
		use types::*;
		let mut w = TlvWriter::new();
		let put_amt_cltv = |w: &mut TlvWriter, amt: u64, cltv: u32| {
			w.put(AMT_TO_FORWARD, encode_tu64(amt));
			w.put(OUTGOING_CLTV_VALUE, encode_tu64(u64::from(cltv)));
		};
		match &self.hop {
			TrampolineHop::ToTrampoline {
				amt_to_forward,
				outgoing_cltv_value,
				outgoing_node_id,
				async_payment,
				layout,
			} => {
				put_amt_cltv(&mut w, *amt_to_forward, *outgoing_cltv_value);
				let node_type = match layout {
					TlvLayout::Spec => OUTGOING_NODE_ID,
					TlvLayout::Legacy => LEGACY_OUTGOING_NODE_ID,
				};
				w.put(node_type, outgoing_node_id.serialize().to_vec());
				if *async_payment {
					w.put(ASYNC_PAYMENT, Vec::new());
				}
			},
			TrampolineHop::ToLegacyRecipient {
				amt_to_forward,
				outgoing_cltv_value,
				outgoing_node_id,
				payment_data,
				payment_metadata,
				invoice_features,
				invoice_routing_info,
			} => {
				put_amt_cltv(&mut w, *amt_to_forward, *outgoing_cltv_value);
				w.put(PAYMENT_DATA, payment_data.encode());
				w.put_opt(PAYMENT_METADATA, payment_metadata.clone());
				w.put_opt(
					LEGACY_INVOICE_FEATURES,
					invoice_features.as_deref().map(legacy_features),
				);
				w.put(LEGACY_OUTGOING_NODE_ID, outgoing_node_id.serialize().to_vec());
				let hints = LegacyRouteHintHop::encode_hints(invoice_routing_info).ok_or(
					PayloadError::InvalidValue {
						tlv_type: LEGACY_INVOICE_ROUTING_INFO,
						offset: 0,
						reason: "a route hint has more than 255 hops",
					},
				)?;
				w.put(LEGACY_INVOICE_ROUTING_INFO, hints);
			},
			TrampolineHop::ToBlindedPaths {
				amt_to_forward,
				outgoing_cltv_value,
				paths,
				recipient_features,
				layout,
			} => {
				let (features_type, paths_type) = match layout {
					TlvLayout::Spec => (RECIPIENT_FEATURES, RECIPIENT_BLINDED_PATHS),
					TlvLayout::Legacy => (LEGACY_INVOICE_FEATURES, LEGACY_OUTGOING_BLINDED_PATHS),
				};
				if paths.is_empty() {
					return Err(PayloadError::InvalidValue {
						tlv_type: paths_type,
						offset: 0,
						reason: "at least one blinded path is required",
					});
				}
				put_amt_cltv(&mut w, *amt_to_forward, *outgoing_cltv_value);
				let features = match layout {
					TlvLayout::Spec => recipient_features.clone(),
					TlvLayout::Legacy => recipient_features.as_deref().map(legacy_features),
				};
				w.put_opt(features_type, features);
				w.put(paths_type, PaymentBlindedPath::encode_list(paths));
			},
			TrampolineHop::BlindedForward { encrypted_recipient_data, current_path_key } => {
				w.put(ENCRYPTED_RECIPIENT_DATA, encrypted_recipient_data.clone());
				w.put_opt(CURRENT_PATH_KEY, current_path_key.map(|k| k.serialize().to_vec()));
			},
			TrampolineHop::BlindedReceive {
				amt_to_forward,
				outgoing_cltv_value,
				total_amount_msat,
				encrypted_recipient_data,
				current_path_key,
			} => {
				put_amt_cltv(&mut w, *amt_to_forward, *outgoing_cltv_value);
				w.put(ENCRYPTED_RECIPIENT_DATA, encrypted_recipient_data.clone());
				w.put_opt(CURRENT_PATH_KEY, current_path_key.map(|k| k.serialize().to_vec()));
				w.put_opt(TOTAL_AMOUNT_MSAT, total_amount_msat.map(encode_tu64));
			},
			TrampolineHop::Receive {
				amt_to_forward,
				outgoing_cltv_value,
				payment_data,
				payment_metadata,
			} => {
				put_amt_cltv(&mut w, *amt_to_forward, *outgoing_cltv_value);
				w.put_opt(PAYMENT_DATA, payment_data.map(|d| d.encode()));
				w.put_opt(PAYMENT_METADATA, payment_metadata.clone());
			},
		}
		w.finish_payload(&self.unknown_tlvs)
	}

	/// Decodes a trampoline hop payload (BigSize length prefix included).
	pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
		let (stream, base) = strip_length_prefix(payload)?;
		let records = read_stream(stream, base)?;
		let mut f = TrampolineFields::default();
		for record in &records {
			f.absorb(record)?;
		}
		f.into_payload()
	}
}

/// Width of Electrum's `invoice_features` (a `u64`, `lnwire/onion_wire.csv`).
pub const LEGACY_FEATURES_LEN: usize = 8;

/// Legacy `invoice_features` (66097) as written: big-endian, left-padded with
/// zeros to [`LEGACY_FEATURES_LEN`] bytes. Electrum 4.3.4 reads the field as
/// a `u64` and fails the HTLC on fewer bytes ("UnexpectedEndOfStream");
/// eclair reads any length (`tlvField(bytes)`), leading zeros included.
/// Longer features (a bit above 63) are written as they are: eclair reads
/// them, Electrum could not hold them in any encoding.
pub fn legacy_features(features: &[u8]) -> Vec<u8> {
	let pad = LEGACY_FEATURES_LEN.saturating_sub(features.len());
	let mut padded = vec![0; pad];
	padded.extend_from_slice(features);
	padded
}

/// A decoded field and the record it came from (for error offsets).
type Field<'a, T> = Option<(T, TlvRecord<'a>)>;

#[derive(Default)]
struct TrampolineFields<'a> {
	amt: Option<u64>,
	cltv: Option<u32>,
	payment_data: Field<'a, PaymentData>,
	encrypted_data: Field<'a, Vec<u8>>,
	path_key: Field<'a, PublicKey>,
	node_id: Field<'a, PublicKey>,
	metadata: Field<'a, Vec<u8>>,
	total: Field<'a, u64>,
	features: Field<'a, Vec<u8>>,
	paths: Field<'a, Vec<PaymentBlindedPath>>,
	routing_info: Field<'a, Vec<Vec<LegacyRouteHintHop>>>,
	async_payment: Field<'a, ()>,
	spec_marker: Option<TlvRecord<'a>>,
	legacy_marker: Option<TlvRecord<'a>>,
	unknown: UnknownTlvs,
	all: Vec<TlvRecord<'a>>,
}

impl<'a> TrampolineFields<'a> {
	fn absorb(&mut self, r: &TlvRecord<'a>) -> Result<(), PayloadError> {
		use types::*;
		self.all.push(*r);
		match r.tlv_type {
			OUTGOING_NODE_ID | RECIPIENT_FEATURES | RECIPIENT_BLINDED_PATHS => {
				self.spec_marker.get_or_insert(*r);
			},
			LEGACY_INVOICE_FEATURES
			| LEGACY_OUTGOING_NODE_ID
			| LEGACY_INVOICE_ROUTING_INFO
			| LEGACY_OUTGOING_BLINDED_PATHS => {
				self.legacy_marker.get_or_insert(*r);
			},
			_ => {},
		}
		if let (Some(spec), Some(legacy)) = (&self.spec_marker, &self.legacy_marker) {
			return Err(PayloadError::MixedLayouts {
				spec_type: spec.tlv_type,
				legacy_type: legacy.tlv_type,
				offset: r.offset,
			});
		}
		match r.tlv_type {
			AMT_TO_FORWARD => self.amt = Some(decode_msat(r.value).map_err(|e| r.invalid(e))?),
			OUTGOING_CLTV_VALUE => {
				self.cltv = Some(decode_tu32(r.value).map_err(|e| r.invalid(e))?)
			},
			PAYMENT_DATA => {
				self.payment_data =
					Some((PaymentData::decode(r.value).map_err(|e| r.invalid(e))?, *r))
			},
			ENCRYPTED_RECIPIENT_DATA => self.encrypted_data = Some((r.value.to_vec(), *r)),
			CURRENT_PATH_KEY => {
				self.path_key = Some((decode_point(r.value).map_err(|e| r.invalid(e))?, *r))
			},
			OUTGOING_NODE_ID | LEGACY_OUTGOING_NODE_ID => {
				self.node_id = Some((decode_point(r.value).map_err(|e| r.invalid(e))?, *r))
			},
			PAYMENT_METADATA => self.metadata = Some((r.value.to_vec(), *r)),
			TOTAL_AMOUNT_MSAT => {
				self.total = Some((decode_msat(r.value).map_err(|e| r.invalid(e))?, *r))
			},
			RECIPIENT_FEATURES => self.features = Some((r.value.to_vec(), *r)),
			// Any length (eclair writes them minimal, Electrum as a u64),
			// kept minimal.
			LEGACY_INVOICE_FEATURES => {
				let first = r.value.iter().position(|b| *b != 0).unwrap_or(r.value.len());
				self.features = Some((r.value[first..].to_vec(), *r))
			},
			RECIPIENT_BLINDED_PATHS | LEGACY_OUTGOING_BLINDED_PATHS => {
				let paths = PaymentBlindedPath::decode_list(r.value).map_err(|e| r.invalid(e))?;
				self.paths = Some((paths, *r));
			},
			LEGACY_INVOICE_ROUTING_INFO => {
				let hints = LegacyRouteHintHop::decode_hints(r.value).map_err(|e| r.invalid(e))?;
				self.routing_info = Some((hints, *r));
			},
			ASYNC_PAYMENT => {
				if !r.value.is_empty() {
					return Err(r.invalid("async_payment carries no value"));
				}
				self.async_payment = Some(((), *r));
			},
			TRAMPOLINE_ONION_PACKET | LEGACY_TRAMPOLINE_ONION => {
				return Err(r.forbidden("a trampoline payload cannot nest another trampoline onion"))
			},
			_ => self.unknown.push_unknown(r)?,
		}
		Ok(())
	}

	fn layout(&self) -> TlvLayout {
		if self.legacy_marker.is_some() {
			TlvLayout::Legacy
		} else {
			TlvLayout::Spec
		}
	}

	fn require_amt_cltv(&self) -> Result<(u64, u32), PayloadError> {
		let amt = self.amt.ok_or(PayloadError::MissingType { tlv_type: types::AMT_TO_FORWARD })?;
		let cltv =
			self.cltv.ok_or(PayloadError::MissingType { tlv_type: types::OUTGOING_CLTV_VALUE })?;
		Ok((amt, cltv))
	}

	fn forbid<T>(field: &Field<'a, T>, reason: &'static str) -> Result<(), PayloadError> {
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

	fn into_payload(self) -> Result<TrampolinePayload, PayloadError> {
		use types::*;
		let layout = self.layout();
		let hop = if let Some((encrypted_recipient_data, _)) = self.encrypted_data.clone() {
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
				TrampolineHop::BlindedReceive {
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
				TrampolineHop::BlindedForward { encrypted_recipient_data, current_path_key }
			}
		} else if self.path_key.is_some() {
			return Err(PayloadError::MissingType { tlv_type: ENCRYPTED_RECIPIENT_DATA });
		} else if let Some((outgoing_node_id, _)) = self.node_id {
			let (amt_to_forward, outgoing_cltv_value) = self.require_amt_cltv()?;
			Self::forbid(&self.paths, "a payload names either a next node or blinded paths")?;
			Self::forbid(&self.total, "total_amount_msat is only for blinded payments")?;
			if let Some((invoice_routing_info, _)) = self.routing_info {
				let payment_data = self
					.payment_data
					.map(|(d, _)| d)
					.ok_or(PayloadError::MissingType { tlv_type: PAYMENT_DATA })?;
				Self::forbid(&self.async_payment, "async_payment needs a trampoline next node")?;
				TrampolineHop::ToLegacyRecipient {
					amt_to_forward,
					outgoing_cltv_value,
					outgoing_node_id,
					payment_data,
					payment_metadata: self.metadata.map(|(m, _)| m),
					invoice_features: self.features.map(|(f, _)| f),
					invoice_routing_info,
				}
			} else {
				let reason = "invoice fields need invoice_routing_info (66099)";
				Self::forbid(&self.payment_data, reason)?;
				Self::forbid(&self.metadata, reason)?;
				Self::forbid(&self.features, reason)?;
				TrampolineHop::ToTrampoline {
					amt_to_forward,
					outgoing_cltv_value,
					outgoing_node_id,
					async_payment: self.async_payment.is_some(),
					layout,
				}
			}
		} else if let Some((paths, _)) = self.paths.clone() {
			let (amt_to_forward, outgoing_cltv_value) = self.require_amt_cltv()?;
			let reason = "not allowed next to recipient_blinded_paths";
			Self::forbid(&self.payment_data, reason)?;
			Self::forbid(&self.metadata, reason)?;
			Self::forbid(&self.total, reason)?;
			Self::forbid(&self.routing_info, reason)?;
			Self::forbid(&self.async_payment, reason)?;
			TrampolineHop::ToBlindedPaths {
				amt_to_forward,
				outgoing_cltv_value,
				paths,
				recipient_features: self.features.map(|(f, _)| f),
				layout,
			}
		} else {
			let (amt_to_forward, outgoing_cltv_value) = self.require_amt_cltv()?;
			Self::forbid(&self.total, "total_amount_msat is only for blinded payments")?;
			Self::forbid(&self.features, "recipient features need a next node or blinded paths")?;
			Self::forbid(&self.routing_info, "invoice_routing_info needs outgoing_node_id")?;
			Self::forbid(&self.async_payment, "async_payment needs outgoing_node_id")?;
			TrampolineHop::Receive {
				amt_to_forward,
				outgoing_cltv_value,
				payment_data: self.payment_data.map(|(d, _)| d),
				payment_metadata: self.metadata.map(|(m, _)| m),
			}
		};
		Ok(TrampolinePayload { hop, unknown_tlvs: self.unknown })
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use hex::FromHex;
	use lightning::types::payment::PaymentSecret;

	fn bytes(s: &str) -> Vec<u8> {
		Vec::<u8>::from_hex(&s.replace(' ', "")).unwrap()
	}

	fn node() -> PublicKey {
		PublicKey::from_slice(&bytes(
			"02edabbd16b41c8371b92ef2f04c1185b4f03b6dcd52ba9b78d9d7c89c8f221145",
		))
		.unwrap()
	}

	#[test]
	fn legacy_to_trampoline_roundtrip() {
		let payload = TrampolinePayload::new(TrampolineHop::ToTrampoline {
			amt_to_forward: 100_000_000,
			outgoing_cltv_value: 800_000,
			outgoing_node_id: node(),
			async_payment: true,
			layout: TlvLayout::Legacy,
		});
		let encoded = payload.encode().unwrap();
		// 66098 is encoded as fe 00 01 02 32, async_payment as fe 0a ce cb ae 00.
		assert!(encoded.windows(5).any(|w| w == [0xfe, 0x00, 0x01, 0x02, 0x32]));
		assert!(encoded.windows(6).any(|w| w == [0xfe, 0x0a, 0xce, 0xcb, 0xae, 0x00]));
		assert_eq!(TrampolinePayload::decode(&encoded).unwrap(), payload);
	}

	#[test]
	fn legacy_to_non_trampoline_roundtrip() {
		let payload = TrampolinePayload::new(TrampolineHop::ToLegacyRecipient {
			amt_to_forward: 1_000,
			outgoing_cltv_value: 600_000,
			outgoing_node_id: node(),
			payment_data: PaymentData { payment_secret: PaymentSecret([7; 32]), total_msat: 2_500 },
			payment_metadata: Some(vec![1, 2, 3]),
			invoice_features: Some(vec![0x02, 0x00, 0x00]),
			invoice_routing_info: vec![
				vec![LegacyRouteHintHop {
					node_id: node(),
					short_channel_id: 42,
					fee_base_msat: 1,
					fee_proportional_millionths: 100,
					cltv_expiry_delta: 144,
				}],
				vec![],
			],
		});
		let encoded = payload.encode().unwrap();
		assert_eq!(TrampolinePayload::decode(&encoded).unwrap(), payload);
	}

	#[test]
	fn legacy_invoice_features_are_eight_bytes_and_read_at_any_length() {
		let hop = |features: Vec<u8>| {
			TrampolinePayload::new(TrampolineHop::ToLegacyRecipient {
				amt_to_forward: 1_000,
				outgoing_cltv_value: 150,
				outgoing_node_id: node(),
				payment_data: PaymentData {
					payment_secret: PaymentSecret([7; 32]),
					total_msat: 1_000,
				},
				payment_metadata: None,
				invoice_features: Some(features),
				invoice_routing_info: vec![],
			})
		};
		// An ldk-node invoice's three bytes (bits 8, 14, 17): 66097 (fe 00 01
		// 02 31), length 8, a u64 as Electrum reads it.
		let payload = hop(vec![0x02, 0x41, 0x00]);
		let encoded = payload.encode().unwrap();
		let record = bytes("fe00010231 08 0000000000024100");
		assert!(encoded.windows(record.len()).any(|w| w == record), "{encoded:02x?}");
		// Read back minimal, as eclair writes them.
		assert_eq!(TrampolinePayload::decode(&encoded).unwrap(), payload);
		// Nine bytes (a bit above 63) are written and read as they are.
		let wide = hop(vec![0x80, 0, 0, 0, 0, 0, 0x02, 0x41, 0x00]);
		let encoded = wide.encode().unwrap();
		assert!(encoded.windows(6).any(|w| w == bytes("fe00010231 09")));
		assert_eq!(TrampolinePayload::decode(&encoded).unwrap(), wide);
		// Leading zeros of any length, and none at all, read the same.
		for value in ["024100", "0000024100", "000000000000000000024100"] {
			let mut stream = bytes("020203e8 040196 0822");
			stream.extend_from_slice(&[7; 32]);
			stream.extend_from_slice(&bytes("03e8 fe00010231"));
			stream.push((value.len() / 2) as u8);
			stream.extend_from_slice(&bytes(value));
			stream.extend_from_slice(&bytes("fe00010232 21"));
			stream.extend_from_slice(&node().serialize());
			stream.extend_from_slice(&bytes("fe00010233 00"));
			let mut framed = vec![stream.len() as u8];
			framed.extend_from_slice(&stream);
			assert_eq!(TrampolinePayload::decode(&framed).unwrap(), payload, "{value}");
		}
	}

	#[test]
	fn mixed_layouts_are_rejected() {
		// 2, 4, 14 (spec node id) and 66097 (legacy features).
		let mut stream = bytes("020101 040101 0e21");
		stream.extend_from_slice(&node().serialize());
		stream.extend_from_slice(&bytes("fe00010231 00"));
		let mut payload = vec![stream.len() as u8];
		payload.extend_from_slice(&stream);
		assert!(matches!(
			TrampolinePayload::decode(&payload).unwrap_err(),
			PayloadError::MixedLayouts { spec_type: 14, legacy_type: 66097, .. }
		));
	}

	#[test]
	fn nested_trampoline_onion_is_forbidden() {
		let payload = bytes("08 020101 040101 1400");
		assert!(matches!(
			TrampolinePayload::decode(&payload).unwrap_err(),
			PayloadError::ForbiddenType { tlv_type: 20, .. }
		));
	}

	#[test]
	fn inner_amount_parsing() {
		let ok = bytes("0b 020405f5e100 04030c3500");
		match TrampolinePayload::decode(&ok).unwrap().hop {
			TrampolineHop::Receive { amt_to_forward, outgoing_cltv_value, .. } => {
				assert_eq!(amt_to_forward, 100_000_000);
				assert_eq!(outgoing_cltv_value, 800_000);
			},
			other => panic!("unexpected {other:?}"),
		}
		// Nine-byte amount.
		let too_long = bytes("10 0209010203040506070809 04030c3500");
		assert!(matches!(
			TrampolinePayload::decode(&too_long).unwrap_err(),
			PayloadError::InvalidValue { tlv_type: 2, offset: 1, .. }
		));
		// Non-minimal amount.
		let padded = bytes("0c 02050005f5e100 04030c3500");
		assert!(matches!(
			TrampolinePayload::decode(&padded).unwrap_err(),
			PayloadError::InvalidValue { tlv_type: 2, .. }
		));
		// Missing amount.
		let missing = bytes("05 04030c3500");
		assert_eq!(
			TrampolinePayload::decode(&missing).unwrap_err(),
			PayloadError::MissingType { tlv_type: 2 }
		);
	}
}
