//! The plugin's one background task ([`Plugin::run`]): the relay's held
//! buckets and pruning, the held HTLCs' deadlines, the static invoices'
//! expiry and the inbound arrivals' pruning, each on its own period.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lightning::ln::channelmanager::AChannelManager;
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
		let mut held_watch = HeldWatch::default();
		let now = Instant::now();
		let mut due = Due { eviction: now, arrivals: now + ARRIVALS_PRUNE_INTERVAL };
		loop {
			let plugin = Arc::clone(&self);
			let chores = tokio::task::spawn_blocking(move || {
				let held = plugin.relay().map(|relay| {
					relay.tick();
					relay.core().held()
				});
				let cm = &plugin.channel_manager;
				let hold_events = plugin
					.htlc_hold
					.as_ref()
					.map(|hold| hold.tick(cm, cm.get_cm().current_best_block().height))
					.unwrap_or_default();
				(held, hold_events)
			})
			.await;
			if let Ok((held, hold_events)) = chores {
				if let Some(held) = held {
					let new = held_watch.newly_held(held);
					let notifier = self.wake.as_ref().map(|(notifier, _)| notifier);
					announce_held(new, &self.events, notifier, &self.logger);
				}
				for event in hold_events {
					self.events.tell(PluginEvent::HtlcHold { event });
				}
			}
			self.periodic_chores(&mut due).await;
			tokio::select! {
				_ = stop.changed() => return,
				_ = tokio::time::sleep(HOLD_POLL_INTERVAL) => {},
			}
		}
	}

	/// The chores of [`Self::run`] with periods longer than its tick, when due.
	async fn periodic_chores(self: &Arc<Self>, due: &mut Due) {
		let now = Instant::now();
		if now >= due.eviction {
			due.eviction = now + EVICTION_INTERVAL;
			if self.static_invoices.is_some() {
				let plugin = Arc::clone(self);
				let _ = tokio::task::spawn_blocking(move || {
					plugin.static_invoices.as_ref().map(|server| server.core().evict_expired())
				})
				.await;
			}
		}
		if now >= due.arrivals {
			due.arrivals = now + ARRIVALS_PRUNE_INTERVAL;
			let plugin = Arc::clone(self);
			let _ = tokio::task::spawn_blocking(move || {
				let channels = plugin.channel_manager.get_cm().list_channels();
				plugin.arrivals().retain_pending(&channels);
			})
			.await;
		}
	}
}
