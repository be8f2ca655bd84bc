//! Route blinding cryptography (BOLT 4 "Route Blinding"): blinded node ids, the
//! tweak a blinded hop applies to its node key, path key rotation, and the
//! ChaCha20-Poly1305 encryption of `encrypted_recipient_data`.
//!
//! A node that receives a path key `E` computes `ss = SHA256(ECDH(k, E))` (with
//! LDK: `node_signer.ecdh(Recipient::Node, &E, None)`), decrypts its data with
//! [`decrypt_recipient_data`], and peels the onion addressed to its blinded id
//! with the ECDH tweaked by [`blinding_tweak`].

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey, Signing, Verification};
use chacha20_poly1305::{ChaCha20Poly1305, Key, Nonce};
use lightning::blinded_path::BlindedHop;

use crate::onion::keys::{
	derive_key, ephemeral_blinding_factor, hmac_sha256, route_keys, scalar_from_hash, KeyType,
};

/// Error from route blinding operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlindingError {
	/// A derived tweak fell outside the secp256k1 scalar range (negligible
	/// probability) or produced the point at infinity.
	#[error("route blinding key derivation failed; use a different session key")]
	KeyDerivation,
	/// The data is shorter than the 16-byte Poly1305 tag.
	#[error("encrypted_recipient_data is {len} bytes, shorter than its 16-byte tag")]
	TooShort {
		/// Length received.
		len: usize,
	},
	/// The Poly1305 tag does not verify: wrong path key, or data not meant for
	/// this node.
	#[error("encrypted_recipient_data does not decrypt with this path key (tag mismatch)")]
	DecryptionFailed,
}

/// The tweak of a blinded hop: `HMAC-SHA256("blinded_node_id", ss)`. The blinded
/// node id is `node_id * tweak`; to peel an onion addressed to it, pass this tweak
/// to `NodeSigner::ecdh(Recipient::Node, &ephemeral_key, Some(&tweak))`.
pub fn blinding_tweak(shared_secret: &SharedSecret) -> Result<Scalar, BlindingError> {
	scalar_from_hash(hmac_sha256(b"blinded_node_id", &[shared_secret.as_ref()]))
		.ok_or(BlindingError::KeyDerivation)
}

/// The blinded node id of `node_id` for the path shared secret `ss`.
pub fn blinded_node_id<C: Verification>(
	secp: &Secp256k1<C>, node_id: &PublicKey, shared_secret: &SharedSecret,
) -> Result<PublicKey, BlindingError> {
	node_id
		.mul_tweak(secp, &blinding_tweak(shared_secret)?)
		.map_err(|_| BlindingError::KeyDerivation)
}

/// The private key matching [`blinded_node_id`] (for holders of the raw node key).
pub fn blinded_node_secret(
	node_secret: &SecretKey, shared_secret: &SharedSecret,
) -> Result<SecretKey, BlindingError> {
	node_secret.mul_tweak(&blinding_tweak(shared_secret)?).map_err(|_| BlindingError::KeyDerivation)
}

/// The path key for the next hop: `E * SHA256(E || ss)`.
pub fn next_path_key<C: Verification>(
	secp: &Secp256k1<C>, path_key: &PublicKey, shared_secret: &SharedSecret,
) -> Result<PublicKey, BlindingError> {
	scalar_from_hash(ephemeral_blinding_factor(path_key, shared_secret))
		.and_then(|tweak| path_key.mul_tweak(secp, &tweak).ok())
		.ok_or(BlindingError::KeyDerivation)
}

/// Encrypts a hop's route blinding TLVs: ChaCha20-Poly1305 with key
/// `rho(ss)`, a zero nonce and no associated data; the tag is appended.
pub fn encrypt_recipient_data(shared_secret: &SharedSecret, plaintext: &[u8]) -> Vec<u8> {
	let rho = derive_key(KeyType::Rho, &shared_secret.secret_bytes());
	let mut data = plaintext.to_vec();
	let tag = ChaCha20Poly1305::new(Key::new(rho), Nonce::new([0u8; 12])).encrypt(&mut data, None);
	data.extend_from_slice(&tag);
	data
}

