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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

impl WakeNotifier {
	/// A notifier posting to `url`, signing with `signer`'s node key.
	pub(super) fn new(url: reqwest::Url, signer: Arc<KeysManager>) -> Self {
		let client = reqwest::Client::builder()
			.timeout(WEBHOOK_TIMEOUT)
			.build()
			.unwrap_or_else(|_| reqwest::Client::new());
		Self { url, client, signer }
	}

	/// Posts `lsps5.payment_incoming`.
	pub(super) async fn payment_incoming(&self) -> Result<(), WakeError> {
		self.notify(WebhookNotification::payment_incoming()).await
	}

	/// Posts `lsps5.onion_message_incoming`.
	pub(super) async fn onion_message_incoming(&self) -> Result<(), WakeError> {
		self.notify(WebhookNotification::onion_message_incoming()).await
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
/// in a task of its own (a slow webhook must not hold the hold loop up).
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
		// No subscriber is fine.
		let _ = events.send(NodeEvent::PaymentHeld { held: bucket });
		if let Some(notifier) = notifier {
			let (notifier, logger) = (Arc::clone(notifier), Arc::clone(logger));
			tokio::spawn(async move {
				if let Err(e) = notifier.payment_incoming().await {
					log_warn!(logger, "Wake-up call failed: {e}");
				}
			});
		}
	}
}
