//! The plugin's one background task ([`Plugin::run`]): the relay's held
//! buckets and pruning, the held HTLCs' deadlines, the static invoices'
//! expiry and the inbound arrivals' pruning, each on its own period.

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lightning::ln::channelmanager::AChannelManager;
use lightning::log_error;
use tokio::sync::watch;

use super::wake::{announce_held, HeldWatch};
use super::{Plugin, PluginEvent};

/// How often held trampoline buckets and held HTLCs are looked at (and the
/// relay's settled records pruned).
pub const HOLD_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How often the static invoice server drops expired invoices.
pub const EVICTION_INTERVAL: Duration = Duration::from_secs(600);

/// How often the inbound HTLCs' arrivals are pruned to what LDK holds, so
/// that the tracker's bounds are reached only by HTLCs actually pending.
pub const ARRIVALS_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// When each periodic chore is due next.
struct Due {
	eviction: Instant,
	arrivals: Instant,
}

impl<CM> Plugin<CM>
where
	CM: Deref + Clone + Send + Sync + 'static,
	CM::Target: AChannelManager,
{
	/// The plugin's background work, until `stop` changes: every
	/// [`HOLD_POLL_INTERVAL`] the relay forwards held buckets whose next
	/// node is back, fails back those past their deadline and prunes
	/// settled records (newly held buckets are told as
	/// [`PluginEvent::PaymentHeld`] and to the wake-up webhook), and refused
	/// or expired held HTLCs are failed back ([`PluginEvent::HtlcHold`]);
	/// every [`EVICTION_INTERVAL`] expired static invoices go; every
	/// [`ARRIVALS_PRUNE_INTERVAL`] arrivals of HTLCs LDK no longer holds are
	/// forgotten. The work that takes locks runs on tokio's blocking pool.
	pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
		let held_watch = Arc::new(Mutex::new(HeldWatch::default()));
		let now = Instant::now();
		let mut due = Due { eviction: now, arrivals: now + ARRIVALS_PRUNE_INTERVAL };
		loop {
			// Each chore on the blocking pool by itself: a panic in one is
			// logged and the others still run, now and at the next tick.
			if self.relay().is_some() {
				let (plugin, held_watch) = (Arc::clone(&self), Arc::clone(&held_watch));
				self.chore("relay tick", move || plugin.relay_tick(&held_watch)).await;
			}
			if self.htlc_hold.is_some() {
				let plugin = Arc::clone(&self);
				self.chore("HTLC hold tick", move || plugin.hold_tick()).await;
			}
			self.periodic_chores(&mut due).await;
			tokio::select! {
				_ = stop.changed() => return,
				_ = tokio::time::sleep(HOLD_POLL_INTERVAL) => {},
			}
		}
	}

	/// Runs `work` on tokio's blocking pool; a panic is logged, not spread.
	async fn chore(&self, name: &str, work: impl FnOnce() + Send + 'static) {
		if let Err(e) = tokio::task::spawn_blocking(work).await {
			log_error!(self.logger, "The plugin's {name} failed: {e}");
		}
	}

	/// The relay's tick, then newly held buckets told and their next nodes
	/// woken.
	fn relay_tick(&self, held_watch: &Mutex<HeldWatch>) {
		let Some(relay) = self.relay() else { return };
		relay.tick();
		let held = relay.core().held();
		let new = held_watch.lock().unwrap_or_else(|p| p.into_inner()).newly_held(held);
		let wake = self.wake.as_ref().map(|(notifier, runtime)| (notifier, runtime));
		announce_held(new, &self.events, wake, &self.logger);
	}

	/// The held HTLCs' tick, each step told.
	fn hold_tick(&self) {
		let Some(hold) = &self.htlc_hold else { return };
		let cm = &self.channel_manager;
		for event in hold.tick(cm, cm.get_cm().current_best_block().height) {
			self.events.tell(PluginEvent::HtlcHold { event });
		}
	}

	/// The chores of [`Self::run`] with periods longer than its tick, when due.
	async fn periodic_chores(self: &Arc<Self>, due: &mut Due) {
		let now = Instant::now();
		if now >= due.eviction {
			due.eviction = now + EVICTION_INTERVAL;
			if self.static_invoices.is_some() {
				let plugin = Arc::clone(self);
				self.chore("static invoice eviction", move || {
					if let Some(server) = &plugin.static_invoices {
						if let Err(e) = server.core().evict_expired() {
							log_error!(plugin.logger, "Cannot evict expired static invoices: {e}");
						}
					}
				})
				.await;
			}
		}
		if now >= due.arrivals {
			due.arrivals = now + ARRIVALS_PRUNE_INTERVAL;
			let plugin = Arc::clone(self);
			self.chore("arrivals pruning", move || {
				let channels = plugin.channel_manager.get_cm().list_channels();
				plugin.arrivals().retain_pending(&channels);
			})
			.await;
		}
	}
}
