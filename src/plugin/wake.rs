//! Wake-up calls for operators. When the relay starts holding a trampoline
//! payment for an offline peer, the plugin tells [`PluginEvent::PaymentHeld`]
//! and, with [`super::PluginBuilder::wake_webhook`] set, POSTs an LSPS5
//! (bLIP-55) `lsps5.payment_incoming` notification there; when the static
//! invoice server starts keeping onion messages for an offline peer (an
//! async payer's `held_htlc_available` for its recipient, say), it
//! tells [`PluginEvent::MessageHeld`] and POSTs
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
//!
//! The URL follows LSPS5's rules ([`parse_webhook_url`]): https (plain http
//! only on regtest), at most [`MAX_WEBHOOK_URL_LENGTH`] characters, and no
//! loopback, private or link-local host outside regtest. The client speaks
//! TLS through rustls (webpki roots, plus the CA certificate given to
//! [`super::PluginBuilder::wake_webhook`] when set), follows no redirect, gives up on a call after
//! [`WEBHOOK_TIMEOUT`] and tries [`WEBHOOK_ATTEMPTS`] times, waiting
//! [`WEBHOOK_BACKOFF`] then twice that, when the webhook cannot be reached or
//! answers 5xx or 429.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lightning::sign::NodeSigner;
use lightning::util::logger::Logger;
use lightning::{log_info, log_warn};
use lightning_liquidity::lsps0::ser::LSPSDateTime;
use lightning_liquidity::lsps5::msgs::WebhookNotification;

use super::PluginEvent;
use crate::relay::HeldBucket;

/// How long a webhook may take to answer one attempt.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of one wake-up call.
pub const WEBHOOK_ATTEMPTS: u32 = 3;
/// The wait before the second attempt (doubling for each further one).
pub const WEBHOOK_BACKOFF: Duration = Duration::from_secs(1);
/// The longest webhook URL accepted (LSPS5's limit).
pub const MAX_WEBHOOK_URL_LENGTH: usize = 1024;
/// Least time between two calls of one notification for one peer (LSPS5's
/// notification cooldown).
pub(crate) const WAKE_COOLDOWN: Duration = Duration::from_secs(60);
/// Most webhook calls in flight at once.
pub(crate) const MAX_CONCURRENT_WAKES: usize = 8;
/// Most (notification, peer) pairs remembered within one cooldown; beyond,
/// calls for further peers are skipped.
const MAX_TRACKED_WAKES: usize = 10_000;

/// The notification a wake-up call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WakeKind {
	/// `lsps5.payment_incoming`: a payment is held for the peer.
	PaymentIncoming,
	/// `lsps5.onion_message_incoming`: onion messages wait for the peer.
	OnionMessageIncoming,
}

/// Why [`WakeGate::admit`] skipped a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WakeSkipped {
	/// The peer was called for this within [`WAKE_COOLDOWN`].
	Cooldown,
	/// [`MAX_CONCURRENT_WAKES`] calls are in flight.
	Busy,
	/// [`MAX_TRACKED_WAKES`] peers were called within the cooldown.
	TooManyPeers,
}

type WakeKey = (WakeKind, String);

