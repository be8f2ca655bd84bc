//! The reference node's configuration: a TOML file and command-line flags, the
//! flags overriding the file, validated into a [`NodeConfig`] and the control
//! interface's address.
//!
//! Every key of the file is optional and named like its flag (`data_dir` for
//! `--data-dir`):
//!
//! ```toml
//! network = "regtest"
//! data_dir = "node-data"            # relative to the config file's directory
//! listen = "0.0.0.0:9735"
//! bitcoind_rpc = "127.0.0.1:18443"
//! bitcoind_rpc_user = "user"        # with bitcoind_rpc_password,
//! bitcoind_rpc_password = "secret"
//! # bitcoind_rpc_cookie = "/home/me/.bitcoin/regtest/.cookie"   # or the cookie
//! control_listen = "127.0.0.1:9736"
//! # off loopback, the control interface needs TLS:
//! # control_tls_cert = "control.crt"
//! # control_tls_key = "control.key"
//! # control_hosts = ["node.example.com:9736"]   # Host names it is reached by
//! alias = "my-node"
//! log_level = "info"
//! ```
//!
//! Without `data_dir` the node uses [`default_data_dir`]
//! (`$LDK_TRAMPOLINE_DATA_DIR`, else `~/.ldk-trampoline`); `ctl` finds the
//! node's token the same way ([`resolve_ctl`]).
//!
//! Errors name the key or flag and the value at fault.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use bitcoin::Network;
use lightning::util::logger::Level;
use serde::Deserialize;

use crate::control::DEFAULT_CONTROL_LISTEN;
use crate::htlc_hold::HtlcHoldPolicy;
use crate::node::{BitcoindRpcConfig, NodeConfig, RpcAuth};
use crate::relay::TrampolinePolicy;

const NETWORKS: &str = "bitcoin, testnet, testnet4, signet, regtest";
const LOG_LEVELS: &str = "gossip, trace, debug, info, warn, error";

/// The reference node's settings as written in the config file or given as
/// flags; every one is optional until [`ReferenceNodeConfig::resolve`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceNodeConfig {
	/// The chain: bitcoin, testnet, testnet4, signet or regtest. Required.
	pub network: Option<String>,
	/// Where the node keeps its seed and state. Required.
	pub data_dir: Option<PathBuf>,
	/// Where to accept peer connections, `HOST:PORT` (default `127.0.0.1:9735`;
	/// port 0 picks a free one).
	pub listen: Option<String>,
	/// bitcoind's RPC interface, `HOST:PORT`. Required.
	pub bitcoind_rpc: Option<String>,
	/// bitcoind's `rpcuser` (with `bitcoind_rpc_password`).
	pub bitcoind_rpc_user: Option<String>,
	/// bitcoind's `rpcpassword` (with `bitcoind_rpc_user`).
	pub bitcoind_rpc_password: Option<String>,
	/// bitcoind's `.cookie` file, instead of a user and password.
	pub bitcoind_rpc_cookie: Option<PathBuf>,
	/// Where the control interface listens, `HOST:PORT` (default
	/// [`DEFAULT_CONTROL_LISTEN`]). An address other than loopback needs
	/// `control_tls_cert` and `control_tls_key`.
	pub control_listen: Option<String>,
	/// The control interface's TLS certificate chain (PEM); with
	/// `control_tls_key`, the interface speaks https only.
	pub control_tls_cert: Option<PathBuf>,
	/// The control interface's TLS private key (PEM).
	pub control_tls_key: Option<PathBuf>,
	/// `HOST:PORT` names a request's `Host` may carry besides the control
	/// address itself (e.g. the DNS name in the TLS certificate).
	pub control_hosts: Option<Vec<String>>,
	/// The alias announced to the network, at most 32 bytes (default
	/// `ldk-trampoline`).
	pub alias: Option<String>,
	/// The lowest level written to `<data_dir>/logs/ldk.log`: gossip, trace,
	/// debug, info, warn or error (default `debug`).
	pub log_level: Option<String>,
	/// Relay trampoline payments (default `true`).
	pub trampoline_relay: Option<bool>,
	/// Trampoline base fee, msat (default 1000).
	pub trampoline_fee_base_msat: Option<u32>,
	/// Trampoline proportional fee, millionths (default 1000).
	pub trampoline_fee_proportional_millionths: Option<u32>,
	/// Blocks kept between the incoming and the outgoing expiry of a relayed
	/// trampoline payment (default 288, at least 18).
	pub trampoline_cltv_expiry_delta: Option<u16>,
	/// Also advertise Electrum's trampoline feature bit 151 next to 57 (in
	/// `init`, the node announcement and our invoices; default `true`).
	pub trampoline_legacy_feature_bit: Option<bool>,
	/// Serve static invoices for often-offline (async) recipients, with the
	/// default quotas (default `true`).
	pub static_invoice_server: Option<bool>,
	/// Where to POST a signed LSPS5 `lsps5.payment_incoming` notification
	/// when a payment is held for an offline peer (default: none).
	pub wake_webhook_url: Option<String>,
	/// A PEM certificate to trust for the wake-up webhook besides the web's
	/// roots (a private CA, or a self-signed push service).
	pub wake_webhook_ca_cert: Option<PathBuf>,
	/// Hold HTLCs that often-offline payers flag `hold_htlc` until their
	/// recipient releases them (the sender's LSP of BOLTs PR 1149; default
	/// `true`).
	pub htlc_hold: Option<bool>,
	/// HTLCs held at once for one payer (default 32).
	pub htlc_hold_max_htlcs_per_peer: Option<usize>,
	/// Value held at once for one payer, msat (default 10,000,000,000).
	pub htlc_hold_max_msat_per_peer: Option<u64>,
	/// Forwarding history records kept, the newest (default 10,000).
	pub max_forwards: Option<usize>,
}

