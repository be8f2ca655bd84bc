//! The whole plugin, wired into an existing LDK node by one builder.
//!
//! A node builder makes the [`TrampolineRouter`] before its `ChannelManager`
//! (LDK takes the router at construction), then the plugin around both:
//!
//! ```ignore
//! let router = Arc::new(TrampolineRouter::new(default_router, Arc::default()));
//! let channel_manager = Arc::new(ChannelManager::new(/* …, */ Arc::clone(&router) /* , … */));
//! let plugin = Arc::new(
//!     Plugin::builder(Arc::clone(&channel_manager), &router, keys, kv_store, logger)
//!         .trampoline(TrampolinePolicy::default())
//!         .build()?,
//! );
//! ```
//!
//! and plugs in what [`Plugin`] hands out: [`Plugin::message_handler`] as the
//! `PeerManager`'s `chan_handler`, [`Plugin::async_payments_handler`] as the
//! `OnionMessenger`'s async payments handler (built with
//! `new_with_offline_peer_interception` when
//! [`Plugin::intercepts_offline_peers`]), [`Plugin::chain_listener`] ahead of
//! the `ChannelManager` among the chain listeners, [`Plugin::event_handler`]
//! around the node's own event handler, and [`Plugin::run`] as one background
//! task.

mod background;
mod events;
pub(crate) mod wake;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use lightning::ln::channelmanager::AChannelManager;
use lightning::ln::msgs::ChannelMessageHandler;
use lightning::routing::router::Router;
use lightning::sign::NodeSigner;
use lightning::util::logger::Logger;
use lightning::util::persist::KVStoreSync;

pub use self::background::{ARRIVALS_PRUNE_INTERVAL, EVICTION_INTERVAL, HOLD_POLL_INTERVAL};
pub use self::events::PluginEventHandler;
use self::wake::{parse_webhook_url, webhook_client, WakeError, WakeNotifier};
use crate::handler::arrivals::HtlcArrivals;
use crate::handler::TrampolineHandler;
use crate::htlc_hold::{
	HeldHtlcSummary, HoldError, HoldEvent, HoldReleaseHandler, HtlcHold, HtlcHoldPolicy,
};
use crate::relay::{
	HeldBucket, RelayError, RelayLimits, Trampoline, TrampolinePolicy, TrampolineRelay,
};
use crate::sender::{SenderState, TrampolineRouter};
use crate::static_invoices::{StaticInvoicePolicy, StaticInvoiceServer};

/// What the plugin tells the node of, beside LDK's own events (see
/// [`PluginBuilder::on_event`]).
#[derive(Clone, Debug)]
pub enum PluginEvent {
	/// The relay started holding a trampoline payment for an offline peer
	/// (the wake-up webhook, if set, is called too).
	PaymentHeld {
		/// The bucket held.
		held: HeldBucket,
	},
	/// Something happened to an HTLC held for an often-offline payer.
	HtlcHold {
		/// What.
		event: HoldEvent,
	},
	/// The static invoice server started keeping onion messages for an
	/// offline peer (the wake-up webhook, if set, is called too).
	MessageHeld {
		/// The offline peer.
		peer: PublicKey,
	},
}

/// Where [`PluginEvent`]s go: the node's callback, if it gave one.
#[derive(Clone, Default)]
pub(crate) struct EventSink(Option<Arc<dyn Fn(PluginEvent) + Send + Sync>>);

impl EventSink {
	/// Tells the node of `event`.
	pub(crate) fn tell(&self, event: PluginEvent) {
		if let Some(callback) = &self.0 {
			callback(event);
		}
	}
}

