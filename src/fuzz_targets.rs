//! Entry points of the fuzz targets (`fuzz/`, run with `cargo fuzz`) and of
//! their smoke test in CI (`plugin-tests/fuzz_smoke.rs`). Not an API: each
//! function takes arbitrary bytes and must neither panic nor allocate more
//! than a bound proportional to its input.
//!
//! Onion layers are built here without ECDH: the peel callbacks return a
//! fixed shared secret, and the packets are encrypted and authenticated with
//! it, so the fuzzer controls the plaintext behind a valid HMAC. The only
//! properties checked beyond "no panic" are crypto-free ones (a decoded
//! payload or failure message re-encodes to itself; a rewritten
//! `update_add_htlc` changes nothing but its onion): under `cfg(fuzzing)`
//! LDK's ChaCha20 is a no-op, so no check rests on an encrypted round trip.

use std::sync::{Arc, OnceLock};

use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use chacha20_poly1305::chacha20::ChaCha20;
use chacha20_poly1305::{Key, Nonce};
use lightning::ln::msgs::{self, UpdateAddHTLC};
use lightning::ln::types::ChannelId;
use lightning::sign::{KeysManager, NodeSigner, Recipient};
use lightning::types::payment::{PaymentHash, PaymentSecret};

use crate::handler::rewrite_update_add;
use crate::onion::{
	self, derive_key, FailureMessage, KeyType, OnionPacket, OuterHop, OuterPayload, PaymentData,
	TlvLayout, TrampolineHop, TrampolinePayload, UnknownTlvs, PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use crate::relay::{RelayCore, RelayLimits, TrampolinePolicy};
use crate::testkit::{MemoryStore, NoLogger, SecretIssuer, StandInNode};

/// The largest trampoline `hop_payloads` the targets build (the fuzzer may
/// still hand the decoders anything).
const MAX_TRAMPOLINE_PAYLOADS: usize = 1_300;

/// Reads fields off the front of the fuzz input; past its end every read
/// yields zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
	fn bytes(&mut self, n: usize) -> &'a [u8] {
		let (head, tail) = self.0.split_at(n.min(self.0.len()));
		self.0 = tail;
		head
	}

	fn array<const N: usize>(&mut self) -> [u8; N] {
		let mut out = [0u8; N];
		let head = self.bytes(N);
		out[..head.len()].copy_from_slice(head);
		out
	}

	fn u8(&mut self) -> u8 {
		self.array::<1>()[0]
	}

	fn u16(&mut self) -> u16 {
		u16::from_be_bytes(self.array())
	}

	fn u32(&mut self) -> u32 {
		u32::from_be_bytes(self.array())
	}

	fn u64(&mut self) -> u64 {
		u64::from_be_bytes(self.array())
	}

	fn rest(&mut self) -> &'a [u8] {
		std::mem::take(&mut self.0)
	}
}

/// Keys every target shares (computed once).
struct Fixture {
	secp: Secp256k1<All>,
	/// The node the onions are for, as an LDK signer.
	keys: Arc<KeysManager>,
	node_id: PublicKey,
	/// The ephemeral key of every crafted packet and the node's shared secret
	/// with it.
	ephemeral: PublicKey,
	shared_secret: SharedSecret,
	/// The payer's node id.
	payer: PublicKey,
}

fn fixture() -> &'static Fixture {
	static FIXTURE: OnceLock<Fixture> = OnceLock::new();
	FIXTURE.get_or_init(|| {
		let secp = Secp256k1::new();
		let keys = Arc::new(KeysManager::new(&[0x41; 32], 1_700_000_000, 0, true));
		let node_id = keys.get_node_id(Recipient::Node).unwrap_or_else(|()| unreachable!());
		let key = |byte| SecretKey::from_slice(&[byte; 32]).unwrap_or_else(|_| unreachable!());
		let ephemeral = PublicKey::from_secret_key(&secp, &key(0x42));
		let shared_secret = keys
			.ecdh(Recipient::Node, &ephemeral, None)
			.unwrap_or_else(|()| unreachable!("a valid point"));
		let payer = PublicKey::from_secret_key(&secp, &key(0x43));
		Fixture { secp, keys, node_id, ephemeral, shared_secret, payer }
	})
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
	let mut engine = hmac::HmacEngine::<sha256::Hash>::new(key);
	for part in parts {
		engine.input(part);
	}
	hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array()
}

