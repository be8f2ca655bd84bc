//! Unit tests: limits per peer and per node, deadlines at admission,
//! release decisions (unknown, mismatched, replayed, refused), persistence
//! across a reload.

use std::sync::Arc;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::msgs::{OnionPacket, UpdateAddHTLC};
use lightning::ln::types::ChannelId;
use lightning::sign::KeysManager;
use lightning::types::payment::PaymentHash;
use lightning::util::logger::{Logger, Record};
use lightning::util::persist::KVStoreSync;
use lightning_persister::fs_store::FilesystemStore;

use super::*;

struct NoLog;
impl Logger for NoLog {
	fn log(&self, _: Record) {}
}

const HEIGHT: u32 = 500;

fn peer(byte: u8) -> PublicKey {
	PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[byte; 32]).unwrap())
}

fn add(channel: u8, htlc_id: u64, amount_msat: u64, cltv_expiry: u32) -> UpdateAddHTLC {
	UpdateAddHTLC {
		channel_id: ChannelId([channel; 32]),
		htlc_id,
		amount_msat,
		payment_hash: PaymentHash([htlc_id as u8; 32]),
		cltv_expiry,
		skimmed_fee_msat: None,
		onion_routing_packet: OnionPacket {
			version: 0,
			public_key: Ok(peer(9)),
			hop_data: [0; 20 * 65],
			hmac: [0; 32],
		},
		blinding_point: None,
		hold_htlc: Some(()),
	}
}

fn signer() -> Arc<dyn NodeSigner + Send + Sync> {
	Arc::new(KeysManager::new(&[7; 32], 1, 1, true))
}

/// Our channel's `cltv_expiry_delta`: these onions are not for us, so the
/// deadline is counted from `cltv_expiry - DELTA`.
const DELTA: u16 = 72;

/// The lowest `cltv_expiry` the default policy holds at [`HEIGHT`].
const LOWEST_CLTV: u32 = HEIGHT + DELTA as u32 + LDK_FAIL_BACK_BUFFER + 12 + 1;

fn hold(dir: &std::path::Path, policy: HtlcHoldPolicy) -> HtlcHold {
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(FilesystemStore::new(dir.to_path_buf()));
	HtlcHold::new(kv, policy, signer(), Arc::new(NoLog)).expect("loads")
}

fn state_of(hold: &HtlcHold, channel: u8, htlc_id: u64, from: &PublicKey) -> Option<HoldState> {
	let id = intercept_id(htlc_id, &ChannelId([channel; 32]), from);
	hold.registry().get(&id).map(|r| r.state)
}

fn take_events(hold: &HtlcHold) -> Vec<HoldEvent> {
	std::mem::take(&mut *hold.events.lock().unwrap())
}

#[test]
fn intercept_id_is_ldks() {
	// LDK 0.2.7 `InterceptId::from_htlc_id_and_chan_id` (private): SHA256 of
	// the HTLC id (big-endian), the channel id and the peer's key.
	let id = intercept_id(7, &ChannelId([1; 32]), &peer(2));
	let mut preimage = 7u64.to_be_bytes().to_vec();
	preimage.extend_from_slice(&[1; 32]);
	preimage.extend_from_slice(&peer(2).serialize());
	assert_eq!(id.0, sha256::Hash::hash(&preimage).to_byte_array());
}

#[test]
fn limits_per_peer_and_per_node() {
	let dir = tempfile::tempdir().unwrap();
	let policy = HtlcHoldPolicy {
		max_htlcs_per_peer: 2,
		max_msat_per_peer: 5_000,
		max_htlcs: 3,
		..HtlcHoldPolicy::default()
	};
	let hold = hold(dir.path(), policy);
	let (a, b, c) = (peer(1), peer(2), peer(3));
	let cltv = HEIGHT + 1000;
	hold.on_add(a, &add(1, 0, 2_000, cltv), HEIGHT, DELTA);
	hold.on_add(a, &add(1, 1, 2_000, cltv), HEIGHT, DELTA);
	// Third from A: count limit.
	hold.on_add(a, &add(1, 2, 100, cltv), HEIGHT, DELTA);
	assert_eq!(
		state_of(&hold, 1, 2, &a),
		Some(HoldState::Refused { reason: HoldRefusal::PeerCount })
	);
	// B: value limit (5,000 msat), then within it.
	hold.on_add(b, &add(2, 0, 6_000, cltv), HEIGHT, DELTA);
	assert_eq!(
		state_of(&hold, 2, 0, &b),
		Some(HoldState::Refused { reason: HoldRefusal::PeerValue })
	);
	hold.on_add(b, &add(2, 1, 5_000, cltv), HEIGHT, DELTA);
	assert_eq!(state_of(&hold, 2, 1, &b), Some(HoldState::Held));
	// C: the node holds 3 already.
	hold.on_add(c, &add(3, 0, 1, cltv), HEIGHT, DELTA);
	assert_eq!(
		state_of(&hold, 3, 0, &c),
		Some(HoldState::Refused { reason: HoldRefusal::NodeCount })
	);
	// Too close to its expiry to hold: LDK would time it out 39 blocks
	// before `cltv_expiry - DELTA`, we 12 blocks before that.
	let dir2 = tempfile::tempdir().unwrap();
	let roomy = self::hold(dir2.path(), HtlcHoldPolicy::default());
	roomy.on_add(c, &add(3, 1, 1, LOWEST_CLTV - 1), HEIGHT, DELTA);
	assert_eq!(
		state_of(&roomy, 3, 1, &c),
		Some(HoldState::Refused { reason: HoldRefusal::TooCloseToExpiry })
	);
	roomy.on_add(c, &add(3, 2, 1, LOWEST_CLTV), HEIGHT, DELTA);
	assert_eq!(state_of(&roomy, 3, 2, &c), Some(HoldState::Held));

	let events = take_events(&hold);
	let refused = events.iter().filter(|e| matches!(e, HoldEvent::Refused(_))).count();
	let held = events.iter().filter(|e| matches!(e, HoldEvent::Held(_))).count();
	assert_eq!((held, refused), (3, 3), "{events:?}");
	let listed = hold.list();
	assert_eq!(listed.len(), 6);
	assert!(listed.iter().any(|h| h.reason.starts_with("refused: the peer already has")));
}