/// Rate limit, deduplication and concurrency cap of wake-up calls.
pub(crate) struct WakeGate {
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
	pub(crate) fn admit(
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
pub(crate) struct WakeStats {
	/// Calls started.
	pub(crate) started: u64,
	/// Calls skipped: the peer was called within the cooldown.
	pub(crate) deduplicated: u64,
	/// Calls skipped: too many in flight, or too many peers.
	pub(crate) busy: u64,
}

/// Why a wake-up call failed, or the webhook cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
	/// The URL breaks LSPS5's rules.
	#[error("wake webhook {url:?} cannot be used: {reason}")]
	Url {
		/// The URL (cut to 100 characters).
		url: String,
		/// Which rule it breaks.
		reason: String,
	},
	/// The webhook's client cannot be built (e.g. its CA file is unreadable).
	#[error("cannot set up the wake webhook's client: {0}")]
	Client(String),
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

/// Whether `ip` is reachable only from this host or its private network.
fn is_internal(ip: IpAddr) -> bool {
	match ip {
		IpAddr::V4(v4) => {
			v4.is_loopback()
				|| v4.is_private()
				|| v4.is_link_local()
				|| v4.is_unspecified()
				|| v4.is_broadcast()
				// 100.64.0.0/10, carrier-grade NAT.
				|| (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
		},
		IpAddr::V6(v6) => {
			let first = v6.segments()[0];
			v6.is_loopback()
				|| v6.is_unspecified()
				// fc00::/7 (unique local) and fe80::/10 (link-local).
				|| (first & 0xfe00) == 0xfc00
				|| (first & 0xffc0) == 0xfe80
				|| v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
		},
	}
}

/// Checks a wake-up webhook URL against LSPS5's rules: at most
/// [`MAX_WEBHOOK_URL_LENGTH`] characters, `https`, and a host that is not
/// loopback, private or link-local (`localhost` included). On regtest,
/// plain `http` and such hosts are allowed (local test push services).
pub fn parse_webhook_url(url: &str, network: bitcoin::Network) -> Result<reqwest::Url, WakeError> {
	let refused = |reason: &str| WakeError::Url {
		url: url.chars().take(100).collect(),
		reason: reason.to_string(),
	};
	if url.len() > MAX_WEBHOOK_URL_LENGTH {
		return Err(refused(&format!(
			"{} characters long; LSPS5 allows at most {MAX_WEBHOOK_URL_LENGTH}",
			url.len()
		)));
	}
	let parsed = reqwest::Url::parse(url).map_err(|e| refused(&format!("not a URL: {e}")))?;
	let regtest = network == bitcoin::Network::Regtest;
	match parsed.scheme() {
		"https" => {},
		"http" if regtest => {},
		"http" => return Err(refused("plain http is allowed on regtest only; use https://")),
		_ => return Err(refused("must be an https:// URL")),
	}
	let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| refused("no host"))?;
	let bare = host.trim_start_matches('[').trim_end_matches(']');
	let internal = match bare.parse::<IpAddr>() {
		Ok(ip) => is_internal(ip),
		Err(_) => {
			let name = host.trim_end_matches('.').to_ascii_lowercase();
			name == "localhost" || name.ends_with(".localhost")
		},
	};
	if internal && !regtest {
		return Err(refused(
			"a loopback, private or link-local host is allowed on regtest only (LSPS5)",
		));
	}
	Ok(parsed)
}

/// The webhook's HTTP client, as the node builds it: rustls, the web's
/// roots plus the PEM certificates of `ca_cert`, [`WEBHOOK_TIMEOUT`], no
/// redirects (a redirect could point at an internal host), no proxy from
/// the environment.
pub fn webhook_client(ca_cert: Option<&Path>) -> Result<reqwest::Client, WakeError> {
	let mut builder = reqwest::Client::builder()
		.use_rustls_tls()
		.timeout(WEBHOOK_TIMEOUT)
		.redirect(reqwest::redirect::Policy::none());
	if let Some(path) = ca_cert {
		let failed = |reason: String| WakeError::Client(format!("{}: {reason}", path.display()));
		let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
		let certs =
			reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| failed(e.to_string()))?;
		if certs.is_empty() {
			return Err(failed("no PEM certificate in it".into()));
		}
		for cert in certs {
			builder = builder.add_root_certificate(cert);
		}
	}
	builder.build().map_err(|e| WakeError::Client(e.to_string()))
}

/// Posts signed LSPS5 notifications to the operator's webhook.
pub(crate) struct WakeNotifier {
	url: reqwest::Url,
	client: reqwest::Client,
	signer: Arc<dyn NodeSigner + Send + Sync>,
	gate: WakeGate,
	backoff: Duration,
	started: AtomicU64,
	deduplicated: AtomicU64,
	busy: AtomicU64,
}

impl WakeNotifier {
	/// A notifier posting to `url` with `client` ([`webhook_client`]),
	/// signing with `signer`'s node key.
	pub(crate) fn new(
		url: reqwest::Url, client: reqwest::Client, signer: Arc<dyn NodeSigner + Send + Sync>,
	) -> Self {
		Self {
			url,
			client,
			signer,
			gate: WakeGate::new(WAKE_COOLDOWN, MAX_CONCURRENT_WAKES),
			backoff: WEBHOOK_BACKOFF,
			started: AtomicU64::new(0),
			deduplicated: AtomicU64::new(0),
			busy: AtomicU64::new(0),
		}
	}

