//! BOLT 4 failure messages (`failuremsg` = `u16 failure_code || data`), including
//! the trampoline codes of bolts PR 836.

use lightning::util::ser::{BigSize, Readable, Writeable};

use crate::onion::keys::sha256_of;

/// Failure code flag: the onion itself was unparsable (sent in
/// `update_fail_malformed_htlc`).
pub const BADONION: u16 = 0x8000;
/// Failure code flag: permanent failure.
pub const PERM: u16 = 0x4000;
/// Failure code flag: node failure (as opposed to channel failure).
pub const NODE: u16 = 0x2000;
/// Failure code flag: a `channel_update` is enclosed.
pub const UPDATE: u16 = 0x1000;

/// A BOLT 4 failure message.
///
/// Codes this module does not know are kept in [`FailureMessage::Unknown`]. The
/// legacy trampoline codes of eclair and Electrum (`NODE|51`, `NODE|52`) are
/// known. For known codes, bytes after the defined fields are ignored on
/// decode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FailureMessage {
	/// `PERM|1` invalid_realm.
	InvalidRealm,
	/// `NODE|2` temporary_node_failure.
	TemporaryNodeFailure,
	/// `PERM|NODE|2` permanent_node_failure.
	PermanentNodeFailure,
	/// `PERM|NODE|3` required_node_feature_missing.
	RequiredNodeFeatureMissing,
	/// `BADONION|PERM|4` invalid_onion_version.
	InvalidOnionVersion {
		/// SHA256 of the onion received.
		sha256_of_onion: [u8; 32],
	},
	/// `BADONION|PERM|5` invalid_onion_hmac.
	InvalidOnionHmac {
		/// SHA256 of the onion received.
		sha256_of_onion: [u8; 32],
	},
	/// `BADONION|PERM|6` invalid_onion_key.
	InvalidOnionKey {
		/// SHA256 of the onion received.
		sha256_of_onion: [u8; 32],
	},
	/// `UPDATE|7` temporary_channel_failure.
	TemporaryChannelFailure {
		/// The enclosed `channel_update` (may be empty).
		channel_update: Vec<u8>,
	},
	/// `PERM|8` permanent_channel_failure.
	PermanentChannelFailure,
	/// `PERM|9` required_channel_feature_missing.
	RequiredChannelFeatureMissing,
	/// `PERM|10` unknown_next_peer.
	UnknownNextPeer,
	/// `UPDATE|11` amount_below_minimum.
	AmountBelowMinimum {
		/// Amount of the incoming HTLC.
		htlc_msat: u64,
		/// The enclosed `channel_update`.
		channel_update: Vec<u8>,
	},
	/// `UPDATE|12` fee_insufficient.
	FeeInsufficient {
		/// Amount of the incoming HTLC.
		htlc_msat: u64,
		/// The enclosed `channel_update`.
		channel_update: Vec<u8>,
	},
	/// `UPDATE|13` incorrect_cltv_expiry.
	IncorrectCltvExpiry {
		/// CLTV expiry of the incoming HTLC.
		cltv_expiry: u32,
		/// The enclosed `channel_update`.
		channel_update: Vec<u8>,
	},
	/// `UPDATE|14` expiry_too_soon.
	ExpiryTooSoon {
		/// The enclosed `channel_update`.
		channel_update: Vec<u8>,
	},
	/// `PERM|15` incorrect_or_unknown_payment_details.
	IncorrectOrUnknownPaymentDetails {
		/// Amount of the incoming HTLC.
		htlc_msat: u64,
		/// The recipient's block height.
		height: u32,
	},
	/// `18` final_incorrect_cltv_expiry.
	FinalIncorrectCltvExpiry {
		/// CLTV expiry of the incoming HTLC.
		cltv_expiry: u32,
	},
	/// `19` final_incorrect_htlc_amount.
	FinalIncorrectHtlcAmount {
		/// Amount of the incoming HTLC.
		incoming_htlc_amt: u64,
	},
	/// `UPDATE|20` channel_disabled.
	ChannelDisabled {
		/// Disabled flags.
		disabled_flags: u16,
		/// The enclosed `channel_update`.
		channel_update: Vec<u8>,
	},
	/// `21` expiry_too_far.
	ExpiryTooFar,
	/// `PERM|22` invalid_onion_payload.
	InvalidOnionPayload {
		/// The offending TLV type (BigSize on the wire).
		tlv_type: u64,
		/// Byte offset of the problem in the decrypted payload.
		offset: u16,
	},
	/// `23` mpp_timeout.
	MppTimeout,
	/// `BADONION|PERM|24` invalid_onion_blinding.
	InvalidOnionBlinding {
		/// SHA256 of the onion received.
		sha256_of_onion: [u8; 32],
	},
	/// `NODE|25` temporary_trampoline_failure.
	TemporaryTrampolineFailure,
	/// `NODE|26` trampoline_fee_or_expiry_insufficient: the trampoline node's
	/// required fee and CLTV delta.
	TrampolineFeeOrExpiryInsufficient {
		/// Required base fee, msat.
		fee_base_msat: u32,
		/// Required proportional fee, millionths.
		fee_proportional_millionths: u32,
		/// Required CLTV delta.
		cltv_expiry_delta: u16,
	},
	/// `PERM|27` unknown_next_trampoline.
	UnknownNextTrampoline,
	/// `NODE|51` trampoline_fee_insufficient, the legacy trampoline code of
	/// eclair (`FailureMessage.scala`) and Electrum (`lnonion.py`). Neither
	/// puts data in it (eclair only an optional TLV stream, Electrum `b''`).
	TrampolineFeeInsufficient,
	/// `NODE|52` trampoline_expiry_too_soon, the legacy trampoline code of
	/// eclair and Electrum; no data either.
	TrampolineExpiryTooSoon,
	/// A code this module does not decode, kept verbatim.
	Unknown {
		/// The failure code.
		code: u16,
		/// The data after the code.
		data: Vec<u8>,
	},
}

