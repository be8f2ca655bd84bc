//! The control interface's HTTP server (axum), driving a running [`Node`].

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use lightning::ln::types::ChannelId;
use lightning::offers::offer::Offer;
use lightning::types::payment::PaymentHash;
use lightning_invoice::Bolt11Invoice;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use super::auth::Guard;
use super::events::{EventRecord, MAX_EVENT_STREAMS};
use super::tls::TlsListener;
use super::*;
use crate::node::{offer_amount_msat, Node, NodeError, SendAmount, WalletError};
use crate::sender::{TrampolineBudget, TrampolineRouteHop};

/// The longest `pay` may be asked to wait.
const MAX_PAY_TIMEOUT_SECS: u64 = 24 * 3600;

/// No amount can exceed every bitcoin there will ever be.
const MAX_AMOUNT_MSAT: u64 = 21_000_000 * 100_000_000 * 1000;

/// A failed request: an HTTP status and a message, answered as [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
	/// The HTTP status.
	pub status: StatusCode,
	/// What went wrong.
	pub message: String,
}

impl ApiError {
	/// 400: the request is malformed or cannot be carried out as given.
	pub fn bad_request(message: impl Into<String>) -> Self {
		Self { status: StatusCode::BAD_REQUEST, message: message.into() }
	}

	/// 404: what the request names does not exist.
	pub fn not_found(message: impl Into<String>) -> Self {
		Self { status: StatusCode::NOT_FOUND, message: message.into() }
	}

	/// 500: the node failed.
	pub fn internal(message: impl Into<String>) -> Self {
		Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
	}
}

impl From<NodeError> for ApiError {
	fn from(error: NodeError) -> Self {
		match error {
			// LDK refused what was asked: an amount it does not accept, a duplicate
			// payment, a channel it cannot open or close.
			NodeError::Config(_)
			| NodeError::Payment(_)
			| NodeError::Channel(_)
			| NodeError::WrongNetwork { .. }
			| NodeError::PeerHasChannels { .. }
			| NodeError::Wallet(
				WalletError::NotEnoughFunds { .. }
				| WalletError::NothingToSend { .. }
				| WalletError::Build(_),
			) => Self::bad_request(error.to_string()),
			NodeError::NotConnected(_) => Self::not_found(error.to_string()),
			_ => Self::internal(error.to_string()),
		}
	}
}

