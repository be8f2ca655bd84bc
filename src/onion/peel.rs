//! Sphinx processing at a receiving node (BOLT 4 "Accepting and Forwarding a
//! Payment"): check the HMAC, decrypt, split off this hop's payload and produce
//! the packet for the next hop.

use bitcoin::hashes::cmp::fixed_time_eq;
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, Verification};

use crate::onion::failure::FailureMessage;
use crate::onion::keys::{self, derive_key, ephemeral_blinding_factor, scalar_from_hash, KeyType};
use crate::onion::packet::OnionPacket;
use crate::onion::tlv::read_length_prefix;

/// Error while parsing or peeling an onion packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SphinxError {
	/// The packet is too short to hold version, key, any payload and HMAC.
	#[error(
		"onion packet is only {len} bytes; it needs more than 66 (version, key, payloads, hmac)"
	)]
	Truncated {
		/// Length of the bytes received.
		len: usize,
	},
	/// The version byte is not 0.
	#[error("onion packet version {0} is not supported (only version 0 exists)")]
	UnknownVersion(u8),
	/// The ephemeral public key is not a valid secp256k1 point.
	#[error("onion packet ephemeral public key is not a valid secp256k1 point")]
	InvalidEphemeralKey,
	/// `hop_payloads` is empty or larger than this module supports.
	#[error("onion hop_payloads of {len} bytes is out of the supported range")]
	InvalidHopPayloadsLength {
		/// The length found.
		len: usize,
	},
	/// The HMAC does not match: the packet was corrupted, is bound to different
	/// associated data (payment hash), or is meant for another node.
	#[error(
		"onion HMAC mismatch: packet corrupted, wrong payment hash, or not addressed to this node"
	)]
	InvalidHmac,
	/// The ECDH callback failed (e.g. the signer refused).
	#[error("the node signer could not compute the ECDH shared secret")]
	EcdhFailed,
	/// The decrypted payload does not start with a valid BigSize length.
	#[error("decrypted hop payload has a malformed length prefix")]
	MalformedPayloadLength,
	/// The decrypted payload uses the removed legacy (realm 0) format.
	#[error(
		"hop payload uses the legacy fixed-size format (length 0), which is no longer supported"
	)]
	LegacyHopData,
	/// The decrypted payload length runs past the end of the packet.
	#[error("hop payload of {needed} bytes (with length prefix and hmac) does not fit in {available} bytes of hop_payloads")]
	PayloadExceedsPacket {
		/// Bytes the payload and the next HMAC need.
		needed: usize,
		/// Size of `hop_payloads`.
		available: usize,
	},
	/// The next ephemeral key could not be derived (negligible probability).
	#[error("could not derive the next hop's ephemeral key")]
	NextKeyDerivation,
}

impl SphinxError {
	/// The failure to return for this error. `onion` is the packet as received:
	/// BADONION failures carry its SHA256 and go back in
	/// `update_fail_malformed_htlc`; the others go in an error packet.
	pub fn to_failure(&self, onion: &[u8]) -> FailureMessage {
		use crate::onion::failure::codes;
		let bad_onion = |code| {
			FailureMessage::bad_onion(code, onion).unwrap_or(FailureMessage::PermanentNodeFailure)
		};
		match self {
			SphinxError::Truncated { .. }
			| SphinxError::UnknownVersion(_)
			| SphinxError::InvalidHopPayloadsLength { .. } => bad_onion(codes::INVALID_ONION_VERSION),
			SphinxError::InvalidEphemeralKey | SphinxError::NextKeyDerivation => {
				bad_onion(codes::INVALID_ONION_KEY)
			},
			SphinxError::InvalidHmac => bad_onion(codes::INVALID_ONION_HMAC),
			SphinxError::EcdhFailed => FailureMessage::TemporaryNodeFailure,
			SphinxError::MalformedPayloadLength
			| SphinxError::LegacyHopData
			| SphinxError::PayloadExceedsPacket { .. } => {
				FailureMessage::InvalidOnionPayload { tlv_type: 0, offset: 0 }
			},
		}
	}
}

/// What follows this hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextPacket {
	/// The next HMAC is all zero: this node is the last hop of this onion.
	Final,
	/// The packet to hand to the next hop (same `hop_payloads` size).
	Forward(OnionPacket),
}

/// The result of peeling one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeeledOnion {
	/// This hop's payload, starting with its BigSize length prefix.
	pub payload: Vec<u8>,
	/// The shared secret of this layer (needed to build or wrap error packets).
	pub shared_secret: SharedSecret,
	/// The rest of the route.
	pub next: NextPacket,
}