/// The smallest trampoline CLTV delta accepted, derived from LDK's constants
/// ([`crate::relay::policy::MIN_CLTV_EXPIRY_DELTA`]: the fail-back buffer plus
/// the claim safety margin): below it even an honest payer leaves the outgoing
/// payment claimable after LDK has failed the incoming HTLCs back.
pub const MIN_TRAMPOLINE_CLTV_EXPIRY_DELTA: u16 = crate::relay::policy::MIN_CLTV_EXPIRY_DELTA;

/// Where a setting came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
	/// A key of a config file.
	File {
		/// The key.
		key: &'static str,
		/// The file.
		path: PathBuf,
	},
	/// A command-line flag, e.g. `--network`.
	Flag(&'static str),
}

impl fmt::Display for Origin {
	fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
		match self {
			Origin::File { key, path } => write!(f, "`{key}` in {}", path.display()),
			Origin::Flag(flag) => write!(f, "{flag}"),
		}
	}
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
	/// The config file cannot be read.
	#[error("cannot read the config file {}: {reason}", path.display())]
	Read {
		/// The file.
		path: PathBuf,
		/// What failed.
		reason: String,
	},
	/// The config file is not valid TOML, or has an unknown key or a value of
	/// the wrong type.
	#[error("invalid config file {}: {reason}", path.display())]
	Parse {
		/// The file.
		path: PathBuf,
		/// What is wrong, with the line.
		reason: String,
	},
	/// A required setting is missing.
	#[error("`{key}` is required (set it in the config file or pass {flag})")]
	Missing {
		/// The config key.
		key: &'static str,
		/// The flag.
		flag: &'static str,
	},
	/// A setting has an unusable value.
	#[error("invalid value for {origin}: {value:?} ({expected})")]
	Invalid {
		/// Where it was set.
		origin: Origin,
		/// The value.
		value: String,
		/// What is expected instead.
		expected: String,
	},
	/// bitcoind's RPC credentials are missing, incomplete or contradictory.
	#[error("bitcoind RPC credentials: {0}")]
	Credentials(String),
	/// The control interface would be reachable off this host without TLS.
	#[error(
		"the control interface would listen on {addr}, which is not a loopback address, without \
		 TLS: set `control_tls_cert` and `control_tls_key` (--control-tls-cert, \
		 --control-tls-key), or listen on 127.0.0.1"
	)]
	ControlWithoutTls {
		/// The address.
		addr: SocketAddr,
	},
	/// Only one of the control interface's certificate and key is set.
	#[error("{0} is set without {1}: the control interface's TLS needs both")]
	HalfTls(String, &'static str),
}

/// The data directory when none is configured: `$LDK_TRAMPOLINE_DATA_DIR`,
/// else `$HOME/.ldk-trampoline`.
pub fn default_data_dir() -> Option<PathBuf> {
	let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
	non_empty("LDK_TRAMPOLINE_DATA_DIR")
		.map(PathBuf::from)
		.or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".ldk-trampoline")))
}

/// The control interface's TLS certificate and key files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlTls {
	/// The certificate chain (PEM).
	pub cert: PathBuf,
	/// The private key (PEM).
	pub key: PathBuf,
}

/// A validated configuration, ready to start the node with.
#[derive(Clone, Debug)]
pub struct ReferenceNodeSettings {
	/// The node's configuration.
	pub node: NodeConfig,
	/// Where the control interface listens.
	pub control_listen: SocketAddr,
	/// TLS for the control interface (required off loopback).
	pub control_tls: Option<ControlTls>,
	/// Further `Host` values the control interface accepts.
	pub control_hosts: Vec<String>,
}

/// A setting with where it came from.
struct Sourced<T> {
	value: T,
	origin: Origin,
}

impl<T> Sourced<T> {
	fn invalid(&self, value: impl fmt::Display, expected: impl Into<String>) -> ConfigError {
		ConfigError::Invalid {
			origin: self.origin.clone(),
			value: value.to_string(),
			expected: expected.into(),
		}
	}
}