/// Decrypts `encrypted_recipient_data` with the path shared secret.
pub fn decrypt_recipient_data(
	shared_secret: &SharedSecret, encrypted: &[u8],
) -> Result<Vec<u8>, BlindingError> {
	if encrypted.len() < 16 {
		return Err(BlindingError::TooShort { len: encrypted.len() });
	}
	let (ciphertext, tag_bytes) = encrypted.split_at(encrypted.len() - 16);
	let mut tag = [0u8; 16];
	tag.copy_from_slice(tag_bytes);
	let rho = derive_key(KeyType::Rho, &shared_secret.secret_bytes());
	let mut data = ciphertext.to_vec();
	ChaCha20Poly1305::new(Key::new(rho), Nonce::new([0u8; 12]))
		.decrypt(&mut data, tag, None)
		.map_err(|_| BlindingError::DecryptionFailed)?;
	Ok(data)
}

/// A blinded path as its creator computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedBlindedPath {
	/// The path key for the introduction node (`session_key * G`).
	pub first_path_key: PublicKey,
	/// Blinded node ids and encrypted data, in path order.
	pub hops: Vec<BlindedHop>,
}

/// Creates a blinded path over `hops` (real node id, plaintext TLVs), from the
/// path session key. The plaintexts are encrypted as given (no padding added).
pub fn create_blinded_path<C: Signing + Verification>(
	secp: &Secp256k1<C>, session_key: &SecretKey, hops: &[(PublicKey, Vec<u8>)],
) -> Result<CreatedBlindedPath, BlindingError> {
	let node_ids: Vec<PublicKey> = hops.iter().map(|(node_id, _)| *node_id).collect();
	let keys =
		route_keys(secp, session_key, &node_ids).map_err(|_| BlindingError::KeyDerivation)?;
	let mut blinded = Vec::with_capacity(hops.len());
	for ((node_id, plaintext), key) in hops.iter().zip(&keys) {
		blinded.push(BlindedHop {
			blinded_node_id: blinded_node_id(secp, node_id, &key.shared_secret)?,
			encrypted_payload: encrypt_recipient_data(&key.shared_secret, plaintext),
		});
	}
	Ok(CreatedBlindedPath {
		first_path_key: PublicKey::from_secret_key(secp, session_key),
		hops: blinded,
	})
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn encryption_roundtrip_and_tamper_detection() {
		let ss = SharedSecret::from_bytes([5; 32]);
		let encrypted = encrypt_recipient_data(&ss, b"hello");
		assert_eq!(encrypted.len(), 5 + 16);
		assert_eq!(decrypt_recipient_data(&ss, &encrypted).unwrap(), b"hello");
		let mut tampered = encrypted.clone();
		tampered[0] ^= 1;
		assert_eq!(decrypt_recipient_data(&ss, &tampered), Err(BlindingError::DecryptionFailed));
		assert_eq!(
			decrypt_recipient_data(&SharedSecret::from_bytes([6; 32]), &encrypted),
			Err(BlindingError::DecryptionFailed)
		);
		assert_eq!(decrypt_recipient_data(&ss, &[0; 3]), Err(BlindingError::TooShort { len: 3 }));
	}

	#[test]
	fn blinded_secret_matches_blinded_id() {
		let secp = Secp256k1::new();
		let node_secret = SecretKey::from_slice(&[0x45; 32]).unwrap();
		let ss = SharedSecret::from_bytes([9; 32]);
		let id =
			blinded_node_id(&secp, &PublicKey::from_secret_key(&secp, &node_secret), &ss).unwrap();
		let secret = blinded_node_secret(&node_secret, &ss).unwrap();
		assert_eq!(PublicKey::from_secret_key(&secp, &secret), id);
	}
}
