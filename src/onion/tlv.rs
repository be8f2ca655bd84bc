//! BOLT 1 TLV streams: reading records with the ordering rules (strictly
//! ascending types, hence no duplicates; minimal BigSize; lengths within bounds),
//! writing them back, and the value encodings the payloads use (`tu64`, points,
//! fixed-size integers) on top of `lightning::util::ser`.
//!
//! Errors carry the TLV type and the byte offset inside the hop payload (length
//! prefix included), which is what BOLT 4's `invalid_onion_payload` reports.

use bitcoin::secp256k1::PublicKey;
use lightning::util::ser::{BigSize, Readable, Writeable};

use crate::onion::failure::FailureMessage;

/// Error while decoding a hop payload or another TLV stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
	/// The payload does not start with a valid, minimal BigSize length, or the
	/// length does not match the bytes that follow.
	#[error(
		"payload length prefix is malformed or does not match the {available} bytes that follow"
	)]
	BadLengthPrefix {
		/// Bytes after the prefix.
		available: usize,
	},
	/// A record's type or length is cut short or not minimally encoded, or its
	/// value runs past the end of the stream.
	#[error("TLV record at offset {offset} is truncated or not minimally encoded")]
	MalformedRecord {
		/// Offset of the record.
		offset: usize,
	},
	/// Types must be strictly ascending (BOLT 1); equal types are duplicates.
	#[error("TLV type {tlv_type} at offset {offset} does not come after type {previous}: types must be strictly ascending without duplicates")]
	NotAscending {
		/// The offending type.
		tlv_type: u64,
		/// The type before it.
		previous: u64,
		/// Offset of the record.
		offset: usize,
	},
	/// An even type this decoder does not understand ("it's OK to be odd").
	#[error("unknown even TLV type {tlv_type} at offset {offset}: the sender requires a feature this node does not support")]
	UnknownEvenType {
		/// The type.
		tlv_type: u64,
		/// Offset of the record.
		offset: usize,
	},
	/// A known type's value does not decode.
	#[error("TLV type {tlv_type} at offset {offset} has an invalid value: {reason}")]
	InvalidValue {
		/// The type.
		tlv_type: u64,
		/// Offset of the record.
		offset: usize,
		/// What is wrong.
		reason: &'static str,
	},
	/// A field this kind of payload requires is absent.
	#[error("required TLV type {tlv_type} is missing")]
	MissingType {
		/// The missing type.
		tlv_type: u64,
	},
	/// A field is present that this kind of payload must not carry.
	#[error("TLV type {tlv_type} at offset {offset} is not allowed here: {reason}")]
	ForbiddenType {
		/// The type.
		tlv_type: u64,
		/// Offset of the record.
		offset: usize,
		/// Why it is not allowed.
		reason: &'static str,
	},
	/// A trampoline payload uses both the spec layout and the legacy eclair layout.
	#[error("trampoline payload mixes spec TLV type {spec_type} with legacy eclair TLV type {legacy_type}")]
	MixedLayouts {
		/// A spec type present (14, 21 or 22).
		spec_type: u64,
		/// A legacy type present (66097..=66102).
		legacy_type: u64,
		/// Offset of the later of the two records.
		offset: usize,
	},
	/// An extra TLV handed to an encoder is even or collides with a known type.
	#[error("extra TLV type {tlv_type} cannot be encoded: it must be odd and not a type this payload defines")]
	InvalidExtraType {
		/// The type.
		tlv_type: u64,
	},
}

impl PayloadError {
	/// The TLV type to report in `invalid_onion_payload` (0 when the problem is not
	/// tied to a record).
	pub fn tlv_type(&self) -> u64 {
		match self {
			PayloadError::BadLengthPrefix { .. } | PayloadError::MalformedRecord { .. } => 0,
			PayloadError::NotAscending { tlv_type, .. }
			| PayloadError::UnknownEvenType { tlv_type, .. }
			| PayloadError::InvalidValue { tlv_type, .. }
			| PayloadError::MissingType { tlv_type }
			| PayloadError::ForbiddenType { tlv_type, .. }
			| PayloadError::InvalidExtraType { tlv_type } => *tlv_type,
			PayloadError::MixedLayouts { legacy_type, .. } => *legacy_type,
		}
	}

