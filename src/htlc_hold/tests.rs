//! Unit tests: limits per peer and per node, deadlines at admission,
//! release decisions (unknown, mismatched, replayed, refused, late),
//! persistence across a reload, and the hold loop's passes against a
//! stand-in for LDK ([`FakeLdk`]): provisional and committed records, what
//! is failed back and when, and which failures are replaced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

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
	hold.on_add(a, &add(1, 0, 2_000, cltv), HEIGHT, DELTA, false);
	hold.on_add(a, &add(1, 1, 2_000, cltv), HEIGHT, DELTA, false);
	// Third from A: count limit.
	hold.on_add(a, &add(1, 2, 100, cltv), HEIGHT, DELTA, false);
	assert_eq!(
		state_of(&hold, 1, 2, &a),
		Some(HoldState::Refused { reason: HoldRefusal::PeerCount })
	);
	// B: value limit (5,000 msat), then within it.
	hold.on_add(b, &add(2, 0, 6_000, cltv), HEIGHT, DELTA, false);
	assert_eq!(
		state_of(&hold, 2, 0, &b),
		Some(HoldState::Refused { reason: HoldRefusal::PeerValue })
	);
	hold.on_add(b, &add(2, 1, 5_000, cltv), HEIGHT, DELTA, false);
	assert_eq!(state_of(&hold, 2, 1, &b), Some(HoldState::Held));
	// C: the node holds 3 already, once LDK committed them.
	let ldk =
		FakeLdk::listing(&[(1, 0, true), (1, 1, true), (1, 2, true), (2, 0, true), (2, 1, true)]);
	let mut events = hold.pass(&ldk, HEIGHT);
	hold.on_add(c, &add(3, 0, 1, cltv), HEIGHT, DELTA, false);
	assert_eq!(
		state_of(&hold, 3, 0, &c),
		Some(HoldState::Refused { reason: HoldRefusal::NodeCount })
	);
	// Too close to its expiry to hold: LDK would time it out 39 blocks
	// before `cltv_expiry - DELTA`, we 12 blocks before that.
	let dir2 = tempfile::tempdir().unwrap();
	let roomy = self::hold(dir2.path(), HtlcHoldPolicy::default());
	roomy.on_add(c, &add(3, 1, 1, LOWEST_CLTV - 1), HEIGHT, DELTA, false);
	assert_eq!(
		state_of(&roomy, 3, 1, &c),
		Some(HoldState::Refused { reason: HoldRefusal::TooCloseToExpiry })
	);
	roomy.on_add(c, &add(3, 2, 1, LOWEST_CLTV), HEIGHT, DELTA, false);
	assert_eq!(state_of(&roomy, 3, 2, &c), Some(HoldState::Held));

	events.extend(take_events(&hold));
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
	hold.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA, false);
	// The same add again (reconnection): not a second HTLC, not refused.
	hold.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA, false);
	assert_eq!(hold.registry().len(), 1);
	assert_eq!(state_of(&hold, 1, 0, &a), Some(HoldState::Held));
	// Sent again differently (the first was never committed): judged
	// afresh, against the limits without the add it replaces.
	hold.on_add(a, &add(1, 0, 2_000, HEIGHT + 500), HEIGHT, DELTA, false);
	assert_eq!(hold.registry().len(), 1);
	let record = hold.registry().get(&intercept_id(0, &ChannelId([1; 32]), &a)).unwrap();
	assert_eq!((record.amount_msat, record.state), (2_000, HoldState::Held));
	let strict = HtlcHoldPolicy { max_msat_per_peer: 1_500, ..Default::default() };
	let dir = tempfile::tempdir().unwrap();
	let strict = self::hold(dir.path(), strict);
	strict.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA, false);
	strict.on_add(a, &add(1, 0, 2_000, HEIGHT + 500), HEIGHT, DELTA, false);
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
	hold.on_add(a, &add(1, 0, 1_000, cltv), HEIGHT, DELTA, false);
	hold.on_add(a, &add(1, 1, 1_000, cltv), HEIGHT, DELTA, false); // refused: count
	let held = intercept_id(0, &ChannelId([1; 32]), &a);
	let refused = intercept_id(1, &ChannelId([1; 32]), &a);

	// Unknown id; an id naming another HTLC id; a refused HTLC.
	let unknown = intercept_id(9, &ChannelId([1; 32]), &a);
	assert_eq!(hold.on_release(&unknown, 9, 42, HEIGHT), Err(IgnoredRelease::Unknown));
	assert_eq!(hold.on_release(&held, 5, 42, HEIGHT), Err(IgnoredRelease::Mismatch));
	assert_eq!(hold.on_release(&refused, 1, 42, HEIGHT), Err(IgnoredRelease::Refused));
	assert_eq!(state_of(&hold, 1, 0, &a), Some(HoldState::Held));

	// The release, then its replay.
	assert_eq!(hold.on_release(&held, 0, 42, HEIGHT), Ok(()));
	assert!(matches!(
		state_of(&hold, 1, 0, &a),
		Some(HoldState::Released { prev_outbound_scid_alias: 42, .. })
	));
	assert_eq!(hold.on_release(&held, 0, 42, HEIGHT), Err(IgnoredRelease::AlreadyReleased));
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
		hold.on_add(a, &add(1, 0, 1_000, HEIGHT + 500), HEIGHT, DELTA, false);
		hold.on_add(a, &add(1, 1, 2_000, HEIGHT + 600), HEIGHT, DELTA, false);
		hold.on_add(a, &add(1, 2, 3_000, HEIGHT + 700), HEIGHT, DELTA, false);
		let id = intercept_id(1, &ChannelId([1; 32]), &a);
		assert_eq!(hold.on_release(&id, 1, 7, HEIGHT), Ok(()));
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
	assert_eq!(hold.on_release(&id, 1, 7, HEIGHT), Err(IgnoredRelease::AlreadyReleased));
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
	let (incoming, outgoing) = (HEIGHT + 1000, HEIGHT + 800);
	let msg = forward_add(1, 0, 1_100, incoming, outgoing);
	hold.on_add(peer(1), &msg, HEIGHT, DELTA, false);
	let record = hold.registry().get(&intercept_id(0, &ChannelId([1; 32]), &peer(1))).unwrap();
	assert_eq!(record.deadline_height, outgoing - LDK_FAIL_BACK_BUFFER - 12);
}

