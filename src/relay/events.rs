//! The event hook: relay a bucket once LDK reports it claimable, then claim or
//! fail it with the outcome of the outgoing payment.

use std::ops::Deref;

use bitcoin::secp256k1::PublicKey;

use lightning::blinded_path::payment::BlindedPaymentPath;
use lightning::blinded_path::IntroductionNode;
use lightning::events::{Event, PaymentFailureReason, PaymentPurpose};
use lightning::ln::channelmanager::{
	AChannelManager, FailureCode, PaymentId, RecipientOnionFields, Retry, RetryableSendFailure,
};
use lightning::routing::router::{PaymentParameters, RouteParameters};
use lightning::types::features::{Bolt11InvoiceFeatures, Bolt12InvoiceFeatures};
use lightning::types::payment::{PaymentHash, PaymentPreimage, PaymentSecret};
use lightning::{log_error, log_info};

use super::store::{BucketId, BucketRecord, BucketState};
use super::{TrampolineRelay, BUCKET_TLV_TYPE};
use crate::onion::{
	legacy_route_hints_to_ldk, FailureMessage, PaymentBlindedPath, TrampolineHop, TrampolinePayload,
};
use crate::sender::{send_to_trampoline, OuterSend, RelayedFailure, RouteShortfall, SenderError};

/// Blocks kept between a held bucket's deadline and the CLTV its next node
/// must receive: the recipient's final delta (BOLT 11's default 18) plus a
/// margin for blocks found while the payment is forwarded.
pub const HOLD_SAFETY_BLOCKS: u32 = 18 + 6;

/// The height at which a bucket held for an offline peer is failed back.
fn hold_deadline(outgoing_cltv_value: u32) -> u32 {
	outgoing_cltv_value.saturating_sub(HOLD_SAFETY_BLOCKS)
}

/// How many times LDK may retry the outgoing payment over other routes.
const OUTGOING_RETRY: Retry = Retry::Attempts(3);

/// What [`TrampolineRelay::handle_event`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome {
	/// Not a relay event: the node handles it as usual.
	NotOurs,
	/// The relay consumed it.
	Handled,
	/// The relay could not persist its state: hand the event back to LDK for
	/// replay (`Err(ReplayEvent())`).
	Replay,
}