#[test]
fn a_retransmitted_add_is_recorded_once() {
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy { max_htlcs_per_peer: 1, ..Default::default() });
	let a = peer(1);
	hold.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA);
	// The same add again (reconnection): not a second HTLC, not refused.
	hold.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA);
	assert_eq!(hold.registry().len(), 1);
	assert_eq!(state_of(&hold, 1, 0, &a), Some(HoldState::Held));
	// Sent again differently (the first was never committed): judged
	// afresh, against the limits without the add it replaces.
	hold.on_add(a, &add(1, 0, 2_000, HEIGHT + 500), HEIGHT, DELTA);
	assert_eq!(hold.registry().len(), 1);
	let record = hold.registry().get(&intercept_id(0, &ChannelId([1; 32]), &a)).unwrap();
	assert_eq!((record.amount_msat, record.state), (2_000, HoldState::Held));
	let strict = HtlcHoldPolicy { max_msat_per_peer: 1_500, ..Default::default() };
	let dir = tempfile::tempdir().unwrap();
	let strict = self::hold(dir.path(), strict);
	strict.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA);
	strict.on_add(a, &add(1, 0, 2_000, HEIGHT + 500), HEIGHT, DELTA);
	assert_eq!(
		state_of(&strict, 1, 0, &a),
		Some(HoldState::Refused { reason: HoldRefusal::PeerValue }),
		"a bigger amount sent again must not slip past the value limit"
	);
}

#[test]
fn releases_only_what_is_held_and_only_once() {
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy { max_htlcs_per_peer: 1, ..Default::default() });
	let a = peer(1);
	let cltv = HEIGHT + 500;
	hold.on_add(a, &add(1, 0, 1_000, cltv), HEIGHT, DELTA);
	hold.on_add(a, &add(1, 1, 1_000, cltv), HEIGHT, DELTA); // refused: count
	let held = intercept_id(0, &ChannelId([1; 32]), &a);
	let refused = intercept_id(1, &ChannelId([1; 32]), &a);

	// Unknown id; an id naming another HTLC id; a refused HTLC.
	let unknown = intercept_id(9, &ChannelId([1; 32]), &a);
	assert_eq!(hold.on_release(&unknown, 9, 42), Err(IgnoredRelease::Unknown));
	assert_eq!(hold.on_release(&held, 5, 42), Err(IgnoredRelease::Mismatch));
	assert_eq!(hold.on_release(&refused, 1, 42), Err(IgnoredRelease::Refused));
	assert_eq!(state_of(&hold, 1, 0, &a), Some(HoldState::Held));

	// The release, then its replay.
	assert_eq!(hold.on_release(&held, 0, 42), Ok(()));
	assert!(matches!(
		state_of(&hold, 1, 0, &a),
		Some(HoldState::Released { prev_outbound_scid_alias: 42, .. })
	));
	assert_eq!(hold.on_release(&held, 0, 42), Err(IgnoredRelease::AlreadyReleased));
	let released =
		take_events(&hold).into_iter().filter(|e| matches!(e, HoldEvent::Released(_))).count();
	assert_eq!(released, 1);
}

