//! [`TrampolineHandler`]: the `ChannelMessageHandler` a node gives its
//! `PeerManager` instead of its `ChannelManager`. It delegates every message
//! unchanged except two:
//!
//! * inbound `update_add_htlc` carrying a trampoline *forward* ([`rewrite`]):
//!   recorded, then handed to LDK as a plain receive to ourselves so that LDK
//!   aggregates the bucket and emits `PaymentClaimable`;
//! * outbound `update_fail_htlc` for such an HTLC ([`fail`]): LDK's failure is
//!   replaced by the error the origin must see, wrapped with the trampoline then
//!   the outer shared secret.
//!
//! It also shows the hold registry ([`crate::htlc_hold`]) every inbound
//! `update_add_htlc` flagged `hold_htlc`, before LDK does, and gives a held
//! HTLC it fails back the failure it chose instead of LDK's.

pub mod arrivals;
mod fail;
#[cfg(test)]
mod reused_htlc_ids;
mod rewrite;
#[cfg(test)]
mod tests;

use std::ops::Deref;
use std::sync::Arc;

use bitcoin::constants::ChainHash;
use bitcoin::secp256k1::PublicKey;
use lightning::ln::channelmanager::{AChannelManager, MIN_CLTV_EXPIRY_DELTA};
use lightning::ln::msgs::{self, BaseMessageHandler, ChannelMessageHandler, MessageSendEvent};
use lightning::ln::types::ChannelId;
use lightning::types::features::{InitFeatures, NodeFeatures};

use crate::htlc_hold::HtlcHold;
use crate::relay::dialect::{with_feature_bit, LEGACY_TRAMPOLINE_FEATURE_BIT};
use crate::relay::{RelayCore, TrampolinePolicy};
use crate::sender::SenderState;
use arrivals::HtlcArrivals;

pub(crate) use fail::reason_of;
pub use rewrite::InboundNode;

/// The inbound rewrite `TrampolineHandler::handle_update_add_htlc` runs,
/// callable without a live channel manager (for benchmarks): the message to
/// hand LDK instead of `msg`, or `None` to pass `msg` through.
#[doc(hidden)]
pub fn rewrite_update_add<N: InboundNode + ?Sized>(
	core: &RelayCore, node: &N, peer: &PublicKey, msg: &msgs::UpdateAddHTLC,
) -> Option<msgs::UpdateAddHTLC> {
	rewrite::rewrite_add(core, node, peer, msg)
}

/// The wrapped message handler. With no relay core (trampoline disabled) it is
/// a pure pass-through.
pub struct TrampolineHandler<CM: Deref>
where
	CM::Target: AChannelManager,
{
	cm: CM,
	core: Option<Arc<RelayCore>>,
	sender: Option<Arc<SenderState>>,
	hold: Option<Arc<HtlcHold>>,
	arrivals: Option<Arc<HtlcArrivals>>,
}

impl<CM: Deref> TrampolineHandler<CM>
where
	CM::Target: AChannelManager,
{
	/// Wraps `cm`. `core: None` passes relay traffic through untouched;
	/// `sender` lets the wallet read its trampoline payments' failures;
	/// `hold` records the HTLCs payers ask us to hold.
	pub fn new(
		cm: CM, core: Option<Arc<RelayCore>>, sender: Option<Arc<SenderState>>,
		hold: Option<Arc<HtlcHold>>,
	) -> Self {
		Self { cm, core, sender, hold, arrivals: None }
	}

	/// Notes in `arrivals` when every inbound HTLC arrived and the total a
	/// final payload announced (for the listing of partial payments, see
	/// [`HtlcArrivals`]).
	pub fn with_arrivals(mut self, arrivals: Arc<HtlcArrivals>) -> Self {
		self.arrivals = Some(arrivals);
		self
	}
}

impl<CM: Deref> TrampolineHandler<CM>
where
	CM::Target: AChannelManager,
{
	/// Shows `hold` an add flagged `hold_htlc`, on a channel we have with
	/// `peer` (LDK rejects the others; recording them would let any peer
	/// fill the registry), with whether the channel already lists an HTLC
	/// with its id. Whether `hold` saw it (then it must hear
	/// [`HtlcHold::add_handled`] once LDK has handled it).
	fn record_hold(&self, hold: &HtlcHold, peer: PublicKey, msg: &msgs::UpdateAddHTLC) -> bool {
		let cm = self.cm.get_cm();
		let Some(channel) = cm
			.list_channels_with_counterparty(&peer)
			.into_iter()
			.find(|c| c.channel_id == msg.channel_id)
		else {
			return false;
		};
		let delta = channel.config.map_or(MIN_CLTV_EXPIRY_DELTA, |c| c.cltv_expiry_delta);
		let listed = channel.pending_inbound_htlcs.iter().any(|h| h.htlc_id == msg.htlc_id);
		hold.on_add(peer, msg, cm.current_best_block().height, delta, listed);
		true
	}
}

