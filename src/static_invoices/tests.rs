//! Unit tests: quotas, global cap, oversize, expiry and eviction, rate limit,
//! persistence across a reload.

use std::sync::Arc;
use std::time::Duration;

use lightning::util::logger::{Logger, Record};
use lightning::util::persist::KVStoreSync;
use lightning::util::ser::Writeable;
use lightning_persister::fs_store::FilesystemStore;

use super::fixtures::{invoice, invoice_of_offer, message_path};
use super::*;

struct NoLog;
impl Logger for NoLog {
	fn log(&self, _: Record) {}
}

const DAY: Duration = Duration::from_secs(86_400);

fn now() -> Duration {
	unix_now()
}

fn server(dir: &std::path::Path, policy: StaticInvoicePolicy) -> StaticInvoices {
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(FilesystemStore::new(dir.to_path_buf()));
	StaticInvoices::new(kv, policy, Arc::new(NoLog)).expect("loads")
}

fn generous() -> StaticInvoicePolicy {
	StaticInvoicePolicy { rate_limit_burst: 1000, ..Default::default() }
}

fn put(s: &StaticInvoices, id: &[u8], slot: u16) -> Result<(), StaticInvoiceError> {
	s.persist(invoice(now(), DAY, 0), message_path(), slot, id.to_vec(), now())
}

#[test]
fn stores_serves_lists_and_replaces_slots() {
	let dir = tempfile::tempdir().unwrap();
	let s = server(dir.path(), generous());
	let inv = invoice(now(), DAY, 0);
	s.persist(inv.clone(), message_path(), 3, vec![1, 2, 3], now()).unwrap();
	let record = s.lookup(&[1, 2, 3], 3, b"", now()).unwrap();
	assert_eq!(record.invoice, inv);
	assert_eq!(record.invoice_request_path, message_path());
	assert!(matches!(s.lookup(&[1, 2, 3], 4, b"", now()), Err(StaticInvoiceError::NotFound)));
	assert!(matches!(s.lookup(&[9], 3, b"", now()), Err(StaticInvoiceError::NotFound)));
	let listed = s.list();
	assert_eq!(listed.len(), 1);
	assert_eq!(listed[0].recipient_id, "010203");
	assert_eq!(listed[0].slot, 3);
	let stored = inv.serialized_length() + message_path().serialized_length();
	assert_eq!(listed[0].size_bytes, stored as u64, "the invoice and its request path");
	assert_eq!(listed[0].expires_at, (inv.created_at() + DAY).as_secs());
	// The same slot again replaces, it does not add.
	put(&s, &[1, 2, 3], 3).unwrap();
	assert_eq!(s.list().len(), 1);
	assert_eq!(s.stats().stored, 2);
	assert_eq!(s.stats().not_found, 2);
}

#[test]
fn slot_and_byte_quotas_per_recipient() {
	let dir = tempfile::tempdir().unwrap();
	let size =
		(invoice(now(), DAY, 0).serialized_length() + message_path().serialized_length()) as u64;
	let policy = StaticInvoicePolicy {
		max_slots_per_recipient: 4,
		max_bytes_per_recipient: size * 2,
		..generous()
	};
	let s = server(dir.path(), policy);
	assert!(matches!(put(&s, b"a", 4), Err(StaticInvoiceError::SlotQuota { slot: 4, max: 4 })));
	put(&s, b"a", 0).unwrap();
	put(&s, b"a", 1).unwrap();
	assert!(matches!(put(&s, b"a", 2), Err(StaticInvoiceError::ByteQuota { .. })));
	// Replacing a slot within the quota is fine; other recipients unaffected.
	put(&s, b"a", 1).unwrap();
	put(&s, b"b", 2).unwrap();
	assert_eq!(s.list().len(), 3);
	assert_eq!(s.stats().refused, 2);
	assert!(!s.list().iter().any(|i| i.recipient_id == "61" && i.slot >= 2), "nothing stored");
}

