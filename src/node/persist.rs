//! Manager-first persistence: a `ChannelMonitor` write reaches the disk only
//! after a `ChannelManager` that knows the update (as one of its in-flight
//! monitor updates) is on disk.
//!
//! LDK's synchronous path writes each monitor update at once and the manager
//! whenever the background processor gets to it. A crash between the two
//! leaves a monitor newer than its manager, and LDK 0.2.7 force-closes that
//! channel on restart ("A ChannelManager is stale compared to the current
//! ChannelMonitor!", rust-lightning issue 4286). A manager *ahead* of its
//! monitor is safe: it keeps the update among its `in_flight_monitor_updates`
//! and re-applies it on restart.
//!
//! So every update is answered with [`ChannelMonitorUpdateStatus::InProgress`]
//! and queued (LDK holds the channel's messages meanwhile). A flush takes the
//! queue, encodes the manager *after* taking it (every taken update is then in
//! the encoded manager, in flight or completed), writes the manager, then the
//! monitors, and only then tells the [`ChainMonitor`] the updates completed.
//! Every manager write goes through the flush, the background processor's
//! included ([`ManagerFirstStore`]), under one lock and with a fresh encode,
//! so the manager on disk never goes back behind a monitor.
//!
//! Until [`ManagerFirst::attach`] (start-up: loading, chain sync, `watch_channel`
//! of the stored monitors) writes go straight to the disk: nothing of the
//! manager's is in flight yet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use lightning::chain::chainmonitor::Persist;
use lightning::chain::channelmonitor::{ChannelMonitor, ChannelMonitorUpdate};
use lightning::chain::ChannelMonitorUpdateStatus;
use lightning::io;
use lightning::ln::types::ChannelId;
use lightning::sign::InMemorySigner;
use lightning::util::logger::Logger as _;
use lightning::util::persist::{
	KVStoreSync, MonitorName, CHANNEL_MANAGER_PERSISTENCE_KEY,
	CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE, CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
	CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE, CHANNEL_MONITOR_PERSISTENCE_SECONDARY_NAMESPACE,
};
use lightning::util::ser::Writeable;
use lightning::{log_error, log_warn};

use super::types::{ChainMonitor, ChannelManager, Logger, Store};

/// How long the flusher sleeps when nothing is queued (it is woken at once
/// when something is).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Pause after a failed write before the next try.
const RETRY_WAIT: Duration = Duration::from_millis(200);

/// The shared state behind [`MonitorPersister`] and [`ManagerFirstStore`].
pub struct ManagerFirst {
	store: Arc<Store>,
	logger: Arc<Logger>,
	queue: Mutex<Queue>,
	wake: Condvar,
	/// Held across each manager write and the monitor writes it licenses.
	writes: Mutex<()>,
	attached: OnceLock<Attached>,
	/// Set when the node stops: nothing is written any more (a restarted
	/// node may own the data directory by then).
	stopped: AtomicBool,
}

struct Attached {
	manager: Weak<ChannelManager>,
	chain_monitor: Weak<ChainMonitor>,
}

#[derive(Default)]
struct Queue {
	/// The newest full monitor per storage key, with every update it completes.
	monitors: HashMap<String, QueuedMonitor>,
}

struct QueuedMonitor {
	bytes: Vec<u8>,
	completes: Vec<(ChannelId, u64)>,
}

impl Queue {
	/// Queues `bytes` for `key`; a newer full monitor supersedes the older one
	/// (it contains every update the older had) and inherits its completions.
	fn push(&mut self, key: String, bytes: Vec<u8>, completes: Vec<(ChannelId, u64)>) {
		match self.monitors.get_mut(&key) {
			Some(queued) => {
				queued.bytes = bytes;
				queued.completes.extend(completes);
			},
			None => {
				self.monitors.insert(key, QueuedMonitor { bytes, completes });
			},
		}
	}