impl IntoResponse for ApiError {
	fn into_response(self) -> Response {
		(self.status, Json(ErrorResponse { error: self.message })).into_response()
	}
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// What every handler shares.
struct ControlState {
	node: Arc<Node>,
	shutdown: watch::Sender<bool>,
	/// Event streams open now (at most [`MAX_EVENT_STREAMS`]).
	streams: Arc<AtomicUsize>,
}

type Ctx = State<Arc<ControlState>>;

/// `routes` behind `guard`: a request runs only with a token, the right
/// `Host` and a JSON body (see [`super::auth`]); every other one, to an
/// unknown path too, is refused before any handler.
pub fn protect(routes: Router, guard: Guard) -> Router {
	routes.layer(axum::middleware::from_fn_with_state(guard, super::auth::guard))
}

/// The control interface's routes for `node`, behind `guard`. `/v1/stop`
/// stops the node and then sets `shutdown` to `true`, which the caller waits
/// on to end the process.
pub fn router(node: Arc<Node>, shutdown: watch::Sender<bool>, guard: Guard) -> Router {
	protect(routes(node, shutdown), guard)
}

fn routes(node: Arc<Node>, shutdown: watch::Sender<bool>) -> Router {
	let state = Arc::new(ControlState { node, shutdown, streams: Arc::default() });
	Router::new()
		.route(paths::GETINFO, post(getinfo))
		.route(paths::CONNECT, post(connect))
		.route(paths::OPEN_CHANNEL, post(open_channel))
		.route(paths::LIST_CHANNELS, post(list_channels))
		.route(paths::CLOSE_CHANNEL, post(close_channel))
		.route(paths::BALANCES, post(balances))
		.route(paths::NEW_ADDRESS, post(new_address))
		.route(paths::INVOICE, post(invoice))
		.route(paths::OFFER, post(offer))
		.route(paths::PAY, post(pay))
		.route(paths::LIST_PAYMENTS, post(list_payments))
		.route(paths::LIST_STATIC_INVOICES, post(list_static_invoices))
		.route(paths::STOP, post(stop))
		.route(paths::TRAMPOLINE_STATS, post(trampoline_stats))
		.route(paths::LIST_HELD, post(list_held))
		.route(paths::LIST_PARTIAL_INVOICES, post(list_partial_invoices))
		.route(paths::LIST_PARTIAL_PAYMENTS, post(list_partial_payments))
		.route(paths::LIST_FORWARDS, post(list_forwards))
		.route(paths::TRAMPOLINE_BUCKETS, post(trampoline_buckets))
		.route(paths::SEND_ONCHAIN, post(send_onchain))
		.route(paths::LIST_PEERS, post(list_peers))
		.route(paths::DISCONNECT, post(disconnect))
		.route(paths::DECODE, post(decode))
		.route(paths::METRICS, axum::routing::get(metrics))
		.route(paths::EVENTS, axum::routing::get(events))
		.fallback(|uri: Uri| async move {
			ApiError::not_found(format!("no endpoint {uri}; the endpoints are POST /v1/..."))
		})
		.method_not_allowed_fallback(|| async {
			ApiError {
				status: StatusCode::METHOD_NOT_ALLOWED,
				message: "use POST with a JSON body".into(),
			}
		})
		.with_state(state)
}

/// Where the control interface accepts connections.
pub enum ControlListener {
	/// Plain HTTP (loopback addresses only: see
	/// [`ReferenceNodeSettings`](crate::config::ReferenceNodeSettings)).
	Plain(TcpListener),
	/// HTTPS.
	Tls(TlsListener),
}

impl ControlListener {
	/// `listener`, with TLS when `tls` is given.
	pub fn new(
		listener: TcpListener, tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
	) -> std::io::Result<Self> {
		Ok(match tls {
			Some(config) => Self::Tls(TlsListener::new(listener, config)?),
			None => Self::Plain(listener),
		})
	}
}

/// Serves `app` on `listener` until `shutdown` turns `true`. Requests in
/// flight are completed first.
pub async fn serve_router(
	listener: ControlListener, app: Router, shutdown: watch::Sender<bool>,
) -> std::io::Result<()> {
	let mut stopped = shutdown.subscribe();
	let stopped = async move {
		let _ = stopped.wait_for(|stop| *stop).await;
	};
	match listener {
		ControlListener::Plain(listener) => {
			axum::serve(listener, app).with_graceful_shutdown(stopped).await
		},
		ControlListener::Tls(listener) => {
			axum::serve(listener, app).with_graceful_shutdown(stopped).await
		},
	}
}

/// Serves the control interface on `listener`, behind `guard`, until
/// `shutdown` turns `true` (set by `/v1/stop`, or by the caller, e.g. on a
/// signal). Requests in flight are completed first.
pub async fn serve(
	listener: ControlListener, node: Arc<Node>, shutdown: watch::Sender<bool>, guard: Guard,
) -> std::io::Result<()> {
	let app = router(node, shutdown.clone(), guard);
	serve_router(listener, app, shutdown).await
}

/// Parses a request body; an empty body is `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
	let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
	serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

fn check_amount(amount_msat: Option<u64>) -> Result<(), ApiError> {
	match amount_msat {
		Some(amount) if amount > MAX_AMOUNT_MSAT => {
			Err(ApiError::bad_request(format!("amount_msat {amount} exceeds the bitcoin supply")))
		},
		_ => Ok(()),
	}
}

/// Parses `NODE_ID@HOST:PORT`, resolving the host.
async fn parse_peer(peer: &str) -> Result<(PublicKey, SocketAddr), ApiError> {
	let (id, addr) = peer.trim().split_once('@').ok_or_else(|| {
		ApiError::bad_request(format!("invalid peer {peer:?}: expected NODE_ID@HOST:PORT"))
	})?;
	let node_id = PublicKey::from_str(id).map_err(|e| {
		ApiError::bad_request(format!("invalid node id {id:?}: {e} (expected 66 hex characters)"))
	})?;
	let mut addrs = tokio::net::lookup_host(addr).await.map_err(|e| {
		ApiError::bad_request(format!("invalid peer address {addr:?}: {e} (expected HOST:PORT)"))
	})?;
	let addr = addrs.next().ok_or_else(|| {
		ApiError::bad_request(format!("peer address {addr:?} resolves to nothing"))
	})?;
	Ok((node_id, addr))
}

fn parse_channel_id(id: &str) -> Result<ChannelId, ApiError> {
	<[u8; 32] as hex::FromHex>::from_hex(id.trim()).map(ChannelId).map_err(|e| {
		ApiError::bad_request(format!(
			"invalid channel id {id:?}: {e} (expected 64 hex characters)"
		))
	})
}

async fn getinfo(State(ctx): Ctx, body: Bytes) -> ApiResult<GetInfoResponse> {
	parse::<EmptyRequest>(&body)?;
	let node = &ctx.node;
	let channels = node.list_channels();
	Ok(Json(GetInfoResponse {
		node_id: node.node_id().to_string(),
		listen_addr: node.listen_addr().to_string(),
		network: node.config().network.to_string(),
		alias: node.config().alias.clone(),
		block_height: node.best_block_height(),
		num_channels: channels.len(),
		num_usable_channels: channels.iter().filter(|c| c.usable).count(),
		num_peers: node.connected_peers().len(),
		trampoline: node.config().trampoline,
	}))
}

async fn connect(State(ctx): Ctx, body: Bytes) -> ApiResult<ConnectResponse> {
	let request: ConnectRequest = parse(&body)?;
	let (node_id, addr) = parse_peer(&request.peer).await?;
	ctx.node.connect(node_id, addr).await?;
	Ok(Json(ConnectResponse { node_id: node_id.to_string(), address: addr.to_string() }))
}

async fn open_channel(State(ctx): Ctx, body: Bytes) -> ApiResult<OpenChannelResponse> {
	let request: OpenChannelRequest = parse(&body)?;
	let (node_id, addr) = parse_peer(&request.peer).await?;
	check_amount(Some(request.push_msat))?;
	let channel_id = ctx
		.node
		.open_channel(node_id, addr, request.amount_sat, request.push_msat, !request.private)
		.await?;
	Ok(Json(OpenChannelResponse { channel_id: channel_id.to_string() }))
}

async fn list_channels(State(ctx): Ctx, body: Bytes) -> ApiResult<ListChannelsResponse> {
	parse::<EmptyRequest>(&body)?;
	Ok(Json(ListChannelsResponse {
		channels: ctx.node.list_channels(),
		closing: ctx.node.list_closing_channels(),
	}))
}

async fn close_channel(State(ctx): Ctx, body: Bytes) -> ApiResult<CloseChannelResponse> {
	let request: CloseChannelRequest = parse(&body)?;
	let channel_id = parse_channel_id(&request.channel_id)?;
	let hex_id = channel_id.to_string();
	if !ctx.node.list_channels().iter().any(|c| c.channel_id == hex_id) {
		return Err(ApiError::not_found(format!("no channel {hex_id}")));
	}
	let closing_txid = ctx.node.close_channel(&channel_id, request.force).await?;
	Ok(Json(CloseChannelResponse {
		channel_id: hex_id,
		force: request.force,
		closing_txid: closing_txid.map(|t| t.to_string()),
	}))
}

async fn balances(State(ctx): Ctx, body: Bytes) -> ApiResult<Balances> {
	parse::<EmptyRequest>(&body)?;
	Ok(Json(ctx.node.balances()))
}

async fn new_address(State(ctx): Ctx, body: Bytes) -> ApiResult<NewAddressResponse> {
	parse::<EmptyRequest>(&body)?;
	let address = ctx.node.new_address()?;
	Ok(Json(NewAddressResponse { address: address.to_string() }))
}

async fn invoice(State(ctx): Ctx, body: Bytes) -> ApiResult<InvoiceResponse> {
	let request: InvoiceRequest = parse(&body)?;
	check_amount(request.amount_msat)?;
	let invoice = ctx.node.create_invoice(
		request.amount_msat,
		request.description.as_deref().unwrap_or(""),
		request.expiry_secs.unwrap_or(DEFAULT_INVOICE_EXPIRY_SECS),
	)?;
	Ok(Json(InvoiceResponse {
		invoice: invoice.to_string(),
		payment_hash: PaymentHash(invoice.payment_hash().to_byte_array()).to_string(),
		amount_msat: invoice.amount_milli_satoshis(),
		expiry_secs: invoice.expiry_time().as_secs(),
	}))
}

async fn offer(State(ctx): Ctx, body: Bytes) -> ApiResult<OfferResponse> {
	let request: OfferRequest = parse(&body)?;
	check_amount(request.amount_msat)?;
	let offer =
		ctx.node.create_offer(request.amount_msat, request.description.as_deref().unwrap_or(""))?;
	Ok(Json(OfferResponse { offer: offer.to_string() }))
}

/// What `pay` was given.
enum PaymentRequest {
	Invoice(Box<Bolt11Invoice>),
	Offer(Box<Offer>),
}

fn parse_payment_request(text: &str) -> Result<PaymentRequest, ApiError> {
	let text = text.trim();
	let text = match text.get(..10) {
		Some(prefix) if prefix.eq_ignore_ascii_case("lightning:") => &text[10..],
		_ => text,
	};
	if text.get(..3).is_some_and(|hrp| hrp.eq_ignore_ascii_case("lno")) {
		return Offer::from_str(text)
			.map(|o| PaymentRequest::Offer(Box::new(o)))
			.map_err(|e| ApiError::bad_request(format!("invalid BOLT 12 offer: {e:?}")));
	}
	Bolt11Invoice::from_str(text).map(|i| PaymentRequest::Invoice(Box::new(i))).map_err(|e| {
		ApiError::bad_request(format!(
			"not a BOLT 11 invoice ({e}) nor a BOLT 12 offer (which starts with `lno`)"
		))
	})
}

async fn pay(State(ctx): Ctx, body: Bytes) -> ApiResult<PaymentRecord> {
	let request: PayRequest = parse(&body)?;
	check_amount(request.amount_msat)?;
	let timeout_secs = request.timeout_secs.unwrap_or(DEFAULT_PAY_TIMEOUT_SECS);
	if timeout_secs > MAX_PAY_TIMEOUT_SECS {
		return Err(ApiError::bad_request(format!(
			"timeout_secs {timeout_secs} is too long; at most {MAX_PAY_TIMEOUT_SECS} is allowed"
		)));
	}
	let node = &ctx.node;
	let id = match parse_payment_request(&request.request)? {
		PaymentRequest::Invoice(invoice) if request.trampoline.is_none() => {
			node.pay_invoice(&invoice, request.amount_msat)?
		},
		PaymentRequest::Invoice(invoice) => {
			if request.amount_msat.is_some() {
				return Err(ApiError::bad_request(
					"amount_msat cannot be combined with a trampoline: the invoice must carry its amount",
				));
			}
			let amount = invoice.amount_milli_satoshis().ok_or_else(|| {
				ApiError::bad_request("paying through a trampoline needs an invoice with an amount")
			})?;
			let hop = trampoline_hop(node, &request, amount)?;
			node.pay_invoice_via_trampolines_within(&invoice, &[hop], budget(&request, &hop))?
		},
		PaymentRequest::Offer(offer) if request.trampoline.is_none() => {
			node.pay_offer(&offer, request.amount_msat)?
		},
		PaymentRequest::Offer(offer) => {
			let amount = request.amount_msat.or_else(|| offer_amount_msat(&offer));
			let amount = amount.ok_or_else(|| {
				ApiError::bad_request("this offer has no amount: give amount_msat")
			})?;
			let hop = trampoline_hop(node, &request, amount)?;
			node.pay_offer_via_trampolines(
				&offer,
				request.amount_msat,
				&[hop],
				budget(&request, &hop),
			)?
		},
	};
	match node.wait_for_payment(id, Duration::from_secs(timeout_secs)).await {
		Ok(record) => Ok(Json(record)),
		// Still in flight: answer with the pending record.
		Err(NodeError::Timeout(..)) => node
			.payment(&id)
			.map(Json)
			.ok_or_else(|| ApiError::internal("the payment's record is missing")),
		Err(e) => Err(e.into()),
	}
}

/// The trampoline hop of a pay request of `amount_msat` with a trampoline:
/// the node given, or with `auto` the one [`Node::choose_trampoline`]
/// picks; offered what the request says, else what the default
/// [`TrampolinePolicy`](crate::relay::TrampolinePolicy) asks.
fn trampoline_hop(
	node: &Node, request: &PayRequest, amount_msat: u64,
) -> Result<TrampolineRouteHop, ApiError> {
	let trampoline = request.trampoline.as_deref().unwrap_or(AUTO_TRAMPOLINE);
	let node_id = if trampoline == AUTO_TRAMPOLINE {
		node.choose_trampoline(amount_msat)?
	} else {
		PublicKey::from_str(trampoline).map_err(|e| {
			ApiError::bad_request(format!(
				"invalid trampoline node id {trampoline:?}: {e} (give a hex node id, or {AUTO_TRAMPOLINE:?})"
			))
		})?
	};
	let default = crate::relay::TrampolinePolicy::default();
	Ok(TrampolineRouteHop {
		node_id,
		fee_msat: request.trampoline_fee_msat.unwrap_or_else(|| default.fee_msat(amount_msat)),
		cltv_expiry_delta: request
			.trampoline_cltv_expiry_delta
			.unwrap_or(default.cltv_expiry_delta),
		async_payment: false,
	})
}

/// The fee budget of a pay request through `hop`: with a maximum fee, the
/// CLTV delta may grow too, up to [`MAX_TRAMPOLINE_CLTV_EXPIRY_DELTA`].
fn budget(request: &PayRequest, hop: &TrampolineRouteHop) -> TrampolineBudget {
	let escalates = request.trampoline_max_fee_msat.is_some_and(|max| max > hop.fee_msat);
	let cltv = u32::from(hop.cltv_expiry_delta);
	TrampolineBudget {
		max_fee_msat: request.trampoline_max_fee_msat.unwrap_or(hop.fee_msat).max(hop.fee_msat),
		max_cltv_expiry_delta: if escalates {
			cltv.max(MAX_TRAMPOLINE_CLTV_EXPIRY_DELTA)
		} else {
			cltv
		},
	}
}

async fn list_payments(State(ctx): Ctx, body: Bytes) -> ApiResult<ListPaymentsResponse> {
	parse::<EmptyRequest>(&body)?;
	Ok(Json(ListPaymentsResponse { payments: ctx.node.list_payments() }))
}

async fn trampoline_stats(State(ctx): Ctx, body: Bytes) -> ApiResult<crate::relay::RelayStats> {
	parse::<EmptyRequest>(&body)?;
	Ok(Json(relay_core(&ctx)?.stats()))
}

/// The relay's state, or the error telling the caller it is off.
fn relay_core(ctx: &ControlState) -> Result<&Arc<crate::relay::RelayCore>, ApiError> {
	let relay = ctx.node.trampoline().ok_or_else(|| {
		ApiError::bad_request(
			"this node does not relay trampoline payments (trampoline_relay = false)",
		)
	})?;
	Ok(relay.core())
}

async fn trampoline_buckets(
	State(ctx): Ctx, body: Bytes,
) -> ApiResult<super::TrampolineBucketsResponse> {
	parse::<EmptyRequest>(&body)?;
	let buckets = relay_core(&ctx)?.buckets().into_iter().map(Into::into).collect();
	Ok(Json(super::TrampolineBucketsResponse { buckets }))
}

async fn list_held(State(ctx): Ctx, body: Bytes) -> ApiResult<super::ListHeldResponse> {
	parse::<EmptyRequest>(&body)?;
	let held = ctx.node.trampoline().map(|relay| relay.core().held()).unwrap_or_default();
	Ok(Json(super::ListHeldResponse { held, htlcs: ctx.node.list_held_htlcs() }))
}

/// `list` of the node, run off the async workers (it walks LDK's channels).
async fn listing<T: Send + 'static>(
	ctx: &ControlState, list: impl FnOnce(&Node) -> T + Send + 'static,
) -> Result<T, ApiError> {
	let node = Arc::clone(&ctx.node);
	tokio::task::spawn_blocking(move || list(&node))
		.await
		.map_err(|e| ApiError::internal(format!("the listing failed: {e}")))
}

