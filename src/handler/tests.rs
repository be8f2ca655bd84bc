//! The message handler's two rewrites end to end at the byte level, against
//! a real node signer and an in-memory store: an `update_add_htlc` built as
//! a payer builds it (spec type 20 or legacy 66100), LDK's failure of the
//! rewritten HTLC, and the failure the payer decrypts, read the way Electrum
//! reads it.

use std::sync::Arc;

use bitcoin::hashes::{sha256, Hash, HashEngine, Hmac, HmacEngine};
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use chacha20_poly1305::chacha20::ChaCha20;
use chacha20_poly1305::{Key, Nonce};
use lightning::ln::msgs::{self, UpdateAddHTLC, UpdateFailHTLC};
use lightning::ln::types::ChannelId;
use lightning::sign::{KeysManager, NodeSigner, Recipient};
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning::util::ser::LengthReadable;

use super::{fail, rewrite};
use crate::onion::{
	self, codes, derive_key, FailureMessage, KeyType, OnionPacket, OuterHop, OuterPayload,
	PaymentData, SphinxHop, TlvLayout, TrampolineHop, TrampolinePayload,
	PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use crate::relay::store::{bucket_id, htlc_key, BucketState};
use crate::relay::{
	Dialect, FailReason, RelayCore, RelayLimits, TrampolinePolicy, BUCKET_TLV_TYPE,
};
use crate::testkit::{MemoryStore, NoLogger, SecretIssuer, StandInNode};

const HASH: PaymentHash = PaymentHash([0x42; 32]);
const HEIGHT: u32 = 1_000;
const CHANNEL: ChannelId = ChannelId([7; 32]);

struct Relay {
	core: RelayCore,
	/// Our node as the rewrite sees it: every channel exists, LDK holds no
	/// HTLC yet, and issues a secret per hash.
	node: StandInNode,
	payer: PublicKey,
}

fn relay() -> Relay {
	let keys = Arc::new(KeysManager::new(&[3; 32], 1, 0, true));
	let node = StandInNode {
		node_id: keys.get_node_id(Recipient::Node).unwrap(),
		secrets: SecretIssuer::HashOfHash,
		has_channel: true,
		has_inbound_htlc: false,
	};
	let core = RelayCore::new(
		keys as Arc<dyn NodeSigner + Send + Sync>,
		Arc::new(MemoryStore::default()),
		TrampolinePolicy::default(),
		RelayLimits::default(),
		Arc::new(NoLogger),
	)
	.unwrap();
	let secp = Secp256k1::new();
	let payer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[9; 32]).unwrap());
	Relay { core, node, payer }
}

fn key(byte: u8) -> SecretKey {
	SecretKey::from_slice(&[byte; 32]).unwrap()
}

/// What the payer built: the add, and its shared secrets with us (outer,
/// then one per trampoline layer).
struct Sent {
	add: UpdateAddHTLC,
	outer: SharedSecret,
	trampoline: Vec<SharedSecret>,
}

/// An add of `amount_msat` whose outer payload (type 20 or 66100 as
/// `layout`) carries a trampoline onion of `layers` (each for us), with
/// outer payment data `outer_secret` / `outer_total`.
fn send(
	relay: &Relay, layout: TlvLayout, layers: &[TrampolineHop], amount_msat: u64, outer_total: u64,
	htlc_id: u64,
) -> Sent {
	send_for(relay, HASH, layout, layers, amount_msat, outer_total, htlc_id)
}

