//! Partial payments out: each outgoing payment with its parts, for operators
//! (`ctl list-partial-payments`, seed 003's `listpartialpayments`).
//!
//! LDK reports each part (path) that failed or succeeded in
//! `PaymentPathFailed` / `PaymentPathSuccessful`, which [`OutgoingParts`]
//! keeps (in memory, the latest [`MAX_PAYMENTS`] payments, at most
//! [`MAX_PARTS`] parts each); the parts in flight are the outbound HTLCs of
//! the payment's hash in LDK's channels at the time of the listing. The
//! relay's own outgoing payments are payments like any other here.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hex::DisplayHex;
use lightning::events::{Event, PathFailure};
use lightning::ln::channel_state::{ChannelDetails, OutboundHTLCStateDetails};
use lightning::ln::channelmanager::{PaymentId, RecentPaymentDetails};
use lightning::routing::gossip::NetworkUpdate;
use lightning::routing::router::Path;
use lightning::types::payment::PaymentHash;
use serde::{Deserialize, Serialize};

use super::partial::format_scid;
use crate::onion::{FailingHop, TrampolineFailure};
use crate::relay::now_ms;

/// How many payments [`OutgoingParts`] remembers the parts of.
pub const MAX_PAYMENTS: usize = 1_000;
/// How many finished parts it keeps per payment (LDK retries a payment a
/// bounded number of times; a longer history keeps its first parts).
pub const MAX_PARTS: usize = 100;

/// An outgoing payment and its parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialPayment {
	/// The payment id, hex (as `list-payments` shows it).
	pub payment_id: String,
	/// The payment hash, hex, once known.
	pub payment_hash: Option<String>,
	/// `pending`, `succeeded` or `failed` (LDK's view: a payment LDK has
	/// forgotten keeps the last one seen).
	pub state: String,
	/// The parts: finished ones in the order LDK reported them, then those
	/// in flight.
	pub parts: Vec<OutgoingPart>,
}

/// One part (path) of a [`PartialPayment`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingPart {
	/// The channels of its path, `BLOCKxTXxOUTPUT`, first hop first (a part
	/// in flight: its first hop only).
	pub path: Vec<String>,
	/// What it delivers (a finished part), or what its first HTLC carries,
	/// fees included (in flight), msat.
	pub amount_msat: u64,
	/// What happened to it.
	#[serde(flatten)]
	pub state: PartState,
	/// When LDK reported it (a finished part) or when listed (in flight), ms
	/// since the Unix epoch.
	pub at_ms: u64,
}

/// Where a part stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PartState {
	/// Its HTLC is out.
	InFlight {
		/// Its first HTLC's expiry.
		cltv_expiry: u32,
	},
	/// It failed.
	Failed {
		/// The channel that failed it, `BLOCKxTXxOUTPUT`, when known.
		failing_channel: Option<String>,
		/// The node that failed it (a node failure), hex, when known.
		failing_node: Option<String>,
		/// The failure's BOLT 4 code, when known: a trampoline's answer,
		/// which our sender decrypts (LDK does not show the code of other
		/// failures).
		code: Option<u16>,
		/// Who answered `code`: `trampoline N` (Nth trampoline of the route)
		/// or `hop N` (Nth node of the outer route).
		failing_hop: Option<String>,
		/// LDK will not retry the payment after it.
		permanent: bool,
	},
	/// It reached the recipient, which claimed the payment.
	Succeeded,
}

#[derive(Default)]
struct Inner {
	payments: HashMap<PaymentId, Payment>,
	order: VecDeque<PaymentId>,
}

#[derive(Default)]
struct Payment {
	payment_hash: Option<PaymentHash>,
	state: Option<&'static str>,
	parts: Vec<OutgoingPart>,
}

/// The finished parts of recent outgoing payments.
#[derive(Default)]
pub struct OutgoingParts {
	inner: Mutex<Inner>,
}