	/// Calls the webhook with `kind` for `peer` in a task of its own on
	/// `runtime`, if the gate lets it (see the module); `None` when skipped.
	pub(crate) fn wake(
		self: &Arc<Self>, kind: WakeKind, peer: &str, runtime: &tokio::runtime::Handle,
		logger: &Arc<dyn Logger + Send + Sync>,
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
	pub(crate) fn stats(&self) -> WakeStats {
		WakeStats {
			started: self.started.load(Ordering::Relaxed),
			deduplicated: self.deduplicated.load(Ordering::Relaxed),
			busy: self.busy.load(Ordering::Relaxed),
		}
	}

	/// Posts `notification`, trying again after [`WEBHOOK_BACKOFF`] (then
	/// twice as long) while the webhook cannot be reached or answers 5xx or
	/// 429, [`WEBHOOK_ATTEMPTS`] times in all. Each attempt is signed afresh.
	async fn notify(&self, notification: WebhookNotification) -> Result<(), WakeError> {
		let mut wait = self.backoff;
		let mut attempt = 1;
		loop {
			match self.post(&notification).await {
				Ok(()) => return Ok(()),
				Err((error, retry)) if !retry || attempt >= WEBHOOK_ATTEMPTS => return Err(error),
				Err(_) => {
					tokio::time::sleep(wait).await;
					wait *= 2;
					attempt += 1;
				},
			}
		}
	}

	/// One attempt; the error says whether another attempt may succeed.
	async fn post(&self, notification: &WebhookNotification) -> Result<(), (WakeError, bool)> {
		let body = serde_json::to_string(notification)
			.map_err(|e| (WakeError::Sign(e.to_string()), false))?;
		let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
		let timestamp = LSPSDateTime::new_from_duration_since_epoch(now).to_rfc3339();
		let message = format!(
			"LSPS5: DO NOT SIGN THIS MESSAGE MANUALLY: LSP: At {timestamp} I notify {body}"
		);
		let signature = self
			.signer
			.sign_message(message.as_bytes())
			.map_err(|()| (WakeError::Sign("the node signer refused".into()), false))?;
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
			.map_err(|e| (failed(crate::control::client::with_causes(&e)), true))?;
		let status = response.status();
		if !status.is_success() {
			let retry =
				status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
			return Err((failed(format!("answered {status}")), retry));
		}
		Ok(())
	}
}

/// Tells which held buckets are new since the last look.
#[derive(Default)]
pub(crate) struct HeldWatch {
	seen: HashSet<String>,
}

impl HeldWatch {
	/// The buckets of `held` not held at the last call (all of them at the
	/// first call, after a restart too: the operator is told again).
	pub(crate) fn newly_held(&mut self, held: Vec<HeldBucket>) -> Vec<HeldBucket> {
		let now: HashSet<String> = held.iter().map(|h| h.payment_hash.clone()).collect();
		let new = held.into_iter().filter(|h| !self.seen.contains(&h.payment_hash)).collect();
		self.seen = now;
		new
	}
}

/// Publishes each newly held bucket and, with a notifier, calls the webhook
/// in a task of its own (a slow webhook must not hold the hold loop up),
/// gated per next node ([`WakeNotifier::wake`]).
pub(crate) fn announce_held(
	held: Vec<HeldBucket>, events: &super::EventSink,
	wake: Option<(&Arc<WakeNotifier>, &tokio::runtime::Handle)>,
	logger: &Arc<dyn Logger + Send + Sync>,
) {
	for bucket in held {
		log_info!(
			logger,
			"Holding trampoline payment {} for offline peer {}",
			bucket.payment_hash,
			bucket.next_node
		);
		if let Some((notifier, runtime)) = wake {
			notifier.wake(WakeKind::PaymentIncoming, &bucket.next_node, runtime, logger);
		}
		events.tell(PluginEvent::PaymentHeld { held: bucket });
	}
}

#[cfg(test)]
mod tests {
	use std::sync::atomic::AtomicUsize;

	use lightning_liquidity::lsps5::msgs::WebhookNotification;
	use tokio::io::{AsyncReadExt, AsyncWriteExt};

	use super::*;