/// [`send`] for payment hash `hash`.
fn send_for(
	relay: &Relay, hash: PaymentHash, layout: TlvLayout, layers: &[TrampolineHop],
	amount_msat: u64, outer_total: u64, htlc_id: u64,
) -> Sent {
	let secp = Secp256k1::new();
	let us = relay.node.node_id;
	let hops: Vec<SphinxHop> = layers
		.iter()
		.map(|hop| SphinxHop {
			node_id: us,
			payload: TrampolinePayload::new(hop.clone()).encode().unwrap(),
		})
		.collect();
	let trampoline = onion::build(&secp, &key(11), &hops, &hash.0, 400).unwrap();
	let outer_payload = OuterPayload::new(OuterHop::TrampolineEntry {
		amt_to_forward: amount_msat,
		outgoing_cltv_value: HEIGHT + 700,
		payment_data: Some(PaymentData {
			payment_secret: PaymentSecret([5; 32]),
			total_msat: outer_total,
		}),
		current_path_key: None,
		trampoline_onion: trampoline.packet,
		layout,
	});
	let outer = onion::build(
		&secp,
		&key(12),
		&[SphinxHop { node_id: us, payload: outer_payload.encode().unwrap() }],
		&hash.0,
		PAYMENT_ONION_HOP_PAYLOADS_LEN,
	)
	.unwrap();
	let add = UpdateAddHTLC {
		channel_id: CHANNEL,
		htlc_id,
		amount_msat,
		payment_hash: hash,
		cltv_expiry: HEIGHT + 700,
		skimmed_fee_msat: None,
		onion_routing_packet: msgs::OnionPacket::try_from(&outer.packet).unwrap(),
		blinding_point: None,
		hold_htlc: None,
	};
	Sent { add, outer: outer.shared_secrets[0], trampoline: trampoline.shared_secrets }
}

/// Electrum's legacy "trampoline to legacy recipient" payload.
fn to_legacy_recipient() -> TrampolineHop {
	TrampolineHop::ToLegacyRecipient {
		amt_to_forward: 1_000_000,
		outgoing_cltv_value: HEIGHT + 100,
		outgoing_node_id: PublicKey::from_secret_key(&Secp256k1::new(), &key(20)),
		payment_data: PaymentData { payment_secret: PaymentSecret([6; 32]), total_msat: 1_000_000 },
		payment_metadata: None,
		invoice_features: None,
		invoice_routing_info: Vec::new(),
	}
}

/// What LDK does with a rewritten add it fails: an error packet under the
/// rewrite's secret, in an `update_fail_htlc` of the same HTLC.
fn ldk_fails(relay: &Relay, add: &UpdateAddHTLC, failure: &FailureMessage) -> UpdateFailHTLC {
	let record = relay.core.store.htlc(&htlc_key(&add.channel_id, add.htlc_id)).unwrap();
	let packet = onion::create_error_packet(
		&SharedSecret::from_bytes(record.rewrite_shared_secret),
		failure,
	);
	update_fail(add, &packet)
}

fn update_fail(add: &UpdateAddHTLC, reason: &[u8]) -> UpdateFailHTLC {
	let wire = [
		add.channel_id.0.as_slice(),
		&add.htlc_id.to_be_bytes(),
		&(reason.len() as u16).to_be_bytes(),
		reason,
	]
	.concat();
	UpdateFailHTLC::read_from_fixed_length_buffer(&mut wire.as_slice()).unwrap()
}

