//! Paying a BOLT 11 or BOLT 12 invoice through one or more trampoline nodes:
//! the wallet builds the trampoline onion (every trampoline but the last is
//! told the next one, spec layout; the last gets a "trampoline to legacy
//! recipient" payload with a BOLT 11 invoice's data, legacy layout, or a BOLT
//! 12 invoice's blinded paths, spec layout), and pays the first trampoline
//! natively with LDK, the onion riding in custom TLV 66100 (LDK sends custom
//! TLVs >= 65536 as they are). The message handler substitutes its own outer
//! onion ([`SenderState`]; for paths through other nodes, the ones
//! [`TrampolineRouter`] saw LDK choose) so that the trampolines' failures can
//! be decrypted, and [`TrampolineRetries`]
//! pays again with the fee a trampoline asks for, within a budget.

use std::collections::HashMap;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::ecdh::SharedSecret;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::channelmanager::{
	AChannelManager, PaymentId, RecipientOnionFields, Retry, RetryableSendFailure,
};
use lightning::offers::invoice::Bolt12Invoice;
use lightning::routing::router::{PaymentParameters, RouteParameters};
use lightning::types::features::{Bolt11InvoiceFeatures, InitFeatures};
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning_invoice::Bolt11Invoice;

mod intercept;
mod retry;
mod router;
pub use intercept::{
	ended_payment, OutboundTamper, RelayedFailure, SenderCounts, SenderState, SentOnion,
	FAILURE_HISTORY,
};
pub use retry::{
	escalation, next_route, AfterFailure, Escalation, NoRetry, ReceivedInvoice, TrampolineBudget,
	TrampolineRetries, LEGACY_CLTV_EXPIRY_DELTA, LEGACY_FEE_LEVELS, MAX_ATTEMPTS,
};
pub use router::{RouteShortfall, TrampolineRouter};

use crate::onion::{
	self, exact_hop_payloads_len, types, LegacyRouteHintHop, OnionPacket, PaymentBlindedPath,
	PaymentData, SphinxHop, TlvLayout, TrampolineHop, TrampolinePayload,
};

/// `hop_payloads` size of the trampoline onion: eclair's and Electrum's legacy
/// size, grown only if the payloads (route hints) need more.
pub const TRAMPOLINE_HOP_PAYLOADS_LEN: usize = 400;

/// The largest trampoline onion `hop_payloads` the sender builds: what still
/// leaves room for the outer payload in a 1300-byte payment onion.
pub const MAX_TRAMPOLINE_HOP_PAYLOADS_LEN: usize = 1000;

/// Blocks added to the invoice's `min_final_cltv_expiry_delta`, for blocks
/// found while the payment is in flight.
pub const FINAL_CLTV_MARGIN: u32 = 6;

/// Errors of the trampoline sender.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
	/// The invoice has no amount.
	#[error("the invoice has no amount")]
	NoAmount,
	/// No trampoline was given.
	#[error("a trampoline route needs at least one trampoline node")]
	NoTrampoline,
	/// The trampoline onion cannot be built.
	#[error("cannot build the trampoline onion: {0}")]
	Onion(String),
	/// The trampoline onion would not fit in the payment onion.
	#[error("the trampoline onion is larger than {MAX_TRAMPOLINE_HOP_PAYLOADS_LEN} bytes")]
	TooLarge,
	/// LDK refused to start the payment.
	#[error("LDK refused the payment: {0:?}")]
	Send(RetryableSendFailure),
	/// An amount of the route (the invoice's, a trampoline's fee, a blinded
	/// path's fee) does not fit in a u64 of msat.
	#[error("the {what} overflows a u64 of msat")]
	AmountOverflow {
		/// Which amount.
		what: &'static str,
	},
	/// A CLTV expiry of the route (the invoice's final delta, a blinded
	/// path's or a trampoline's delta) does not fit in a u32 of blocks.
	#[error("the {what} overflows a u32 of blocks")]
	CltvOverflow {
		/// Which expiry.
		what: &'static str,
	},
}

/// `a + b`, or [`SenderError::AmountOverflow`] naming `what`.
fn add_msat(a: u64, b: u64, what: &'static str) -> Result<u64, SenderError> {
	a.checked_add(b).ok_or(SenderError::AmountOverflow { what })
}

/// `a + b`, or [`SenderError::CltvOverflow`] naming `what`.
fn add_blocks(a: u32, b: u32, what: &'static str) -> Result<u32, SenderError> {
	a.checked_add(b).ok_or(SenderError::CltvOverflow { what })
}

/// The fee a blinded path's payinfo asks for forwarding `amount_msat`:
/// `fee_base_msat + amount_msat * fee_proportional_millionths / 1_000_000`,
/// computed without overflow (the payinfo is the invoice's: anyone's).
pub fn blinded_path_fee_msat(
	amount_msat: u64, fee_base_msat: u32, fee_proportional_millionths: u32,
) -> Result<u64, SenderError> {
	let proportional =
		u128::from(amount_msat) * u128::from(fee_proportional_millionths) / 1_000_000;
	let proportional = u64::try_from(proportional)
		.map_err(|_| SenderError::AmountOverflow { what: "blinded path's proportional fee" })?;
	add_msat(u64::from(fee_base_msat), proportional, "blinded path's fee")
}

/// One trampoline node of a trampoline route, with what it is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrampolineRouteHop {
	/// The trampoline node.
	pub node_id: PublicKey,
	/// The fee it may keep, msat.
	pub fee_msat: u64,
	/// The CLTV delta it may keep, blocks.
	pub cltv_expiry_delta: u16,
	/// Ask the trampoline before this one to hold the payment until this
	/// node is connected to it (eclair's `async_payment`, TLV 181324718:
	/// for a next node that is often offline). Ignored on the first hop.
	pub async_payment: bool,
}

/// A trampoline payment in flight.
#[derive(Clone, Debug)]
pub struct TrampolineSend {
	/// LDK's payment id (the invoice's payment hash).
	pub payment_id: PaymentId,
	/// What is paid to the first trampoline: invoice amount plus every
	/// trampoline's fee.
	pub amount_msat: u64,
	/// The trampoline onion's shared secrets, one per trampoline, in route
	/// order.
	pub trampoline_shared_secrets: Vec<SharedSecret>,
}

