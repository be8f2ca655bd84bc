//! BOLT 4 error packets ("Returning Errors"): creation at the failing node,
//! obfuscation at every hop on the way back, and decryption at the origin,
//! including the trampoline double wrapping (trampoline shared secret first, then
//! the outer one).
//!
//! Packet layout before obfuscation: `hmac (32) || u16 failure_len ||
//! failuremsg || u16 pad_len || pad`, with `failure_len + pad_len >= 256`
//! (no attribution data: the spec vectors this module targets predate it).

use bitcoin::hashes::cmp::fixed_time_eq;
use bitcoin::secp256k1::ecdh::SharedSecret;

use crate::onion::failure::{FailureDecodeError, FailureMessage};
use crate::onion::keys::{self, derive_key, KeyType};

/// `failure_len + pad_len` BOLT 4 asks the failing node to reach.
pub const MIN_FAILURE_PLUS_PAD_LEN: usize = 256;

/// Error while decrypting an error packet at the origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FailureError {
	/// Too short to hold an HMAC and the two length fields.
	#[error("error packet is {len} bytes; it needs at least 36 (hmac and length fields)")]
	PacketTooShort {
		/// Length received.
		len: usize,
	},
	/// No hop's HMAC matched: the packet was corrupted on the way, or comes from a
	/// node outside the given shared secrets.
	#[error(
		"no hop's HMAC matches the error packet: it was corrupted or came from an unknown node"
	)]
	UnknownOrigin,
	/// The HMAC of hop `hop_index` matched but its content is malformed; that hop
	/// is to blame.
	#[error("hop {hop_index} sent a malformed error packet: {reason}")]
	MalformedPacket {
		/// Index (into the shared secrets given) of the hop that created it.
		hop_index: usize,
		/// What is wrong.
		reason: &'static str,
	},
	/// The HMAC of hop `hop_index` matched but the failure message does not decode.
	#[error("hop {hop_index} sent an undecodable failure message: {source}")]
	MalformedMessage {
		/// Index (into the shared secrets given) of the hop that created it.
		hop_index: usize,
		/// Why the message does not decode.
		source: FailureDecodeError,
	},
}

/// A failure attributed to a hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptedFailure {
	/// Index, in the shared secrets given, of the hop that created the packet.
	pub hop_index: usize,
	/// The failure.
	pub message: FailureMessage,
}

/// The outcome of peeling the layers a node added as the origin of a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeeledError {
	/// A hop's HMAC matched.
	Decrypted(DecryptedFailure),
	/// No hop's HMAC matched; this is the packet with all given layers removed. A
	/// trampoline node relays it back with [`wrap_trampoline_error_packet`] when it
	/// comes from beyond its own route (e.g. from the recipient's trampoline layer).
	Opaque(Vec<u8>),
}

/// Which layer of a trampoline payment a failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailingHop {
	/// Index into the outer route's shared secrets.
	Outer(usize),
	/// Index into the trampoline route's shared secrets.
	Trampoline(usize),
}

/// A failure of a trampoline payment, attributed to a layer and hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrampolineFailure {
	/// Who failed.
	pub hop: FailingHop,
	/// The failure.
	pub message: FailureMessage,
}

/// The unencrypted body of an error packet (everything after the HMAC):
/// `u16 failure_len || failuremsg || u16 pad_len || zero pad`, padded so that
/// `failure_len + pad_len` reaches [`MIN_FAILURE_PLUS_PAD_LEN`].
///
/// Messages longer than 65535 bytes cannot be represented and are truncated
/// (no BOLT 4 message comes close).
pub fn failure_payload(failure_message: &[u8]) -> Vec<u8> {
	let failure_len = failure_message.len().min(usize::from(u16::MAX));
	let pad_len = MIN_FAILURE_PLUS_PAD_LEN.saturating_sub(failure_len);
	let mut out = Vec::with_capacity(4 + failure_len + pad_len);
	out.extend_from_slice(&(failure_len as u16).to_be_bytes());
	out.extend_from_slice(&failure_message[..failure_len]);
	out.extend_from_slice(&(pad_len as u16).to_be_bytes());
	out.resize(out.len() + pad_len, 0);
	out
}

/// Creates the error packet at the failing node: HMAC with `um`, then the first
/// obfuscation with `ammag`, both from `shared_secret` (the one from peeling).
pub fn create_error_packet(shared_secret: &SharedSecret, failure: &FailureMessage) -> Vec<u8> {
	create_error_packet_from_bytes(shared_secret, &failure.encode())
}

