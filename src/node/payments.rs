//! Invoices, offers and payments, and the payment records kept for operators.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::hashes::Hash;
use lightning::ln::channelmanager::{
	Bolt11InvoiceParameters, OptionalOfferPaymentParams, PaymentId, Retry,
};
use lightning::offers::offer::Offer;
use lightning::routing::router::RouteParametersConfig;
use lightning::types::payment::{PaymentHash, PaymentPreimage};
use lightning::util::persist::KVStoreSync;
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Currency, Description};
use serde::{Deserialize, Serialize};

use super::events::NodeEvent;
use super::types::Store;
use super::{Node, NodeError};
use crate::relay::now_ms;
use crate::sender::{TrampolineBudget, TrampolineInvoice, TrampolineRouteHop};

const PAYMENTS_NAMESPACE: &str = "payments";

/// The amount an offer asks in bitcoin, if any.
pub(crate) fn offer_amount_msat(offer: &Offer) -> Option<u64> {
	match offer.amount() {
		Some(lightning::offers::offer::Amount::Bitcoin { amount_msats }) => Some(amount_msats),
		_ => None,
	}
}

/// Which way a payment went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentDirection {
	/// We received it.
	Inbound,
	/// We sent it.
	Outbound,
}

/// Where a payment stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PaymentStatus {
	/// In flight (or awaiting a BOLT 12 invoice).
	Pending,
	/// Done: received, or the recipient revealed the preimage.
	Succeeded,
	/// Failed for good.
	Failed {
		/// Why.
		reason: String,
	},
}

/// A payment as recorded for the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
	/// Payment id (hex).
	pub id: String,
	/// Payment hash (hex); unknown for a BOLT 12 payment until the invoice arrives.
	pub payment_hash: Option<String>,
	/// Direction.
	pub direction: PaymentDirection,
	/// Amount, without fees.
	pub amount_msat: Option<u64>,
	/// Routing fees paid (outbound only).
	pub fee_msat: Option<u64>,
	/// State.
	pub status: PaymentStatus,
	/// The preimage, once known.
	pub preimage: Option<String>,
	/// What was paid: "bolt11", "bolt12" or "keysend".
	pub kind: String,
	/// Unix time of creation, in milliseconds.
	pub created_at_ms: u64,
}

/// Payment records, persisted in the node's store.
pub(super) struct PaymentStore {
	records: Mutex<HashMap<String, PaymentRecord>>,
	store: Arc<Store>,
}

impl PaymentStore {
	pub(super) fn load(store: Arc<Store>) -> Result<Self, NodeError> {
		let stored = |reason: String| NodeError::StoredState { what: "payments", reason };
		let mut records = HashMap::new();
		for key in
			KVStoreSync::list(&*store, PAYMENTS_NAMESPACE, "").map_err(|e| stored(e.to_string()))?
		{
			let bytes = KVStoreSync::read(&*store, PAYMENTS_NAMESPACE, "", &key)
				.map_err(|e| stored(e.to_string()))?;
			let record: PaymentRecord =
				serde_json::from_slice(&bytes).map_err(|e| stored(format!("{key}: {e}")))?;
			records.insert(key, record);
		}
		Ok(Self { records: Mutex::new(records), store })
	}

	fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PaymentRecord>> {
		self.records.lock().unwrap_or_else(|p| p.into_inner())
	}

	fn persist(&self, record: &PaymentRecord) {
		if let Ok(bytes) = serde_json::to_vec(record) {
			// Records are informational: LDK's own state is authoritative for funds.
			let _ = KVStoreSync::write(&*self.store, PAYMENTS_NAMESPACE, "", &record.id, bytes);
		}
	}

	pub(super) fn get(&self, id: &PaymentId) -> Option<PaymentRecord> {
		self.lock().get(&hex_id(id)).cloned()
	}

	pub(super) fn list(&self) -> Vec<PaymentRecord> {
		let mut list: Vec<_> = self.lock().values().cloned().collect();
		list.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
		list
	}