async fn list_partial_invoices(
	State(ctx): Ctx, body: Bytes,
) -> ApiResult<super::ListPartialInvoicesResponse> {
	parse::<EmptyRequest>(&body)?;
	let partial_invoices = listing(&ctx, Node::list_partial_invoices).await?;
	Ok(Json(super::ListPartialInvoicesResponse { partial_invoices }))
}

async fn list_partial_payments(
	State(ctx): Ctx, body: Bytes,
) -> ApiResult<super::ListPartialPaymentsResponse> {
	parse::<EmptyRequest>(&body)?;
	let partial_payments = listing(&ctx, Node::list_partial_payments).await?;
	Ok(Json(super::ListPartialPaymentsResponse { partial_payments }))
}

async fn list_forwards(State(ctx): Ctx, body: Bytes) -> ApiResult<super::ListForwardsResponse> {
	let request = parse::<super::ListForwardsRequest>(&body)?;
	let limit = request.limit.map_or(0, |l| usize::try_from(l).unwrap_or(usize::MAX));
	Ok(Json(ctx.node.list_forwards(request.index_offset, limit).into()))
}

/// The most sat/vB `send-onchain` accepts: beyond it a typo, not a fee.
const MAX_FEE_RATE_SAT_PER_VB: u64 = 100_000;

