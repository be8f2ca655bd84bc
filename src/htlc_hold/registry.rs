//! The durable registry of HTLCs held for payers, in the node's `KVStore`
//! under the `htlc_hold` namespace: one record per held HTLC, written before
//! LDK sees the `update_add_htlc` and before any release or failure is
//! handed to LDK.

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

/// The registry: records on disk, and a cache of them.
pub struct HoldRegistry {
	kv: Arc<dyn KVStoreSync + Send + Sync>,
	cache: Mutex<HashMap<InterceptId, HeldHtlc>>,
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
			cache.insert(record.intercept_id, record);
		}
		Ok(Self { kv, cache: Mutex::new(cache) })
	}

	fn lock(&self) -> MutexGuard<'_, HashMap<InterceptId, HeldHtlc>> {
		self.cache.lock().unwrap_or_else(|p| p.into_inner())
	}

	fn write(&self, record: &HeldHtlc) -> Result<(), HoldError> {
		self.kv
			.write(NAMESPACE, HELD, &key(&record.intercept_id), record.encode())
			.map_err(io("writing a held HTLC"))
	}

	/// The record of `id`.
	pub fn get(&self, id: &InterceptId) -> Option<HeldHtlc> {
		self.lock().get(id).cloned()
	}

	/// Every record.
	pub fn all(&self) -> Vec<HeldHtlc> {
		self.lock().values().cloned().collect()
	}

	/// How many records there are.
	pub fn len(&self) -> usize {
		self.lock().len()
	}

	/// Whether there is none.
	pub fn is_empty(&self) -> bool {
		self.lock().is_empty()
	}

	/// Records a new HTLC, `Held` if `policy` allows it (counting only the
	/// HTLCs still held), `Refused` otherwise; written before it is returned.
	/// `None` when the same HTLC is already recorded (a retransmission).
	pub fn admit(
		&self, policy: &HtlcHoldPolicy, mut record: HeldHtlc, height: u32,
	) -> Result<Option<HeldHtlc>, HoldError> {
		let mut cache = self.lock();
		if let Some(known) = cache.get(&record.intercept_id) {
			// The same add again (a retransmission); one that differs
			// replaces an add that was never committed (a committed one
			// cannot be sent again differently) and is judged afresh.
			if (known.amount_msat, known.cltv_expiry, known.payment_hash)
				== (record.amount_msat, record.cltv_expiry, record.payment_hash)
			{
				return Ok(None);
			}
		}
		let id = record.intercept_id;
		let held =
			|| cache.values().filter(move |r| r.state == HoldState::Held && r.intercept_id != id);
		let of_peer = || held().filter(|r| r.peer == record.peer);
		let peer_msat: u64 = of_peer().map(|r| r.amount_msat).sum();
		let refusal = if height >= record.deadline_height {
			Some(HoldRefusal::TooCloseToExpiry)
		} else if held().count() >= policy.max_htlcs {
			Some(HoldRefusal::NodeCount)
		} else if of_peer().count() >= policy.max_htlcs_per_peer {
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
		self.write(&record)?;
		cache.insert(record.intercept_id, record.clone());
		Ok(Some(record))
	}

	/// Moves `id` to `state` if `allowed` accepts its current record; the
	/// new record is written before it is returned. `Ok(Err(current))` when
	/// `allowed` refused (or `None` when there is no record).
	pub fn transition(
		&self, id: &InterceptId, state: HoldState, allowed: impl FnOnce(&HeldHtlc) -> bool,
	) -> Result<Result<HeldHtlc, Option<HeldHtlc>>, HoldError> {
		let mut cache = self.lock();
		let Some(current) = cache.get(id) else {
			return Ok(Err(None));
		};
		if !allowed(current) {
			return Ok(Err(Some(current.clone())));
		}
		let record = HeldHtlc { state, ..current.clone() };
		self.write(&record)?;
		cache.insert(*id, record.clone());
		Ok(Ok(record))
	}

	/// Forgets `id` (its HTLC is resolved).
	pub fn remove(&self, id: &InterceptId) -> Result<(), HoldError> {
		let mut cache = self.lock();
		self.kv.remove(NAMESPACE, HELD, &key(id), false).map_err(io("removing a held HTLC"))?;
		cache.remove(id);
		Ok(())
	}
}
