//! Inbound `update_add_htlc`: detect a trampoline forward, record it, and hand
//! LDK a one-hop onion to ourselves whose final payload is a plain receive.

use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, SecretKey};
use lightning::ln::channelmanager::AChannelManager;
use lightning::ln::msgs::{self, UpdateAddHTLC};
use lightning::ln::types::ChannelId;
use lightning::sign::Recipient;
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning::{log_debug, log_error, log_info};

use crate::onion::{
	self, FailureMessage, NextPacket, OnionPacket, OuterHop, OuterPayload, PaymentData,
	PeeledOnion, SphinxHop, TrampolineHop, TrampolinePayload, UnknownTlvs,
	PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use crate::relay::dialect::{wire_failure, Dialect, FailReason};
use crate::relay::rules::{self, HtlcFacts, InnerFacts, OuterFacts};
use crate::relay::store::{bucket_id, htlc_key, BucketRecord, BucketState, HtlcRecord};
use crate::relay::{now_secs, RelayCore, BUCKET_TLV_TYPE};

/// How long the payment secret LDK issues for a bucket stays valid.
const BUCKET_SECRET_EXPIRY_SECS: u32 = 24 * 3600;

/// What the inbound rewrite asks of the node: its id, a payment secret for a
/// new bucket, and what it knows of its channels. Every `AChannelManager`
/// provides them; a benchmark can provide them without a live channel
/// manager.
pub trait InboundNode {
	/// The node's id (`ChannelManager::get_our_node_id`).
	fn our_node_id(&self) -> PublicKey;
	/// A payment secret LDK will accept for `payment_hash`
	/// (`ChannelManager::create_inbound_payment_for_hash`), `None` if the
	/// expiry is out of range.
	fn create_inbound_payment_for_hash(
		&self, payment_hash: PaymentHash, invoice_expiry_delta_secs: u32,
	) -> Option<PaymentSecret>;
	/// Whether we have the channel `channel_id` with `peer` (LDK rejects an
	/// add on any other, so nothing is recorded for it).
	fn has_channel(&self, peer: &PublicKey, channel_id: &ChannelId) -> bool;
	/// Whether LDK holds the inbound HTLC `htlc_id` of that channel (an add
	/// it has not dropped: a disconnection forgets the uncommitted ones).
	fn has_inbound_htlc(&self, peer: &PublicKey, channel_id: &ChannelId, htlc_id: u64) -> bool;
}

impl<C: AChannelManager + ?Sized> InboundNode for C {
	fn our_node_id(&self) -> PublicKey {
		self.get_cm().get_our_node_id()
	}

	fn create_inbound_payment_for_hash(
		&self, payment_hash: PaymentHash, invoice_expiry_delta_secs: u32,
	) -> Option<PaymentSecret> {
		self.get_cm()
			.create_inbound_payment_for_hash(payment_hash, None, invoice_expiry_delta_secs, None)
			.ok()
	}

	fn has_channel(&self, peer: &PublicKey, channel_id: &ChannelId) -> bool {
		self.get_cm()
			.list_channels_with_counterparty(peer)
			.iter()
			// Ready: LDK closes an unfunded or pending channel an add comes on.
			.any(|channel| channel.channel_id == *channel_id && channel.is_channel_ready)
	}

	fn has_inbound_htlc(&self, peer: &PublicKey, channel_id: &ChannelId, htlc_id: u64) -> bool {
		self.get_cm().list_channels_with_counterparty(peer).iter().any(|channel| {
			channel.channel_id == *channel_id
				&& channel.pending_inbound_htlcs.iter().any(|htlc| htlc.htlc_id == htlc_id)
		})
	}
}

/// What to do with an inbound HTLC.
enum Decision {
	/// Not a trampoline forward: LDK handles it as is.
	PassThrough,
	/// A valid trampoline forward of this bucket.
	Forward { bucket: [u8; 32], ldk_secret: PaymentSecret, amt: u64, total: u64 },
	/// We are the final recipient (the payer's trampoline onion names us as
	/// the next trampoline and then receives, or receives at once in the
	/// legacy layout, which LDK does not read): a plain receive of our own
	/// invoice for LDK.
	Receive { payment_data: PaymentData, payment_metadata: Option<Vec<u8>>, amt: u64 },
	/// Fail it for this reason (in the payer's dialect).
	Reject { reason: FailReason },
}

/// Returns the message to hand LDK instead of `msg` (offered by `peer`), or
/// `None` to pass it through. Never panics on peer data; on a store failure
/// it passes the HTLC through, and LDK rejects it as it would without the
/// plugin.
pub(super) fn rewrite_add<N: InboundNode + ?Sized>(
	core: &RelayCore, node: &N, peer: &PublicKey, msg: &UpdateAddHTLC,
) -> Option<UpdateAddHTLC> {
	inspect_add(core, node, peer, msg).rewritten
}

/// What the inbound rewrite made of an add.
#[derive(Default)]
pub(super) struct Inbound {
	/// The message to hand LDK instead (see [`rewrite_add`]).
	pub rewritten: Option<UpdateAddHTLC>,
	/// The total the payer announced in a final payload we peeled (a plain
	/// or blinded receive, or a trampoline bucket), msat.
	pub announced_total_msat: Option<u64>,
}

/// [`rewrite_add`], with the total a final payload announced.
pub(super) fn inspect_add<N: InboundNode + ?Sized>(
	core: &RelayCore, node: &N, peer: &PublicKey, msg: &UpdateAddHTLC,
) -> Inbound {
	let Some((outer, payload)) = peel_final(core, msg) else { return Inbound::default() };
	let announced_total_msat = match &payload.hop {
		OuterHop::Receive { payment_data, .. } => payment_data.map(|d| d.total_msat),
		OuterHop::TrampolineEntry { payment_data, .. } => payment_data.map(|d| d.total_msat),
		OuterHop::BlindedReceive { total_amount_msat, amt_to_forward, .. } => {
			Some(total_amount_msat.unwrap_or(*amt_to_forward))
		},
		_ => None,
	};
	Inbound {
		rewritten: rewrite_peeled(core, node, peer, msg, outer, payload),
		announced_total_msat,
	}
}

/// The final payload of `msg`'s onion, peeled; `None` for a forward, a
/// blinded HTLC (its onion needs the path key) or an onion we cannot peel
/// (LDK's to reject as malformed).
fn peel_final(core: &RelayCore, msg: &UpdateAddHTLC) -> Option<(PeeledOnion, OuterPayload)> {
	if msg.blinding_point.is_some() || msg.onion_routing_packet.version != 0 {
		return None;
	}
	let pubkey = msg.onion_routing_packet.public_key.ok()?;
	let packet = OnionPacket::new(
		pubkey,
		msg.onion_routing_packet.hop_data.to_vec(),
		msg.onion_routing_packet.hmac,
	)
	.ok()?;
	let ecdh = |key: &PublicKey| core.signer.ecdh(Recipient::Node, key, None);
	let outer = onion::peel(&core.secp, &packet, &msg.payment_hash.0, ecdh).ok()?;
	if !outer.is_final() {
		return None;
	}
	let payload = OuterPayload::decode(&outer.payload).ok()?;
	Some((outer, payload))
}

/// [`rewrite_add`] for a peeled final payload.
fn rewrite_peeled<N: InboundNode + ?Sized>(
	core: &RelayCore, node: &N, peer: &PublicKey, msg: &UpdateAddHTLC, outer: PeeledOnion,
	payload: OuterPayload,
) -> Option<UpdateAddHTLC> {
	let ecdh = |key: &PublicKey| core.signer.ecdh(Recipient::Node, key, None);
	let OuterHop::TrampolineEntry {
		amt_to_forward,
		outgoing_cltv_value,
		payment_data,
		current_path_key: None,
		trampoline_onion,
		layout,
	} = payload.hop
	else {
		return None;
	};
	let dialect = Dialect::of_outer_onion(layout);
	// LDK rejects an add on a channel we do not have with this peer: a peer
	// without one must not make us write anything.
	if !node.has_channel(peer, &msg.channel_id) {
		return None;
	}
	let outer_ss = outer.shared_secret;
	let key = htlc_key(&msg.channel_id, msg.htlc_id);
	let peer_hex = peer.to_string();
	// LDK accepts one add per HTLC id: a record under this id is either the
	// committed HTLC LDK holds (and this add is a protocol violation LDK
	// rejects; the record is never rewritten), or an add a disconnection
	// dropped before commitment, whose record is stale: this add (a
	// retransmission or another one) is judged afresh, admission included.
	if core.store.htlc(&key).is_some() {
		if node.has_inbound_htlc(peer, &msg.channel_id, msg.htlc_id) {
			log_error!(core.logger, "Peer {peer} sent another add under HTLC id {key}");
			return None;
		}
		if let Err(e) = core.store.remove_htlc(&key) {
			log_error!(core.logger, "Cannot forget the stale HTLC record {key}: {e}");
			return None;
		}
	}

	let htlc = HtlcFacts { amount_msat: msg.amount_msat, cltv_expiry: msg.cltv_expiry };
	let outer_facts = |total_msat| OuterFacts { amt_to_forward, outgoing_cltv_value, total_msat };
	let mut trampoline_ss = None;
	let decision = match onion::peel(&core.secp, &trampoline_onion, &msg.payment_hash.0, ecdh) {
		Err(e) => Decision::Reject {
			reason: FailReason::Verbatim { message: e.to_failure(&trampoline_onion.to_bytes()) },
		},
		Ok(inner) => {
			trampoline_ss = Some(inner.shared_secret);
			match TrampolinePayload::decode(&inner.payload) {
				Err(e) => {
					Decision::Reject { reason: FailReason::Verbatim { message: e.to_failure() } }
				},
				Ok(TrampolinePayload { hop, .. }) => {
					let context = Context { core, node, msg, key: &key, peer: &peer_hex, dialect };
					decide(&context, hop, &inner, htlc, outer_facts, payment_data)
				},
			}
		},
	};
	let final_receive = matches!(decision, Decision::Receive { .. });

	let (bucket, payment_data, amt, custom, reject) = match decision {
		Decision::PassThrough => return None,
		Decision::Forward { bucket, ldk_secret, amt, total } => (
			Some(bucket),
			PaymentData { payment_secret: ldk_secret, total_msat: total },
			amt,
			vec![(BUCKET_TLV_TYPE, bucket.to_vec())],
			None,
		),
		Decision::Receive { payment_data, payment_metadata, amt } => {
			log_info!(core.logger, "Trampoline HTLC {key} is a payment to us ({dialect:?})");
			let receive = OuterPayload::new(OuterHop::Receive {
				amt_to_forward: amt,
				outgoing_cltv_value: msg.cltv_expiry,
				payment_data: Some(payment_data),
				payment_metadata,
				keysend_preimage: None,
			});
			return finish(core, node, msg, &key, receive, |rewrite_ss| HtlcRecord {
				payment_hash: msg.payment_hash.0,
				bucket: None,
				outer_shared_secret: outer_ss.secret_bytes(),
				trampoline_shared_secret: trampoline_ss.map(|s: SharedSecret| s.secret_bytes()),
				rewrite_shared_secret: rewrite_ss,
				reject: None,
				failure_sent: None,
				peer: peer_hex.clone(),
				amount_msat: msg.amount_msat,
				cltv_expiry: msg.cltv_expiry,
				recorded_secs: now_secs(),
				resolved: false,
				reject_reason: None,
				dialect,
				final_receive,
			});
		},
		Decision::Reject { reason } => {
			let failure = wire_failure(&reason, Dialect::Spec, &core.policy);
			log_info!(core.logger, "Rejecting trampoline HTLC {key} ({dialect:?}): {reason:?}");
			// A secret LDK never issued: LDK fails the HTLC, and the outgoing
			// failure is replaced with `failure`.
			let bogus =
				PaymentSecret(core.derive(b"reject", &[&msg.payment_hash.0, key.as_bytes()]));
			(
				None,
				PaymentData { payment_secret: bogus, total_msat: msg.amount_msat },
				msg.amount_msat,
				Vec::new(),
				Some((failure.encode(), reason)),
			)
		},
	};
	let (reject, reject_reason) = match reject {
		Some((bytes, reason)) => (Some(bytes), Some(reason)),
		None => (None, None),
	};

	// The HTLC's own expiry, never the payer's onion value: LDK fails a
	// claimable HTLC back at the expiry of the receive it peeled minus 39
	// blocks, and the relay's budget is checked against the HTLC's.
	let receive = OuterPayload {
		hop: OuterHop::Receive {
			amt_to_forward: amt,
			outgoing_cltv_value: msg.cltv_expiry,
			payment_data: Some(payment_data),
			payment_metadata: None,
			keysend_preimage: None,
		},
		unknown_tlvs: UnknownTlvs::from_records(custom).ok()?,
	};
	let rewritten = finish(core, node, msg, &key, receive, |rewrite_ss| HtlcRecord {
		payment_hash: msg.payment_hash.0,
		bucket,
		outer_shared_secret: outer_ss.secret_bytes(),
		trampoline_shared_secret: trampoline_ss.map(|s: SharedSecret| s.secret_bytes()),
		rewrite_shared_secret: rewrite_ss,
		reject,
		failure_sent: None,
		peer: peer_hex,
		amount_msat: msg.amount_msat,
		cltv_expiry: msg.cltv_expiry,
		recorded_secs: now_secs(),
		resolved: false,
		reject_reason,
		dialect,
		final_receive,
	})?;
	if let Some(id) = &bucket {
		core.metrics().received(id);
	}
	Some(rewritten)
}

/// Builds the one-hop onion to ourselves carrying `receive` (session key
/// derived from the payer's ephemeral key and the payment hash, so that a
/// retransmission is rewritten to the same bytes), records the HTLC
/// (`record` gets the rewrite's shared secret) and returns the add to hand
/// LDK; `None` (LDK gets the payer's add) if any step fails.
fn finish<N: InboundNode + ?Sized>(
	core: &RelayCore, node: &N, msg: &UpdateAddHTLC, key: &str, receive: OuterPayload,
	record: impl FnOnce([u8; 32]) -> HtlcRecord,
) -> Option<UpdateAddHTLC> {
	let pubkey = msg.onion_routing_packet.public_key.ok()?;
	let session_key = core.derive(b"rewrite", &[&pubkey.serialize(), &msg.payment_hash.0]);
	let session_key = SecretKey::from_slice(&session_key).ok()?;
	let hop = SphinxHop { node_id: node.our_node_id(), payload: receive.encode().ok()? };
	let built = match onion::build(
		&core.secp,
		&session_key,
		&[hop],
		&msg.payment_hash.0,
		PAYMENT_ONION_HOP_PAYLOADS_LEN,
	) {
		Ok(built) => built,
		Err(e) => {
			log_error!(core.logger, "Cannot rewrite trampoline HTLC {key}: {e}");
			return None;
		},
	};
	let record = record(built.shared_secrets.first()?.secret_bytes());
	if let Err(e) = core.store.put_htlc(key, record) {
		log_error!(core.logger, "Cannot record trampoline HTLC {key}, leaving it to LDK: {e}");
		return None;
	}
	let onion_routing_packet = msgs::OnionPacket::try_from(&built.packet).ok()?;
	log_debug!(core.logger, "Rewrote trampoline HTLC {key} for LDK");
	Some(UpdateAddHTLC { onion_routing_packet, ..msg.clone() })
}

/// The HTLC being decided on.
struct Context<'a, N: ?Sized> {
	core: &'a RelayCore,
	node: &'a N,
	msg: &'a UpdateAddHTLC,
	key: &'a str,
	/// The offering peer, hex.
	peer: &'a str,
	/// The payer's dialect.
	dialect: Dialect,
}

