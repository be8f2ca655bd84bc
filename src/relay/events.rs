//! The event hook: relay a bucket once LDK reports it claimable, then claim or
//! fail it with the outcome of the outgoing payment.
//!
//! Each handler reads the bucket, decides with [`super::rules`], writes, and
//! acts. LDK keeps one claimable set per payment hash, and claims or fails it
//! by payment hash: a bucket is only acted on by payment hash while it can
//! still be that set (not superseded by a newer bucket of the hash).

use std::ops::Deref;
use std::sync::atomic::Ordering;

use bitcoin::secp256k1::PublicKey;

use lightning::blinded_path::payment::BlindedPaymentPath;
use lightning::blinded_path::IntroductionNode;
use lightning::events::{Event, PaymentFailureReason, PaymentPurpose};
use lightning::ln::channelmanager::{
	AChannelManager, FailureCode, PaymentId, RecentPaymentDetails, RecipientOnionFields, Retry,
	RetryableSendFailure,
};
use lightning::ln::types::ChannelId;
use lightning::routing::router::{PaymentParameters, RouteParameters};
use lightning::types::features::{Bolt11InvoiceFeatures, Bolt12InvoiceFeatures};
use lightning::types::payment::{PaymentHash, PaymentPreimage, PaymentSecret};
use lightning::{log_error, log_info};

use super::dialect::{self, wire_failure, Dialect, FailReason};
use super::rules::{self, InnerFacts, RelayDecision, RelayInputs, RelayPlan};
use super::store::{parse_htlc_key, BucketId, BucketRecord, BucketState};
use super::{now_secs, SettledBucket, TrampolineRelay, BUCKET_TLV_TYPE};
use crate::onion::{
	legacy_route_hints_to_ldk, PaymentBlindedPath, TrampolineHop, TrampolinePayload,
};
use crate::sender::{send_to_trampoline, OuterSend, RouteShortfall, SenderError};

/// How many times LDK may retry the outgoing payment over other routes.
const OUTGOING_RETRY: Retry = Retry::Attempts(3);

/// How many times in a row the hook asks LDK to replay an event it could
/// not persist the outcome of, before it logs the store as broken and moves
/// on (a store that cannot write would otherwise stop every later event).
const MAX_REPLAYS: u32 = 20;

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

/// The payment secret LDK checked for a claimable payment, if it was paid as
/// an invoice (our rewritten receives are).
/// The payment id of an entry of `list_recent_payments`.
fn recent_payment_id(payment: &RecentPaymentDetails) -> PaymentId {
	match payment {
		RecentPaymentDetails::AwaitingInvoice { payment_id }
		| RecentPaymentDetails::Pending { payment_id, .. }
		| RecentPaymentDetails::Fulfilled { payment_id, .. }
		| RecentPaymentDetails::Abandoned { payment_id, .. } => *payment_id,
	}
}

fn payment_secret(purpose: &PaymentPurpose) -> Option<&PaymentSecret> {
	match purpose {
		PaymentPurpose::Bolt11InvoicePayment { payment_secret, .. } => Some(payment_secret),
		_ => None,
	}
}