/// A trampoline onion to a legacy BOLT 11 recipient.
#[derive(Clone, Debug)]
pub struct TrampolineOnion {
	/// The trampoline packet (what goes in TLV 66100 or 20).
	pub packet: OnionPacket,
	/// The shared secret with each trampoline, in route order.
	pub shared_secrets: Vec<SharedSecret>,
	/// The invoice amount (what the recipient gets).
	pub amount_msat: u64,
	/// The recipient's final CLTV delta from the current height.
	pub final_cltv_delta: u32,
	/// What the first trampoline must receive: the amount plus every fee.
	pub first_amount_msat: u64,
	/// The first trampoline's CLTV delta from the current height: the final
	/// delta plus every trampoline's delta.
	pub first_cltv_delta: u32,
}

/// What a trampoline route pays.
#[derive(Clone, Debug)]
pub enum TrampolineInvoice {
	/// A BOLT 11 invoice: the last trampoline pays it as a legacy recipient
	/// (its node id, features, route hints, secret and total).
	Bolt11(Bolt11Invoice),
	/// A BOLT 12 invoice: the last trampoline pays its blinded paths.
	Bolt12(Box<Bolt12Invoice>),
}

impl TrampolineInvoice {
	/// The invoice's payment hash.
	pub fn payment_hash(&self) -> PaymentHash {
		match self {
			Self::Bolt11(invoice) => PaymentHash(invoice.payment_hash().to_byte_array()),
			Self::Bolt12(invoice) => invoice.payment_hash(),
		}
	}

	/// The amount the recipient must receive, if the invoice sets one.
	pub fn amount_msat(&self) -> Option<u64> {
		match self {
			Self::Bolt11(invoice) => invoice.amount_milli_satoshis(),
			Self::Bolt12(invoice) => Some(invoice.amount_msats()),
		}
	}
}

impl From<Bolt11Invoice> for TrampolineInvoice {
	fn from(invoice: Bolt11Invoice) -> Self {
		Self::Bolt11(invoice)
	}
}

impl From<Bolt12Invoice> for TrampolineInvoice {
	fn from(invoice: Bolt12Invoice) -> Self {
		Self::Bolt12(Box::new(invoice))
	}
}

/// How the last trampoline of a route reads a "trampoline to legacy
/// recipient" payload (a BOLT 11 invoice's data), known from its `init`
/// features when it is our peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LastTrampoline {
	/// Our relay (bits 56/57) or a node we know nothing of: the onion ends
	/// at the last trampoline (our relay also takes the legacy shape below).
	#[default]
	Spec,
	/// eclair, or Electrum 4.5 and later (bits 148/149 or 150/151, not
	/// 56/57): a legacy trampoline forwards only when the trampoline onion
	/// goes on past it (Electrum `lnpeer.py`, `are_we_final`; eclair's
	/// older NodeRelay), so the onion carries a final hop for the recipient
	/// after it, as Electrum and eclair's wallets build it (`trampoline.py`,
	/// "eclair requires an encrypted blob"): amount, expiry and the invoice
	/// secret and total, which the trampoline never reads.
	Legacy,
	/// Electrum before 4.5 (bit 151 without 56/57, `var_onion` only
	/// optional: 4.5.0 made it required): [`Self::Legacy`], and it reads the
	/// `outgoing_cltv_value` of a legacy payload as a delta from its own
	/// height (`maybe_forward_trampoline` passes it to `pay_to_node` as
	/// `min_cltv_expiry`; fixed in Electrum b0401a6, 4.5.0). Given the
	/// absolute expiry, it would pay the recipient at about twice the
	/// height, past its own 4032-block limit on mainnet. Its payload says
	/// the recipient's final delta instead.
	LegacyRelativeCltv,
}

impl LastTrampoline {
	/// What a trampoline with these `init` features is (`None`: not our
	/// peer, [`Self::Spec`]).
	pub fn of(features: Option<&InitFeatures>) -> Self {
		let Some(features) = features else { return Self::Spec };
		let flags = features.le_flags();
		let bit = |n: usize| flags.get(n / 8).is_some_and(|byte| byte & (1 << (n % 8)) != 0);
		if bit(56) || bit(57) || !speaks_trampoline(features) {
			Self::Spec
		} else if (bit(150) || bit(151)) && !bit(8) {
			Self::LegacyRelativeCltv
		} else {
			Self::Legacy
		}
	}
}

/// The last trampoline's payload and what it spends beyond its own fee.
struct FinalLeg {
	payload: TrampolineHop,
	/// Fees the last trampoline pays on the recipient's side (the blinded
	/// paths' fees), msat.
	fee_msat: u64,
	/// The CLTV the last trampoline must forward the payment with.
	outgoing_cltv_value: u32,
	/// A hop after the last trampoline, for a legacy one
	/// ([`LastTrampoline::Legacy`]).
	recipient_hop: Option<SphinxHop>,
}

fn bolt11_leg(
	invoice: &Bolt11Invoice, height: u32, last: LastTrampoline,
) -> Result<FinalLeg, SenderError> {
	let amount_msat = invoice.amount_milli_satoshis().ok_or(SenderError::NoAmount)?;
	let final_cltv_delta = u32::try_from(invoice.min_final_cltv_expiry_delta())
		.map_err(|_| SenderError::CltvOverflow { what: "invoice's final CLTV delta" })
		.and_then(|delta| add_blocks(delta, FINAL_CLTV_MARGIN, "invoice's final CLTV delta"))?;
	let hints = invoice
		.route_hints()
		.iter()
		.map(|hint| {
			hint.0
				.iter()
				.map(|hop| LegacyRouteHintHop {
					node_id: hop.src_node_id,
					short_channel_id: hop.short_channel_id,
					fee_base_msat: hop.fees.base_msat,
					fee_proportional_millionths: hop.fees.proportional_millionths,
					cltv_expiry_delta: hop.cltv_expiry_delta,
				})
				.collect()
		})
		.collect();
	let outgoing_cltv_value = add_blocks(height, final_cltv_delta, "recipient's CLTV expiry")?;
	let payment_data =
		PaymentData { payment_secret: *invoice.payment_secret(), total_msat: amount_msat };
	let recipient = invoice.recover_payee_pub_key();
	let recipient_hop = match last {
		LastTrampoline::Spec => None,
		LastTrampoline::Legacy | LastTrampoline::LegacyRelativeCltv => Some(SphinxHop {
			node_id: recipient,
			payload: TrampolinePayload::new(TrampolineHop::Receive {
				amt_to_forward: amount_msat,
				outgoing_cltv_value,
				payment_data: Some(payment_data),
				payment_metadata: None,
			})
			.encode()
			.map_err(|e| SenderError::Onion(e.to_string()))?,
		}),
	};
	Ok(FinalLeg {
		payload: TrampolineHop::ToLegacyRecipient {
			amt_to_forward: amount_msat,
			outgoing_cltv_value: match last {
				LastTrampoline::LegacyRelativeCltv => final_cltv_delta,
				LastTrampoline::Spec | LastTrampoline::Legacy => outgoing_cltv_value,
			},
			outgoing_node_id: recipient,
			payment_data,
			payment_metadata: invoice.payment_metadata().cloned(),
			invoice_features: invoice
				.features()
				.map(|f| f.le_flags().iter().rev().copied().collect()),
			invoice_routing_info: hints,
		},
		fee_msat: 0,
		outgoing_cltv_value,
		recipient_hop,
	})
}