/// A packet of `len` hop_payloads bytes whose layer, peeled with
/// `shared_secret`, is `plaintext` (cut or zero-padded to `len`).
fn craft_packet(
	shared_secret: &SharedSecret, public_key: PublicKey, plaintext: &[u8], len: usize,
	associated_data: &[u8],
) -> Option<OnionPacket> {
	let ss = shared_secret.secret_bytes();
	let mut hop_payloads = plaintext[..plaintext.len().min(len)].to_vec();
	hop_payloads.resize(len, 0);
	let rho = derive_key(KeyType::Rho, &ss);
	ChaCha20::new(Key::new(rho), Nonce::new([0u8; 12]), 0).apply_keystream(&mut hop_payloads);
	let hmac = hmac_sha256(&derive_key(KeyType::Mu, &ss), &[&hop_payloads, associated_data]);
	OnionPacket::new(public_key, hop_payloads, hmac).ok()
}

/// A hop payload: `stream` behind its BigSize length prefix.
fn with_length_prefix(stream: &[u8]) -> Vec<u8> {
	let mut out = Vec::with_capacity(stream.len() + 3);
	match stream.len() {
		n @ 0..=0xfc => out.push(n as u8),
		n => {
			out.push(0xfd);
			out.extend_from_slice(&(n.min(usize::from(u16::MAX)) as u16).to_be_bytes());
		},
	}
	out.extend_from_slice(stream);
	out
}

/// Decoding is deterministic and what it yields encodes back to itself.
fn check_outer(payload: &[u8]) {
	if let Ok(decoded) = OuterPayload::decode(payload) {
		if let Ok(encoded) = decoded.encode() {
			assert_eq!(OuterPayload::decode(&encoded).ok(), Some(decoded), "outer re-encoding");
		}
	}
}

fn check_trampoline(payload: &[u8]) {
	if let Ok(decoded) = TrampolinePayload::decode(payload) {
		if let Ok(encoded) = decoded.encode() {
			assert_eq!(
				TrampolinePayload::decode(&encoded).ok(),
				Some(decoded),
				"trampoline re-encoding"
			);
		}
	}
}

/// Peels `packet` with the fixture's secret and looks at everything the
/// layer yields.
fn peel_fixed(packet: &OnionPacket, associated_data: &[u8]) -> Option<onion::PeeledOnion> {
	let fx = fixture();
	let peeled = onion::peel(&fx.secp, packet, associated_data, |_| Ok(fx.shared_secret)).ok()?;
	let _ = peeled.tlv_stream();
	if let onion::NextPacket::Forward(next) = &peeled.next {
		let _ = next.to_bytes();
	}
	Some(peeled)
}

/// The payment onion at its final hop: parse a packet, peel its layer and
/// decode the outer payload.
///
/// First byte even: the rest is a serialized packet (its HMAC is almost
/// never valid) and, separately, an outer payload. Odd: the rest is the
/// plaintext of a 1300-byte layer behind a valid HMAC.
pub fn outer_onion(data: &[u8]) {
	let mut input = Input(data);
	let mode = input.u8();
	let rest = input.rest();
	if mode & 1 == 0 {
		if let Ok(packet) = OnionPacket::from_bytes(rest) {
			let _ = packet.to_bytes();
			if let Some(peeled) = peel_fixed(&packet, &[0; 32]) {
				check_outer(&peeled.payload);
			}
			let _ = msgs::OnionPacket::try_from(&packet);
		}
		check_outer(rest);
		return;
	}
	let fx = fixture();
	let Some(packet) = craft_packet(
		&fx.shared_secret,
		fx.ephemeral,
		rest,
		PAYMENT_ONION_HOP_PAYLOADS_LEN,
		&[7; 32],
	) else {
		return;
	};
	if let Some(peeled) = peel_fixed(&packet, &[7; 32]) {
		check_outer(&peeled.payload);
	}
}

/// The trampoline onion: carried in an outer payload under type 20 (spec) or
/// 66100 (legacy), peeled, its payload decoded (spec or legacy eclair
/// numbering).
///
/// First byte: bit 0 picks the outer layout, bit 1 whether the rest is a raw
/// trampoline payload (also decoded as a serialized packet); otherwise two
/// bytes of `hop_payloads` length and the layer's plaintext follow.
pub fn trampoline_onion(data: &[u8]) {
	let mut input = Input(data);
	let mode = input.u8();
	if mode & 2 != 0 {
		let rest = input.rest();
		check_trampoline(rest);
		if let Ok(packet) = OnionPacket::from_bytes(rest) {
			if let Some(peeled) = peel_fixed(&packet, &[0; 32]) {
				check_trampoline(&peeled.payload);
			}
		}
		return;
	}
	let layout = if mode & 1 == 0 { TlvLayout::Spec } else { TlvLayout::Legacy };
	let len = usize::from(input.u16()) % MAX_TRAMPOLINE_PAYLOADS + 1;
	let plaintext = input.rest();
	let fx = fixture();
	let hash = [9u8; 32];
	let Some(trampoline) = craft_packet(&fx.shared_secret, fx.ephemeral, plaintext, len, &hash)
	else {
		return;
	};
	let outer = OuterPayload::new(OuterHop::TrampolineEntry {
		amt_to_forward: 1_000,
		outgoing_cltv_value: 500,
		payment_data: None,
		current_path_key: None,
		trampoline_onion: trampoline,
		layout,
	});
	// Through the outer payload codec, as the handler receives it.
	let Ok(encoded) = outer.encode() else { return };
	let Ok(OuterPayload { hop: OuterHop::TrampolineEntry { trampoline_onion, .. }, .. }) =
		OuterPayload::decode(&encoded)
	else {
		return;
	};
	if let Some(peeled) = peel_fixed(&trampoline_onion, &hash) {
		check_trampoline(&peeled.payload);
		if let Err(e) = TrampolinePayload::decode(&peeled.payload) {
			let _ = e.to_failure().encode();
		}
	}
}