impl ReferenceNodeConfig {
	/// Reads a config file.
	pub fn load(path: &Path) -> Result<Self, ConfigError> {
		let text = std::fs::read_to_string(path)
			.map_err(|e| ConfigError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
		toml::from_str(&text).map_err(|e| ConfigError::Parse {
			path: path.to_path_buf(),
			reason: e.to_string().trim_end().to_string(),
		})
	}

	/// Reads the config file at `file` if given, lays `flags` over it and
	/// validates the result.
	pub fn from_file_and_flags(
		file: Option<&Path>, flags: ReferenceNodeConfig,
	) -> Result<ReferenceNodeSettings, ConfigError> {
		let file = match file {
			Some(path) => Some((path, Self::load(path)?)),
			None => None,
		};
		Self::resolve(flags, file)
	}

	/// Lays `flags` over the settings of a config file (its path and contents)
	/// and validates the result. Relative paths in the file are relative to the
	/// file's directory; relative paths in flags to the working directory.
	pub fn resolve(
		flags: ReferenceNodeConfig, file: Option<(&Path, ReferenceNodeConfig)>,
	) -> Result<ReferenceNodeSettings, ConfigError> {
		let (path, file) = match file {
			Some((path, config)) => (Some(path), config),
			None => (None, ReferenceNodeConfig::default()),
		};
		let file_dir = path.and_then(Path::parent).unwrap_or(Path::new(""));
		let pick = |flag_value: Option<String>,
		            file_value: Option<String>,
		            key: &'static str,
		            flag: &'static str| {
			match (flag_value, file_value, path) {
				(Some(value), _, _) => Some(Sourced { value, origin: Origin::Flag(flag) }),
				(None, Some(value), Some(path)) => {
					Some(Sourced { value, origin: Origin::File { key, path: path.to_path_buf() } })
				},
				_ => None,
			}
		};
		let pick_path = |flag_value: Option<PathBuf>,
		                 file_value: Option<PathBuf>,
		                 key: &'static str,
		                 flag: &'static str| {
			match (flag_value, file_value, path) {
				(Some(value), _, _) => Some(Sourced { value, origin: Origin::Flag(flag) }),
				(None, Some(value), Some(path)) => Some(Sourced {
					value: file_dir.join(value),
					origin: Origin::File { key, path: path.to_path_buf() },
				}),
				_ => None,
			}
		};

		let network = pick(flags.network, file.network, "network", "--network")
			.ok_or(ConfigError::Missing { key: "network", flag: "--network" })?;
		let network = parse_network(&network)?;

		let data_dir = pick_path(flags.data_dir, file.data_dir, "data_dir", "--data-dir")
			.or_else(|| {
				default_data_dir()
					.map(|value| Sourced { value, origin: Origin::Flag("--data-dir") })
			})
			.ok_or(ConfigError::Missing { key: "data_dir", flag: "--data-dir" })?;
		if data_dir.value.as_os_str().is_empty() {
			return Err(data_dir.invalid("", "a directory path"));
		}
		if data_dir.value.exists() && !data_dir.value.is_dir() {
			return Err(data_dir.invalid(
				data_dir.value.display(),
				"it exists and is not a directory; give a directory, new or existing",
			));
		}

		let rpc = pick(flags.bitcoind_rpc, file.bitcoind_rpc, "bitcoind_rpc", "--bitcoind-rpc")
			.ok_or(ConfigError::Missing { key: "bitcoind_rpc", flag: "--bitcoind-rpc" })?;
		let (host, port) = parse_host_port(&rpc)?;
		let user = pick(
			flags.bitcoind_rpc_user,
			file.bitcoind_rpc_user,
			"bitcoind_rpc_user",
			"--bitcoind-rpc-user",
		);
		let password = pick(
			flags.bitcoind_rpc_password,
			file.bitcoind_rpc_password,
			"bitcoind_rpc_password",
			"--bitcoind-rpc-password",
		);
		let cookie = pick_path(
			flags.bitcoind_rpc_cookie,
			file.bitcoind_rpc_cookie,
			"bitcoind_rpc_cookie",
			"--bitcoind-rpc-cookie",
		);
		let auth =
			match (user, password, cookie) {
				(Some(user), Some(password), None) => {
					RpcAuth::UserPass { user: user.value, password: password.value }
				},
				(None, None, Some(cookie)) => RpcAuth::CookieFile(cookie.value),
				(None, None, None) => return Err(ConfigError::Credentials(
					"set `bitcoind_rpc_user` and `bitcoind_rpc_password` (--bitcoind-rpc-user, \
					 --bitcoind-rpc-password) or `bitcoind_rpc_cookie` (--bitcoind-rpc-cookie)"
						.into(),
				)),
				(Some(user), None, None) => {
					return Err(ConfigError::Credentials(format!(
						"{} is set but `bitcoind_rpc_password` (--bitcoind-rpc-password) is not",
						user.origin
					)))
				},
				(None, Some(password), None) => {
					return Err(ConfigError::Credentials(format!(
						"{} is set but `bitcoind_rpc_user` (--bitcoind-rpc-user) is not",
						password.origin
					)))
				},
				(user, password, Some(cookie)) => {
					let other = user.or(password).map(|s| s.origin.to_string()).unwrap_or_default();
					return Err(ConfigError::Credentials(format!(
						"{} and {other} are both set; use either the cookie file or a user and \
					 password",
						cookie.origin
					)));
				},
			};
		let bitcoind = BitcoindRpcConfig { host, port, auth };

