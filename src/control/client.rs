//! A client for the control interface (what `ldk-trampoline ctl` uses).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::events::{EventRecord, SseParser};
use super::*;

/// How long to wait for the TCP connection to the control interface.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for an answer, except for `pay` (which waits for the
/// payment's own timeout plus this). Opening a channel waits for the peer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors talking to the control interface.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
	/// The address of the control interface is malformed.
	#[error(
		"invalid control address {value:?}: {reason} (expected HOST:PORT or http://HOST:PORT)"
	)]
	InvalidAddress {
		/// What was given.
		value: String,
		/// What is wrong with it.
		reason: String,
	},
	/// The token cannot be read.
	#[error(transparent)]
	Token(#[from] super::auth::AuthError),
	/// The certificate to trust cannot be read.
	#[error("cannot load the control interface's certificate {}: {reason}", path.display())]
	CaCert {
		/// The file.
		path: PathBuf,
		/// What failed.
		reason: String,
	},
	/// Nothing answered.
	#[error("cannot reach the control interface at {url}: {reason} (is `ldk-trampoline node` running, and does --control match its --control-listen?)")]
	Unreachable {
		/// The URL requested.
		url: String,
		/// What failed.
		reason: String,
	},
	/// The node refused the request or failed it.
	#[error("the node answered {status}: {message}")]
	Api {
		/// The HTTP status.
		status: StatusCode,
		/// The node's error message.
		message: String,
	},
	/// The answer is not what the endpoint answers.
	#[error("unexpected answer from {url}: {reason}")]
	Decode {
		/// The URL requested.
		url: String,
		/// What is wrong with it.
		reason: String,
	},
}

/// An error's message followed by those of its causes that it does not already
/// include (`message: cause: cause`), for errors that leave their cause out.
pub fn with_causes(error: &dyn std::error::Error) -> String {
	let mut message = error.to_string();
	let mut source = error.source();
	while let Some(cause) = source {
		let cause_text = cause.to_string();
		if !message.contains(&cause_text) {
			message.push_str(": ");
			message.push_str(&cause_text);
		}
		source = cause.source();
	}
	message
}

/// The innermost cause of an error (for reqwest's, e.g. "Connection refused").
fn root_cause(error: &dyn std::error::Error) -> String {
	let mut cause = error;
	while let Some(source) = cause.source() {
		cause = source;
	}
	cause.to_string()
}

/// Where the client's bearer token comes from.
#[derive(Clone)]
pub enum TokenSource {
	/// This token.
	Token(String),
	/// A token file, read at each request (the node writes a fresh one at
	/// each start), e.g. [`auth::Role::token_path`](super::auth::Role::token_path).
	File(PathBuf),
}

impl std::fmt::Debug for TokenSource {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		match self {
			TokenSource::Token(_) => f.write_str("Token(..)"),
			TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
		}
	}
}

/// How the client authenticates, and whom it trusts over https.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
	/// The bearer token; `None` sends none (every request is then refused).
	pub token: Option<TokenSource>,
	/// A PEM certificate (the node's own self-signed one, or its CA) to
	/// trust instead of the web's roots for an `https://` address.
	pub ca_cert: Option<PathBuf>,
}

/// A client of one node's control interface.
#[derive(Clone, Debug)]
pub struct ControlClient {
	base_url: String,
	http: reqwest::Client,
	token: Option<TokenSource>,
}

impl ControlClient {
	/// A client for the control interface at `address` (`HOST:PORT`,
	/// `http://HOST:PORT` or `https://HOST:PORT`) sending no token: only
	/// good for seeing requests refused. See [`ControlClient::for_data_dir`].
	pub fn new(address: &str) -> Result<Self, ClientError> {
		Self::with_options(address, ClientOptions::default())
	}

	/// A client for the node whose data directory is `data_dir`, with its
	/// admin token.
	pub fn for_data_dir(address: &str, data_dir: &std::path::Path) -> Result<Self, ClientError> {
		let token = TokenSource::File(super::auth::Role::Admin.token_path(data_dir));
		Self::with_options(address, ClientOptions { token: Some(token), ca_cert: None })
	}

