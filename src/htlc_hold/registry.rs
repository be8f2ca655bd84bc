//! The durable registry of HTLCs held for payers, in the node's `KVStore`
//! under the `htlc_hold` namespace: one record per held HTLC, written before
//! LDK sees the `update_add_htlc` and before any release or failure is
//! handed to LDK.
//!
//! A record is *provisional* until the hold loop sees LDK list its HTLC as
//! part of a commitment, then *committed*. Every record of a peer, whatever
//! its state, counts against the peer ([`HtlcHoldPolicy::max_records_per_peer`]);
//! the node-wide limit counts committed records only (a provisional record
//! locks no funds); a committed record is never rewritten by an add sent
//! again under its id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::policy::HtlcHoldPolicy;
use super::HoldError;
use bitcoin::secp256k1::PublicKey;
use lightning::io::Cursor;
use lightning::ln::channelmanager::InterceptId;
use lightning::ln::types::ChannelId;
use lightning::types::payment::PaymentHash;
use lightning::util::persist::KVStoreSync;
use lightning::util::ser::{Readable, Writeable};

/// Primary namespace of the registry.
pub const NAMESPACE: &str = "htlc_hold";
const HELD: &str = "held";

/// One HTLC a payer asked us to hold (`hold_htlc`), as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldHtlc {
	/// LDK's id for it: SHA256(htlc_id || channel_id || peer).
	pub intercept_id: InterceptId,
	/// The payer (our channel peer) who sent it.
	pub peer: PublicKey,
	/// The channel it came in on.
	pub channel_id: ChannelId,
	/// Its id in that channel.
	pub htlc_id: u64,
	/// What it carries in, msat.
	pub amount_msat: u64,
	/// The payment hash.
	pub payment_hash: PaymentHash,
	/// Its `cltv_expiry`.
	pub cltv_expiry: u32,
	/// When it arrived, seconds since the Unix epoch.
	pub since_secs: u64,
	/// The height at which it is failed back if still held.
	pub deadline_height: u32,
	/// The time (seconds since the Unix epoch) at which it is failed back if
	/// still held.
	pub deadline_secs: u64,
	/// Where it stands.
	pub state: HoldState,
	/// The shared secret of our layer of its onion (`None` when it could not
	/// be peeled): a failure we send back is created with it.
	pub onion_shared_secret: Option<[u8; 32]>,
	/// LDK has listed the HTLC as part of a commitment (any state but
	/// `RemoteAnnounced`): the payer's funds are locked in it and its id can
	/// never be sent again with other contents. `false` while provisional.
	pub committed: bool,
}

/// Where a held HTLC stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
	/// Held until the recipient's `release_held_htlc` or the deadline.
	Held,
	/// Beyond a limit: failed back as soon as LDK has it, never forwarded.
	Refused {
		/// The limit it broke.
		reason: HoldRefusal,
	},
	/// The recipient's release arrived and was handed to LDK, which forwards
	/// it; the record goes when the HTLC is settled.
	Released {
		/// LDK's short channel id alias of the incoming channel (part of the
		/// release context, to hand the release to LDK again after a restart).
		prev_outbound_scid_alias: u64,
		/// When, seconds since the Unix epoch.
		released_secs: u64,
	},
	/// The deadline passed first: failed back as soon as LDK lets us.
	Expired,
}

/// Why an HTLC was not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefusal {
	/// The peer already has `max_htlcs_per_peer` HTLCs held.
	#[error("the peer already has the most HTLCs held it may (max_htlcs_per_peer)")]
	PeerCount,
	/// Holding it would exceed the peer's `max_msat_per_peer`.
	#[error("holding it would exceed the value held for the peer (max_msat_per_peer)")]
	PeerValue,
	/// The node already holds `max_htlcs` HTLCs.
	#[error("the node already holds the most HTLCs it may (max_htlcs)")]
	NodeCount,
	/// Its `cltv_expiry` leaves less than `deadline_margin_blocks`.
	#[error("its cltv_expiry is within deadline_margin_blocks of the chain tip")]
	TooCloseToExpiry,
}

/// LDK's TLV encoding of the records (`impl_writeable_tlv_based!`).
#[allow(clippy::drop_non_drop)] // The macros' expansion drops plain values.
mod ser {
	use super::{HeldHtlc, HoldRefusal, HoldState};
	use lightning::{impl_writeable_tlv_based, impl_writeable_tlv_based_enum};

	impl_writeable_tlv_based!(HeldHtlc, {
		(0, intercept_id, required),
		(2, peer, required),
		(4, channel_id, required),
		(6, htlc_id, required),
		(8, amount_msat, required),
		(10, payment_hash, required),
		(12, cltv_expiry, required),
		(14, since_secs, required),
		(16, deadline_height, required),
		(18, deadline_secs, required),
		(20, state, required),
		(22, onion_shared_secret, option),
		(23, committed, (default_value, false)),
	});

