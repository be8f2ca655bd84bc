//! Wake-up calls for operators. When the relay starts holding a trampoline
//! payment for an offline peer, the node publishes [`NodeEvent::PaymentHeld`]
//! and, with [`super::NodeConfig::wake_webhook`] set, POSTs an LSPS5
//! (bLIP-55) `lsps5.payment_incoming` notification there; when the static
//! invoice server starts keeping onion messages for an offline peer (an
//! async payer's `held_htlc_available` for its recipient, say), it
//! publishes [`NodeEvent::MessageHeld`] and POSTs
//! `lsps5.onion_message_incoming`. Calls are signed with the node key as
//! LSPS5 specifies (`x-lsps5-timestamp`, `x-lsps5-signature`), so that the
//! operator's push service can wake the mobile peer and check that the call
//! came from this node (`LSPS5Validator` in `lightning-liquidity`).
//!
//! Calls are gated ([`WakeNotifier::wake`]): at most one per (notification,
//! peer) per [`WAKE_COOLDOWN`] (LSPS5's cooldown; the calls in between are
//! the same news, so they are deduplicated rather than queued), and at most
//! [`MAX_CONCURRENT_WAKES`] in flight (a call beyond is skipped and not
//! remembered, so the next trigger for that peer tries again). A flood of
//! onion messages or held payments toward one peer costs one signed POST a
//! minute; toward many peers, at most eight open connections.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lightning::sign::{KeysManager, NodeSigner};
use lightning::util::logger::Logger;
use lightning::{log_info, log_warn};
use lightning_liquidity::lsps0::ser::LSPSDateTime;
use lightning_liquidity::lsps5::msgs::WebhookNotification;

use super::events::NodeEvent;
use super::logger::NodeLogger;
use crate::relay::HeldBucket;

/// How long a webhook may take to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two calls of one notification for one peer (LSPS5's
/// notification cooldown).
pub(super) const WAKE_COOLDOWN: Duration = Duration::from_secs(60);
/// Most webhook calls in flight at once.
pub(super) const MAX_CONCURRENT_WAKES: usize = 8;
/// Most (notification, peer) pairs remembered within one cooldown; beyond,
/// calls for further peers are skipped.
const MAX_TRACKED_WAKES: usize = 10_000;

/// The notification a wake-up call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum WakeKind {
	/// `lsps5.payment_incoming`: a payment is held for the peer.
	PaymentIncoming,
	/// `lsps5.onion_message_incoming`: onion messages wait for the peer.
	OnionMessageIncoming,
}

/// Why [`WakeGate::admit`] skipped a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WakeSkipped {
	/// The peer was called for this within [`WAKE_COOLDOWN`].
	Cooldown,
	/// [`MAX_CONCURRENT_WAKES`] calls are in flight.
	Busy,
	/// [`MAX_TRACKED_WAKES`] peers were called within the cooldown.
	TooManyPeers,
}

type WakeKey = (WakeKind, String);

/// Rate limit, deduplication and concurrency cap of wake-up calls.
pub(super) struct WakeGate {
	recent: Mutex<Recent>,
	slots: Arc<tokio::sync::Semaphore>,
	cooldown: Duration,
}

#[derive(Default)]
struct Recent {
	last: HashMap<WakeKey, Instant>,
	order: VecDeque<(Instant, WakeKey)>,
}

impl WakeGate {
	fn new(cooldown: Duration, concurrent: usize) -> Self {
		Self {
			recent: Mutex::new(Recent::default()),
			slots: Arc::new(tokio::sync::Semaphore::new(concurrent)),
			cooldown,
		}
	}

	/// A permit to call the webhook now for (`kind`, `peer`), held for the
	/// call's duration. O(1) amortized: calls older than the cooldown are
	/// forgotten, oldest first.
	pub(super) fn admit(
		&self, kind: WakeKind, peer: &str, now: Instant,
	) -> Result<tokio::sync::OwnedSemaphorePermit, WakeSkipped> {
		let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
		while let Some((at, _)) = recent.order.front() {
			if now.saturating_duration_since(*at) < self.cooldown {
				break;
			}
			if let Some((at, key)) = recent.order.pop_front() {
				if recent.last.get(&key) == Some(&at) {
					recent.last.remove(&key);
				}
			}
		}
		let key = (kind, peer.to_owned());
		if recent.last.contains_key(&key) {
			return Err(WakeSkipped::Cooldown);
		}
		if recent.last.len() >= MAX_TRACKED_WAKES {
			return Err(WakeSkipped::TooManyPeers);
		}
		let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| WakeSkipped::Busy)?;
		recent.last.insert(key.clone(), now);
		recent.order.push_back((now, key));
		Ok(permit)
	}
}

/// What the notifier did since the node started.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct WakeStats {
	/// Calls started.
	pub(super) started: u64,
	/// Calls skipped: the peer was called within the cooldown.
	pub(super) deduplicated: u64,
	/// Calls skipped: too many in flight, or too many peers.
	pub(super) busy: u64,
}