	/// Reads HTTP requests off `socket`, answering each with the next of
	/// `statuses` (200 once they run out) and counting them.
	async fn answer_requests<S>(
		mut socket: S, calls: Arc<AtomicUsize>, statuses: Arc<Mutex<VecDeque<u16>>>,
	) where
		S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
	{
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
				calls.fetch_add(1, Ordering::SeqCst);
				let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
				let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
				let _ = socket.write_all(answer.as_bytes()).await;
				let _ = socket.flush().await;
				request.clear();
			}
		}
	}

	/// A webhook on loopback answering `statuses` then 200, over TLS with
	/// `tls`; its port and the count of requests.
	async fn serve_webhook(
		tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>, statuses: Vec<u16>,
	) -> (u16, Arc<AtomicUsize>) {
		let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
		let port = listener.local_addr().expect("address").port();
		let calls = Arc::new(AtomicUsize::new(0));
		let statuses = Arc::new(Mutex::new(VecDeque::from(statuses)));
		let counted = Arc::clone(&calls);
		tokio::spawn(async move {
			while let Ok((socket, _)) = listener.accept().await {
				let (counted, statuses) = (Arc::clone(&counted), Arc::clone(&statuses));
				let tls = tls.clone();
				tokio::spawn(async move {
					match tls {
						Some(config) => {
							let acceptor = tokio_rustls::TlsAcceptor::from(config);
							if let Ok(stream) = acceptor.accept(socket).await {
								answer_requests(stream, counted, statuses).await;
							}
						},
						None => answer_requests(socket, counted, statuses).await,
					}
				});
			}
		});
		(port, calls)
	}

	/// A webhook that answers 200 to every request and counts them.
	async fn webhook() -> (reqwest::Url, Arc<AtomicUsize>) {
		let (port, calls) = serve_webhook(None, Vec::new()).await;
		(format!("http://127.0.0.1:{port}/wake").parse().expect("url"), calls)
	}

	type TestLogger = Arc<dyn Logger + Send + Sync>;

	fn notifier(url: reqwest::Url) -> (Arc<WakeNotifier>, TestLogger) {
		notifier_with(url, webhook_client(None).expect("client"))
	}

	fn notifier_with(
		url: reqwest::Url, client: reqwest::Client,
	) -> (Arc<WakeNotifier>, TestLogger) {
		let keys = Arc::new(lightning::sign::KeysManager::new(&[7; 32], 1, 1, true));
		let mut notifier = WakeNotifier::new(url, client, keys);
		notifier.backoff = Duration::from_millis(20);
		(Arc::new(notifier), Arc::new(crate::testkit::NoLogger))
	}

	/// A self-signed certificate for `localhost` and 127.0.0.1: the server's
	/// rustls configuration and the certificate's PEM file.
	fn self_signed(dir: &Path) -> (Arc<tokio_rustls::rustls::ServerConfig>, std::path::PathBuf) {
		let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
		let rcgen::CertifiedKey { cert, key_pair } =
			rcgen::generate_simple_self_signed(names).expect("certificate");
		let (cert_path, key_path) = (dir.join("webhook.crt"), dir.join("webhook.key"));
		std::fs::write(&cert_path, cert.pem()).expect("write cert");
		std::fs::write(&key_path, key_pair.serialize_pem()).expect("write key");
		let config = crate::control::tls::server_config(&cert_path, &key_path).expect("tls");
		(config, cert_path)
	}

	#[tokio::test]
	async fn an_https_webhook_with_a_self_signed_cert_is_called_when_trusted() {
		let dir = tempfile::tempdir().expect("tempdir");
		let (tls, cert) = self_signed(dir.path());
		let (port, calls) = serve_webhook(Some(tls), Vec::new()).await;
		let url = format!("https://localhost:{port}/wake");
		let url =
			parse_webhook_url(&url, bitcoin::Network::Regtest).expect("regtest allows loopback");
		// Built as the node builds it, trusting the test certificate.
		let client = webhook_client(Some(&cert)).expect("client");
		let (trusted, _) = notifier_with(url.clone(), client);
		trusted.notify(WebhookNotification::payment_incoming()).await.expect("the https call");
		assert_eq!(calls.load(Ordering::SeqCst), 1);
		// Without the certificate the handshake fails: nothing is posted, and
		// a TLS failure is retried like any unreachable webhook.
		let (untrusted, _) = notifier_with(url, webhook_client(None).expect("client"));
		let err = untrusted.notify(WebhookNotification::payment_incoming()).await.unwrap_err();
		assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
		assert_eq!(calls.load(Ordering::SeqCst), 1);
		let unreadable = webhook_client(Some(&dir.path().join("missing.pem"))).unwrap_err();
		assert!(unreadable.to_string().contains("missing.pem"), "{unreadable}");
	}