#[test]
fn the_registry_survives_a_reload() {
	let dir = tempfile::tempdir().unwrap();
	let a = peer(1);
	{
		let hold = hold(dir.path(), HtlcHoldPolicy { max_htlcs_per_peer: 2, ..Default::default() });
		hold.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA);
		hold.on_add(a, &add(1, 1, 2_000, HEIGHT + 600), HEIGHT, DELTA);
		hold.on_add(a, &add(1, 2, 3_000, HEIGHT + 700), HEIGHT, DELTA);
		let id = intercept_id(1, &ChannelId([1; 32]), &a);
		assert_eq!(hold.on_release(&id, 1, 7), Ok(()));
	}
	let hold = hold(dir.path(), HtlcHoldPolicy { max_htlcs_per_peer: 2, ..Default::default() });
	assert_eq!(hold.registry().len(), 3);
	assert_eq!(state_of(&hold, 1, 0, &a), Some(HoldState::Held));
	assert!(matches!(
		state_of(&hold, 1, 1, &a),
		Some(HoldState::Released { prev_outbound_scid_alias: 7, .. })
	));
	assert_eq!(
		state_of(&hold, 1, 2, &a),
		Some(HoldState::Refused { reason: HoldRefusal::PeerCount })
	);
	let record = hold.registry().get(&intercept_id(0, &ChannelId([1; 32]), &a)).unwrap();
	assert_eq!((record.amount_msat, record.cltv_expiry), (1_000, HEIGHT + 500));
	assert_eq!(record.deadline_height, HEIGHT + 500 - 72 - 39 - 12);
	// A replay after the restart is still refused.
	let id = intercept_id(1, &ChannelId([1; 32]), &a);
	assert_eq!(hold.on_release(&id, 1, 7), Err(IgnoredRelease::AlreadyReleased));
}

#[test]
fn a_corrupt_record_is_reported_not_skipped() {
	let dir = tempfile::tempdir().unwrap();
	let kv = FilesystemStore::new(dir.path().to_path_buf());
	kv.write(registry::NAMESPACE, "held", "00", vec![1, 2, 3]).unwrap();
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(kv);
	let err = HtlcHold::new(kv, HtlcHoldPolicy::default(), signer(), Arc::new(NoLog))
		.err()
		.expect("refused");
	assert!(matches!(err, HoldError::Corrupt { .. }), "{err}");
}

#[test]
fn the_deadline_comes_from_the_onions_outgoing_cltv() {
	// A real onion for this node with a forward payload whose outgoing CLTV
	// is 200 blocks below the incoming one (a payer that allotted us more
	// than our channel's delta): LDK times the held HTLC out 39 blocks before
	// the outgoing CLTV, so the deadline must be counted from it, not from
	// `cltv_expiry - DELTA`.
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy::default());
	let our_id = signer().get_node_id(Recipient::Node).unwrap();
	let (incoming, outgoing) = (HEIGHT + 1000, HEIGHT + 800);
	let payload = onion::OuterPayload::new(OuterHop::Forward {
		short_channel_id: 42,
		amt_to_forward: 1_000,
		outgoing_cltv_value: outgoing,
	})
	.encode()
	.unwrap();
	let mut msg = add(1, 0, 1_100, incoming);
	let hops = [onion::SphinxHop { node_id: our_id, payload }];
	let session_key = SecretKey::from_slice(&[5; 32]).unwrap();
	let built =
		onion::build(&Secp256k1::new(), &session_key, &hops, &msg.payment_hash.0, 1300).unwrap();
	msg.onion_routing_packet.public_key = Ok(*built.packet.public_key());
	msg.onion_routing_packet.hop_data.copy_from_slice(built.packet.hop_payloads());
	msg.onion_routing_packet.hmac = *built.packet.hmac();

	hold.on_add(peer(1), &msg, HEIGHT, DELTA);
	let record = hold.registry().get(&intercept_id(0, &ChannelId([1; 32]), &peer(1))).unwrap();
	assert_eq!(record.deadline_height, outgoing - LDK_FAIL_BACK_BUFFER - 12);
}

#[test]
fn each_pass_steps_by_the_rules() {
	let at = |in_channel, seen, channel_open, past_deadline| Whereabouts {
		in_channel,
		seen,
		channel_open,
		past_deadline,
	};
	let held = HoldState::Held;
	let released = HoldState::Released { prev_outbound_scid_alias: 1, released_secs: 2 };
	let refused = HoldState::Refused { reason: HoldRefusal::PeerCount };
	// In the channel: by state and deadline.
	assert_eq!(next_step(&held, at(true, true, true, false)), Step::Hold);
	assert_eq!(next_step(&held, at(true, true, true, true)), Step::Expire);
	assert_eq!(next_step(&refused, at(true, true, true, false)), Step::FailBack);
	assert_eq!(next_step(&HoldState::Expired, at(true, true, true, true)), Step::FailBack);
	assert_eq!(
		next_step(&released, at(true, true, true, false)),
		Step::Release { fail_if_still_held: false }
	);
	assert_eq!(
		next_step(&released, at(true, true, true, true)),
		Step::Release { fail_if_still_held: true }
	);
	// Not yet committed (never seen, channel open, before the deadline):
	// kept, whatever the state; an add the payer has not signed for yet is
	// no reason to forget its limits.
	for state in [held, released, refused, HoldState::Expired] {
		assert_ne!(next_step(&state, at(false, false, true, false)), Step::Forget, "{state:?}");
	}
	// Out of the channel after being seen, or its channel closed, or never
	// seen and past the deadline: settled.
	for state in [held, released, refused, HoldState::Expired] {
		assert_eq!(next_step(&state, at(false, true, true, false)), Step::Forget);
		assert_eq!(next_step(&state, at(false, false, false, false)), Step::Forget);
		assert_eq!(next_step(&state, at(false, false, true, true)), Step::Forget);
	}
}