/// Error from [`FailureMessage::decode`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FailureDecodeError {
	/// Fewer than the two bytes of the failure code.
	#[error("failure message is {len} bytes, too short to hold a failure code")]
	MissingCode {
		/// Length of the message.
		len: usize,
	},
	/// A known code whose data is cut short or malformed.
	#[error("failure code {code:#06x} has malformed data: {reason}")]
	MalformedData {
		/// The failure code.
		code: u16,
		/// What is wrong.
		reason: &'static str,
	},
}

/// Failure codes of the variants, by name.
pub mod codes {
	use super::{BADONION, NODE, PERM, UPDATE};
	/// invalid_realm
	pub const INVALID_REALM: u16 = PERM | 1;
	/// temporary_node_failure
	pub const TEMPORARY_NODE_FAILURE: u16 = NODE | 2;
	/// permanent_node_failure
	pub const PERMANENT_NODE_FAILURE: u16 = PERM | NODE | 2;
	/// required_node_feature_missing
	pub const REQUIRED_NODE_FEATURE_MISSING: u16 = PERM | NODE | 3;
	/// invalid_onion_version
	pub const INVALID_ONION_VERSION: u16 = BADONION | PERM | 4;
	/// invalid_onion_hmac
	pub const INVALID_ONION_HMAC: u16 = BADONION | PERM | 5;
	/// invalid_onion_key
	pub const INVALID_ONION_KEY: u16 = BADONION | PERM | 6;
	/// temporary_channel_failure
	pub const TEMPORARY_CHANNEL_FAILURE: u16 = UPDATE | 7;
	/// permanent_channel_failure
	pub const PERMANENT_CHANNEL_FAILURE: u16 = PERM | 8;
	/// required_channel_feature_missing
	pub const REQUIRED_CHANNEL_FEATURE_MISSING: u16 = PERM | 9;
	/// unknown_next_peer
	pub const UNKNOWN_NEXT_PEER: u16 = PERM | 10;
	/// amount_below_minimum
	pub const AMOUNT_BELOW_MINIMUM: u16 = UPDATE | 11;
	/// fee_insufficient
	pub const FEE_INSUFFICIENT: u16 = UPDATE | 12;
	/// incorrect_cltv_expiry
	pub const INCORRECT_CLTV_EXPIRY: u16 = UPDATE | 13;
	/// expiry_too_soon
	pub const EXPIRY_TOO_SOON: u16 = UPDATE | 14;
	/// incorrect_or_unknown_payment_details
	pub const INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: u16 = PERM | 15;
	/// final_incorrect_cltv_expiry
	pub const FINAL_INCORRECT_CLTV_EXPIRY: u16 = 18;
	/// final_incorrect_htlc_amount
	pub const FINAL_INCORRECT_HTLC_AMOUNT: u16 = 19;
	/// channel_disabled
	pub const CHANNEL_DISABLED: u16 = UPDATE | 20;
	/// expiry_too_far
	pub const EXPIRY_TOO_FAR: u16 = 21;
	/// invalid_onion_payload
	pub const INVALID_ONION_PAYLOAD: u16 = PERM | 22;
	/// mpp_timeout
	pub const MPP_TIMEOUT: u16 = 23;
	/// invalid_onion_blinding
	pub const INVALID_ONION_BLINDING: u16 = BADONION | PERM | 24;
	/// temporary_trampoline_failure
	pub const TEMPORARY_TRAMPOLINE_FAILURE: u16 = NODE | 25;
	/// trampoline_fee_or_expiry_insufficient
	pub const TRAMPOLINE_FEE_OR_EXPIRY_INSUFFICIENT: u16 = NODE | 26;
	/// unknown_next_trampoline
	pub const UNKNOWN_NEXT_TRAMPOLINE: u16 = PERM | 27;
	/// trampoline_fee_insufficient (legacy: eclair, Electrum)
	pub const TRAMPOLINE_FEE_INSUFFICIENT: u16 = NODE | 51;
	/// trampoline_expiry_too_soon (legacy: eclair, Electrum)
	pub const TRAMPOLINE_EXPIRY_TOO_SOON: u16 = NODE | 52;
}