#[test]
fn each_pass_steps_by_the_rules() {
	let at = |in_channel, committed, add_handled, past_deadline| Whereabouts {
		in_channel,
		committed,
		add_handled,
		past_deadline,
	};
	let held = HoldState::Held;
	let released = HoldState::Released { prev_outbound_scid_alias: 1, released_secs: 2 };
	let refused = HoldState::Refused { reason: HoldRefusal::PeerCount };
	// In the channel: by state and deadline; past it nothing is released.
	for committed in [true, false] {
		assert_eq!(next_step(&held, at(true, committed, true, false)), Step::Hold);
		assert_eq!(next_step(&held, at(true, committed, true, true)), Step::Expire);
		assert_eq!(next_step(&refused, at(true, committed, true, false)), Step::FailBack);
		assert_eq!(next_step(&HoldState::Expired, at(true, committed, true, true)), Step::FailBack);
		assert_eq!(next_step(&released, at(true, committed, true, false)), Step::Release);
		assert_eq!(next_step(&released, at(true, committed, true, true)), Step::FailBack);
	}
	// An add LDK has not handled yet (not listed, provisional, before the
	// deadline): kept, whatever the state.
	for state in [held, released, refused, HoldState::Expired] {
		assert_ne!(next_step(&state, at(false, false, false, false)), Step::Forget, "{state:?}");
	}
	// Not in the channel after being committed, or after LDK handled its
	// add, or past the deadline: forgotten.
	for state in [held, released, refused, HoldState::Expired] {
		assert_eq!(next_step(&state, at(false, true, false, false)), Step::Forget);
		assert_eq!(next_step(&state, at(false, false, true, false)), Step::Forget);
		assert_eq!(next_step(&state, at(false, false, false, true)), Step::Forget);
	}
}

/// A call the hold loop made to LDK.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
	/// `fail_intercepted_htlc` (LDK flags its ChannelManager for a save on
	/// every call, held or not), and whether LDK held it.
	Fail(InterceptId, bool),
	/// `handle_release_held_htlc`, and whether LDK held it (then forwards it).
	Release(InterceptId, bool),
}