	#[tokio::test]
	async fn a_failing_webhook_is_retried_with_backoff_but_not_a_refusing_one() {
		let (port, calls) = serve_webhook(None, vec![503, 429]).await;
		let url: reqwest::Url = format!("http://127.0.0.1:{port}/wake").parse().unwrap();
		let (calling, _) = notifier(url.clone());
		let started = Instant::now();
		calling.notify(WebhookNotification::payment_incoming()).await.expect("third attempt");
		assert_eq!(calls.load(Ordering::SeqCst), 3, "503, 429, then 200");
		// 20 ms then 40 ms of backoff.
		assert!(started.elapsed() >= Duration::from_millis(60), "{:?}", started.elapsed());

		let (port, calls) = serve_webhook(None, vec![500, 500, 500, 500]).await;
		let url: reqwest::Url = format!("http://127.0.0.1:{port}/wake").parse().unwrap();
		let (calling, _) = notifier(url);
		let err = calling.notify(WebhookNotification::payment_incoming()).await.unwrap_err();
		assert!(err.to_string().contains("500"), "{err}");
		assert_eq!(calls.load(Ordering::SeqCst), WEBHOOK_ATTEMPTS as usize);

		let (port, calls) = serve_webhook(None, vec![400]).await;
		let url: reqwest::Url = format!("http://127.0.0.1:{port}/wake").parse().unwrap();
		let (calling, _) = notifier(url);
		let err = calling.notify(WebhookNotification::payment_incoming()).await.unwrap_err();
		assert!(err.to_string().contains("400"), "{err}");
		assert_eq!(calls.load(Ordering::SeqCst), 1, "a 4xx is the webhook's answer: no retry");
	}

	#[test]
	fn webhook_urls_follow_lsps5_rules() {
		use bitcoin::Network::{Bitcoin, Regtest, Signet};
		let ok = |url: &str, network| parse_webhook_url(url, network).map(|_| ());
		assert!(ok("https://push.example.com/wake?id=1", Bitcoin).is_ok());
		assert!(ok("https://203.0.113.7:8443/wake", Signet).is_ok());
		let long = format!("https://push.example.com/{}", "a".repeat(MAX_WEBHOOK_URL_LENGTH));
		for (url, network, why) in [
			("http://push.example.com/wake", Bitcoin, "regtest only"),
			("ftp://push.example.com/wake", Regtest, "https://"),
			("https://localhost/wake", Bitcoin, "loopback"),
			("https://api.localhost./wake", Signet, "loopback"),
			("https://127.0.0.1:9000/wake", Bitcoin, "loopback"),
			("https://10.1.2.3/wake", Bitcoin, "private"),
			("https://192.168.0.1/wake", Bitcoin, "private"),
			("https://172.16.5.5/wake", Bitcoin, "private"),
			("https://169.254.169.254/latest", Bitcoin, "link-local"),
			("https://100.64.0.1/wake", Bitcoin, "private"),
			("https://0.0.0.0/wake", Bitcoin, "loopback"),
			("https://[::1]/wake", Bitcoin, "loopback"),
			("https://[fd00::1]/wake", Bitcoin, "private"),
			("https://[fe80::1]/wake", Bitcoin, "link-local"),
			("https://[::ffff:127.0.0.1]/wake", Bitcoin, "loopback"),
			("not a url", Regtest, "not a URL"),
			(long.as_str(), Regtest, "at most 1024"),
		] {
			let err = ok(url, network).expect_err(url).to_string();
			assert!(err.contains(why), "{url}: {err}");
		}
		// Regtest: local push services over plain http.
		assert!(ok("http://127.0.0.1:9000/wake", Regtest).is_ok());
		assert!(ok("https://localhost:9000/wake", Regtest).is_ok());
	}

	#[tokio::test]
	async fn a_flood_for_one_peer_makes_one_call_per_cooldown() {
		let (url, calls) = webhook().await;
		let (notifier, logger) = notifier(url);
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