	impl_writeable_tlv_based_enum!(HoldState,
		(0, Held) => {},
		(2, Refused) => { (0, reason, required) },
		(4, Released) => { (0, prev_outbound_scid_alias, required), (2, released_secs, required) },
		(6, Expired) => {},
	);

	impl_writeable_tlv_based_enum!(HoldRefusal,
		(0, PeerCount) => {},
		(2, PeerValue) => {},
		(4, NodeCount) => {},
		(6, TooCloseToExpiry) => {},
	);
}

/// What [`HoldRegistry::admit`] did with an add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
	/// Recorded, `Held` or `Refused`, and written.
	Recorded(Box<HeldHtlc>),
	/// Already recorded: the same add again (a retransmission), or any add
	/// under the id of a committed record; the record is unchanged.
	Known,
	/// The peer already has [`HtlcHoldPolicy::max_records_per_peer`] records:
	/// not recorded (LDK holds it, no release reaches it, and LDK fails it
	/// back itself before its expiry).
	PeerFull,
}

/// A cached record and when LDK had handled the add it came from.
#[derive(Clone, Debug)]
struct Entry {
	record: HeldHtlc,
	/// `None` while LDK has not handled the add yet; else the hold loop's pass
	/// counter read just after LDK handled it (0 for records loaded at start:
	/// LDK drops uncommitted adds on restart).
	handled: Option<u64>,
}

/// The registry: records on disk, and a cache of them.
pub struct HoldRegistry {
	kv: Arc<dyn KVStoreSync + Send + Sync>,
	cache: Mutex<HashMap<InterceptId, Entry>>,
}