/// Electrum's `_decode_onion_error` and `get_failure_msg_from_onion_error`
/// (`lnonion.py`), written out again: for each of the payer's outer route
/// secrets in turn, XOR the `ammag` ChaCha20 stream (zero nonce) over the
/// whole packet and compare `HMAC-SHA256(um, packet[32..])` with
/// `packet[..32]`; on a match, `failure_len` is at 32..34 and the message
/// follows. Also checks what Electrum assumes: the BOLT 4 padding (zeros,
/// `failure_len + pad_len == 256` for messages that short). Returns the
/// sender index and the code.
fn electrum_decode(packet: &[u8], outer_route: &[SharedSecret]) -> Option<(usize, u16, Vec<u8>)> {
	let mut packet = packet.to_vec();
	for (index, secret) in outer_route.iter().enumerate() {
		let ammag = derive_key(KeyType::Ammag, &secret.secret_bytes());
		let um = derive_key(KeyType::Um, &secret.secret_bytes());
		ChaCha20::new(Key::new(ammag), Nonce::new([0; 12]), 0).apply_keystream(&mut packet);
		let mut engine = HmacEngine::<sha256::Hash>::new(&um);
		engine.input(&packet[32..]);
		let hmac = Hmac::<sha256::Hash>::from_engine(engine).to_byte_array();
		if hmac[..] != packet[..32] {
			continue;
		}
		let failure_len = usize::from(u16::from_be_bytes([packet[32], packet[33]]));
		let message = packet[34..34 + failure_len].to_vec();
		let pad_at = 34 + failure_len;
		let pad_len = usize::from(u16::from_be_bytes([packet[pad_at], packet[pad_at + 1]]));
		assert_eq!(packet.len(), pad_at + 2 + pad_len, "padding does not add up");
		assert!(packet[pad_at + 2..].iter().all(|b| *b == 0), "padding is not zeros");
		if failure_len <= 256 {
			assert_eq!(failure_len + pad_len, 256);
		}
		let code = u16::from_be_bytes([message[0], message[1]]);
		return Some((index, code, message[2..].to_vec()));
	}
	None
}

#[test]
fn the_electrum_decoder_reads_the_bolt4_error_vector() {
	// The reimplementation above against BOLT 4's error vector: node 4 of
	// five fails with temporary_node_failure.
	let manifest = env!("CARGO_MANIFEST_DIR");
	let path = ["/../shared/spec-vectors/", "/../../shared/spec-vectors/"]
		.iter()
		.map(|dir| format!("{manifest}{dir}onion-error-test.json"))
		.find(|p| std::path::Path::new(p).exists())
		.expect("onion-error-test.json in ../shared/spec-vectors or ../../shared/spec-vectors");
	let vector: serde_json::Value =
		serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
	let hex =
		|v: &serde_json::Value| <Vec<u8> as hex::FromHex>::from_hex(v.as_str().unwrap()).unwrap();
	let secrets: Vec<SharedSecret> = vector["generate"]["hops"]
		.as_array()
		.unwrap()
		.iter()
		.map(|hop| SharedSecret::from_slice(&hex(&hop["hop_shared_secret"])).unwrap())
		.collect();
	let packet = hex(&vector["errorpacket"]);
	let (index, code, _) = electrum_decode(&packet, &secrets).expect("decoded");
	assert_eq!((index, code), (4, codes::TEMPORARY_NODE_FAILURE));
}

#[test]
fn each_bucket_records_the_dialect_its_payer_spoke() {
	let relay = relay();
	let legacy = send(&relay, TlvLayout::Legacy, &[to_legacy_recipient()], 1_010_000, 1_010_000, 0);
	assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &legacy.add).is_some());
	// The same legacy payload, in a type-20 onion (our own sender's shape).
	let other = PaymentHash([0x43; 32]);
	let layers = [to_legacy_recipient()];
	let spec = send_for(&relay, other, TlvLayout::Spec, &layers, 1_010_000, 1_010_000, 1);
	assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &spec.add).is_some());

	let legacy_bucket =
		relay.core.store.bucket(&bucket_id(&HASH, &PaymentSecret([5; 32]))).unwrap();
	assert_eq!(legacy_bucket.dialect, Dialect::Legacy);
	let spec_bucket = relay
		.core
		.store
		.bucket(&bucket_id(&PaymentHash([0x43; 32]), &PaymentSecret([5; 32])))
		.unwrap();
	assert_eq!(spec_bucket.dialect, Dialect::Spec);
	let record = relay.core.store.htlc(&htlc_key(&CHANNEL, 0)).unwrap();
	assert_eq!(record.dialect, Dialect::Legacy);
	// Operators see it.
	let stats = relay.core.stats();
	assert_eq!((stats.legacy, stats.spec), (1, 1));
	let mut dialects: Vec<Dialect> = relay.core.buckets().iter().map(|b| b.dialect).collect();
	dialects.sort_by_key(|d| *d == Dialect::Legacy);
	assert_eq!(dialects, vec![Dialect::Spec, Dialect::Legacy]);
	// Each bucket's first HTLC starts its timing.
	assert_eq!(relay.core.metrics().timed_buckets(), 2);
}

