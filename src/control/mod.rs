//! The reference node's control interface: JSON over plain HTTP, for operators
//! and scripts.
//!
//! Every endpoint is a `POST` under `/v1/` (see [`paths`]) taking a JSON object
//! (an empty body counts as `{}`) and answering with a JSON object. Failures
//! answer `{ "error": "..." }` ([`ErrorResponse`]) with status 400 for bad input
//! (an unparsable invoice, node id or channel id, an unknown field), 404 for an
//! unknown channel or endpoint, and 500 for everything else.
//!
//! The request and response types below are shared by the [`server`] and the
//! [`client`], so the two cannot drift apart.
//!
//! Every request carries a bearer token the node writes to its data
//! directory at start, a `Host` naming the control address and
//! `Content-Type: application/json`; a read-only token allows the listings
//! only ([`auth`]). Off loopback the interface is served over TLS only
//! ([`tls`]).

pub mod auth;
pub mod client;
pub mod events;
pub mod metrics;
pub mod server;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

pub use crate::node::{
	Balances, ChannelInfo, ClosingChannel, ClosingState, Decoded, ForwardRecord, OnchainSend,
	PaymentRecord, PeerInfo,
};

/// Where the control interface listens unless configured otherwise: `127.0.0.1:9736`.
pub const DEFAULT_CONTROL_LISTEN: SocketAddr =
	SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9736);

/// The file in the data directory where a running node says where its
/// control interface is (`http://HOST:PORT` or `https://...`), for `ctl`;
/// written at start, removed at stop (like `lightning-rpc` in CLN's
/// directory).
pub const CONTROL_URL_FILE: &str = "control.url";

/// Tells `ctl` where the node in `data_dir` listens ([`CONTROL_URL_FILE`]).
pub fn write_control_url(data_dir: &std::path::Path, url: &str) -> std::io::Result<()> {
	std::fs::write(data_dir.join(CONTROL_URL_FILE), format!("{url}\n"))
}

/// Where the node in `data_dir` said its control interface is, if it runs.
pub fn read_control_url(data_dir: &std::path::Path) -> Option<String> {
	let text = std::fs::read_to_string(data_dir.join(CONTROL_URL_FILE)).ok()?;
	let url = text.trim();
	(!url.is_empty() && url.len() <= 512).then(|| url.to_string())
}

/// The `trampoline` of a pay request that lets the node choose among its
/// peers advertising trampoline routing.
pub const AUTO_TRAMPOLINE: &str = "auto";

/// The most CLTV delta a pay request with `trampoline_max_fee_msat` lets
/// the trampoline grow to (LDK's default limit for a whole route).
pub const MAX_TRAMPOLINE_CLTV_EXPIRY_DELTA: u32 = 1_008;

/// How long `pay` waits for the outcome unless told otherwise.
pub const DEFAULT_PAY_TIMEOUT_SECS: u64 = 60;

/// How long an invoice is valid unless told otherwise.
pub const DEFAULT_INVOICE_EXPIRY_SECS: u32 = 3600;

