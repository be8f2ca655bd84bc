//! Sphinx construction (BOLT 4 "Packet Construction"), including the filler, for
//! packets of any `hop_payloads` size.

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, Signing};

use crate::onion::keys::{self, derive_key, route_keys, KeyType, RouteKeysError};
use crate::onion::packet::{OnionPacket, MAX_HOP_PAYLOADS_LEN};
use crate::onion::tlv::read_length_prefix;

/// One hop of the onion being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SphinxHop {
	/// The node that peels this layer (for a blinded hop: its blinded node id).
	pub node_id: PublicKey,
	/// The hop payload, starting with its BigSize length prefix (as produced by
	/// `encode` on the payload types of this module).
	pub payload: Vec<u8>,
}

/// A freshly built onion and the secrets the sender keeps to read errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltOnion {
	/// The packet to send to the first hop.
	pub packet: OnionPacket,
	/// The shared secret of every hop, in route order.
	pub shared_secrets: Vec<SharedSecret>,
}

/// Error from [`build`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
	/// The route is empty.
	#[error("cannot build an onion for an empty route")]
	NoHops,
	/// The requested `hop_payloads` size is zero or above the supported maximum.
	#[error("hop_payloads size {len} is out of range (1..={max})", max = MAX_HOP_PAYLOADS_LEN)]
	InvalidPacketLength {
		/// The requested size.
		len: usize,
	},
	/// The payloads and their HMACs do not fit in the packet.
	#[error("hop payloads need {needed} bytes but the packet holds {available}; use fewer hops, smaller payloads or a bigger packet")]
	PayloadsTooLarge {
		/// Sum of `payload.len() + 32` over all hops.
		needed: usize,
		/// The packet's `hop_payloads` size.
		available: usize,
	},
	/// A payload does not start with a minimal BigSize equal to its remaining
	/// length, or is empty.
	#[error("payload of hop {hop_index} is not a length-prefixed TLV stream")]
	MalformedHopPayload {
		/// Index of the offending hop.
		hop_index: usize,
	},
	/// Deriving a hop's ephemeral key failed (negligible probability).
	#[error(transparent)]
	RouteKeys(#[from] RouteKeysError),
}

/// The smallest `hop_payloads` size that holds `hops`: the sum of
/// `payload.len() + 32`. Trampoline onions are often built this way (the spec test
/// vectors do), or padded to a fixed size such as 400 or 650 bytes.
pub fn exact_hop_payloads_len(hops: &[SphinxHop]) -> usize {
	hops.iter().map(|hop| hop.payload.len() + 32).sum()
}

/// Builds an onion packet with `hop_payloads_len` bytes of hop payloads (1300 for
/// a payment onion) for `hops`, bound to `associated_data` (the payment hash).
///
/// The unused end of the packet is filled from the `pad` keystream of the session
/// key, as BOLT 4 specifies, so the output is deterministic.
pub fn build<C: Signing>(
	secp: &Secp256k1<C>, session_key: &SecretKey, hops: &[SphinxHop], associated_data: &[u8],
	hop_payloads_len: usize,
) -> Result<BuiltOnion, BuildError> {
	if hops.is_empty() {
		return Err(BuildError::NoHops);
	}
	if hop_payloads_len == 0 || hop_payloads_len > MAX_HOP_PAYLOADS_LEN {
		return Err(BuildError::InvalidPacketLength { len: hop_payloads_len });
	}
	for (hop_index, hop) in hops.iter().enumerate() {
		match read_length_prefix(&hop.payload) {
			Ok((prefix_len, len)) if len > 0 && prefix_len + len == hop.payload.len() => {},
			_ => return Err(BuildError::MalformedHopPayload { hop_index }),
		}
	}
	let needed = exact_hop_payloads_len(hops);
	if needed > hop_payloads_len {
		return Err(BuildError::PayloadsTooLarge { needed, available: hop_payloads_len });
	}

	let pubkeys: Vec<PublicKey> = hops.iter().map(|hop| hop.node_id).collect();
	let route = route_keys(secp, session_key, &pubkeys)?;
	let rhos: Vec<[u8; 32]> =
		route.iter().map(|k| derive_key(KeyType::Rho, &k.shared_secret.secret_bytes())).collect();

	let filler = generate_filler(&rhos, hops, hop_payloads_len);

	let mut mix_header =
		keys::keystream(&derive_key(KeyType::Pad, &session_key.secret_bytes()), hop_payloads_len);
	let mut next_hmac = [0u8; 32];
	for (index, hop) in hops.iter().enumerate().rev() {
		let shift = hop.payload.len() + 32;
		mix_header.copy_within(0..hop_payloads_len - shift, shift);
		mix_header[..hop.payload.len()].copy_from_slice(&hop.payload);
		mix_header[hop.payload.len()..shift].copy_from_slice(&next_hmac);
		keys::apply_keystream(&rhos[index], 0, &mut mix_header);
		if index == hops.len() - 1 {
			let start = hop_payloads_len - filler.len();
			mix_header[start..].copy_from_slice(&filler);
		}
		let mu = derive_key(KeyType::Mu, &route[index].shared_secret.secret_bytes());
		next_hmac = keys::hmac_sha256(&mu, &[&mix_header, associated_data]);
	}

	let packet = OnionPacket::new(route[0].ephemeral_pubkey, mix_header, next_hmac)
		.map_err(|_| BuildError::InvalidPacketLength { len: hop_payloads_len })?;
	Ok(BuiltOnion { packet, shared_secrets: route.into_iter().map(|k| k.shared_secret).collect() })
}

/// The filler: what the last hop will see at the end of its `hop_payloads` after
/// every earlier hop has shifted in (and decrypted) its share of zero bytes.
fn generate_filler(rhos: &[[u8; 32]], hops: &[SphinxHop], hop_payloads_len: usize) -> Vec<u8> {
	let mut filler: Vec<u8> = Vec::new();
	for (rho, hop) in rhos.iter().zip(hops).take(hops.len() - 1) {
		let start = hop_payloads_len - filler.len();
		filler.resize(filler.len() + hop.payload.len() + 32, 0);
		keys::apply_keystream(rho, start, &mut filler);
	}
	filler
}