/// [`create_error_packet`] for an already-encoded failure message.
pub fn create_error_packet_from_bytes(
	shared_secret: &SharedSecret, failure_message: &[u8],
) -> Vec<u8> {
	let ss = shared_secret.secret_bytes();
	let body = failure_payload(failure_message);
	let hmac = keys::hmac_sha256(&derive_key(KeyType::Um, &ss), &[&body]);
	let mut packet = hmac.to_vec();
	packet.extend_from_slice(&body);
	wrap_error_packet(shared_secret, &mut packet);
	packet
}

/// Adds one obfuscation layer (XOR with the `ammag` keystream), as every hop does
/// before passing an error back. The operation is its own inverse.
pub fn wrap_error_packet(shared_secret: &SharedSecret, packet: &mut [u8]) {
	keys::apply_keystream(&derive_key(KeyType::Ammag, &shared_secret.secret_bytes()), 0, packet);
}

/// Creates an error packet at a trampoline node (or trampoline recipient): with
/// the trampoline onion's shared secret, then wrapped with the outer onion's.
pub fn create_trampoline_error_packet(
	trampoline_shared_secret: &SharedSecret, outer_shared_secret: &SharedSecret,
	failure: &FailureMessage,
) -> Vec<u8> {
	let mut packet = create_error_packet(trampoline_shared_secret, failure);
	wrap_error_packet(outer_shared_secret, &mut packet);
	packet
}

/// Relays an error packet back through a trampoline node: wraps with the
/// trampoline onion's shared secret, then with the outer onion's.
pub fn wrap_trampoline_error_packet(
	trampoline_shared_secret: &SharedSecret, outer_shared_secret: &SharedSecret, packet: &mut [u8],
) {
	wrap_error_packet(trampoline_shared_secret, packet);
	wrap_error_packet(outer_shared_secret, packet);
}

/// Removes the layers of `shared_secrets` one by one (route order), checking
/// after each whether that hop created the packet.
pub fn peel_error_packet(
	packet: &[u8], shared_secrets: &[SharedSecret],
) -> Result<PeeledError, FailureError> {
	if packet.len() < 36 {
		return Err(FailureError::PacketTooShort { len: packet.len() });
	}
	let mut packet = packet.to_vec();
	for (hop_index, shared_secret) in shared_secrets.iter().enumerate() {
		wrap_error_packet(shared_secret, &mut packet);
		let um = derive_key(KeyType::Um, &shared_secret.secret_bytes());
		let expected = keys::hmac_sha256(&um, &[&packet[32..]]);
		if fixed_time_eq(&expected, &packet[..32]) {
			let message = parse_body(&packet[32..])
				.map_err(|reason| FailureError::MalformedPacket { hop_index, reason })?;
			let message = FailureMessage::decode(message)
				.map_err(|source| FailureError::MalformedMessage { hop_index, source })?;
			return Ok(PeeledError::Decrypted(DecryptedFailure { hop_index, message }));
		}
	}
	Ok(PeeledError::Opaque(packet))
}

/// Decrypts an error packet at the origin of a payment and attributes it to a hop
/// of `shared_secrets` (route order).
pub fn decrypt_error_packet(
	packet: &[u8], shared_secrets: &[SharedSecret],
) -> Result<DecryptedFailure, FailureError> {
	match peel_error_packet(packet, shared_secrets)? {
		PeeledError::Decrypted(failure) => Ok(failure),
		PeeledError::Opaque(_) => Err(FailureError::UnknownOrigin),
	}
}

/// Decrypts an error packet of a trampoline payment at its origin: the outer
/// route's secrets first, then the trampoline route's.
///
/// A `hop_index` in an error indexes the outer secrets followed by the
/// trampoline secrets.
pub fn decrypt_trampoline_error_packet(
	packet: &[u8], outer_shared_secrets: &[SharedSecret],
	trampoline_shared_secrets: &[SharedSecret],
) -> Result<TrampolineFailure, FailureError> {
	let all: Vec<SharedSecret> =
		outer_shared_secrets.iter().chain(trampoline_shared_secrets).copied().collect();
	let outer_len = outer_shared_secrets.len();
	let to_hop = |index: usize| {
		if index < outer_len {
			FailingHop::Outer(index)
		} else {
			FailingHop::Trampoline(index - outer_len)
		}
	};
	decrypt_error_packet(packet, &all).map(|DecryptedFailure { hop_index, message }| {
		TrampolineFailure { hop: to_hop(hop_index), message }
	})
}