impl PeeledOnion {
	/// This hop's TLV stream, without the length prefix.
	pub fn tlv_stream(&self) -> &[u8] {
		match read_length_prefix(&self.payload) {
			Ok((prefix_len, _)) => &self.payload[prefix_len..],
			Err(_) => &[],
		}
	}

	/// Whether this node is the last hop of this onion.
	pub fn is_final(&self) -> bool {
		matches!(self.next, NextPacket::Final)
	}
}

/// Peels one layer of `packet`.
///
/// `ecdh` computes `SHA256(ECDH(node_secret, ephemeral_key))`; in production pass
/// `|key| node_signer.ecdh(Recipient::Node, key, None)` (or `Some(&tweak)` for a
/// blinded hop, see [`crate::onion::blinding::blinding_tweak`]).
pub fn peel<C, F>(
	secp: &Secp256k1<C>, packet: &OnionPacket, associated_data: &[u8], ecdh: F,
) -> Result<PeeledOnion, SphinxError>
where
	C: Verification,
	F: FnOnce(&PublicKey) -> Result<SharedSecret, ()>,
{
	let shared_secret = ecdh(packet.public_key()).map_err(|()| SphinxError::EcdhFailed)?;
	let ss_bytes = shared_secret.secret_bytes();

	let mu = derive_key(KeyType::Mu, &ss_bytes);
	let expected = keys::hmac_sha256(&mu, &[packet.hop_payloads(), associated_data]);
	if !fixed_time_eq(&expected, packet.hmac()) {
		return Err(SphinxError::InvalidHmac);
	}

	let len = packet.hop_payloads().len();
	let mut stream = vec![0u8; 2 * len];
	stream[..len].copy_from_slice(packet.hop_payloads());
	keys::apply_keystream(&derive_key(KeyType::Rho, &ss_bytes), 0, &mut stream);

	let (prefix_len, payload_len) =
		read_length_prefix(&stream).map_err(|_| SphinxError::MalformedPayloadLength)?;
	if payload_len == 0 {
		return Err(SphinxError::LegacyHopData);
	}
	let payload_end = prefix_len
		.checked_add(payload_len)
		.filter(|end| end.checked_add(32).is_some_and(|needed| needed <= len))
		.ok_or(SphinxError::PayloadExceedsPacket {
			needed: prefix_len.saturating_add(payload_len).saturating_add(32),
			available: len,
		})?;
	let payload = stream[..payload_end].to_vec();
	let mut next_hmac = [0u8; 32];
	next_hmac.copy_from_slice(&stream[payload_end..payload_end + 32]);

	let next = if next_hmac == [0u8; 32] {
		NextPacket::Final
	} else {
		let factor = ephemeral_blinding_factor(packet.public_key(), &shared_secret);
		let next_key = scalar_from_hash(factor)
			.and_then(|tweak| packet.public_key().mul_tweak(secp, &tweak).ok())
			.ok_or(SphinxError::NextKeyDerivation)?;
		let next_start = payload_end + 32;
		let next_payloads = stream[next_start..next_start + len].to_vec();
		NextPacket::Forward(OnionPacket::new(next_key, next_payloads, next_hmac)?)
	};
	Ok(PeeledOnion { payload, shared_secret, next })
}