	/// Puts back a monitor whose write failed, unless a newer one was queued
	/// meanwhile (which then also completes the older one's updates).
	fn requeue(&mut self, key: String, failed: QueuedMonitor) {
		match self.monitors.get_mut(&key) {
			Some(newer) => {
				let mut completes = failed.completes;
				completes.append(&mut newer.completes);
				newer.completes = completes;
			},
			None => {
				self.monitors.insert(key, failed);
			},
		}
	}
}

impl ManagerFirst {
	/// Wraps `store`; writes go straight to it until [`Self::attach`].
	pub fn new(store: Arc<Store>, logger: Arc<Logger>) -> Arc<Self> {
		Arc::new(Self {
			store,
			logger,
			queue: Mutex::new(Queue::default()),
			wake: Condvar::new(),
			writes: Mutex::new(()),
			attached: OnceLock::new(),
			stopped: AtomicBool::new(false),
		})
	}

	/// From here on monitor writes wait for the manager: call once the
	/// manager exists and the stored monitors are watched, before peers
	/// connect. Starts the flusher thread, which ends with the node.
	pub fn attach(
		self: &Arc<Self>, manager: &Arc<ChannelManager>, chain_monitor: &Arc<ChainMonitor>,
	) {
		let attached = Attached {
			manager: Arc::downgrade(manager),
			chain_monitor: Arc::downgrade(chain_monitor),
		};
		if self.attached.set(attached).is_err() {
			return;
		}
		let shared = Arc::downgrade(self);
		let spawned = std::thread::Builder::new()
			.name("monitor-flush".into())
			.spawn(move || run_flusher(shared));
		if let Err(e) = spawned {
			log_error!(self.logger, "Cannot start the monitor flusher: {e}; the background processor's manager writes flush alone");
		}
	}

	/// The persister to give the `ChainMonitor`.
	pub fn persister(self: &Arc<Self>) -> MonitorPersister {
		MonitorPersister(Arc::clone(self))
	}

	/// The store to give the background processor.
	pub fn manager_store(self: &Arc<Self>) -> ManagerFirstStore {
		ManagerFirstStore(Arc::clone(self))
	}

