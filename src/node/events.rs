//! Handles LDK's events for the node and republishes what users wait on as
//! [`NodeEvent`]s.

use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use bitcoin::Amount;
use lightning::events::{Event, HTLCHandlingFailureType, PaymentPurpose, ReplayEvent};
use lightning::ln::channelmanager::PaymentId;
use lightning::ln::types::ChannelId;
use lightning::types::payment::PaymentHash;
use lightning::util::logger::Logger;
use lightning::{log_error, log_info};
use tokio::sync::broadcast;

use super::chain::FeeEstimator;
use super::forwards::{ForwardKind, ForwardOutcome, ForwardStore, NewForward};
use super::logger::NodeLogger;
use super::payments::{PaymentStatus, PaymentStore};
use super::types::{ChannelManager, OnionMessenger, PeerManager, Plugin, Sweeper};
use super::wallet::OnchainWallet;
use crate::relay::HookOutcome;
use crate::sender::{AfterFailure, ReceivedInvoice, TrampolineRetries};

/// What happened on a node, for callers that wait on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
	/// The funding transaction of a channel was broadcast.
	ChannelPending {
		/// The channel.
		channel_id: ChannelId,
		/// The id given when opening it.
		user_channel_id: u128,
		/// The peer.
		counterparty: PublicKey,
	},
	/// A channel can carry payments.
	ChannelReady {
		/// The channel.
		channel_id: ChannelId,
		/// The id given when opening it.
		user_channel_id: u128,
		/// The peer.
		counterparty: PublicKey,
	},
	/// A channel closed (or failed to open).
	ChannelClosed {
		/// The channel.
		channel_id: ChannelId,
		/// The id given when opening it.
		user_channel_id: u128,
		/// Why.
		reason: String,
	},
	/// We received a payment.
	PaymentReceived {
		/// The payment hash.
		payment_hash: PaymentHash,
		/// What we received.
		amount_msat: u64,
	},
	/// A payment we sent succeeded.
	PaymentSent {
		/// The payment.
		payment_id: PaymentId,
		/// The payment hash.
		payment_hash: PaymentHash,
		/// Routing fees paid.
		fee_msat: u64,
	},
	/// The invoice of an offer fetched with [`super::Node::fetch_offer_invoice`].
	InvoiceReceived {
		/// The invoice request.
		request: PaymentId,
		/// The invoice, checked by LDK against the offer and our request.
		invoice: Box<lightning::offers::invoice::Bolt12Invoice>,
	},
	/// The trampoline relay started holding a payment for an offline peer:
	/// wake it (the node also calls [`super::NodeConfig::wake_webhook`]).
	PaymentHeld {
		/// What is held, for whom, until when.
		held: crate::relay::HeldBucket,
	},
	/// Something happened to an HTLC held for an often-offline payer
	/// ([`super::NodeConfig::htlc_hold`]).
	HtlcHold {
		/// What.
		event: crate::htlc_hold::HoldEvent,
	},
	/// The static invoice server started keeping onion messages for an
	/// offline peer (the node also calls [`super::NodeConfig::wake_webhook`]).
	MessageHeld {
		/// The offline peer.
		peer: PublicKey,
	},
	/// A payment we sent failed for good.
	PaymentFailed {
		/// The payment.
		payment_id: PaymentId,
		/// Why.
		reason: String,
	},
	/// We forwarded a payment and earned a fee.
	PaymentForwarded {
		/// Our fee.
		fee_msat: u64,
		/// What we forwarded.
		outbound_msat: u64,
	},
}