	pub(super) fn insert_outbound(
		&self, id: PaymentId, hash: Option<PaymentHash>, amount_msat: Option<u64>, kind: &str,
	) {
		let record = PaymentRecord {
			id: hex_id(&id),
			payment_hash: hash.map(|h| h.to_string()),
			direction: PaymentDirection::Outbound,
			amount_msat,
			fee_msat: None,
			status: PaymentStatus::Pending,
			preimage: None,
			kind: kind.to_string(),
			created_at_ms: now_ms(),
		};
		self.persist(&record);
		self.lock().insert(record.id.clone(), record);
	}

	pub(super) fn upsert_inbound(
		&self, id: PaymentId, hash: PaymentHash, amount_msat: u64,
		preimage: Option<PaymentPreimage>, is_offer: bool,
	) {
		let record = PaymentRecord {
			id: hex_id(&id),
			payment_hash: Some(hash.to_string()),
			direction: PaymentDirection::Inbound,
			amount_msat: Some(amount_msat),
			fee_msat: None,
			status: PaymentStatus::Succeeded,
			preimage: preimage.map(|p| p.to_string()),
			kind: if is_offer { "bolt12" } else { "bolt11" }.to_string(),
			created_at_ms: now_ms(),
		};
		self.persist(&record);
		self.lock().insert(record.id.clone(), record);
	}

	/// Records that LDK refused to start payment `id`, and returns the error.
	fn fail_to_start(&self, id: PaymentId, reason: String) -> NodeError {
		self.update(id, |p| p.status = PaymentStatus::Failed { reason: reason.clone() });
		NodeError::Payment(reason)
	}

	pub(super) fn update(&self, id: PaymentId, change: impl FnOnce(&mut PaymentRecord)) {
		let mut records = self.lock();
		if let Some(record) = records.get_mut(&hex_id(&id)) {
			change(record);
			self.persist(record);
		}
	}
}

fn hex_id(id: &PaymentId) -> String {
	hex::DisplayHex::to_lower_hex_string(&id.0[..])
}

/// The BOLT 11 currency of a network (testnet and testnet4 share one).
fn currency(network: bitcoin::Network) -> Currency {
	match network {
		bitcoin::Network::Bitcoin => Currency::Bitcoin,
		bitcoin::Network::Testnet | bitcoin::Network::Testnet4 => Currency::BitcoinTestnet,
		bitcoin::Network::Signet => Currency::Signet,
		bitcoin::Network::Regtest => Currency::Regtest,
	}
}

/// How long LDK keeps retrying a payment over other routes.
const PAYMENT_RETRY: Retry = Retry::Timeout(Duration::from_secs(30));

/// What sending a trampoline payment needs, to send it from a task of its
/// own (after waiting for the first trampoline's channel).
struct DeferredSend {
	cm: Arc<super::types::ChannelManager>,
	sender: Arc<crate::sender::SenderState>,
	retries: Arc<crate::sender::TrampolineRetries>,
	payments: Arc<PaymentStore>,
	events: tokio::sync::broadcast::Sender<NodeEvent>,
}

impl DeferredSend {
	/// Sends attempt 0 of payment `id`; if LDK refuses it, the payment is
	/// forgotten and recorded as failed.
	fn pay(
		&self, invoice: &TrampolineInvoice, route: &[TrampolineRouteHop], id: PaymentId,
	) -> Result<PaymentId, NodeError> {
		crate::sender::pay_via_trampolines(&*self.cm, invoice, route, Some(&self.sender), id)
			.map(|sent| sent.payment_id)
			.map_err(|e| {
				self.retries.forget(&id);
				self.payments.fail_to_start(id, e.to_string())
			})
	}
}

impl Node {
	/// Creates a BOLT 11 invoice; `amount_msat: None` lets the payer choose.
	pub fn create_invoice(
		&self, amount_msat: Option<u64>, description: &str, expiry_secs: u32,
	) -> Result<Bolt11Invoice, NodeError> {
		if self.config.network == bitcoin::Network::Testnet4 {
			// LDK 0.2.7 maps testnet4 to no BOLT 11 currency (a debug assertion, and a
			// regtest invoice in release builds).
			return Err(NodeError::Payment(
				"BOLT 11 invoices are not supported on testnet4".into(),
			));
		}
		let description = Description::new(description.to_string())
			.map_err(|e| NodeError::Payment(format!("invalid description: {e}")))?;
		let params = Bolt11InvoiceParameters {
			amount_msats: amount_msat,
			description: Bolt11InvoiceDescription::Direct(description),
			invoice_expiry_delta_secs: Some(expiry_secs),
			..Default::default()
		};
		let invoice = self
			.channel_manager
			.create_bolt11_invoice(params)
			.map_err(|e| NodeError::Payment(format!("cannot create invoice: {e}")))?;
		// A relay advertises trampoline support (57, and Electrum's 151) in
		// its invoices: Electrum then pays them end to end with us as its
		// trampoline, and we receive as the final node.
		match self.trampoline() {
			Some(relay) => relay
				.core()
				.advertise_in_invoice(invoice)
				.map_err(|e| NodeError::Payment(format!("cannot create invoice: {e}"))),
			None => Ok(invoice),
		}
	}

