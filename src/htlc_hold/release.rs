//! [`HoldReleaseHandler`]: the async payments message handler a node gives
//! its `OnionMessenger` instead of its `ChannelManager`, so that a
//! `release_held_htlc` reaches LDK only for an HTLC the registry holds.

use std::ops::Deref;
use std::sync::Arc;

use lightning::blinded_path::message::AsyncPaymentsContext;
use lightning::ln::channelmanager::AChannelManager;
use lightning::log_info;
use lightning::onion_message::async_payments::{
	AsyncPaymentsMessage, AsyncPaymentsMessageHandler, HeldHtlcAvailable, OfferPaths,
	OfferPathsRequest, ReleaseHeldHtlc, ServeStaticInvoice, StaticInvoicePersisted,
};
use lightning::onion_message::messenger::{
	MessageSendInstructions, Responder, ResponseInstruction,
};

use super::HtlcHold;

/// Delegates every async payments message to the channel manager, except a
/// `release_held_htlc` for an HTLC that is not held (unknown, replayed,
/// refused, or past its deadline), which it drops with a log line. Without a hold (the
/// role is off) it is a pure pass-through.
pub struct HoldReleaseHandler<CM: Deref>
where
	CM::Target: AChannelManager,
{
	cm: CM,
	hold: Option<Arc<HtlcHold>>,
}

impl<CM: Deref> HoldReleaseHandler<CM>
where
	CM::Target: AChannelManager,
{
	/// Wraps `cm`'s handler, filtering releases through `hold`.
	pub fn new(cm: CM, hold: Option<Arc<HtlcHold>>) -> Self {
		Self { cm, hold }
	}
}

impl<CM: Deref> AsyncPaymentsMessageHandler for HoldReleaseHandler<CM>
where
	CM::Target: AChannelManager,
{
	fn handle_offer_paths_request(
		&self, message: OfferPathsRequest, context: AsyncPaymentsContext,
		responder: Option<Responder>,
	) -> Option<(OfferPaths, ResponseInstruction)> {
		self.cm.get_cm().handle_offer_paths_request(message, context, responder)
	}

	fn handle_offer_paths(
		&self, message: OfferPaths, context: AsyncPaymentsContext, responder: Option<Responder>,
	) -> Option<(ServeStaticInvoice, ResponseInstruction)> {
		self.cm.get_cm().handle_offer_paths(message, context, responder)
	}

	fn handle_serve_static_invoice(
		&self, message: ServeStaticInvoice, context: AsyncPaymentsContext,
		responder: Option<Responder>,
	) {
		self.cm.get_cm().handle_serve_static_invoice(message, context, responder)
	}

	fn handle_static_invoice_persisted(
		&self, message: StaticInvoicePersisted, context: AsyncPaymentsContext,
	) {
		self.cm.get_cm().handle_static_invoice_persisted(message, context)
	}

	fn handle_held_htlc_available(
		&self, message: HeldHtlcAvailable, context: AsyncPaymentsContext,
		responder: Option<Responder>,
	) -> Option<(ReleaseHeldHtlc, ResponseInstruction)> {
		self.cm.get_cm().handle_held_htlc_available(message, context, responder)
	}

	fn handle_release_held_htlc(&self, message: ReleaseHeldHtlc, context: AsyncPaymentsContext) {
		if let (
			Some(hold),
			AsyncPaymentsContext::ReleaseHeldHtlc {
				intercept_id,
				prev_outbound_scid_alias,
				htlc_id,
			},
		) = (&self.hold, &context)
		{
			let height = self.cm.get_cm().current_best_block().height;
			if let Err(why) =
				hold.on_release(intercept_id, *htlc_id, *prev_outbound_scid_alias, height)
			{
				log_info!(hold.logger, "Ignoring release_held_htlc for HTLC {htlc_id}: {why}");
				return;
			}
		}
		self.cm.get_cm().handle_release_held_htlc(message, context)
	}

	fn release_pending_messages(&self) -> Vec<(AsyncPaymentsMessage, MessageSendInstructions)> {
		AsyncPaymentsMessageHandler::release_pending_messages(self.cm.get_cm())
	}
}