	/// The byte offset to report in `invalid_onion_payload` (0 when unknown,
	/// saturated to `u16::MAX`).
	pub fn offset(&self) -> u16 {
		let offset = match self {
			PayloadError::MalformedRecord { offset }
			| PayloadError::NotAscending { offset, .. }
			| PayloadError::UnknownEvenType { offset, .. }
			| PayloadError::InvalidValue { offset, .. }
			| PayloadError::ForbiddenType { offset, .. }
			| PayloadError::MixedLayouts { offset, .. } => *offset,
			PayloadError::BadLengthPrefix { .. }
			| PayloadError::MissingType { .. }
			| PayloadError::InvalidExtraType { .. } => 0,
		};
		u16::try_from(offset).unwrap_or(u16::MAX)
	}

	/// The BOLT 4 failure to return for this error (`invalid_onion_payload`).
	pub fn to_failure(&self) -> FailureMessage {
		FailureMessage::InvalidOnionPayload { tlv_type: self.tlv_type(), offset: self.offset() }
	}
}

/// One record of a TLV stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlvRecord<'a> {
	pub(crate) tlv_type: u64,
	pub(crate) value: &'a [u8],
	/// Offset of the record's type within the hop payload.
	pub(crate) offset: usize,
}

impl TlvRecord<'_> {
	pub(crate) fn invalid(&self, reason: &'static str) -> PayloadError {
		PayloadError::InvalidValue { tlv_type: self.tlv_type, offset: self.offset, reason }
	}

	pub(crate) fn forbidden(&self, reason: &'static str) -> PayloadError {
		PayloadError::ForbiddenType { tlv_type: self.tlv_type, offset: self.offset, reason }
	}
}

/// Reads a minimal BigSize from the start of `bytes`: `(encoded_len, value)`.
fn read_bigsize(bytes: &[u8]) -> Option<(usize, u64)> {
	let mut reader = bytes;
	let value = BigSize::read(&mut reader).ok()?.0;
	Some((bytes.len() - reader.len(), value))
}

/// Reads the BigSize length prefix of a hop payload: `(prefix_len, payload_len)`.
/// Fails on a truncated or non-minimal prefix or a length beyond `usize`.
pub(crate) fn read_length_prefix(bytes: &[u8]) -> Result<(usize, usize), PayloadError> {
	let (prefix_len, len) =
		read_bigsize(bytes).ok_or(PayloadError::BadLengthPrefix { available: bytes.len() })?;
	let len = usize::try_from(len)
		.map_err(|_| PayloadError::BadLengthPrefix { available: bytes.len() })?;
	Ok((prefix_len, len))
}

/// Splits a length-prefixed hop payload into its TLV stream and the offset at
/// which the stream starts. The length must match exactly.
pub(crate) fn strip_length_prefix(payload: &[u8]) -> Result<(&[u8], usize), PayloadError> {
	let (prefix_len, len) = read_length_prefix(payload)?;
	let available = payload.len() - prefix_len;
	if len != available {
		return Err(PayloadError::BadLengthPrefix { available });
	}
	Ok((&payload[prefix_len..], prefix_len))
}

/// Parses a TLV stream, enforcing BOLT 1 rules. `base_offset` is added to the
/// reported offsets (the length of the payload's length prefix).
pub(crate) fn read_stream(
	stream: &[u8], base_offset: usize,
) -> Result<Vec<TlvRecord<'_>>, PayloadError> {
	let mut records: Vec<TlvRecord<'_>> = Vec::new();
	let mut pos = 0;
	while pos < stream.len() {
		let offset = base_offset + pos;
		let malformed = PayloadError::MalformedRecord { offset };
		let (type_len, tlv_type) = read_bigsize(&stream[pos..]).ok_or(malformed.clone())?;
		let (len_len, len) = read_bigsize(&stream[pos + type_len..]).ok_or(malformed.clone())?;
		let value_start = pos + type_len + len_len;
		let value_end = usize::try_from(len)
			.ok()
			.and_then(|len| value_start.checked_add(len))
			.filter(|end| *end <= stream.len())
			.ok_or(malformed)?;
		if let Some(previous) = records.last() {
			if tlv_type <= previous.tlv_type {
				return Err(PayloadError::NotAscending {
					tlv_type,
					previous: previous.tlv_type,
					offset,
				});
			}
		}
		records.push(TlvRecord { tlv_type, value: &stream[value_start..value_end], offset });
		pos = value_end;
	}
	Ok(records)
}