/// The endpoint paths.
pub mod paths {
	/// [`GetInfoResponse`](super::GetInfoResponse) for an empty request.
	pub const GETINFO: &str = "/v1/getinfo";
	/// [`ConnectRequest`](super::ConnectRequest) → [`ConnectResponse`](super::ConnectResponse).
	pub const CONNECT: &str = "/v1/connect";
	/// [`OpenChannelRequest`](super::OpenChannelRequest) →
	/// [`OpenChannelResponse`](super::OpenChannelResponse).
	pub const OPEN_CHANNEL: &str = "/v1/open-channel";
	/// [`ListChannelsResponse`](super::ListChannelsResponse) for an empty request.
	pub const LIST_CHANNELS: &str = "/v1/list-channels";
	/// [`CloseChannelRequest`](super::CloseChannelRequest) →
	/// [`CloseChannelResponse`](super::CloseChannelResponse).
	pub const CLOSE_CHANNEL: &str = "/v1/close-channel";
	/// [`Balances`](super::Balances) for an empty request.
	pub const BALANCES: &str = "/v1/balances";
	/// [`NewAddressResponse`](super::NewAddressResponse) for an empty request.
	pub const NEW_ADDRESS: &str = "/v1/new-address";
	/// [`InvoiceRequest`](super::InvoiceRequest) → [`InvoiceResponse`](super::InvoiceResponse).
	pub const INVOICE: &str = "/v1/invoice";
	/// [`OfferRequest`](super::OfferRequest) → [`OfferResponse`](super::OfferResponse).
	pub const OFFER: &str = "/v1/offer";
	/// [`PayRequest`](super::PayRequest) → [`PaymentRecord`](super::PaymentRecord).
	pub const PAY: &str = "/v1/pay";
	/// [`ListPaymentsResponse`](super::ListPaymentsResponse) for an empty request.
	pub const LIST_PAYMENTS: &str = "/v1/list-payments";
	/// [`ListStaticInvoicesResponse`](super::ListStaticInvoicesResponse) for an
	/// empty request.
	pub const LIST_STATIC_INVOICES: &str = "/v1/list-static-invoices";
	/// [`StopResponse`](super::StopResponse) for an empty request.
	pub const STOP: &str = "/v1/stop";
	/// `trampoline-stats`.
	pub const TRAMPOLINE_STATS: &str = "/v1/trampoline-stats";
	/// [`ListHeldResponse`](super::ListHeldResponse) for an empty request.
	pub const LIST_HELD: &str = "/v1/list-held";
	/// [`ListForwardsRequest`](super::ListForwardsRequest) →
	/// [`ListForwardsResponse`](super::ListForwardsResponse).
	pub const LIST_FORWARDS: &str = "/v1/list-forwards";
	/// [`TrampolineBucketsResponse`](super::TrampolineBucketsResponse) for an
	/// empty request.
	pub const TRAMPOLINE_BUCKETS: &str = "/v1/trampoline-buckets";
	/// `GET`: the Prometheus (OpenMetrics) text of [`metrics`](super::metrics).
	pub const METRICS: &str = "/metrics";
	/// [`ListPartialInvoicesResponse`](super::ListPartialInvoicesResponse)
	/// for an empty request.
	pub const LIST_PARTIAL_INVOICES: &str = "/v1/list-partial-invoices";
	/// [`ListPartialPaymentsResponse`](super::ListPartialPaymentsResponse)
	/// for an empty request.
	pub const LIST_PARTIAL_PAYMENTS: &str = "/v1/list-partial-payments";
	/// [`SendOnchainRequest`](super::SendOnchainRequest) →
	/// [`OnchainSend`](super::OnchainSend).
	pub const SEND_ONCHAIN: &str = "/v1/send-onchain";
	/// [`ListPeersResponse`](super::ListPeersResponse) for an empty request.
	pub const LIST_PEERS: &str = "/v1/list-peers";
	/// [`DisconnectRequest`](super::DisconnectRequest) →
	/// [`DisconnectResponse`](super::DisconnectResponse).
	pub const DISCONNECT: &str = "/v1/disconnect";
	/// [`DecodeRequest`](super::DecodeRequest) → [`Decoded`](super::Decoded).
	pub const DECODE: &str = "/v1/decode";
	/// `GET`: the node's events as server-sent events, live
	/// ([`events`](super::events)).
	pub const EVENTS: &str = "/v1/events";
}

/// What `trampoline-buckets` answers: every incoming trampoline payment the
/// relay knows, the settled ones it pruned (the latest thousand) first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrampolineBucketsResponse {
	/// The buckets.
	pub buckets: Vec<TrampolineBucket>,
}

/// One incoming trampoline payment (bucket), for operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrampolineBucket {
	/// The payment hash, hex.
	pub payment_hash: String,
	/// How many incoming HTLCs (parts) it has had.
	pub parts: usize,
	/// The outer total the payer announced, msat.
	pub outer_total_msat: u64,
	/// The dialect its payer spoke: `spec` (type 20) or `legacy` (66100).
	pub dialect: crate::relay::Dialect,
	/// Where it stands.
	pub state: crate::relay::BucketStage,
}

impl From<crate::relay::BucketSummary> for TrampolineBucket {
	fn from(summary: crate::relay::BucketSummary) -> Self {
		Self {
			payment_hash: summary.payment_hash.to_string(),
			parts: summary.parts,
			outer_total_msat: summary.outer_total_msat,
			dialect: summary.dialect,
			state: summary.state,
		}
	}
}

/// What `list-partial-invoices` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPartialInvoicesResponse {
	/// Incoming multi-part payments whose parts we hold and have not
	/// claimed, oldest first.
	pub partial_invoices: Vec<crate::node::PartialInvoice>,
}

/// What `list-partial-payments` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPartialPaymentsResponse {
	/// Outgoing payments with their parts, oldest first.
	pub partial_payments: Vec<crate::node::PartialPayment>,
}

/// What `list-held` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListHeldResponse {
	/// Trampoline payments held for an offline next node, oldest first.
	pub held: Vec<crate::relay::HeldBucket>,
	/// HTLCs held for often-offline payers until their recipient releases
	/// them (`htlc_hold`), oldest first.
	#[serde(default)]
	pub htlcs: Vec<crate::htlc_hold::HeldHtlcSummary>,
}

/// The body of every failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
	/// What went wrong, for a human.
	pub error: String,
}