/// [`peel`] with the node's secret key at hand (tests, tools, or a blinded hop's
/// already-tweaked key).
pub fn peel_with_secret_key<C: Verification>(
	secp: &Secp256k1<C>, node_secret: &SecretKey, packet: &OnionPacket, associated_data: &[u8],
) -> Result<PeeledOnion, SphinxError> {
	peel(secp, packet, associated_data, |key| Ok(SharedSecret::new(key, node_secret)))
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::onion::build::{build, BuildError, SphinxHop};

	fn key(byte: u8) -> SecretKey {
		SecretKey::from_slice(&[byte; 32]).unwrap()
	}

	/// A minimal length-prefixed payload of `len` TLV bytes (one odd record).
	fn payload(len: usize) -> Vec<u8> {
		assert!((2..=0xfc).contains(&len));
		let mut p = vec![len as u8, 1, (len - 2) as u8];
		p.resize(len + 1, 0xab);
		p
	}

	fn route(secp: &Secp256k1<bitcoin::secp256k1::All>, n: u8) -> (Vec<SecretKey>, Vec<SphinxHop>) {
		let keys: Vec<SecretKey> = (0..n).map(|i| key(0x10 + i)).collect();
		let hops = keys
			.iter()
			.enumerate()
			.map(|(i, k)| SphinxHop {
				node_id: PublicKey::from_secret_key(secp, k),
				payload: payload(10 + 7 * i),
			})
			.collect();
		(keys, hops)
	}

	#[test]
	fn variable_sizes_roundtrip() {
		let secp = Secp256k1::new();
		let (keys, hops) = route(&secp, 4);
		for size in [400, 650, 1300] {
			let built = build(&secp, &key(1), &hops, b"hash", size).unwrap();
			let mut packet = built.packet;
			for (i, k) in keys.iter().enumerate() {
				let peeled = peel_with_secret_key(&secp, k, &packet, b"hash").unwrap();
				assert_eq!(peeled.payload, hops[i].payload);
				assert_eq!(peeled.shared_secret, built.shared_secrets[i]);
				match peeled.next {
					NextPacket::Forward(next) => {
						assert_eq!(next.hop_payloads().len(), size);
						packet = next;
					},
					NextPacket::Final => assert_eq!(i, keys.len() - 1),
				}
			}
		}
	}

	#[test]
	fn bad_hmac_is_rejected() {
		let secp = Secp256k1::new();
		let (keys, hops) = route(&secp, 2);
		let built = build(&secp, &key(1), &hops, b"hash", 650).unwrap();
		let mut bytes = built.packet.to_bytes();
		bytes[40] ^= 1;
		let tampered = OnionPacket::from_bytes(&bytes).unwrap();
		let err = peel_with_secret_key(&secp, &keys[0], &tampered, b"hash").unwrap_err();
		assert_eq!(err, SphinxError::InvalidHmac);
		assert!(matches!(err.to_failure(&bytes), FailureMessage::InvalidOnionHmac { .. }));
		// Wrong associated data, or the wrong node.
		assert_eq!(
			peel_with_secret_key(&secp, &keys[0], &built.packet, b"other"),
			Err(SphinxError::InvalidHmac)
		);
		assert_eq!(
			peel_with_secret_key(&secp, &keys[1], &built.packet, b"hash"),
			Err(SphinxError::InvalidHmac)
		);
		// A failing signer.
		assert_eq!(peel(&secp, &built.packet, b"hash", |_| Err(())), Err(SphinxError::EcdhFailed));
	}

	#[test]
	fn build_rejects_bad_input() {
		let secp = Secp256k1::new();
		let (_, hops) = route(&secp, 3);
		assert_eq!(build(&secp, &key(1), &[], b"", 1300), Err(BuildError::NoHops));
		assert_eq!(
			build(&secp, &key(1), &hops, b"", 100),
			Err(BuildError::PayloadsTooLarge { needed: 3 * 32 + 11 + 18 + 25, available: 100 })
		);
		let mut bad = hops.clone();
		bad[1].payload.push(0);
		assert_eq!(
			build(&secp, &key(1), &bad, b"", 1300),
			Err(BuildError::MalformedHopPayload { hop_index: 1 })
		);
		assert_eq!(
			build(&secp, &key(1), &hops, b"", 0),
			Err(BuildError::InvalidPacketLength { len: 0 })
		);
	}

	fn craft(
		secp: &Secp256k1<bitcoin::secp256k1::All>, node: &SecretKey, plaintext: Vec<u8>,
	) -> OnionPacket {
		let ephemeral = key(0x77);
		let ss = SharedSecret::new(&PublicKey::from_secret_key(secp, node), &ephemeral);
		let mut data = plaintext;
		keys::apply_keystream(&derive_key(KeyType::Rho, &ss.secret_bytes()), 0, &mut data);
		let hmac = keys::hmac_sha256(&derive_key(KeyType::Mu, &ss.secret_bytes()), &[&data, b"ad"]);
		OnionPacket::new(PublicKey::from_secret_key(secp, &ephemeral), data, hmac).unwrap()
	}

	#[test]
	fn malformed_decrypted_payloads_are_rejected() {
		let secp = Secp256k1::new();
		let node = key(0x33);
		let peel_plain = |plaintext: Vec<u8>| {
			peel_with_secret_key(&secp, &node, &craft(&secp, &node, plaintext), b"ad")
		};
		assert_eq!(peel_plain(vec![0u8; 100]), Err(SphinxError::LegacyHopData));
		let mut long = vec![0xfd, 0x01, 0x00];
		long.resize(100, 0);
		assert_eq!(
			peel_plain(long),
			Err(SphinxError::PayloadExceedsPacket { needed: 3 + 256 + 32, available: 100 })
		);
		let mut non_minimal = vec![0xfd, 0x00, 0x05];
		non_minimal.resize(100, 0);
		assert_eq!(peel_plain(non_minimal), Err(SphinxError::MalformedPayloadLength));
		// Exactly fitting payload with a zero next HMAC is final.
		let mut exact = vec![67u8];
		exact.resize(100, 0);
		assert!(peel_plain(exact).unwrap().is_final());
	}
}