/// The blinded paths of `invoice`, the first `count` of them: the last
/// trampoline is offered the dearest path's fee and CLTV delta, and forwards
/// with the CLTV that path needs (its delta includes the recipient's final
/// delta).
fn bolt12_leg(invoice: &Bolt12Invoice, height: u32, count: usize) -> Result<FinalLeg, SenderError> {
	let amount_msat = invoice.amount_msats();
	let paths: Vec<PaymentBlindedPath> = invoice
		.payment_paths()
		.iter()
		.take(count)
		.filter_map(PaymentBlindedPath::from_ldk)
		.collect();
	let (fee_msat, outgoing_cltv_value) = blinded_leg_costs(amount_msat, &paths, height)?;
	Ok(FinalLeg {
		payload: TrampolineHop::ToBlindedPaths {
			amt_to_forward: amount_msat,
			outgoing_cltv_value,
			paths,
			recipient_features: Some(
				invoice.invoice_features().le_flags().iter().rev().copied().collect(),
			),
			layout: TlvLayout::Spec,
		},
		fee_msat,
		outgoing_cltv_value,
		recipient_hop: None,
	})
}

/// What paying `amount_msat` over the dearest of `paths` costs the last
/// trampoline (the largest fee, msat) and the CLTV it forwards with (`height`
/// plus the largest delta plus [`FINAL_CLTV_MARGIN`]): checked, the
/// payinfos being the invoice's.
fn blinded_leg_costs(
	amount_msat: u64, paths: &[PaymentBlindedPath], height: u32,
) -> Result<(u64, u32), SenderError> {
	let mut fee_msat = 0;
	let mut path_cltv = 0;
	for path in paths {
		let info = path.payinfo();
		let fee = blinded_path_fee_msat(
			amount_msat,
			info.fee_base_msat,
			info.fee_proportional_millionths,
		)?;
		fee_msat = fee_msat.max(fee);
		path_cltv = path_cltv.max(u32::from(info.cltv_expiry_delta));
	}
	let outgoing_cltv_value = add_blocks(height, path_cltv, "blinded paths' CLTV expiry")
		.and_then(|cltv| add_blocks(cltv, FINAL_CLTV_MARGIN, "blinded paths' CLTV expiry"))?;
	Ok((fee_msat, outgoing_cltv_value))
}

/// Builds the trampoline onion through `route` to the recipient of `invoice`:
/// each trampoline but the last is told the next one (spec layout, type 14);
/// the last gets what it needs to pay the recipient: for BOLT 11 the
/// invoice's data (66098 recipient, 66097 features, 66099 route hints, the
/// invoice secret and total) for the recipient to receive at `height +
/// min_final_cltv + FINAL_CLTV_MARGIN`; for BOLT 12 the invoice's blinded
/// paths and features (22, 21), as many paths as fit in
/// [`MAX_TRAMPOLINE_HOP_PAYLOADS_LEN`], its fee raised by the dearest path's.
/// The onion ends at the last trampoline ([`LastTrampoline::Spec`]).
pub fn trampoline_onion(
	invoice: &TrampolineInvoice, route: &[TrampolineRouteHop], height: u32,
) -> Result<TrampolineOnion, SenderError> {
	trampoline_onion_for(invoice, route, height, LastTrampoline::Spec, &[])
}

/// [`trampoline_onion`] for a last trampoline that reads a BOLT 11 leg as
/// `last` says (a legacy one gets a final hop for the recipient after it,
/// and Electrum before 4.5 a relative expiry), and trampolines before it
/// whose payloads name the next trampoline in `layouts[i]` (type 14, or
/// 66098 for a legacy trampoline, see [`outer_layout`]; a missing entry is
/// type 14).
pub fn trampoline_onion_for(
	invoice: &TrampolineInvoice, route: &[TrampolineRouteHop], height: u32, last: LastTrampoline,
	layouts: &[TlvLayout],
) -> Result<TrampolineOnion, SenderError> {
	let amount_msat = invoice.amount_msat().ok_or(SenderError::NoAmount)?;
	match invoice {
		TrampolineInvoice::Bolt11(invoice) => build_trampoline_onion(
			invoice.payment_hash().to_byte_array(),
			bolt11_leg(invoice, height, last)?,
			amount_msat,
			route,
			height,
			layouts,
		),
		TrampolineInvoice::Bolt12(bolt12) => {
			// Drop paths from the end until the onion fits.
			let mut count = bolt12.payment_paths().len();
			loop {
				if count == 0 {
					return Err(SenderError::Onion(
						"no blinded path of the invoice fits in a trampoline onion".into(),
					));
				}
				let leg = bolt12_leg(bolt12, height, count)?;
				match build_trampoline_onion(
					invoice.payment_hash().0,
					leg,
					amount_msat,
					route,
					height,
					layouts,
				) {
					Err(SenderError::TooLarge) => count -= 1,
					built => return built,
				}
			}
		},
	}
}