#[test]
fn a_bucket_ldk_gave_up_on_counts_as_a_failure_once() {
	let relay = relay();
	let sent = send(&relay, TlvLayout::Legacy, &[to_legacy_recipient()], 1_010_000, 1_010_000, 0);
	assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add).is_some());
	assert_eq!(relay.core.metrics().timed_buckets(), 1);
	// LDK's MPP timeout fails the only part: the bucket is over.
	let series = "relay_failures_total{dialect=\"legacy\",reason=\"mpp_timeout\",code=\"0x0017\"}";
	for _ in 0..2 {
		let mut fail = ldk_fails(&relay, &sent.add, &FailureMessage::MppTimeout);
		fail::rewrite_fail(&relay.core, &mut fail);
		assert_eq!(relay.core.metrics().sample(series), Some(1.0));
	}
	assert_eq!(relay.core.metrics().timed_buckets(), 0);
	// Not a refusal: the HTLC was admitted.
	assert_eq!(relay.core.metrics().sample("relay_refusals_total"), None);
}

/// Fails the bucket of `sent` for `reason` (as the relay's event hook
/// records it), lets LDK fail the HTLC, and returns what goes on the wire.
fn bucket_failure_on_the_wire(relay: &Relay, sent: &Sent, reason: FailReason) -> Vec<u8> {
	assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add).is_some());
	let id = bucket_id(&sent.add.payment_hash, &PaymentSecret([5; 32]));
	relay
		.core
		.store
		.update_bucket(&id, |b| {
			b.state = BucketState::Failed {
				failure: FailureMessage::TemporaryTrampolineFailure.encode(),
				forwarded: Some(vec![0xaa; 292]),
				reason: Some(reason.clone()),
			}
		})
		.unwrap();
	let mut fail = ldk_fails(
		relay,
		&sent.add,
		&FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: 1, height: HEIGHT },
	);
	fail::rewrite_fail(&relay.core, &mut fail);
	fail::reason_of(&fail).unwrap()
}

#[test]
fn a_legacy_payer_decrypts_our_failure_with_its_outer_secret_alone() {
	for (reason, code) in [
		(FailReason::FeeInsufficient, codes::TRAMPOLINE_FEE_INSUFFICIENT),
		(FailReason::ExpiryTooSoon, codes::TRAMPOLINE_EXPIRY_TOO_SOON),
		(FailReason::NoRouteWithinBudget, codes::TRAMPOLINE_FEE_INSUFFICIENT),
		(FailReason::FailedOnTheWay, codes::TEMPORARY_CHANNEL_FAILURE),
		(FailReason::UnknownNextNode, codes::TRAMPOLINE_FEE_INSUFFICIENT),
		(FailReason::HoldExpired, codes::TEMPORARY_NODE_FAILURE),
		(FailReason::MppTimeout, codes::MPP_TIMEOUT),
		// A packet from further down the route (recorded as forwarded) is
		// never passed to a legacy payer, who could not read it.
		(FailReason::DownstreamUnreadable, codes::TEMPORARY_NODE_FAILURE),
	] {
		let relay = relay();
		let sent =
			send(&relay, TlvLayout::Legacy, &[to_legacy_recipient()], 1_010_000, 1_010_000, 0);
		let packet = bucket_failure_on_the_wire(&relay, &sent, reason.clone());
		// Electrum's outer route is the one hop to us.
		let decoded = electrum_decode(&packet, &[sent.outer]);
		assert_eq!(decoded.map(|(i, c, _)| (i, c)), Some((0, code)), "{reason:?}");
		// And what we record as sent is what the payer read.
		let record = relay.core.store.htlc(&htlc_key(&CHANNEL, 0)).unwrap();
		let sent_code = FailureMessage::decode(&record.failure_sent.unwrap()).unwrap().code();
		assert_eq!(sent_code, code);
	}
}