	/// A client for the control interface at `address` with `options`.
	pub fn with_options(address: &str, options: ClientOptions) -> Result<Self, ClientError> {
		let invalid = |reason: &str| ClientError::InvalidAddress {
			value: address.into(),
			reason: reason.into(),
		};
		let trimmed = address.trim().trim_end_matches('/');
		let with_scheme =
			if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
		let url = reqwest::Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
		if !matches!(url.scheme(), "http" | "https") {
			return Err(invalid("only http:// and https:// are supported"));
		}
		if url.host_str().is_none_or(str::is_empty) {
			return Err(invalid("no host"));
		}
		if url.path() != "/" || url.query().is_some() {
			return Err(invalid("give no path; the endpoints are added to it"));
		}
		let mut http = reqwest::Client::builder()
			.use_rustls_tls()
			.connect_timeout(CONNECT_TIMEOUT)
			// The interface is the operator's: never route it through a proxy
			// from the environment.
			.no_proxy();
		if let Some(path) = &options.ca_cert {
			let failed = |reason: String| ClientError::CaCert { path: path.clone(), reason };
			let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
			let certs =
				reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| failed(with_causes(&e)))?;
			if certs.is_empty() {
				return Err(failed("no PEM certificate in it".into()));
			}
			http = http.tls_built_in_root_certs(false);
			for cert in certs {
				http = http.add_root_certificate(cert);
			}
		}
		let http = http.build().map_err(|e| invalid(&with_causes(&e)))?;
		Ok(Self { base_url: with_scheme, http, token: options.token })
	}

	/// The token to send now.
	fn token(&self) -> Result<Option<String>, ClientError> {
		Ok(match &self.token {
			None => None,
			Some(TokenSource::Token(token)) => Some(token.clone()),
			Some(TokenSource::File(path)) => Some(super::auth::read_token_file(path)?),
		})
	}

	/// The base URL requests go to, e.g. `http://127.0.0.1:9736`.
	pub fn base_url(&self) -> &str {
		&self.base_url
	}

	/// Posts `request` to `path` (one of [`paths`]) and decodes the answer,
	/// waiting at most `timeout`.
	pub async fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
		&self, path: &str, request: &Req, timeout: Duration,
	) -> Result<Resp, ClientError> {
		let url = format!("{}{path}", self.base_url);
		let mut post = self.http.post(&url).json(request).timeout(timeout);
		if let Some(token) = self.token()? {
			post = post.bearer_auth(token);
		}
		let response = post.send().await.map_err(|e| {
			let reason = if e.is_timeout() {
				format!("no answer within {timeout:?}")
			} else {
				root_cause(&e)
			};
			ClientError::Unreachable { url: url.clone(), reason }
		})?;
		let status = response.status();
		let body = response.bytes().await.map_err(|e| ClientError::Decode {
			url: url.clone(),
			reason: format!("cannot read the answer: {}", with_causes(&e)),
		})?;
		if !status.is_success() {
			let message = match serde_json::from_slice::<ErrorResponse>(&body) {
				Ok(error) => error.error,
				Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
			};
			return Err(ClientError::Api { status, message });
		}
		serde_json::from_slice(&body)
			.map_err(|e| ClientError::Decode { url, reason: format!("{e}") })
	}

	async fn call_empty<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, ClientError> {
		self.call(path, &EmptyRequest {}, REQUEST_TIMEOUT).await
	}

	/// `getinfo`: the node's identity and state.
	pub async fn getinfo(&self) -> Result<GetInfoResponse, ClientError> {
		self.call_empty(paths::GETINFO).await
	}

	/// `connect`: connects to `peer` (`NODE_ID@HOST:PORT`).
	pub async fn connect(&self, peer: &str) -> Result<ConnectResponse, ClientError> {
		self.call(paths::CONNECT, &ConnectRequest { peer: peer.into() }, REQUEST_TIMEOUT).await
	}

	/// `open-channel`: opens a channel and returns once its funding is broadcast.
	pub async fn open_channel(
		&self, request: &OpenChannelRequest,
	) -> Result<OpenChannelResponse, ClientError> {
		self.call(paths::OPEN_CHANNEL, request, REQUEST_TIMEOUT).await
	}

	/// `list-channels`: every channel.
	pub async fn list_channels(&self) -> Result<ListChannelsResponse, ClientError> {
		self.call_empty(paths::LIST_CHANNELS).await
	}

	/// `close-channel`: starts closing a channel.
	pub async fn close_channel(
		&self, channel_id: &str, force: bool,
	) -> Result<CloseChannelResponse, ClientError> {
		let request = CloseChannelRequest { channel_id: channel_id.into(), force };
		self.call(paths::CLOSE_CHANNEL, &request, REQUEST_TIMEOUT).await
	}

	/// `balances`: on-chain and Lightning balances.
	pub async fn balances(&self) -> Result<Balances, ClientError> {
		self.call_empty(paths::BALANCES).await
	}

	/// `new-address`: a fresh on-chain address.
	pub async fn new_address(&self) -> Result<NewAddressResponse, ClientError> {
		self.call_empty(paths::NEW_ADDRESS).await
	}

	/// `invoice`: creates a BOLT 11 invoice.
	pub async fn invoice(&self, request: &InvoiceRequest) -> Result<InvoiceResponse, ClientError> {
		self.call(paths::INVOICE, request, REQUEST_TIMEOUT).await
	}

	/// `offer`: creates a BOLT 12 offer.
	pub async fn offer(&self, request: &OfferRequest) -> Result<OfferResponse, ClientError> {
		self.call(paths::OFFER, request, REQUEST_TIMEOUT).await
	}

	/// `pay`: pays an invoice or offer and waits for the outcome (the answer
	/// shows the payment pending if it outlasts the request's timeout).
	pub async fn pay(&self, request: &PayRequest) -> Result<PaymentRecord, ClientError> {
		// The node refuses waits longer than a day; do not wait past that either.
		let wait = request.timeout_secs.unwrap_or(DEFAULT_PAY_TIMEOUT_SECS).min(24 * 3600);
		let timeout = Duration::from_secs(wait + 30);
		self.call(paths::PAY, request, timeout).await
	}

	/// `list-payments`: every payment, oldest first.
	pub async fn list_payments(&self) -> Result<ListPaymentsResponse, ClientError> {
		self.call_empty(paths::LIST_PAYMENTS).await
	}

	/// `trampoline-stats`: what the node has relayed.
	pub async fn trampoline_stats(&self) -> Result<crate::relay::RelayStats, ClientError> {
		self.call_empty(paths::TRAMPOLINE_STATS).await
	}

	/// `trampoline-buckets`: every incoming trampoline payment, with the
	/// dialect its payer spoke.
	pub async fn trampoline_buckets(
		&self,
	) -> Result<super::TrampolineBucketsResponse, ClientError> {
		self.call_empty(paths::TRAMPOLINE_BUCKETS).await
	}

	/// `list-partial-invoices`: incoming multi-part payments not claimed yet.
	pub async fn list_partial_invoices(
		&self,
	) -> Result<super::ListPartialInvoicesResponse, ClientError> {
		self.call_empty(paths::LIST_PARTIAL_INVOICES).await
	}

	/// `list-partial-payments`: outgoing payments with their parts.
	pub async fn list_partial_payments(
		&self,
	) -> Result<super::ListPartialPaymentsResponse, ClientError> {
		self.call_empty(paths::LIST_PARTIAL_PAYMENTS).await
	}

	/// `list-held`: trampoline payments held for an offline next node and
	/// HTLCs held for often-offline payers.
	pub async fn list_held(&self) -> Result<super::ListHeldResponse, ClientError> {
		self.call_empty(paths::LIST_HELD).await
	}

	/// `list-forwards`: one page of the forwarding history, oldest first
	/// (pass the answer's `next_index_offset` as `index_offset` for the next).
	pub async fn list_forwards(
		&self, request: &super::ListForwardsRequest,
	) -> Result<super::ListForwardsResponse, ClientError> {
		self.call(paths::LIST_FORWARDS, request, REQUEST_TIMEOUT).await
	}

	/// `list-static-invoices`: the static invoices this node serves.
	pub async fn list_static_invoices(
		&self,
	) -> Result<super::ListStaticInvoicesResponse, ClientError> {
		self.call_empty(paths::LIST_STATIC_INVOICES).await
	}

	/// `send-onchain`: pays on-chain from the node's wallet.
	pub async fn send_onchain(
		&self, request: &SendOnchainRequest,
	) -> Result<OnchainSend, ClientError> {
		self.call(paths::SEND_ONCHAIN, request, REQUEST_TIMEOUT).await
	}

	/// `list-peers`: the connected peers.
	pub async fn list_peers(&self) -> Result<ListPeersResponse, ClientError> {
		self.call_empty(paths::LIST_PEERS).await
	}

	/// `disconnect`: disconnects a peer (`force` for one we have channels with).
	pub async fn disconnect(
		&self, node_id: &str, force: bool,
	) -> Result<DisconnectResponse, ClientError> {
		let request = DisconnectRequest { node_id: node_id.to_string(), force };
		self.call(paths::DISCONNECT, &request, REQUEST_TIMEOUT).await
	}

	/// `decode`: the fields of a BOLT 11 invoice, BOLT 12 offer or BOLT 12 invoice.
	pub async fn decode(&self, request: &str) -> Result<Decoded, ClientError> {
		let request = DecodeRequest { request: request.to_string() };
		self.call(paths::DECODE, &request, REQUEST_TIMEOUT).await
	}

	/// `stop`: stops the node, which then exits.
	pub async fn stop(&self) -> Result<StopResponse, ClientError> {
		self.call_empty(paths::STOP).await
	}

	/// `events`: the node's events from now on, as they happen (see
	/// [`super::events`]). The stream stays open until the node stops.
	pub async fn events(&self) -> Result<EventStream, ClientError> {
		let url = format!("{}{}", self.base_url, paths::EVENTS);
		let mut get = self.http.get(&url);
		if let Some(token) = self.token()? {
			get = get.bearer_auth(token);
		}
		let response = get
			.send()
			.await
			.map_err(|e| ClientError::Unreachable { url: url.clone(), reason: root_cause(&e) })?;
		let status = response.status();
		if !status.is_success() {
			let body = response.bytes().await.unwrap_or_default();
			let message = match serde_json::from_slice::<ErrorResponse>(&body) {
				Ok(error) => error.error,
				Err(_) => String::from_utf8_lossy(&body).trim().to_string(),
			};
			return Err(ClientError::Api { status, message });
		}
		Ok(EventStream { url, response, parser: SseParser::default(), ready: VecDeque::new() })
	}
}