		let mut node = NodeConfig::new(network, data_dir.value, bitcoind);
		if let Some(listen) = pick(flags.listen, file.listen, "listen", "--listen") {
			node.listen_addr = parse_socket_addr(&listen)?;
		}
		if let Some(alias) = pick(flags.alias, file.alias, "alias", "--alias") {
			if alias.value.len() > 32 {
				return Err(alias.invalid(
					&alias.value,
					format!("{} bytes long; at most 32 are allowed", alias.value.len()),
				));
			}
			node.alias = alias.value;
		}
		if let Some(level) = pick(flags.log_level, file.log_level, "log_level", "--log-level") {
			node.log_level = parse_log_level(&level)?;
		}
		let pick_value = |flag_value: Option<u64>, file_value: Option<u64>, key, flag| {
			pick(flag_value.map(|v| v.to_string()), file_value.map(|v| v.to_string()), key, flag)
		};
		let relay = flags.trampoline_relay.or(file.trampoline_relay).unwrap_or(true);
		let mut policy = TrampolinePolicy::default();
		if let Some(fee) = pick_value(
			flags.trampoline_fee_base_msat.map(u64::from),
			file.trampoline_fee_base_msat.map(u64::from),
			"trampoline_fee_base_msat",
			"--trampoline-fee-base-msat",
		) {
			policy.fee_base_msat = parse_number(&fee)?;
		}
		if let Some(fee) = pick_value(
			flags.trampoline_fee_proportional_millionths.map(u64::from),
			file.trampoline_fee_proportional_millionths.map(u64::from),
			"trampoline_fee_proportional_millionths",
			"--trampoline-fee-proportional-millionths",
		) {
			policy.fee_proportional_millionths = parse_number(&fee)?;
		}
		if let Some(delta) = pick_value(
			flags.trampoline_cltv_expiry_delta.map(u64::from),
			file.trampoline_cltv_expiry_delta.map(u64::from),
			"trampoline_cltv_expiry_delta",
			"--trampoline-cltv-expiry-delta",
		) {
			policy.cltv_expiry_delta = parse_number(&delta)?;
			if let Err(e) = policy.validate() {
				return Err(delta.invalid(&delta.value, e.to_string()));
			}
		}
		if let Some(advertise) =
			flags.trampoline_legacy_feature_bit.or(file.trampoline_legacy_feature_bit)
		{
			policy.advertise_legacy_feature_bit = advertise;
		}
		node.trampoline = relay.then_some(policy);
		let serve = flags.static_invoice_server.or(file.static_invoice_server).unwrap_or(true);
		node.static_invoice_server =
			serve.then(crate::static_invoices::StaticInvoicePolicy::default);
		let mut hold = HtlcHoldPolicy::default();
		if let Some(max) = pick_value(
			flags.htlc_hold_max_htlcs_per_peer.map(|n| n as u64),
			file.htlc_hold_max_htlcs_per_peer.map(|n| n as u64),
			"htlc_hold_max_htlcs_per_peer",
			"--htlc-hold-max-htlcs-per-peer",
		) {
			hold.max_htlcs_per_peer = parse_number(&max)?;
		}
		if let Some(max) = pick_value(
			flags.htlc_hold_max_msat_per_peer,
			file.htlc_hold_max_msat_per_peer,
			"htlc_hold_max_msat_per_peer",
			"--htlc-hold-max-msat-per-peer",
		) {
			hold.max_msat_per_peer = parse_number(&max)?;
		}
		node.htlc_hold = flags.htlc_hold.or(file.htlc_hold).unwrap_or(true).then_some(hold);
		if let Some(max) = pick_value(
			flags.max_forwards.map(|n| n as u64),
			file.max_forwards.map(|n| n as u64),
			"max_forwards",
			"--max-forwards",
		) {
			node.max_forwards = parse_number(&max)?;
		}
		node.wake_webhook = pick(
			flags.wake_webhook_url,
			file.wake_webhook_url,
			"wake_webhook_url",
			"--wake-webhook-url",
		)
		.map(|url| url.value);
		node.wake_webhook_ca_cert = pick_path(
			flags.wake_webhook_ca_cert,
			file.wake_webhook_ca_cert,
			"wake_webhook_ca_cert",
			"--wake-webhook-ca-cert",
		)
		.map(|cert| cert.value);
		let cert = pick_path(
			flags.control_tls_cert,
			file.control_tls_cert,
			"control_tls_cert",
			"--control-tls-cert",
		);
		let key = pick_path(
			flags.control_tls_key,
			file.control_tls_key,
			"control_tls_key",
			"--control-tls-key",
		);
		let control_tls = match (cert, key) {
			(Some(cert), Some(key)) => Some(ControlTls { cert: cert.value, key: key.value }),
			(None, None) => None,
			(Some(cert), None) => {
				return Err(ConfigError::HalfTls(cert.origin.to_string(), "control_tls_key"))
			},
			(None, Some(key)) => {
				return Err(ConfigError::HalfTls(key.origin.to_string(), "control_tls_cert"))
			},
		};
		let control_hosts = flags.control_hosts.or(file.control_hosts).unwrap_or_default();
		let control_listen = match pick(
			flags.control_listen,
			file.control_listen,
			"control_listen",
			"--control-listen",
		) {
			Some(addr) => parse_socket_addr(&addr)?,
			None => DEFAULT_CONTROL_LISTEN,
		};
		if !control_listen.ip().is_loopback() && control_tls.is_none() {
			return Err(ConfigError::ControlWithoutTls { addr: control_listen });
		}
		Ok(ReferenceNodeSettings { node, control_listen, control_tls, control_hosts })
	}
}