impl FailureMessage {
	/// The failure code.
	pub fn code(&self) -> u16 {
		use codes::*;
		match self {
			FailureMessage::InvalidRealm => INVALID_REALM,
			FailureMessage::TemporaryNodeFailure => TEMPORARY_NODE_FAILURE,
			FailureMessage::PermanentNodeFailure => PERMANENT_NODE_FAILURE,
			FailureMessage::RequiredNodeFeatureMissing => REQUIRED_NODE_FEATURE_MISSING,
			FailureMessage::InvalidOnionVersion { .. } => INVALID_ONION_VERSION,
			FailureMessage::InvalidOnionHmac { .. } => INVALID_ONION_HMAC,
			FailureMessage::InvalidOnionKey { .. } => INVALID_ONION_KEY,
			FailureMessage::TemporaryChannelFailure { .. } => TEMPORARY_CHANNEL_FAILURE,
			FailureMessage::PermanentChannelFailure => PERMANENT_CHANNEL_FAILURE,
			FailureMessage::RequiredChannelFeatureMissing => REQUIRED_CHANNEL_FEATURE_MISSING,
			FailureMessage::UnknownNextPeer => UNKNOWN_NEXT_PEER,
			FailureMessage::AmountBelowMinimum { .. } => AMOUNT_BELOW_MINIMUM,
			FailureMessage::FeeInsufficient { .. } => FEE_INSUFFICIENT,
			FailureMessage::IncorrectCltvExpiry { .. } => INCORRECT_CLTV_EXPIRY,
			FailureMessage::ExpiryTooSoon { .. } => EXPIRY_TOO_SOON,
			FailureMessage::IncorrectOrUnknownPaymentDetails { .. } => {
				INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
			},
			FailureMessage::FinalIncorrectCltvExpiry { .. } => FINAL_INCORRECT_CLTV_EXPIRY,
			FailureMessage::FinalIncorrectHtlcAmount { .. } => FINAL_INCORRECT_HTLC_AMOUNT,
			FailureMessage::ChannelDisabled { .. } => CHANNEL_DISABLED,
			FailureMessage::ExpiryTooFar => EXPIRY_TOO_FAR,
			FailureMessage::InvalidOnionPayload { .. } => INVALID_ONION_PAYLOAD,
			FailureMessage::MppTimeout => MPP_TIMEOUT,
			FailureMessage::InvalidOnionBlinding { .. } => INVALID_ONION_BLINDING,
			FailureMessage::TemporaryTrampolineFailure => TEMPORARY_TRAMPOLINE_FAILURE,
			FailureMessage::TrampolineFeeOrExpiryInsufficient { .. } => {
				TRAMPOLINE_FEE_OR_EXPIRY_INSUFFICIENT
			},
			FailureMessage::UnknownNextTrampoline => UNKNOWN_NEXT_TRAMPOLINE,
			FailureMessage::TrampolineFeeInsufficient => TRAMPOLINE_FEE_INSUFFICIENT,
			FailureMessage::TrampolineExpiryTooSoon => TRAMPOLINE_EXPIRY_TOO_SOON,
			FailureMessage::Unknown { code, .. } => *code,
		}
	}

	/// Whether the `PERM` flag is set.
	pub fn is_permanent(&self) -> bool {
		self.code() & PERM != 0
	}

