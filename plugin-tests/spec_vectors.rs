//! Byte-exact reproduction of the BOLT 4 and trampoline test vectors in
//! `../shared/spec-vectors/` (read at run time, relative to the crate root):
//!
//! * `onion-test.json`: onion generation and every hop's decoding;
//! * `onion-error-test.json`: shared secrets, `um`/`ammag` keys, the failing
//!   node's error payload and the error packet after wrapping at every hop;
//! * `trampoline-payment-onion-test.json`: trampoline onion then outer onion
//!   (Alice), peeling at Bob, Carol (outer + trampoline), Carol's new onion, Dave,
//!   Eve (outer + trampoline);
//! * `trampoline-to-blinded-path-payment-onion-test.json`: both cases, including
//!   the blinded path creation (blinded ids and `encrypted_recipient_data`), the
//!   decryption of every hop's recipient data and the path key rotation.
//!
//! Every payload is produced by the typed encoders from the vector's decoded
//! fields and compared with the vector's hex, and every peeled payload is decoded
//! back and compared field by field.

use std::cell::Cell;

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use hex::{DisplayHex, FromHex};
use lightning::blinded_path::payment::{BlindedPayInfo, PaymentConstraints, PaymentRelay};
use lightning::blinded_path::{BlindedHop, IntroductionNode};
use lightning::types::features::{BlindedHopFeatures, Bolt12InvoiceFeatures};
use lightning::types::payment::PaymentSecret;
use serde_json::Value;

use ldk_trampoline::onion::blinding::{
    blinded_node_secret, blinding_tweak, create_blinded_path, decrypt_recipient_data, next_path_key,
};
use ldk_trampoline::onion::{
    build, create_error_packet, decrypt_error_packet, derive_key, exact_hop_payloads_len,
    failure_payload, peel, peel_with_secret_key, route_keys, wrap_error_packet, DecryptedFailure,
    FailureMessage, KeyType, NextBlindedHop, NextPacket, OnionPacket, OuterHop, OuterPayload,
    PaymentBlindedPath, PaymentData, PeeledOnion, RecipientData, RecipientDataTlvs, SphinxHop,
    TlvLayout, TrampolineHop, TrampolinePayload, PAYMENT_ONION_HOP_PAYLOADS_LEN,
};

const VECTOR_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/spec-vectors/");

fn load(name: &str) -> Value {
    let path = format!("{VECTOR_DIR}{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Counts byte-exact comparisons and reports them at the end of a test.
struct Checks {
    name: &'static str,
    count: Cell<usize>,
}

impl Checks {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            count: Cell::new(0),
        }
    }

    fn bytes(&self, what: &str, actual: &[u8], expected: &[u8]) {
        assert_eq!(
            actual.to_lower_hex_string(),
            expected.to_lower_hex_string(),
            "{}: {what}",
            self.name
        );
        self.count.set(self.count.get() + 1);
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            println!("{}: {} byte-exact comparisons", self.name, self.count.get());
        }
    }
}

fn hx(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    Vec::<u8>::from_hex(&s.replace(' ', "")).unwrap()
}

fn sk(v: &Value) -> SecretKey {
    SecretKey::from_slice(&hx(v)).unwrap()
}

fn pk(v: &Value) -> PublicKey {
    PublicKey::from_slice(&hx(v)).unwrap()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn num32(v: &Value) -> u32 {
    u32::try_from(num(v)).unwrap()
}

fn secret32(v: &Value) -> [u8; 32] {
    hx(v).try_into().unwrap()
}

/// `572330x42x2465` to the u64 encoding.
fn scid(v: &Value) -> u64 {
    let parts: Vec<u64> = v
        .as_str()
        .unwrap()
        .split('x')
        .map(|p| p.parse().unwrap())
        .collect();
    (parts[0] << 40) | (parts[1] << 16) | parts[2]
}

fn peel_key(secp: &Secp256k1<All>, key: &SecretKey, packet: &[u8], ad: &[u8]) -> PeeledOnion {
    peel_with_secret_key(secp, key, &OnionPacket::from_bytes(packet).unwrap(), ad).unwrap()
}

fn next_bytes(peeled: &PeeledOnion) -> Vec<u8> {
    match &peeled.next {
        NextPacket::Forward(packet) => packet.to_bytes(),
        NextPacket::Final => panic!("expected a next packet"),
    }
}

fn trampoline_onion_of(payload: &OuterPayload) -> &OnionPacket {
    match &payload.hop {
        OuterHop::TrampolineEntry {
            trampoline_onion, ..
        } => trampoline_onion,
        other => panic!("expected a trampoline entry, got {other:?}"),
    }
}

fn basic_mpp_features() -> Vec<u8> {
    let mut features = Bolt12InvoiceFeatures::empty();
    features.set_basic_mpp_optional();
    features.le_flags().iter().rev().copied().collect()
}

#[test]
fn onion_test() {
    let checks = Checks::new("onion-test.json");
    let secp = Secp256k1::new();
    let v = load("onion-test.json");
    let generate = &v["generate"];
    let ad = hx(&generate["associated_data"]);
    let hops: Vec<SphinxHop> = generate["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| SphinxHop {
            node_id: pk(&h["pubkey"]),
            payload: hx(&h["payload"]),
        })
        .collect();
    let built = build(
        &secp,
        &sk(&generate["session_key"]),
        &hops,
        &ad,
        PAYMENT_ONION_HOP_PAYLOADS_LEN,
    )
    .unwrap();
    let onion = hx(&v["onion"]);
    checks.bytes("onion", &built.packet.to_bytes(), &onion);

    let mut packet = onion;
    let keys = v["decode"].as_array().unwrap();
    for (i, key) in keys.iter().enumerate() {
        let peeled = peel_key(&secp, &sk(key), &packet, &ad);
        checks.bytes(
            &format!("hop {i} payload"),
            &peeled.payload,
            &hops[i].payload,
        );
        checks.bytes(
            &format!("hop {i} shared secret"),
            &peeled.shared_secret.secret_bytes(),
            &built.shared_secrets[i].secret_bytes(),
        );
        if i + 1 < keys.len() {
            packet = next_bytes(&peeled);
        } else {
            assert!(peeled.is_final());
        }
    }
}