#[test]
fn global_cap_evicts_expired_before_refusing() {
	let dir = tempfile::tempdir().unwrap();
	let s = server(dir.path(), StaticInvoicePolicy { max_invoices: 2, ..generous() });
	let t0 = now();
	s.persist(invoice(t0, Duration::from_secs(60), 0), message_path(), 0, b"a".to_vec(), t0)
		.unwrap();
	put(&s, b"b", 0).unwrap();
	assert!(matches!(put(&s, b"c", 0), Err(StaticInvoiceError::Full { max: 2 })));
	// Replacing an existing slot is allowed at the cap.
	put(&s, b"b", 0).unwrap();
	// Two minutes later a's invoice has expired and makes room.
	let later = t0 + Duration::from_secs(120);
	s.persist(invoice(later, DAY, 0), message_path(), 0, b"c".to_vec(), later).unwrap();
	let ids: Vec<_> = s.list().into_iter().map(|i| i.recipient_id).collect();
	assert_eq!(ids, ["62", "63"]);
	assert_eq!(s.stats().evicted, 1);
}

#[test]
fn oversized_and_expired_invoices_are_refused() {
	let dir = tempfile::tempdir().unwrap();
	let s = server(dir.path(), StaticInvoicePolicy { max_invoice_bytes: 2_000, ..generous() });
	let big = invoice(now(), DAY, 3_000);
	let err = s.persist(big, message_path(), 0, b"a".to_vec(), now()).unwrap_err();
	assert!(matches!(err, StaticInvoiceError::Oversized { max: 2_000, .. }), "{err}");
	let old = invoice(now() - 2 * DAY, DAY, 0);
	let err = s.persist(old, message_path(), 0, b"a".to_vec(), now()).unwrap_err();
	assert!(matches!(err, StaticInvoiceError::Expired { .. }), "{err}");
	assert!(s.list().is_empty());
	assert_eq!(s.stats().refused, 2);
	// Nothing reached the disk either.
	let reloaded = server(dir.path(), generous());
	assert!(reloaded.list().is_empty());
}

#[test]
fn expired_invoices_are_evicted_and_not_served() {
	let dir = tempfile::tempdir().unwrap();
	let s = server(dir.path(), generous());
	let t0 = now();
	for (id, expiry) in [(b"a", 60), (b"b", 600), (b"c", 86_400)] {
		let inv = invoice(t0, Duration::from_secs(expiry), 0);
		s.persist(inv, message_path(), 0, id.to_vec(), t0).unwrap();
	}
	// Served while valid, refused once expired (and dropped then).
	assert!(s.lookup(b"a", 0, b"", t0).is_ok());
	let later = t0 + Duration::from_secs(61);
	assert!(matches!(s.lookup(b"a", 0, b"", later), Err(StaticInvoiceError::Expired { .. })));
	assert_eq!(s.list().len(), 2);
	assert_eq!(s.evict_expired_at(t0 + Duration::from_secs(601)).unwrap(), 1);
	let ids: Vec<_> = s.list().into_iter().map(|i| i.recipient_id).collect();
	assert_eq!(ids, ["63"]);
	assert_eq!(server(dir.path(), generous()).list().len(), 1, "eviction is durable");
}

#[test]
fn request_flood_is_rate_limited_per_recipient() {
	let dir = tempfile::tempdir().unwrap();
	let policy = StaticInvoicePolicy {
		rate_limit_burst: 5,
		rate_limit_refill: Duration::from_secs(3600),
		..Default::default()
	};
	let s = server(dir.path(), policy);
	put(&s, b"a", 0).unwrap();
	put(&s, b"b", 0).unwrap();
	let served = (0..20).filter(|_| s.lookup(b"a", 0, b"", now()).is_ok()).count();
	assert_eq!(served, 5, "the burst, then nothing");
	assert!(matches!(s.lookup(b"a", 0, b"", now()), Err(StaticInvoiceError::RateLimited)));
	assert!(s.lookup(b"b", 0, b"", now()).is_ok(), "other recipients unaffected");
	assert_eq!(s.stats().rate_limited, 16);
	// Persists are limited too (a already used one of its five).
	let stored = (0..10).filter(|_| put(&s, b"a", 0).is_ok()).count();
	assert_eq!(stored, 4);
}