	fn lock_queue(&self) -> MutexGuard<'_, Queue> {
		self.queue.lock().unwrap_or_else(|p| p.into_inner())
	}

	fn persist(
		&self, name: MonitorName, monitor: &ChannelMonitor<InMemorySigner>, completes: Option<u64>,
	) -> ChannelMonitorUpdateStatus {
		let key = name.to_string();
		if self.attached.get().is_none() {
			return match self.write_monitor(&key, monitor.encode()) {
				Ok(()) => ChannelMonitorUpdateStatus::Completed,
				Err(e) => {
					log_error!(self.logger, "Cannot write channel monitor {key}: {e}");
					ChannelMonitorUpdateStatus::UnrecoverableError
				},
			};
		}
		let completes = completes.map(|id| (monitor.channel_id(), id)).into_iter().collect();
		self.lock_queue().push(key, monitor.encode(), completes);
		self.wake.notify_one();
		ChannelMonitorUpdateStatus::InProgress
	}

	fn write_monitor(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
		KVStoreSync::write(
			&*self.store,
			CHANNEL_MONITOR_PERSISTENCE_PRIMARY_NAMESPACE,
			CHANNEL_MONITOR_PERSISTENCE_SECONDARY_NAMESPACE,
			key,
			bytes,
		)
	}

	/// Stops writing, for good: call after the background processor's last
	/// manager write. The flusher thread ends.
	pub fn stop(&self) {
		self.stopped.store(true, Ordering::SeqCst);
		self.wake.notify_all();
	}

	/// Writes a fresh manager, then every monitor queued before it was
	/// encoded, then reports their updates complete. Returns the first write
	/// error (what failed stays queued).
	pub fn flush(&self) -> io::Result<()> {
		self.flush_if(true)
	}

	/// [`Self::flush`] when monitors are queued, else nothing.
	fn flush_queued(&self) -> io::Result<()> {
		self.flush_if(false)
	}

	fn flush_if(&self, always: bool) -> io::Result<()> {
		if self.stopped.load(Ordering::SeqCst) {
			return Ok(());
		}
		let Some(attached) = self.attached.get() else { return Ok(()) };
		let Some(manager) = attached.manager.upgrade() else { return Ok(()) };
		let order = self.writes.lock().unwrap_or_else(|p| p.into_inner());
		let batch = std::mem::take(&mut self.lock_queue().monitors);
		if batch.is_empty() && !always {
			return Ok(());
		}
		// Encoded after the batch was taken: it knows every update in it.
		let encoded = manager.encode();
		drop(manager);
		if let Err(e) = KVStoreSync::write(
			&*self.store,
			CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE,
			CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE,
			CHANNEL_MANAGER_PERSISTENCE_KEY,
			encoded,
		) {
			let mut queue = self.lock_queue();
			for (key, queued) in batch {
				queue.requeue(key, queued);
			}
			return Err(e);
		}
		let mut first_error = None;
		let mut completed = Vec::new();
		for (key, queued) in batch {
			let QueuedMonitor { bytes, completes } = queued;
			match self.write_monitor(&key, bytes.clone()) {
				Ok(()) => completed.extend(completes),
				Err(e) => {
					log_error!(self.logger, "Cannot write channel monitor {key}: {e}; retrying");
					self.lock_queue().requeue(key, QueuedMonitor { bytes, completes });
					first_error.get_or_insert(e);
				},
			}
		}
		drop(order);
		self.complete(attached, completed);
		first_error.map_or(Ok(()), Err)
	}

	/// Reports written updates complete. A `persist_new_channel` runs under
	/// the `ChainMonitor`'s write lock and this takes its read lock, so a new
	/// channel is always known by then; only a channel archived meanwhile is
	/// not, and there is nothing left to complete.
	fn complete(&self, attached: &Attached, completed: Vec<(ChannelId, u64)>) {
		let Some(chain_monitor) = attached.chain_monitor.upgrade() else { return };
		for (channel_id, update_id) in completed {
			if let Err(e) = chain_monitor.channel_monitor_updated(channel_id, update_id) {
				log_warn!(
					self.logger,
					"Channel {channel_id}: update {update_id} written, not completed: {e:?}"
				);
			}
		}
	}
}

fn run_flusher(shared: Weak<ManagerFirst>) {
	loop {
		let Some(me) = shared.upgrade() else { return };
		if me.stopped.load(Ordering::SeqCst) {
			return;
		}
		{
			let queue = me.lock_queue();
			if queue.monitors.is_empty() {
				let _ = me.wake.wait_timeout(queue, IDLE_WAIT);
				continue;
			}
		}
		if me.flush_queued().is_err() {
			drop(me);
			std::thread::sleep(RETRY_WAIT);
		}
	}
}

/// The `ChainMonitor`'s persister: queues every write for the next flush.
pub struct MonitorPersister(Arc<ManagerFirst>);

impl Persist<InMemorySigner> for MonitorPersister {
	fn persist_new_channel(
		&self, monitor_name: MonitorName, monitor: &ChannelMonitor<InMemorySigner>,
	) -> ChannelMonitorUpdateStatus {
		self.0.persist(monitor_name, monitor, Some(monitor.get_latest_update_id()))
	}

	fn update_persisted_channel(
		&self, monitor_name: MonitorName, monitor_update: Option<&ChannelMonitorUpdate>,
		monitor: &ChannelMonitor<InMemorySigner>,
	) -> ChannelMonitorUpdateStatus {
		// Chain-sync writes (no update) are queued too: written at once they
		// would carry the queued updates to the disk ahead of the manager.
		self.0.persist(monitor_name, monitor, monitor_update.map(|u| u.update_id))
	}