impl<CM: Deref> TrampolineRelay<CM>
where
	CM::Target: AChannelManager,
{
	/// Handles the events of relayed buckets and their outgoing payments.
	pub fn handle_event(&self, event: &Event) -> HookOutcome {
		match event {
			Event::PaymentClaimable { payment_hash, onion_fields, amount_msat, .. } => {
				let Some(id) = onion_fields.as_ref().and_then(|f| {
					let tlvs = f.custom_tlvs();
					let (_, value) = tlvs.iter().find(|(t, _)| *t == BUCKET_TLV_TYPE)?;
					<[u8; 32]>::try_from(value.as_slice()).ok()
				}) else {
					return HookOutcome::NotOurs;
				};
				self.on_claimable(&id, payment_hash, *amount_msat)
			},
			Event::PaymentSent { payment_id: Some(payment_id), payment_preimage, .. } => {
				let Some((id, bucket)) = self.core.store.bucket_by_payment(&payment_id.0) else {
					return HookOutcome::NotOurs;
				};
				self.sender.take_route_shortfall(&PaymentHash(bucket.payment_hash));
				// Funds safety: the outgoing payment is done, claim the incoming one.
				let stored = self.core.store.update_bucket(&id, |b| {
					b.state = BucketState::Claimed { preimage: payment_preimage.0 }
				});
				if stored.is_err() {
					return HookOutcome::Replay;
				}
				log_info!(
					self.core.logger,
					"Trampoline payment {} relayed; claiming the incoming HTLCs",
					PaymentHash(bucket.payment_hash)
				);
				self.cm.get_cm().claim_funds(*payment_preimage);
				HookOutcome::Handled
			},
			Event::PaymentFailed { payment_id, reason, .. } => {
				let Some((id, bucket)) = self.core.store.bucket_by_payment(&payment_id.0) else {
					return HookOutcome::NotOurs;
				};
				let relayed = self.sender.relayed_failure(&PaymentHash(bucket.payment_hash));
				match relayed {
					Some(RelayedFailure::Opaque(packet)) => {
						log_info!(
							self.core.logger,
							"Trampoline payment {} failed further down the route: passing the failure back",
							PaymentHash(bucket.payment_hash)
						);
						return self.fail_bucket_with(
							&id,
							&bucket,
							FailureMessage::TemporaryTrampolineFailure,
							Some(packet),
						);
					},
					Some(RelayedFailure::OnTheWay(failure)) => {
						// LDK could not read this failure (the onion was
						// ours) and gave up; the payer may try again later.
						log_info!(
							self.core.logger,
							"Trampoline payment {} failed on the way to the next trampoline: {:?}",
							PaymentHash(bucket.payment_hash),
							failure
						);
						return self.fail_bucket_with(
							&id,
							&bucket,
							FailureMessage::TemporaryTrampolineFailure,
							None,
						);
					},
					Some(RelayedFailure::Outer(_)) | None => {},
				}
				let failure = match reason {
					Some(PaymentFailureReason::RouteNotFound) => {
						self.route_not_found(&PaymentHash(bucket.payment_hash))
					},
					Some(PaymentFailureReason::UnknownRequiredFeatures) => {
						FailureMessage::UnknownNextTrampoline
					},
					Some(PaymentFailureReason::RecipientRejected) => {
						FailureMessage::IncorrectOrUnknownPaymentDetails {
							htlc_msat: bucket.outer_total_msat,
							height: self.cm.get_cm().current_best_block().height,
						}
					},
					_ => FailureMessage::TemporaryTrampolineFailure,
				};
				log_info!(
					self.core.logger,
					"Trampoline payment {} failed ({reason:?}): failing back with {failure:?}",
					PaymentHash(bucket.payment_hash)
				);
				self.fail_bucket(&id, &bucket, failure)
			},
			Event::PaymentClaimed { payment_hash, purpose, .. } => {
				let secret = match purpose {
					PaymentPurpose::Bolt11InvoicePayment { payment_secret, .. } => {
						Some(payment_secret)
					},
					_ => None,
				};
				let ours =
					secret.is_some_and(|secret| {
						self.core.store.buckets().iter().any(|(_, b)| {
							b.payment_hash == payment_hash.0 && b.ldk_secret == secret.0
						})
					});
				if ours {
					HookOutcome::Handled
				} else {
					HookOutcome::NotOurs
				}
			},
			_ => HookOutcome::NotOurs,
		}
	}

	fn on_claimable(
		&self, id: &BucketId, payment_hash: &PaymentHash, amount_msat: u64,
	) -> HookOutcome {
		let cm = self.cm.get_cm();
		let Some(bucket) = self.core.store.bucket(id) else {
			log_error!(
				self.core.logger,
				"Claimable bucket for {payment_hash} is unknown; failing it"
			);
			cm.fail_htlc_backwards_with_reason(payment_hash, FailureCode::TemporaryNodeFailure);
			return HookOutcome::Handled;
		};
		match &bucket.state {
			// `Sending` too: the event is replayed when LDK did not persist
			// after we handled it, and the send may not have survived; sending
			// again under the same payment id is a no-op if it did.
			BucketState::Receiving | BucketState::Held { .. } | BucketState::Sending { .. } => {},
			BucketState::Claimed { preimage } => {
				cm.claim_funds(PaymentPreimage(*preimage));
				return HookOutcome::Handled;
			},
			BucketState::Failed { .. } => {
				cm.fail_htlc_backwards_with_reason(payment_hash, FailureCode::TemporaryNodeFailure);
				return HookOutcome::Handled;
			},
		}
		let Ok(TrampolinePayload { hop, .. }) =
			TrampolinePayload::decode(&bucket.trampoline_payload)
		else {
			return self.fail_bucket(id, &bucket, FailureMessage::TemporaryTrampolineFailure);
		};
		let (amt_to_forward, outgoing_cltv_value) = match &hop {
			TrampolineHop::ToLegacyRecipient { amt_to_forward, outgoing_cltv_value, .. }
			| TrampolineHop::ToTrampoline { amt_to_forward, outgoing_cltv_value, .. }
			| TrampolineHop::ToBlindedPaths { amt_to_forward, outgoing_cltv_value, .. } => {
				(*amt_to_forward, *outgoing_cltv_value)
			},
			_ => return self.fail_bucket(id, &bucket, FailureMessage::TemporaryTrampolineFailure),
		};

		let policy = self.core.policy;
		let height = cm.current_best_block().height;
		if let BucketState::Held { deadline_height, .. } = bucket.state {
			if height >= deadline_height {
				log_info!(
					self.core.logger,
					"Trampoline {payment_hash}: held past its deadline {deadline_height}; failing back"
				);
				return self.fail_bucket(id, &bucket, FailureMessage::TemporaryTrampolineFailure);
			}
		}
		let fee = policy.fee_msat(amt_to_forward);
		let cltv_budget = bucket.min_incoming_cltv.saturating_sub(outgoing_cltv_value);
		if amount_msat < amt_to_forward.saturating_add(fee)
			|| cltv_budget < u32::from(policy.cltv_expiry_delta)
			|| outgoing_cltv_value <= height
		{
			log_info!(
				self.core.logger,
				"Trampoline {payment_hash}: {amount_msat} msat in for {amt_to_forward} out (fee {fee} needed), cltv budget {cltv_budget}: insufficient"
			);
			return self.fail_bucket(id, &bucket, policy.insufficient());
		}

		let holdable = matches!(bucket.state, BucketState::Receiving | BucketState::Held { .. });
		if let Some(next) = self.offline_peer(&hop).filter(|_| holdable) {
			let deadline_height = hold_deadline(outgoing_cltv_value);
			if height >= deadline_height {
				log_info!(
					self.core.logger,
					"Trampoline {payment_hash}: {next} is offline and no time is left to hold; failing back"
				);
				return self.fail_bucket(id, &bucket, FailureMessage::TemporaryTrampolineFailure);
			}
			if matches!(bucket.state, BucketState::Receiving) {
				let since_secs = std::time::SystemTime::now()
					.duration_since(std::time::UNIX_EPOCH)
					.map_or(0, |d| d.as_secs());
				let held = self.core.store.update_bucket(id, |b| {
					b.state = BucketState::Held { amount_msat, since_secs, deadline_height };
				});
				if held.is_err() {
					return HookOutcome::Replay;
				}
				log_info!(
					self.core.logger,
					"Trampoline {payment_hash}: holding until {next} is back (deadline height {deadline_height})"
				);
			}
			return HookOutcome::Handled;
		}

		let final_cltv_delta = outgoing_cltv_value - height;
		// LDK's router wants the limit strictly above the final delta: when the
		// payer offered exactly our delta, the outgoing route may take one block
		// of it (we keep `cltv_expiry_delta - 1`).
		let max_total_cltv = bucket
			.min_incoming_cltv
			.saturating_sub(u32::from(policy.cltv_expiry_delta))
			.saturating_sub(height)
			.max(final_cltv_delta + 1);
		let max_routing_fee = amount_msat - amt_to_forward - fee;
		let payment_id = PaymentId(self.core.derive(b"payment", &[id]));

		// Recorded before sending: a restart finds the payment by this id.
		let stored = self.core.store.update_bucket(id, |b| {
			b.state = BucketState::Sending { payment_id: payment_id.0 };
			b.payment_id = Some(payment_id.0);
		});
		if stored.is_err() {
			return HookOutcome::Replay;
		}
		log_info!(
			self.core.logger,
			"Trampoline {payment_hash}: paying {amt_to_forward} msat onwards, fee budget {max_routing_fee} msat"
		);
		self.sender.watch_route(payment_hash);
		let sent = match hop {
			TrampolineHop::ToLegacyRecipient {
				outgoing_node_id,
				payment_data,
				payment_metadata,
				invoice_features,
				invoice_routing_info,
				..
			} => {
				// LDK's send_payment sets total_msat to the amount it sends: a
				// payment the payer split over several trampolines cannot be
				// relayed yet.
				if payment_data.total_msat != amt_to_forward {
					return self.fail_bucket(
						id,
						&bucket,
						FailureMessage::TemporaryTrampolineFailure,
					);
				}
				let mut params =
					PaymentParameters::from_node_id(outgoing_node_id, final_cltv_delta)
						.with_max_total_cltv_expiry_delta(max_total_cltv);
				if let Some(features) = invoice_features {
					if let Ok(with) = params
						.clone()
						.with_bolt11_features(Bolt11InvoiceFeatures::from_be_bytes(features))
					{
						params = with;
					}
				}
				if !invoice_routing_info.is_empty() {
					if let Ok(with) = params
						.clone()
						.with_route_hints(legacy_route_hints_to_ldk(&invoice_routing_info))
					{
						params = with;
					}
				}
				let mut route_params =
					RouteParameters::from_payment_params_and_value(params, amt_to_forward);
				route_params.max_total_routing_fee_msat = Some(max_routing_fee);
				let mut onion = RecipientOnionFields::secret_only(payment_data.payment_secret);
				onion.payment_metadata = payment_metadata;
				cm.send_payment(*payment_hash, onion, payment_id, route_params, OUTGOING_RETRY)
					.map_err(Some)
			},
			TrampolineHop::ToTrampoline { outgoing_node_id, layout, .. } => {
				let Some(packet) = bucket.next_packet.clone() else {
					return self.fail_bucket(
						id,
						&bucket,
						FailureMessage::TemporaryTrampolineFailure,
					);
				};
				let send = OuterSend {
					payment_hash: *payment_hash,
					trampoline: outgoing_node_id,
					trampoline_packet: packet,
					amount_msat: amt_to_forward,
					total_msat: amt_to_forward,
					cltv_expiry_delta: final_cltv_delta,
					// Fresh for the next trampoline (and the same after a restart).
					outer_secret: PaymentSecret(self.core.derive(b"outer secret", &[id])),
					payment_id,
					retry: OUTGOING_RETRY,
					max_routing_fee_msat: Some(max_routing_fee),
					max_total_cltv_expiry_delta: Some(max_total_cltv),
				};
				// Type 20 to the next trampoline if the payer spoke spec, else
				// 66100; its failures are kept to pass back.
				match send_to_trampoline(&*self.cm, &send, Some((&self.sender, layout, Vec::new())))
				{
					Ok(_) => Ok(()),
					Err(SenderError::Send(e)) => Err(Some(e)),
					Err(_) => Err(None),
				}
			},
			TrampolineHop::ToBlindedPaths { paths, recipient_features, .. } => {
				let paths = self.usable_blinded_paths(&paths);
				if paths.is_empty() {
					return self.fail_bucket(id, &bucket, FailureMessage::UnknownNextTrampoline);
				}
				let mut params = PaymentParameters::blinded(paths)
					.with_max_total_cltv_expiry_delta(max_total_cltv);
				if let Some(features) = recipient_features {
					if let Ok(with) = params
						.clone()
						.with_bolt12_features(Bolt12InvoiceFeatures::from_be_bytes(features))
					{
						params = with;
					}
				}
				let mut route_params =
					RouteParameters::from_payment_params_and_value(params, amt_to_forward);
				// The blinded paths' fees come out of the same budget.
				route_params.max_total_routing_fee_msat = Some(max_routing_fee);
				// The recipient's secret is inside its paths' encrypted data.
				let onion = RecipientOnionFields::spontaneous_empty();
				cm.send_payment(*payment_hash, onion, payment_id, route_params, OUTGOING_RETRY)
					.map_err(Some)
			},
			_ => Err(None),
		};
		match sent {
			Ok(()) | Err(Some(RetryableSendFailure::DuplicatePayment)) => HookOutcome::Handled,
			Err(e) => {
				let failure = if e == Some(RetryableSendFailure::RouteNotFound) {
					self.route_not_found(payment_hash)
				} else {
					FailureMessage::TemporaryTrampolineFailure
				};
				log_info!(self.core.logger, "Trampoline {payment_hash}: cannot pay ({e:?})");
				self.fail_bucket(id, &bucket, failure)
			},
		}
	}

	/// Re-drives settled buckets after a restart: claims again the buckets
	/// whose outgoing payment succeeded and fails again the failed ones (both
	/// are no-ops for LDK if already done). Call once the channel manager is
	/// loaded. Buckets still sending wait for LDK's replayed or pending events.
	pub fn resume(&self) {
		let cm = self.cm.get_cm();
		for (_, bucket) in self.core.store.buckets() {
			match bucket.state {
				BucketState::Claimed { preimage } => cm.claim_funds(PaymentPreimage(preimage)),
				BucketState::Failed { .. } => cm.fail_htlc_backwards_with_reason(
					&PaymentHash(bucket.payment_hash),
					FailureCode::TemporaryNodeFailure,
				),
				BucketState::Receiving | BucketState::Held { .. } | BucketState::Sending { .. } => {
				},
			}
		}
	}

	/// Forwards the held buckets whose next node is back, and fails back
	/// those past their deadline. Call it periodically (the reference node:
	/// every second).
	pub fn poll_held(&self) {
		for (id, bucket) in self.core.store.held_buckets() {
			if let BucketState::Held { amount_msat, .. } = bucket.state {
				self.on_claimable(&id, &PaymentHash(bucket.payment_hash), amount_msat);
			}
		}
	}

	/// The next node of `hop` if it is to be waited for: our channel peer
	/// and offline (no channel with it is usable), or named with
	/// `async_payment` and not connected to us.
	fn offline_peer(&self, hop: &TrampolineHop) -> Option<PublicKey> {
		let next = hop.next_node_id()?;
		if matches!(hop, TrampolineHop::ToTrampoline { async_payment: true, .. })
			&& !self.core.is_connected(&next)
		{
			return Some(next);
		}
		let channels: Vec<_> = self
			.cm
			.get_cm()
			.list_channels_with_counterparty(&next)
			.into_iter()
			.filter(|c| c.is_channel_ready)
			.collect();
		(!channels.is_empty() && channels.iter().all(|c| !c.is_usable)).then_some(next)
	}

	/// The recipient's paths as LDK's router takes them: a `sciddir`
	/// introduction node is resolved through our own channels, and a path
	/// that starts at us is advanced past our hop (LDK's router skips paths
	/// whose introduction node is the payer, as LDK's BOLT 12 sender does).
	fn usable_blinded_paths(&self, paths: &[PaymentBlindedPath]) -> Vec<BlindedPaymentPath> {
		let cm = self.cm.get_cm();
		let ours = cm.get_our_node_id();
		paths
			.iter()
			.filter_map(|path| {
				let intro = match path.introduction_node() {
					IntroductionNode::NodeId(node_id) => *node_id,
					IntroductionNode::DirectedShortChannelId(direction, scid) => {
						let peer = lightning::blinded_path::NodeIdLookUp::next_node_id(cm, *scid)?;
						*direction.select_pubkey(&ours, &peer)
					},
				};
				let mut ldk = BlindedPaymentPath::from_blinded_path_and_payinfo(
					intro,
					*path.first_path_key(),
					path.hops().to_vec(),
					path.payinfo().clone(),
				);
				if intro == ours {
					ldk.advance_path_by_one(&self.core.signer, &cm, &self.core.secp).ok()?;
				}
				Some(ldk)
			})
			.collect()
	}

	/// Records `failure` for the bucket, then fails its HTLCs back; the handler
	/// puts `failure` on the wire.
	/// What to answer the payer when no route to the next node was found:
	/// the payer's fee or CLTV budget was short (NODE|26 with our policy, as
	/// eclair answers: the payer offers more), the channels lack liquidity
	/// (NODE|25), or the next node cannot be reached at all (NODE|27).
	fn route_not_found(&self, payment_hash: &PaymentHash) -> FailureMessage {
		match self.sender.take_route_shortfall(payment_hash) {
			Some(RouteShortfall::Budget) => self.core.policy.insufficient(),
			Some(RouteShortfall::Liquidity) => FailureMessage::TemporaryTrampolineFailure,
			Some(RouteShortfall::Unreachable) | None => FailureMessage::UnknownNextTrampoline,
		}
	}

	fn fail_bucket(
		&self, id: &BucketId, bucket: &BucketRecord, failure: FailureMessage,
	) -> HookOutcome {
		self.fail_bucket_with(id, bucket, failure, None)
	}

	/// [`Self::fail_bucket`], passing back `forwarded` (a failure packet from
	/// further down the trampoline route) instead of `failure` when set.
	fn fail_bucket_with(
		&self, id: &BucketId, bucket: &BucketRecord, failure: FailureMessage,
		forwarded: Option<Vec<u8>>,
	) -> HookOutcome {
		let encoded = failure.encode();
		if self
			.core
			.store
			.update_bucket(id, |b| b.state = BucketState::Failed { failure: encoded, forwarded })
			.is_err()
		{
			return HookOutcome::Replay;
		}
		self.cm.get_cm().fail_htlc_backwards_with_reason(
			&PaymentHash(bucket.payment_hash),
			FailureCode::TemporaryNodeFailure,
		);
		HookOutcome::Handled
	}
}