	/// Whether the `NODE` flag is set.
	pub fn is_node_failure(&self) -> bool {
		self.code() & NODE != 0
	}

	/// Whether the `BADONION` flag is set (such failures travel in
	/// `update_fail_malformed_htlc`, not in an error packet).
	pub fn is_bad_onion(&self) -> bool {
		self.code() & BADONION != 0
	}

	/// The BADONION failure for a malformed onion, hashing the onion as received.
	pub fn bad_onion(code: u16, onion: &[u8]) -> Option<Self> {
		let sha256_of_onion = sha256_of(&[onion]);
		match code {
			codes::INVALID_ONION_VERSION => Some(Self::InvalidOnionVersion { sha256_of_onion }),
			codes::INVALID_ONION_HMAC => Some(Self::InvalidOnionHmac { sha256_of_onion }),
			codes::INVALID_ONION_KEY => Some(Self::InvalidOnionKey { sha256_of_onion }),
			codes::INVALID_ONION_BLINDING => Some(Self::InvalidOnionBlinding { sha256_of_onion }),
			_ => None,
		}
	}

	/// Serializes to `u16 code || data`.
	pub fn encode(&self) -> Vec<u8> {
		let mut out = self.code().to_be_bytes().to_vec();
		let update = |out: &mut Vec<u8>, channel_update: &[u8]| {
			// A channel_update is a few hundred bytes; longer input is truncated
			// rather than producing an inconsistent length.
			let len = u16::try_from(channel_update.len()).unwrap_or(u16::MAX);
			out.extend_from_slice(&len.to_be_bytes());
			out.extend_from_slice(&channel_update[..usize::from(len)]);
		};
		match self {
			FailureMessage::InvalidOnionVersion { sha256_of_onion }
			| FailureMessage::InvalidOnionHmac { sha256_of_onion }
			| FailureMessage::InvalidOnionKey { sha256_of_onion }
			| FailureMessage::InvalidOnionBlinding { sha256_of_onion } => {
				out.extend_from_slice(sha256_of_onion)
			},
			FailureMessage::TemporaryChannelFailure { channel_update }
			| FailureMessage::ExpiryTooSoon { channel_update } => update(&mut out, channel_update),
			FailureMessage::AmountBelowMinimum { htlc_msat, channel_update }
			| FailureMessage::FeeInsufficient { htlc_msat, channel_update } => {
				out.extend_from_slice(&htlc_msat.to_be_bytes());
				update(&mut out, channel_update);
			},
			FailureMessage::IncorrectCltvExpiry { cltv_expiry, channel_update } => {
				out.extend_from_slice(&cltv_expiry.to_be_bytes());
				update(&mut out, channel_update);
			},
			FailureMessage::ChannelDisabled { disabled_flags, channel_update } => {
				out.extend_from_slice(&disabled_flags.to_be_bytes());
				update(&mut out, channel_update);
			},
			FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat, height } => {
				out.extend_from_slice(&htlc_msat.to_be_bytes());
				out.extend_from_slice(&height.to_be_bytes());
			},
			FailureMessage::FinalIncorrectCltvExpiry { cltv_expiry } => {
				out.extend_from_slice(&cltv_expiry.to_be_bytes())
			},
			FailureMessage::FinalIncorrectHtlcAmount { incoming_htlc_amt } => {
				out.extend_from_slice(&incoming_htlc_amt.to_be_bytes())
			},
			FailureMessage::InvalidOnionPayload { tlv_type, offset } => {
				out.extend_from_slice(&BigSize(*tlv_type).encode());
				out.extend_from_slice(&offset.to_be_bytes());
			},
			FailureMessage::TrampolineFeeOrExpiryInsufficient {
				fee_base_msat,
				fee_proportional_millionths,
				cltv_expiry_delta,
			} => {
				out.extend_from_slice(&fee_base_msat.to_be_bytes());
				out.extend_from_slice(&fee_proportional_millionths.to_be_bytes());
				out.extend_from_slice(&cltv_expiry_delta.to_be_bytes());
			},
			FailureMessage::Unknown { data, .. } => out.extend_from_slice(data),
			FailureMessage::InvalidRealm
			| FailureMessage::TemporaryNodeFailure
			| FailureMessage::PermanentNodeFailure
			| FailureMessage::RequiredNodeFeatureMissing
			| FailureMessage::PermanentChannelFailure
			| FailureMessage::RequiredChannelFeatureMissing
			| FailureMessage::UnknownNextPeer
			| FailureMessage::ExpiryTooFar
			| FailureMessage::MppTimeout
			| FailureMessage::TemporaryTrampolineFailure
			| FailureMessage::UnknownNextTrampoline
			| FailureMessage::TrampolineFeeInsufficient
			| FailureMessage::TrampolineExpiryTooSoon => {},
		}
		out
	}

	/// Parses `u16 code || data`.
	pub fn decode(bytes: &[u8]) -> Result<Self, FailureDecodeError> {
		if bytes.len() < 2 {
			return Err(FailureDecodeError::MissingCode { len: bytes.len() });
		}
		let code = u16::from_be_bytes([bytes[0], bytes[1]]);
		let mut r = DataReader { data: &bytes[2..], code };
		use codes::*;
		let message = match code {
			INVALID_REALM => Self::InvalidRealm,
			TEMPORARY_NODE_FAILURE => Self::TemporaryNodeFailure,
			PERMANENT_NODE_FAILURE => Self::PermanentNodeFailure,
			REQUIRED_NODE_FEATURE_MISSING => Self::RequiredNodeFeatureMissing,
			INVALID_ONION_VERSION => Self::InvalidOnionVersion { sha256_of_onion: r.read()? },
			INVALID_ONION_HMAC => Self::InvalidOnionHmac { sha256_of_onion: r.read()? },
			INVALID_ONION_KEY => Self::InvalidOnionKey { sha256_of_onion: r.read()? },
			TEMPORARY_CHANNEL_FAILURE => {
				Self::TemporaryChannelFailure { channel_update: r.channel_update()? }
			},
			PERMANENT_CHANNEL_FAILURE => Self::PermanentChannelFailure,
			REQUIRED_CHANNEL_FEATURE_MISSING => Self::RequiredChannelFeatureMissing,
			UNKNOWN_NEXT_PEER => Self::UnknownNextPeer,
			AMOUNT_BELOW_MINIMUM => Self::AmountBelowMinimum {
				htlc_msat: r.read()?,
				channel_update: r.channel_update()?,
			},
			FEE_INSUFFICIENT => {
				Self::FeeInsufficient { htlc_msat: r.read()?, channel_update: r.channel_update()? }
			},
			INCORRECT_CLTV_EXPIRY => Self::IncorrectCltvExpiry {
				cltv_expiry: r.read()?,
				channel_update: r.channel_update()?,
			},
			EXPIRY_TOO_SOON => Self::ExpiryTooSoon { channel_update: r.channel_update()? },
			INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS => {
				Self::IncorrectOrUnknownPaymentDetails { htlc_msat: r.read()?, height: r.read()? }
			},
			FINAL_INCORRECT_CLTV_EXPIRY => {
				Self::FinalIncorrectCltvExpiry { cltv_expiry: r.read()? }
			},
			FINAL_INCORRECT_HTLC_AMOUNT => {
				Self::FinalIncorrectHtlcAmount { incoming_htlc_amt: r.read()? }
			},
			CHANNEL_DISABLED => Self::ChannelDisabled {
				disabled_flags: r.read()?,
				channel_update: r.channel_update()?,
			},
			EXPIRY_TOO_FAR => Self::ExpiryTooFar,
			INVALID_ONION_PAYLOAD => {
				let tlv_type: BigSize = r.read()?;
				Self::InvalidOnionPayload { tlv_type: tlv_type.0, offset: r.read()? }
			},
			MPP_TIMEOUT => Self::MppTimeout,
			INVALID_ONION_BLINDING => Self::InvalidOnionBlinding { sha256_of_onion: r.read()? },
			TEMPORARY_TRAMPOLINE_FAILURE => Self::TemporaryTrampolineFailure,
			TRAMPOLINE_FEE_OR_EXPIRY_INSUFFICIENT => Self::TrampolineFeeOrExpiryInsufficient {
				fee_base_msat: r.read()?,
				fee_proportional_millionths: r.read()?,
				cltv_expiry_delta: r.read()?,
			},
			UNKNOWN_NEXT_TRAMPOLINE => Self::UnknownNextTrampoline,
			TRAMPOLINE_FEE_INSUFFICIENT => Self::TrampolineFeeInsufficient,
			TRAMPOLINE_EXPIRY_TOO_SOON => Self::TrampolineExpiryTooSoon,
			_ => Self::Unknown { code, data: bytes[2..].to_vec() },
		};
		Ok(message)
	}
}