#[test]
fn a_spec_payer_keeps_its_double_wrapped_25_26_27() {
	for (reason, code) in [
		(FailReason::FeeInsufficient, codes::TRAMPOLINE_FEE_OR_EXPIRY_INSUFFICIENT),
		(FailReason::ExpiryTooSoon, codes::TRAMPOLINE_FEE_OR_EXPIRY_INSUFFICIENT),
		(FailReason::UnknownNextNode, codes::UNKNOWN_NEXT_TRAMPOLINE),
		(FailReason::HoldExpired, codes::TEMPORARY_TRAMPOLINE_FAILURE),
	] {
		let relay = relay();
		let sent = send(&relay, TlvLayout::Spec, &[to_legacy_recipient()], 1_010_000, 1_010_000, 0);
		// No forwarded packet this time: ours.
		assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add).is_some());
		let id = bucket_id(&HASH, &PaymentSecret([5; 32]));
		relay
			.core
			.store
			.update_bucket(&id, |b| {
				b.state = BucketState::Failed {
					failure: Vec::new(),
					forwarded: None,
					reason: Some(reason.clone()),
				}
			})
			.unwrap();
		let mut fail = ldk_fails(&relay, &sent.add, &FailureMessage::TemporaryNodeFailure);
		fail::rewrite_fail(&relay.core, &mut fail);
		let packet = fail::reason_of(&fail).unwrap();
		// Not readable with the outer secret alone (Electrum would crash)...
		assert_eq!(electrum_decode(&packet, &[sent.outer]), None);
		// ...but through both layers, from trampoline 0.
		let failure =
			onion::decrypt_trampoline_error_packet(&packet, &[sent.outer], &sent.trampoline)
				.unwrap();
		assert_eq!(failure.hop, onion::FailingHop::Trampoline(0));
		assert_eq!(failure.message.code(), code, "{reason:?}");
	}
}

#[test]
fn a_legacy_rejection_at_the_door_is_readable_too() {
	// The payer offers more than the HTLC carries: rejected at once, with
	// final_incorrect_htlc_amount, under the outer secret alone.
	let relay = relay();
	let mut sent =
		send(&relay, TlvLayout::Legacy, &[to_legacy_recipient()], 1_010_000, 1_010_000, 0);
	sent.add.amount_msat = 1_000;
	assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add).is_some());
	let record = relay.core.store.htlc(&htlc_key(&CHANNEL, 0)).unwrap();
	assert_eq!(record.dialect, Dialect::Legacy);
	assert!(matches!(record.reject_reason, Some(FailReason::Verbatim { .. })));
	let mut fail = ldk_fails(&relay, &sent.add, &FailureMessage::TemporaryNodeFailure);
	fail::rewrite_fail(&relay.core, &mut fail);
	let packet = fail::reason_of(&fail).unwrap();
	let (_, code, data) = electrum_decode(&packet, &[sent.outer]).expect("readable");
	assert_eq!(code, codes::FINAL_INCORRECT_HTLC_AMOUNT);
	assert_eq!(data, 1_000u64.to_be_bytes());
	// Counted as a refusal, once: LDK sending the failure again (a
	// reconnection) does not count it twice; no bucket was timed.
	let refused = "relay_refusals_total{dialect=\"legacy\",reason=\"verbatim\",code=\"0x0013\"}";
	assert_eq!(relay.core.metrics().sample(refused), Some(1.0));
	let mut again = ldk_fails(&relay, &sent.add, &FailureMessage::TemporaryNodeFailure);
	fail::rewrite_fail(&relay.core, &mut again);
	assert_eq!(relay.core.metrics().sample(refused), Some(1.0));
	assert_eq!(relay.core.metrics().timed_buckets(), 0);
}