/// What `ctl` was told on its command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtlFlags {
	/// `--control`: the control address (`HOST:PORT` or a URL).
	pub control: Option<String>,
	/// `--data-dir`: the node's data directory.
	pub data_dir: Option<PathBuf>,
	/// `--config`: the node's config file (its `data_dir`, `control_listen`
	/// and `control_tls_cert` are used).
	pub config: Option<PathBuf>,
	/// `--control-token-file`: the token file, instead of the data
	/// directory's admin token.
	pub token_file: Option<PathBuf>,
	/// `--control-ca-cert`: the certificate to trust over https.
	pub ca_cert: Option<PathBuf>,
}

/// Where `ctl` sends its requests and with what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlTarget {
	/// The control interface (`HOST:PORT`, or `https://HOST:PORT`).
	pub address: String,
	/// The token file to read.
	pub token_file: PathBuf,
	/// The certificate to trust, for https.
	pub ca_cert: Option<PathBuf>,
}

/// Finds the node `ctl` talks to, as the node finds its own settings: flags
/// first (`ctl` reads `$LDK_TRAMPOLINE_CONTROL` and `$LDK_TRAMPOLINE_CONFIG`
/// for `--control` and `--config`), then the config file (`--config`, paths
/// relative to it), then what the running node wrote in its data directory
/// ([`crate::control::CONTROL_URL_FILE`]), then the defaults
/// ([`default_data_dir`], [`DEFAULT_CONTROL_LISTEN`]). The token is
/// `--control-token-file`, else the admin token file of the data directory;
/// with `control_tls_cert` in the config the address is `https://` and that
/// certificate is trusted (unless `--control-ca-cert` says otherwise).
pub fn resolve_ctl(flags: CtlFlags) -> Result<CtlTarget, ConfigError> {
	let (file, dir) = match &flags.config {
		Some(path) => {
			let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
			(ReferenceNodeConfig::load(path)?, dir)
		},
		None => (ReferenceNodeConfig::default(), PathBuf::new()),
	};
	let tls_cert = file.control_tls_cert.map(|cert| dir.join(cert));
	let data_dir =
		flags.data_dir.or_else(|| file.data_dir.map(|d| dir.join(d))).or_else(default_data_dir);
	let mut address = flags
		.control
		.or(file.control_listen)
		.or_else(|| data_dir.as_deref().and_then(crate::control::read_control_url))
		.unwrap_or_else(|| DEFAULT_CONTROL_LISTEN.to_string());
	if tls_cert.is_some() && !address.contains("://") {
		address = format!("https://{address}");
	}
	let token_file = match flags.token_file {
		Some(path) => path,
		None => {
			let data_dir =
				data_dir.ok_or(ConfigError::Missing { key: "data_dir", flag: "--data-dir" })?;
			crate::control::auth::Role::Admin.token_path(&data_dir)
		},
	};
	Ok(CtlTarget { address, token_file, ca_cert: flags.ca_cert.or(tls_cert) })
}

fn parse_number<T: std::str::FromStr>(value: &Sourced<String>) -> Result<T, ConfigError> {
	value.value.parse().map_err(|_| value.invalid(&value.value, "a number in range"))
}

fn parse_network(network: &Sourced<String>) -> Result<Network, ConfigError> {
	match network.value.trim().to_ascii_lowercase().as_str() {
		"bitcoin" => Ok(Network::Bitcoin),
		"testnet" => Ok(Network::Testnet),
		"testnet4" => Ok(Network::Testnet4),
		"signet" => Ok(Network::Signet),
		"regtest" => Ok(Network::Regtest),
		_ => Err(network.invalid(&network.value, format!("expected one of {NETWORKS}"))),
	}
}