	/// Creates a BOLT 12 offer reachable through blinded paths via our peers.
	pub fn create_offer(
		&self, amount_msat: Option<u64>, description: &str,
	) -> Result<Offer, NodeError> {
		let mut builder = self
			.channel_manager
			.create_offer_builder()
			.map_err(|e| NodeError::Payment(format!("cannot create offer: {e:?}")))?
			.description(description.to_string());
		if let Some(amount) = amount_msat {
			builder = builder.amount_msats(amount);
		}
		builder.build().map_err(|e| NodeError::Payment(format!("cannot create offer: {e:?}")))
	}

	/// Pays a BOLT 11 invoice; `amount_msat` is required for an invoice without
	/// an amount. Returns at once; wait with [`Node::wait_for_payment`].
	pub fn pay_invoice(
		&self, invoice: &Bolt11Invoice, amount_msat: Option<u64>,
	) -> Result<PaymentId, NodeError> {
		let id = PaymentId(invoice.payment_hash().to_byte_array());
		let hash = PaymentHash(invoice.payment_hash().to_byte_array());
		let network = self.config.network;
		if invoice.currency() != currency(network) {
			return Err(NodeError::Payment(format!(
				"the invoice is for {:?} but the node runs on {network}",
				invoice.currency()
			)));
		}
		if invoice.is_expired() {
			return Err(NodeError::Payment("the invoice has expired".into()));
		}
		// The payment id of an invoice is its payment hash: paying it twice would be
		// refused by LDK and must not overwrite the earlier record.
		match self.payments.get(&id).map(|p| p.status) {
			Some(PaymentStatus::Succeeded) => {
				return Err(NodeError::Payment("the invoice is already paid".into()))
			},
			Some(PaymentStatus::Pending) => {
				return Err(NodeError::Payment("the invoice is being paid".into()))
			},
			// A failed attempt may be retried.
			Some(PaymentStatus::Failed { .. }) | None => {},
		}
		let amount = amount_msat.or(invoice.amount_milli_satoshis());
		self.payments.insert_outbound(id, Some(hash), amount, "bolt11");
		self.channel_manager
			.pay_for_bolt11_invoice(
				invoice,
				id,
				amount_msat,
				RouteParametersConfig::default(),
				PAYMENT_RETRY,
			)
			.map_err(|e| self.payments.fail_to_start(id, format!("{e:?}")))?;
		Ok(id)
	}

	/// The trampoline to pay `amount_msat` through when none is given: the
	/// peer advertising trampoline routing we can send the most to (see
	/// [`crate::sender::choose_trampoline`]).
	pub fn choose_trampoline(
		&self, amount_msat: u64,
	) -> Result<bitcoin::secp256k1::PublicKey, NodeError> {
		crate::sender::choose_trampoline(&self.channel_manager.list_usable_channels(), amount_msat)
			.ok_or_else(|| {
				NodeError::Payment(format!(
					"no peer advertising trampoline routing (feature bits 56/57) can be sent {amount_msat} msat: open a channel to one"
				))
			})
	}

	/// Pays a BOLT 11 invoice through the trampoline node `trampoline`, which
	/// must be a peer we can route to and finds the route to the recipient
	/// itself. `fee_msat` and `cltv_expiry_delta` are what the trampoline is
	/// offered on top of the invoice. Returns at once; wait with
	/// [`Node::wait_for_payment`].
	pub fn pay_invoice_via_trampoline(
		&self, invoice: &Bolt11Invoice, trampoline: bitcoin::secp256k1::PublicKey, fee_msat: u64,
		cltv_expiry_delta: u16,
	) -> Result<PaymentId, NodeError> {
		let hop = TrampolineRouteHop {
			node_id: trampoline,
			fee_msat,
			cltv_expiry_delta,
			async_payment: false,
		};
		self.pay_invoice_via_trampolines(invoice, &[hop])
	}