/// A stand-in for the channel manager: the listing, what it holds, and the
/// calls it got.
#[derive(Default)]
struct FakeLdk {
	listed: Mutex<HashMap<(ChannelId, u64), bool>>,
	held: Mutex<HashSet<InterceptId>>,
	calls: Mutex<Vec<Call>>,
	/// Run while the listing is read (an add LDK handles meanwhile).
	on_listing: Option<Box<dyn Fn()>>,
}

impl FakeLdk {
	/// LDK lists these (channel byte, HTLC id, committed).
	fn listing(htlcs: &[(u8, u64, bool)]) -> Self {
		let ldk = Self::default();
		ldk.list(htlcs);
		ldk
	}

	fn list(&self, htlcs: &[(u8, u64, bool)]) {
		let mut listed = self.listed.lock().unwrap();
		listed.clear();
		listed.extend(
			htlcs.iter().map(|(c, id, committed)| ((ChannelId([*c; 32]), *id), *committed)),
		);
	}

	/// LDK holds `id` (moved it to `pending_intercepted_htlcs`).
	fn hold(&self, id: InterceptId) {
		self.held.lock().unwrap().insert(id);
	}

	fn calls(&self) -> Vec<Call> {
		self.calls.lock().unwrap().clone()
	}

	fn fail_calls(&self) -> usize {
		self.calls().iter().filter(|c| matches!(c, Call::Fail(..))).count()
	}
}

impl LdkHold for FakeLdk {
	fn inbound_htlcs(&self) -> HashMap<(ChannelId, u64), bool> {
		if let Some(hook) = &self.on_listing {
			hook();
		}
		self.listed.lock().unwrap().clone()
	}

	fn holds(&self, id: &InterceptId) -> bool {
		self.held.lock().unwrap().contains(id)
	}

	fn fail(&self, id: InterceptId) -> bool {
		let held = self.held.lock().unwrap().remove(&id);
		self.calls.lock().unwrap().push(Call::Fail(id, held));
		held
	}

	fn release(&self, context: AsyncPaymentsContext) {
		if let AsyncPaymentsContext::ReleaseHeldHtlc { intercept_id, .. } = context {
			let held = self.held.lock().unwrap().remove(&intercept_id);
			self.calls.lock().unwrap().push(Call::Release(intercept_id, held));
		}
	}
}

/// `msg` from `from` as the message handler shows it: recorded, then LDK
/// handles it.
fn send(hold: &HtlcHold, from: PublicKey, msg: &UpdateAddHTLC) {
	hold.on_add(from, msg, HEIGHT, DELTA, false);
	hold.add_handled(&from, msg);
}

fn id_of(channel: u8, htlc_id: u64, from: &PublicKey) -> InterceptId {
	intercept_id(htlc_id, &ChannelId([channel; 32]), from)
}

/// An add whose onion is a real forward for this node (outgoing CLTV
/// `outgoing`), so the record keeps our layer's shared secret.
fn forward_add(
	channel: u8, htlc_id: u64, amount_msat: u64, incoming: u32, outgoing: u32,
) -> UpdateAddHTLC {
	let our_id = signer().get_node_id(Recipient::Node).unwrap();
	let payload = onion::OuterPayload::new(OuterHop::Forward {
		short_channel_id: 42,
		amt_to_forward: amount_msat.saturating_sub(100),
		outgoing_cltv_value: outgoing,
	})
	.encode()
	.unwrap();
	let mut msg = add(channel, htlc_id, amount_msat, incoming);
	let hops = [onion::SphinxHop { node_id: our_id, payload }];
	let session_key = SecretKey::from_slice(&[5; 32]).unwrap();
	let built =
		onion::build(&Secp256k1::new(), &session_key, &hops, &msg.payment_hash.0, 1300).unwrap();
	msg.onion_routing_packet.public_key = Ok(*built.packet.public_key());
	msg.onion_routing_packet.hop_data.copy_from_slice(built.packet.hop_payloads());
	msg.onion_routing_packet.hmac = *built.packet.hmac();
	msg
}