/// Why a wake-up call failed.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
	/// The notification could not be signed or encoded.
	#[error("cannot sign the notification: {0}")]
	Sign(String),
	/// The webhook could not be reached, or answered with an error.
	#[error("webhook {url} failed: {reason}")]
	Webhook {
		/// The webhook.
		url: String,
		/// What went wrong.
		reason: String,
	},
}

/// Posts signed LSPS5 notifications to the operator's webhook.
pub(super) struct WakeNotifier {
	url: reqwest::Url,
	client: reqwest::Client,
	signer: Arc<KeysManager>,
	gate: WakeGate,
	started: AtomicU64,
	deduplicated: AtomicU64,
	busy: AtomicU64,
}

impl WakeNotifier {
	/// A notifier posting to `url`, signing with `signer`'s node key.
	pub(super) fn new(url: reqwest::Url, signer: Arc<KeysManager>) -> Self {
		let client = reqwest::Client::builder()
			.timeout(WEBHOOK_TIMEOUT)
			.build()
			.unwrap_or_else(|_| reqwest::Client::new());
		Self {
			url,
			client,
			signer,
			gate: WakeGate::new(WAKE_COOLDOWN, MAX_CONCURRENT_WAKES),
			started: AtomicU64::new(0),
			deduplicated: AtomicU64::new(0),
			busy: AtomicU64::new(0),
		}
	}

	/// Calls the webhook with `kind` for `peer` in a task of its own on
	/// `runtime`, if the gate lets it (see the module); `None` when skipped.
	pub(super) fn wake(
		self: &Arc<Self>, kind: WakeKind, peer: &str, runtime: &tokio::runtime::Handle,
		logger: &Arc<NodeLogger>,
	) -> Option<tokio::task::JoinHandle<()>> {
		let permit = match self.gate.admit(kind, peer, Instant::now()) {
			Ok(permit) => permit,
			Err(skipped) => {
				let counter = match skipped {
					WakeSkipped::Cooldown => &self.deduplicated,
					WakeSkipped::Busy | WakeSkipped::TooManyPeers => &self.busy,
				};
				counter.fetch_add(1, Ordering::Relaxed);
				if skipped != WakeSkipped::Cooldown {
					log_warn!(logger, "Wake-up call for {peer} skipped: {skipped:?}");
				}
				return None;
			},
		};
		self.started.fetch_add(1, Ordering::Relaxed);
		let (notifier, logger) = (Arc::clone(self), Arc::clone(logger));
		Some(runtime.spawn(async move {
			let notification = match kind {
				WakeKind::PaymentIncoming => WebhookNotification::payment_incoming(),
				WakeKind::OnionMessageIncoming => WebhookNotification::onion_message_incoming(),
			};
			if let Err(e) = notifier.notify(notification).await {
				log_warn!(logger, "Wake-up call failed: {e}");
			}
			drop(permit);
		}))
	}

	/// What the notifier did since the node started.
	#[cfg(test)]
	pub(super) fn stats(&self) -> WakeStats {
		WakeStats {
			started: self.started.load(Ordering::Relaxed),
			deduplicated: self.deduplicated.load(Ordering::Relaxed),
			busy: self.busy.load(Ordering::Relaxed),
		}
	}

	async fn notify(&self, notification: WebhookNotification) -> Result<(), WakeError> {
		let body =
			serde_json::to_string(&notification).map_err(|e| WakeError::Sign(e.to_string()))?;
		let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
		let timestamp = LSPSDateTime::new_from_duration_since_epoch(now).to_rfc3339();
		let message = format!(
			"LSPS5: DO NOT SIGN THIS MESSAGE MANUALLY: LSP: At {timestamp} I notify {body}"
		);
		let signature = self
			.signer
			.sign_message(message.as_bytes())
			.map_err(|()| WakeError::Sign("the node signer refused".into()))?;
		let failed = |reason: String| WakeError::Webhook { url: self.url.to_string(), reason };
		let response = self
			.client
			.post(self.url.clone())
			.header("Content-Type", "application/json")
			.header("x-lsps5-timestamp", timestamp)
			.header("x-lsps5-signature", signature)
			.body(body)
			.send()
			.await
			.map_err(|e| failed(e.to_string()))?;
		if !response.status().is_success() {
			return Err(failed(format!("answered {}", response.status())));
		}
		Ok(())
	}
}

/// Tells which held buckets are new since the last look.
#[derive(Default)]
pub(super) struct HeldWatch {
	seen: HashSet<String>,
}

impl HeldWatch {
	/// The buckets of `held` not held at the last call (all of them at the
	/// first call, after a restart too: the operator is told again).
	pub(super) fn newly_held(&mut self, held: Vec<HeldBucket>) -> Vec<HeldBucket> {
		let now: HashSet<String> = held.iter().map(|h| h.payment_hash.clone()).collect();
		let new = held.into_iter().filter(|h| !self.seen.contains(&h.payment_hash)).collect();
		self.seen = now;
		new
	}
}