/// `le_flags` (LDK's features, least significant byte first) with what a
/// relay running `policy` advertises: `trampoline_routing` (optional, bit
/// 57) and, with [`TrampolinePolicy::advertise_legacy_feature_bit`],
/// Electrum's bit 151; unchanged without a relay (`None`).
pub fn with_trampoline_bits(le_flags: &[u8], policy: Option<&TrampolinePolicy>) -> Vec<u8> {
	let Some(policy) = policy else { return le_flags.to_vec() };
	let flags = with_feature_bit(le_flags, SPEC_TRAMPOLINE_FEATURE_BIT);
	if policy.advertise_legacy_feature_bit {
		with_feature_bit(&flags, LEGACY_TRAMPOLINE_FEATURE_BIT)
	} else {
		flags
	}
}

/// `trampoline_routing`, optional (BOLT 9 / the trampoline branch).
const SPEC_TRAMPOLINE_FEATURE_BIT: usize = 57;

macro_rules! delegate {
	($($name:ident($($arg:ident: $ty:ty),*);)*) => {
		$(fn $name(&self, their_node_id: PublicKey, $($arg: $ty),*) {
			self.cm.get_cm().$name(their_node_id, $($arg),*)
		})*
	};
}

impl<CM: Deref> BaseMessageHandler for TrampolineHandler<CM>
where
	CM::Target: AChannelManager,
{
	fn get_and_clear_pending_msg_events(&self) -> Vec<MessageSendEvent> {
		let mut events = self.cm.get_cm().get_and_clear_pending_msg_events();
		for event in &mut events {
			if let MessageSendEvent::UpdateHTLCs { node_id, updates, .. } = event {
				if let Some(core) = &self.core {
					for fail in &mut updates.update_fail_htlcs {
						fail::rewrite_fail(core, fail);
					}
					for fulfill in &updates.update_fulfill_htlcs {
						core.htlc_resolved(&fulfill.channel_id, fulfill.htlc_id);
					}
					for malformed in &updates.update_fail_malformed_htlcs {
						core.htlc_resolved(&malformed.channel_id, malformed.htlc_id);
					}
				}
				if let Some(hold) = &self.hold {
					for fail in &mut updates.update_fail_htlcs {
						let packet = hold.failure_packet(&fail.channel_id, fail.htlc_id);
						if let Some(rewritten) = packet.and_then(|p| fail::with_reason(fail, &p)) {
							*fail = rewritten;
						}
					}
				}
				if let Some(sender) = &self.sender {
					let cm = self.cm.get_cm();
					let height = cm.current_best_block().height;
					let peer = *node_id;
					for add in &mut updates.update_add_htlcs {
						let scids = |channel_id: &ChannelId| {
							cm.list_channels_with_counterparty(&peer)
								.into_iter()
								.filter(|c| c.channel_id == *channel_id)
								.flat_map(|c| [c.short_channel_id, c.outbound_scid_alias])
								.flatten()
								.collect()
						};
						sender.rewrite_add(&peer, add, scids, height);
						sender.tamper_add(&peer, add);
					}
				}
			}
		}
		events
	}

	fn peer_disconnected(&self, their_node_id: PublicKey) {
		if let Some(core) = &self.core {
			core.set_connected(their_node_id, false);
		}
		self.cm.get_cm().peer_disconnected(their_node_id)
	}

	/// LDK's, plus the relay's trampoline bits ([`with_trampoline_bits`]).
	/// `PeerManager` puts these in our node announcement.
	fn provided_node_features(&self) -> NodeFeatures {
		let features = self.cm.get_cm().provided_node_features();
		let policy = self.core.as_ref().map(|core| &core.policy);
		NodeFeatures::from_le_bytes(with_trampoline_bits(features.le_flags(), policy))
	}

	/// LDK's, plus the relay's trampoline bits ([`with_trampoline_bits`]):
	/// Electrum opens a trampoline channel, and sends through it, only to a
	/// peer whose `init` sets 149 or 151.
	fn provided_init_features(&self, their_node_id: PublicKey) -> InitFeatures {
		let features = self.cm.get_cm().provided_init_features(their_node_id);
		let policy = self.core.as_ref().map(|core| &core.policy);
		InitFeatures::from_le_bytes(with_trampoline_bits(features.le_flags(), policy))
	}

	fn peer_connected(
		&self, their_node_id: PublicKey, msg: &msgs::Init, inbound: bool,
	) -> Result<(), ()> {
		let connected = self.cm.get_cm().peer_connected(their_node_id, msg, inbound);
		if let (Some(core), Ok(())) = (&self.core, connected) {
			core.set_connected(their_node_id, true);
		}
		connected
	}
}

