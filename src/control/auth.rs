//! Who may use the control interface: bearer tokens in the data directory
//! (like bitcoind's `.cookie`), an admin one and a read-only one (like LND's
//! admin and readonly macaroons), and the request checks that keep browsers
//! and DNS rebinding out.
//!
//! At every start the node writes two fresh random tokens (32 bytes, hex)
//! to [`ADMIN_TOKEN_FILE`] and [`READONLY_TOKEN_FILE`] in its data directory,
//! mode 0600, and removes them when it stops. Every request must carry one
//! as `Authorization: Bearer <token>`; the comparison is constant-time
//! ([`subtle`]). The read-only token allows only the listing commands
//! ([`is_read_only`]). Before the token, [`guard`] checks that the `Host`
//! header names the control address (a web page that rebinds its own name to
//! 127.0.0.1 sends its own name) and that no `Origin` header is present
//! (browsers send one with every cross-origin POST; `ctl` and scripts do
//! not); after it, that the body is declared `application/json` (a form or
//! `text/plain` POST, which browsers send without a preflight, is refused;
//! the bodiless `GET`s of [`GET_PATHS`], a scrape and the event stream, are
//! exempt from this one).
//! No CORS header is ever sent, so a browser never lets a page read an
//! answer. A refused request runs nothing.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::paths;
use super::server::ApiError;

/// The admin token's file in the data directory: every command.
pub const ADMIN_TOKEN_FILE: &str = "control-admin.token";
/// The read-only token's file in the data directory: the listing commands.
pub const READONLY_TOKEN_FILE: &str = "control-readonly.token";

/// The endpoints the read-only token may call: those that only read.
pub const READ_ONLY_PATHS: &[&str] = &[
	paths::GETINFO,
	paths::LIST_CHANNELS,
	paths::BALANCES,
	paths::LIST_PAYMENTS,
	paths::LIST_STATIC_INVOICES,
	paths::TRAMPOLINE_STATS,
	paths::LIST_HELD,
	paths::LIST_PARTIAL_INVOICES,
	paths::LIST_PARTIAL_PAYMENTS,
	paths::LIST_FORWARDS,
	paths::TRAMPOLINE_BUCKETS,
	paths::LIST_PEERS,
	paths::DECODE,
	paths::METRICS,
	paths::EVENTS,
];

/// The endpoints read with a bodiless `GET` (a scrape, an event stream): no
/// JSON body to check the type of.
pub const GET_PATHS: &[&str] = &[paths::METRICS, paths::EVENTS];

/// Whether `path` only reads (the read-only token may call it).
pub fn is_read_only(path: &str) -> bool {
	READ_ONLY_PATHS.contains(&path)
}

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
	/// Every command.
	Admin,
	/// The listing commands only ([`READ_ONLY_PATHS`]).
	ReadOnly,
}

impl Role {
	/// The token file of this role in `data_dir`.
	pub fn token_path(self, data_dir: &Path) -> PathBuf {
		data_dir.join(match self {
			Role::Admin => ADMIN_TOKEN_FILE,
			Role::ReadOnly => READONLY_TOKEN_FILE,
		})
	}
}

/// Why the tokens cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
	/// A token file cannot be written.
	#[error("cannot write the control token file {}: {reason}", path.display())]
	Write {
		/// The file.
		path: PathBuf,
		/// What failed.
		reason: String,
	},
	/// A token file cannot be read.
	#[error(
		"cannot read the control token file {}: {reason} (is the node running with this data \
		 directory? pass --data-dir or --config as given to the node, or --control-token-file)",
		path.display()
	)]
	Read {
		/// The file.
		path: PathBuf,
		/// What failed.
		reason: String,
	},
	/// A token file holds no usable token.
	#[error(
		"the control token file {} holds no token (64 hex characters expected; restart the node \
		 to write a fresh one)",
		path.display()
	)]
	Malformed {
		/// The file.
		path: PathBuf,
	},
}

/// The node's two tokens for this run.
#[derive(Clone)]
pub struct ControlTokens {
	admin: String,
	read_only: String,
}