async fn send_onchain(State(ctx): Ctx, body: Bytes) -> ApiResult<OnchainSend> {
	let request: SendOnchainRequest = parse(&body)?;
	let address = bitcoin::Address::from_str(request.address.trim()).map_err(|e| {
		ApiError::bad_request(format!("invalid address {:?}: {e}", request.address))
	})?;
	let amount = match (request.amount_sat, request.all) {
		(Some(_), true) => {
			return Err(ApiError::bad_request("give amount_sat or all, not both"));
		},
		(None, false) => {
			return Err(ApiError::bad_request(
				"give amount_sat (satoshis to send) or all (send everything)",
			));
		},
		(Some(0), false) => return Err(ApiError::bad_request("amount_sat must be above 0")),
		(Some(amount), false) => {
			check_amount(amount.checked_mul(1000).or(Some(u64::MAX)))?;
			SendAmount::Exactly(bitcoin::Amount::from_sat(amount))
		},
		(None, true) => SendAmount::All,
	};
	let fee_rate = match request.fee_rate_sat_per_vb {
		None => None,
		Some(rate) if (1..=MAX_FEE_RATE_SAT_PER_VB).contains(&rate) => {
			bitcoin::FeeRate::from_sat_per_vb(rate)
		},
		Some(rate) => {
			return Err(ApiError::bad_request(format!(
				"fee_rate_sat_per_vb {rate} is outside 1..={MAX_FEE_RATE_SAT_PER_VB}"
			)));
		},
	};
	let node = Arc::clone(&ctx.node);
	// Coin selection, signing and bitcoind's answer block.
	let sent = tokio::task::spawn_blocking(move || node.send_onchain(&address, amount, fee_rate))
		.await
		.map_err(|e| ApiError::internal(format!("the send failed: {e}")))??;
	Ok(Json(sent))
}