#[test]
fn a_resent_add_never_rewrites_a_committed_record() {
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy::default());
	let a = peer(1);
	send(&hold, a, &add(1, 0, 1_000_000, HEIGHT + 500));
	hold.pass(&FakeLdk::listing(&[(1, 0, true)]), HEIGHT);
	let committed = hold.registry().get(&id_of(1, 0, &a)).unwrap();
	assert!(committed.committed);
	// The same id again with 1 msat: while LDK lists the HTLC (it rejects
	// the add), and after it left the channel, before the next pass.
	let resent = add(1, 0, 1, HEIGHT + 900);
	hold.on_add(a, &resent, HEIGHT, DELTA, true);
	assert_eq!(hold.registry().get(&id_of(1, 0, &a)), Some(committed.clone()));
	hold.on_add(a, &resent, HEIGHT, DELTA, false);
	assert_eq!(
		hold.registry().get(&id_of(1, 0, &a)),
		Some(committed),
		"a committed record keeps its amount, CLTV, since and deadline"
	);
	// A provisional one LDK had not listed yet, listed already under that
	// id: unchanged too.
	send(&hold, a, &add(1, 1, 2_000, HEIGHT + 500));
	let provisional = hold.registry().get(&id_of(1, 1, &a)).unwrap();
	hold.on_add(a, &add(1, 1, 1, HEIGHT + 500), HEIGHT, DELTA, true);
	assert_eq!(hold.registry().get(&id_of(1, 1, &a)), Some(provisional));
}

/// `pass` run `count` times over an empty listing.
fn unlisted_passes(hold: &HtlcHold, count: u64) {
	for _ in 0..count {
		hold.pass(&FakeLdk::default(), HEIGHT);
	}
}

#[test]
fn adds_ldk_never_lists_are_dropped_after_a_grace() {
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy::default());
	let a = peer(1);
	// Adds LDK rejected without closing the channel (while quiescent, say):
	// never listed.
	for htlc_id in 0..5 {
		send(&hold, a, &add(1, htlc_id, 1_000, HEIGHT + 500));
	}
	// One LDK has not handled yet (the handler is between the two calls).
	hold.on_add(a, &add(1, 7, 1_000, HEIGHT + 500), HEIGHT, DELTA, false);
	assert_eq!(hold.registry().len(), 6);
	// LDK 0.2.7 lists an inbound HTLC only once the payer's
	// commitment_signed covers it: until then an add it took is unlisted,
	// and its record is kept through the grace (it was dropped at the first
	// pass, losing a held HTLC whose commitment came a second late).
	unlisted_passes(&hold, UNLISTED_GRACE_PASSES);
	assert_eq!(hold.registry().len(), 6, "kept through the grace");
	// Committed now: listed, recorded as such, kept.
	hold.pass(&FakeLdk::listing(&[(1, 0, true)]), HEIGHT);
	assert!(hold.registry().get(&id_of(1, 0, &a)).unwrap().committed);
	unlisted_passes(&hold, 1);
	assert_eq!(
		hold.registry().len(),
		1,
		"phantoms dropped after the grace, the add in flight kept"
	);
	assert!(hold.registry().get(&id_of(1, 7, &a)).is_some());
	// Handled while a pass reads the listing: that pass's listing may
	// predate it; it too goes only after the grace.
	let hold = Arc::new(hold);
	let during = Arc::clone(&hold);
	let ldk = FakeLdk {
		on_listing: Some(Box::new(move || during.add_handled(&a, &add(1, 7, 1_000, HEIGHT + 500)))),
		..Default::default()
	};
	hold.pass(&ldk, HEIGHT);
	unlisted_passes(&hold, UNLISTED_GRACE_PASSES);
	assert_eq!(hold.registry().len(), 1);
	unlisted_passes(&hold, 1);
	assert!(hold.registry().is_empty());
	// After a restart nothing uncommitted is left in LDK: provisional
	// records loaded from disk go at the first pass unless listed.
	send(&hold, a, &add(1, 0, 1_000, HEIGHT + 500));
	send(&hold, a, &add(1, 1, 1_000, HEIGHT + 500));
	drop(ldk);
	drop(hold);
	let hold = self::hold(dir.path(), HtlcHoldPolicy::default());
	hold.pass(&FakeLdk::listing(&[(1, 1, true)]), HEIGHT);
	assert_eq!(hold.registry().len(), 1);
	assert!(hold.registry().get(&id_of(1, 1, &a)).unwrap().committed);
}

