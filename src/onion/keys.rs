//! Key derivation shared by every part of the module: the BOLT 4 per-hop keys
//! (`rho`, `mu`, `um`, `ammag`, `pad`), the ChaCha20 keystreams they seed, and the
//! shared secrets and ephemeral keys of a route.

use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey, Signing};
use chacha20_poly1305::chacha20::ChaCha20;
use chacha20_poly1305::{Key, Nonce};

/// The keys BOLT 4 derives from a hop's shared secret (or, for [`KeyType::Pad`],
/// from the session key): `HMAC-SHA256(key = <label>, data = <secret>)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
	/// `rho`: keystream that encrypts the hop payloads (and route blinding data).
	Rho,
	/// `mu`: HMAC key of the onion packet.
	Mu,
	/// `um`: HMAC key of an error packet, used by the failing node.
	Um,
	/// `ammag`: keystream that obfuscates an error packet at every hop.
	Ammag,
	/// `pad`: keystream that fills the unused end of a new onion (from the session key).
	Pad,
}

impl KeyType {
	/// The ASCII label BOLT 4 uses as the HMAC key.
	pub fn label(self) -> &'static [u8] {
		match self {
			KeyType::Rho => b"rho",
			KeyType::Mu => b"mu",
			KeyType::Um => b"um",
			KeyType::Ammag => b"ammag",
			KeyType::Pad => b"pad",
		}
	}
}

/// Derives a BOLT 4 key: `HMAC-SHA256(key = kind.label(), data = secret)`.
///
/// `secret` is a hop's shared secret, or the session key for [`KeyType::Pad`].
pub fn derive_key(kind: KeyType, secret: &[u8; 32]) -> [u8; 32] {
	hmac_sha256(kind.label(), &[secret])
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
	let mut engine = hmac::HmacEngine::<sha256::Hash>::new(key);
	for part in parts {
		engine.input(part);
	}
	hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array()
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256_of(parts: &[&[u8]]) -> [u8; 32] {
	let mut engine = sha256::Hash::engine();
	for part in parts {
		engine.input(part);
	}
	sha256::Hash::from_engine(engine).to_byte_array()
}

/// XORs `buf` with the ChaCha20 keystream of `key` (all-zero 96-bit nonce),
/// starting `offset` bytes into the stream.
///
/// Offsets are bounded by the callers (packet sizes are checked to stay far below
/// `u32::MAX`), so the conversion cannot truncate.
pub(crate) fn apply_keystream(key: &[u8; 32], offset: usize, buf: &mut [u8]) {
	let offset = u32::try_from(offset).unwrap_or(u32::MAX);
	let mut cipher = ChaCha20::new(Key::new(*key), Nonce::new([0u8; 12]), offset);
	cipher.apply_keystream(buf);
}

/// The first `len` bytes of the ChaCha20 keystream of `key`.
pub(crate) fn keystream(key: &[u8; 32], len: usize) -> Vec<u8> {
	let mut out = vec![0u8; len];
	apply_keystream(key, 0, &mut out);
	out
}

/// Turns a 32-byte hash into a secp256k1 scalar. Fails only if the hash is not
/// below the curve order, which happens with negligible probability.
pub(crate) fn scalar_from_hash(hash: [u8; 32]) -> Option<Scalar> {
	Scalar::from_be_bytes(hash).ok()
}

/// The blinding factor BOLT 4 applies to the ephemeral key after each hop:
/// `SHA256(ephemeral_pubkey || shared_secret)`.
pub(crate) fn ephemeral_blinding_factor(
	ephemeral_pubkey: &PublicKey, shared_secret: &SharedSecret,
) -> [u8; 32] {
	sha256_of(&[&ephemeral_pubkey.serialize(), shared_secret.as_ref()])
}

/// The keys of one hop of a route, as seen by the node building the onion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopKeys {
	/// The ephemeral public key this hop receives in its onion packet.
	pub ephemeral_pubkey: PublicKey,
	/// The shared secret between the sender and this hop.
	pub shared_secret: SharedSecret,
}

/// Error from [`route_keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteKeysError {
	/// A blinding factor fell outside the secp256k1 scalar range (probability about
	/// 2^-128); retry with another session key.
	#[error(
		"deriving the ephemeral key of hop {hop_index} failed; retry with a different session key"
	)]
	InvalidBlindingFactor {
		/// Index of the hop whose key could not be derived.
		hop_index: usize,
	},
}

/// Computes the ephemeral public key and the shared secret of every hop, in route
/// order, from the session key: `ss_i = SHA256(ECDH(e_i, P_i))`,
/// `e_{i+1} = e_i * SHA256(E_i || ss_i)`.
pub fn route_keys<C: Signing>(
	secp: &Secp256k1<C>, session_key: &SecretKey, hop_pubkeys: &[PublicKey],
) -> Result<Vec<HopKeys>, RouteKeysError> {
	let mut ephemeral_secret = *session_key;
	let mut keys = Vec::with_capacity(hop_pubkeys.len());
	for (hop_index, hop_pubkey) in hop_pubkeys.iter().enumerate() {
		let ephemeral_pubkey = PublicKey::from_secret_key(secp, &ephemeral_secret);
		let shared_secret = SharedSecret::new(hop_pubkey, &ephemeral_secret);
		let factor = ephemeral_blinding_factor(&ephemeral_pubkey, &shared_secret);
		keys.push(HopKeys { ephemeral_pubkey, shared_secret });
		if hop_index + 1 < hop_pubkeys.len() {
			ephemeral_secret = scalar_from_hash(factor)
				.and_then(|tweak| ephemeral_secret.mul_tweak(&tweak).ok())
				.ok_or(RouteKeysError::InvalidBlindingFactor { hop_index })?;
		}
	}
	Ok(keys)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn keystream_offset_matches_full_stream() {
		let key = [7u8; 32];
		let full = keystream(&key, 200);
		let mut part = vec![0u8; 90];
		apply_keystream(&key, 77, &mut part);
		assert_eq!(&full[77..167], &part[..]);
	}
}
