//! The static invoice server: this node as the always-online node of
//! often-offline (async) recipients.
//!
//! LDK 0.2.7 does the protocol: it answers a recipient's `offer_paths_request`
//! (sent over the paths this node handed out with
//! `ChannelManager::blinded_paths_for_async_recipient`), then surfaces
//! `Event::PersistStaticInvoice` for every invoice the recipient asks us to
//! serve and `Event::StaticInvoiceRequested` for every payer's invoice
//! request. [`StaticInvoiceServer::handle_event`] does the rest: validates and
//! stores each invoice durably per (recipient, slot) under the policy's quotas,
//! confirms it with `static_invoice_persisted`, and answers requests with
//! `respond_to_static_invoice_request` (which also forwards the invoice request
//! to the recipient, in case it is online).
//!
//! Refusals are typed ([`StaticInvoiceError`]), logged, and leave nothing
//! stored; the recipient then gets no confirmation and keeps its offer unused.
//!
//! No event is ever handed back to LDK for replay: every store error is
//! logged, counted ([`StaticInvoiceStats::store_errors`]) and answered as a
//! failure (no confirmation, no invoice), because LDK replays an event
//! before any later one and a lasting error would stop the node.
//!
//! Rate limiting: `Event::StaticInvoiceRequested` does not say which peer the
//! request came from (onion messages hide it). Requests are limited per
//! (recipient id, introduction node of the payer's reply path), so a flood
//! through one introduction node does not shut out payers replying through
//! others, and per recipient id with a wider allowance
//! ([`policy::RECIPIENT_ALLOWANCE_FACTOR`]), which bounds the work per
//! recipient whatever reply paths a flood names. Persists are limited per
//! recipient id.

mod events;
pub mod fixtures;
pub mod mailbox;
pub mod policy;
pub mod store;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::ln::channelmanager::AChannelManager;
use lightning::ln::msgs::OnionMessage;
use lightning::log_info;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::util::logger::Logger;
use lightning::util::persist::KVStoreSync;
use lightning::util::ser::Writeable;
use serde::{Deserialize, Serialize};

pub use events::{requester_key, HookOutcome};
pub use mailbox::{Held, MailboxRefusal, OnionMessageMailbox};
pub use policy::{RateLimiter, StaticInvoicePolicy};
pub use store::{InvoiceRecord, InvoiceStore, StoreError, StoredStaticInvoice};

/// Why an invoice was refused or a request not answered.
#[derive(Debug, thiserror::Error)]
pub enum StaticInvoiceError {
	/// The invoice is larger than [`StaticInvoicePolicy::max_invoice_bytes`].
	#[error("invoice of {size} bytes exceeds the {max}-byte limit")]
	Oversized {
		/// Its size.
		size: u64,
		/// The limit.
		max: u64,
	},
	/// The invoice (or its offer) has already expired.
	#[error("invoice expired at {expires_at} (now {now})")]
	Expired {
		/// Its expiry, seconds since the Unix epoch.
		expires_at: u64,
		/// The time of the check.
		now: u64,
	},
	/// The slot number is beyond the recipient's quota.
	#[error("slot {slot} is beyond the quota of {max} slots per recipient")]
	SlotQuota {
		/// The slot asked for.
		slot: u16,
		/// Slots allowed.
		max: u16,
	},
	/// Storing it would take the recipient over its byte quota.
	#[error("recipient would store {total} bytes, over its quota of {max}")]
	ByteQuota {
		/// The recipient's total with this invoice.
		total: u64,
		/// The quota.
		max: u64,
	},
	/// The server already stores [`StaticInvoicePolicy::max_invoices`] invoices.
	#[error("the server is full ({max} invoices stored)")]
	Full {
		/// The global cap.
		max: u64,
	},
	/// The recipient id sent too many requests recently.
	#[error("rate limited: too many requests for this recipient")]
	RateLimited,
	/// The slot holds a newer invoice than this one (a replayed or reordered
	/// older invoice must not roll the slot back).
	#[error("slot holds an invoice created at {stored}, newer than this one ({offered})")]
	Stale {
		/// Creation time of the stored invoice, seconds since the Unix epoch.
		stored: u64,
		/// Creation time of the refused one.
		offered: u64,
	},
	/// No invoice is stored for the (recipient, slot).
	#[error("no invoice stored for this recipient and slot")]
	NotFound,
	/// LDK could not build blinded paths to hand a recipient.
	#[error("cannot build blinded paths for the recipient (no usable peer to route them through)")]
	NoPaths,
	/// The store failed.
	#[error(transparent)]
	Store(#[from] StoreError),
}

/// Counters of what the server did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticInvoiceStats {
	/// Invoices stored (new or replacing a slot).
	pub stored: u64,
	/// Invoices refused (any reason but rate limiting).
	pub refused: u64,
	/// Requests answered with a stored invoice.
	pub served: u64,
	/// Requests for which no invoice was stored.
	pub not_found: u64,
	/// Persists and requests refused by the rate limiter.
	pub rate_limited: u64,
	/// Invoices removed because they expired.
	pub evicted: u64,
	/// Store errors (I/O, corrupt records): each answered as a failure, never
	/// retried by replaying the event.
	pub store_errors: u64,
}

