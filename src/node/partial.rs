//! Partial payments in: the incoming multi-part sets this node holds and has
//! not claimed (still missing parts, or complete and not claimed yet), for
//! operators (`ctl list-partial-invoices`, as CLN's `listpartialinvoices`
//! proposal in seed 003 asks).
//!
//! Built at each call from LDK's view of its channels (every inbound HTLC
//! still committed), the handler's [`HtlcArrivals`] (arrival times, and the
//! total a final payload announced) and the relay's buckets. An inbound HTLC
//! is part of a payment to us when no outbound HTLC carries its payment hash
//! (a forward has one once LDK forwarded it) and it is not held for an
//! often-offline payer (`list-held` shows those); a trampoline bucket shows
//! while it is still receiving parts (once complete it is relayed, held or
//! failed: `trampoline-buckets` and `list-held` show it). An HTLC being
//! forwarded shows for the moment between its arrival and LDK's forward.

use std::collections::{BTreeMap, HashMap, HashSet};

use lightning::ln::channel_state::{ChannelDetails, InboundHTLCStateDetails};
use lightning::types::payment::PaymentHash;
use serde::{Deserialize, Serialize};

use crate::handler::arrivals::HtlcArrivals;
use crate::relay::{BucketStage, BucketSummary};

/// An incoming payment whose parts we hold, not claimed yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialInvoice {
	/// The payment hash, hex.
	pub payment_hash: String,
	/// `trampoline` (a bucket the relay is receiving) or `receive` (a
	/// payment to this node: a BOLT 11 or BOLT 12 invoice, a keysend).
	pub kind: String,
	/// The total the payer announced, msat, unverified (a trampoline
	/// bucket's outer total, or what the first part noted with one said);
	/// `None` when no part's onion was read (a blinded receive, or a node
	/// without the relay, whose handler peels nothing).
	pub total_msat: Option<u64>,
	/// What its parts bring in so far, msat.
	pub received_msat: u64,
	/// The parts, oldest first.
	pub parts: Vec<PartialPart>,
}

/// One part of a [`PartialInvoice`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialPart {
	/// The incoming channel's id, hex.
	pub channel_id: String,
	/// The incoming channel's short id, `BLOCKxTXxOUTPUT`, once it has one.
	pub short_channel_id: Option<String>,
	/// The peer that offered it.
	pub peer: String,
	/// Its HTLC id in that channel.
	pub htlc_id: u64,
	/// Its amount, msat.
	pub amount_msat: u64,
	/// Its `cltv_expiry`.
	pub cltv_expiry: u32,
	/// When it arrived, ms since the Unix epoch (`None`: before this
	/// process started, or forgotten by the bounded tracker).
	pub arrived_at_ms: Option<u64>,
}

/// `BLOCKxTXxOUTPUT` for a short channel id.
pub fn format_scid(scid: u64) -> String {
	format!("{}x{}x{}", scid >> 40, (scid >> 16) & 0xff_ffff, scid & 0xffff)
}

/// The partial payments in `channels` (LDK's list), see the module
/// documentation. `held` are the payment hashes of HTLCs held for
/// often-offline payers.
pub fn partial_invoices(
	channels: &[ChannelDetails], arrivals: &HtlcArrivals, buckets: &[BucketSummary],
	held: &HashSet<PaymentHash>,
) -> Vec<PartialInvoice> {
	arrivals.retain_pending(channels);
	let forwarded: HashSet<PaymentHash> = channels
		.iter()
		.flat_map(|c| c.pending_outbound_htlcs.iter().map(|h| h.payment_hash))
		.collect();
	let buckets: HashMap<PaymentHash, &BucketSummary> =
		buckets.iter().map(|b| (b.payment_hash, b)).collect();
	let mut sets: BTreeMap<[u8; 32], PartialInvoice> = BTreeMap::new();
	for channel in channels {
		for htlc in &channel.pending_inbound_htlcs {
			// Claimed or failed already: on its way out.
			// Not yet irrevocable (LDK reports no state for an add it only
			// heard of), or claimed or failed already: not held.
			let committed = matches!(
				htlc.state,
				Some(InboundHTLCStateDetails::Committed)
					| Some(InboundHTLCStateDetails::AwaitingRemoteRevokeToAdd)
			);
			let hash = htlc.payment_hash;
			if !committed || forwarded.contains(&hash) || held.contains(&hash) {
				continue;
			}
			let bucket = buckets.get(&hash);
			if bucket.is_some_and(|b| b.state != BucketStage::Receiving) {
				continue;
			}
			let arrival =
				arrivals.get(&channel.counterparty.node_id, &channel.channel_id, htlc.htlc_id);
			let set = sets.entry(hash.0).or_insert_with(|| PartialInvoice {
				payment_hash: hash.to_string(),
				kind: if bucket.is_some() { "trampoline" } else { "receive" }.into(),
				total_msat: bucket.map(|b| b.outer_total_msat),
				received_msat: 0,
				parts: Vec::new(),
			});
			if set.total_msat.is_none() {
				set.total_msat = arrival.and_then(|a| a.announced_total_msat);
			}
			set.received_msat = set.received_msat.saturating_add(htlc.amount_msat);
			set.parts.push(PartialPart {
				channel_id: channel.channel_id.to_string(),
				short_channel_id: channel.short_channel_id.map(format_scid),
				peer: channel.counterparty.node_id.to_string(),
				htlc_id: htlc.htlc_id,
				amount_msat: htlc.amount_msat,
				cltv_expiry: htlc.cltv_expiry,
				arrived_at_ms: arrival.map(|a| a.arrived_at_ms),
			});
		}
	}
	let mut sets: Vec<PartialInvoice> = sets.into_values().collect();
	for set in &mut sets {
		set.parts.sort_by_key(|p| (p.arrived_at_ms.unwrap_or(0), p.htlc_id));
	}
	sets.sort_by_key(|s| s.parts.first().and_then(|p| p.arrived_at_ms).unwrap_or(0));
	sets
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn a_short_channel_id_reads_block_tx_output() {
		// Block 102, transaction 1, output 0 (the harness' first channel).
		assert_eq!(format_scid((102 << 40) | (1 << 16)), "102x1x0");
		assert_eq!(format_scid(u64::MAX), "16777215x16777215x65535");
	}
}