fn decide<N: InboundNode + ?Sized>(
	cx: &Context<'_, N>, hop: TrampolineHop, inner: &PeeledOnion, htlc: HtlcFacts,
	outer_facts: impl Fn(u64) -> OuterFacts, payment_data: Option<PaymentData>,
) -> Decision {
	let Context { core, node, msg, key, dialect, .. } = *cx;
	let payment_data_outer = payment_data;
	let (inner_amt, inner_cltv, next_packet) = match (hop, &inner.next) {
		// LDK 0.2.7 receives a type-20 trampoline payment itself.
		(TrampolineHop::Receive { .. }, _) if dialect == Dialect::Spec => {
			return Decision::PassThrough
		},
		(TrampolineHop::BlindedReceive { .. }, _) => return Decision::PassThrough,
		// A legacy payment to us (66100 is not LDK's).
		(receive @ TrampolineHop::Receive { .. }, _) => {
			return receive_for_us(receive, htlc, outer_facts, payment_data)
		},
		// Electrum's end-to-end payment to an invoice of ours with us as its
		// only trampoline: the next trampoline is us, and the next layer
		// (ours too) receives.
		(TrampolineHop::ToTrampoline { outgoing_node_id, .. }, NextPacket::Forward(next))
			if outgoing_node_id == node.our_node_id() =>
		{
			let ecdh = |key: &PublicKey| core.signer.ecdh(Recipient::Node, key, None);
			let ours = onion::peel(&core.secp, next, &msg.payment_hash.0, ecdh);
			let hop = match ours.map(|o| TrampolinePayload::decode(&o.payload)) {
				Ok(Ok(TrampolinePayload { hop, .. })) => hop,
				Ok(Err(e)) => {
					return Decision::Reject {
						reason: FailReason::Verbatim { message: e.to_failure() },
					}
				},
				Err(e) => {
					return Decision::Reject {
						reason: FailReason::Verbatim { message: e.to_failure(&next.to_bytes()) },
					}
				},
			};
			return match hop {
				receive @ TrampolineHop::Receive { .. } => {
					receive_for_us(receive, htlc, outer_facts, payment_data)
				},
				// A route through us twice: not relayed.
				_ => Decision::Reject { reason: FailReason::UnknownNextNode },
			};
		},
		// A legacy recipient that is us (Electrum pays an invoice of ours
		// without trampoline bits through us as a legacy relay): the invoice
		// data is all a receive needs.
		(
			TrampolineHop::ToLegacyRecipient {
				amt_to_forward,
				outgoing_cltv_value,
				outgoing_node_id,
				payment_data,
				payment_metadata,
				..
			},
			_,
		) if outgoing_node_id == node.our_node_id() => {
			let receive = TrampolineHop::Receive {
				amt_to_forward,
				outgoing_cltv_value,
				payment_data: Some(payment_data),
				payment_metadata,
			};
			return receive_for_us(receive, htlc, outer_facts, payment_data_outer);
		},
		(
			TrampolineHop::ToLegacyRecipient { amt_to_forward, outgoing_cltv_value, .. }
			| TrampolineHop::ToBlindedPaths { amt_to_forward, outgoing_cltv_value, .. },
			_,
		) => (amt_to_forward, outgoing_cltv_value, None),
		(
			TrampolineHop::ToTrampoline { amt_to_forward, outgoing_cltv_value, .. },
			NextPacket::Forward(next),
		) => (amt_to_forward, outgoing_cltv_value, Some(next.to_bytes())),
		// A next trampoline but nothing left for it in the onion.
		(TrampolineHop::ToTrampoline { .. }, NextPacket::Final) => {
			return Decision::Reject {
				reason: FailReason::Verbatim {
					message: FailureMessage::InvalidOnionPayload {
						tlv_type: onion::types::OUTGOING_NODE_ID,
						offset: 0,
					},
				},
			}
		},
		// Not relayed by this version: inside a blinded path.
		_ => return Decision::Reject { reason: FailReason::Unsupported },
	};
	let outer = outer_facts(0);
	// Without outer payment_data (LDK's trampoline sender without a secret),
	// the HTLC is a payment of its own: its amount is the total.
	let payment_data = payment_data.unwrap_or_else(|| PaymentData {
		payment_secret: PaymentSecret(
			core.derive(b"no outer secret", &[&msg.payment_hash.0, key.as_bytes()]),
		),
		total_msat: outer.amt_to_forward,
	});
	let outer = outer_facts(payment_data.total_msat);
	let inner_facts = InnerFacts { amt_to_forward: inner_amt, outgoing_cltv_value: inner_cltv };
	if let Err(reason) = rules::check_onion_layers(htlc, outer, inner_facts) {
		return Decision::Reject { reason };
	}

	let payment_hash = PaymentHash(msg.payment_hash.0);
	let id = bucket_id(&payment_hash, &payment_data.payment_secret);
	// Admission, superseding and creation are one step per payment hash: two
	// buckets of one hash arriving at once cannot both be admitted.
	let _hash = core.store.lock_payment_hash(&payment_hash.0);
	let existing = core.store.bucket(&id);
	let others: Vec<_> =
		core.store.buckets_of_hash(&payment_hash.0).into_iter().filter(|(b, _)| *b != id).collect();
	let other_live = others.iter().any(|(other, bucket)| {
		let unresolved = core.store.htlcs_of(other).iter().filter(|(_, h)| !h.resolved).count();
		rules::is_live(bucket, unresolved)
	});
	let load = core.store.peer_load(cx.peer);
	if let Err(reason) = rules::admit_to_bucket(
		&id,
		existing.as_ref(),
		other_live,
		&load,
		msg.amount_msat,
		&core.limits,
	) {
		return Decision::Reject { reason };
	}
	let ldk_secret = match &existing {
		Some(bucket) => PaymentSecret(bucket.ldk_secret),
		None => {
			let Some(secret) =
				node.create_inbound_payment_for_hash(payment_hash, BUCKET_SECRET_EXPIRY_SECS)
			else {
				return Decision::Reject { reason: FailReason::Internal };
			};
			// The older buckets of this hash are over in LDK: nothing done by
			// payment hash may be done for them from now on.
			for (other, _) in &others {
				if core.store.update_bucket(other, |b| b.superseded = true).is_err() {
					return Decision::Reject { reason: FailReason::Internal };
				}
			}
			secret
		},
	};
	let created = BucketRecord {
		payment_hash: payment_hash.0,
		outer_secret: payment_data.payment_secret.0,
		outer_total_msat: payment_data.total_msat,
		ldk_secret: ldk_secret.0,
		min_incoming_cltv: msg.cltv_expiry,
		trampoline_payload: inner.payload.clone(),
		next_packet,
		payment_id: None,
		state: BucketState::Receiving,
		claim_deadline: None,
		superseded: false,
		dialect,
	};
	let stored = core.store.update_or_create_bucket(
		&id,
		|| Some(created),
		|b| b.min_incoming_cltv = b.min_incoming_cltv.min(msg.cltv_expiry),
	);
	let bucket = match stored {
		Ok(Some(bucket)) => bucket,
		_ => return Decision::Reject { reason: FailReason::Internal },
	};
	Decision::Forward {
		bucket: id,
		ldk_secret: PaymentSecret(bucket.ldk_secret),
		amt: outer.amt_to_forward,
		total: payment_data.total_msat,
	}
}

