//! The onion packet wire format: `version (1) || ephemeral public key (33) ||
//! hop_payloads (variable) || hmac (32)`, for both the fixed 1300-byte payment
//! onion and the variable-size trampoline onion.

use bitcoin::secp256k1::PublicKey;
use lightning::ln::msgs;

use crate::onion::SphinxError;

/// The only onion version BOLT 4 defines.
pub const ONION_VERSION: u8 = 0;

/// Size of `hop_payloads` in a payment onion (`update_add_htlc`).
pub const PAYMENT_ONION_HOP_PAYLOADS_LEN: usize = 1300;

/// Bytes of a packet around `hop_payloads`: version, ephemeral key and HMAC.
pub const PACKET_OVERHEAD: usize = 1 + 33 + 32;

/// Largest `hop_payloads` this module accepts. A trampoline onion travels inside a
/// TLV of a 1300-byte payment onion, so real packets are far smaller; the bound
/// keeps keystream offsets small.
pub const MAX_HOP_PAYLOADS_LEN: usize = u16::MAX as usize;

/// A version-0 onion packet. `hop_payloads` is never empty and never longer than
/// [`MAX_HOP_PAYLOADS_LEN`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OnionPacket {
	public_key: PublicKey,
	hop_payloads: Vec<u8>,
	hmac: [u8; 32],
}

impl OnionPacket {
	/// Assembles a packet from its parts.
	///
	/// Fails with [`SphinxError::InvalidHopPayloadsLength`] if `hop_payloads` is
	/// empty or longer than [`MAX_HOP_PAYLOADS_LEN`].
	pub fn new(
		public_key: PublicKey, hop_payloads: Vec<u8>, hmac: [u8; 32],
	) -> Result<Self, SphinxError> {
		check_hop_payloads_len(hop_payloads.len())?;
		Ok(Self { public_key, hop_payloads, hmac })
	}

	/// Parses a serialized packet of any size (the payment onion is 1366 bytes; a
	/// trampoline onion is `66 + hop_payloads` bytes).
	pub fn from_bytes(bytes: &[u8]) -> Result<Self, SphinxError> {
		if bytes.len() <= PACKET_OVERHEAD {
			return Err(SphinxError::Truncated { len: bytes.len() });
		}
		if bytes[0] != ONION_VERSION {
			return Err(SphinxError::UnknownVersion(bytes[0]));
		}
		let public_key =
			PublicKey::from_slice(&bytes[1..34]).map_err(|_| SphinxError::InvalidEphemeralKey)?;
		let hmac_start = bytes.len() - 32;
		let hop_payloads = bytes[34..hmac_start].to_vec();
		check_hop_payloads_len(hop_payloads.len())?;
		let mut hmac = [0u8; 32];
		hmac.copy_from_slice(&bytes[hmac_start..]);
		Ok(Self { public_key, hop_payloads, hmac })
	}

	/// Serializes the packet.
	pub fn to_bytes(&self) -> Vec<u8> {
		let mut out = Vec::with_capacity(self.serialized_len());
		out.push(ONION_VERSION);
		out.extend_from_slice(&self.public_key.serialize());
		out.extend_from_slice(&self.hop_payloads);
		out.extend_from_slice(&self.hmac);
		out
	}

	/// Length of [`Self::to_bytes`].
	pub fn serialized_len(&self) -> usize {
		PACKET_OVERHEAD + self.hop_payloads.len()
	}

	/// The ephemeral public key the receiving hop uses for ECDH.
	pub fn public_key(&self) -> &PublicKey {
		&self.public_key
	}

	/// The encrypted hop payloads.
	pub fn hop_payloads(&self) -> &[u8] {
		&self.hop_payloads
	}

	/// The HMAC over `hop_payloads || associated_data`.
	pub fn hmac(&self) -> &[u8; 32] {
		&self.hmac
	}
}

fn check_hop_payloads_len(len: usize) -> Result<(), SphinxError> {
	if len == 0 || len > MAX_HOP_PAYLOADS_LEN {
		return Err(SphinxError::InvalidHopPayloadsLength { len });
	}
	Ok(())
}

impl From<OnionPacket> for msgs::TrampolineOnionPacket {
	fn from(packet: OnionPacket) -> Self {
		msgs::TrampolineOnionPacket {
			version: ONION_VERSION,
			public_key: packet.public_key,
			hop_data: packet.hop_payloads,
			hmac: packet.hmac,
		}
	}
}

/// A payment onion (1300-byte `hop_payloads`) as LDK's message field.
impl TryFrom<&OnionPacket> for msgs::OnionPacket {
	type Error = SphinxError;

	fn try_from(packet: &OnionPacket) -> Result<Self, SphinxError> {
		let hop_data = <[u8; 20 * 65]>::try_from(packet.hop_payloads.as_slice()).map_err(|_| {
			SphinxError::InvalidHopPayloadsLength { len: packet.hop_payloads.len() }
		})?;
		Ok(msgs::OnionPacket {
			version: ONION_VERSION,
			public_key: Ok(packet.public_key),
			hop_data,
			hmac: packet.hmac,
		})
	}
}

impl TryFrom<&msgs::TrampolineOnionPacket> for OnionPacket {
	type Error = SphinxError;

	fn try_from(packet: &msgs::TrampolineOnionPacket) -> Result<Self, SphinxError> {
		if packet.version != ONION_VERSION {
			return Err(SphinxError::UnknownVersion(packet.version));
		}
		Self::new(packet.public_key, packet.hop_data.clone(), packet.hmac)
	}
}

impl TryFrom<&msgs::OnionPacket> for OnionPacket {
	type Error = SphinxError;

	fn try_from(packet: &msgs::OnionPacket) -> Result<Self, SphinxError> {
		if packet.version != ONION_VERSION {
			return Err(SphinxError::UnknownVersion(packet.version));
		}
		let public_key = packet.public_key.map_err(|_| SphinxError::InvalidEphemeralKey)?;
		Self::new(public_key, packet.hop_data.to_vec(), packet.hmac)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn sample() -> Vec<u8> {
		let mut bytes = vec![0u8];
		bytes.extend_from_slice(
			&PublicKey::from_slice(&[
				0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce,
				0x87, 0x0b, 0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81,
				0x5b, 0x16, 0xf8, 0x17, 0x98,
			])
			.unwrap()
			.serialize(),
		);
		bytes.extend_from_slice(&[5u8; 100]);
		bytes.extend_from_slice(&[9u8; 32]);
		bytes
	}

	#[test]
	fn roundtrip() {
		let bytes = sample();
		let packet = OnionPacket::from_bytes(&bytes).unwrap();
		assert_eq!(packet.hop_payloads().len(), 100);
		assert_eq!(packet.to_bytes(), bytes);
	}

	#[test]
	fn truncated_packet_is_rejected() {
		let bytes = sample();
		assert_eq!(OnionPacket::from_bytes(&bytes[..66]), Err(SphinxError::Truncated { len: 66 }));
		assert_eq!(OnionPacket::from_bytes(&[]), Err(SphinxError::Truncated { len: 0 }));
	}

	#[test]
	fn wrong_version_is_rejected() {
		let mut bytes = sample();
		bytes[0] = 1;
		assert_eq!(OnionPacket::from_bytes(&bytes), Err(SphinxError::UnknownVersion(1)));
	}

	#[test]
	fn invalid_ephemeral_key_is_rejected() {
		let mut bytes = sample();
		bytes[1] = 0x05;
		assert_eq!(OnionPacket::from_bytes(&bytes), Err(SphinxError::InvalidEphemeralKey));
	}
}