/// How long [`EventStream::next`] waits for anything (three of the node's
/// keep-alive intervals).
pub const EVENT_STREAM_SILENCE: Duration = Duration::from_secs(45);

/// The node's events as [`ControlClient::events`] receives them.
#[derive(Debug)]
pub struct EventStream {
	url: String,
	response: reqwest::Response,
	parser: SseParser,
	ready: VecDeque<EventRecord>,
}

impl EventStream {
	/// The next event, waiting for it; `None` when the node ended the stream
	/// (it stopped).
	pub async fn next(&mut self) -> Result<Option<EventRecord>, ClientError> {
		loop {
			if let Some(record) = self.ready.pop_front() {
				return Ok(Some(record));
			}
			// The node sends a keep-alive every 15 s: silence for longer
			// means it is gone (a half-open connection never ends by itself).
			let chunk = tokio::time::timeout(EVENT_STREAM_SILENCE, self.response.chunk())
				.await
				.map_err(|_| ClientError::Unreachable {
					url: self.url.clone(),
					reason: format!(
						"no event and no keep-alive for {}s",
						EVENT_STREAM_SILENCE.as_secs()
					),
				})?
				.map_err(|e| ClientError::Decode {
					url: self.url.clone(),
					reason: format!("the stream broke: {}", with_causes(&e)),
				})?;
			let Some(chunk) = chunk else { return Ok(None) };
			let records = self.parser.push(&chunk).map_err(|e| ClientError::Decode {
				url: self.url.clone(),
				reason: e.to_string(),
			})?;
			self.ready.extend(records);
		}
	}
}