impl<CM: Deref> TrampolineRelay<CM>
where
	CM::Target: AChannelManager,
{
	/// Handles the events of relayed buckets and their outgoing payments.
	pub fn handle_event(&self, event: &Event) -> HookOutcome {
		let outcome = self.handle(event);
		if outcome == HookOutcome::Handled {
			// The sender keeps live payments only.
			self.sender.forget_ended_payment(event);
		}
		if outcome != HookOutcome::Replay {
			self.core.replays.store(0, std::sync::atomic::Ordering::Relaxed);
			return outcome;
		}
		let replays = self.core.replays.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
		if replays >= MAX_REPLAYS {
			log_error!(
				self.core.logger,
				"The trampoline store failed {replays} times in a row; giving up on persisting this event's outcome (check the disk)"
			);
			self.core.replays.store(0, std::sync::atomic::Ordering::Relaxed);
			return HookOutcome::Handled;
		}
		HookOutcome::Replay
	}

	fn handle(&self, event: &Event) -> HookOutcome {
		match event {
			Event::PaymentClaimable {
				payment_hash,
				onion_fields,
				amount_msat,
				purpose,
				claim_deadline,
				..
			} => {
				let Some(id) = onion_fields.as_ref().and_then(|f| {
					let tlvs = f.custom_tlvs();
					let (_, value) = tlvs.iter().find(|(t, _)| *t == BUCKET_TLV_TYPE)?;
					<[u8; 32]>::try_from(value.as_slice()).ok()
				}) else {
					return HookOutcome::NotOurs;
				};
				let Some(bucket) = self.core.store.bucket(&id) else {
					self.fail_foreign_claimable(payment_hash, "names an unknown bucket");
					return HookOutcome::Handled;
				};
				if let Err(forgery) = rules::check_identity(
					&bucket,
					&payment_hash.0,
					payment_secret(purpose).map(|s| &s.0),
				) {
					let why = format!("names a bucket it is not ({forgery:?}), never relayed");
					self.fail_foreign_claimable(payment_hash, &why);
					return HookOutcome::Handled;
				}
				self.on_claimable(&id, bucket, *amount_msat, *claim_deadline)
			},
			Event::PaymentSent {
				payment_id: Some(payment_id),
				payment_preimage,
				amount_msat,
				fee_paid_msat,
				..
			} => {
				let Some((id, bucket)) = self.core.store.bucket_by_payment(&payment_id.0) else {
					return HookOutcome::NotOurs;
				};
				self.sender.take_route_shortfall(payment_id);
				// Funds safety: the outgoing payment is done, claim the
				// incoming one at once (always safe), then record it so that a
				// restart claims again.
				self.cm.get_cm().claim_funds(*payment_preimage);
				log_info!(
					self.core.logger,
					"Trampoline payment {} relayed; claiming the incoming HTLCs",
					PaymentHash(bucket.payment_hash)
				);
				let stored = self.core.store.update_bucket(&id, |b| {
					b.state = BucketState::Claimed { preimage: payment_preimage.0 }
				});
				if stored.is_err() {
					return HookOutcome::Replay;
				}
				if !bucket.state.is_settled() {
					// Not a replay of an outcome already told.
					let out_msat =
						amount_msat.and_then(|a| a.checked_add(fee_paid_msat.unwrap_or(0)));
					let settled = self.settled_bucket(&id, &bucket, out_msat, None);
					self.core.metrics().relayed(settled.in_msat, settled.out_msat);
					self.core.metrics().settled(&id);
					self.notify_settled(|| settled);
				}
				HookOutcome::Handled
			},
			Event::PaymentFailed { payment_id, reason, .. } => {
				let Some((id, bucket)) = self.core.store.bucket_by_payment(&payment_id.0) else {
					return HookOutcome::NotOurs;
				};
				if bucket.state.is_settled() {
					// A replay: the bucket was failed (or claimed) already, and
					// its HTLCs may be another bucket's by now.
					return HookOutcome::Handled;
				}
				let failure = self.outgoing_failure(payment_id, &bucket, reason.as_ref());
				match failure {
					Ok(failure) => self.fail_bucket(&id, &bucket, failure),
					Err(packet) => self.fail_bucket_with(
						&id,
						&bucket,
						FailReason::DownstreamUnreadable,
						Some(packet),
					),
				}
			},
			Event::PaymentClaimed { payment_hash, purpose, .. } => {
				let ours = payment_secret(purpose).is_some_and(|secret| {
					self.core
						.store
						.buckets_of_hash(&payment_hash.0)
						.iter()
						.any(|(_, b)| b.ldk_secret == secret.0)
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

	/// Why the outgoing payment failed, or (`Err`) a packet from further
	/// down the trampoline route to pass back to a spec payer. A legacy payer
	/// decrypts outer layers only: it cannot read such a packet, and gets
	/// [`FailReason::DownstreamUnreadable`]; the next trampoline's own
	/// readable failure is passed on to it (as eclair's `translateError`
	/// does).
	fn outgoing_failure(
		&self, payment_id: &PaymentId, bucket: &BucketRecord, reason: Option<&PaymentFailureReason>,
	) -> Result<FailReason, Vec<u8>> {
		let hash = PaymentHash(bucket.payment_hash);
		if let Some(relayed) = self.sender.relayed_failure(payment_id) {
			log_info!(
				self.core.logger,
				"Trampoline payment {hash} failed beyond us ({:?} payer): {relayed:?}",
				bucket.dialect
			);
			if let Some(answer) = dialect::answer_relayed(relayed, bucket.dialect) {
				return answer;
			}
		}
		let failure = match reason {
			Some(PaymentFailureReason::RouteNotFound) => self.route_not_found(payment_id),
			Some(PaymentFailureReason::UnknownRequiredFeatures) => FailReason::UnknownNextNode,
			Some(PaymentFailureReason::RecipientRejected) => FailReason::RecipientRejected {
				htlc_msat: bucket.outer_total_msat,
				height: self.cm.get_cm().current_best_block().height,
			},
			_ => FailReason::Internal,
		};
		log_info!(
			self.core.logger,
			"Trampoline payment {hash} failed ({reason:?}): failing back with {failure:?}"
		);
		Ok(failure)
	}

	/// A complete bucket (LDK's claimable event, or the hold loop): relay,
	/// hold or fail it, as [`rules::decide_relay`] says.
	fn on_claimable(
		&self, id: &BucketId, bucket: BucketRecord, amount_msat: u64, claim_deadline: Option<u32>,
	) -> HookOutcome {
		let cm = self.cm.get_cm();
		let payment_hash = PaymentHash(bucket.payment_hash);
		match &bucket.state {
			BucketState::Receiving | BucketState::Held { .. } => {},
			// A replay (LDK did not persist after we handled it). If LDK
			// knows the outgoing payment (rebuilt from its monitors after a
			// crash, say), its HTLCs may be claimable downstream: the bucket
			// waits for `PaymentSent`/`PaymentFailed` and is never failed
			// from here. Only a payment LDK lost is decided and sent again
			// (under the same id).
			BucketState::Sending { payment_id } => {
				let known = cm
					.list_recent_payments()
					.iter()
					.any(|p| recent_payment_id(p) == PaymentId(*payment_id));
				if known {
					return HookOutcome::Handled;
				}
			},
			BucketState::Claimed { preimage } => {
				cm.claim_funds(PaymentPreimage(*preimage));
				return HookOutcome::Handled;
			},
			BucketState::Failed { .. } => {
				if self.core.may_fail_by_hash(id, &bucket) {
					cm.fail_htlc_backwards_with_reason(
						&payment_hash,
						FailureCode::TemporaryNodeFailure,
					);
				}
				return HookOutcome::Handled;
			},
		}
		self.core.metrics().claimable(id);
		// LDK's deadline, kept for the hold loop and restarts.
		let bucket = match claim_deadline {
			Some(deadline) if bucket.claim_deadline != Some(deadline) => {
				match self.core.store.update_bucket(id, |b| b.claim_deadline = Some(deadline)) {
					Ok(Some(bucket)) => bucket,
					_ => return HookOutcome::Replay,
				}
			},
			_ => bucket,
		};
		let Ok(TrampolinePayload { hop, .. }) =
			TrampolinePayload::decode(&bucket.trampoline_payload)
		else {
			return self.fail_bucket(id, &bucket, FailReason::Internal);
		};
		let (amt_to_forward, outgoing_cltv_value) = match &hop {
			TrampolineHop::ToLegacyRecipient { amt_to_forward, outgoing_cltv_value, .. }
			| TrampolineHop::ToTrampoline { amt_to_forward, outgoing_cltv_value, .. }
			| TrampolineHop::ToBlindedPaths { amt_to_forward, outgoing_cltv_value, .. } => {
				(*amt_to_forward, *outgoing_cltv_value)
			},
			_ => return self.fail_bucket(id, &bucket, FailReason::Unsupported),
		};
		let next_offline = self.offline_peer(&hop);
		let hold_room = match (&next_offline, &bucket.state) {
			(Some(_), BucketState::Receiving) => self.core.hold_room(id, amount_msat),
			_ => Ok(()),
		};
		let height = cm.current_best_block().height;
		let decision = rules::decide_relay(&RelayInputs {
			policy: &self.core.policy,
			limits: &self.core.limits,
			height,
			now_secs: now_secs(),
			amount_msat,
			min_incoming_cltv: bucket.min_incoming_cltv,
			claim_deadline: rules::claim_deadline(&bucket),
			inner: InnerFacts { amt_to_forward, outgoing_cltv_value },
			state: &bucket.state,
			next_offline: next_offline.is_some(),
			hold_room,
		});
		let plan = match decision {
			RelayDecision::Relay(plan) => plan,
			RelayDecision::KeepHolding => return HookOutcome::Handled,
			RelayDecision::Hold { deadline_height } => {
				let since_secs = now_secs();
				let held = self.core.store.update_bucket(id, |b| {
					b.state = BucketState::Held { amount_msat, since_secs, deadline_height };
				});
				if held.is_err() {
					return HookOutcome::Replay;
				}
				log_info!(
					self.core.logger,
					"Trampoline {payment_hash}: holding until {} is back (deadline height {deadline_height})",
					next_offline.map(|n| n.to_string()).unwrap_or_default()
				);
				return HookOutcome::Handled;
			},
			RelayDecision::Fail(failure) => {
				log_info!(
					self.core.logger,
					"Trampoline {payment_hash}: {amount_msat} msat in for {amt_to_forward} out, incoming cltv {}, claim deadline {}, height {height}: failing back with {failure:?}",
					bucket.min_incoming_cltv,
					rules::claim_deadline(&bucket)
				);
				return self.fail_bucket(id, &bucket, failure);
			},
		};
		self.send(id, &bucket, hop, amt_to_forward, plan)
	}

	/// Pays the next node of `hop` within `plan`, recording the payment id
	/// first.
	fn send(
		&self, id: &BucketId, bucket: &BucketRecord, hop: TrampolineHop, amt_to_forward: u64,
		plan: RelayPlan,
	) -> HookOutcome {
		let cm = self.cm.get_cm();
		let payment_hash = PaymentHash(bucket.payment_hash);
		let RelayPlan {
			final_cltv_delta,
			max_total_cltv_expiry_delta,
			max_routing_fee_msat,
			expiry_limit,
		} = plan;
		let payment_id = PaymentId(self.core.derive(b"payment", &[id]));
		if self.core.router_unbound.load(Ordering::Acquire) {
			// See below: relaying without the router's bound is unsafe.
			return self.fail_bucket(id, bucket, FailReason::Internal);
		}

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
			"Trampoline {payment_hash}: paying {amt_to_forward} msat onwards, fee budget {max_routing_fee_msat} msat, at most {max_total_cltv_expiry_delta} blocks"
		);
		// Every attempt LDK makes for it (retries blocks later too) is
		// routed to expire by the limit, counted from LDK's height or later.
		self.sender.best_block_updated(cm.current_best_block().height);
		self.sender.watch_route(payment_id, expiry_limit);
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
					self.sender.forget_payment(&payment_id);
					return self.fail_bucket(id, bucket, FailReason::PayerSplit);
				}
				let mut params =
					PaymentParameters::from_node_id(outgoing_node_id, final_cltv_delta)
						.with_max_total_cltv_expiry_delta(max_total_cltv_expiry_delta);
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
				route_params.max_total_routing_fee_msat = Some(max_routing_fee_msat);
				let mut onion = RecipientOnionFields::secret_only(payment_data.payment_secret);
				onion.payment_metadata = payment_metadata;
				cm.send_payment(payment_hash, onion, payment_id, route_params, OUTGOING_RETRY)
					.map_err(Some)
			},
			TrampolineHop::ToTrampoline { outgoing_node_id, layout, .. } => {
				let Some(packet) = bucket.next_packet.clone() else {
					self.sender.forget_payment(&payment_id);
					return self.fail_bucket(id, bucket, FailReason::Internal);
				};
				let send = OuterSend {
					payment_hash,
					trampoline: outgoing_node_id,
					trampoline_packet: packet,
					amount_msat: amt_to_forward,
					total_msat: amt_to_forward,
					cltv_expiry_delta: final_cltv_delta,
					// Fresh for the next trampoline (and the same after a restart).
					outer_secret: PaymentSecret(self.core.derive(b"outer secret", &[id])),
					payment_id,
					retry: OUTGOING_RETRY,
					max_routing_fee_msat: Some(max_routing_fee_msat),
					max_total_cltv_expiry_delta: Some(max_total_cltv_expiry_delta),
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
					self.sender.forget_payment(&payment_id);
					return self.fail_bucket(id, bucket, FailReason::UnknownNextNode);
				}
				let mut params = PaymentParameters::blinded(paths)
					.with_max_total_cltv_expiry_delta(max_total_cltv_expiry_delta);
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
				route_params.max_total_routing_fee_msat = Some(max_routing_fee_msat);
				// The recipient's secret is inside its paths' encrypted data.
				let onion = RecipientOnionFields::spontaneous_empty();
				cm.send_payment(payment_hash, onion, payment_id, route_params, OUTGOING_RETRY)
					.map_err(Some)
			},
			_ => Err(None),
		};
		match sent {
			Ok(()) if !self.sender.was_routed(&payment_id) => {
				// LDK routed it through another router than the one sharing
				// our state: its first attempt is bounded by the route
				// parameters, its retries would not be. Stop them (the bucket
				// fails back with LDK's PaymentFailed) and relay no more.
				self.core.router_unbound.store(true, Ordering::Release);
				log_error!(
					self.core.logger,
					"Trampoline {payment_hash}: the ChannelManager's router is not the TrampolineRouter given to Plugin::builder; relaying is unsafe and now off: abandoning the payment"
				);
				cm.abandon_payment(payment_id);
				HookOutcome::Handled
			},
			Ok(()) => {
				self.core.metrics().sent(id);
				HookOutcome::Handled
			},
			Err(Some(RetryableSendFailure::DuplicatePayment)) => HookOutcome::Handled,
			Err(e) => {
				let failure = if e == Some(RetryableSendFailure::RouteNotFound) {
					self.route_not_found(&payment_id)
				} else {
					FailReason::Internal
				};
				// Never started: the sender keeps live payments only.
				self.sender.forget_payment(&payment_id);
				log_info!(self.core.logger, "Trampoline {payment_hash}: cannot pay ({e:?})");
				self.fail_bucket(id, bucket, failure)
			},
		}
	}

	/// Re-drives settled buckets after a restart: claims again the buckets
	/// whose outgoing payment succeeded (always safe: whatever LDK holds
	/// under that hash may be claimed) and fails again the failed ones that
	/// still have an HTLC out and were not superseded (their claimable set
	/// may be the only one of their hash). Both are no-ops for LDK if done.
	/// Buckets still sending wait for LDK's replayed or pending events (their
	/// routes are watched again from [`super::Trampoline::new`] on: LDK may
	/// retry them). Call once the channel manager is loaded and synced,
	/// before the background processor starts.
	pub fn resume(&self) {
		let cm = self.cm.get_cm();
		self.sender.best_block_updated(cm.current_best_block().height);
		for (id, bucket) in self.core.store.buckets() {
			match bucket.state {
				BucketState::Claimed { preimage } => cm.claim_funds(PaymentPreimage(preimage)),
				BucketState::Failed { .. } if self.core.may_fail_by_hash(&id, &bucket) => cm
					.fail_htlc_backwards_with_reason(
						&PaymentHash(bucket.payment_hash),
						FailureCode::TemporaryNodeFailure,
					),
				_ => {},
			}
		}
	}

	/// The relay's periodic work, which a node must run at least once per
	/// block (the reference node: every second): the held buckets
	/// (forwarded once their next node is back, failed back at their
	/// deadline), records of resolved HTLCs and settled buckets pruned,
	/// deferred writes flushed.
	pub fn tick(&self) {
		self.sender.best_block_updated(self.cm.get_cm().current_best_block().height);
		self.poll_held();
		let channels = self.cm.get_cm().list_channels();
		self.core.prune(&channels);
		if let Err(e) = self.core.store.flush() {
			log_error!(self.core.logger, "Cannot write the relay's deferred records: {e}");
		}
	}

	/// Fails back a claimable set that names no bucket of ours (unknown, or
	/// forged: wrong hash or secret). LDK fails by payment hash whatever set
	/// it holds under the hash when asked, which may by then be a live
	/// bucket's (the forged set timed out by itself and a bucket of the same
	/// hash formed behind it in the event queue): with a live bucket of the
	/// hash, the forged set is left to LDK's own timeout (it locks only the
	/// forger's funds).
	fn fail_foreign_claimable(&self, payment_hash: &PaymentHash, why: &str) {
		let live = self.core.store.buckets_of_hash(&payment_hash.0).iter().any(|(id, bucket)| {
			!bucket.superseded
				&& (!bucket.state.is_settled() || self.core.may_fail_by_hash(id, bucket))
		});
		if live {
			log_error!(
				self.core.logger,
				"Claimable payment {payment_hash} {why}; a bucket of its hash is live, left to LDK's timeout"
			);
			return;
		}
		log_error!(self.core.logger, "Claimable payment {payment_hash} {why}; failing it");
		self.cm
			.get_cm()
			.fail_htlc_backwards_with_reason(payment_hash, FailureCode::TemporaryNodeFailure);
	}

	/// Forwards the held buckets whose next node is back, and fails back
	/// those past their deadline.
	pub fn poll_held(&self) {
		for (id, bucket) in self.core.store.held_buckets() {
			if let BucketState::Held { amount_msat, .. } = bucket.state {
				self.on_claimable(&id, bucket, amount_msat, None);
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

	/// What to answer the payer when no route to the next node was found:
	/// the payer's fee or CLTV budget was short (NODE|26 with our policy, as
	/// eclair answers: the payer offers more), the channels lack liquidity
	/// (NODE|25), or the next node cannot be reached at all (NODE|27).
	fn route_not_found(&self, payment_id: &PaymentId) -> FailReason {
		match self.sender.take_route_shortfall(payment_id) {
			Some(RouteShortfall::Budget) => FailReason::NoRouteWithinBudget,
			Some(RouteShortfall::Liquidity) => FailReason::NoLiquidity,
			Some(RouteShortfall::Unreachable) | None => FailReason::UnknownNextNode,
		}
	}

	/// What the observer is told of bucket `id`, settled with `out_msat`
	/// sent onwards (relayed) or failed back for `failure`.
	fn settled_bucket(
		&self, id: &BucketId, bucket: &BucketRecord, out_msat: Option<u64>,
		failure: Option<FailReason>,
	) -> SettledBucket {
		let htlcs = self.core.store.htlcs_of(id);
		let in_msat = htlcs
			.iter()
			.try_fold(0u64, |sum, (_, h)| sum.checked_add(h.amount_msat))
			.filter(|sum| *sum > 0)
			.unwrap_or(bucket.outer_total_msat);
		let mut incoming_channels: Vec<ChannelId> =
			htlcs.iter().filter_map(|(key, _)| parse_htlc_key(key).map(|(c, _)| c)).collect();
		incoming_channels.sort();
		incoming_channels.dedup();
		let started_secs =
			htlcs.iter().map(|(_, h)| h.recorded_secs).filter(|secs| *secs > 0).min();
		let next_node = TrampolinePayload::decode(&bucket.trampoline_payload)
			.ok()
			.and_then(|payload| payload.hop.next_node_id());
		SettledBucket {
			payment_hash: PaymentHash(bucket.payment_hash),
			dialect: bucket.dialect,
			in_msat,
			out_msat,
			incoming_channels,
			next_node,
			started_secs,
			failure,
		}
	}

	/// Records `reason` for the bucket, then fails its HTLCs back; the
	/// handler puts [`wire_failure`] of it in the payer's dialect on the wire.
	fn fail_bucket(&self, id: &BucketId, bucket: &BucketRecord, reason: FailReason) -> HookOutcome {
		self.fail_bucket_with(id, bucket, reason, None)
	}

	/// [`Self::fail_bucket`], passing back `forwarded` (a failure packet from
	/// further down the trampoline route) instead of `failure` when set.
	fn fail_bucket_with(
		&self, id: &BucketId, bucket: &BucketRecord, reason: FailReason, forwarded: Option<Vec<u8>>,
	) -> HookOutcome {
		// The spec answer too, for versions that read only that.
		let failure = wire_failure(&reason, Dialect::Spec, &self.core.policy).encode();
		// A spec payer gets a packet from further down as it is.
		let passed_on = forwarded.is_some() && bucket.dialect == Dialect::Spec;
		let told = reason.clone();
		let reason = Some(reason);
		if self
			.core
			.store
			.update_bucket(id, |b| b.state = BucketState::Failed { failure, forwarded, reason })
			.is_err()
		{
			return HookOutcome::Replay;
		}
		if !bucket.state.is_settled() {
			let wire = (!passed_on).then(|| wire_failure(&told, bucket.dialect, &self.core.policy));
			self.core.metrics().failed(bucket.dialect, &told, wire.as_ref());
			self.core.metrics().settled(id);
			self.notify_settled(|| self.settled_bucket(id, bucket, None, Some(told)));
		}
		if bucket.superseded {
			// Its HTLCs are resolved and the hash's claimable set is another
			// bucket's: nothing to fail.
			return HookOutcome::Handled;
		}
		self.cm.get_cm().fail_htlc_backwards_with_reason(
			&PaymentHash(bucket.payment_hash),
			FailureCode::TemporaryNodeFailure,
		);
		HookOutcome::Handled
	}
}