impl fmt::Debug for ControlTokens {
	fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
		f.write_str("ControlTokens { .. }")
	}
}

/// 32 random bytes from the OS, as 64 hex characters.
fn random_token() -> String {
	use rand::RngCore;
	let mut bytes = [0u8; 32];
	rand::rngs::OsRng.fill_bytes(&mut bytes);
	hex::DisplayHex::to_lower_hex_string(&bytes[..])
}

impl ControlTokens {
	/// Two fresh random tokens.
	pub fn generate() -> Self {
		Self { admin: random_token(), read_only: random_token() }
	}

	/// Tokens with the given values (for tests and embedders).
	pub fn new(admin: String, read_only: String) -> Self {
		Self { admin, read_only }
	}

	/// Generates fresh tokens and writes them to their files in `data_dir`
	/// (mode 0600, replacing those of an earlier run).
	pub fn create(data_dir: &Path) -> Result<Self, AuthError> {
		let tokens = Self::generate();
		write_private(&Role::Admin.token_path(data_dir), &tokens.admin)?;
		write_private(&Role::ReadOnly.token_path(data_dir), &tokens.read_only)?;
		Ok(tokens)
	}

	/// Removes the token files from `data_dir` (when the node stops), if
	/// they still hold these tokens.
	pub fn remove(&self, data_dir: &Path) {
		for (role, token) in [(Role::Admin, &self.admin), (Role::ReadOnly, &self.read_only)] {
			let path = role.token_path(data_dir);
			if read_token_file(&path).is_ok_and(|t| &t == token) {
				let _ = std::fs::remove_file(path);
			}
		}
	}

	/// The admin token.
	pub fn admin(&self) -> &str {
		&self.admin
	}

	/// The read-only token.
	pub fn read_only(&self) -> &str {
		&self.read_only
	}

	/// The role of `presented`, compared in constant time with both tokens.
	pub fn role_of(&self, presented: &str) -> Option<Role> {
		let presented = presented.as_bytes();
		let admin: bool = self.admin.as_bytes().ct_eq(presented).into();
		let read_only: bool = self.read_only.as_bytes().ct_eq(presented).into();
		match (admin, read_only) {
			(true, _) => Some(Role::Admin),
			(false, true) => Some(Role::ReadOnly),
			(false, false) => None,
		}
	}
}

/// Writes `token` to `path` with mode 0600: a fresh file beside it,
/// renamed over the old one, so that it is never readable by others.
fn write_private(path: &Path, token: &str) -> Result<(), AuthError> {
	let failed =
		|e: std::io::Error| AuthError::Write { path: path.to_path_buf(), reason: e.to_string() };
	let tmp = path.with_extension("token.tmp");
	match std::fs::remove_file(&tmp) {
		Ok(()) => {},
		Err(e) if e.kind() == std::io::ErrorKind::NotFound => {},
		Err(e) => return Err(failed(e)),
	}
	let mut options = std::fs::OpenOptions::new();
	options.write(true).create_new(true);
	#[cfg(unix)]
	std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
	let mut file = options.open(&tmp).map_err(failed)?;
	file.write_all(token.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
	std::fs::rename(&tmp, path).map_err(failed)
}

/// Reads a token file (what `ctl` does).
pub fn read_token_file(path: &Path) -> Result<String, AuthError> {
	let text = std::fs::read_to_string(path)
		.map_err(|e| AuthError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
	let token = text.trim();
	if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
		return Err(AuthError::Malformed { path: path.to_path_buf() });
	}
	Ok(token.to_string())
}

/// The `Host` values a request may carry for a control interface on
/// `addr`: the address itself (`127.0.0.1:9736`, `[::1]:9736`), `localhost`
/// with its port when it is a loopback address, and `extra` (names the
/// operator reaches it by, e.g. `node.example.com:9736`).
pub fn allowed_hosts(addr: SocketAddr, extra: &[String]) -> Vec<String> {
	let mut hosts = vec![addr.to_string()];
	if addr.ip().is_loopback() {
		hosts.push(format!("localhost:{}", addr.port()));
	}
	if let IpAddr::V6(ip) = addr.ip() {
		if let Some(v4) = ip.to_ipv4_mapped() {
			hosts.push(SocketAddr::new(IpAddr::V4(v4), addr.port()).to_string());
		}
	}
	hosts.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()));
	hosts
}

