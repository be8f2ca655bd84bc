//! A few seconds of each fuzz target (`fuzz/`, `cargo fuzz run <target>`)
//! in `cargo test`: every entry point of `ldk_trampoline::fuzz_targets` over
//! random inputs and over mutations of valid ones, from a fixed seed. A panic
//! here is a bug the fuzzer would find; run the target under `cargo fuzz` to
//! search further.

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use ldk_trampoline::fuzz_targets;
use ldk_trampoline::onion::{
	FailureMessage, OuterHop, OuterPayload, PaymentData, TlvLayout, TrampolineHop,
	TrampolinePayload,
};
use lightning::types::payment::{PaymentPreimage, PaymentSecret};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inputs per target.
const RUNS: usize = 3_000;

/// A mutation of `seed`: bytes flipped, inserted, removed, or cut off.
fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
	let mut out = seed.to_vec();
	for _ in 0..rng.gen_range(1..=4) {
		match rng.gen_range(0..5) {
			0 if !out.is_empty() => {
				let i = rng.gen_range(0..out.len());
				out[i] ^= 1 << rng.gen_range(0..8);
			},
			1 if !out.is_empty() => {
				let i = rng.gen_range(0..out.len());
				out[i] = rng.gen();
			},
			2 => {
				let i = rng.gen_range(0..=out.len());
				out.insert(i, rng.gen());
			},
			3 if !out.is_empty() => {
				out.remove(rng.gen_range(0..out.len()));
			},
			_ => out.truncate(rng.gen_range(0..=out.len())),
		}
	}
	out
}

fn random(rng: &mut StdRng, max_len: usize) -> Vec<u8> {
	let len = rng.gen_range(0..=max_len);
	(0..len).map(|_| rng.gen()).collect()
}

/// `RUNS` inputs: a third random, the rest mutations of `seeds` with `prefix`
/// (a target's mode byte) in front.
fn run(name: &str, target: fn(&[u8]), seeds: &[Vec<u8>], max_len: usize) {
	let mut rng = StdRng::seed_from_u64(0x7472_616d);
	for seed in seeds {
		target(seed);
	}
	for i in 0..RUNS {
		let input = if i % 3 == 0 || seeds.is_empty() {
			random(&mut rng, max_len)
		} else {
			let seed = &seeds[rng.gen_range(0..seeds.len())];
			mutate(&mut rng, seed)
		};
		target(&input);
	}
	println!("{name}: {} inputs", RUNS + seeds.len());
}

fn node(byte: u8) -> PublicKey {
	PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[byte; 32]).unwrap())
}

fn payment_data() -> Option<PaymentData> {
	Some(PaymentData { payment_secret: PaymentSecret([5; 32]), total_msat: 60_000 })
}

fn outer_payloads() -> Vec<Vec<u8>> {
	let trampoline =
		ldk_trampoline::onion::OnionPacket::new(node(2), vec![3; 400], [4; 32]).unwrap();
	let hops = [
		OuterHop::Receive {
			amt_to_forward: 50_000,
			outgoing_cltv_value: 800,
			payment_data: payment_data(),
			payment_metadata: Some(vec![1, 2, 3]),
			keysend_preimage: Some(PaymentPreimage([6; 32])),
		},
		OuterHop::TrampolineEntry {
			amt_to_forward: 50_000,
			outgoing_cltv_value: 800,
			payment_data: payment_data(),
			current_path_key: None,
			trampoline_onion: trampoline.clone(),
			layout: TlvLayout::Spec,
		},
		OuterHop::TrampolineEntry {
			amt_to_forward: 50_000,
			outgoing_cltv_value: 800,
			payment_data: None,
			current_path_key: Some(node(3)),
			trampoline_onion: trampoline,
			layout: TlvLayout::Legacy,
		},
	];
	hops.into_iter().map(|hop| OuterPayload::new(hop).encode().unwrap()).collect()
}

