//! The event hook: store the invoices recipients send, serve them to payers.

use std::ops::Deref;

use lightning::blinded_path::message::BlindedMessagePath;
use lightning::blinded_path::IntroductionNode;
use lightning::events::Event;
use lightning::ln::channelmanager::AChannelManager;
use lightning::onion_message::messenger::Responder;
use lightning::util::ser::{BigSize, Readable, Writeable};
use lightning::{log_error, log_info};

use super::{hex_id, unix_now, StaticInvoiceError, StaticInvoiceServer};

/// What [`StaticInvoiceServer::handle_event`] did with an event. There is
/// no "replay": LDK replays a refused event before any later one, so an
/// error that lasts (a corrupt record, a failing disk) would stop every
/// later event of the node. Store errors are answered as failures instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome {
	/// Not a static invoice event: the node handles it as usual.
	NotOurs,
	/// The server consumed it (including refusals and store errors, which
	/// are logged and counted).
	Handled,
}

/// The rate-limiting key of a request's reply path: its introduction node
/// (node id, or direction and short channel id), empty when the path does
/// not decode. LDK's `Responder` keeps its path private, so it is read
/// back from the responder's encoding (a TLV stream whose type 0 is the
/// path).
pub fn requester_key(reply_path: &Responder) -> Vec<u8> {
	let path = reply_path_of(&reply_path.encode());
	match path.as_ref().map(BlindedMessagePath::introduction_node) {
		Some(IntroductionNode::NodeId(id)) => id.serialize().to_vec(),
		Some(IntroductionNode::DirectedShortChannelId(direction, scid)) => {
			let mut key = vec![*direction as u8];
			key.extend_from_slice(&scid.to_be_bytes());
			key
		},
		None => Vec::new(),
	}
}

/// The path of an encoded `Responder`: stream length, then TLV type 0.
fn reply_path_of(mut r: &[u8]) -> Option<BlindedMessagePath> {
	let _stream_len: BigSize = Readable::read(&mut r).ok()?;
	let tlv_type: BigSize = Readable::read(&mut r).ok()?;
	let _tlv_len: BigSize = Readable::read(&mut r).ok()?;
	(tlv_type.0 == 0).then_some(())?;
	BlindedMessagePath::read(&mut r).ok()
}

impl<CM: Deref> StaticInvoiceServer<CM>
where
	CM::Target: AChannelManager,
{
	/// Handles `Event::PersistStaticInvoice` (validate, store, then confirm
	/// with `static_invoice_persisted`; a refusal or a store error sends no
	/// confirmation, and the recipient sends the invoice again when it next
	/// refreshes) and `Event::StaticInvoiceRequested` (look up, then
	/// `respond_to_static_invoice_request`; nothing is sent for an unknown,
	/// expired, rate-limited or unreadable invoice).
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
					// Refused (or failed to store), logged and counted by `persist`:
					// the recipient gets no confirmation.
					Err(_) => HookOutcome::Handled,
				}
			},
			Event::StaticInvoiceRequested {
				recipient_id,
				invoice_slot,
				reply_path,
				invoice_request,
			} => {
				let requester = requester_key(reply_path);
				let record = match self.core.lookup(recipient_id, *invoice_slot, &requester, now) {
					Ok(record) => record,
					Err(StaticInvoiceError::Store(e)) => {
						log_error!(
							self.core.logger,
							"Static invoice server: not answering a request for recipient {} slot {invoice_slot}: {e}",
							hex_id(recipient_id)
						);
						return HookOutcome::Handled;
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
