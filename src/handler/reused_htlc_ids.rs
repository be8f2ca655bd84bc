//! Unit tests of the inbound rewrite against a stand-in node: what happens
//! to an HTLC record when an add comes again under its HTLC id (issue 12, item 10).

use std::sync::Arc;

use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use lightning::ln::types::ChannelId;
use lightning::sign::{KeysManager, NodeSigner};
use lightning::util::persist::KVStoreSync;

use super::rewrite_update_add;
use crate::relay::store::{htlc_key, HtlcRecord};
use crate::relay::{RelayCore, RelayLimits, TrampolinePolicy};
use crate::testkit::{invoice, trampoline_htlc, HtlcShape, MemoryStore, NoLogger, StandInNode};

const HEIGHT: u32 = 1_000;
const AMOUNT_MSAT: u64 = 50_000_000;
const CHANNEL: ChannelId = ChannelId([1; 32]);
const HTLC_ID: u64 = 7;

struct Setup {
	core: RelayCore,
	node: StandInNode,
	secp: Secp256k1<All>,
	recipient_key: SecretKey,
	payer: PublicKey,
}

fn setup() -> Setup {
	setup_with(RelayLimits::default())
}

fn setup_with(limits: RelayLimits) -> Setup {
	let keys = Arc::new(KeysManager::new(&[42; 32], 1_800_000_000, 0, true));
	let node = StandInNode::new(&keys, 1_800_000_000);
	let core = RelayCore::new(
		keys as Arc<dyn NodeSigner + Send + Sync>,
		Arc::new(MemoryStore::default()) as Arc<dyn KVStoreSync + Send + Sync>,
		TrampolinePolicy::default(),
		limits,
		Arc::new(NoLogger),
	)
	.expect("core");
	let secp = Secp256k1::new();
	let payer = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[9; 32]).expect("key"));
	let recipient_key = SecretKey::from_slice(&[7; 32]).expect("key");
	Setup { core, node, secp, recipient_key, payer }
}

impl Setup {
	/// An honest trampoline payment of a fresh invoice under `HTLC_ID`,
	/// rewritten; returns the record it left.
	fn add(&self) -> HtlcRecord {
		let fee = TrampolinePolicy::default().fee_msat(AMOUNT_MSAT);
		let (invoice, _) = invoice(&self.secp, &self.recipient_key, AMOUNT_MSAT);
		let shape = HtlcShape {
			channel_id: CHANNEL,
			htlc_id: HTLC_ID,
			amount_msat: AMOUNT_MSAT + fee,
			cltv_expiry: HEIGHT + 1_000,
		};
		let msg = trampoline_htlc(&self.secp, self.node.node_id, &invoice, fee, HEIGHT, &shape);
		let _ = rewrite_update_add(&self.core, &self.node, &self.payer, &msg);
		self.record()
	}

	fn record(&self) -> HtlcRecord {
		self.core.store().htlc(&htlc_key(&CHANNEL, HTLC_ID)).expect("a record under the id")
	}
}

/// Issue 12, item 10. LDK forgets an add that a disconnection dropped before
/// commitment, and the next add may reuse its id. That add is judged afresh,
/// admission included: the dropped one no longer counts against its payer's
/// limits (a payer at its limit can send again), and the next one gets its
/// own payment, bucket and onion secrets (with the old record's, its payer
/// could not read its failure).
#[test]
fn an_add_under_the_id_of_one_a_disconnection_dropped_is_judged_afresh() {
	let limits = RelayLimits { max_live_buckets_per_peer: 1, ..RelayLimits::default() };
	let s = setup_with(limits);
	let dropped = s.add();
	assert!(dropped.bucket.is_some(), "the first add is a valid forward");
	let next = s.add();
	assert!(next.reject.is_none(), "the dropped add still counted: the next one was refused");
	assert!(next.bucket.is_some());
	assert_ne!(next.payment_hash, dropped.payment_hash);
	assert_ne!(next.bucket, dropped.bucket, "the next add joined the dropped one's bucket");
	assert_ne!(
		next.outer_shared_secret, dropped.outer_shared_secret,
		"the next add's failure would be wrapped with the dropped one's secret"
	);
}

/// An add under an id LDK holds (committed) is LDK's to reject: it never
/// rewrites the committed HTLC's record, whose secrets its failure needs.
#[test]
fn an_add_under_a_committed_id_never_rewrites_its_record() {
	let mut s = setup();
	let committed = s.add();
	s.node.has_inbound_htlc = true;
	let after = s.add();
	assert_eq!(after.payment_hash, committed.payment_hash);
	assert_eq!(after.bucket, committed.bucket);
	assert_eq!(after.outer_shared_secret, committed.outer_shared_secret);
}