#[test]
fn every_record_counts_against_its_peer() {
	let dir = tempfile::tempdir().unwrap();
	let policy = HtlcHoldPolicy { max_htlcs_per_peer: 2, ..Default::default() };
	assert_eq!(policy.max_records_per_peer(), 4);
	let hold = hold(dir.path(), policy);
	let (a, b) = (peer(1), peer(2));
	// Ten adds before any pass: two held, two refused, the rest not
	// recorded (refused ones count too).
	for htlc_id in 0..10 {
		send(&hold, a, &add(1, htlc_id, 1_000, HEIGHT + 500));
	}
	assert_eq!(hold.registry().len(), 4, "{:?}", hold.list());
	let states: Vec<_> = (0..4).map(|id| state_of(&hold, 1, id, &a)).collect();
	let refused = Some(HoldState::Refused { reason: HoldRefusal::PeerCount });
	assert_eq!(states, [Some(HoldState::Held), Some(HoldState::Held), refused, refused]);
	// Another peer is not affected.
	send(&hold, b, &add(2, 0, 1_000, HEIGHT + 500));
	assert_eq!(state_of(&hold, 2, 0, &b), Some(HoldState::Held));
	// Once LDK drops A's adds, A may add again.
	hold.pass(&FakeLdk::listing(&[(2, 0, true)]), HEIGHT);
	send(&hold, a, &add(1, 0, 1_000, HEIGHT + 500));
	assert_eq!(state_of(&hold, 1, 0, &a), Some(HoldState::Held));
}

#[test]
fn the_node_limit_counts_committed_records_only() {
	let dir = tempfile::tempdir().unwrap();
	let policy = HtlcHoldPolicy { max_htlcs: 2, ..Default::default() };
	let hold = hold(dir.path(), policy);
	let (a, b) = (peer(1), peer(2));
	// A's two uncommitted adds (phantoms, say) do not shut B out.
	send(&hold, a, &add(1, 0, 1_000, HEIGHT + 500));
	send(&hold, a, &add(1, 1, 1_000, HEIGHT + 500));
	send(&hold, b, &add(2, 0, 1_000, HEIGHT + 500));
	assert_eq!(state_of(&hold, 2, 0, &b), Some(HoldState::Held));
	// All three committed: the node holds two, the third is refused.
	let ldk = FakeLdk::listing(&[(1, 0, true), (1, 1, true), (2, 0, true)]);
	let events = hold.pass(&ldk, HEIGHT);
	let states: Vec<_> = [(1, 0, a), (1, 1, a), (2, 0, b)]
		.iter()
		.map(|(c, i, p)| state_of(&hold, *c, *i, p))
		.collect();
	let held = states.iter().filter(|s| **s == Some(HoldState::Held)).count();
	let refused = Some(HoldState::Refused { reason: HoldRefusal::NodeCount });
	assert_eq!((held, states.iter().filter(|s| **s == refused).count()), (2, 1), "{states:?}");
	assert_eq!(events.iter().filter(|e| matches!(e, HoldEvent::Refused(_))).count(), 1);
	// Not committed (RemoteAnnounced, listed without a state): still
	// provisional.
	send(&hold, b, &add(2, 1, 1_000, HEIGHT + 500));
	hold.pass(
		&FakeLdk::listing(&[(1, 0, true), (1, 1, true), (2, 0, true), (2, 1, false)]),
		HEIGHT,
	);
	assert!(!hold.registry().get(&id_of(2, 1, &b)).unwrap().committed);
}

#[test]
fn fail_intercepted_htlc_only_for_what_ldk_holds_once() {
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy { max_htlcs_per_peer: 1, ..Default::default() });
	let a = peer(1);
	send(&hold, a, &add(1, 0, 1_000, HEIGHT + 500)); // held
	send(&hold, a, &add(1, 1, 1_000, HEIGHT + 500)); // refused
	let refused = id_of(1, 1, &a);
	// Listed, committed, not (yet, or ever: LDK failed it itself) held.
	let ldk = FakeLdk::listing(&[(1, 0, true), (1, 1, true)]);
	for _ in 0..5 {
		hold.pass(&ldk, HEIGHT);
	}
	assert_eq!(
		ldk.fail_calls(),
		0,
		"no call (and no ChannelManager save) for what LDK does not hold"
	);
	// LDK holds it: failed once; the payer has not acked the failure yet, so
	// it stays listed for a while.
	ldk.hold(refused);
	let events = hold.pass(&ldk, HEIGHT);
	for _ in 0..5 {
		hold.pass(&ldk, HEIGHT);
	}
	assert_eq!(ldk.calls(), vec![Call::Fail(refused, true)]);
	assert_eq!(events.iter().filter(|e| matches!(e, HoldEvent::FailedBack(_))).count(), 1);
	// Released and forwarded (LDK no longer holds it), then past the
	// deadline while the next hop settles: no call either.
	let held = id_of(1, 0, &a);
	assert_eq!(hold.on_release(&held, 0, 42, HEIGHT), Ok(()));
	let deadline = hold.registry().get(&held).unwrap().deadline_height;
	for _ in 0..5 {
		hold.pass(&ldk, deadline);
	}
	assert_eq!(ldk.fail_calls(), 1);
}