#[test]
fn invoices_survive_a_reload() {
	let dir = tempfile::tempdir().unwrap();
	let inv = invoice(now(), DAY, 100);
	{
		let s = server(dir.path(), generous());
		s.persist(inv.clone(), message_path(), 7, vec![0xab; 16], now()).unwrap();
		put(&s, b"other", 0).unwrap();
	}
	let s = server(dir.path(), generous());
	assert_eq!(s.list().len(), 2);
	let record = s.lookup(&[0xab; 16], 7, b"", now()).unwrap();
	assert_eq!(record.invoice, inv);
	assert_eq!(record.slot, 7);
	// Quotas count reloaded invoices.
	let size = (inv.serialized_length() + message_path().serialized_length()) as u64;
	let tight = StaticInvoicePolicy { max_bytes_per_recipient: size, ..generous() };
	let s = server(dir.path(), tight);
	assert!(matches!(
		s.persist(invoice(now(), DAY, 0), message_path(), 8, vec![0xab; 16], now()),
		Err(StaticInvoiceError::ByteQuota { .. })
	));
}

#[test]
fn corrupt_records_are_reported() {
	let dir = tempfile::tempdir().unwrap();
	let kv = FilesystemStore::new(dir.path().to_path_buf());
	let (ns, key) = store::location(b"x", 0);
	KVStoreSync::write(&kv, store::NAMESPACE, ns, &key, vec![1, 2, 3]).unwrap();
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(kv);
	let err = StaticInvoices::new(kv, generous(), Arc::new(NoLog)).err().expect("refused");
	assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_corrupt_invoice_behind_a_sound_header_is_refused_when_served() {
	let dir = tempfile::tempdir().unwrap();
	let kv = FilesystemStore::new(dir.path().to_path_buf());
	let record = store::InvoiceRecord {
		invoice: invoice(now(), DAY, 0),
		invoice_request_path: message_path(),
		recipient_id: b"x".to_vec(),
		slot: 0,
		stored_at: now().as_secs(),
		expires_at: now().as_secs() + DAY.as_secs(),
	};
	let mut bytes = record.encode();
	let last = bytes.len() - 1;
	bytes[last] ^= 0xff;
	let (ns, key) = store::location(b"x", 0);
	KVStoreSync::write(&kv, store::NAMESPACE, ns, &key, bytes).unwrap();
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(kv);
	// The index loads from the headers; the invoice is checked when served.
	let s = StaticInvoices::new(kv, generous(), Arc::new(NoLog)).expect("loads");
	assert_eq!(s.list().len(), 1);
	// Answered as a failure (the event handler sends nothing and moves on;
	// there is no replay), counted, and dropped: a retry could not cure it.
	assert!(matches!(
		s.lookup(b"x", 0, b"", now()),
		Err(StaticInvoiceError::Store(StoreError::Corrupt { .. }))
	));
	assert_eq!(s.stats().store_errors, 1);
	assert!(
		matches!(s.lookup(b"x", 0, b"", now()), Err(StaticInvoiceError::NotFound)),
		"the corrupt record is still served from"
	);
	assert!(s.list().is_empty());
	// The recipient's next invoice takes the slot again.
	put(&s, b"x", 0).unwrap();
	assert!(s.lookup(b"x", 0, b"", now()).is_ok());
	assert_eq!(s.stats().store_errors, 1);
}

#[test]
fn a_replayed_older_invoice_does_not_roll_a_slot_back() {
	let dir = tempfile::tempdir().unwrap();
	let s = server(dir.path(), generous());
	let t = now();
	let older = invoice(t - Duration::from_secs(600), DAY, 0);
	let newer = invoice(t, DAY, 0);
	s.persist(older.clone(), message_path(), 0, b"r".to_vec(), t).unwrap();
	s.persist(newer.clone(), message_path(), 0, b"r".to_vec(), t).unwrap();
	let err = s.persist(older, message_path(), 0, b"r".to_vec(), t).unwrap_err();
	assert!(matches!(err, StaticInvoiceError::Stale { .. }), "{err}");
	assert_eq!(s.lookup(b"r", 0, b"", t).unwrap().invoice, newer);
	// Sending the same invoice again is fine, and the order survives a reload.
	s.persist(newer.clone(), message_path(), 0, b"r".to_vec(), t).unwrap();
	let reloaded = server(dir.path(), generous());
	let older = invoice(t - Duration::from_secs(1), DAY, 0);
	assert!(matches!(
		reloaded.persist(older, message_path(), 0, b"r".to_vec(), t),
		Err(StaticInvoiceError::Stale { .. })
	));
}

#[test]
fn expiry_is_the_earlier_of_the_invoice_and_its_offer() {
	let dir = tempfile::tempdir().unwrap();
	let s = server(dir.path(), generous());
	let t = now();
	let offer_expiry = t + Duration::from_secs(3600);
	let inv = invoice_of_offer(t, DAY, 0, Some(offer_expiry));
	s.persist(inv, message_path(), 0, b"r".to_vec(), t).unwrap();
	assert_eq!(s.list()[0].expires_at, offer_expiry.as_secs());
	assert_eq!(s.evict_expired_at(offer_expiry).unwrap(), 1, "evicted with its offer");
}

#[test]
fn the_request_path_counts_in_the_byte_quota() {
	let dir = tempfile::tempdir().unwrap();
	let size = invoice(now(), DAY, 0).serialized_length() as u64;
	let path = message_path().serialized_length() as u64;
	// Room for two invoices, not for two invoices and their request paths.
	let policy = StaticInvoicePolicy { max_bytes_per_recipient: 2 * size + path, ..generous() };
	let s = server(dir.path(), policy);
	put(&s, b"a", 0).unwrap();
	assert_eq!(s.list()[0].size_bytes, size + path);
	assert!(matches!(put(&s, b"a", 1), Err(StaticInvoiceError::ByteQuota { .. })));
}

#[test]
fn a_flood_through_one_introduction_node_does_not_shut_out_other_payers() {
	let dir = tempfile::tempdir().unwrap();
	let policy = StaticInvoicePolicy {
		rate_limit_burst: 5,
		rate_limit_refill: Duration::from_secs(3600),
		..Default::default()
	};
	let s = server(dir.path(), policy);
	put(&s, b"a", 0).unwrap();
	let served = (0..20).filter(|_| s.lookup(b"a", 0, b"attacker", now()).is_ok()).count();
	assert_eq!(served, 5);
	assert!(s.lookup(b"a", 0, b"payer's LSP", now()).is_ok(), "a real payer is shut out");
	// A flood naming fresh introduction nodes each time is bounded per
	// recipient: burst x RECIPIENT_ALLOWANCE_FACTOR in all.
	let fresh =
		(0..100u32).filter(|i| s.lookup(b"a", 0, &i.to_be_bytes(), now()).is_ok()).count() as u32;
	assert_eq!(fresh + 6, 5 * policy::RECIPIENT_ALLOWANCE_FACTOR);
}

#[test]
fn the_requester_key_is_the_reply_paths_introduction_node() {
	use lightning::onion_message::messenger::Responder;
	use lightning::util::ser::{BigSize, Readable};
	let path = message_path().encode();
	let mut tlv = BigSize(0).encode();
	tlv.extend(BigSize(path.len() as u64).encode());
	tlv.extend(path);
	let mut bytes = BigSize(tlv.len() as u64).encode();
	bytes.extend(tlv);
	let responder = Responder::read(&mut &bytes[..]).expect("a responder");
	let intro = match message_path().introduction_node() {
		lightning::blinded_path::IntroductionNode::NodeId(id) => id.serialize().to_vec(),
		other => panic!("fixture path starts at {other:?}"),
	};
	assert_eq!(requester_key(&responder), intro);
}