/// Unknown odd TLV records, kept so a payload re-encodes as it came.
///
/// Every type is odd, and the list is strictly ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnknownTlvs(Vec<(u64, Vec<u8>)>);

impl UnknownTlvs {
	/// An empty set.
	pub fn new() -> Self {
		Self(Vec::new())
	}

	/// Builds a set from records; fails on an even type or a duplicate.
	pub fn from_records(mut records: Vec<(u64, Vec<u8>)>) -> Result<Self, PayloadError> {
		records.sort_by_key(|(tlv_type, _)| *tlv_type);
		for (i, (tlv_type, _)) in records.iter().enumerate() {
			if tlv_type % 2 == 0 || (i > 0 && records[i - 1].0 == *tlv_type) {
				return Err(PayloadError::InvalidExtraType { tlv_type: *tlv_type });
			}
		}
		Ok(Self(records))
	}

	/// The records, ascending by type.
	pub fn records(&self) -> &[(u64, Vec<u8>)] {
		&self.0
	}

	/// Whether there are none.
	pub fn is_empty(&self) -> bool {
		self.0.is_empty()
	}

	pub(crate) fn push_unknown(&mut self, record: &TlvRecord<'_>) -> Result<(), PayloadError> {
		if record.tlv_type.is_multiple_of(2) {
			return Err(PayloadError::UnknownEvenType {
				tlv_type: record.tlv_type,
				offset: record.offset,
			});
		}
		self.0.push((record.tlv_type, record.value.to_vec()));
		Ok(())
	}
}

/// Collects records and writes them as a TLV stream in ascending order.
#[derive(Default)]
pub(crate) struct TlvWriter {
	records: Vec<(u64, Vec<u8>)>,
}

impl TlvWriter {
	pub(crate) fn new() -> Self {
		Self::default()
	}

	pub(crate) fn put(&mut self, tlv_type: u64, value: Vec<u8>) {
		self.records.push((tlv_type, value));
	}

	pub(crate) fn put_opt(&mut self, tlv_type: u64, value: Option<Vec<u8>>) {
		if let Some(value) = value {
			self.put(tlv_type, value);
		}
	}

	/// Writes the stream, merging `extra` in; fails if an extra type collides with
	/// a type this writer already holds.
	pub(crate) fn finish_stream(mut self, extra: &UnknownTlvs) -> Result<Vec<u8>, PayloadError> {
		for (tlv_type, value) in extra.records() {
			if self.records.iter().any(|(known, _)| known == tlv_type) {
				return Err(PayloadError::InvalidExtraType { tlv_type: *tlv_type });
			}
			self.records.push((*tlv_type, value.clone()));
		}
		self.records.sort_by_key(|(tlv_type, _)| *tlv_type);
		let mut out = Vec::new();
		for (tlv_type, value) in &self.records {
			out.extend_from_slice(&BigSize(*tlv_type).encode());
			out.extend_from_slice(&BigSize(value.len() as u64).encode());
			out.extend_from_slice(value);
		}
		Ok(out)
	}

	/// Writes the stream with its BigSize length prefix (a hop payload).
	pub(crate) fn finish_payload(self, extra: &UnknownTlvs) -> Result<Vec<u8>, PayloadError> {
		let stream = self.finish_stream(extra)?;
		let mut out = BigSize(stream.len() as u64).encode();
		out.extend_from_slice(&stream);
		Ok(out)
	}
}

/// Encodes a truncated unsigned integer (`tu64`/`tu32`): big-endian, leading zero
/// bytes dropped.
pub(crate) fn encode_tu64(value: u64) -> Vec<u8> {
	let bytes = value.to_be_bytes();
	let skip = (value.leading_zeros() / 8) as usize;
	bytes[skip..].to_vec()
}