/// The request of endpoints that take no parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// What `getinfo` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetInfoResponse {
	/// The node's public key (hex).
	pub node_id: String,
	/// Where the node accepts peer connections (`host:port`).
	pub listen_addr: String,
	/// The chain: bitcoin, testnet, testnet4, signet or regtest.
	pub network: String,
	/// The alias announced to the network.
	pub alias: String,
	/// The height of the best block the node has processed.
	pub block_height: u32,
	/// Channels in any state.
	pub num_channels: usize,
	/// Channels that can carry payments now.
	pub num_usable_channels: usize,
	/// Connected peers.
	pub num_peers: usize,
	/// The trampoline relay policy, when the node relays trampoline payments.
	pub trampoline: Option<crate::relay::TrampolinePolicy>,
}

/// Connects to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
	/// `NODE_ID@HOST:PORT`.
	pub peer: String,
}

/// What `connect` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectResponse {
	/// The peer's public key (hex).
	pub node_id: String,
	/// The address connected to.
	pub address: String,
}

/// Opens a channel, connecting to the peer first if needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenChannelRequest {
	/// `NODE_ID@HOST:PORT`.
	pub peer: String,
	/// The channel's capacity, funded from the on-chain wallet.
	pub amount_sat: u64,
	/// What to give the peer on opening.
	#[serde(default)]
	pub push_msat: u64,
	/// Do not announce the channel for forwarding.
	#[serde(default)]
	pub private: bool,
}

/// What `open-channel` answers once the funding transaction is broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenChannelResponse {
	/// The channel id (hex); the channel is usable once the funding transaction
	/// has its confirmations (see `list-channels`).
	pub channel_id: String,
}

/// What `list-channels` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListChannelsResponse {
	/// Every open channel, from negotiation until the channel manager has
	/// closed it.
	pub channels: Vec<ChannelInfo>,
	/// Every channel being closed whose funds are not all back in the
	/// on-chain wallet: its closing transaction and where its funds are.
	#[serde(default)]
	pub closing: Vec<ClosingChannel>,
}

/// Closes a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseChannelRequest {
	/// The channel id (64 hex characters), as `list-channels` shows it.
	pub channel_id: String,
	/// Broadcast our latest commitment transaction instead of negotiating with
	/// the peer.
	#[serde(default)]
	pub force: bool,
}

/// What `close-channel` answers once the close has started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseChannelResponse {
	/// The channel id (hex).
	pub channel_id: String,
	/// Whether it is a force close.
	pub force: bool,
	/// The closing transaction (ours: the cooperative closing transaction
	/// or our commitment transaction), when the node broadcast it within
	/// 5 s; otherwise `list-channels` names it under `closing` once known.
	#[serde(default)]
	pub closing_txid: Option<String>,
}

/// What `new-address` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAddressResponse {
	/// A fresh address of the on-chain wallet.
	pub address: String,
}

/// Creates a BOLT 11 invoice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceRequest {
	/// The amount; without one the payer chooses.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub amount_msat: Option<u64>,
	/// The description (empty if not given).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub description: Option<String>,
	/// How long the invoice is valid ([`DEFAULT_INVOICE_EXPIRY_SECS`] if not given).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub expiry_secs: Option<u32>,
}

/// What `invoice` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceResponse {
	/// The BOLT 11 invoice.
	pub invoice: String,
	/// Its payment hash (hex).
	pub payment_hash: String,
	/// Its amount, if it has one.
	pub amount_msat: Option<u64>,
	/// How long it is valid.
	pub expiry_secs: u64,
}

/// Creates a BOLT 12 offer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRequest {
	/// The amount; without one the payer chooses.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub amount_msat: Option<u64>,
	/// The description (empty if not given).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub description: Option<String>,
}

/// What `offer` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferResponse {
	/// The BOLT 12 offer.
	pub offer: String,
}

/// Pays a BOLT 11 invoice or a BOLT 12 offer and waits for the outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
	/// A BOLT 11 invoice or a BOLT 12 offer (a `lightning:` prefix is accepted).
	pub request: String,
	/// The amount, required when the invoice or offer has none.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub amount_msat: Option<u64>,
	/// How long to wait for the outcome ([`DEFAULT_PAY_TIMEOUT_SECS`] if not
	/// given). The payment goes on after the wait; the answer then shows it
	/// pending.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub timeout_secs: Option<u64>,
	/// Pay through this trampoline node (hex node id), a node we can route
	/// to that finds the route to the recipient (a BOLT 11 invoice's node, or
	/// a BOLT 12 invoice's blinded paths); [`AUTO_TRAMPOLINE`] picks the peer
	/// advertising trampoline routing we can send the most to.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub trampoline: Option<String>,
	/// The fee offered to the trampoline (default: what the default
	/// [`TrampolinePolicy`](crate::relay::TrampolinePolicy) asks).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub trampoline_fee_msat: Option<u64>,
	/// The CLTV delta offered to the trampoline (default: the default policy's).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub trampoline_cltv_expiry_delta: Option<u16>,
	/// The most the trampoline may get if it answers that the fee offered is
	/// too low, or that it found no route within it (default: the fee
	/// offered, no escalation). The CLTV delta may then grow up to
	/// [`MAX_TRAMPOLINE_CLTV_EXPIRY_DELTA`].
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub trampoline_max_fee_msat: Option<u64>,
}