fn build_trampoline_onion(
	payment_hash: [u8; 32], leg: FinalLeg, amount_msat: u64, route: &[TrampolineRouteHop],
	height: u32, layouts: &[TlvLayout],
) -> Result<TrampolineOnion, SenderError> {
	let last = route.last().ok_or(SenderError::NoTrampoline)?;
	let encode =
		|hop| TrampolinePayload::new(hop).encode().map_err(|e| SenderError::Onion(e.to_string()));
	let final_cltv_delta = leg
		.outgoing_cltv_value
		.checked_sub(height)
		.ok_or(SenderError::CltvOverflow { what: "recipient's CLTV delta" })?;
	// What the last trampoline forwards, with what it pays on the recipient's side.
	let mut amount = add_msat(amount_msat, leg.fee_msat, "amount with the recipient's fees")?;
	let mut cltv = leg.outgoing_cltv_value;
	let mut payloads = vec![encode(leg.payload)?];
	// Backwards from the last trampoline: each one is told what the next one
	// must receive.
	let mut next = last;
	for (index, hop) in route.iter().enumerate().rev().skip(1) {
		amount = add_msat(amount, next.fee_msat, "amount with the trampolines' fees")?;
		cltv = add_blocks(cltv, next.cltv_expiry_delta.into(), "trampolines' CLTV expiry")?;
		payloads.push(encode(TrampolineHop::ToTrampoline {
			amt_to_forward: amount,
			outgoing_cltv_value: cltv,
			outgoing_node_id: next.node_id,
			async_payment: next.async_payment,
			// Electrum 4.3.4 refuses type 14 as an unknown even type
			// (`UnknownMandatoryTLVRecordType('tlv_payload/14')`).
			layout: layouts.get(index).copied().unwrap_or(TlvLayout::Spec),
		})?);
		next = hop;
	}
	let first_amount_msat = add_msat(amount, next.fee_msat, "amount with the trampolines' fees")?;
	let first_cltv_delta =
		add_blocks(cltv, next.cltv_expiry_delta.into(), "trampolines' CLTV expiry")?
			.checked_sub(height)
			.ok_or(SenderError::CltvOverflow { what: "trampolines' CLTV delta" })?;
	let mut hops: Vec<SphinxHop> = route
		.iter()
		.zip(payloads.into_iter().rev())
		.map(|(hop, payload)| SphinxHop { node_id: hop.node_id, payload })
		.collect();
	hops.extend(leg.recipient_hop);
	let len = exact_hop_payloads_len(&hops).max(TRAMPOLINE_HOP_PAYLOADS_LEN);
	if len > MAX_TRAMPOLINE_HOP_PAYLOADS_LEN {
		return Err(SenderError::TooLarge);
	}
	let session_key = SecretKey::from_slice(&rand::random::<[u8; 32]>())
		.map_err(|e| SenderError::Onion(e.to_string()))?;
	let built = onion::build(&Secp256k1::new(), &session_key, &hops, &payment_hash, len)
		.map_err(|e| SenderError::Onion(e.to_string()))?;
	// The recipient's hop is never peeled by a trampoline: one secret per
	// trampoline.
	let mut shared_secrets = built.shared_secrets;
	shared_secrets.truncate(route.len());
	Ok(TrampolineOnion {
		packet: built.packet,
		shared_secrets,
		amount_msat,
		final_cltv_delta,
		first_amount_msat,
		first_cltv_delta,
	})
}

/// The outer payment to a trampoline node carrying a trampoline packet.
#[derive(Clone, Debug)]
pub struct OuterSend {
	/// The payment hash.
	pub payment_hash: PaymentHash,
	/// The trampoline node paid.
	pub trampoline: PublicKey,
	/// The serialized trampoline packet for it.
	pub trampoline_packet: Vec<u8>,
	/// What is sent, msat (LDK may split it over several paths).
	pub amount_msat: u64,
	/// The outer `total_msat` announced to the trampoline. It is
	/// `amount_msat` except to send one part of a larger payment (the rest
	/// being sent separately): only honoured over a direct channel, where the
	/// outer onion is ours.
	pub total_msat: u64,
	/// The trampoline receives the HTLCs with this many blocks from now.
	pub cltv_expiry_delta: u32,
	/// The outer payment secret (fresh and random: never the invoice's).
	pub outer_secret: PaymentSecret,
	/// LDK's payment id.
	pub payment_id: PaymentId,
	/// How often LDK may retry over other paths.
	pub retry: Retry,
	/// The routing fee budget to reach the trampoline (`None`: LDK's default).
	pub max_routing_fee_msat: Option<u64>,
	/// The CLTV budget of the outer route (`None`: to a direct peer, exactly
	/// `cltv_expiry_delta`; else LDK's default).
	pub max_total_cltv_expiry_delta: Option<u32>,
}

/// Whether a peer advertises trampoline routing: bits 56/57 (spec), 148/149
/// (eclair) or 150/151 (Electrum).
pub fn speaks_trampoline(features: &InitFeatures) -> bool {
	[56, 57, 148, 149, 150, 151].into_iter().any(|n| has_bit(features.le_flags(), n))
}

fn has_bit(flags: &[u8], n: usize) -> bool {
	flags.get(n / 8).is_some_and(|byte| byte & (1 << (n % 8)) != 0)
}

/// Which trampoline dialects a feature vector (`init`, node or invoice)
/// advertises, each by its required or optional bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrampolineDialects {
	/// Bits 56/57: the spec's trampoline routing (type 20 onions).
	pub spec: bool,
	/// Bits 148/149: eclair's legacy trampoline (type 66100 onions).
	pub eclair_legacy: bool,
	/// Bits 150/151: Electrum's legacy trampoline (type 66100 onions).
	pub electrum_legacy: bool,
}

impl TrampolineDialects {
	/// The dialects of the little-endian feature flags `le_flags`.
	pub fn of_flags(le_flags: &[u8]) -> Self {
		let pair = |n: usize| has_bit(le_flags, n) || has_bit(le_flags, n + 1);
		Self { spec: pair(56), eclair_legacy: pair(148), electrum_legacy: pair(150) }
	}
}

/// The numbers of the bits set in the little-endian feature flags
/// `le_flags`, lowest first.
pub fn feature_bits(le_flags: &[u8]) -> Vec<usize> {
	(0..le_flags.len().saturating_mul(8)).filter(|n| has_bit(le_flags, *n)).collect()
}