/// Reads the fields of a known failure code with lightning's `Readable`.
struct DataReader<'a> {
	data: &'a [u8],
	code: u16,
}

impl DataReader<'_> {
	fn read<T: Readable>(&mut self) -> Result<T, FailureDecodeError> {
		T::read(&mut self.data).map_err(|_| FailureDecodeError::MalformedData {
			code: self.code,
			reason: "data is truncated or not minimally encoded",
		})
	}

	fn channel_update(&mut self) -> Result<Vec<u8>, FailureDecodeError> {
		let len: u16 = self.read()?;
		let len = usize::from(len);
		if self.data.len() < len {
			return Err(FailureDecodeError::MalformedData {
				code: self.code,
				reason: "channel_update is shorter than its length",
			});
		}
		let (update, rest) = self.data.split_at(len);
		self.data = rest;
		Ok(update.to_vec())
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn roundtrips() {
		let samples = vec![
			FailureMessage::TemporaryNodeFailure,
			FailureMessage::PermanentNodeFailure,
			FailureMessage::InvalidOnionHmac { sha256_of_onion: [3; 32] },
			FailureMessage::TemporaryChannelFailure { channel_update: vec![1, 2, 3] },
			FailureMessage::AmountBelowMinimum { htlc_msat: 5, channel_update: vec![] },
			FailureMessage::IncorrectCltvExpiry { cltv_expiry: 9, channel_update: vec![4] },
			FailureMessage::ExpiryTooSoon { channel_update: vec![] },
			FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: 1000, height: 800_000 },
			FailureMessage::FinalIncorrectCltvExpiry { cltv_expiry: 7 },
			FailureMessage::FinalIncorrectHtlcAmount { incoming_htlc_amt: 8 },
			FailureMessage::ChannelDisabled { disabled_flags: 1, channel_update: vec![9] },
			FailureMessage::InvalidOnionPayload { tlv_type: 66098, offset: 12 },
			FailureMessage::MppTimeout,
			FailureMessage::TemporaryTrampolineFailure,
			FailureMessage::TrampolineFeeOrExpiryInsufficient {
				fee_base_msat: 1000,
				fee_proportional_millionths: 500,
				cltv_expiry_delta: 576,
			},
			FailureMessage::UnknownNextTrampoline,
			FailureMessage::TrampolineFeeInsufficient,
			FailureMessage::TrampolineExpiryTooSoon,
			FailureMessage::Unknown { code: NODE | 99, data: vec![1, 2] },
		];
		for message in samples {
			assert_eq!(FailureMessage::decode(&message.encode()), Ok(message));
		}
	}

	#[test]
	fn codes_match_bolt4() {
		assert_eq!(codes::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, 0x400f);
		assert_eq!(codes::INVALID_ONION_HMAC, 0xc005);
		assert_eq!(codes::INVALID_ONION_PAYLOAD, 0x4016);
		assert_eq!(codes::TEMPORARY_TRAMPOLINE_FAILURE, 0x2019);
		assert_eq!(codes::TRAMPOLINE_FEE_OR_EXPIRY_INSUFFICIENT, 0x201a);
		assert_eq!(codes::UNKNOWN_NEXT_TRAMPOLINE, 0x401b);
		// Electrum's lnonion.py: NODE | 51 and NODE | 52, no data.
		assert_eq!(FailureMessage::TrampolineFeeInsufficient.encode(), vec![0x20, 0x33]);
		assert_eq!(FailureMessage::TrampolineExpiryTooSoon.encode(), vec![0x20, 0x34]);
		// eclair's optional failure TLVs after the code are ignored.
		assert_eq!(
			FailureMessage::decode(&[0x20, 0x33, 0xfd, 0x00]),
			Ok(FailureMessage::TrampolineFeeInsufficient)
		);
		assert_eq!(
			FailureMessage::TrampolineFeeOrExpiryInsufficient {
				fee_base_msat: 1,
				fee_proportional_millionths: 2,
				cltv_expiry_delta: 3
			}
			.encode(),
			vec![0x20, 0x1a, 0, 0, 0, 1, 0, 0, 0, 2, 0, 3]
		);
	}

	#[test]
	fn malformed_known_code_is_an_error() {
		assert_eq!(
			FailureMessage::decode(&[0x40, 0x0f, 0, 0]),
			Err(FailureDecodeError::MalformedData {
				code: 0x400f,
				reason: "data is truncated or not minimally encoded"
			})
		);
		assert_eq!(
			FailureMessage::decode(&[0x40]),
			Err(FailureDecodeError::MissingCode { len: 1 })
		);
	}
}