/// Electrum's first layer for an invoice of ours with us as its trampoline:
/// the next trampoline is `us`.
fn next_trampoline_is(us: PublicKey) -> TrampolineHop {
	TrampolineHop::ToTrampoline {
		amt_to_forward: 1_000_000,
		outgoing_cltv_value: HEIGHT + 18,
		outgoing_node_id: us,
		async_payment: false,
		layout: TlvLayout::Legacy,
	}
}

fn receive(amount_msat: u64) -> TrampolineHop {
	TrampolineHop::Receive {
		amt_to_forward: amount_msat,
		outgoing_cltv_value: HEIGHT + 18,
		payment_data: Some(PaymentData {
			payment_secret: PaymentSecret([0x1e; 32]),
			total_msat: amount_msat,
		}),
		payment_metadata: None,
	}
}

/// What LDK is handed for a rewritten add: our receive payload.
fn handed_to_ldk(relay: &Relay, add: &UpdateAddHTLC) -> OuterPayload {
	let packet = OnionPacket::try_from(&add.onion_routing_packet).unwrap();
	let keys = KeysManager::new(&[3; 32], 1, 0, true);
	let ecdh = |key: &PublicKey| keys.ecdh(Recipient::Node, key, None);
	let peeled = onion::peel(&relay.core.secp, &packet, &HASH.0, ecdh).unwrap();
	assert!(peeled.is_final());
	OuterPayload::decode(&peeled.payload).unwrap()
}

#[test]
fn electrum_paying_our_invoice_with_us_as_its_only_trampoline_is_received() {
	// Electrum's end-to-end route to an invoice of ours setting 151, with us
	// as its trampoline: [us: next trampoline = us] then [us: receive].
	let relay = relay();
	let first = next_trampoline_is(relay.node.node_id);
	// Level 1 of Electrum's fees on top: 1000 + 100 ppm.
	let sent =
		send(&relay, TlvLayout::Legacy, &[first, receive(1_000_000)], 1_001_100, 1_001_100, 0);
	let rewritten = rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add)
		.expect("a receive for LDK");
	// A plain receive of our invoice: its secret, the outer total, no
	// bucket.
	let payload = handed_to_ldk(&relay, &rewritten);
	match payload.hop {
		OuterHop::Receive { amt_to_forward, payment_data, .. } => {
			assert_eq!(amt_to_forward, 1_001_100);
			assert_eq!(
				payment_data,
				Some(PaymentData {
					payment_secret: PaymentSecret([0x1e; 32]),
					total_msat: 1_001_100
				})
			);
		},
		other => panic!("LDK got {other:?}"),
	}
	assert!(payload.unknown_tlvs.records().iter().all(|(t, _)| *t != BUCKET_TLV_TYPE));
	assert!(relay.core.store.buckets().is_empty(), "a payment to us is not relayed");
	let record = relay.core.store.htlc(&htlc_key(&CHANNEL, 0)).unwrap();
	assert!(record.final_receive);
	assert_eq!(record.dialect, Dialect::Legacy);

	// LDK, the recipient, refuses (say the invoice is unknown): the payer
	// reads LDK's answer, under its outer secret alone.
	let refusal =
		FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: 1_001_100, height: HEIGHT };
	let mut fail = ldk_fails(&relay, &rewritten, &refusal);
	fail::rewrite_fail(&relay.core, &mut fail);
	let packet = fail::reason_of(&fail).unwrap();
	let (_, code, _) = electrum_decode(&packet, &[sent.outer]).expect("readable");
	assert_eq!(code, codes::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS);
}