/// How to hand a trampoline with these (`init`) features its packet: type 20
/// if it speaks the spec (bits 56/57; our relay sets them with 151 and then
/// answers in the spec's codes, which carry its policy), else 66100, the
/// legacy number eclair and Electrum read (bits 148-151 only), whose
/// failures come back under the outer secret with legacy codes. A
/// trampoline we have no channel with (`None`): type 20.
pub fn outer_layout(features: Option<&InitFeatures>) -> TlvLayout {
	match features {
		Some(f)
			if !has_bit(f.le_flags(), 56) && !has_bit(f.le_flags(), 57) && speaks_trampoline(f) =>
		{
			TlvLayout::Legacy
		},
		_ => TlvLayout::Spec,
	}
}

/// The trampoline a wallet pays through when none is configured: among the
/// peers whose usable channels advertise trampoline routing, the one we can
/// send the most to, if that is at least `amount_msat` (across its
/// channels: the payment is split over them).
pub fn choose_trampoline(channels: &[ChannelDetails], amount_msat: u64) -> Option<PublicKey> {
	let mut outbound: HashMap<PublicKey, u64> = HashMap::new();
	let usable =
		channels.iter().filter(|c| c.is_usable && speaks_trampoline(&c.counterparty.features));
	for channel in usable {
		let sum = outbound.entry(channel.counterparty.node_id).or_default();
		*sum = sum.saturating_add(channel.next_outbound_htlc_limit_msat);
	}
	outbound
		.into_iter()
		.filter(|(_, sendable)| *sendable >= amount_msat)
		.max_by_key(|(node_id, sendable)| (*sendable, *node_id))
		.map(|(node_id, _)| node_id)
}

/// How long a payment waits for a channel to its first trampoline that is
/// coming back (the trampoline restarted, the connection is being
/// re-established) before it is sent anyway.
pub const REESTABLISH_WAIT: Duration = Duration::from_secs(10);

/// Whether a payment through `trampoline` should wait for its channel: we
/// have a channel with it that is ready (funded, not closing) but none that
/// is usable, the peer being disconnected or the channel reestablishing.
/// Sent now, LDK would find no route and fail it at once.
pub fn awaits_reestablish(channels: &[ChannelDetails], trampoline: &PublicKey) -> bool {
	let mut with = channels.iter().filter(|c| c.counterparty.node_id == *trampoline);
	let mut ready = false;
	for channel in &mut with {
		if channel.is_usable {
			return false;
		}
		ready |= channel.is_channel_ready;
	}
	ready
}