fn parse_log_level(level: &Sourced<String>) -> Result<Level, ConfigError> {
	match level.value.trim().to_ascii_lowercase().as_str() {
		"gossip" => Ok(Level::Gossip),
		"trace" => Ok(Level::Trace),
		"debug" => Ok(Level::Debug),
		"info" => Ok(Level::Info),
		"warn" => Ok(Level::Warn),
		"error" => Ok(Level::Error),
		_ => Err(level.invalid(&level.value, format!("expected one of {LOG_LEVELS}"))),
	}
}

/// Splits `HOST:PORT` (`[V6]:PORT` for IPv6 literals) without resolving it.
fn parse_host_port(addr: &Sourced<String>) -> Result<(String, u16), ConfigError> {
	let expected = "expected HOST:PORT, e.g. 127.0.0.1:18443";
	let text = addr.value.trim();
	let (host, port) = text.rsplit_once(':').ok_or_else(|| addr.invalid(text, expected))?;
	let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
	if host.is_empty() || host.contains(char::is_whitespace) {
		return Err(addr.invalid(text, expected));
	}
	let port: u16 =
		port.parse().map_err(|_| addr.invalid(text, format!("bad port; {expected}")))?;
	if port == 0 {
		return Err(addr.invalid(text, "port 0 is not a port bitcoind listens on"));
	}
	Ok((host.to_string(), port))
}

/// Resolves `HOST:PORT` to the address to bind.
fn parse_socket_addr(addr: &Sourced<String>) -> Result<SocketAddr, ConfigError> {
	let text = addr.value.trim();
	let expected = "expected HOST:PORT, e.g. 127.0.0.1:9735";
	if let Ok(parsed) = text.parse::<SocketAddr>() {
		return Ok(parsed);
	}
	if !text.contains(':') {
		return Err(addr.invalid(text, expected));
	}
	text.to_socket_addrs()
		.map_err(|e| addr.invalid(text, format!("{e}; {expected}")))?
		.next()
		.ok_or_else(|| addr.invalid(text, "the host resolves to no address"))
}

#[cfg(test)]
mod tests {
	use super::*;

	fn base_flags() -> ReferenceNodeConfig {
		ReferenceNodeConfig {
			network: Some("regtest".into()),
			data_dir: Some("/tmp/ldk-trampoline-config-test".into()),
			bitcoind_rpc: Some("127.0.0.1:18443".into()),
			bitcoind_rpc_user: Some("u".into()),
			bitcoind_rpc_password: Some("p".into()),
			..Default::default()
		}
	}

	#[test]
	fn trampoline_relay_is_on_by_default_and_configurable() {
		let settings = ReferenceNodeConfig::resolve(base_flags(), None).unwrap();
		assert_eq!(settings.node.trampoline, Some(TrampolinePolicy::default()));

		let file = ReferenceNodeConfig {
			trampoline_fee_base_msat: Some(2_000),
			trampoline_cltv_expiry_delta: Some(144),
			..Default::default()
		};
		let flags = ReferenceNodeConfig {
			trampoline_fee_proportional_millionths: Some(50),
			..base_flags()
		};
		let settings =
			ReferenceNodeConfig::resolve(flags, Some((Path::new("/etc/n.toml"), file))).unwrap();
		assert_eq!(
			settings.node.trampoline,
			Some(TrampolinePolicy {
				fee_base_msat: 2_000,
				fee_proportional_millionths: 50,
				cltv_expiry_delta: 144,
				advertise_legacy_feature_bit: true,
			})
		);
		let quiet = ReferenceNodeConfig {
			trampoline_legacy_feature_bit: Some(false),
			..Default::default()
		};
		let settings =
			ReferenceNodeConfig::resolve(base_flags(), Some((Path::new("/etc/n.toml"), quiet)))
				.unwrap();
		assert!(!settings.node.trampoline.unwrap().advertise_legacy_feature_bit);

		let off = ReferenceNodeConfig { trampoline_relay: Some(false), ..base_flags() };
		assert_eq!(ReferenceNodeConfig::resolve(off, None).unwrap().node.trampoline, None);

		let file =
			ReferenceNodeConfig { trampoline_cltv_expiry_delta: Some(5), ..Default::default() };
		let err =
			ReferenceNodeConfig::resolve(base_flags(), Some((Path::new("/etc/n.toml"), file)))
				.unwrap_err()
				.to_string();
		assert!(
			err.contains("`trampoline_cltv_expiry_delta` in /etc/n.toml")
				&& err.contains("minimum of 52 blocks"),
			"{err}"
		);
	}