#[test]
fn onion_error_test() {
    let checks = Checks::new("onion-error-test.json");
    let secp = Secp256k1::new();
    let v = load("onion-error-test.json");
    let generate = &v["generate"];
    let hops = generate["hops"].as_array().unwrap();
    // The vector describes the old format (no attribution data).
    assert!(
        v.get("attribution_data").is_none()
            && hops.iter().all(|h| h.get("attribution_data").is_none())
    );
    let pubkeys: Vec<PublicKey> = hops.iter().map(|h| pk(&h["pubkey"])).collect();
    let keys = route_keys(&secp, &sk(&generate["session_key"]), &pubkeys).unwrap();
    let secrets: Vec<SharedSecret> = keys.iter().map(|k| k.shared_secret).collect();
    for (i, (hop, secret)) in hops.iter().zip(&secrets).enumerate() {
        checks.bytes(
            &format!("hop {i} shared secret"),
            &secret.secret_bytes(),
            &hx(&hop["hop_shared_secret"]),
        );
        checks.bytes(
            &format!("hop {i} ammag key"),
            &derive_key(KeyType::Ammag, &secret.secret_bytes()),
            &hx(&hop["ammag_key"]),
        );
        if let Some(um) = hop.get("um_key") {
            checks.bytes(
                &format!("hop {i} um key"),
                &derive_key(KeyType::Um, &secret.secret_bytes()),
                &hx(um),
            );
        }
    }

    let raw_failure = hx(&generate["failure_message"]);
    let failure = FailureMessage::decode(&raw_failure).unwrap();
    assert_eq!(failure, FailureMessage::TemporaryNodeFailure);
    checks.bytes("failure message", &failure.encode(), &raw_failure);
    checks.bytes(
        "failing node payload",
        &failure_payload(&failure.encode()),
        &hx(&hops[4]["payload"]),
    );

    let mut packet = create_error_packet(&secrets[4], &failure);
    for secret in secrets[..4].iter().rev() {
        wrap_error_packet(secret, &mut packet);
    }
    checks.bytes("error packet", &packet, &hx(&v["errorpacket"]));
    assert_eq!(
        decrypt_error_packet(&packet, &secrets),
        Ok(DecryptedFailure {
            hop_index: 4,
            message: FailureMessage::TemporaryNodeFailure
        })
    );
}