/// Publishes each newly held bucket and, with a notifier, calls the webhook
/// in a task of its own (a slow webhook must not hold the hold loop up),
/// gated per next node ([`WakeNotifier::wake`]).
pub(super) fn announce_held(
	held: Vec<HeldBucket>, events: &tokio::sync::broadcast::Sender<NodeEvent>,
	notifier: Option<&Arc<WakeNotifier>>, logger: &Arc<NodeLogger>,
) {
	for bucket in held {
		log_info!(
			logger,
			"Holding trampoline payment {} for offline peer {}",
			bucket.payment_hash,
			bucket.next_node
		);
		if let Some(notifier) = notifier {
			let runtime = tokio::runtime::Handle::current();
			notifier.wake(WakeKind::PaymentIncoming, &bucket.next_node, &runtime, logger);
		}
		// No subscriber is fine.
		let _ = events.send(NodeEvent::PaymentHeld { held: bucket });
	}
}

#[cfg(test)]
mod tests {
	use std::sync::atomic::AtomicUsize;

	use lightning::util::logger::Level;
	use tokio::io::{AsyncReadExt, AsyncWriteExt};

	use super::*;

	/// A webhook that answers 200 to every request and counts them.
	async fn webhook() -> (reqwest::Url, Arc<AtomicUsize>) {
		let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
		let url = format!("http://{}/wake", listener.local_addr().expect("address"));
		let calls = Arc::new(AtomicUsize::new(0));
		let counted = Arc::clone(&calls);
		tokio::spawn(async move {
			while let Ok((mut socket, _)) = listener.accept().await {
				let counted = Arc::clone(&counted);
				tokio::spawn(async move {
					let mut request = Vec::new();
					let mut buf = [0u8; 4096];
					// Headers, then the body (its length is in the headers).
					while let Ok(n) = socket.read(&mut buf).await {
						if n == 0 {
							break;
						}
						request.extend_from_slice(&buf[..n]);
						let text = String::from_utf8_lossy(&request).to_lowercase();
						let Some(end) = text.find("\r\n\r\n") else { continue };
						let length = text
							.lines()
							.find_map(|l| l.strip_prefix("content-length:"))
							.and_then(|v| v.trim().parse::<usize>().ok())
							.unwrap_or(0);
						if request.len() >= end + 4 + length {
							counted.fetch_add(1, Ordering::SeqCst);
							let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
							let _ = socket.write_all(answer).await;
							request.clear();
						}
					}
				});
			}
		});
		(url.parse().expect("url"), calls)
	}

	fn notifier(url: reqwest::Url, dir: &std::path::Path) -> (Arc<WakeNotifier>, Arc<NodeLogger>) {
		let keys = Arc::new(KeysManager::new(&[7; 32], 1, 1, true));
		let logger = NodeLogger::open(&dir.join("log"), Level::Info, "test").expect("log");
		(Arc::new(WakeNotifier::new(url, keys)), Arc::new(logger))
	}

	#[tokio::test]
	async fn a_flood_for_one_peer_makes_one_call_per_cooldown() {
		let (url, calls) = webhook().await;
		let dir = tempfile::tempdir().expect("tempdir");
		let (notifier, logger) = notifier(url, dir.path());
		let runtime = tokio::runtime::Handle::current();
		let mut started = Vec::new();
		for _ in 0..20 {
			started.extend(notifier.wake(WakeKind::OnionMessageIncoming, "R", &runtime, &logger));
		}
		// Another peer, and the other notification for R, are not merged.
		started.extend(notifier.wake(WakeKind::OnionMessageIncoming, "S", &runtime, &logger));
		started.extend(notifier.wake(WakeKind::PaymentIncoming, "R", &runtime, &logger));
		for call in started {
			call.await.expect("call task");
		}
		assert_eq!(calls.load(Ordering::SeqCst), 3, "POSTs received");
		let stats = notifier.stats();
		assert_eq!((stats.started, stats.deduplicated, stats.busy), (3, 19, 0));
	}

	#[test]
	fn the_gate_limits_per_peer_and_caps_concurrent_calls() {
		let gate = WakeGate::new(WAKE_COOLDOWN, MAX_CONCURRENT_WAKES);
		let t0 = Instant::now();
		let kind = WakeKind::PaymentIncoming;
		let permits: Vec<_> = (0..MAX_CONCURRENT_WAKES)
			.map(|i| gate.admit(kind, &format!("peer{i}"), t0).expect("admitted"))
			.collect();
		assert_eq!(gate.admit(kind, "one more", t0).err(), Some(WakeSkipped::Busy));
		drop(permits);
		// A skipped call is not remembered: it goes through once a slot frees.
		let permit = gate.admit(kind, "one more", t0).expect("admitted");
		assert_eq!(gate.admit(kind, "peer0", t0).err(), Some(WakeSkipped::Cooldown));
		let almost = t0 + WAKE_COOLDOWN - Duration::from_millis(1);
		assert_eq!(gate.admit(kind, "peer0", almost).err(), Some(WakeSkipped::Cooldown));
		drop(permit);
		assert!(gate.admit(kind, "peer0", t0 + WAKE_COOLDOWN).is_ok(), "cooldown over");
		// Old entries are forgotten: only the calls of the last cooldown remain.
		let recent = gate.recent.lock().unwrap();
		assert_eq!(recent.last.len(), 1);
		assert_eq!(recent.order.len(), 1);
	}
}