/// The node's LDK event handler, run by the background processor.
pub(super) struct EventHandler {
	pub(super) channel_manager: Arc<ChannelManager>,
	pub(super) wallet: Arc<OnchainWallet>,
	pub(super) fee_estimator: Arc<FeeEstimator>,
	pub(super) sweeper: Arc<Sweeper>,
	/// Watches each new channel's funding output for its closing transaction.
	pub(super) closing: Arc<super::closing::ClosingTxids>,
	pub(super) peer_manager: Arc<PeerManager>,
	pub(super) payments: Arc<PaymentStore>,
	pub(super) forwards: Arc<ForwardStore>,
	pub(super) plugin: Arc<Plugin>,
	pub(super) trampoline_retries: Arc<TrampolineRetries>,
	pub(super) onion_messenger: Arc<OnionMessenger>,
	pub(super) events: broadcast::Sender<NodeEvent>,
	pub(super) logger: Arc<NodeLogger>,
	pub(super) runtime: tokio::runtime::Handle,
	pub(super) outgoing: Arc<super::outgoing::OutgoingParts>,
}

impl EventHandler {
	fn publish(&self, event: NodeEvent) {
		// No subscriber is fine.
		let _ = self.events.send(event);
	}

	/// Adds a plain forward to the history (written before it is listed; a
	/// failed write is logged: the history is informational).
	fn record_forward(&self, forward: NewForward) {
		if let Err(e) = self.forwards.record(forward) {
			log_error!(self.logger, "Cannot record a forward: {e}");
		}
	}

	/// Records an outbound payment as failed for good and tells subscribers.
	fn fail_payment(&self, payment_id: PaymentId, reason: String) {
		self.payments
			.update(payment_id, |p| p.status = PaymentStatus::Failed { reason: reason.clone() });
		self.publish(NodeEvent::PaymentFailed { payment_id, reason });
	}