	/// Pays a BOLT 11 invoice through the trampoline nodes of `route`, in
	/// order: we pay the first (a node we can route to), each finds the route
	/// to the next, and the last to the recipient. Each is offered its fee and
	/// CLTV delta, and no more. Returns at once; wait with
	/// [`Node::wait_for_payment`], and read a trampoline's answer with
	/// [`Node::trampoline_failure`].
	pub fn pay_invoice_via_trampolines(
		&self, invoice: &Bolt11Invoice, route: &[TrampolineRouteHop],
	) -> Result<PaymentId, NodeError> {
		self.pay_invoice_via_trampolines_within(invoice, route, TrampolineBudget::of_route(route))
	}

	/// As [`Node::pay_invoice_via_trampolines`], and when a trampoline answers
	/// that its fee or CLTV delta is insufficient, pays again offering what
	/// its policy asks as long as every trampoline's fees and deltas together
	/// stay within `budget` (at most [`crate::sender::MAX_ATTEMPTS`] times).
	/// The attempts are reported under the returned id. When we have
	/// channels with the first trampoline but none usable (it restarted and
	/// is reconnecting), the payment is sent once one is usable again, within
	/// [`crate::sender::REESTABLISH_WAIT`].
	pub fn pay_invoice_via_trampolines_within(
		&self, invoice: &Bolt11Invoice, route: &[TrampolineRouteHop], budget: TrampolineBudget,
	) -> Result<PaymentId, NodeError> {
		let id = PaymentId(invoice.payment_hash().to_byte_array());
		let hash = PaymentHash(invoice.payment_hash().to_byte_array());
		let fees = route.iter().try_fold(0u64, |sum, hop| sum.checked_add(hop.fee_msat));
		let amount = invoice.amount_milli_satoshis().and_then(|a| a.checked_add(fees?));
		self.payments.insert_outbound(id, Some(hash), amount, "trampoline");
		let invoice = TrampolineInvoice::Bolt11(invoice.clone());
		self.trampoline_retries.track(id, invoice.clone(), route, budget);
		let send = DeferredSend {
			cm: Arc::clone(&self.channel_manager),
			sender: Arc::clone(self.trampoline_sender()),
			retries: Arc::clone(&self.trampoline_retries),
			payments: Arc::clone(&self.payments),
			events: self.events.clone(),
		};
		let first = route.first().map(|hop| hop.node_id);
		let channels = self.channel_manager.list_channels();
		let runtime = tokio::runtime::Handle::try_current();
		if let (Some(first), Ok(runtime)) = (first, runtime) {
			if crate::sender::awaits_reestablish(&channels, &first) {
				// The trampoline is coming back (it restarted): send once its
				// channel is usable again, or after REESTABLISH_WAIT anyway
				// (LDK then fails it as it would have at once).
				self.peers.reconnect_soon(crate::sender::REESTABLISH_WAIT);
				let route = route.to_vec();
				runtime.spawn(async move {
					let wait = crate::sender::REESTABLISH_WAIT;
					crate::sender::wait_for_usable_channel(&*send.cm, &first, wait).await;
					if let Err(e) = send.pay(&invoice, &route, id) {
						let reason = e.to_string();
						send.events.send(NodeEvent::PaymentFailed { payment_id: id, reason }).ok();
					}
				});
				return Ok(id);
			}
		}
		send.pay(&invoice, route, id)
	}

	/// Pays a BOLT 12 offer: requests an invoice over onion messages, then pays it.
	/// Returns at once; wait with [`Node::wait_for_payment`].
	pub fn pay_offer(
		&self, offer: &Offer, amount_msat: Option<u64>,
	) -> Result<PaymentId, NodeError> {
		let id = PaymentId(rand::random());
		let amount = amount_msat.or_else(|| offer_amount_msat(offer));
		self.payments.insert_outbound(id, None, amount, "bolt12");
		let params =
			OptionalOfferPaymentParams { retry_strategy: PAYMENT_RETRY, ..Default::default() };
		self.channel_manager
			.pay_for_offer(offer, amount_msat, id, params)
			.map_err(|e| self.payments.fail_to_start(id, format!("{e:?}")))?;
		Ok(id)
	}