impl<CM: Deref> ChannelMessageHandler for TrampolineHandler<CM>
where
	CM::Target: AChannelManager,
{
	fn handle_update_add_htlc(&self, their_node_id: PublicKey, msg: &msgs::UpdateAddHTLC) {
		let inbound = self
			.core
			.as_ref()
			.map(|core| rewrite::inspect_add(core, &*self.cm, &their_node_id, msg))
			.unwrap_or_default();
		if let Some(arrivals) = &self.arrivals {
			arrivals.note(their_node_id, msg.channel_id, msg.htlc_id, inbound.announced_total_msat);
		}
		let rewritten = inbound.rewritten;
		// A trampoline HTLC the relay rewrote is a receive for LDK: not held.
		let hold = match (&self.hold, msg.hold_htlc, &rewritten) {
			(Some(hold), Some(()), None) => {
				self.record_hold(hold, their_node_id, msg).then_some(hold)
			},
			_ => None,
		};
		match rewritten {
			Some(rewritten) => self.cm.get_cm().handle_update_add_htlc(their_node_id, &rewritten),
			None => self.cm.get_cm().handle_update_add_htlc(their_node_id, msg),
		}
		if let Some(hold) = hold {
			hold.add_handled(&their_node_id, msg);
		}
	}

	fn handle_update_fail_htlc(&self, their_node_id: PublicKey, msg: &msgs::UpdateFailHTLC) {
		if let Some(sender) = &self.sender {
			sender.on_fail(msg);
		}
		self.cm.get_cm().handle_update_fail_htlc(their_node_id, msg)
	}

	delegate! {
		handle_open_channel(msg: &msgs::OpenChannel);
		handle_open_channel_v2(msg: &msgs::OpenChannelV2);
		handle_accept_channel(msg: &msgs::AcceptChannel);
		handle_accept_channel_v2(msg: &msgs::AcceptChannelV2);
		handle_funding_created(msg: &msgs::FundingCreated);
		handle_funding_signed(msg: &msgs::FundingSigned);
		handle_channel_ready(msg: &msgs::ChannelReady);
		handle_peer_storage(msg: msgs::PeerStorage);
		handle_peer_storage_retrieval(msg: msgs::PeerStorageRetrieval);
		handle_shutdown(msg: &msgs::Shutdown);
		handle_closing_signed(msg: &msgs::ClosingSigned);
		handle_stfu(msg: &msgs::Stfu);
		handle_splice_init(msg: &msgs::SpliceInit);
		handle_splice_ack(msg: &msgs::SpliceAck);
		handle_splice_locked(msg: &msgs::SpliceLocked);
		handle_tx_add_input(msg: &msgs::TxAddInput);
		handle_tx_add_output(msg: &msgs::TxAddOutput);
		handle_tx_remove_input(msg: &msgs::TxRemoveInput);
		handle_tx_remove_output(msg: &msgs::TxRemoveOutput);
		handle_tx_complete(msg: &msgs::TxComplete);
		handle_tx_signatures(msg: &msgs::TxSignatures);
		handle_tx_init_rbf(msg: &msgs::TxInitRbf);
		handle_tx_ack_rbf(msg: &msgs::TxAckRbf);
		handle_tx_abort(msg: &msgs::TxAbort);
		handle_update_fulfill_htlc(msg: msgs::UpdateFulfillHTLC);
		handle_update_fail_malformed_htlc(msg: &msgs::UpdateFailMalformedHTLC);
		handle_commitment_signed(msg: &msgs::CommitmentSigned);
		handle_commitment_signed_batch(channel_id: ChannelId, batch: Vec<msgs::CommitmentSigned>);
		handle_revoke_and_ack(msg: &msgs::RevokeAndACK);
		handle_update_fee(msg: &msgs::UpdateFee);
		handle_announcement_signatures(msg: &msgs::AnnouncementSignatures);
		handle_channel_reestablish(msg: &msgs::ChannelReestablish);
		handle_channel_update(msg: &msgs::ChannelUpdate);
		handle_error(msg: &msgs::ErrorMessage);
	}

	fn get_chain_hashes(&self) -> Option<Vec<ChainHash>> {
		self.cm.get_cm().get_chain_hashes()
	}

	fn message_received(&self) {
		self.cm.get_cm().message_received()
	}
}