/// Decodes a `tu64`: at most 8 bytes, no leading zero byte (minimal encoding).
pub(crate) fn decode_tu64(bytes: &[u8]) -> Result<u64, &'static str> {
	if bytes.len() > 8 {
		return Err("truncated integer longer than 8 bytes");
	}
	if bytes.first() == Some(&0) {
		return Err("truncated integer is not minimally encoded");
	}
	Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// The total bitcoin supply in millisatoshi; no amount field may exceed it.
pub const MAX_VALUE_MSAT: u64 = 21_000_000 * 100_000_000 * 1000;

/// Decodes a `tu64` amount in millisatoshi, bounded by [`MAX_VALUE_MSAT`].
pub(crate) fn decode_msat(bytes: &[u8]) -> Result<u64, &'static str> {
	let value = decode_tu64(bytes)?;
	if value > MAX_VALUE_MSAT {
		return Err("amount exceeds the total bitcoin supply");
	}
	Ok(value)
}

/// Decodes a `tu32`.
pub(crate) fn decode_tu32(bytes: &[u8]) -> Result<u32, &'static str> {
	if bytes.len() > 4 {
		return Err("truncated integer longer than 4 bytes");
	}
	decode_tu64(bytes).map(|v| v as u32)
}

/// Decodes `value` entirely as `T` with lightning's `Readable`; trailing bytes are
/// an error.
pub(crate) fn read_exact<T: Readable>(value: &[u8]) -> Result<T, &'static str> {
	let mut reader = value;
	let decoded = T::read(&mut reader).map_err(|_| "value does not decode")?;
	if !reader.is_empty() {
		return Err("value has trailing bytes");
	}
	Ok(decoded)
}

/// Decodes a 33-byte compressed point.
pub(crate) fn decode_point(value: &[u8]) -> Result<PublicKey, &'static str> {
	if value.len() != 33 {
		return Err("point must be exactly 33 bytes");
	}
	read_exact::<PublicKey>(value).map_err(|_| "not a valid secp256k1 point")
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn tu64_roundtrip_and_minimality() {
		for value in [0u64, 1, 0xff, 0x100, 150_000_000, u64::MAX] {
			assert_eq!(decode_tu64(&encode_tu64(value)), Ok(value));
		}
		assert_eq!(encode_tu64(0), Vec::<u8>::new());
		assert!(decode_tu64(&[0x00, 0x01]).is_err());
		assert!(decode_tu64(&[1; 9]).is_err());
		assert!(decode_tu32(&[1; 5]).is_err());
		assert_eq!(decode_tu32(&[0x0c, 0x35, 0x00]), Ok(800_000));
		assert_eq!(decode_msat(&encode_tu64(MAX_VALUE_MSAT)), Ok(MAX_VALUE_MSAT));
		assert!(decode_msat(&encode_tu64(MAX_VALUE_MSAT + 1)).is_err());
	}

	#[test]
	fn stream_rules() {
		// 02 01 aa 04 00: fine.
		assert_eq!(read_stream(&[2, 1, 0xaa, 4, 0], 0).unwrap().len(), 2);
		// Not ascending.
		assert_eq!(
			read_stream(&[4, 0, 2, 0], 1),
			Err(PayloadError::NotAscending { tlv_type: 2, previous: 4, offset: 3 })
		);
		// Duplicate.
		assert!(matches!(read_stream(&[2, 0, 2, 0], 0), Err(PayloadError::NotAscending { .. })));
		// Value past the end.
		assert_eq!(read_stream(&[2, 5, 1], 0), Err(PayloadError::MalformedRecord { offset: 0 }));
		// Non-minimal BigSize type.
		assert!(read_stream(&[0xfd, 0x00, 0x02, 0], 0).is_err());
	}

	#[test]
	fn unknown_tlvs_must_be_odd_and_unique() {
		assert!(UnknownTlvs::from_records(vec![(3, vec![]), (1, vec![1])]).is_ok());
		assert!(UnknownTlvs::from_records(vec![(2, vec![])]).is_err());
		assert!(UnknownTlvs::from_records(vec![(3, vec![]), (3, vec![])]).is_err());
	}
}