/// Pays on-chain from the node's wallet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendOnchainRequest {
	/// The recipient's address, of the node's chain.
	pub address: String,
	/// What to pay, in satoshis; exactly one of this and `all`.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub amount_sat: Option<u64>,
	/// Send everything the wallet can spend, less the fee.
	#[serde(default)]
	pub all: bool,
	/// The fee rate, sat/vB (default: bitcoind's estimate for six blocks).
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub fee_rate_sat_per_vb: Option<u64>,
}

/// What `list-peers` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPeersResponse {
	/// The connected peers.
	pub peers: Vec<PeerInfo>,
}

/// Disconnects a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
	/// The peer's node id (66 hex characters).
	pub node_id: String,
	/// Disconnect a peer we have channels with too (the node then does not
	/// reconnect to it until `connect` or a restart).
	#[serde(default)]
	pub force: bool,
}

/// What `disconnect` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectResponse {
	/// The peer disconnected (hex).
	pub node_id: String,
}

/// Decodes an invoice or offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeRequest {
	/// A BOLT 11 invoice, a BOLT 12 offer (`lno…`) or a BOLT 12 invoice
	/// (`lni…`); a `lightning:` prefix is accepted.
	pub request: String,
}

/// What `list-payments` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPaymentsResponse {
	/// Every payment, oldest first.
	pub payments: Vec<PaymentRecord>,
}

/// What `list-forwards` asks: one page of the forwarding history, oldest
/// first, as LND's `fwdinghistory` pages (`index_offset`, `num_max_events`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListForwardsRequest {
	/// Start just after the record of this index (the previous page's
	/// `next_index_offset`); from the oldest kept if not given or 0.
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub index_offset: Option<u64>,
	/// The most records to answer: [`crate::node::forwards::DEFAULT_FORWARDS_PAGE`]
	/// if not given or 0, at most [`crate::node::forwards::MAX_FORWARDS_PAGE`].
	#[serde(default, skip_serializing_if = "Option::is_none")]
	pub limit: Option<u32>,
}

/// What `list-forwards` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListForwardsResponse {
	/// The records after `index_offset`, oldest first: plain channel
	/// forwards (`kind: "channel"`) and relayed trampoline payments
	/// (`kind: "trampoline"`, with the payer's `dialect`), each with its
	/// `index`, `in_msat`, `out_msat`, `fee_msat`, channels, `next_node`,
	/// `started_at_ms`, `settled_at_ms`, `duration_ms` and `outcome`
	/// (`{"state": "succeeded"}` or `{"state": "failed", "reason": "..."}`).
	pub forwards: Vec<ForwardRecord>,
	/// The `index_offset` that asks for the next page; `null` when this page
	/// holds the newest record.
	pub next_index_offset: Option<u64>,
}

impl From<crate::node::ForwardPage> for ListForwardsResponse {
	fn from(page: crate::node::ForwardPage) -> Self {
		Self { forwards: page.forwards, next_index_offset: page.next_index_offset }
	}
}

/// What `list-static-invoices` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListStaticInvoicesResponse {
	/// Every stored invoice, by recipient then slot.
	pub invoices: Vec<crate::static_invoices::StoredStaticInvoice>,
	/// What the server did since the node started.
	pub stats: crate::static_invoices::StaticInvoiceStats,
}

/// What `stop` answers, once the node has stopped and persisted its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopResponse {
	/// Always true: the process exits right after answering.
	pub stopped: bool,
}

#[cfg(test)]
mod tests {
	use super::*;
	use crate::relay::{BucketStage, BucketSummary, Dialect};
	use lightning::types::payment::PaymentHash;

	#[test]
	fn a_bucket_listing_names_its_payers_dialect() {
		let summary = BucketSummary {
			payment_hash: PaymentHash([0xab; 32]),
			parts: 2,
			outer_total_msat: 1_001_100,
			dialect: Dialect::Legacy,
			state: BucketStage::Failed,
		};
		let listed = TrampolineBucket::from(summary);
		let json = serde_json::to_value(&listed).unwrap();
		assert_eq!(json["dialect"], "legacy");
		assert_eq!(json["state"], "failed");
		assert_eq!(json["payment_hash"], "ab".repeat(32));
		let back: TrampolineBucket = serde_json::from_value(json).unwrap();
		assert_eq!(back, listed);
	}
}
