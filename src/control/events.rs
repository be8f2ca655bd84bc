//! The node's event stream as the control interface serves it: `GET
//! /v1/events`, server-sent events (`event: <type>`, `data: <JSON>`), one per
//! [`NodeEvent`], in the order the node published them, after a first
//! [`EventRecord::Subscribed`].
//!
//! A subscriber that reads too slowly does not hold the node's memory: the
//! node keeps its last 1,024 events in one ring shared by all subscribers,
//! and one that falls behind it gets a [`EventRecord::Lagged`] saying how
//! many events it missed, then the events after them. The server serves at most [`MAX_EVENT_STREAMS`] streams
//! at once (503 beyond).
//!
//! [`EventRecord`] is both the server's JSON and what the client parses back
//! ([`SseParser`]), so the two cannot drift apart.

use hex::DisplayHex;
use serde::{Deserialize, Serialize};

use crate::htlc_hold::{HeldHtlcSummary, HoldEvent};
use crate::node::NodeEvent;
use crate::relay::HeldBucket;

/// How many event streams the control interface serves at once.
pub const MAX_EVENT_STREAMS: usize = 16;

/// A [`NodeEvent`] as the event stream carries it (JSON, tagged by `type`);
/// ids and hashes are hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventRecord {
	/// The funding transaction of a channel was broadcast.
	ChannelPending {
		/// The channel id.
		channel_id: String,
		/// The peer's node id.
		counterparty: String,
	},
	/// A channel can carry payments.
	ChannelReady {
		/// The channel id.
		channel_id: String,
		/// The peer's node id.
		counterparty: String,
	},
	/// A channel closed (or failed to open).
	ChannelClosed {
		/// The channel id.
		channel_id: String,
		/// Why.
		reason: String,
	},
	/// We received a payment.
	PaymentReceived {
		/// The payment hash.
		payment_hash: String,
		/// What we received, msat.
		amount_msat: u64,
	},
	/// A payment we sent succeeded.
	PaymentSent {
		/// The payment id, as `list-payments` shows it.
		payment_id: String,
		/// The payment hash.
		payment_hash: String,
		/// Routing fees paid, msat.
		fee_msat: u64,
	},
	/// A payment we sent failed for good.
	PaymentFailed {
		/// The payment id.
		payment_id: String,
		/// Why.
		reason: String,
	},
	/// We forwarded a payment and earned a fee.
	PaymentForwarded {
		/// Our fee, msat.
		fee_msat: u64,
		/// What we forwarded, msat.
		outbound_msat: u64,
	},
	/// The invoice of an offer we asked for arrived.
	InvoiceReceived {
		/// The invoice request's payment id.
		request: String,
	},
	/// The trampoline relay started holding a payment for an offline next node.
	PaymentHeld {
		/// What is held, for whom, until when.
		held: HeldBucket,
	},
	/// Something happened to an HTLC held for an often-offline payer.
	HtlcHold {
		/// `held`, `refused`, `released`, `failed_back` or `settled`.
		what: String,
		/// The HTLC.
		htlc: HeldHtlcSummary,
	},
	/// The static invoice server started keeping onion messages for an
	/// offline peer.
	MessageHeld {
		/// The offline peer's node id.
		peer: String,
	},
	/// The stream's first record: the node is listening, every event from
	/// now on follows (a client that starts something after seeing it does
	/// not miss its events).
	Subscribed,
	/// This stream fell behind the node and missed `missed` events.
	Lagged {
		/// How many.
		missed: u64,
	},
}

impl EventRecord {
	/// The record's `type`: the SSE event name.
	pub fn kind(&self) -> &'static str {
		match self {
			Self::ChannelPending { .. } => "channel_pending",
			Self::ChannelReady { .. } => "channel_ready",
			Self::ChannelClosed { .. } => "channel_closed",
			Self::PaymentReceived { .. } => "payment_received",
			Self::PaymentSent { .. } => "payment_sent",
			Self::PaymentFailed { .. } => "payment_failed",
			Self::PaymentForwarded { .. } => "payment_forwarded",
			Self::InvoiceReceived { .. } => "invoice_received",
			Self::PaymentHeld { .. } => "payment_held",
			Self::HtlcHold { .. } => "htlc_hold",
			Self::MessageHeld { .. } => "message_held",
			Self::Subscribed => "subscribed",
			Self::Lagged { .. } => "lagged",
		}
	}
}