/// What [`guard`] checks requests against.
#[derive(Clone, Debug)]
pub struct Guard {
	tokens: Arc<ControlTokens>,
	hosts: Arc<Vec<String>>,
}

impl Guard {
	/// Requests must carry one of `tokens` and a `Host` among `hosts`
	/// (see [`allowed_hosts`]).
	pub fn new(tokens: ControlTokens, hosts: Vec<String>) -> Self {
		Self { tokens: Arc::new(tokens), hosts: Arc::new(hosts) }
	}

	/// Why `headers` for a request to `path` are refused, if they are.
	pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<Role, Refusal> {
		let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
		let host = host.map(|h| h.trim().to_ascii_lowercase());
		match host {
			Some(host) if self.hosts.contains(&host) => {},
			other => return Err(Refusal::Host(other.unwrap_or_default())),
		}
		if headers.contains_key(header::ORIGIN) {
			return Err(Refusal::Origin);
		}
		let authorization = headers.get(header::AUTHORIZATION).ok_or(Refusal::MissingToken)?;
		let token = authorization
			.to_str()
			.ok()
			.and_then(|v| v.strip_prefix("Bearer "))
			.ok_or(Refusal::MissingToken)?;
		let role = self.tokens.role_of(token.trim()).ok_or(Refusal::WrongToken)?;
		let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
		let essence = content_type.map(|v| v.split(';').next().unwrap_or("").trim());
		// A scrape or a stream is a GET without a body (any other method
		// there is 405).
		let json = essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json"));
		if !json && !GET_PATHS.contains(&path) {
			return Err(Refusal::ContentType(content_type.unwrap_or("none").to_string()));
		}
		if role == Role::ReadOnly && !is_read_only(path) {
			return Err(Refusal::ReadOnly(path.to_string()));
		}
		Ok(role)
	}
}

/// Why a request was refused before anything ran.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
	/// The `Host` header is missing or names another host (403).
	#[error(
		"Host {0:?} is not this control interface's address; connect to the address it \
		 listens on (or add the name to control_hosts)"
	)]
	Host(String),
	/// The request comes from a web page (403).
	#[error("requests from web pages (with an Origin header) are refused")]
	Origin,
	/// No `Authorization: Bearer` header (401).
	#[error(
		"no token: send `Authorization: Bearer <token>` with the token from the node's data \
		 directory ({ADMIN_TOKEN_FILE}, or {READONLY_TOKEN_FILE} for listings)"
	)]
	MissingToken,
	/// A token that is neither of the node's (401).
	#[error(
		"wrong token: the node writes fresh tokens at each start to {ADMIN_TOKEN_FILE} and \
		 {READONLY_TOKEN_FILE} in its data directory"
	)]
	WrongToken,
	/// The body is not declared JSON (415).
	#[error("Content-Type {0:?} refused: send `Content-Type: application/json`")]
	ContentType(String),
	/// The read-only token on a command that changes something (403).
	#[error("the read-only token cannot call {0}; use the admin token ({ADMIN_TOKEN_FILE})")]
	ReadOnly(String),
}

impl Refusal {
	/// The HTTP status it is answered with.
	pub fn status(&self) -> StatusCode {
		match self {
			Refusal::MissingToken | Refusal::WrongToken => StatusCode::UNAUTHORIZED,
			Refusal::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
			Refusal::Host(_) | Refusal::Origin | Refusal::ReadOnly(_) => StatusCode::FORBIDDEN,
		}
	}
}