impl OutgoingParts {
	/// Notes what `event` says of a payment's parts (call it once per event,
	/// after it was handled); `trampoline_failure` is the sender's decrypted
	/// answer for the payment, if any.
	pub fn observe(&self, event: &Event, trampoline_failure: Option<TrampolineFailure>) {
		let (id, hash, update) = match event {
			Event::PaymentPathFailed {
				payment_id: Some(id),
				payment_hash,
				payment_failed_permanently,
				failure,
				path,
				short_channel_id,
				..
			} => {
				let failing_node = match failure {
					PathFailure::OnPath {
						network_update: Some(NetworkUpdate::NodeFailure { node_id, .. }),
					} => Some(node_id.to_string()),
					_ => None,
				};
				let failing_hop = trampoline_failure.as_ref().map(|f| match f.hop {
					FailingHop::Trampoline(i) => format!("trampoline {i}"),
					FailingHop::Outer(i) => format!("hop {i}"),
				});
				let state = PartState::Failed {
					failing_channel: short_channel_id.map(format_scid),
					failing_node,
					code: trampoline_failure.map(|f| f.message.code()),
					failing_hop,
					permanent: *payment_failed_permanently,
				};
				(*id, Some(*payment_hash), Update::Part(part(path, state)))
			},
			Event::PaymentPathSuccessful { payment_id, payment_hash, path, .. } => {
				(*payment_id, *payment_hash, Update::Part(part(path, PartState::Succeeded)))
			},
			Event::PaymentSent { payment_id: Some(id), payment_hash, .. } => {
				(*id, Some(*payment_hash), Update::State("succeeded"))
			},
			Event::PaymentFailed { payment_id, payment_hash, .. } => {
				(*payment_id, *payment_hash, Update::State("failed"))
			},
			_ => return,
		};
		let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		if !inner.payments.contains_key(&id) {
			inner.order.push_back(id);
			while inner.order.len() > MAX_PAYMENTS {
				if let Some(oldest) = inner.order.pop_front() {
					inner.payments.remove(&oldest);
				}
			}
		}
		let payment = inner.payments.entry(id).or_default();
		payment.payment_hash = payment.payment_hash.or(hash);
		match update {
			Update::Part(part) if payment.parts.len() < MAX_PARTS => payment.parts.push(part),
			Update::Part(_) => {},
			Update::State(state) => payment.state = Some(state),
		}
	}

	/// Every payment LDK still tracks (`recent`) or whose parts are kept,
	/// with its finished parts and, from `channels`, those in flight.
	pub fn list(
		&self, recent: &[RecentPaymentDetails], channels: &[ChannelDetails],
	) -> Vec<PartialPayment> {
		let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
		let mut ids: Vec<PaymentId> = inner.order.iter().copied().collect();
		let mut ldk: HashMap<PaymentId, (Option<PaymentHash>, &'static str)> = HashMap::new();
		for payment in recent {
			let (id, hash, state) = match payment {
				RecentPaymentDetails::AwaitingInvoice { payment_id } => {
					(*payment_id, None, "pending")
				},
				RecentPaymentDetails::Pending { payment_id, payment_hash, .. } => {
					(*payment_id, Some(*payment_hash), "pending")
				},
				RecentPaymentDetails::Fulfilled { payment_id, payment_hash } => {
					(*payment_id, *payment_hash, "succeeded")
				},
				RecentPaymentDetails::Abandoned { payment_id, payment_hash } => {
					(*payment_id, Some(*payment_hash), "failed")
				},
			};
			if !inner.payments.contains_key(&id) {
				ids.push(id);
			}
			ldk.insert(id, (hash, state));
		}
		let now = now_ms();
		ids.into_iter()
			.map(|id| {
				let kept = inner.payments.get(&id);
				let (ldk_hash, ldk_state) = ldk.get(&id).copied().unwrap_or((None, "pending"));
				let hash = kept.and_then(|p| p.payment_hash).or(ldk_hash);
				let state = if ldk.contains_key(&id) {
					ldk_state
				} else {
					kept.and_then(|p| p.state).unwrap_or("pending")
				};
				let mut parts = kept.map(|p| p.parts.clone()).unwrap_or_default();
				if state == "pending" {
					if let Some(hash) = hash {
						parts.extend(in_flight(channels, hash, now));
					}
				}
				PartialPayment {
					payment_id: id.0.to_lower_hex_string(),
					payment_hash: hash.map(|h| h.to_string()),
					state: state.into(),
					parts,
				}
			})
			.collect()
	}
}

enum Update {
	Part(OutgoingPart),
	State(&'static str),
}

fn part(path: &Path, state: PartState) -> OutgoingPart {
	OutgoingPart {
		path: path.hops.iter().map(|h| format_scid(h.short_channel_id)).collect(),
		amount_msat: path.final_value_msat(),
		state,
		at_ms: now_ms(),
	}
}

/// The outbound HTLCs of `hash` in `channels` still out.
fn in_flight(channels: &[ChannelDetails], hash: PaymentHash, now: u64) -> Vec<OutgoingPart> {
	channels
		.iter()
		.flat_map(|c| c.pending_outbound_htlcs.iter().map(move |h| (c, h)))
		.filter(|(_, h)| h.payment_hash == hash)
		.filter(|(_, h)| {
			matches!(
				h.state,
				None | Some(OutboundHTLCStateDetails::AwaitingRemoteRevokeToAdd)
					| Some(OutboundHTLCStateDetails::Committed)
			)
		})
		.map(|(c, h)| OutgoingPart {
			path: c.short_channel_id.map(format_scid).into_iter().collect(),
			amount_msat: h.amount_msat,
			state: PartState::InFlight { cltv_expiry: h.cltv_expiry },
			at_ms: now,
		})
		.collect()
}
