//! The plugin's event hook: each LDK event goes to the part of the plugin it
//! belongs to (the relay, the static invoice server, the onion message
//! mailbox), the others to the node's own handler.

use std::ops::Deref;
use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use lightning::events::{Event, ReplayEvent};
use lightning::ln::channelmanager::AChannelManager;
use lightning::log_info;
use lightning::onion_message::messenger::AOnionMessenger;

use super::wake::WakeKind;
use super::{Plugin, PluginEvent};
use crate::relay::HookOutcome;
use crate::static_invoices::HookOutcome as StaticInvoiceOutcome;

impl<CM: Deref + Clone> Plugin<CM>
where
	CM::Target: AChannelManager,
{
	/// Hands `event` to the part of the plugin it belongs to: `Handled` if
	/// one consumed it (the node must not act on it), `Replay` if the
	/// plugin could not persist its state (return `Err(ReplayEvent())` to
	/// LDK), `NotOurs` for the node to handle. Call
	/// [`Self::event_handled`] once the node has handled it.
	/// [`Self::event_handler`] does both around the node's handler.
	pub fn handle_event<OM: Deref>(&self, event: &Event, messenger: &OM) -> HookOutcome
	where
		OM::Target: AOnionMessenger,
	{
		if let Some(relay) = self.relay() {
			let outcome = relay.handle_event(event);
			if outcome != HookOutcome::NotOurs {
				return outcome;
			}
		}
		let Some(server) = &self.static_invoices else {
			return HookOutcome::NotOurs;
		};
		if server.handle_event(event) == StaticInvoiceOutcome::Handled {
			return HookOutcome::Handled;
		}
		match event {
			Event::OnionMessageIntercepted { peer_node_id, message } => {
				// Only generated with offline-peer interception: keep it
				// until the peer connects.
				match server.hold_message(*peer_node_id, message.clone()) {
					Ok(held) => self.announce_message_held(*peer_node_id, held.first),
					Err(e) => log_info!(
						self.logger,
						"Not keeping an onion message for offline {peer_node_id}: {e}"
					),
				}
				HookOutcome::Handled
			},
			Event::OnionMessagePeerConnected { peer_node_id } => {
				for message in server.mailbox().take(peer_node_id) {
					if let Err(e) = messenger.get_om().forward_onion_message(message, peer_node_id)
					{
						log_info!(
							self.logger,
							"Cannot forward a held onion message to {peer_node_id}: {e:?}"
						);
					}
				}
				HookOutcome::Handled
			},
			_ => HookOutcome::NotOurs,
		}
	}

	/// After the node handled `event` (or the plugin did): the sender
	/// forgets a payment that ended, so that it keeps live payments only.
	pub fn event_handled(&self, event: &Event) {
		self.sender().forget_ended_payment(event);
	}

	/// Tells the node (for the peer's first held message) and the wake-up
	/// webhook (gated per peer) that messages wait for offline `peer`.
	fn announce_message_held(&self, peer: PublicKey, first: bool) {
		if first {
			log_info!(self.logger, "Keeping onion messages for offline peer {peer}");
			self.events.tell(PluginEvent::MessageHeld { peer });
		}
		if let Some((wake, runtime)) = &self.wake {
			wake.wake(WakeKind::OnionMessageIncoming, &peer.to_string(), runtime, &self.logger);
		}
	}
}

/// The node's event handler behind the plugin's ([`Plugin::event_handler`]):
/// give it to the `BackgroundProcessor`.
pub struct PluginEventHandler<CM: Deref + Clone, OM: Deref, H>
where
	CM::Target: AChannelManager,
	OM::Target: AOnionMessenger,
{
	plugin: Arc<Plugin<CM>>,
	messenger: OM,
	inner: H,
}

impl<CM: Deref + Clone, OM: Deref, H> PluginEventHandler<CM, OM, H>
where
	CM::Target: AChannelManager,
	OM::Target: AOnionMessenger,
{
	pub(super) fn new(plugin: Arc<Plugin<CM>>, messenger: OM, inner: H) -> Self {
		Self { plugin, messenger, inner }
	}
}

impl<CM: Deref + Clone, OM: Deref, H> lightning::events::EventHandler
	for PluginEventHandler<CM, OM, H>
where
	CM::Target: AChannelManager,
	OM::Target: AOnionMessenger,
	H: lightning::events::EventHandler,
{
	fn handle_event(&self, event: Event) -> Result<(), ReplayEvent> {
		match self.plugin.handle_event(&event, &self.messenger) {
			HookOutcome::Handled => {},
			HookOutcome::Replay => return Err(ReplayEvent()),
			HookOutcome::NotOurs => {
				// The inner handler takes the event: what it ended is read first.
				let ended = crate::sender::ended_payment(&event);
				self.inner.handle_event(event)?;
				if let Some(payment_id) = ended {
					self.plugin.sender().forget_payment(&payment_id);
				}
			},
		}
		Ok(())
	}
}