async fn list_peers(State(ctx): Ctx, body: Bytes) -> ApiResult<ListPeersResponse> {
	parse::<EmptyRequest>(&body)?;
	Ok(Json(ListPeersResponse { peers: listing(&ctx, Node::list_peers).await? }))
}

async fn disconnect(State(ctx): Ctx, body: Bytes) -> ApiResult<DisconnectResponse> {
	let request: DisconnectRequest = parse(&body)?;
	let id = request.node_id.trim();
	let node_id = PublicKey::from_str(id).map_err(|e| {
		ApiError::bad_request(format!("invalid node id {id:?}: {e} (expected 66 hex characters)"))
	})?;
	ctx.node.disconnect(node_id, request.force)?;
	Ok(Json(DisconnectResponse { node_id: node_id.to_string() }))
}

async fn decode(State(_ctx): Ctx, body: Bytes) -> ApiResult<Decoded> {
	let request: DecodeRequest = parse(&body)?;
	crate::node::decode(&request.request)
		.map(Json)
		.map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn metrics(State(ctx): Ctx) -> Result<Response, ApiError> {
	let snapshot = super::metrics::Snapshot::of(&ctx.node);
	let text = super::metrics::render(&snapshot)
		.map_err(|e| ApiError::internal(format!("cannot encode the metrics: {e}")))?;
	Ok(([(axum::http::header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

/// One open event stream, counted in [`ControlState::streams`] while it lives.
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
	/// A slot, unless [`MAX_EVENT_STREAMS`] are open.
	fn take(streams: &Arc<AtomicUsize>) -> Option<Self> {
		streams
			.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
				(open < MAX_EVENT_STREAMS).then_some(open + 1)
			})
			.ok()
			.map(|_| Self(Arc::clone(streams)))
	}
}

impl Drop for StreamSlot {
	fn drop(&mut self) {
		self.0.fetch_sub(1, Ordering::AcqRel);
	}
}

fn sse_event(record: &EventRecord) -> Result<SseEvent, axum::Error> {
	SseEvent::default().event(record.kind()).json_data(record)
}

/// `GET /v1/events`: every event the node publishes from now on, as
/// server-sent events (see [`super::events`]).
async fn events(State(ctx): Ctx) -> Result<Response, ApiError> {
	let slot = StreamSlot::take(&ctx.streams).ok_or_else(|| ApiError {
		status: StatusCode::SERVICE_UNAVAILABLE,
		message: format!("{MAX_EVENT_STREAMS} event streams are open already; close one"),
	})?;
	let receiver = ctx.node.subscribe();
	// The stream ends when the node stops: the server's graceful shutdown
	// waits for every response to end.
	let stopping = ctx.shutdown.subscribe();
	let state = (receiver, stopping, slot);
	let stream =
		futures_util::stream::unfold(state, |(mut receiver, mut stopping, slot)| async move {
			let received = tokio::select! {
				received = receiver.recv() => received,
				_ = stopping.wait_for(|stop| *stop) => return None,
			};
			let record = match received {
				Ok(event) => EventRecord::from(&event),
				Err(broadcast::error::RecvError::Lagged(missed)) => EventRecord::Lagged { missed },
				Err(broadcast::error::RecvError::Closed) => return None,
			};
			Some((sse_event(&record), (receiver, stopping, slot)))
		});
	let subscribed =
		futures_util::stream::once(std::future::ready(sse_event(&EventRecord::Subscribed)));
	let stream = futures_util::StreamExt::chain(subscribed, stream);
	Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn list_static_invoices(
	State(ctx): Ctx, body: Bytes,
) -> ApiResult<super::ListStaticInvoicesResponse> {
	parse::<EmptyRequest>(&body)?;
	let server = ctx.node.static_invoice_server().ok_or_else(|| {
		ApiError::bad_request(
			"this node does not serve static invoices (static_invoice_server = false)",
		)
	})?;
	Ok(Json(super::ListStaticInvoicesResponse {
		invoices: server.list(),
		stats: server.core().stats(),
	}))
}

async fn stop(State(ctx): Ctx, body: Bytes) -> ApiResult<StopResponse> {
	parse::<EmptyRequest>(&body)?;
	ctx.node.stop().await?;
	let _ = ctx.shutdown.send(true);
	Ok(Json(StopResponse { stopped: true }))
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn event_streams_beyond_the_limit_are_refused_until_one_closes() {
		let streams = Arc::new(AtomicUsize::new(0));
		let mut open: Vec<StreamSlot> =
			(0..MAX_EVENT_STREAMS).map(|_| StreamSlot::take(&streams).expect("a slot")).collect();
		assert!(StreamSlot::take(&streams).is_none());
		open.pop();
		assert!(StreamSlot::take(&streams).is_some());
		drop(open);
		assert_eq!(streams.load(Ordering::Acquire), 0);
	}
}