	fn archive_persisted_channel(&self, monitor_name: MonitorName) {
		// Called under the ChainMonitor's write lock: no flush (its
		// completions would take that lock), only this monitor's queued
		// write, so that it cannot bring the archived monitor back. A fully
		// resolved channel is long gone from the manager: no order to keep.
		let key = monitor_name.to_string();
		let _order = self.0.writes.lock().unwrap_or_else(|p| p.into_inner());
		if let Some(queued) = self.0.lock_queue().monitors.remove(&key) {
			if let Err(e) = self.0.write_monitor(&key, queued.bytes) {
				log_warn!(self.0.logger, "Archiving {key} without its last write: {e}");
			}
		}
		Persist::<InMemorySigner>::archive_persisted_channel(&*self.0.store, monitor_name);
	}
}

/// The background processor's store: its manager writes become flushes
/// (a fresh encode under the write lock); everything else passes through.
pub struct ManagerFirstStore(Arc<ManagerFirst>);

fn is_manager_key(primary: &str, secondary: &str, key: &str) -> bool {
	primary == CHANNEL_MANAGER_PERSISTENCE_PRIMARY_NAMESPACE
		&& secondary == CHANNEL_MANAGER_PERSISTENCE_SECONDARY_NAMESPACE
		&& key == CHANNEL_MANAGER_PERSISTENCE_KEY
}

impl KVStoreSync for ManagerFirstStore {
	fn read(&self, primary: &str, secondary: &str, key: &str) -> io::Result<Vec<u8>> {
		KVStoreSync::read(&*self.0.store, primary, secondary, key)
	}

	fn write(&self, primary: &str, secondary: &str, key: &str, buf: Vec<u8>) -> io::Result<()> {
		if is_manager_key(primary, secondary, key) && self.0.attached.get().is_some() {
			return self.0.flush();
		}
		KVStoreSync::write(&*self.0.store, primary, secondary, key, buf)
	}

	fn remove(&self, primary: &str, secondary: &str, key: &str, lazy: bool) -> io::Result<()> {
		KVStoreSync::remove(&*self.0.store, primary, secondary, key, lazy)
	}

	fn list(&self, primary: &str, secondary: &str) -> io::Result<Vec<String>> {
		KVStoreSync::list(&*self.0.store, primary, secondary)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn chan(n: u8) -> ChannelId {
		ChannelId([n; 32])
	}

	#[test]
	fn a_newer_monitor_supersedes_the_queued_one_and_keeps_its_completions() {
		let mut queue = Queue::default();
		queue.push("a".into(), vec![1], vec![(chan(1), 5)]);
		queue.push("a".into(), vec![2], vec![(chan(1), 6)]);
		queue.push("b".into(), vec![9], Vec::new());
		let a = &queue.monitors["a"];
		assert_eq!(a.bytes, vec![2]);
		assert_eq!(a.completes, vec![(chan(1), 5), (chan(1), 6)]);
		assert_eq!(queue.monitors.len(), 2);
	}

	#[test]
	fn a_failed_write_goes_back_behind_anything_newer() {
		let mut queue = Queue::default();
		let failed = QueuedMonitor { bytes: vec![1], completes: vec![(chan(1), 5)] };
		queue.push("a".into(), vec![2], vec![(chan(1), 6)]);
		queue.requeue("a".into(), failed);
		let a = &queue.monitors["a"];
		assert_eq!(a.bytes, vec![2], "the newer monitor must win");
		assert_eq!(a.completes, vec![(chan(1), 5), (chan(1), 6)]);

		let mut queue = Queue::default();
		queue.requeue("a".into(), QueuedMonitor { bytes: vec![1], completes: Vec::new() });
		assert_eq!(queue.monitors["a"].bytes, vec![1]);
		assert_eq!(queue.monitors.len(), 1);
	}
}