/// Extracts `failuremsg` from `u16 failure_len || failuremsg || u16 pad_len || pad`.
fn parse_body(body: &[u8]) -> Result<&[u8], &'static str> {
	let read_u16 = |bytes: &[u8], at: usize| -> Option<usize> {
		Some(usize::from(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?])))
	};
	let failure_len = read_u16(body, 0).ok_or("missing failure_len")?;
	let pad_len = read_u16(body, 2 + failure_len).ok_or("failure_len runs past the packet")?;
	if 4 + failure_len + pad_len != body.len() {
		return Err("failure_len and pad_len do not add up to the packet length");
	}
	Ok(&body[2..2 + failure_len])
}

#[cfg(test)]
mod tests {
	use super::*;

	fn secret(byte: u8) -> SharedSecret {
		SharedSecret::from_bytes([byte; 32])
	}

	#[test]
	fn origin_finds_failing_hop() {
		let secrets = [secret(1), secret(2), secret(3)];
		let failure = FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: 42, height: 7 };
		let mut packet = create_error_packet(&secrets[2], &failure);
		wrap_error_packet(&secrets[1], &mut packet);
		wrap_error_packet(&secrets[0], &mut packet);
		assert_eq!(packet.len(), 32 + 2 + 256 + 2);
		assert_eq!(
			decrypt_error_packet(&packet, &secrets),
			Ok(DecryptedFailure { hop_index: 2, message: failure })
		);
	}

	#[test]
	fn unknown_hop_is_reported() {
		let mut packet = create_error_packet(&secret(9), &FailureMessage::TemporaryNodeFailure);
		wrap_error_packet(&secret(1), &mut packet);
		assert_eq!(
			decrypt_error_packet(&packet, &[secret(1), secret(2)]),
			Err(FailureError::UnknownOrigin)
		);
		assert_eq!(
			decrypt_error_packet(&packet[..20], &[secret(1)]),
			Err(FailureError::PacketTooShort { len: 20 })
		);
	}

	#[test]
	fn trampoline_double_wrapping() {
		// Alice -> Bob -> Carol (trampoline) -> Dave -> Eve (trampoline recipient).
		let (bob, carol_outer, carol_tramp) = (secret(1), secret(2), secret(3));
		let (dave, eve_outer, eve_tramp) = (secret(4), secret(5), secret(6));

		// Carol itself fails.
		let failure = FailureMessage::TrampolineFeeOrExpiryInsufficient {
			fee_base_msat: 1000,
			fee_proportional_millionths: 100,
			cltv_expiry_delta: 144,
		};
		let mut packet = create_trampoline_error_packet(&carol_tramp, &carol_outer, &failure);
		wrap_error_packet(&bob, &mut packet);
		assert_eq!(
			decrypt_trampoline_error_packet(
				&packet,
				&[bob, carol_outer],
				&[carol_tramp, eve_tramp]
			),
			Ok(TrampolineFailure { hop: FailingHop::Trampoline(0), message: failure })
		);

		// Eve fails; Carol cannot read it and relays it.
		let failure = FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: 1, height: 2 };
		let mut packet = create_trampoline_error_packet(&eve_tramp, &eve_outer, &failure);
		wrap_error_packet(&dave, &mut packet);
		let PeeledError::Opaque(mut packet) =
			peel_error_packet(&packet, &[dave, eve_outer]).unwrap()
		else {
			panic!("Carol must not be able to read Eve's trampoline-layer error");
		};
		wrap_trampoline_error_packet(&carol_tramp, &carol_outer, &mut packet);
		wrap_error_packet(&bob, &mut packet);
		assert_eq!(
			decrypt_trampoline_error_packet(
				&packet,
				&[bob, carol_outer],
				&[carol_tramp, eve_tramp]
			),
			Ok(TrampolineFailure { hop: FailingHop::Trampoline(1), message: failure })
		);

		// Bob fails: an outer hop.
		let packet = create_error_packet(&bob, &FailureMessage::UnknownNextPeer);
		assert_eq!(
			decrypt_trampoline_error_packet(&packet, &[bob, carol_outer], &[carol_tramp]),
			Ok(TrampolineFailure {
				hop: FailingHop::Outer(0),
				message: FailureMessage::UnknownNextPeer
			})
		);
	}
}