fn trampoline_payloads() -> Vec<Vec<u8>> {
	let hops = [
		TrampolineHop::ToTrampoline {
			amt_to_forward: 40_000,
			outgoing_cltv_value: 700,
			outgoing_node_id: node(7),
			async_payment: true,
			layout: TlvLayout::Spec,
		},
		TrampolineHop::ToTrampoline {
			amt_to_forward: 40_000,
			outgoing_cltv_value: 700,
			outgoing_node_id: node(7),
			async_payment: false,
			layout: TlvLayout::Legacy,
		},
		TrampolineHop::ToLegacyRecipient {
			amt_to_forward: 40_000,
			outgoing_cltv_value: 700,
			outgoing_node_id: node(8),
			payment_data: payment_data().unwrap(),
			payment_metadata: Some(vec![9; 4]),
			invoice_features: Some(vec![2, 0, 0]),
			invoice_routing_info: Vec::new(),
		},
		TrampolineHop::Receive {
			amt_to_forward: 40_000,
			outgoing_cltv_value: 700,
			payment_data: payment_data(),
			payment_metadata: None,
		},
	];
	hops.into_iter().map(|hop| TrampolinePayload::new(hop).encode().unwrap()).collect()
}

fn failures() -> Vec<Vec<u8>> {
	[
		FailureMessage::TemporaryTrampolineFailure,
		FailureMessage::TrampolineFeeOrExpiryInsufficient {
			fee_base_msat: 1_000,
			fee_proportional_millionths: 100,
			cltv_expiry_delta: 288,
		},
		FailureMessage::InvalidOnionPayload { tlv_type: 14, offset: 3 },
	]
	.iter()
	.map(FailureMessage::encode)
	.collect()
}

fn with_prefix(prefix: u8, seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
	seeds.iter().map(|s| [&[prefix][..], s].concat()).collect()
}

#[test]
fn outer_onion() {
	let payloads = outer_payloads();
	let mut seeds = with_prefix(1, &payloads);
	seeds.extend(with_prefix(0, &payloads));
	run("outer_onion", fuzz_targets::outer_onion, &seeds, 1_500);
}

#[test]
fn trampoline_onion() {
	let payloads = trampoline_payloads();
	let mut seeds = Vec::new();
	for mode in [0u8, 1] {
		// Mode, hop_payloads length, plaintext.
		seeds.extend(payloads.iter().map(|p| [&[mode, 1, 0][..], p].concat()));
	}
	seeds.extend(with_prefix(2, &payloads));
	run("trampoline_onion", fuzz_targets::trampoline_onion, &seeds, 1_500);
}

#[test]
fn failure_message() {
	run("failure_message", fuzz_targets::failure_message, &failures(), 300);
}

#[test]
fn error_packet() {
	let mut seeds = Vec::new();
	for failure in failures() {
		// 3 outer and 2 trampoline hops, created by hop 1, 3 and 4.
		for origin in [1u8, 3, 4] {
			seeds.push([&[0x40 | 3 | (2 << 3), origin][..], &failure].concat());
		}
	}
	run("error_packet", fuzz_targets::error_packet, &seeds, 600);
}

#[test]
fn update_add() {
	let mut seeds = Vec::new();
	// Channel known, secrets issued, two adds; each a trampoline entry whose
	// inner payload is a forward to a next trampoline.
	let add = |flags: u8| {
		let mut add = vec![flags, 1, 0];
		add.extend_from_slice(&60_000u64.to_be_bytes());
		add.extend_from_slice(&1_000u32.to_be_bytes());
		add.push(1);
		add.extend_from_slice(&60_000u64.to_be_bytes());
		add.push(0);
		add.extend_from_slice(&800u32.to_be_bytes());
		add.push(2);
		add.extend_from_slice(&60_000u64.to_be_bytes());
		add.push(0);
		add.extend_from_slice(&40_000u64.to_be_bytes());
		add.push(0);
		add.extend_from_slice(&600u32.to_be_bytes());
		add.extend_from_slice(&[1, 0]);
		add
	};
	for flags in [3 | 8, 3 | 8 | 4, 3 | 8 | 32] {
		seeds.push([&[0x15][..], &add(flags), &add(flags)].concat());
	}
	seeds.push([&[0x05][..], &add(2 | 8)].concat());
	run("update_add", fuzz_targets::update_add, &seeds, 1_500);
}