/// The final-node rules for a trampoline payment to us (`receive`, the
/// payload of the last trampoline layer, which is ours): the invoice's
/// payment secret and total in it, and no more than the outer onion and the
/// HTLC carry (PROTOCOL.md). LDK then checks the secret against our
/// invoice, aggregates the parts and emits an ordinary `PaymentClaimable`.
///
/// LDK is told the outer total (what the payer's parts add up to, its fee
/// to us as trampoline included: we are its trampoline and its recipient
/// and keep both), so that the parts complete the set exactly; the invoice's
/// amount is at most the inner total, which is at most the outer one.
fn receive_for_us(
	receive: TrampolineHop, htlc: HtlcFacts, outer_facts: impl Fn(u64) -> OuterFacts,
	payment_data: Option<PaymentData>,
) -> Decision {
	let TrampolineHop::Receive {
		amt_to_forward,
		outgoing_cltv_value,
		payment_data: Some(invoice),
		payment_metadata,
	} = receive
	else {
		// No invoice secret: nothing LDK could check this against.
		return Decision::Reject {
			reason: FailReason::Verbatim {
				message: FailureMessage::InvalidOnionPayload {
					tlv_type: onion::types::PAYMENT_DATA,
					offset: 0,
				},
			},
		};
	};
	let outer = outer_facts(0);
	let total_msat = payment_data.map_or(outer.amt_to_forward, |d| d.total_msat);
	let outer = outer_facts(total_msat);
	let inner = InnerFacts { amt_to_forward, outgoing_cltv_value };
	if let Err(reason) = rules::check_onion_layers(htlc, outer, inner) {
		return Decision::Reject { reason };
	}
	if invoice.total_msat > total_msat {
		return Decision::Reject {
			reason: FailReason::Verbatim {
				message: FailureMessage::FinalIncorrectHtlcAmount {
					incoming_htlc_amt: outer.amt_to_forward,
				},
			},
		};
	}
	Decision::Receive {
		payment_data: PaymentData { payment_secret: invoice.payment_secret, total_msat },
		payment_metadata,
		amt: outer.amt_to_forward,
	}
}
