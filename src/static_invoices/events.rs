//! The event hook: store the invoices recipients send, serve them to payers.

use std::ops::Deref;

use lightning::events::Event;
use lightning::ln::channelmanager::AChannelManager;
use lightning::{log_error, log_info};

use super::{hex_id, unix_now, StaticInvoiceError, StaticInvoiceServer};

/// What [`StaticInvoiceServer::handle_event`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome {
	/// Not a static invoice event: the node handles it as usual.
	NotOurs,
	/// The server consumed it (including refusals, which are logged).
	Handled,
	/// The store failed: hand the event back to LDK for replay
	/// (`Err(ReplayEvent())`).
	Replay,
}

impl<CM: Deref> StaticInvoiceServer<CM>
where
	CM::Target: AChannelManager,
{
	/// Handles `Event::PersistStaticInvoice` (validate, store, then confirm
	/// with `static_invoice_persisted`) and `Event::StaticInvoiceRequested`
	/// (look up, then `respond_to_static_invoice_request`; nothing is sent
	/// for an unknown, expired or rate-limited request).
	pub fn handle_event(&self, event: &Event) -> HookOutcome {
		let now = unix_now();
		match event {
			Event::PersistStaticInvoice {
				invoice,
				invoice_request_path,
				invoice_slot,
				recipient_id,
				invoice_persisted_path,
			} => {
				match self.core.persist(
					invoice.clone(),
					invoice_request_path.clone(),
					*invoice_slot,
					recipient_id.clone(),
					now,
				) {
					Ok(()) => {
						log_info!(
							self.core.logger,
							"Static invoice server: stored invoice for recipient {} slot {invoice_slot}",
							hex_id(recipient_id)
						);
						self.cm.get_cm().static_invoice_persisted(invoice_persisted_path.clone());
						HookOutcome::Handled
					},
					Err(StaticInvoiceError::Store(e)) => {
						log_error!(self.core.logger, "Static invoice server: {e}; will retry");
						HookOutcome::Replay
					},
					// Refused and logged by `persist`; the recipient gets no confirmation.
					Err(_) => HookOutcome::Handled,
				}
			},
			Event::StaticInvoiceRequested {
				recipient_id,
				invoice_slot,
				reply_path,
				invoice_request,
			} => {
				let record = match self.core.lookup(recipient_id, *invoice_slot, now) {
					Ok(record) => record,
					Err(StaticInvoiceError::Store(e)) => {
						log_error!(self.core.logger, "Static invoice server: {e}; will retry");
						return HookOutcome::Replay;
					},
					Err(e) => {
						log_info!(
							self.core.logger,
							"Static invoice server: not answering a request for recipient {} slot {invoice_slot}: {e}",
							hex_id(recipient_id)
						);
						return HookOutcome::Handled;
					},
				};
				match self.cm.get_cm().respond_to_static_invoice_request(
					record.invoice,
					reply_path.clone(),
					invoice_request.clone(),
					record.invoice_request_path,
				) {
					Ok(()) => {
						self.core.count_served();
						log_info!(
							self.core.logger,
							"Static invoice server: served the invoice of recipient {} slot {invoice_slot}",
							hex_id(recipient_id)
						);
					},
					Err(e) => log_error!(
						self.core.logger,
						"Static invoice server: cannot send the invoice of recipient {}: {e:?}",
						hex_id(recipient_id)
					),
				}
				HookOutcome::Handled
			},
			_ => HookOutcome::NotOurs,
		}
	}
}