#[derive(Default)]
struct Counters {
	stored: AtomicU64,
	refused: AtomicU64,
	served: AtomicU64,
	not_found: AtomicU64,
	rate_limited: AtomicU64,
	evicted: AtomicU64,
	store_errors: AtomicU64,
}

/// Seconds since the Unix epoch.
fn unix_now() -> Duration {
	SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The server's state and rules, independent of the channel manager: the
/// store, the policy, the rate limiters and the counters.
pub struct StaticInvoices {
	store: Mutex<InvoiceStore>,
	policy: StaticInvoicePolicy,
	request_limiter: Mutex<RateLimiter>,
	recipient_limiter: Mutex<RateLimiter>,
	persist_limiter: Mutex<RateLimiter>,
	counters: Counters,
	logger: Arc<dyn Logger + Send + Sync>,
}

impl StaticInvoices {
	/// Loads the stored invoices from `kv` (namespace [`store::NAMESPACE`]).
	pub fn new(
		kv: Arc<dyn KVStoreSync + Send + Sync>, policy: StaticInvoicePolicy,
		logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, StoreError> {
		let store = InvoiceStore::load(kv)?;
		Ok(Self {
			store: Mutex::new(store),
			request_limiter: Mutex::new(RateLimiter::new(
				policy.rate_limit_burst,
				policy.rate_limit_refill,
			)),
			recipient_limiter: Mutex::new(RateLimiter::new(
				policy.rate_limit_burst.saturating_mul(policy::RECIPIENT_ALLOWANCE_FACTOR),
				policy.rate_limit_refill / policy::RECIPIENT_ALLOWANCE_FACTOR,
			)),
			persist_limiter: Mutex::new(RateLimiter::new(
				policy.rate_limit_burst,
				policy.rate_limit_refill,
			)),
			policy,
			counters: Counters::default(),
			logger,
		})
	}

	fn store(&self) -> MutexGuard<'_, InvoiceStore> {
		self.store.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// The policy in force.
	pub fn policy(&self) -> &StaticInvoicePolicy {
		&self.policy
	}

	/// Every stored invoice: recipient (hex), slot, size, stored-at, expiry.
	pub fn list(&self) -> Vec<StoredStaticInvoice> {
		self.store().list()
	}

	/// What the server did since it started.
	pub fn stats(&self) -> StaticInvoiceStats {
		let c = &self.counters;
		StaticInvoiceStats {
			stored: c.stored.load(Ordering::Relaxed),
			refused: c.refused.load(Ordering::Relaxed),
			served: c.served.load(Ordering::Relaxed),
			not_found: c.not_found.load(Ordering::Relaxed),
			rate_limited: c.rate_limited.load(Ordering::Relaxed),
			evicted: c.evicted.load(Ordering::Relaxed),
			store_errors: c.store_errors.load(Ordering::Relaxed),
		}
	}

	fn count_store_error(&self) {
		self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
	}

	fn count_served(&self) {
		self.counters.served.fetch_add(1, Ordering::Relaxed);
	}

	/// Removes every expired invoice; returns how many.
	pub fn evict_expired(&self) -> Result<u64, StoreError> {
		self.evict_expired_at(unix_now())
	}

	/// [`Self::evict_expired`] at a given time (seconds since the Unix epoch).
	pub fn evict_expired_at(&self, now: Duration) -> Result<u64, StoreError> {
		let evicted = self.store().evict_expired(now)?;
		if evicted > 0 {
			self.counters.evicted.fetch_add(evicted, Ordering::Relaxed);
			log_info!(self.logger, "Static invoice server: evicted {evicted} expired invoices");
		}
		Ok(evicted)
	}

	/// Validates and stores an invoice at `now` (seconds since the Unix
	/// epoch). On error nothing is stored and the reason is logged.
	pub fn persist(
		&self, invoice: StaticInvoice, invoice_request_path: BlindedMessagePath, slot: u16,
		recipient_id: Vec<u8>, now: Duration,
	) -> Result<(), StaticInvoiceError> {
		let result = self.try_persist(invoice, invoice_request_path, slot, &recipient_id, now);
		match &result {
			Ok(()) => {
				self.counters.stored.fetch_add(1, Ordering::Relaxed);
			},
			Err(StaticInvoiceError::RateLimited) => {
				self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
			},
			Err(StaticInvoiceError::Store(_)) => self.count_store_error(),
			Err(_) => {
				self.counters.refused.fetch_add(1, Ordering::Relaxed);
			},
		}
		if let Err(e) = &result {
			log_info!(
				self.logger,
				"Static invoice server: refused invoice for recipient {} slot {slot}: {e}",
				hex_id(&recipient_id)
			);
		}
		result
	}

	fn try_persist(
		&self, invoice: StaticInvoice, invoice_request_path: BlindedMessagePath, slot: u16,
		recipient_id: &[u8], now: Duration,
	) -> Result<(), StaticInvoiceError> {
		let policy = &self.policy;
		if !self
			.persist_limiter
			.lock()
			.unwrap_or_else(|p| p.into_inner())
			.allow(recipient_id, Instant::now())
		{
			return Err(StaticInvoiceError::RateLimited);
		}
		let size = invoice.serialized_length() as u64;
		if size > policy.max_invoice_bytes {
			return Err(StaticInvoiceError::Oversized { size, max: policy.max_invoice_bytes });
		}
		let invoice_expiry = invoice.created_at().saturating_add(invoice.relative_expiry());
		let expires_at =
			invoice.absolute_expiry().map_or(invoice_expiry, |offer| offer.min(invoice_expiry));
		let expires_at = expires_at.as_secs();
		if invoice.is_expired_no_std(now) || invoice.is_offer_expired_no_std(now) {
			return Err(StaticInvoiceError::Expired { expires_at, now: now.as_secs() });
		}
		if slot >= policy.max_slots_per_recipient {
			return Err(StaticInvoiceError::SlotQuota {
				slot,
				max: policy.max_slots_per_recipient,
			});
		}
		let mut store = self.store();
		let created_at = invoice.created_at().as_secs();
		if let Some(stored) = store.meta(recipient_id, slot) {
			if stored.created_at > created_at {
				return Err(StaticInvoiceError::Stale {
					stored: stored.created_at,
					offered: created_at,
				});
			}
		}
		// The request path is kept (and served) with the invoice: it counts too.
		let size = size.saturating_add(invoice_request_path.serialized_length() as u64);
		let total = store.recipient_bytes(recipient_id, Some(slot)).saturating_add(size);
		if total > policy.max_bytes_per_recipient {
			return Err(StaticInvoiceError::ByteQuota {
				total,
				max: policy.max_bytes_per_recipient,
			});
		}
		if !store.contains(recipient_id, slot) && store.len() >= policy.max_invoices {
			// Make room from expired invoices before refusing.
			let evicted = store.evict_expired(now)?;
			self.counters.evicted.fetch_add(evicted, Ordering::Relaxed);
			if store.len() >= policy.max_invoices {
				return Err(StaticInvoiceError::Full { max: policy.max_invoices });
			}
		}
		store.put(&InvoiceRecord {
			invoice,
			invoice_request_path,
			recipient_id: recipient_id.to_vec(),
			slot,
			stored_at: now.as_secs(),
			expires_at,
		})?;
		Ok(())
	}

	/// Looks up the invoice to serve for a request at `now` that came with a
	/// reply path through `requester` (an opaque key: the introduction node
	/// of the payer's reply path, see [`events::requester_key`]). An expired
	/// invoice is evicted and reported as [`StaticInvoiceError::Expired`]; a
	/// corrupt record is removed (the recipient stores a fresh one when it
	/// next refreshes), counted and reported as a store error.
	pub fn lookup(
		&self, recipient_id: &[u8], slot: u16, requester: &[u8], now: Duration,
	) -> Result<InvoiceRecord, StaticInvoiceError> {
		let at = Instant::now();
		let mut key = Vec::with_capacity(recipient_id.len() + requester.len() + 2);
		key.extend_from_slice(&(recipient_id.len() as u16).to_be_bytes());
		key.extend_from_slice(recipient_id);
		key.extend_from_slice(requester);
		let allowed =
			self.request_limiter.lock().unwrap_or_else(|p| p.into_inner()).allow(&key, at)
				&& self
					.recipient_limiter
					.lock()
					.unwrap_or_else(|p| p.into_inner())
					.allow(recipient_id, at);
		if !allowed {
			self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
			return Err(StaticInvoiceError::RateLimited);
		}
		let mut store = self.store();
		let found = match store.get(recipient_id, slot) {
			Ok(found) => found,
			Err(e) => {
				self.count_store_error();
				if matches!(e, StoreError::Corrupt { .. }) {
					// A retry cannot cure it: drop it so the slot is usable again.
					if let Err(removal) = store.remove(recipient_id, slot) {
						lightning::log_error!(self.logger, "Static invoice server: {removal}");
					}
				}
				return Err(e.into());
			},
		};
		let Some(record) = found else {
			self.counters.not_found.fetch_add(1, Ordering::Relaxed);
			return Err(StaticInvoiceError::NotFound);
		};
		if record.expires_at <= now.as_secs() || record.invoice.is_offer_expired_no_std(now) {
			if let Err(e) = store.remove(recipient_id, slot) {
				self.count_store_error();
				return Err(e.into());
			}
			self.counters.evicted.fetch_add(1, Ordering::Relaxed);
			self.counters.not_found.fetch_add(1, Ordering::Relaxed);
			return Err(StaticInvoiceError::Expired {
				expires_at: record.expires_at,
				now: now.as_secs(),
			});
		}
		Ok(record)
	}
}

/// The static invoice server around a channel manager: [`StaticInvoices`]
/// plus the LDK calls that confirm and serve invoices.
pub struct StaticInvoiceServer<CM: Deref>
where
	CM::Target: AChannelManager,
{
	cm: CM,
	core: StaticInvoices,
	mailbox: OnionMessageMailbox,
}

impl<CM: Deref> StaticInvoiceServer<CM>
where
	CM::Target: AChannelManager,
{
	/// Loads the stored invoices from `kv` (namespace [`store::NAMESPACE`]).
	pub fn new(
		cm: CM, kv: Arc<dyn KVStoreSync + Send + Sync>, policy: StaticInvoicePolicy,
		logger: Arc<dyn Logger + Send + Sync>,
	) -> Result<Self, StoreError> {
		Ok(Self {
			cm,
			core: StaticInvoices::new(kv, policy, logger)?,
			mailbox: OnionMessageMailbox::new(),
		})
	}

	/// The store, policy and counters.
	pub fn core(&self) -> &StaticInvoices {
		&self.core
	}

	/// Onion messages held for offline peers (see [`OnionMessageMailbox`]).
	pub fn mailbox(&self) -> &OnionMessageMailbox {
		&self.mailbox
	}

	/// Holds an onion message LDK could not forward to the offline `peer`
	/// (`Event::OnionMessageIntercepted`), if `peer` is one of our channel
	/// peers: an async recipient of this server has a channel with it, and
	/// other ids are not worth memory.
	pub fn hold_message(
		&self, peer: PublicKey, message: OnionMessage,
	) -> Result<Held, MailboxRefusal> {
		let cm = self.cm.get_cm();
		self.mailbox.hold(peer, message, |id| !cm.list_channels_with_counterparty(id).is_empty())
	}

	/// Paths for a new async recipient to configure with
	/// `set_paths_to_static_invoice_server` (ldk-node:
	/// `Bolt12Payment::set_paths_to_static_invoice_server`). `recipient_id`
	/// must identify the recipient uniquely; quotas are counted per id.
	/// The paths go through a peer of ours, so we need at least one.
	pub fn paths_for_recipient(
		&self, recipient_id: Vec<u8>, relative_expiry: Option<Duration>,
	) -> Result<Vec<BlindedMessagePath>, StaticInvoiceError> {
		self.cm
			.get_cm()
			.blinded_paths_for_async_recipient(recipient_id, relative_expiry)
			.map_err(|()| StaticInvoiceError::NoPaths)
	}

	/// Every stored invoice: recipient (hex), slot, size, stored-at, expiry.
	pub fn list(&self) -> Vec<StoredStaticInvoice> {
		self.core.list()
	}
}

/// Lower-case hex of a recipient id.
pub(crate) fn hex_id(id: &[u8]) -> String {
	id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