#[test]
fn trampoline_payment_onion_test() {
    let checks = Checks::new("trampoline-payment-onion-test.json");
    let secp = Secp256k1::new();
    let v = load("trampoline-payment-onion-test.json");
    let alice = &v["generate_alice"];
    let ad = hx(&alice["associated_data"]);

    // Alice: trampoline payloads from their fields, then the trampoline onion.
    let t_hops = alice["trampoline_hops"].as_array().unwrap();
    let carol_t = &t_hops[0]["payload"];
    let carol_t_payload = TrampolinePayload::new(TrampolineHop::ToTrampoline {
        amt_to_forward: num(&carol_t["amt_to_forward"]),
        outgoing_cltv_value: num32(&carol_t["outgoing_cltv"]),
        outgoing_node_id: pk(&carol_t["outgoing_node_id"]),
        async_payment: false,
        layout: TlvLayout::Spec,
    });
    checks.bytes(
        "Carol trampoline payload",
        &carol_t_payload.encode().unwrap(),
        &hx(&carol_t["hex"]),
    );
    let eve_t = &t_hops[1]["payload"];
    let eve_t_payload = TrampolinePayload::new(TrampolineHop::Receive {
        amt_to_forward: num(&eve_t["amt_to_forward"]),
        outgoing_cltv_value: num32(&eve_t["outgoing_cltv"]),
        payment_data: Some(PaymentData {
            payment_secret: PaymentSecret(secret32(&eve_t["payment_secret"])),
            total_msat: num(&eve_t["total_amount_msat"]),
        }),
        payment_metadata: None,
    });
    checks.bytes(
        "Eve trampoline payload",
        &eve_t_payload.encode().unwrap(),
        &hx(&eve_t["hex"]),
    );
    let trampoline_hops: Vec<SphinxHop> = t_hops
        .iter()
        .map(|h| SphinxHop {
            node_id: pk(&h["node_id"]),
            payload: hx(&h["payload"]["hex"]),
        })
        .collect();
    let trampoline = build(
        &secp,
        &sk(&alice["trampoline_session_key"]),
        &trampoline_hops,
        &ad,
        exact_hop_payloads_len(&trampoline_hops),
    )
    .unwrap();
    checks.bytes(
        "trampoline onion",
        &trampoline.packet.to_bytes(),
        &hx(&alice["trampoline_onion"]),
    );

    // Alice: outer payloads and onion.
    let o_hops = alice["hops"].as_array().unwrap();
    let bob_o = &o_hops[0]["payload"];
    let bob_payload = OuterPayload::new(OuterHop::Forward {
        short_channel_id: scid(&bob_o["short_channel_id"]),
        amt_to_forward: num(&bob_o["amt_to_forward"]),
        outgoing_cltv_value: num32(&bob_o["outgoing_cltv"]),
    });
    checks.bytes(
        "Bob payload",
        &bob_payload.encode().unwrap(),
        &hx(&bob_o["hex"]),
    );
    let carol_o = &o_hops[1]["payload"];
    checks.bytes(
        "trampoline onion in Carol's payload",
        &trampoline.packet.to_bytes(),
        &hx(&carol_o["trampoline_onion"]),
    );
    let carol_payload = OuterPayload::new(OuterHop::TrampolineEntry {
        amt_to_forward: num(&carol_o["amt_to_forward"]),
        outgoing_cltv_value: num32(&carol_o["outgoing_cltv"]),
        payment_data: Some(PaymentData {
            payment_secret: PaymentSecret(secret32(&carol_o["payment_secret"])),
            total_msat: num(&carol_o["total_amount_msat"]),
        }),
        current_path_key: None,
        trampoline_onion: trampoline.packet.clone(),
        layout: TlvLayout::Spec,
    });
    checks.bytes(
        "Carol payload",
        &carol_payload.encode().unwrap(),
        &hx(&carol_o["hex"]),
    );
    let outer_hops = vec![
        SphinxHop {
            node_id: pk(&o_hops[0]["node_id"]),
            payload: bob_payload.encode().unwrap(),
        },
        SphinxHop {
            node_id: pk(&o_hops[1]["node_id"]),
            payload: carol_payload.encode().unwrap(),
        },
    ];
    let outer = build(
        &secp,
        &sk(&alice["session_key"]),
        &outer_hops,
        &ad,
        PAYMENT_ONION_HOP_PAYLOADS_LEN,
    )
    .unwrap();
    checks.bytes(
        "Alice onion",
        &outer.packet.to_bytes(),
        &hx(&alice["onion"]),
    );

    // Bob.
    let bob = &v["decrypt_bob"];
    checks.bytes("Bob input onion", &hx(&bob["onion"]), &hx(&alice["onion"]));
    let peeled = peel_key(&secp, &sk(&bob["node_privkey"]), &hx(&bob["onion"]), &ad);
    checks.bytes("Bob peeled payload", &peeled.payload, &hx(&bob_o["hex"]));
    assert_eq!(OuterPayload::decode(&peeled.payload).unwrap(), bob_payload);
    checks.bytes(
        "Bob next onion",
        &next_bytes(&peeled),
        &hx(&bob["next_onion"]),
    );

    // Carol: outer then trampoline.
    let carol = &v["decrypt_carol"];
    checks.bytes(
        "Carol input onion",
        &hx(&carol["onion"]),
        &hx(&bob["next_onion"]),
    );
    let carol_key = sk(&carol["node_privkey"]);
    let peeled = peel_key(&secp, &carol_key, &hx(&carol["onion"]), &ad);
    assert!(peeled.is_final());
    checks.bytes(
        "Carol peeled payload",
        &peeled.payload,
        &hx(&carol_o["hex"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(decoded, carol_payload);
    let inner = peel_key(
        &secp,
        &carol_key,
        &trampoline_onion_of(&decoded).to_bytes(),
        &ad,
    );
    checks.bytes(
        "Carol trampoline payload (peeled)",
        &inner.payload,
        &hx(&carol_t["hex"]),
    );
    assert_eq!(
        TrampolinePayload::decode(&inner.payload).unwrap(),
        carol_t_payload
    );
    let next_trampoline = next_bytes(&inner);
    checks.bytes(
        "Carol next trampoline onion",
        &next_trampoline,
        &hx(&carol["next_trampoline_onion"]),
    );

    // Carol builds a new onion to Eve through Dave.
    let gen_carol = &v["generate_carol"];
    let ad_carol = hx(&gen_carol["associated_data"]);
    let c_hops = gen_carol["hops"].as_array().unwrap();
    let dave_o = &c_hops[0]["payload"];
    let dave_payload = OuterPayload::new(OuterHop::Forward {
        short_channel_id: scid(&dave_o["short_channel_id"]),
        amt_to_forward: num(&dave_o["amt_to_forward"]),
        outgoing_cltv_value: num32(&dave_o["outgoing_cltv"]),
    });
    checks.bytes(
        "Dave payload",
        &dave_payload.encode().unwrap(),
        &hx(&dave_o["hex"]),
    );
    let eve_o = &c_hops[1]["payload"];
    checks.bytes(
        "trampoline onion in Eve's payload",
        &next_trampoline,
        &hx(&eve_o["trampoline_onion"]),
    );
    let eve_payload = OuterPayload::new(OuterHop::TrampolineEntry {
        amt_to_forward: num(&eve_o["amt_to_forward"]),
        outgoing_cltv_value: num32(&eve_o["outgoing_cltv"]),
        payment_data: Some(PaymentData {
            payment_secret: PaymentSecret(secret32(&eve_o["payment_secret"])),
            total_msat: num(&eve_o["total_amount_msat"]),
        }),
        current_path_key: None,
        trampoline_onion: OnionPacket::from_bytes(&next_trampoline).unwrap(),
        layout: TlvLayout::Spec,
    });
    checks.bytes(
        "Eve payload",
        &eve_payload.encode().unwrap(),
        &hx(&eve_o["hex"]),
    );
    let hops = vec![
        SphinxHop {
            node_id: pk(&c_hops[0]["node_id"]),
            payload: dave_payload.encode().unwrap(),
        },
        SphinxHop {
            node_id: pk(&c_hops[1]["node_id"]),
            payload: eve_payload.encode().unwrap(),
        },
    ];
    let onion = build(
        &secp,
        &sk(&gen_carol["session_key"]),
        &hops,
        &ad_carol,
        PAYMENT_ONION_HOP_PAYLOADS_LEN,
    )
    .unwrap();
    checks.bytes(
        "Carol onion",
        &onion.packet.to_bytes(),
        &hx(&gen_carol["onion"]),
    );

    // Dave.
    let dave = &v["decrypt_dave"];
    checks.bytes(
        "Dave input onion",
        &hx(&dave["onion"]),
        &hx(&gen_carol["onion"]),
    );
    let peeled = peel_key(
        &secp,
        &sk(&dave["node_privkey"]),
        &hx(&dave["onion"]),
        &ad_carol,
    );
    checks.bytes("Dave peeled payload", &peeled.payload, &hx(&dave_o["hex"]));
    assert_eq!(OuterPayload::decode(&peeled.payload).unwrap(), dave_payload);
    checks.bytes(
        "Dave next onion",
        &next_bytes(&peeled),
        &hx(&dave["next_onion"]),
    );

    // Eve: outer then trampoline.
    let eve = &v["decrypt_eve"];
    checks.bytes(
        "Eve input onion",
        &hx(&eve["onion"]),
        &hx(&dave["next_onion"]),
    );
    let eve_key = sk(&eve["node_privkey"]);
    let peeled = peel_key(&secp, &eve_key, &hx(&eve["onion"]), &ad_carol);
    assert!(peeled.is_final());
    checks.bytes(
        "Eve decrypted payload",
        &peeled.payload,
        &hx(&eve["decrypted_payload"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(decoded, eve_payload);
    let inner = peel_key(
        &secp,
        &eve_key,
        &trampoline_onion_of(&decoded).to_bytes(),
        &ad_carol,
    );
    assert!(inner.is_final());
    checks.bytes(
        "Eve decrypted trampoline payload",
        &inner.payload,
        &hx(&eve["decrypted_trampoline_payload"]),
    );
    assert_eq!(
        TrampolinePayload::decode(&inner.payload).unwrap(),
        eve_t_payload
    );
}

/// The blinded path of `generate_blinded_path_eve`, checked against the vector.
/// `session_key` is given by the first case only; the second case uses the same
/// path key and blinded ids, which this checks.
fn check_blinded_path(
    checks: &Checks,
    secp: &Secp256k1<All>,
    gen: &Value,
    session_key: &SecretKey,
    encoded_hops: &[RecipientDataTlvs],
) {
    checks.bytes(
        "path key",
        &PublicKey::from_secret_key(secp, session_key).serialize(),
        &hx(&gen["path_key"]),
    );
    let hops = gen["hops"].as_array().unwrap();
    let plaintexts: Vec<(PublicKey, Vec<u8>)> = hops
        .iter()
        .zip(encoded_hops)
        .enumerate()
        .map(|(i, (hop, tlvs))| {
            let encoded = tlvs.encode().unwrap();
            checks.bytes(
                &format!("blinded hop {i} tlvs"),
                &encoded,
                &hx(&hop["encoded_tlvs"]),
            );
            assert_eq!(&RecipientDataTlvs::decode(&encoded).unwrap(), tlvs);
            (pk(&hop["node_id"]), encoded)
        })
        .collect();
    let path = create_blinded_path(secp, session_key, &plaintexts).unwrap();
    checks.bytes(
        "first path key",
        &path.first_path_key.serialize(),
        &hx(&gen["path_key"]),
    );
    for (i, (hop, blinded)) in hops.iter().zip(&path.hops).enumerate() {
        checks.bytes(
            &format!("blinded node id {i}"),
            &blinded.blinded_node_id.serialize(),
            &hx(&hop["blinded_node_id"]),
        );
        checks.bytes(
            &format!("encrypted data {i}"),
            &blinded.encrypted_payload,
            &hx(&hop["encrypted_data"]),
        );
    }
}

fn relay(v: &Value) -> PaymentRelay {
    PaymentRelay {
        cltv_expiry_delta: u16::try_from(num(&v["cltv_expiry_delta"])).unwrap(),
        fee_proportional_millionths: num32(&v["fee_proportional_millionths"]),
        fee_base_msat: num32(&v["fee_base_msat"]),
    }
}

fn constraints(v: &Value) -> PaymentConstraints {
    PaymentConstraints {
        max_cltv_expiry: num32(&v["max_cltv_expiry"]),
        htlc_minimum_msat: num(&v["htlc_minimum_msat"]),
    }
}

fn forward_data(tlvs: &Value) -> RecipientDataTlvs {
    let next = match tlvs.get("short_channel_id") {
        Some(s) => NextBlindedHop::ShortChannelId(scid(s)),
        None => NextBlindedHop::NodeId(pk(&tlvs["outgoing_node_id"])),
    };
    RecipientDataTlvs::new(RecipientData::Forward {
        next,
        payment_relay: relay(&tlvs["payment_relay"]),
        payment_constraints: Some(constraints(&tlvs["payment_constraints"])),
        allowed_features: None,
        next_path_key_override: None,
    })
}

fn receive_data(path_id: &Value) -> RecipientDataTlvs {
    RecipientDataTlvs::new(RecipientData::Receive {
        path_id: hx(path_id),
        payment_constraints: None,
        allowed_features: None,
    })
}

fn forward_payload(tlvs: &Value) -> OuterPayload {
    OuterPayload::new(OuterHop::Forward {
        short_channel_id: scid(&tlvs["outgoing_channel_id"]),
        amt_to_forward: num(&tlvs["amt_to_forward"]),
        outgoing_cltv_value: num32(&tlvs["outgoing_cltv_value"]),
    })
}

fn cltv_of(tlvs: &Value) -> u32 {
    num32(
        tlvs.get("outgoing_cltv_value")
            .unwrap_or(&tlvs["outgoing_cltv"]),
    )
}

fn trampoline_entry(
    tlvs: &Value,
    path_key: Option<PublicKey>,
    onion: &OnionPacket,
) -> OuterPayload {
    OuterPayload::new(OuterHop::TrampolineEntry {
        amt_to_forward: num(&tlvs["amt_to_forward"]),
        outgoing_cltv_value: cltv_of(tlvs),
        payment_data: Some(PaymentData {
            payment_secret: PaymentSecret(secret32(&tlvs["payment_secret"])),
            total_msat: num(&tlvs["total_amount_msat"]),
        }),
        current_path_key: path_key,
        trampoline_onion: onion.clone(),
        layout: TlvLayout::Spec,
    })
}

fn payment_blinded_path(v: &Value) -> PaymentBlindedPath {
    let path = &v["blinded_path"];
    let info = &v["payment_info"];
    PaymentBlindedPath::new(
        IntroductionNode::NodeId(pk(&path["introduction_node_id"])),
        pk(&path["path_key"]),
        path["hops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| BlindedHop {
                blinded_node_id: pk(&h["blinded_node_id"]),
                encrypted_payload: hx(&h["encrypted_data"]),
            })
            .collect(),
        BlindedPayInfo {
            fee_base_msat: num32(&info["fee_base_msat"]),
            fee_proportional_millionths: num32(&info["fee_proportional_millionths"]),
            cltv_expiry_delta: u16::try_from(num(&info["cltv_expiry_delta"])).unwrap(),
            htlc_minimum_msat: num(&info["min_htlc_msat"]),
            htlc_maximum_msat: num(&info["max_htlc_msat"]),
            features: BlindedHopFeatures::empty(),
        },
    )
    .unwrap()
}

/// Peels an onion addressed to a blinded node id, with the ECDH tweaked as
/// `NodeSigner::ecdh(Recipient::Node, key, Some(&tweak))` would.
fn peel_blinded(
    secp: &Secp256k1<All>,
    node_key: &SecretKey,
    path_shared_secret: &SharedSecret,
    packet: &OnionPacket,
    ad: &[u8],
) -> PeeledOnion {
    let tweak = blinding_tweak(path_shared_secret).unwrap();
    let tweaked = node_key.mul_tweak(&tweak).unwrap();
    assert_eq!(
        tweaked,
        blinded_node_secret(node_key, path_shared_secret).unwrap()
    );
    peel(secp, packet, ad, |key| Ok(SharedSecret::new(key, &tweaked))).unwrap()
}

#[test]
fn trampoline_to_blinded_path_recipient_without_trampoline() {
    let checks = Checks::new("trampoline-to-blinded-path case 0 (Eve without trampoline)");
    let secp = Secp256k1::new();
    let all = load("trampoline-to-blinded-path-payment-onion-test.json");
    let v = &all[0];

    // Eve's blinded path.
    let gen_path = &v["generate_blinded_path_eve"];
    let path_hops = gen_path["hops"].as_array().unwrap();
    let path_data = [
        forward_data(&path_hops[0]["tlvs"]),
        receive_data(&path_hops[1]["tlvs"]["path_id"]),
    ];
    check_blinded_path(
        &checks,
        &secp,
        gen_path,
        &sk(&gen_path["session_key"]),
        &path_data,
    );

    // The payer's trampoline onion for Carol, carrying the blinded paths.
    let gen_t = &v["generate_trampoline_onion"];
    let ad = hx(&gen_t["associated_data"]);
    let carol_t_payload = TrampolinePayload::new(TrampolineHop::ToBlindedPaths {
        amt_to_forward: num(&gen_t["amt_to_forward"]),
        outgoing_cltv_value: num32(&gen_t["outgoing_cltv"]),
        paths: gen_t["recipient_blinded_paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(payment_blinded_path)
            .collect(),
        recipient_features: Some(basic_mpp_features()),
        layout: TlvLayout::Spec,
    });
    assert_eq!(
        gen_t["recipient_features"],
        serde_json::json!(["basic_mpp"])
    );
    checks.bytes(
        "Carol trampoline payload",
        &carol_t_payload.encode().unwrap(),
        &hx(&gen_t["encoded_tlvs"]),
    );
    let t_hops = vec![SphinxHop {
        node_id: pk(&gen_t["trampoline_node_id"]),
        payload: carol_t_payload.encode().unwrap(),
    }];
    let trampoline = build(
        &secp,
        &sk(&gen_t["session_key"]),
        &t_hops,
        &ad,
        exact_hop_payloads_len(&t_hops),
    )
    .unwrap();
    checks.bytes(
        "trampoline onion",
        &trampoline.packet.to_bytes(),
        &hx(&gen_t["trampoline_onion"]),
    );

    // The payment onion Alice -> Bob -> Carol.
    let gen_p = &v["generate_payment_onion"];
    let p_hops = gen_p["hops"].as_array().unwrap();
    let bob_payload = forward_payload(&p_hops[0]["tlvs"]);
    checks.bytes(
        "Bob payload",
        &bob_payload.encode().unwrap(),
        &hx(&p_hops[0]["encoded_tlvs"]),
    );
    let carol_payload = trampoline_entry(&p_hops[1]["tlvs"], None, &trampoline.packet);
    checks.bytes(
        "Carol payload",
        &carol_payload.encode().unwrap(),
        &hx(&p_hops[1]["encoded_tlvs"]),
    );
    let hops: Vec<SphinxHop> = p_hops
        .iter()
        .map(|h| SphinxHop {
            node_id: pk(&h["pubkey"]),
            payload: hx(&h["encoded_tlvs"]),
        })
        .collect();
    let onion = build(
        &secp,
        &sk(&gen_p["session_key"]),
        &hops,
        &hx(&gen_p["associated_data"]),
        1300,
    )
    .unwrap();
    checks.bytes(
        "payment onion",
        &onion.packet.to_bytes(),
        &hx(&gen_p["onion"]),
    );

    // Bob relays.
    let bob = &v["relay_payment_bob"];
    checks.bytes("Bob input onion", &hx(&bob["onion"]), &hx(&gen_p["onion"]));
    let peeled = peel_key(&secp, &sk(&bob["node_privkey"]), &hx(&bob["onion"]), &ad);
    checks.bytes(
        "Bob peeled payload",
        &peeled.payload,
        &hx(&p_hops[0]["encoded_tlvs"]),
    );
    assert_eq!(OuterPayload::decode(&peeled.payload).unwrap(), bob_payload);
    checks.bytes(
        "Bob next onion",
        &next_bytes(&peeled),
        &hx(&bob["next_onion"]),
    );

    // Carol: outer payload, then the trampoline payload with the blinded paths.
    let carol = &v["decrypt_onion_carol"];
    checks.bytes(
        "Carol input onion",
        &hx(&carol["onion"]),
        &hx(&bob["next_onion"]),
    );
    let carol_key = sk(&carol["node_privkey"]);
    let peeled = peel_key(&secp, &carol_key, &hx(&carol["onion"]), &ad);
    assert!(peeled.is_final());
    checks.bytes(
        "Carol peeled payload",
        &peeled.payload,
        &hx(&p_hops[1]["encoded_tlvs"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(
        decoded,
        trampoline_entry(&carol["tlvs"], None, &trampoline.packet)
    );
    let inner = peel_key(
        &secp,
        &carol_key,
        &trampoline_onion_of(&decoded).to_bytes(),
        &ad,
    );
    assert!(inner.is_final());
    checks.bytes(
        "Carol trampoline payload (peeled)",
        &inner.payload,
        &hx(&gen_t["encoded_tlvs"]),
    );
    let t_tlvs = &carol["trampoline_tlvs"];
    let expected_t = TrampolinePayload::new(TrampolineHop::ToBlindedPaths {
        amt_to_forward: num(&t_tlvs["amt_to_forward"]),
        outgoing_cltv_value: num32(&t_tlvs["outgoing_cltv"]),
        paths: t_tlvs["recipient_blinded_paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(payment_blinded_path)
            .collect(),
        recipient_features: Some(basic_mpp_features()),
        layout: TlvLayout::Spec,
    });
    let decoded_t = TrampolinePayload::decode(&inner.payload).unwrap();
    assert_eq!(decoded_t, expected_t);
    let TrampolineHop::ToBlindedPaths {
        paths,
        recipient_features,
        ..
    } = &decoded_t.hop
    else {
        unreachable!()
    };
    assert!(
        Bolt12InvoiceFeatures::from_be_bytes(recipient_features.clone().unwrap())
            .supports_basic_mpp()
    );
    let ldk_path = paths[0].to_ldk().unwrap();
    assert_eq!(
        PaymentBlindedPath::from_ldk(&ldk_path).as_ref(),
        Some(&paths[0])
    );

    // Carol pays the blinded path: Dave (introduction) then blinded Eve.
    let relay_carol = &v["relay_payment_carol"];
    let r_hops = relay_carol["hops"].as_array().unwrap();
    let dave_payload = OuterPayload::new(OuterHop::BlindedForward {
        encrypted_recipient_data: hx(&r_hops[0]["tlvs"]["encrypted_recipient_data"]),
        current_path_key: Some(pk(&r_hops[0]["tlvs"]["current_path_key"])),
    });
    checks.bytes(
        "Dave payload",
        &dave_payload.encode().unwrap(),
        &hx(&r_hops[0]["encoded_tlvs"]),
    );
    let eve_tlvs = &r_hops[1]["tlvs"];
    let eve_payload = OuterPayload::new(OuterHop::BlindedReceive {
        amt_to_forward: num(&eve_tlvs["amt_to_forward"]),
        outgoing_cltv_value: num32(&eve_tlvs["outgoing_cltv_value"]),
        total_amount_msat: Some(num(&eve_tlvs["total_amount_msat"])),
        encrypted_recipient_data: hx(&eve_tlvs["encrypted_recipient_data"]),
        current_path_key: None,
    });
    checks.bytes(
        "blinded Eve payload",
        &eve_payload.encode().unwrap(),
        &hx(&r_hops[1]["encoded_tlvs"]),
    );
    // The hops of the onion are those of the decoded blinded path.
    assert_eq!(
        pk(&r_hops[0]["pubkey"]),
        match paths[0].introduction_node() {
            IntroductionNode::NodeId(id) => *id,
            IntroductionNode::DirectedShortChannelId(..) => unreachable!(),
        }
    );
    assert_eq!(pk(&r_hops[1]["pubkey"]), paths[0].hops()[1].blinded_node_id);
    let hops = vec![
        SphinxHop {
            node_id: pk(&r_hops[0]["pubkey"]),
            payload: dave_payload.encode().unwrap(),
        },
        SphinxHop {
            node_id: pk(&r_hops[1]["pubkey"]),
            payload: eve_payload.encode().unwrap(),
        },
    ];
    let ad_carol = hx(&relay_carol["associated_data"]);
    let onion = build(
        &secp,
        &sk(&relay_carol["session_key"]),
        &hops,
        &ad_carol,
        1300,
    )
    .unwrap();
    checks.bytes(
        "Carol's onion",
        &onion.packet.to_bytes(),
        &hx(&relay_carol["onion"]),
    );

    // Dave: introduction node, decrypts his data and rotates the path key.
    let dave = &v["relay_payment_dave"];
    checks.bytes(
        "Dave input onion",
        &hx(&dave["onion"]),
        &hx(&relay_carol["onion"]),
    );
    let dave_key = sk(&dave["node_privkey"]);
    let peeled = peel_key(&secp, &dave_key, &hx(&dave["onion"]), &ad_carol);
    checks.bytes(
        "Dave peeled payload",
        &peeled.payload,
        &hx(&r_hops[0]["encoded_tlvs"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(decoded, dave_payload);
    let OuterHop::BlindedForward {
        encrypted_recipient_data,
        current_path_key: Some(path_key),
    } = &decoded.hop
    else {
        unreachable!()
    };
    assert_eq!(*path_key, pk(&dave["tlvs"]["current_path_key"]));
    let path_ss = SharedSecret::new(path_key, &dave_key);
    let plaintext = decrypt_recipient_data(&path_ss, encrypted_recipient_data).unwrap();
    checks.bytes(
        "Dave recipient data",
        &plaintext,
        &hx(&path_hops[0]["encoded_tlvs"]),
    );
    assert_eq!(
        RecipientDataTlvs::decode(&plaintext).unwrap(),
        forward_data(&dave["tlvs"]["encrypted_recipient_data"])
    );
    checks.bytes(
        "Dave next onion",
        &next_bytes(&peeled),
        &hx(&dave["next_onion"]),
    );
    let eve = &v["receive_payment_eve"];
    let eve_path_key = next_path_key(&secp, path_key, &path_ss).unwrap();
    checks.bytes(
        "Eve path key",
        &eve_path_key.serialize(),
        &hx(&eve["path_key"]),
    );

    // Eve: peels with her blinded key and decrypts her data.
    checks.bytes(
        "Eve input onion",
        &hx(&eve["onion"]),
        &hx(&dave["next_onion"]),
    );
    let eve_key = sk(&eve["node_privkey"]);
    let eve_ss = SharedSecret::new(&eve_path_key, &eve_key);
    let peeled = peel_blinded(
        &secp,
        &eve_key,
        &eve_ss,
        &OnionPacket::from_bytes(&hx(&eve["onion"])).unwrap(),
        &ad_carol,
    );
    assert!(peeled.is_final());
    checks.bytes(
        "Eve peeled payload",
        &peeled.payload,
        &hx(&r_hops[1]["encoded_tlvs"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(decoded, eve_payload);
    let OuterHop::BlindedReceive {
        encrypted_recipient_data,
        ..
    } = &decoded.hop
    else {
        unreachable!()
    };
    let plaintext = decrypt_recipient_data(&eve_ss, encrypted_recipient_data).unwrap();
    checks.bytes(
        "Eve recipient data",
        &plaintext,
        &hx(&path_hops[1]["encoded_tlvs"]),
    );
    let RecipientData::Receive { path_id, .. } =
        RecipientDataTlvs::decode(&plaintext).unwrap().data
    else {
        unreachable!()
    };
    checks.bytes("Eve path_id", &path_id, &hx(&eve["path_id"]));
}

#[test]
fn trampoline_to_blinded_path_recipient_with_trampoline() {
    let checks = Checks::new("trampoline-to-blinded-path case 1 (Eve with trampoline)");
    let secp = Secp256k1::new();
    let all = load("trampoline-to-blinded-path-payment-onion-test.json");
    let v = &all[1];

    // Eve's blinded path. This case omits the session key; it is the first case's
    // (same path key, same blinded ids), which `check_blinded_path` verifies.
    let gen_path = &v["generate_blinded_path_eve"];
    assert!(gen_path.get("session_key").is_none());
    let session_key = sk(&all[0]["generate_blinded_path_eve"]["session_key"]);
    let path_hops = gen_path["hops"].as_array().unwrap();
    let path_data = [
        forward_data(&path_hops[0]["tlvs"]),
        receive_data(&path_hops[1]["tlvs"]["path_id"]),
    ];
    check_blinded_path(&checks, &secp, gen_path, &session_key, &path_data);

    // The trampoline onion Carol -> Dave -> blinded(Eve).
    let gen_t = &v["generate_trampoline_onion"];
    let ad = hx(&gen_t["associated_data"]);
    let t_hops = gen_t["hops"].as_array().unwrap();
    let carol_t = &t_hops[0]["tlvs"];
    let carol_t_payload = TrampolinePayload::new(TrampolineHop::ToTrampoline {
        amt_to_forward: num(&carol_t["amt_to_forward"]),
        outgoing_cltv_value: num32(&carol_t["outgoing_cltv_value"]),
        outgoing_node_id: pk(&carol_t["outgoing_node_id"]),
        async_payment: false,
        layout: TlvLayout::Spec,
    });
    checks.bytes(
        "Carol trampoline payload",
        &carol_t_payload.encode().unwrap(),
        &hx(&t_hops[0]["encoded_tlvs"]),
    );
    let dave_t_payload = TrampolinePayload::new(TrampolineHop::BlindedForward {
        encrypted_recipient_data: hx(&t_hops[1]["tlvs"]["encrypted_recipient_data"]),
        current_path_key: Some(pk(&t_hops[1]["tlvs"]["current_path_key"])),
    });
    checks.bytes(
        "Dave trampoline payload",
        &dave_t_payload.encode().unwrap(),
        &hx(&t_hops[1]["encoded_tlvs"]),
    );
    let eve_t = &t_hops[2]["tlvs"];
    // The vector's decoded fields omit total_amount_msat, but its encoded_tlvs
    // carry type 18 (= amt_to_forward): follow the bytes.
    assert!(eve_t.get("total_amount_msat").is_none());
    let eve_t_payload = TrampolinePayload::new(TrampolineHop::BlindedReceive {
        amt_to_forward: num(&eve_t["amt_to_forward"]),
        outgoing_cltv_value: num32(&eve_t["outgoing_cltv_value"]),
        total_amount_msat: Some(num(&eve_t["amt_to_forward"])),
        encrypted_recipient_data: hx(&eve_t["encrypted_recipient_data"]),
        current_path_key: None,
    });
    checks.bytes(
        "blinded Eve trampoline payload",
        &eve_t_payload.encode().unwrap(),
        &hx(&t_hops[2]["encoded_tlvs"]),
    );
    let hops: Vec<SphinxHop> = t_hops
        .iter()
        .map(|h| SphinxHop {
            node_id: pk(&h["pubkey"]),
            payload: hx(&h["encoded_tlvs"]),
        })
        .collect();
    let trampoline = build(
        &secp,
        &sk(&gen_t["session_key"]),
        &hops,
        &ad,
        exact_hop_payloads_len(&hops),
    )
    .unwrap();
    checks.bytes(
        "trampoline onion",
        &trampoline.packet.to_bytes(),
        &hx(&gen_t["trampoline_onion"]),
    );

    // The payment onion Alice -> Bob -> Carol.
    let gen_p = &v["generate_payment_onion"];
    let p_hops = gen_p["hops"].as_array().unwrap();
    let bob_payload = forward_payload(&p_hops[0]["tlvs"]);
    checks.bytes(
        "Bob payload",
        &bob_payload.encode().unwrap(),
        &hx(&p_hops[0]["encoded_tlvs"]),
    );
    let carol_payload = trampoline_entry(&p_hops[1]["tlvs"], None, &trampoline.packet);
    checks.bytes(
        "Carol payload",
        &carol_payload.encode().unwrap(),
        &hx(&p_hops[1]["encoded_tlvs"]),
    );
    let hops: Vec<SphinxHop> = p_hops
        .iter()
        .map(|h| SphinxHop {
            node_id: pk(&h["pubkey"]),
            payload: hx(&h["encoded_tlvs"]),
        })
        .collect();
    let onion = build(
        &secp,
        &sk(&gen_p["session_key"]),
        &hops,
        &hx(&gen_p["associated_data"]),
        1300,
    )
    .unwrap();
    checks.bytes(
        "payment onion",
        &onion.packet.to_bytes(),
        &hx(&gen_p["onion"]),
    );

    // Bob relays.
    let bob = &v["relay_payment_bob"];
    checks.bytes("Bob input onion", &hx(&bob["onion"]), &hx(&gen_p["onion"]));
    let peeled = peel_key(&secp, &sk(&bob["node_privkey"]), &hx(&bob["onion"]), &ad);
    checks.bytes(
        "Bob peeled payload",
        &peeled.payload,
        &hx(&p_hops[0]["encoded_tlvs"]),
    );
    checks.bytes(
        "Bob next onion",
        &next_bytes(&peeled),
        &hx(&bob["next_onion"]),
    );

    // Carol: outer then trampoline; the next trampoline node is Dave.
    let carol = &v["decrypt_onion_carol"];
    checks.bytes(
        "Carol input onion",
        &hx(&carol["onion"]),
        &hx(&bob["next_onion"]),
    );
    let carol_key = sk(&carol["node_privkey"]);
    let peeled = peel_key(&secp, &carol_key, &hx(&carol["onion"]), &ad);
    assert!(peeled.is_final());
    checks.bytes(
        "Carol peeled payload",
        &peeled.payload,
        &hx(&p_hops[1]["encoded_tlvs"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(
        decoded,
        trampoline_entry(&carol["tlvs"], None, &trampoline.packet)
    );
    let inner = peel_key(
        &secp,
        &carol_key,
        &trampoline_onion_of(&decoded).to_bytes(),
        &ad,
    );
    checks.bytes(
        "Carol trampoline payload (peeled)",
        &inner.payload,
        &hx(&t_hops[0]["encoded_tlvs"]),
    );
    let t_tlvs = &carol["trampoline_tlvs"];
    assert_eq!(
        TrampolinePayload::decode(&inner.payload).unwrap().hop,
        TrampolineHop::ToTrampoline {
            amt_to_forward: num(&t_tlvs["amt_to_forward"]),
            outgoing_cltv_value: num32(&t_tlvs["outgoing_cltv"]),
            outgoing_node_id: pk(&t_tlvs["outgoing_node_id"]),
            async_payment: false,
            layout: TlvLayout::Spec,
        }
    );
    let NextPacket::Forward(next_trampoline) = inner.next else {
        panic!("Carol is not the last trampoline")
    };

    // Carol relays to Dave with the peeled trampoline onion.
    let relay_carol = &v["relay_payment_carol"];
    let r_hops = relay_carol["hops"].as_array().unwrap();
    let dave_payload = trampoline_entry(&r_hops[0]["tlvs"], None, &next_trampoline);
    checks.bytes(
        "Dave payload",
        &dave_payload.encode().unwrap(),
        &hx(&r_hops[0]["encoded_tlvs"]),
    );
    let hops = vec![SphinxHop {
        node_id: pk(&r_hops[0]["pubkey"]),
        payload: dave_payload.encode().unwrap(),
    }];
    let ad_carol = hx(&relay_carol["associated_data"]);
    let onion = build(
        &secp,
        &sk(&relay_carol["session_key"]),
        &hops,
        &ad_carol,
        1300,
    )
    .unwrap();
    checks.bytes(
        "Carol's onion",
        &onion.packet.to_bytes(),
        &hx(&relay_carol["onion"]),
    );

    // Dave: outer, then trampoline (introduction node of Eve's blinded path).
    let dave = &v["decrypt_onion_dave"];
    checks.bytes(
        "Dave input onion",
        &hx(&dave["onion"]),
        &hx(&relay_carol["onion"]),
    );
    let dave_key = sk(&dave["node_privkey"]);
    let peeled = peel_key(&secp, &dave_key, &hx(&dave["onion"]), &ad_carol);
    assert!(peeled.is_final());
    checks.bytes(
        "Dave peeled payload",
        &peeled.payload,
        &hx(&r_hops[0]["encoded_tlvs"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(
        decoded,
        trampoline_entry(&dave["tlvs"], None, &next_trampoline)
    );
    let inner = peel_key(
        &secp,
        &dave_key,
        &trampoline_onion_of(&decoded).to_bytes(),
        &ad_carol,
    );
    checks.bytes(
        "Dave trampoline payload (peeled)",
        &inner.payload,
        &hx(&t_hops[1]["encoded_tlvs"]),
    );
    let decoded_t = TrampolinePayload::decode(&inner.payload).unwrap();
    assert_eq!(decoded_t, dave_t_payload);
    let TrampolineHop::BlindedForward {
        encrypted_recipient_data,
        current_path_key: Some(path_key),
    } = &decoded_t.hop
    else {
        unreachable!()
    };
    assert_eq!(*path_key, pk(&dave["trampoline_tlvs"]["current_path_key"]));
    let path_ss = SharedSecret::new(path_key, &dave_key);
    let plaintext = decrypt_recipient_data(&path_ss, encrypted_recipient_data).unwrap();
    checks.bytes(
        "Dave recipient data",
        &plaintext,
        &hx(&path_hops[0]["encoded_tlvs"]),
    );
    let recipient_data = RecipientDataTlvs::decode(&plaintext).unwrap();
    assert_eq!(
        recipient_data,
        forward_data(&dave["trampoline_tlvs"]["encrypted_recipient_data"])
    );
    let RecipientData::Forward {
        next: NextBlindedHop::NodeId(next_node),
        ..
    } = recipient_data.data
    else {
        unreachable!()
    };
    let NextPacket::Forward(next_trampoline) = inner.next else {
        panic!("Dave is not the last trampoline")
    };

    // Dave relays to Eve with the rotated path key.
    let relay_dave = &v["relay_payment_dave"];
    let d_hops = relay_dave["hops"].as_array().unwrap();
    assert_eq!(next_node, pk(&d_hops[0]["pubkey"]));
    let eve_path_key = next_path_key(&secp, path_key, &path_ss).unwrap();
    checks.bytes(
        "Eve path key",
        &eve_path_key.serialize(),
        &hx(&d_hops[0]["tlvs"]["current_path_key"]),
    );
    let eve_payload = trampoline_entry(&d_hops[0]["tlvs"], Some(eve_path_key), &next_trampoline);
    checks.bytes(
        "Eve payload",
        &eve_payload.encode().unwrap(),
        &hx(&d_hops[0]["encoded_tlvs"]),
    );
    let hops = vec![SphinxHop {
        node_id: next_node,
        payload: eve_payload.encode().unwrap(),
    }];
    let ad_dave = hx(&relay_dave["associated_data"]);
    let onion = build(
        &secp,
        &sk(&relay_dave["session_key"]),
        &hops,
        &ad_dave,
        1300,
    )
    .unwrap();
    checks.bytes(
        "Dave's onion",
        &onion.packet.to_bytes(),
        &hx(&relay_dave["onion"]),
    );

    // Eve: outer with her real key, trampoline with her blinded key.
    let eve = &v["receive_payment_eve"];
    checks.bytes(
        "Eve input onion",
        &hx(&eve["onion"]),
        &hx(&relay_dave["onion"]),
    );
    let eve_key = sk(&eve["node_privkey"]);
    let peeled = peel_key(&secp, &eve_key, &hx(&eve["onion"]), &ad_dave);
    assert!(peeled.is_final());
    checks.bytes(
        "Eve peeled payload",
        &peeled.payload,
        &hx(&d_hops[0]["encoded_tlvs"]),
    );
    let decoded = OuterPayload::decode(&peeled.payload).unwrap();
    assert_eq!(
        decoded,
        trampoline_entry(
            &eve["tlvs"],
            Some(pk(&eve["tlvs"]["current_path_key"])),
            &next_trampoline
        )
    );
    let OuterHop::TrampolineEntry {
        current_path_key: Some(path_key),
        trampoline_onion,
        ..
    } = &decoded.hop
    else {
        unreachable!()
    };
    let eve_ss = SharedSecret::new(path_key, &eve_key);
    let inner = peel_blinded(&secp, &eve_key, &eve_ss, trampoline_onion, &ad_dave);
    assert!(inner.is_final());
    checks.bytes(
        "Eve trampoline payload (peeled)",
        &inner.payload,
        &hx(&t_hops[2]["encoded_tlvs"]),
    );
    let decoded_t = TrampolinePayload::decode(&inner.payload).unwrap();
    assert_eq!(decoded_t, eve_t_payload);
    let TrampolineHop::BlindedReceive {
        encrypted_recipient_data,
        amt_to_forward,
        outgoing_cltv_value,
        ..
    } = &decoded_t.hop
    else {
        unreachable!()
    };
    let eve_inner = &eve["tlvs"]["trampoline_onion"];
    assert_eq!(*amt_to_forward, num(&eve_inner["amt_to_forward"]));
    assert_eq!(
        *outgoing_cltv_value,
        num32(&eve_inner["outgoing_cltv_value"])
    );
    let plaintext = decrypt_recipient_data(&eve_ss, encrypted_recipient_data).unwrap();
    checks.bytes(
        "Eve recipient data",
        &plaintext,
        &hx(&path_hops[1]["encoded_tlvs"]),
    );
    let RecipientData::Receive { path_id, .. } =
        RecipientDataTlvs::decode(&plaintext).unwrap().data
    else {
        unreachable!()
    };
    checks.bytes(
        "Eve path_id",
        &path_id,
        &hx(&eve_inner["encrypted_recipient_data"]["path_id"]),
    );
}