/// Waits until a channel to `trampoline` is usable, at most `timeout`;
/// whether one is.
pub async fn wait_for_usable_channel<C: AChannelManager + ?Sized>(
	cm: &C, trampoline: &PublicKey, timeout: Duration,
) -> bool {
	let usable =
		|| cm.get_cm().list_channels_with_counterparty(trampoline).iter().any(|c| c.is_usable);
	let deadline = tokio::time::Instant::now() + timeout;
	while !usable() {
		if tokio::time::Instant::now() >= deadline {
			return false;
		}
		// LDK announces no event when a channel is reestablished.
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
	true
}

/// Features of a trampoline node as a payee: it takes multi-part payments
/// (LDK aggregates them for the relay).
fn trampoline_payee_features() -> Bolt11InvoiceFeatures {
	let mut features = Bolt11InvoiceFeatures::empty();
	features.set_variable_length_onion_required();
	features.set_payment_secret_required();
	features.set_basic_mpp_optional();
	features
}

/// Pays `send.trampoline` with the trampoline packet in TLV 66100. With
/// `state` (the node's [`SenderState`], shared with its message handler) the
/// outer onion of HTLCs sent over a direct channel to the trampoline is ours
/// (`layout` says whether it carries the packet as type 20 or 66100), and the
/// failures that come back are decrypted with `trampoline_shared_secrets`
/// (the wallet's own trampoline route) or kept opaque for relaying (a
/// trampoline forwarding a packet it peeled: no secrets).
pub fn send_to_trampoline<C: AChannelManager + ?Sized>(
	cm: &C, send: &OuterSend, state: Option<(&SenderState, TlvLayout, Vec<SharedSecret>)>,
) -> Result<PaymentId, SenderError> {
	let cm = cm.get_cm();
	let outer = RecipientOnionFields::secret_only(send.outer_secret)
		.with_custom_tlvs(vec![(types::LEGACY_TRAMPOLINE_ONION, send.trampoline_packet.clone())])
		.map_err(|()| SenderError::Onion("custom TLV rejected by LDK".into()))?;
	let mut params = PaymentParameters::from_node_id(send.trampoline, send.cltv_expiry_delta)
		.with_bolt11_features(trampoline_payee_features())
		.map_err(|()| SenderError::Onion("LDK refused the trampoline's payee features".into()))?;
	// A next node that does not speak trampoline (an LDK recipient taking a
	// trampoline payment as final node) checks every HTLC against the whole
	// trampoline amount: one part only.
	let peer = cm.list_channels().into_iter().find(|c| c.counterparty.node_id == send.trampoline);
	if peer.is_some_and(|c| !speaks_trampoline(&c.counterparty.features)) {
		params.max_path_count = 1;
	}
	if let Some(max) = send.max_total_cltv_expiry_delta {
		params = params.with_max_total_cltv_expiry_delta(max);
	} else if cm.list_usable_channels().iter().any(|c| c.counterparty.node_id == send.trampoline) {
		// Paying our own trampoline peer (the wallet case): offer the delta
		// asked, without LDK's shadow CLTV offset on top (LDK's router needs
		// one block of room above the final delta).
		let max = add_blocks(send.cltv_expiry_delta, 1, "trampoline's CLTV delta")?;
		params = params.with_max_total_cltv_expiry_delta(max);
	}
	let mut route_params = RouteParameters::from_payment_params_and_value(params, send.amount_msat);
	route_params.max_total_routing_fee_msat = send.max_routing_fee_msat;
	let mut registered = None;
	if let Some((state, layout, trampoline_shared_secrets)) = state {
		if let Ok(packet) = OnionPacket::from_bytes(&send.trampoline_packet) {
			let new = state.register(
				send.payment_id,
				send.payment_hash,
				SentOnion {
					trampoline: send.trampoline,
					packet,
					layout,
					trampoline_shared_secrets,
					outer_secret: send.outer_secret,
					total_msat: send.total_msat,
				},
			);
			registered = new.then_some(state);
		}
	}
	match cm.send_payment(send.payment_hash, outer, send.payment_id, route_params, send.retry) {
		Ok(()) => Ok(send.payment_id),
		Err(e) => {
			// Never started (no event will end it), unless the id was live
			// already (a duplicate): forget what this call registered.
			if let Some(state) = registered {
				state.forget_payment(&send.payment_id);
			}
			Err(SenderError::Send(e))
		},
	}
}

/// Pays `invoice` through the trampolines of `route`, each offered its fee
/// and CLTV delta, as LDK payment `payment_id`. Returns once LDK has started
/// the payment; its outcome arrives as LDK's `PaymentSent` /
/// `PaymentFailed`, and what a trampoline answered from
/// [`SenderState::failure`] ([`TrampolineRetries`] acts on it).
pub fn pay_via_trampolines<C: AChannelManager + ?Sized>(
	cm: &C, invoice: &TrampolineInvoice, route: &[TrampolineRouteHop], state: Option<&SenderState>,
	payment_id: PaymentId,
) -> Result<TrampolineSend, SenderError> {
	let height = cm.get_cm().current_best_block().height;
	let features_of = |node: &PublicKey| {
		cm.get_cm()
			.list_channels_with_counterparty(node)
			.into_iter()
			.next()
			.map(|c| c.counterparty.features)
	};
	let last = route.last().ok_or(SenderError::NoTrampoline)?.node_id;
	let last = LastTrampoline::of(features_of(&last).as_ref());
	// A trampoline we have a channel with is read its payload in its
	// dialect; the others (not our peers) in the spec's.
	let layouts: Vec<TlvLayout> =
		route.iter().map(|hop| outer_layout(features_of(&hop.node_id).as_ref())).collect();
	let onion = trampoline_onion_for(invoice, route, height, last, &layouts)?;
	let send = OuterSend {
		payment_hash: invoice.payment_hash(),
		trampoline: route.first().ok_or(SenderError::NoTrampoline)?.node_id,
		trampoline_packet: onion.packet.to_bytes(),
		amount_msat: onion.first_amount_msat,
		total_msat: onion.first_amount_msat,
		cltv_expiry_delta: onion.first_cltv_delta,
		outer_secret: PaymentSecret(rand::random()),
		payment_id,
		// No retries: LDK would resend the same trampoline onion at the same
		// fee, which the trampoline answers as before (escalation is the
		// sender's job).
		retry: Retry::Attempts(0),
		max_routing_fee_msat: None,
		max_total_cltv_expiry_delta: None,
	};
	let features = cm
		.get_cm()
		.list_channels_with_counterparty(&send.trampoline)
		.into_iter()
		.next()
		.map(|c| c.counterparty.features);
	let layout = outer_layout(features.as_ref());
	let payment_id =
		send_to_trampoline(cm, &send, state.map(|s| (s, layout, onion.shared_secrets.clone())))?;
	Ok(TrampolineSend {
		payment_id,
		amount_msat: onion.first_amount_msat,
		trampoline_shared_secrets: onion.shared_secrets,
	})
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::onion::NextPacket;
	use lightning::blinded_path::payment::BlindedPayInfo;
	use lightning::blinded_path::{BlindedHop, IntroductionNode};

	fn key(byte: u8) -> PublicKey {
		PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[byte; 32]).unwrap())
	}

	fn blinded_path(fee_base_msat: u32, ppm: u32, cltv_expiry_delta: u16) -> PaymentBlindedPath {
		PaymentBlindedPath::new(
			IntroductionNode::NodeId(key(1)),
			key(2),
			vec![BlindedHop { blinded_node_id: key(3), encrypted_payload: vec![1; 10] }],
			BlindedPayInfo {
				fee_base_msat,
				fee_proportional_millionths: ppm,
				cltv_expiry_delta,
				htlc_minimum_msat: 1,
				htlc_maximum_msat: u64::MAX,
				features: lightning::types::features::BlindedHopFeatures::empty(),
			},
		)
		.unwrap()
	}

	fn route_hop(fee_msat: u64, cltv_expiry_delta: u16) -> TrampolineRouteHop {
		TrampolineRouteHop { node_id: key(4), fee_msat, cltv_expiry_delta, async_payment: false }
	}

	fn leg(fee_msat: u64, outgoing_cltv_value: u32) -> FinalLeg {
		FinalLeg {
			payload: TrampolineHop::ToBlindedPaths {
				amt_to_forward: 1_000,
				outgoing_cltv_value,
				paths: vec![blinded_path(0, 0, 0)],
				recipient_features: None,
				layout: TlvLayout::Spec,
			},
			fee_msat,
			outgoing_cltv_value,
			recipient_hop: None,
		}
	}

	/// A BOLT 11 invoice of `key(9)` for 20,000 sat, final delta 144, with
	/// ldk-node's features (var_onion, payment_secret, basic_mpp).
	fn invoice() -> Bolt11Invoice {
		use lightning_invoice::{Currency, InvoiceBuilder};
		let secp = Secp256k1::new();
		InvoiceBuilder::new(Currency::Regtest)
			.description("test".into())
			.payment_hash(bitcoin::hashes::sha256::Hash::hash(&[1; 32]))
			.payment_secret(PaymentSecret([3; 32]))
			.amount_milli_satoshis(20_000_000)
			.current_timestamp()
			.min_final_cltv_expiry_delta(144)
			.basic_mpp()
			.build_signed(|digest| {
				secp.sign_ecdsa_recoverable(digest, &SecretKey::from_slice(&[9; 32]).unwrap())
			})
			.unwrap()
	}

	#[test]
	fn a_legacy_last_trampoline_gets_a_final_hop_for_the_recipient() {
		let secp = Secp256k1::new();
		let invoice = TrampolineInvoice::Bolt11(invoice());
		let hash = invoice.payment_hash().0;
		let hop = route_hop(4_000, 576);
		let peel = |packet: &OnionPacket, byte: u8| {
			let key = SecretKey::from_slice(&[byte; 32]).unwrap();
			onion::peel_with_secret_key(&secp, &key, packet, &hash).unwrap()
		};
		for (last, expiry) in [
			(LastTrampoline::Legacy, 800 + 144 + FINAL_CLTV_MARGIN),
			// Electrum before 4.5 adds its own height to it.
			(LastTrampoline::LegacyRelativeCltv, 144 + FINAL_CLTV_MARGIN),
		] {
			let built = trampoline_onion_for(&invoice, &[hop], 800, last, &[]).unwrap();
			assert_eq!(built.shared_secrets.len(), 1);
			assert_eq!((built.first_amount_msat, built.first_cltv_delta), (20_004_000, 726));
			let trampoline = peel(&built.packet, 4);
			let payload = TrampolinePayload::decode(&trampoline.payload).unwrap();
			match payload.hop {
				TrampolineHop::ToLegacyRecipient {
					amt_to_forward,
					outgoing_cltv_value,
					outgoing_node_id,
					..
				} => {
					assert_eq!((amt_to_forward, outgoing_cltv_value), (20_000_000, expiry));
					assert_eq!(outgoing_node_id, key(9));
				},
				other => panic!("{other:?}"),
			}
			// 66097 as Electrum reads it: a u64.
			assert!(trampoline.payload.windows(6).any(|w| w == [0xfe, 0, 1, 2, 0x31, 8]));
			// The onion goes on past the trampoline: Electrum forwards
			// (`are_we_final` is false), and what follows is what Electrum
			// and eclair's wallets put there: amount, absolute expiry, the
			// invoice's secret and total (types 2, 4, 8).
			let NextPacket::Forward(next) = trampoline.next else { panic!("final at {last:?}") };
			let recipient = peel(&next, 9);
			assert!(matches!(recipient.next, NextPacket::Final));
			assert_eq!(
				TrampolinePayload::decode(&recipient.payload).unwrap().hop,
				TrampolineHop::Receive {
					amt_to_forward: 20_000_000,
					outgoing_cltv_value: 800 + 144 + FINAL_CLTV_MARGIN,
					payment_data: Some(PaymentData {
						payment_secret: PaymentSecret([3; 32]),
						total_msat: 20_000_000
					}),
					payment_metadata: None,
				}
			);
		}
		// To our relay: the onion ends at the trampoline, expiry absolute.
		let built = trampoline_onion(&invoice, &[hop], 800).unwrap();
		let trampoline = peel(&built.packet, 4);
		assert!(matches!(trampoline.next, NextPacket::Final));
		assert_eq!(built.first_cltv_delta, 726);
	}

	#[test]
	fn a_legacy_trampoline_before_the_last_is_named_the_next_in_66098() {
		// W -> E (Electrum, legacy) -> T (our relay): E's payload names T in
		// 66098, the number Electrum 4.3.4 reads (type 14 is an unknown even
		// type to it, and it fails the HTLC); without layouts, type 14.
		let secp = Secp256k1::new();
		let invoice = TrampolineInvoice::Bolt11(invoice());
		let hash = invoice.payment_hash().0;
		let electrum = route_hop(500, 600);
		let ours = TrampolineRouteHop { node_id: key(5), ..route_hop(4_000, 144) };
		let route = [electrum, ours];
		for (layouts, wanted) in [
			(&[TlvLayout::Legacy, TlvLayout::Spec][..], TlvLayout::Legacy),
			(&[][..], TlvLayout::Spec),
		] {
			let built =
				trampoline_onion_for(&invoice, &route, 800, LastTrampoline::Spec, layouts).unwrap();
			let key4 = SecretKey::from_slice(&[4; 32]).unwrap();
			let first = onion::peel_with_secret_key(&secp, &key4, &built.packet, &hash).unwrap();
			let payload = TrampolinePayload::decode(&first.payload).unwrap();
			let TrampolineHop::ToTrampoline { outgoing_node_id, layout, .. } = payload.hop else {
				panic!("{:?}", payload.hop)
			};
			assert_eq!(outgoing_node_id, key(5));
			assert_eq!(layout, wanted);
			assert!(matches!(first.next, NextPacket::Forward(_)));
		}
	}

	#[test]
	fn trampoline_dialects_are_read_from_either_bit_of_each_pair() {
		let with = |bits: &[usize]| {
			let mut flags = vec![0u8; 19];
			for bit in bits {
				flags[bit / 8] |= 1 << (bit % 8);
			}
			flags
		};
		let ours = with(&[8, 14, 57, 151]);
		assert_eq!(
			TrampolineDialects::of_flags(&ours),
			TrampolineDialects { spec: true, eclair_legacy: false, electrum_legacy: true }
		);
		assert_eq!(feature_bits(&ours), [8, 14, 57, 151]);
		let eclair = TrampolineDialects::of_flags(&with(&[148]));
		assert_eq!(
			eclair,
			TrampolineDialects { spec: false, eclair_legacy: true, electrum_legacy: false }
		);
		assert_eq!(TrampolineDialects::of_flags(&[]), TrampolineDialects::default());
		assert_eq!(feature_bits(&[]), Vec::<usize>::new());
	}

	#[test]
	fn the_last_trampoline_is_read_from_its_init_features() {
		let with = |bits: &[usize]| {
			let mut flags = vec![0u8; 20];
			for bit in bits {
				flags[bit / 8] |= 1 << (bit % 8);
			}
			InitFeatures::from_le_bytes(flags)
		};
		// Electrum 4.3.4 (var_onion optional, 151).
		assert_eq!(
			LastTrampoline::of(Some(&with(&[9, 15, 17, 151]))),
			LastTrampoline::LegacyRelativeCltv
		);
		// Electrum 4.5 (var_onion required, 151), eclair (149).
		assert_eq!(LastTrampoline::of(Some(&with(&[8, 14, 17, 151]))), LastTrampoline::Legacy);
		assert_eq!(LastTrampoline::of(Some(&with(&[8, 14, 17, 149]))), LastTrampoline::Legacy);
		// Our relay (57 and 151), a spec node, a non-trampoline, no peer.
		assert_eq!(LastTrampoline::of(Some(&with(&[8, 57, 151]))), LastTrampoline::Spec);
		assert_eq!(LastTrampoline::of(Some(&with(&[9, 57]))), LastTrampoline::Spec);
		assert_eq!(LastTrampoline::of(Some(&with(&[8, 14]))), LastTrampoline::Spec);
		assert_eq!(LastTrampoline::of(None), LastTrampoline::Spec);
	}

	#[test]
	fn a_remote_payinfo_fee_is_computed_without_overflow() {
		// 10^15 msat at u32::MAX ppm: the product overflowed a u64, the fee
		// does not.
		assert_eq!(
			blinded_path_fee_msat(1_000_000_000_000_000, 0, u32::MAX).unwrap(),
			1_000_000_000 * u64::from(u32::MAX)
		);
		assert!(matches!(
			blinded_path_fee_msat(u64::MAX, u32::MAX, u32::MAX),
			Err(SenderError::AmountOverflow { .. })
		));
		// At the edge: u64::MAX at 1 ppm, plus u32::MAX base, fits.
		assert_eq!(
			blinded_path_fee_msat(u64::MAX, u32::MAX, 1).unwrap(),
			u64::from(u32::MAX) + u64::MAX / 1_000_000
		);
		assert_eq!(blinded_path_fee_msat(10_000_000, 1_000, 100).unwrap(), 1_000 + 1_000);
		let paths = [blinded_path(1_000, 100, 144), blinded_path(u32::MAX, u32::MAX, 40)];
		assert!(matches!(
			blinded_leg_costs(u64::MAX, &paths, 800),
			Err(SenderError::AmountOverflow { .. })
		));
		assert_eq!(
			blinded_leg_costs(10_000_000, &paths, 800).unwrap(),
			(u64::from(u32::MAX) + 10_000_000 * u64::from(u32::MAX) / 1_000_000, 800 + 144 + 6)
		);
		// A CLTV delta of u16::MAX at a height near u32::MAX.
		assert!(matches!(
			blinded_leg_costs(1, &[blinded_path(0, 0, u16::MAX)], u32::MAX - 10),
			Err(SenderError::CltvOverflow { .. })
		));
	}

	#[test]
	fn route_amounts_and_expiries_are_checked() {
		let hash = [9; 32];
		// The recipient's fee on top of the amount.
		let built =
			build_trampoline_onion(hash, leg(u64::MAX, 900), 1, &[route_hop(0, 0)], 800, &[]);
		assert!(matches!(built, Err(SenderError::AmountOverflow { .. })), "{built:?}");
		// A trampoline's fee on top of what the next one gets.
		let route = [route_hop(u64::MAX, 10), route_hop(u64::MAX, 10)];
		let built = build_trampoline_onion(hash, leg(0, 900), 1_000, &route, 800, &[]);
		assert!(matches!(built, Err(SenderError::AmountOverflow { .. })), "{built:?}");
		// The trampolines' deltas on top of an expiry near u32::MAX.
		let route = [route_hop(1, u16::MAX), route_hop(1, u16::MAX)];
		let built = build_trampoline_onion(hash, leg(0, u32::MAX - 10), 1_000, &route, 800, &[]);
		assert!(matches!(built, Err(SenderError::CltvOverflow { .. })), "{built:?}");
		// An expiry below the height (a height past the leg's expiry).
		let built = build_trampoline_onion(hash, leg(0, 700), 1_000, &[route_hop(1, 1)], 800, &[]);
		assert!(matches!(built, Err(SenderError::CltvOverflow { .. })), "{built:?}");
		// Sane values build.
		let route = [route_hop(1_000, 100), route_hop(2_000, 100)];
		let built = build_trampoline_onion(hash, leg(50, 900), 10_000, &route, 800, &[]).unwrap();
		assert_eq!(built.first_amount_msat, 13_050);
		assert_eq!(built.first_cltv_delta, 300);
	}

	#[test]
	fn a_trampoline_gets_its_packet_in_the_type_it_reads() {
		let with = |bits: &[usize]| {
			let mut flags = Vec::new();
			for bit in bits {
				flags = crate::relay::dialect::with_feature_bit(&flags, *bit);
			}
			InitFeatures::from_le_bytes(flags)
		};
		// Electrum (151 only) and eclair (149 only): 66100.
		assert_eq!(outer_layout(Some(&with(&[151]))), TlvLayout::Legacy);
		assert_eq!(outer_layout(Some(&with(&[149]))), TlvLayout::Legacy);
		// Our relay (57 and 151), a spec node: type 20.
		assert_eq!(outer_layout(Some(&with(&[57, 151]))), TlvLayout::Spec);
		assert_eq!(outer_layout(Some(&with(&[57]))), TlvLayout::Spec);
		assert_eq!(outer_layout(None), TlvLayout::Spec);
		// A peer advertising nothing (an LDK recipient as final node): 20,
		// which LDK reads.
		assert_eq!(outer_layout(Some(&with(&[]))), TlvLayout::Spec);
	}

	#[test]
	fn budgets_and_escalations_saturate_on_huge_fees() {
		let route = [route_hop(u64::MAX, u16::MAX), route_hop(u64::MAX, u16::MAX)];
		let budget = TrampolineBudget::of_route(&route);
		assert_eq!(budget.max_fee_msat, u64::MAX);
		assert_eq!(budget.max_cltv_expiry_delta, 2 * u32::from(u16::MAX));
		// A trampoline asking u32::MAX ppm of an amount near u64::MAX, after
		// a hop paid u64::MAX: over any budget, no panic.
		let failure = crate::onion::TrampolineFailure {
			hop: crate::onion::FailingHop::Trampoline(0),
			message: crate::onion::FailureMessage::TrampolineFeeOrExpiryInsufficient {
				fee_base_msat: u32::MAX,
				fee_proportional_millionths: u32::MAX,
				cltv_expiry_delta: u16::MAX,
			},
		};
		let small = TrampolineBudget { max_fee_msat: 1_000, max_cltv_expiry_delta: 100 };
		let next =
			next_route(&[route_hop(1, 1), route_hop(u64::MAX, 1)], u64::MAX, &failure, &small);
		assert!(matches!(next, Err(NoRetry::OverBudget { .. })), "{next:?}");
	}
}