#[test]
fn a_release_after_the_deadline_is_not_forwarded() {
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy::default());
	let a = peer(1);
	send(&hold, a, &add(1, 0, 1_000, HEIGHT + 500));
	send(&hold, a, &add(1, 1, 1_000, HEIGHT + 500));
	let (late, raced) = (id_of(1, 0, &a), id_of(1, 1, &a));
	let deadline = hold.registry().get(&late).unwrap().deadline_height;
	let ldk = FakeLdk::listing(&[(1, 0, true), (1, 1, true)]);
	ldk.hold(late);
	ldk.hold(raced);
	hold.pass(&ldk, HEIGHT);
	// A release arriving at the deadline, before the pass marks it expired.
	assert_eq!(hold.on_release(&late, 0, 42, deadline), Err(IgnoredRelease::Expired));
	// A release in time that LDK has not acted on (it came before the HTLC
	// was ready, or a restart lost it); then the deadline comes.
	assert_eq!(hold.on_release(&raced, 1, 42, deadline - 1), Ok(()));
	let events = hold.pass(&ldk, deadline);
	let calls = ldk.calls();
	assert!(!calls.iter().any(|c| matches!(c, Call::Release(..))), "{calls:?}");
	assert_eq!(calls.len(), 2, "{calls:?}");
	assert!(calls.contains(&Call::Fail(late, true)) && calls.contains(&Call::Fail(raced, true)));
	assert_eq!(events.iter().filter(|e| matches!(e, HoldEvent::FailedBack(_))).count(), 2);
	// Before the deadline a recorded release is handed to LDK again.
	send(&hold, a, &add(1, 2, 1_000, HEIGHT + 500));
	let third = id_of(1, 2, &a);
	ldk.list(&[(1, 0, true), (1, 1, true), (1, 2, true)]);
	ldk.hold(third);
	assert_eq!(hold.on_release(&third, 2, 42, HEIGHT), Ok(()));
	hold.pass(&ldk, HEIGHT);
	assert!(ldk.calls().contains(&Call::Release(third, true)));
}

#[test]
fn only_failures_the_hold_caused_are_rewritten() {
	let dir = tempfile::tempdir().unwrap();
	let hold = hold(dir.path(), HtlcHoldPolicy { max_htlcs_per_peer: 0, ..Default::default() });
	let a = peer(1);
	let (incoming, outgoing) = (HEIGHT + 1000, HEIGHT + 800);
	let msg = forward_add(1, 0, 1_100, incoming, outgoing);
	send(&hold, a, &msg);
	let record = hold.registry().get(&id_of(1, 0, &a)).unwrap();
	assert!(matches!(record.state, HoldState::Refused { .. }));
	assert!(record.onion_shared_secret.is_some(), "peeled");
	// LDK failed it for its own reasons (fee insufficient, say) when it
	// decoded it: never held. Its failure goes to the payer unchanged.
	let ldk = FakeLdk::listing(&[(1, 0, true)]);
	hold.pass(&ldk, HEIGHT);
	assert_eq!(hold.failure_packet(&ChannelId([1; 32]), 0), None);
	// The next one LDK holds, and the hold fails: that failure is replaced.
	hold.pass(&FakeLdk::default(), HEIGHT);
	let msg = forward_add(1, 1, 1_100, incoming, outgoing);
	send(&hold, a, &msg);
	ldk.list(&[(1, 1, true)]);
	ldk.hold(id_of(1, 1, &a));
	hold.pass(&ldk, HEIGHT);
	let secret_1 = hold.registry().get(&id_of(1, 1, &a)).unwrap().onion_shared_secret.unwrap();
	assert_eq!(
		hold.failure_packet(&ChannelId([1; 32]), 1),
		Some(onion::create_error_packet(
			&SharedSecret::from_bytes(secret_1),
			&FailureMessage::TemporaryNodeFailure
		))
	);
}