/// A failure message (the decrypted `failuremsg`): decode, and re-encode.
pub fn failure_message(data: &[u8]) {
	if let Ok(message) = FailureMessage::decode(data) {
		let _ = (message.code(), message.is_permanent(), message.is_node_failure());
		assert_eq!(FailureMessage::decode(&message.encode()).ok(), Some(message), "re-encoding");
	}
	if data.len() >= 2 {
		let _ = FailureMessage::bad_onion(u16::from_be_bytes([data[0], data[1]]), &data[2..]);
	}
}

/// An error packet at the origin of a payment, over up to 7 outer and 7
/// trampoline hops.
///
/// First byte: outer hops (bits 0-2), trampoline hops (bits 3-5), and bit 6
/// set for a packet created by one of them from the failure message in the
/// rest (the index in the next byte) and wrapped on its way back; clear for
/// a raw packet.
pub fn error_packet(data: &[u8]) {
	let mut input = Input(data);
	let shape = input.u8();
	let outer_hops = usize::from(shape & 7);
	let trampoline_hops = usize::from((shape >> 3) & 7);
	let secret = |i: usize| SharedSecret::from_bytes([i as u8 + 1; 32]);
	let outer: Vec<SharedSecret> = (0..outer_hops).map(secret).collect();
	let trampoline: Vec<SharedSecret> =
		(outer_hops..outer_hops + trampoline_hops).map(secret).collect();
	let all: Vec<SharedSecret> = outer.iter().chain(&trampoline).copied().collect();
	let packet = if shape & 0x40 == 0 {
		input.rest().to_vec()
	} else {
		if all.is_empty() {
			return;
		}
		let origin = usize::from(input.u8()) % all.len();
		let mut packet = onion::create_error_packet_from_bytes(&all[origin], input.rest());
		for ss in all[..origin].iter().rev() {
			onion::wrap_error_packet(ss, &mut packet);
		}
		packet
	};
	let _ = onion::peel_error_packet(&packet, &all);
	let _ = onion::decrypt_error_packet(&packet, &outer);
	let _ = onion::decrypt_trampoline_error_packet(&packet, &outer, &trampoline);
}