	#[test]
	fn trampoline_cltv_expiry_delta_below_ldk_fail_back_buffer_is_refused() {
		assert_eq!(MIN_TRAMPOLINE_CLTV_EXPIRY_DELTA, 52);
		let resolve = |delta| {
			let flags =
				ReferenceNodeConfig { trampoline_cltv_expiry_delta: Some(delta), ..base_flags() };
			ReferenceNodeConfig::resolve(flags, None)
		};
		// 18 passed before; 39 is LDK's own fail-back buffer; 51 misses the
		// strict bound by one block.
		for delta in [18, 39, 51] {
			let err = resolve(delta).expect_err("unsafe delta accepted");
			assert!(
				matches!(&err, ConfigError::Invalid { origin: Origin::Flag("--trampoline-cltv-expiry-delta"), value, .. } if value == &delta.to_string()),
				"{err:?}"
			);
			assert!(err.to_string().contains("minimum of 52 blocks"), "{err}");
		}
		let settings = resolve(52).expect("52 is safe");
		assert_eq!(settings.node.trampoline.map(|p| p.cltv_expiry_delta), Some(52));
	}

	#[test]
	fn the_forwarding_history_bound_comes_from_the_file_or_a_flag() {
		let default = ReferenceNodeConfig::resolve(base_flags(), None).unwrap();
		assert_eq!(default.node.max_forwards, crate::node::forwards::MAX_FORWARDS);
		let file: ReferenceNodeConfig = toml::from_str("max_forwards = 5").unwrap();
		let path = Path::new("/etc/node.toml");
		let settings =
			ReferenceNodeConfig::resolve(base_flags(), Some((path, file.clone()))).unwrap();
		assert_eq!(settings.node.max_forwards, 5);
		let flags = ReferenceNodeConfig { max_forwards: Some(7), ..base_flags() };
		let settings = ReferenceNodeConfig::resolve(flags, Some((path, file))).unwrap();
		assert_eq!(settings.node.max_forwards, 7);
	}

	#[test]
	fn htlc_hold_is_on_by_default_with_configurable_limits() {
		let settings = ReferenceNodeConfig::resolve(base_flags(), None).unwrap();
		assert_eq!(settings.node.htlc_hold, Some(HtlcHoldPolicy::default()));

		let file =
			ReferenceNodeConfig { htlc_hold_max_htlcs_per_peer: Some(3), ..Default::default() };
		let flags =
			ReferenceNodeConfig { htlc_hold_max_msat_per_peer: Some(7_000), ..base_flags() };
		let settings =
			ReferenceNodeConfig::resolve(flags, Some((Path::new("/etc/n.toml"), file))).unwrap();
		assert_eq!(
			settings.node.htlc_hold,
			Some(HtlcHoldPolicy {
				max_htlcs_per_peer: 3,
				max_msat_per_peer: 7_000,
				..HtlcHoldPolicy::default()
			})
		);
		let off = ReferenceNodeConfig { htlc_hold: Some(false), ..base_flags() };
		assert_eq!(ReferenceNodeConfig::resolve(off, None).unwrap().node.htlc_hold, None);
		let toml = "network = \"regtest\"\nhtlc_hold = false\nhtlc_hold_max_htlcs_per_peer = 2\n";
		let parsed: ReferenceNodeConfig = toml::from_str(toml).unwrap();
		assert_eq!((parsed.htlc_hold, parsed.htlc_hold_max_htlcs_per_peer), (Some(false), Some(2)));
	}

	#[test]
	fn flags_override_the_file_and_file_paths_are_relative_to_it() {
		let file = ReferenceNodeConfig {
			network: Some("signet".into()),
			data_dir: Some("data".into()),
			alias: Some("from-file".into()),
			..Default::default()
		};
		let flags = ReferenceNodeConfig { data_dir: None, ..base_flags() };
		let settings =
			ReferenceNodeConfig::resolve(flags, Some((Path::new("/etc/ldk/node.toml"), file)))
				.unwrap();
		assert_eq!(settings.node.network, Network::Regtest);
		assert_eq!(settings.node.data_dir, PathBuf::from("/etc/ldk/data"));
		assert_eq!(settings.node.alias, "from-file");
		assert_eq!(settings.control_listen, DEFAULT_CONTROL_LISTEN);
	}

	#[test]
	fn errors_name_the_key_and_value() {
		let file = ReferenceNodeConfig { network: Some("regtst".into()), ..Default::default() };
		let flags = ReferenceNodeConfig { network: None, ..base_flags() };
		let err = ReferenceNodeConfig::resolve(flags, Some((Path::new("/x/c.toml"), file)))
			.unwrap_err()
			.to_string();
		assert_eq!(
			err,
			"invalid value for `network` in /x/c.toml: \"regtst\" (expected one of bitcoin, \
			 testnet, testnet4, signet, regtest)"
		);
		let flags = ReferenceNodeConfig { bitcoind_rpc: None, ..base_flags() };
		let err = ReferenceNodeConfig::resolve(flags, None).unwrap_err().to_string();
		assert_eq!(
			err,
			"`bitcoind_rpc` is required (set it in the config file or pass --bitcoind-rpc)"
		);
		let flags = ReferenceNodeConfig { bitcoind_rpc: Some("localhost".into()), ..base_flags() };
		let err = ReferenceNodeConfig::resolve(flags, None).unwrap_err().to_string();
		assert!(err.starts_with("invalid value for --bitcoind-rpc: \"localhost\""), "{err}");
		let flags = ReferenceNodeConfig { bitcoind_rpc_password: None, ..base_flags() };
		let err = ReferenceNodeConfig::resolve(flags, None).unwrap_err().to_string();
		assert!(err.contains("--bitcoind-rpc-user is set but `bitcoind_rpc_password`"), "{err}");
	}