fn key(id: &InterceptId) -> String {
	id.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(what: &'static str) -> impl Fn(lightning::io::Error) -> HoldError {
	move |e| HoldError::Io { what, reason: e.to_string() }
}

impl HoldRegistry {
	/// Loads every record from `kv`.
	pub fn load(kv: Arc<dyn KVStoreSync + Send + Sync>) -> Result<Self, HoldError> {
		let mut cache = HashMap::new();
		for key in kv.list(NAMESPACE, HELD).map_err(io("listing held HTLCs"))? {
			let bytes = kv.read(NAMESPACE, HELD, &key).map_err(io("reading a held HTLC"))?;
			let record = HeldHtlc::read(&mut Cursor::new(&bytes))
				.map_err(|e| HoldError::Corrupt { key: key.clone(), reason: format!("{e:?}") })?;
			cache.insert(record.intercept_id, Entry { record, handled: Some(0) });
		}
		Ok(Self { kv, cache: Mutex::new(cache) })
	}

	fn lock(&self) -> MutexGuard<'_, HashMap<InterceptId, Entry>> {
		self.cache.lock().unwrap_or_else(|p| p.into_inner())
	}

	fn write(&self, record: &HeldHtlc) -> Result<(), HoldError> {
		self.kv
			.write(NAMESPACE, HELD, &key(&record.intercept_id), record.encode())
			.map_err(io("writing a held HTLC"))
	}

	/// The record of `id`.
	pub fn get(&self, id: &InterceptId) -> Option<HeldHtlc> {
		self.lock().get(id).map(|e| e.record.clone())
	}

	/// Every record.
	pub fn all(&self) -> Vec<HeldHtlc> {
		self.lock().values().map(|e| e.record.clone()).collect()
	}

	/// Every record, with when LDK had handled its add (see
	/// [`HoldRegistry::add_handled`]).
	pub(super) fn entries(&self) -> Vec<(HeldHtlc, Option<u64>)> {
		self.lock().values().map(|e| (e.record.clone(), e.handled)).collect()
	}

	/// How many records there are.
	pub fn len(&self) -> usize {
		self.lock().len()
	}

	/// Whether there is none.
	pub fn is_empty(&self) -> bool {
		self.lock().is_empty()
	}

	/// Records a new HTLC, provisional, `Held` if `policy` allows it,
	/// `Refused` otherwise; written before it is returned. Every record of
	/// the peer counts: those not refused against its count and value limits,
	/// all of them against [`HtlcHoldPolicy::max_records_per_peer`]; the
	/// node-wide limit counts committed records only. The same add again, or
	/// any add under a committed record's id, changes nothing
	/// ([`Admission::Known`]); an add that differs from a provisional record
	/// under its id (the first was dropped on a disconnect before it was
	/// committed) replaces it and is judged afresh.
	pub fn admit(
		&self, policy: &HtlcHoldPolicy, mut record: HeldHtlc, height: u32,
	) -> Result<Admission, HoldError> {
		let mut cache = self.lock();
		let id = record.intercept_id;
		if let Some(known) = cache.get_mut(&id) {
			let known_record = &known.record;
			if known_record.committed
				|| (known_record.amount_msat, known_record.cltv_expiry, known_record.payment_hash)
					== (record.amount_msat, record.cltv_expiry, record.payment_hash)
			{
				if !known_record.committed {
					// Sent again: LDK has not handled this add yet.
					known.handled = None;
				}
				return Ok(Admission::Known);
			}
		}
		let others = || cache.values().map(|e| &e.record).filter(move |r| r.intercept_id != id);
		let of_peer = || others().filter(|r| r.peer == record.peer);
		if of_peer().count() >= policy.max_records_per_peer() {
			return Ok(Admission::PeerFull);
		}
		let not_refused = |r: &&HeldHtlc| !matches!(r.state, HoldState::Refused { .. });
		let peer_count = of_peer().filter(not_refused).count();
		let peer_msat =
			of_peer().filter(not_refused).fold(0u64, |sum, r| sum.saturating_add(r.amount_msat));
		let node_count = others().filter(|r| r.committed).filter(not_refused).count();
		let refusal = if height >= record.deadline_height {
			Some(HoldRefusal::TooCloseToExpiry)
		} else if node_count >= policy.max_htlcs {
			Some(HoldRefusal::NodeCount)
		} else if peer_count >= policy.max_htlcs_per_peer {
			Some(HoldRefusal::PeerCount)
		} else if peer_msat.saturating_add(record.amount_msat) > policy.max_msat_per_peer {
			Some(HoldRefusal::PeerValue)
		} else {
			None
		};
		record.state = match refusal {
			Some(reason) => HoldState::Refused { reason },
			None => HoldState::Held,
		};
		record.committed = false;
		self.write(&record)?;
		cache.insert(id, Entry { record: record.clone(), handled: None });
		Ok(Admission::Recorded(Box::new(record)))
	}

	/// LDK has handled the add of `id` (accepted or rejected it); `pass` is
	/// the hold loop's pass counter read after that. A provisional record
	/// that a later pass does not find in LDK's listing is dropped.
	pub(super) fn add_handled(&self, id: &InterceptId, pass: u64) {
		if let Some(entry) = self.lock().get_mut(id) {
			if entry.handled.is_none() {
				entry.handled = Some(pass);
			}
		}
	}

	/// Marks the provisional record `id` committed (LDK lists its HTLC as
	/// part of a commitment); a `Held` one becomes `Refused { NodeCount }`
	/// when the node already has `max_htlcs` committed records not refused.
	/// The new record, written, or `None` when there is nothing to change.
	pub(super) fn commit(
		&self, id: &InterceptId, max_htlcs: usize,
	) -> Result<Option<HeldHtlc>, HoldError> {
		let mut cache = self.lock();
		let Some(current) = cache.get(id).filter(|e| !e.record.committed) else {
			return Ok(None);
		};
		let mut record = HeldHtlc { committed: true, ..current.record.clone() };
		if record.state == HoldState::Held {
			let committed = cache
				.values()
				.map(|e| &e.record)
				.filter(|r| r.committed && r.intercept_id != *id)
				.filter(|r| !matches!(r.state, HoldState::Refused { .. }))
				.count();
			if committed >= max_htlcs {
				record.state = HoldState::Refused { reason: HoldRefusal::NodeCount };
			}
		}
		self.write(&record)?;
		let handled = current.handled;
		cache.insert(*id, Entry { record: record.clone(), handled });
		Ok(Some(record))
	}

	/// Moves `id` to `state` if `allowed` accepts its current record; the
	/// new record is written before it is returned. `Ok(Err(current))` when
	/// `allowed` refused (or `None` when there is no record).
	pub fn transition(
		&self, id: &InterceptId, state: HoldState, allowed: impl FnOnce(&HeldHtlc) -> bool,
	) -> Result<Result<HeldHtlc, Option<HeldHtlc>>, HoldError> {
		let mut cache = self.lock();
		let Some(current) = cache.get_mut(id) else {
			return Ok(Err(None));
		};
		if !allowed(&current.record) {
			return Ok(Err(Some(current.record.clone())));
		}
		let record = HeldHtlc { state, ..current.record.clone() };
		self.write(&record)?;
		current.record = record.clone();
		Ok(Ok(record))
	}

	/// Forgets `id` (its HTLC is resolved).
	pub fn remove(&self, id: &InterceptId) -> Result<(), HoldError> {
		let mut cache = self.lock();
		self.kv.remove(NAMESPACE, HELD, &key(id), false).map_err(io("removing a held HTLC"))?;
		cache.remove(id);
		Ok(())
	}

	/// Forgets `id` unless its add was sent again since `handled` was read
	/// (a pass decided on a listing older than that add). Whether it went.
	pub(super) fn remove_unless_sent_again(
		&self, id: &InterceptId, handled: Option<u64>,
	) -> Result<bool, HoldError> {
		let mut cache = self.lock();
		if cache.get(id).is_some_and(|e| e.handled != handled) {
			return Ok(false);
		}
		self.kv.remove(NAMESPACE, HELD, &key(id), false).map_err(io("removing a held HTLC"))?;
		cache.remove(id);
		Ok(true)
	}
}