/// The middleware: runs the request only if [`Guard::check`] lets it.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
	match guard.check(request.uri().path(), request.headers()) {
		Ok(_) => next.run(request).await,
		Err(refusal) => {
			let mut response =
				ApiError { status: refusal.status(), message: refusal.to_string() }.into_response();
			if refusal.status() == StatusCode::UNAUTHORIZED {
				response
					.headers_mut()
					.insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
			}
			response
		},
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use axum::http::HeaderValue;

	fn guard() -> Guard {
		let addr: SocketAddr = "127.0.0.1:9736".parse().unwrap();
		Guard::new(ControlTokens::new("aa".repeat(32), "bb".repeat(32)), allowed_hosts(addr, &[]))
	}

	fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
		let mut map = HeaderMap::new();
		for (name, value) in pairs {
			map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
		}
		map
	}

	fn good(token: &str) -> Vec<(header::HeaderName, String)> {
		vec![
			(header::HOST, "127.0.0.1:9736".into()),
			(header::AUTHORIZATION, format!("Bearer {token}")),
			(header::CONTENT_TYPE, "application/json".into()),
		]
	}

	fn check(pairs: Vec<(header::HeaderName, String)>, path: &str) -> Result<Role, Refusal> {
		let pairs: Vec<_> = pairs.iter().map(|(n, v)| (n.clone(), v.as_str())).collect();
		guard().check(path, &headers(&pairs))
	}

	fn without(
		mut pairs: Vec<(header::HeaderName, String)>, name: header::HeaderName,
	) -> Vec<(header::HeaderName, String)> {
		pairs.retain(|(n, _)| *n != name);
		pairs
	}

	fn with(
		pairs: Vec<(header::HeaderName, String)>, name: header::HeaderName, value: &str,
	) -> Vec<(header::HeaderName, String)> {
		let mut pairs = without(pairs, name.clone());
		pairs.push((name, value.into()));
		pairs
	}

	#[test]
	fn each_check_refuses_with_its_status() {
		let admin = "aa".repeat(32);
		let read_only = "bb".repeat(32);
		assert_eq!(check(good(&admin), paths::PAY), Ok(Role::Admin));
		assert_eq!(check(good(&read_only), paths::LIST_PAYMENTS), Ok(Role::ReadOnly));
		let cases = [
			(without(good(&admin), header::AUTHORIZATION), StatusCode::UNAUTHORIZED),
			(with(good(&admin), header::AUTHORIZATION, &"aa".repeat(32)), StatusCode::UNAUTHORIZED),
			(with(good(&admin), header::AUTHORIZATION, "Bearer "), StatusCode::UNAUTHORIZED),
			(
				with(good(&admin), header::AUTHORIZATION, &format!("Bearer {}", "ab".repeat(32))),
				StatusCode::UNAUTHORIZED,
			),
			(
				with(good(&admin), header::AUTHORIZATION, &format!("Bearer {}", &admin[..63])),
				StatusCode::UNAUTHORIZED,
			),
			(with(good(&admin), header::HOST, "evil.example:9736"), StatusCode::FORBIDDEN),
			(with(good(&admin), header::HOST, "127.0.0.1:9737"), StatusCode::FORBIDDEN),
			(without(good(&admin), header::HOST), StatusCode::FORBIDDEN),
			(with(good(&admin), header::ORIGIN, "http://evil.example"), StatusCode::FORBIDDEN),
			(
				with(good(&admin), header::CONTENT_TYPE, "text/plain"),
				StatusCode::UNSUPPORTED_MEDIA_TYPE,
			),
			(
				with(good(&admin), header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
				StatusCode::UNSUPPORTED_MEDIA_TYPE,
			),
			(without(good(&admin), header::CONTENT_TYPE), StatusCode::UNSUPPORTED_MEDIA_TYPE),
			(good(&read_only), StatusCode::FORBIDDEN),
		];
		for (i, (pairs, status)) in cases.into_iter().enumerate() {
			let refusal = check(pairs, paths::PAY).expect_err(&format!("case {i} accepted"));
			assert_eq!(refusal.status(), status, "case {i}: {refusal}");
		}
		// A wrong Host is refused before the token is even looked at.
		let pairs = with(without(good(&admin), header::AUTHORIZATION), header::HOST, "x:1");
		assert!(matches!(check(pairs, paths::PAY), Err(Refusal::Host(_))));
		// A scrape needs a token and the Host, not a JSON body.
		let scrape = without(good(&read_only), header::CONTENT_TYPE);
		assert_eq!(check(scrape, paths::METRICS), Ok(Role::ReadOnly));
		let scrape = without(good(&read_only), header::AUTHORIZATION);
		assert_eq!(check(scrape, paths::METRICS), Err(Refusal::MissingToken));
		let stream = without(good(&read_only), header::CONTENT_TYPE);
		assert_eq!(check(stream, paths::EVENTS), Ok(Role::ReadOnly));
		// Charset parameters and case are fine; localhost too on loopback.
		let pairs = with(good(&admin), header::CONTENT_TYPE, "Application/JSON; charset=utf-8");
		assert_eq!(check(pairs, paths::PAY), Ok(Role::Admin));
		let pairs = with(good(&admin), header::HOST, "LOCALHOST:9736");
		assert_eq!(check(pairs, paths::PAY), Ok(Role::Admin));
	}

	#[test]
	fn the_read_only_token_reaches_exactly_the_listings() {
		let read_only = "bb".repeat(32);
		for path in READ_ONLY_PATHS {
			assert_eq!(check(good(&read_only), path), Ok(Role::ReadOnly), "{path}");
		}
		for path in [
			paths::CONNECT,
			paths::OPEN_CHANNEL,
			paths::CLOSE_CHANNEL,
			paths::NEW_ADDRESS,
			paths::INVOICE,
			paths::OFFER,
			paths::PAY,
			paths::STOP,
			"/v1/unknown",
		] {
			assert_eq!(
				check(good(&read_only), path),
				Err(Refusal::ReadOnly(path.to_string())),
				"{path}"
			);
			assert_eq!(check(good(&"aa".repeat(32)), path), Ok(Role::Admin), "{path}");
		}
	}

	#[test]
	fn token_files_are_private_fresh_and_removed() {
		use std::os::unix::fs::PermissionsExt;
		let dir = tempfile::tempdir().unwrap();
		// A leftover file readable by all is replaced, not reused.
		let admin_path = Role::Admin.token_path(dir.path());
		std::fs::write(&admin_path, "00").unwrap();
		std::fs::set_permissions(&admin_path, std::fs::Permissions::from_mode(0o644)).unwrap();
		let tokens = ControlTokens::create(dir.path()).unwrap();
		for (role, token) in [(Role::Admin, tokens.admin()), (Role::ReadOnly, tokens.read_only())] {
			let path = role.token_path(dir.path());
			let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
			assert_eq!(mode, 0o600, "{}", path.display());
			assert_eq!(read_token_file(&path).unwrap(), token);
			assert_eq!(token.len(), 64);
		}
		assert_ne!(tokens.admin(), tokens.read_only());
		let again = ControlTokens::create(dir.path()).unwrap();
		assert_ne!(again.admin(), tokens.admin(), "a fresh token at each start");
		// An older run's tokens do not remove the newer files.
		tokens.remove(dir.path());
		assert!(admin_path.exists());
		again.remove(dir.path());
		assert!(!admin_path.exists() && !Role::ReadOnly.token_path(dir.path()).exists());
		let err = read_token_file(&admin_path).unwrap_err().to_string();
		assert!(err.contains("--control-token-file") && err.contains("--data-dir"), "{err}");
		std::fs::write(&admin_path, "not a token\n").unwrap();
		assert!(matches!(read_token_file(&admin_path), Err(AuthError::Malformed { .. })));
	}

	#[test]
	fn debug_does_not_print_tokens() {
		let tokens = ControlTokens::new("aa".repeat(32), "bb".repeat(32));
		let shown = format!("{tokens:?} {:?}", guard());
		assert!(!shown.contains("aaaa") && !shown.contains("bbbb"), "{shown}");
	}
}