	#[test]
	fn a_control_address_off_loopback_needs_tls() {
		for addr in ["0.0.0.0:9736", "192.168.1.5:9736", "[::]:9736"] {
			let flags = ReferenceNodeConfig { control_listen: Some(addr.into()), ..base_flags() };
			let err = ReferenceNodeConfig::resolve(flags, None).expect_err(addr);
			assert!(matches!(err, ConfigError::ControlWithoutTls { .. }), "{addr}: {err}");
			assert!(err.to_string().contains("control_tls_cert"), "{err}");
		}
		for addr in ["127.0.0.1:9736", "[::1]:0", "127.0.0.2:1"] {
			let flags = ReferenceNodeConfig { control_listen: Some(addr.into()), ..base_flags() };
			assert!(ReferenceNodeConfig::resolve(flags, None).is_ok(), "{addr}");
		}
		let file = ReferenceNodeConfig {
			control_tls_cert: Some("c.pem".into()),
			control_tls_key: Some("k.pem".into()),
			control_hosts: Some(vec!["node.example:9736".into()]),
			..Default::default()
		};
		let flags =
			ReferenceNodeConfig { control_listen: Some("0.0.0.0:9736".into()), ..base_flags() };
		let settings =
			ReferenceNodeConfig::resolve(flags, Some((Path::new("/etc/ldk/n.toml"), file)))
				.unwrap();
		assert_eq!(
			settings.control_tls,
			Some(ControlTls { cert: "/etc/ldk/c.pem".into(), key: "/etc/ldk/k.pem".into() })
		);
		assert_eq!(settings.control_hosts, ["node.example:9736"]);
		let half = ReferenceNodeConfig { control_tls_cert: Some("c.pem".into()), ..base_flags() };
		let err = ReferenceNodeConfig::resolve(half, None).unwrap_err();
		assert!(err.to_string().contains("control_tls_key"), "{err}");
	}

	#[test]
	fn ctl_finds_the_token_like_the_node_finds_its_data_dir() {
		let dir = tempfile::tempdir().unwrap();
		let config = dir.path().join("node.toml");
		std::fs::write(
			&config,
			"data_dir = \"data\"\ncontrol_listen = \"127.0.0.1:7000\"\ncontrol_tls_cert = \"c.pem\"\n",
		)
		.unwrap();
		let target =
			resolve_ctl(CtlFlags { config: Some(config.clone()), ..Default::default() }).unwrap();
		assert_eq!(target.address, "https://127.0.0.1:7000");
		assert_eq!(target.token_file, dir.path().join("data").join("control-admin.token"));
		assert_eq!(target.ca_cert, Some(dir.path().join("c.pem")));
		// Flags win.
		let target = resolve_ctl(CtlFlags {
			config: Some(config),
			data_dir: Some("/d".into()),
			control: Some("127.0.0.1:1".into()),
			ca_cert: Some("/ca.pem".into()),
			..Default::default()
		})
		.unwrap();
		assert_eq!(target.address, "https://127.0.0.1:1");
		assert_eq!(target.token_file, PathBuf::from("/d/control-admin.token"));
		assert_eq!(target.ca_cert, Some(PathBuf::from("/ca.pem")));
		let target = resolve_ctl(CtlFlags {
			token_file: Some("/t".into()),
			data_dir: Some("/d".into()),
			..Default::default()
		})
		.unwrap();
		assert_eq!(
			(target.address.as_str(), target.token_file.as_path()),
			("127.0.0.1:9736", Path::new("/t"))
		);
		// A running node's data directory says where it listens.
		let data = dir.path().join("running");
		std::fs::create_dir_all(&data).unwrap();
		crate::control::write_control_url(&data, "http://127.0.0.1:7777").unwrap();
		let target =
			resolve_ctl(CtlFlags { data_dir: Some(data.clone()), ..Default::default() }).unwrap();
		assert_eq!(target.address, "http://127.0.0.1:7777");
		let flagged = resolve_ctl(CtlFlags {
			data_dir: Some(data),
			control: Some("127.0.0.1:1".into()),
			..Default::default()
		})
		.unwrap();
		assert_eq!(flagged.address, "127.0.0.1:1", "a flag wins over the node's file");
		// Without anything: the node's default data directory.
		if let Some(default) = default_data_dir() {
			let target = resolve_ctl(CtlFlags::default()).unwrap();
			assert_eq!(target.token_file, default.join("control-admin.token"));
		}
	}

	#[test]
	fn unknown_keys_are_refused() {
		let err = toml::from_str::<ReferenceNodeConfig>("netwrk = \"regtest\"").unwrap_err();
		assert!(err.to_string().contains("unknown field `netwrk`"), "{err}");
	}
}