#[test]
fn a_legacy_receive_in_the_first_layer_is_received_and_a_spec_one_left_to_ldk() {
	let relay = relay();
	let sent = send(&relay, TlvLayout::Legacy, &[receive(1_000_000)], 1_000_000, 1_000_000, 0);
	let rewritten = rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add)
		.expect("66100 is not LDK's: rewritten");
	assert!(matches!(handed_to_ldk(&relay, &rewritten).hop, OuterHop::Receive { .. }));
	// LDK 0.2.7 receives a type-20 trampoline payment itself.
	let relay = self::relay();
	let sent = send(&relay, TlvLayout::Spec, &[receive(1_000_000)], 1_000_000, 1_000_000, 0);
	assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add).is_none());
}

#[test]
fn a_payment_to_us_may_not_promise_more_than_the_payer_sent() {
	let relay = relay();
	let first = next_trampoline_is(relay.node.node_id);
	// The inner receive claims more than the outer total brings.
	let sent =
		send(&relay, TlvLayout::Legacy, &[first, receive(2_000_000)], 1_001_100, 1_001_100, 0);
	assert!(rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add).is_some());
	let record = relay.core.store.htlc(&htlc_key(&CHANNEL, 0)).unwrap();
	assert!(!record.final_receive);
	assert!(matches!(
		record.reject_reason,
		Some(FailReason::Verbatim { message: FailureMessage::FinalIncorrectHtlcAmount { .. } })
	));
}

#[test]
fn a_relay_advertises_57_and_151_unless_told_not_to() {
	use lightning::types::features::InitFeatures;
	let ldk = InitFeatures::empty();
	let features = |policy: Option<&TrampolinePolicy>| {
		InitFeatures::from_le_bytes(super::with_trampoline_bits(ldk.le_flags(), policy))
	};
	let bit = |f: &InitFeatures, n: usize| {
		f.le_flags().get(n / 8).is_some_and(|b| b & (1 << (n % 8)) != 0)
	};
	let on = features(Some(&TrampolinePolicy::default()));
	assert!(on.supports_trampoline_routing());
	assert!(bit(&on, 151), "Electrum's bit");
	assert!(!bit(&on, 149) && !bit(&on, 148) && !bit(&on, 150), "not eclair's, not required");
	assert!(!on.requires_unknown_bits());
	let quiet =
		TrampolinePolicy { advertise_legacy_feature_bit: false, ..TrampolinePolicy::default() };
	let off = features(Some(&quiet));
	assert!(off.supports_trampoline_routing() && !bit(&off, 151));
	// No relay: LDK's features as they are.
	assert_eq!(features(None), ldk);
}

#[test]
fn a_legacy_recipient_that_is_us_is_received() {
	// Electrum's legacy relay payload naming us as the recipient (an
	// invoice of ours without trampoline bits, us as its trampoline).
	let relay = relay();
	let to_us = TrampolineHop::ToLegacyRecipient {
		amt_to_forward: 1_000_000,
		outgoing_cltv_value: HEIGHT + 18,
		outgoing_node_id: relay.node.node_id,
		payment_data: PaymentData {
			payment_secret: PaymentSecret([0x1e; 32]),
			total_msat: 1_000_000,
		},
		payment_metadata: None,
		invoice_features: None,
		invoice_routing_info: Vec::new(),
	};
	let sent = send(&relay, TlvLayout::Legacy, &[to_us], 1_001_100, 1_001_100, 0);
	let rewritten = rewrite::rewrite_add(&relay.core, &relay.node, &relay.payer, &sent.add)
		.expect("a receive for LDK");
	let OuterHop::Receive { payment_data, .. } = handed_to_ldk(&relay, &rewritten).hop else {
		panic!("not a receive")
	};
	assert_eq!(payment_data.map(|d| d.payment_secret), Some(PaymentSecret([0x1e; 32])));
	assert!(relay.core.store.buckets().is_empty());
}