/// Why the plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
	/// The relay's state could not be read from the store.
	#[error("cannot read the trampoline relay's state: {0}")]
	Relay(#[from] RelayError),
	/// The held HTLCs could not be read from the store.
	#[error("cannot read the held HTLCs: {0}")]
	HtlcHold(#[from] HoldError),
	/// The static invoices could not be read from the store.
	#[error("cannot read the static invoices: {0}")]
	StaticInvoices(String),
	/// The wake-up webhook's URL or CA certificate is not usable.
	#[error("wake-up webhook: {0}")]
	WakeWebhook(#[from] WakeError),
	/// HTLC holding was asked for, but LDK does not hold HTLCs: the
	/// `ChannelManager` was built without `UserConfig::enable_htlc_hold`.
	#[error("HTLC holding needs a ChannelManager built with UserConfig::enable_htlc_hold = true")]
	HtlcHoldOff,
	/// A wake-up webhook was set but the plugin was not built inside a
	/// tokio runtime (its calls run as tasks of the runtime it was built in).
	#[error("the wake-up webhook's calls need a tokio runtime: build the plugin inside one")]
	NoRuntime,
}

/// Assembles a [`Plugin`]: every capability is off until its method is
/// called (with no capability on, the message handler passes everything
/// through to the `ChannelManager`).
pub struct PluginBuilder<CM: Deref + Clone>
where
	CM::Target: AChannelManager,
{
	channel_manager: CM,
	sender: Arc<SenderState>,
	signer: Arc<dyn NodeSigner + Send + Sync>,
	kv: Arc<dyn KVStoreSync + Send + Sync>,
	logger: Arc<dyn Logger + Send + Sync>,
	trampoline: Option<TrampolinePolicy>,
	limits: RelayLimits,
	htlc_hold: Option<HtlcHoldPolicy>,
	static_invoices: Option<StaticInvoicePolicy>,
	wake_webhook: Option<(String, Option<PathBuf>)>,
	events: EventSink,
}

impl<CM: Deref + Clone> PluginBuilder<CM>
where
	CM::Target: AChannelManager,
{
	/// Relays trampoline payments (both dialects) with `policy`'s fee and
	/// CLTV delta.
	pub fn trampoline(mut self, policy: TrampolinePolicy) -> Self {
		self.trampoline = Some(policy);
		self
	}

	/// Bounds what payers may have in flight and held at the relay (the
	/// defaults otherwise).
	pub fn trampoline_limits(mut self, limits: RelayLimits) -> Self {
		self.limits = limits;
		self
	}

	/// Holds `hold_htlc` HTLCs of often-offline payers until their recipient
	/// releases them (BOLTs PR 1149). The `ChannelManager` must have been
	/// built with `UserConfig::enable_htlc_hold`.
	pub fn htlc_hold(mut self, policy: HtlcHoldPolicy) -> Self {
		self.htlc_hold = Some(policy);
		self
	}

	/// Serves static invoices for async recipients, and keeps onion messages
	/// for offline peers (build the `OnionMessenger` with
	/// `new_with_offline_peer_interception`).
	pub fn static_invoices(mut self, policy: StaticInvoicePolicy) -> Self {
		self.static_invoices = Some(policy);
		self
	}

	/// POSTs signed LSPS5 notifications to `url` when a payment or onion
	/// messages wait for an offline peer (LSPS5's URL rules: https, and no
	/// loopback or private host, outside regtest; one call per peer a
	/// minute; 10 s timeout, 3 attempts with backoff). Build the plugin
	/// inside a tokio runtime: the calls are its tasks. `ca_cert`: a PEM file of a CA to trust beside the web's
	/// roots (a private CA, or a self-signed push service).
	pub fn wake_webhook(mut self, url: impl Into<String>, ca_cert: Option<PathBuf>) -> Self {
		self.wake_webhook = Some((url.into(), ca_cert));
		self
	}

	/// Calls `callback` with each [`PluginEvent`], synchronously on a thread
	/// that may block (the `BackgroundProcessor`'s, or tokio's blocking pool
	/// for [`Plugin::run`]'s): keep it short, e.g. publish it on a channel.
	pub fn on_event(mut self, callback: impl Fn(PluginEvent) + Send + Sync + 'static) -> Self {
		self.events = EventSink(Some(Arc::new(callback)));
		self
	}

	/// The plugin, with its state read from the store. What a crash
	/// interrupted is settled by [`Plugin::event_handler`] (or
	/// [`Plugin::resume`]), right before the `BackgroundProcessor` starts.
	pub fn build(self) -> Result<Plugin<CM>, PluginError> {
		if self.htlc_hold.is_some()
			&& !self.channel_manager.get_cm().get_current_config().enable_htlc_hold
		{
			return Err(PluginError::HtlcHoldOff);
		}
		let network = self
			.channel_manager
			.get_cm()
			.get_chain_hashes()
			.and_then(|hashes| hashes.first().copied())
			.and_then(bitcoin::Network::from_chain_hash)
			.unwrap_or(bitcoin::Network::Bitcoin);
		let wake = match &self.wake_webhook {
			Some((url, ca_cert)) => {
				let url = parse_webhook_url(url, network)?;
				let client = webhook_client(ca_cert.as_deref())?;
				let runtime =
					tokio::runtime::Handle::try_current().map_err(|_| PluginError::NoRuntime)?;
				let notifier = WakeNotifier::new(url, client, Arc::clone(&self.signer));
				Some((Arc::new(notifier), runtime))
			},
			None => None,
		};
		let htlc_hold = match self.htlc_hold {
			Some(policy) => Some(Arc::new(HtlcHold::new(
				Arc::clone(&self.kv),
				policy,
				Arc::clone(&self.signer),
				Arc::clone(&self.logger),
			)?)),
			None => None,
		};
		let static_invoices = match self.static_invoices {
			Some(policy) => Some(Arc::new(
				StaticInvoiceServer::new(
					self.channel_manager.clone(),
					Arc::clone(&self.kv),
					policy,
					Arc::clone(&self.logger),
				)
				.map_err(|e| PluginError::StaticInvoices(e.to_string()))?,
			)),
			None => None,
		};
		let trampoline = Trampoline::new(
			self.channel_manager.clone(),
			Arc::clone(&self.signer),
			Arc::clone(&self.kv),
			self.trampoline,
			self.limits,
			self.sender,
			htlc_hold.clone(),
			Arc::clone(&self.logger),
		)?;
		let async_payments =
			Arc::new(HoldReleaseHandler::new(self.channel_manager.clone(), htlc_hold.clone()));
		Ok(Plugin {
			channel_manager: self.channel_manager,
			trampoline,
			htlc_hold,
			static_invoices,
			async_payments,
			wake,
			events: self.events,
			logger: self.logger,
		})
	}
}

/// The plugin, assembled for one node by [`Plugin::builder`].
pub struct Plugin<CM: Deref + Clone>
where
	CM::Target: AChannelManager,
{
	channel_manager: CM,
	trampoline: Trampoline<CM>,
	htlc_hold: Option<Arc<HtlcHold>>,
	static_invoices: Option<Arc<StaticInvoiceServer<CM>>>,
	async_payments: Arc<HoldReleaseHandler<CM>>,
	/// The wake-up webhook's client, and the runtime its calls run on (the
	/// event handler runs on the background processor's own thread).
	wake: Option<(Arc<WakeNotifier>, tokio::runtime::Handle)>,
	events: EventSink,
	logger: Arc<dyn Logger + Send + Sync>,
}

impl<CM: Deref + Clone> Plugin<CM>
where
	CM::Target: AChannelManager,
{
	/// A builder for the plugin of the node whose `ChannelManager` is
	/// `channel_manager`, built with `router` (the node's router wrapped in a
	/// [`TrampolineRouter`]: it bounds the relay's payments and tells the
	/// message handler the paths of trampoline payments). `signer` is the
	/// node's keys (its node key signs the relay's secrets and webhook
	/// calls), `kv_store` keeps the plugin's state (namespaces `trampoline`,
	/// `htlc_hold`, `static_invoices`), `logger` gets its log.
	pub fn builder<R: Deref>(
		channel_manager: CM, router: &TrampolineRouter<R>,
		signer: Arc<dyn NodeSigner + Send + Sync>, kv_store: Arc<dyn KVStoreSync + Send + Sync>,
		logger: Arc<dyn Logger + Send + Sync>,
	) -> PluginBuilder<CM>
	where
		R::Target: Router,
	{
		PluginBuilder {
			channel_manager,
			sender: Arc::clone(router.sender()),
			signer,
			kv: kv_store,
			logger,
			trampoline: None,
			limits: RelayLimits::default(),
			htlc_hold: None,
			static_invoices: None,
			wake_webhook: None,
			events: EventSink::default(),
		}
	}

	/// The `PeerManager`'s `chan_handler`: the `ChannelManager`, wrapped.
	pub fn message_handler(&self) -> Arc<TrampolineHandler<CM>> {
		Arc::clone(&self.trampoline.handler)
	}

	/// The `OnionMessenger`'s async payments handler (`release_held_htlc`
	/// for the HTLCs held for often-offline payers, LDK's own handling
	/// otherwise).
	pub fn async_payments_handler(&self) -> Arc<HoldReleaseHandler<CM>> {
		Arc::clone(&self.async_payments)
	}

	/// Whether the `OnionMessenger` must be built with
	/// `new_with_offline_peer_interception` (the static invoice server keeps
	/// onion messages for offline peers).
	pub fn intercepts_offline_peers(&self) -> bool {
		self.static_invoices.is_some()
	}

	/// A chain listener to place ahead of the `ChannelManager` (the first of
	/// a `(plugin.chain_listener(), (channel_manager, chain_monitor))`
	/// tuple, say): it tells the plugin each height before LDK acts on it,
	/// so that the relay's retries are bounded by a height never behind
	/// LDK's. Funds safety depends on it.
	pub fn chain_listener(&self) -> Arc<SenderState> {
		Arc::clone(&self.trampoline.sender)
	}

	/// The node's event handler, `inner`, behind the plugin's: each event
	/// goes to the part of the plugin it belongs to, and the others to
	/// `inner`. `messenger` is the node's `OnionMessenger` (held onion
	/// messages are forwarded through it when their peer connects). Make it
	/// right before starting the `BackgroundProcessor` with it: it first
	/// settles what a crash interrupted ([`Self::resume`]).
	pub fn event_handler<OM: Deref, H: lightning::events::EventHandler>(
		self: &Arc<Self>, messenger: OM, inner: H,
	) -> PluginEventHandler<CM, OM, H>
	where
		OM::Target: lightning::onion_message::messenger::AOnionMessenger,
	{
		self.resume();
		PluginEventHandler::new(Arc::clone(self), messenger, inner)
	}

	/// Settles what a crash interrupted, before events flow: the relay
	/// claims again the buckets whose outgoing payment succeeded and fails
	/// again the failed ones (no-ops for LDK if done), and tells the router
	/// the `ChannelManager`'s height. Call it once the `ChannelManager` is
	/// loaded and synced to the chain, right before the
	/// `BackgroundProcessor` starts; [`Self::event_handler`] does.
	pub fn resume(&self) {
		if let Some(relay) = self.relay() {
			relay.resume();
		}
	}

	/// The relay, when relaying is on.
	pub fn relay(&self) -> Option<&Arc<TrampolineRelay<CM>>> {
		self.trampoline.relay.as_ref()
	}

	/// The sender's state: trampoline payments sent and their decrypted
	/// failures.
	pub fn sender(&self) -> &Arc<SenderState> {
		&self.trampoline.sender
	}

	/// When each inbound HTLC arrived, for listing partial payments.
	pub fn arrivals(&self) -> &Arc<HtlcArrivals> {
		&self.trampoline.arrivals
	}

	/// The HTLCs held for often-offline payers, when holding is on.
	pub fn htlc_hold(&self) -> Option<&Arc<HtlcHold>> {
		self.htlc_hold.as_ref()
	}

	/// The held HTLCs (none when holding is off).
	pub fn list_held_htlcs(&self) -> Vec<HeldHtlcSummary> {
		self.htlc_hold.as_ref().map(|hold| hold.list()).unwrap_or_default()
	}

	/// The static invoice server, when it is on.
	pub fn static_invoices(&self) -> Option<&Arc<StaticInvoiceServer<CM>>> {
		self.static_invoices.as_ref()
	}
}