impl From<&NodeEvent> for EventRecord {
	fn from(event: &NodeEvent) -> Self {
		match event {
			NodeEvent::ChannelPending { channel_id, counterparty, .. } => Self::ChannelPending {
				channel_id: channel_id.to_string(),
				counterparty: counterparty.to_string(),
			},
			NodeEvent::ChannelReady { channel_id, counterparty, .. } => Self::ChannelReady {
				channel_id: channel_id.to_string(),
				counterparty: counterparty.to_string(),
			},
			NodeEvent::ChannelClosed { channel_id, reason, .. } => {
				Self::ChannelClosed { channel_id: channel_id.to_string(), reason: reason.clone() }
			},
			NodeEvent::PaymentReceived { payment_hash, amount_msat } => Self::PaymentReceived {
				payment_hash: payment_hash.to_string(),
				amount_msat: *amount_msat,
			},
			NodeEvent::PaymentSent { payment_id, payment_hash, fee_msat } => Self::PaymentSent {
				payment_id: payment_id.0.to_lower_hex_string(),
				payment_hash: payment_hash.to_string(),
				fee_msat: *fee_msat,
			},
			NodeEvent::PaymentFailed { payment_id, reason } => Self::PaymentFailed {
				payment_id: payment_id.0.to_lower_hex_string(),
				reason: reason.clone(),
			},
			NodeEvent::PaymentForwarded { fee_msat, outbound_msat } => {
				Self::PaymentForwarded { fee_msat: *fee_msat, outbound_msat: *outbound_msat }
			},
			NodeEvent::InvoiceReceived { request, .. } => {
				Self::InvoiceReceived { request: request.0.to_lower_hex_string() }
			},
			NodeEvent::PaymentHeld { held } => Self::PaymentHeld { held: held.clone() },
			NodeEvent::HtlcHold { event } => {
				let what = match event {
					HoldEvent::Held(_) => "held",
					HoldEvent::Refused(_) => "refused",
					HoldEvent::Released(_) => "released",
					HoldEvent::FailedBack(_) => "failed_back",
					HoldEvent::Settled(_) => "settled",
				};
				Self::HtlcHold { what: what.into(), htlc: event.summary().clone() }
			},
			NodeEvent::MessageHeld { peer } => Self::MessageHeld { peer: peer.to_string() },
		}
	}
}

/// Why a server-sent event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventStreamError {
	/// An event's data is not an [`EventRecord`].
	#[error("the node sent an event this client cannot read ({0}); is ctl older than the node?")]
	Malformed(#[from] serde_json::Error),
	/// The stream is not UTF-8.
	#[error("the node's event stream is not text")]
	NotText,
	/// An event did not end within [`MAX_EVENT_BYTES`].
	#[error("the node sent an event longer than {MAX_EVENT_BYTES} bytes")]
	TooLong,
}

/// Reads server-sent events from the bytes of a stream, as they arrive in
/// chunks of any size; comments (the server's keep-alives) are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
	buffer: Vec<u8>,
	/// How much of `buffer` holds no event end (each chunk is scanned once).
	scanned: usize,
}

/// The longest event [`SseParser`] keeps waiting for the end of; a longer one
/// is a broken or hostile server.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

impl SseParser {
	/// Takes the next `chunk`; returns the events it completes.
	pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<EventRecord>, EventStreamError> {
		self.buffer.extend_from_slice(chunk);
		let mut events = Vec::new();
		// A blank line may straddle the previous chunk's last 3 bytes.
		let mut from = self.scanned.saturating_sub(3).min(self.buffer.len());
		while let Some(end) = find_blank_line(&self.buffer[from..]) {
			let end = end.start + from..end.end + from;
			from = 0;
			let block: Vec<u8> = self.buffer.drain(..end.end).collect();
			let text =
				std::str::from_utf8(&block[..end.start]).map_err(|_| EventStreamError::NotText)?;
			let data: Vec<&str> = text
				.lines()
				.filter_map(|line| line.strip_prefix("data:"))
				.map(|d| d.strip_prefix(' ').unwrap_or(d))
				.collect();
			if !data.is_empty() {
				events.push(serde_json::from_str(&data.join("\n"))?);
			}
		}
		self.scanned = self.buffer.len();
		if self.buffer.len() > MAX_EVENT_BYTES {
			return Err(EventStreamError::TooLong);
		}
		Ok(events)
	}
}

/// Where the first event of `buffer` ends: the blank line after it
/// (`start`: where the event's text ends, `end`: after the blank line).
fn find_blank_line(buffer: &[u8]) -> Option<std::ops::Range<usize>> {
	let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i..i + 2);
	let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i..i + 4);
	match (lf, crlf) {
		(Some(a), Some(b)) => Some(if a.start <= b.start { a } else { b }),
		(a, b) => a.or(b),
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn the_parser_reads_events_split_across_chunks_and_skips_keep_alives() {
		let sent = EventRecord::PaymentReceived { payment_hash: "ab".repeat(32), amount_msat: 7 };
		let lagged = EventRecord::Lagged { missed: 3 };
		let wire = format!(
			": keep-alive\n\nevent: {}\ndata: {}\n\nevent: lagged\ndata: {}\n\n",
			sent.kind(),
			serde_json::to_string(&sent).unwrap(),
			serde_json::to_string(&lagged).unwrap()
		);
		for split in [1, 2, 7, wire.len()] {
			let mut parser = SseParser::default();
			let mut got = Vec::new();
			for chunk in wire.as_bytes().chunks(split) {
				got.extend(parser.push(chunk).expect("parses"));
			}
			assert_eq!(got, vec![sent.clone(), lagged.clone()], "chunks of {split}");
		}
	}

	#[test]
	fn a_record_names_its_type_as_its_kind() {
		let record = EventRecord::MessageHeld { peer: "02".into() };
		let json = serde_json::to_value(&record).unwrap();
		assert_eq!(json["type"], record.kind());
		assert!(SseParser::default().push(b"data: {\"type\":\"nope\"}\n\n").is_err());
	}
}