/// One `update_add_htlc` built from the input.
fn fuzz_add(input: &mut Input<'_>) -> UpdateAddHTLC {
	let fx = fixture();
	let flags = input.u8();
	let channel_id = ChannelId([input.u8() & 3; 32]);
	let htlc_id = u64::from(input.u8() & 7);
	let amount_msat = input.u64();
	let cltv_expiry = input.u32();
	let payment_hash = PaymentHash([input.u8() & 3; 32]);
	let kind = flags & 3;
	let (public_key, hop_data, hmac) = if kind == 0 {
		// Raw onion bytes: a key that may not parse, an HMAC that may not match.
		let key = input.array::<33>();
		(PublicKey::from_slice(&key), input.bytes(1300).to_vec(), input.array::<32>())
	} else {
		let outer_stream = if kind == 1 {
			// An arbitrary outer payload behind a valid HMAC.
			let len = usize::from(input.u16()) % 1300;
			input.bytes(len).to_vec()
		} else {
			// A trampoline entry whose inner layer is raw (2) or a forward (3).
			let layout = if flags & 4 == 0 { TlvLayout::Spec } else { TlvLayout::Legacy };
			let amt_to_forward = input.u64() >> (input.u8() & 63);
			let outgoing_cltv_value = input.u32();
			let payment_data = (flags & 8 != 0).then(|| PaymentData {
				payment_secret: PaymentSecret([input.u8() & 3; 32]),
				total_msat: input.u64() >> (input.u8() & 63),
			});
			let inner = if kind == 2 {
				let len = usize::from(input.u16()) % 600;
				input.bytes(len).to_vec()
			} else {
				let hop = TrampolineHop::ToTrampoline {
					amt_to_forward: input.u64() >> (input.u8() & 63),
					outgoing_cltv_value: input.u32(),
					outgoing_node_id: fx.payer,
					async_payment: flags & 16 != 0,
					layout,
				};
				let mut inner = TrampolinePayload::new(hop).encode().unwrap_or_default();
				if flags & 32 != 0 {
					// A non-zero next HMAC: a packet for the next trampoline.
					inner.extend_from_slice(&input.array::<32>());
				}
				inner
			};
			let inner_len = usize::from(input.u16()) % 800 + 1;
			let Some(trampoline_onion) = craft_packet(
				&fx.shared_secret,
				fx.ephemeral,
				&inner,
				inner_len.max(inner.len() + 32),
				&payment_hash.0,
			) else {
				return empty_add(channel_id, htlc_id, amount_msat, cltv_expiry, payment_hash);
			};
			let outer = OuterPayload {
				hop: OuterHop::TrampolineEntry {
					amt_to_forward,
					outgoing_cltv_value,
					payment_data,
					current_path_key: None,
					trampoline_onion,
					layout,
				},
				unknown_tlvs: UnknownTlvs::new(),
			};
			outer.encode().unwrap_or_default()
		};
		let plaintext = if kind == 1 { with_length_prefix(&outer_stream) } else { outer_stream };
		match craft_packet(
			&fx.shared_secret,
			fx.ephemeral,
			&plaintext,
			PAYMENT_ONION_HOP_PAYLOADS_LEN,
			&payment_hash.0,
		) {
			Some(packet) => {
				(Ok(*packet.public_key()), packet.hop_payloads().to_vec(), *packet.hmac())
			},
			None => return empty_add(channel_id, htlc_id, amount_msat, cltv_expiry, payment_hash),
		}
	};
	let mut data = [0u8; 1300];
	data[..hop_data.len()].copy_from_slice(&hop_data);
	UpdateAddHTLC {
		channel_id,
		htlc_id,
		amount_msat,
		payment_hash,
		cltv_expiry,
		skimmed_fee_msat: None,
		onion_routing_packet: msgs::OnionPacket {
			version: if flags & 0x80 == 0 { 0 } else { 1 },
			public_key,
			hop_data: data,
			hmac,
		},
		blinding_point: None,
		hold_htlc: None,
	}
}

fn empty_add(
	channel_id: ChannelId, htlc_id: u64, amount_msat: u64, cltv_expiry: u32,
	payment_hash: PaymentHash,
) -> UpdateAddHTLC {
	UpdateAddHTLC {
		channel_id,
		htlc_id,
		amount_msat,
		payment_hash,
		cltv_expiry,
		skimmed_fee_msat: None,
		onion_routing_packet: msgs::OnionPacket {
			version: 0,
			public_key: Ok(fixture().ephemeral),
			hop_data: [0; 1300],
			hmac: [0; 32],
		},
		blinding_point: None,
		hold_htlc: None,
	}
}

/// The handler's decision on up to four `update_add_htlc`s in a row, on a
/// fresh relay with an in-memory store (so that parts of one payment,
/// retransmissions and reused HTLC ids meet).
///
/// First byte: what the node answers (bit 0: the channel exists, bit 1: LDK
/// holds the HTLC, bit 2: LDK issues secrets) and, in bits 4-5, how many
/// adds follow (one more than that).
pub fn update_add(data: &[u8]) {
	let fx = fixture();
	let mut input = Input(data);
	let node_flags = input.u8();
	let node = StandInNode {
		node_id: fx.node_id,
		secrets: if node_flags & 4 != 0 { SecretIssuer::HashOfHash } else { SecretIssuer::Refuse },
		has_channel: node_flags & 1 != 0,
		has_inbound_htlc: node_flags & 2 != 0,
	};
	let Ok(core) = RelayCore::new(
		Arc::clone(&fx.keys) as Arc<dyn NodeSigner + Send + Sync>,
		Arc::new(MemoryStore::default()),
		TrampolinePolicy::default(),
		RelayLimits::default(),
		Arc::new(NoLogger),
	) else {
		return;
	};
	for _ in 0..=((node_flags >> 4) & 3) {
		let msg = fuzz_add(&mut input);
		if let Some(rewritten) = rewrite_update_add(&core, &node, &fx.payer, &msg) {
			// Only the onion changes: what LDK commits is the payer's HTLC.
			assert_eq!(
				UpdateAddHTLC {
					onion_routing_packet: msg.onion_routing_packet.clone(),
					..rewritten
				},
				msg,
				"the rewrite changed more than the onion"
			);
		}
	}
}