	fn handle(&self, event: Event) -> Result<(), ReplayEvent> {
		match self.plugin.handle_event(&event, &self.onion_messenger) {
			HookOutcome::NotOurs => {},
			HookOutcome::Handled => return Ok(()),
			HookOutcome::Replay => return Err(ReplayEvent()),
		}
		match event {
			Event::FundingGenerationReady {
				temporary_channel_id,
				counterparty_node_id,
				channel_value_satoshis,
				output_script,
				..
			} => {
				let funding = self.wallet.create_signed_transaction(
					output_script,
					Amount::from_sat(channel_value_satoshis),
					self.fee_estimator.funding_fee_rate(),
				);
				let result = funding.map_err(|e| e.to_string()).and_then(|tx| {
					self.channel_manager
						.funding_transaction_generated(
							temporary_channel_id,
							counterparty_node_id,
							tx,
						)
						.map_err(|e| format!("{e:?}"))
				});
				if let Err(e) = result {
					log_error!(self.logger, "Cannot fund channel {temporary_channel_id}: {e}");
					let _ = self.channel_manager.force_close_broadcasting_latest_txn(
						&temporary_channel_id,
						&counterparty_node_id,
						format!("funding failed: {e}"),
					);
				}
			},
			Event::PaymentClaimable { payment_hash, purpose, amount_msat, .. } => {
				match purpose.preimage() {
					Some(preimage) => self.channel_manager.claim_funds(preimage),
					None => {
						log_error!(self.logger, "No preimage for claimable payment {payment_hash}");
						self.channel_manager.fail_htlc_backwards(&payment_hash);
					},
				}
				log_info!(self.logger, "Claiming {amount_msat} msat for {payment_hash}");
			},
			Event::PaymentClaimed { payment_hash, amount_msat, purpose, payment_id, .. } => {
				let id = payment_id.unwrap_or(PaymentId(payment_hash.0));
				let preimage = purpose.preimage();
				let is_offer = matches!(purpose, PaymentPurpose::Bolt12OfferPayment { .. });
				self.payments.upsert_inbound(id, payment_hash, amount_msat, preimage, is_offer);
				self.publish(NodeEvent::PaymentReceived { payment_hash, amount_msat });
			},
			Event::PaymentSent {
				payment_id,
				payment_hash,
				payment_preimage,
				fee_paid_msat,
				amount_msat,
				..
			} => {
				let attempt = payment_id.unwrap_or(PaymentId(payment_hash.0));
				let id = self.trampoline_retries.on_sent(&attempt);
				let fee_msat = fee_paid_msat.unwrap_or(0);
				self.payments.update(id, |p| {
					p.payment_hash = Some(payment_hash.to_string());
					p.preimage = Some(payment_preimage.to_string());
					p.fee_msat = Some(fee_msat);
					if amount_msat.is_some() {
						p.amount_msat = amount_msat;
					}
					p.status = PaymentStatus::Succeeded;
				});
				self.publish(NodeEvent::PaymentSent { payment_id: id, payment_hash, fee_msat });
			},
			Event::InvoiceReceived { payment_id, invoice, context, .. } => {
				match self.trampoline_retries.on_invoice(
					&*self.channel_manager,
					self.plugin.sender(),
					payment_id,
					&invoice,
				) {
					ReceivedInvoice::NotOurs => {
						if let Err(e) = self
							.channel_manager
							.send_payment_for_bolt12_invoice(&invoice, context.as_ref())
						{
							// LDK reports the failure as PaymentFailed.
							log_error!(
								self.logger,
								"Cannot pay BOLT 12 invoice for {payment_id}: {e:?}"
							);
						}
						return Ok(());
					},
					ReceivedInvoice::Paying => {},
					ReceivedInvoice::HandBack => {
						self.publish(NodeEvent::InvoiceReceived {
							request: payment_id,
							invoice: Box::new(invoice),
						});
					},
					ReceivedInvoice::Failed(e) => {
						log_error!(
							self.logger,
							"Cannot pay offer {payment_id} via trampolines: {e}"
						);
						self.fail_payment(
							payment_id,
							format!("cannot pay the invoice via trampolines: {e}"),
						);
					},
				}
				// Not paid by LDK: its PaymentFailed (UserAbandoned) is
				// known as superseded.
				self.channel_manager.abandon_payment(payment_id);
			},
			Event::PaymentFailed { payment_id, reason, .. } => {
				let mut reason =
					reason.map(|r| format!("{r:?}")).unwrap_or_else(|| "unknown".into());
				let payment_id = match self.trampoline_retries.on_failed(
					&*self.channel_manager,
					self.plugin.sender(),
					&payment_id,
				) {
					AfterFailure::NotOurs => payment_id,
					AfterFailure::Superseded => return Ok(()),
					AfterFailure::Retried { payment_id, route } => {
						log_info!(self.logger, "Retrying {payment_id} through {route:?}");
						return Ok(());
					},
					AfterFailure::Failed { payment_id: first, why } => {
						if let Some(failure) = self.plugin.sender().failure_of(&payment_id) {
							reason = format!("{reason}: {failure:?}, not retried: {why}");
						}
						first
					},
				};
				self.fail_payment(payment_id, reason);
			},
			Event::PaymentForwarded {
				prev_channel_id,
				next_channel_id,
				next_node_id,
				total_fee_earned_msat,
				outbound_amount_forwarded_msat,
				..
			} => {
				// What came in is what went out plus our fee (LDK's own terms).
				let in_msat = outbound_amount_forwarded_msat
					.zip(total_fee_earned_msat)
					.and_then(|(out, fee)| out.checked_add(fee));
				self.record_forward(NewForward {
					kind: ForwardKind::Channel,
					payment_hash: None,
					in_msat,
					out_msat: outbound_amount_forwarded_msat,
					incoming_channel_ids: prev_channel_id.iter().map(|c| c.to_string()).collect(),
					outgoing_channel_id: next_channel_id.map(|c| c.to_string()),
					next_node: next_node_id.map(|n| n.to_string()),
					dialect: None,
					started_at_ms: None,
					outcome: ForwardOutcome::Succeeded,
				});
				self.publish(NodeEvent::PaymentForwarded {
					fee_msat: total_fee_earned_msat.unwrap_or(0),
					outbound_msat: outbound_amount_forwarded_msat.unwrap_or(0),
				});
			},
			Event::HTLCHandlingFailed {
				prev_channel_id,
				failure_type: HTLCHandlingFailureType::Forward { node_id, channel_id },
				failure_reason,
			} => {
				let reason = failure_reason
					.map(|r| format!("{r:?}"))
					.unwrap_or_else(|| "unknown (LDK gave no reason)".into());
				self.record_forward(NewForward {
					kind: ForwardKind::Channel,
					payment_hash: None,
					in_msat: None,
					out_msat: None,
					incoming_channel_ids: vec![prev_channel_id.to_string()],
					outgoing_channel_id: Some(channel_id.to_string()),
					next_node: node_id.map(|n| n.to_string()),
					dialect: None,
					started_at_ms: None,
					outcome: ForwardOutcome::Failed { reason },
				});
			},
			Event::HTLCHandlingFailed { .. } => {},
			Event::ChannelPending {
				channel_id,
				user_channel_id,
				counterparty_node_id,
				funding_txo,
				..
			} => {
				self.closing.watch_funding(funding_txo, channel_id);
				self.publish(NodeEvent::ChannelPending {
					channel_id,
					user_channel_id,
					counterparty: counterparty_node_id,
				});
			},
			Event::ChannelReady { channel_id, user_channel_id, counterparty_node_id, .. } => {
				self.publish(NodeEvent::ChannelReady {
					channel_id,
					user_channel_id,
					counterparty: counterparty_node_id,
				});
			},
			Event::ChannelClosed { channel_id, user_channel_id, reason, .. } => {
				log_info!(self.logger, "Channel {channel_id} closed: {reason}");
				self.publish(NodeEvent::ChannelClosed {
					channel_id,
					user_channel_id,
					reason: reason.to_string(),
				});
			},
			Event::SpendableOutputs { outputs, channel_id } => {
				if self.sweeper.track_spendable_outputs(outputs, channel_id, false, None).is_err() {
					log_error!(self.logger, "Cannot persist spendable outputs; will retry");
					return Err(ReplayEvent());
				}
			},
			Event::ConnectionNeeded { node_id, addresses } => {
				let peer_manager = Arc::clone(&self.peer_manager);
				self.runtime.spawn(async move {
					for address in addresses {
						let Some(addr) = super::peers::to_socket_addr(&address) else {
							continue;
						};
						if super::peers::connect(&peer_manager, node_id, addr).await.is_ok() {
							break;
						}
					}
				});
			},
			Event::PaymentPathSuccessful { .. }
			| Event::PaymentPathFailed { .. }
			| Event::ProbeSuccessful { .. }
			| Event::ProbeFailed { .. }
			| Event::DiscardFunding { .. }
			| Event::FundingTxBroadcastSafe { .. } => {},
			other => log_info!(self.logger, "Unhandled event: {other:?}"),
		}
		Ok(())
	}
}

impl lightning::events::EventHandler for EventHandler {
	fn handle_event(&self, event: Event) -> Result<(), ReplayEvent> {
		// The parts of outgoing payments, noted once the event is handled
		// (a replayed event is seen again, not twice).
		let after = matches!(
			&event,
			Event::PaymentPathFailed { .. }
				| Event::PaymentPathSuccessful { .. }
				| Event::PaymentSent { .. }
				| Event::PaymentFailed { .. }
		)
		.then(|| event.clone());
		let trampoline_failure = match &event {
			Event::PaymentPathFailed { payment_id: Some(id), .. } => {
				self.plugin.sender().failure_of(id)
			},
			_ => None,
		};
		self.handle(event)?;
		if let Some(event) = after {
			self.outgoing.observe(&event, trampoline_failure);
			// Handled (by the relay or the wallet): the sender keeps live
			// payments only.
			self.plugin.event_handled(&event);
		}
		Ok(())
	}
}