	/// Pays a BOLT 12 offer through the trampoline nodes of `route`: LDK
	/// fetches the invoice over onion messages, then the last trampoline pays
	/// its blinded paths (their fee is added to what it is offered). Fee
	/// escalation as in [`Node::pay_invoice_via_trampolines_within`]. Returns
	/// at once; wait with [`Node::wait_for_payment`].
	pub fn pay_offer_via_trampolines(
		&self, offer: &Offer, amount_msat: Option<u64>, route: &[TrampolineRouteHop],
		budget: TrampolineBudget,
	) -> Result<PaymentId, NodeError> {
		if route.is_empty() {
			return Err(NodeError::Payment(crate::sender::SenderError::NoTrampoline.to_string()));
		}
		let id = PaymentId(rand::random());
		let amount = amount_msat.or_else(|| offer_amount_msat(offer));
		self.payments.insert_outbound(id, None, amount, "trampoline");
		self.trampoline_retries.await_invoice(id, route, budget);
		// No retry of the invoice request's own payment: it is never paid.
		let params =
			OptionalOfferPaymentParams { retry_strategy: Retry::Attempts(0), ..Default::default() };
		self.channel_manager.pay_for_offer(offer, amount_msat, id, params).map_err(|e| {
			self.trampoline_retries.forget(&id);
			self.payments.fail_to_start(id, format!("{e:?}"))
		})?;
		Ok(id)
	}

	/// Fetches the invoice of `offer` over onion messages without paying it
	/// (to show it, or to pay it by other means), waiting at most `timeout`.
	pub async fn fetch_offer_invoice(
		&self, offer: &Offer, amount_msat: Option<u64>, timeout: Duration,
	) -> Result<lightning::offers::invoice::Bolt12Invoice, NodeError> {
		let request = PaymentId(rand::random());
		let events = self.subscribe();
		self.trampoline_retries.await_invoice_only(request);
		let params =
			OptionalOfferPaymentParams { retry_strategy: Retry::Attempts(0), ..Default::default() };
		if let Err(e) = self.channel_manager.pay_for_offer(offer, amount_msat, request, params) {
			self.trampoline_retries.forget(&request);
			return Err(NodeError::Payment(format!("cannot request the offer's invoice: {e:?}")));
		}
		let fetched = self
			.wait_for_event(events, timeout, "the offer's invoice", |e| match e {
				NodeEvent::InvoiceReceived { request: r, invoice } if *r == request => {
					Some(Ok((**invoice).clone()))
				},
				NodeEvent::PaymentFailed { payment_id, reason } if *payment_id == request => {
					Some(Err(NodeError::Payment(format!("no invoice for the offer: {reason}"))))
				},
				_ => None,
			})
			.await;
		if fetched.is_err() {
			self.trampoline_retries.forget(&request);
			self.channel_manager.abandon_payment(request);
		}
		fetched?
	}

	/// The record of a payment.
	pub fn payment(&self, id: &PaymentId) -> Option<PaymentRecord> {
		self.payments.get(id)
	}

	/// Every payment record, oldest first.
	pub fn list_payments(&self) -> Vec<PaymentRecord> {
		self.payments.list()
	}

	/// Waits until an outbound payment succeeded or failed.
	pub async fn wait_for_payment(
		&self, id: PaymentId, timeout: Duration,
	) -> Result<PaymentRecord, NodeError> {
		let events = self.subscribe();
		if let Some(record) = self.payments.get(&id).filter(|p| p.status != PaymentStatus::Pending)
		{
			return Ok(record);
		}
		self.wait_for_event(events, timeout, "the payment to complete", |e| match e {
			NodeEvent::PaymentSent { payment_id, .. }
			| NodeEvent::PaymentFailed { payment_id, .. }
				if *payment_id == id =>
			{
				Some(())
			},
			_ => None,
		})
		.await?;
		self.payments.get(&id).ok_or_else(|| NodeError::Payment("payment record missing".into()))
	}
}
