//! `ldk-trampoline`: the reference node (`node`) and its control client (`ctl`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use tokio::sync::watch;

use ldk_trampoline::bench::BenchError;
use ldk_trampoline::config::{ConfigError, CtlFlags, ReferenceNodeConfig, ReferenceNodeSettings};
use ldk_trampoline::control::client::{
	with_causes, ClientError, ClientOptions, ControlClient, TokenSource,
};
use ldk_trampoline::control::events::EventRecord;
use ldk_trampoline::control::{self, InvoiceRequest, OfferRequest, OpenChannelRequest, PayRequest};
use ldk_trampoline::demo::DemoError;
use ldk_trampoline::node::{Node, NodeError, PaymentStatus};

/// How long in-flight control requests may take to finish once the node stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
	version,
	about = "Trampoline relaying for LDK nodes: the reference node and its control client"
)]
struct Cli {
	#[command(subcommand)]
	command: Command,
}

#[derive(Subcommand)]
enum Command {
	/// Run the reference node against an existing bitcoind.
	Node(Box<NodeArgs>),
	/// Send a command to a running reference node's control interface.
	Ctl(Box<CtlArgs>),
	/// Run a regtest network on a real bitcoind and show payments of every kind.
	Demo,
	/// Compare trampoline payments with plain source-routed payments on regtest.
	Bench(BenchArgs),
}

/// The `bench` command's flags.
#[derive(Args)]
struct BenchArgs {
	/// Payments of each kind, sequential and then concurrent.
	#[arg(long, default_value_t = 20)]
	payments: usize,
}

/// The reference node's flags; each overrides the config file's key of the same
/// name (with `_` for `-`).
#[derive(Args)]
struct NodeArgs {
	/// A TOML config file (keys: network, data_dir, listen, bitcoind_rpc,
	/// bitcoind_rpc_user, bitcoind_rpc_password, bitcoind_rpc_cookie,
	/// control_listen, control_tls_cert, control_tls_key, control_hosts, alias, log_level, trampoline_relay, trampoline_fee_base_msat,
	/// trampoline_fee_proportional_millionths, trampoline_cltv_expiry_delta,
	/// static_invoice_server, wake_webhook_url, wake_webhook_ca_cert, htlc_hold,
	/// htlc_hold_max_htlcs_per_peer, htlc_hold_max_msat_per_peer).
	#[arg(long, value_name = "FILE")]
	config: Option<PathBuf>,
	/// bitcoin, testnet, testnet4, signet or regtest.
	#[arg(long)]
	network: Option<String>,
	/// Where the node keeps its seed and state (created if missing)
	/// [default: $LDK_TRAMPOLINE_DATA_DIR, else ~/.ldk-trampoline].
	#[arg(long, value_name = "DIR")]
	data_dir: Option<PathBuf>,
	/// Where to accept peer connections [default: 127.0.0.1:9735].
	#[arg(long, value_name = "HOST:PORT")]
	listen: Option<String>,
	/// bitcoind's RPC interface.
	#[arg(long, value_name = "HOST:PORT")]
	bitcoind_rpc: Option<String>,
	/// bitcoind's rpcuser.
	#[arg(long, value_name = "USER")]
	bitcoind_rpc_user: Option<String>,
	/// bitcoind's rpcpassword (visible to other local users: prefer the config
	/// file or the cookie).
	#[arg(long, value_name = "PASSWORD")]
	bitcoind_rpc_password: Option<String>,
	/// bitcoind's .cookie file, instead of a user and password.
	#[arg(long, value_name = "PATH")]
	bitcoind_rpc_cookie: Option<PathBuf>,
	/// Where the control interface listens [default: 127.0.0.1:9736]. Requests
	/// need the token the node writes to <data-dir>/control-admin.token (or
	/// control-readonly.token for listings); an address other than loopback
	/// needs --control-tls-cert and --control-tls-key.
	#[arg(long, value_name = "HOST:PORT")]
	control_listen: Option<String>,
	/// The control interface's TLS certificate chain (PEM): it then speaks
	/// https only.
	#[arg(long, value_name = "FILE", requires = "control_tls_key")]
	control_tls_cert: Option<PathBuf>,
	/// The control interface's TLS private key (PEM).
	#[arg(long, value_name = "FILE", requires = "control_tls_cert")]
	control_tls_key: Option<PathBuf>,
	/// A HOST:PORT the control interface is reached by (its Host header),
	/// besides its own address; repeatable.
	#[arg(long = "control-host", value_name = "HOST:PORT")]
	control_hosts: Vec<String>,
	/// The alias announced to the network (at most 32 bytes) [default: ldk-trampoline].
	#[arg(long)]
	alias: Option<String>,
	/// The lowest level written to <data-dir>/logs/ldk.log: gossip, trace, debug,
	/// info, warn or error [default: debug].
	#[arg(long, value_name = "LEVEL")]
	log_level: Option<String>,
	/// Relay trampoline payments [default: true].
	#[arg(long, value_name = "BOOL")]
	trampoline_relay: Option<bool>,
	/// Trampoline base fee in msat [default: 1000].
	#[arg(long, value_name = "MSAT")]
	trampoline_fee_base_msat: Option<u32>,
	/// Trampoline proportional fee in millionths [default: 1000].
	#[arg(long, value_name = "PPM")]
	trampoline_fee_proportional_millionths: Option<u32>,
	/// Blocks kept between incoming and outgoing expiry of a relayed trampoline
	/// payment [default: 288; at least 18].
	#[arg(long, value_name = "BLOCKS")]
	trampoline_cltv_expiry_delta: Option<u16>,
	/// Advertise Electrum's trampoline feature bit 151 next to 57
	/// [default: true].
	#[arg(long, value_name = "BOOL")]
	trampoline_legacy_feature_bit: Option<bool>,
	/// Serve static invoices for often-offline recipients [default: true].
	#[arg(long, value_name = "BOOL")]
	static_invoice_server: Option<bool>,
	/// POST a signed LSPS5 `lsps5.payment_incoming` notification here when a
	/// payment is held for an offline peer [default: none].
	/// https only, except on regtest.
	#[arg(long, value_name = "URL")]
	wake_webhook_url: Option<String>,
	/// A PEM certificate to trust for the wake-up webhook besides the web's
	/// roots.
	#[arg(long, value_name = "FILE")]
	wake_webhook_ca_cert: Option<PathBuf>,
	/// Hold HTLCs often-offline payers flag `hold_htlc` until their recipient
	/// releases them [default: true].
	#[arg(long, value_name = "BOOL")]
	htlc_hold: Option<bool>,
	/// HTLCs held at once for one payer [default: 32].
	#[arg(long, value_name = "COUNT")]
	htlc_hold_max_htlcs_per_peer: Option<usize>,
	/// Value held at once for one payer, msat [default: 10000000000].
	#[arg(long, value_name = "MSAT")]
	htlc_hold_max_msat_per_peer: Option<u64>,
	/// Forwarding history records kept, the newest [default: 10000].
	#[arg(long, value_name = "COUNT")]
	max_forwards: Option<usize>,
}

/// How `ctl` finds the node: flags (or their environment variables), else
/// the node's config file, else what the running node wrote in its data
/// directory, else the defaults the node itself uses.
#[derive(Args)]
struct CtlArgs {
	/// The node's control interface [default: the config's control_listen,
	/// else the running node's <data-dir>/control.url, else 127.0.0.1:9736;
	/// https:// when the config has control_tls_cert].
	#[arg(long, global = true, value_name = "HOST:PORT or URL", env = "LDK_TRAMPOLINE_CONTROL")]
	control: Option<String>,
	/// The node's data directory, where its control token is
	/// [default: the config's data_dir, else $LDK_TRAMPOLINE_DATA_DIR, else
	/// ~/.ldk-trampoline].
	#[arg(long, global = true, value_name = "DIR")]
	data_dir: Option<PathBuf>,
	/// The node's config file (for its data_dir, control_listen and
	/// control_tls_cert).
	#[arg(long, global = true, value_name = "FILE", env = "LDK_TRAMPOLINE_CONFIG")]
	config: Option<PathBuf>,
	/// The token file to authenticate with [default:
	/// <data-dir>/control-admin.token]; give control-readonly.token for
	/// listings only.
	#[arg(long, global = true, value_name = "FILE")]
	control_token_file: Option<PathBuf>,
	/// The certificate to trust for an https control interface [default:
	/// the config's control_tls_cert].
	#[arg(long, global = true, value_name = "FILE")]
	control_ca_cert: Option<PathBuf>,
	#[command(subcommand)]
	command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
	/// The node's id, addresses, chain height and counts of channels and peers.
	Getinfo,
	/// Connect to a peer.
	Connect {
		/// NODE_ID@HOST:PORT
		peer: String,
	},
	/// Open a channel funded from the on-chain wallet; returns once the funding
	/// transaction is broadcast.
	OpenChannel {
		/// NODE_ID@HOST:PORT
		peer: String,
		/// The channel's capacity in satoshis.
		amount_sat: u64,
		/// What to give the peer on opening, in millisatoshis.
		#[arg(long, value_name = "MSAT", default_value_t = 0)]
		push_msat: u64,
		/// Do not announce the channel for forwarding.
		#[arg(long)]
		private: bool,
	},
	/// List open channels, and channels being closed whose funds are not
	/// back on chain yet (under `closing`).
	ListChannels,
	/// Close a channel; answers the closing txid once broadcast (within 5 s).
	CloseChannel {
		/// The channel id (hex), as list-channels shows it.
		channel_id: String,
		/// Broadcast our commitment transaction instead of negotiating.
		#[arg(long)]
		force: bool,
	},
	/// On-chain and Lightning balances, closing channels and pending sweeps.
	Balances,
	/// A fresh on-chain address.
	NewAddress,
	/// Create a BOLT 11 invoice.
	Invoice {
		/// The amount; without one the payer chooses.
		#[arg(long, value_name = "MSAT")]
		amount_msat: Option<u64>,
		/// The description.
		#[arg(long)]
		description: Option<String>,
		/// How long the invoice is valid [default: 3600].
		#[arg(long, value_name = "SECS")]
		expiry_secs: Option<u32>,
	},
	/// Create a BOLT 12 offer.
	Offer {
		/// The amount; without one the payer chooses.
		#[arg(long, value_name = "MSAT")]
		amount_msat: Option<u64>,
		/// The description.
		#[arg(long)]
		description: Option<String>,
	},
	/// Pay a BOLT 11 invoice or BOLT 12 offer and wait for the outcome; exits
	/// non-zero unless the payment succeeded.
	Pay {
		/// The invoice or offer.
		invoice_or_offer: String,
		/// The amount, required if the invoice or offer has none.
		#[arg(long, value_name = "MSAT")]
		amount_msat: Option<u64>,
		/// How long to wait for the outcome [default: 60].
		#[arg(long, value_name = "SECS")]
		timeout_secs: Option<u64>,
		/// Pay through this trampoline (node id, or `auto`: the peer
		/// advertising trampoline routing we can send the most to): a BOLT 11
		/// invoice, or a BOLT 12 offer whose invoice's blinded paths the
		/// trampoline pays.
		#[arg(long, value_name = "NODE_ID")]
		trampoline: Option<String>,
		/// The fee offered to the trampoline [default: 1000 msat + 1000 ppm].
		#[arg(long, value_name = "MSAT", requires = "trampoline")]
		trampoline_fee_msat: Option<u64>,
		/// The CLTV delta offered to the trampoline [default: 288].
		#[arg(long, value_name = "BLOCKS", requires = "trampoline")]
		trampoline_cltv_expiry_delta: Option<u16>,
		/// Pay the trampoline up to this fee (and up to 1008 blocks) if it
		/// answers that the fee offered is too low or that it found no route
		/// within it [default: no escalation].
		#[arg(long, value_name = "MSAT", requires = "trampoline")]
		trampoline_max_fee_msat: Option<u64>,
	},
	/// What this node has relayed as a trampoline.
	TrampolineStats,
	/// Every incoming trampoline payment: payment hash, parts, outer total,
	/// the dialect its payer spoke (spec or legacy) and its stage.
	TrampolineBuckets,
	/// What this node holds: trampoline payments for an offline next node
	/// (payment hash, next node, amount, since, deadline height) and HTLCs of
	/// often-offline payers awaiting their recipient's release (peer,
	/// payment hash, amount, since, deadline, reason).
	ListHeld,
	/// List every payment, oldest first.
	ListPayments,
	/// Incoming multi-part payments whose parts we hold and have not claimed
	/// (missing parts, or not claimed yet): payment hash, kind (trampoline
	/// bucket or payment to us), total announced, received so far, and each
	/// part's channel, amount, CLTV and arrival time.
	ListPartialInvoices,
	/// Outgoing payments with their parts: each finished part's path
	/// (channels), amount and outcome (failing channel or node, a
	/// trampoline's failure code), and the HTLCs still in flight.
	ListPartialPayments,
	/// List forwards, oldest first, a page at a time: plain channel
	/// forwards and relayed trampoline payments (in and out amounts, fee
	/// earned, dialect, duration, outcome). Pass the answer's
	/// `next_index_offset` as `--index-offset` for the next page.
	ListForwards {
		/// Start after the record of this index [default: the oldest kept].
		#[arg(long, value_name = "N")]
		index_offset: Option<u64>,
		/// At most this many records [default: 100, at most 1000].
		#[arg(long, value_name = "N")]
		limit: Option<u32>,
	},
	/// List the static invoices served for async recipients (recipient,
	/// slot, size, expiry) and the server's counters.
	ListStaticInvoices,
	/// Print the node's events as they happen, one JSON object per line
	/// (`type`: `subscribed` first, then channel_pending, channel_ready, channel_closed,
	/// payment_received, payment_sent, payment_failed, payment_forwarded,
	/// payment_held, htlc_hold, message_held, invoice_received; `lagged`
	/// when this reader fell behind), until the node stops or Ctrl-C.
	Events {
		/// Exit after this many events (`subscribed` not counted).
		#[arg(long, value_name = "N")]
		count: Option<u64>,
	},
	/// Pay on-chain from the node's wallet to ADDRESS; prints the txid, the
	/// amount sent and the fee. Exactly one of --amount-sat and --all.
	SendOnchain {
		/// The recipient's address (of the node's chain).
		#[arg(long)]
		address: String,
		/// What to send, in satoshis.
		#[arg(long, value_name = "SAT", required_unless_present = "all", conflicts_with = "all")]
		amount_sat: Option<u64>,
		/// Send everything the wallet can spend, less the fee.
		#[arg(long)]
		all: bool,
		/// The fee rate [default: bitcoind's estimate for six blocks].
		#[arg(long, value_name = "SAT_PER_VB")]
		fee_rate_sat_per_vb: Option<u64>,
	},
	/// The connected peers: node id, address, direction, channels with us,
	/// `init` feature bits and the trampoline dialects among them (spec
	/// 56/57, eclair 148/149, Electrum 150/151).
	ListPeers,
	/// Disconnect a peer.
	Disconnect {
		/// The peer's node id.
		#[arg(long)]
		node_id: String,
		/// Disconnect a peer we have channels with too; the node then does not
		/// reconnect to it until `connect` or a restart.
		#[arg(long)]
		force: bool,
	},
	/// Decode a BOLT 11 invoice, a BOLT 12 offer (lno…) or a BOLT 12 invoice
	/// (lni…): amount, payee, hash, expiry, description, paths, features.
	Decode {
		/// The invoice or offer.
		invoice_or_offer: String,
	},
	/// Stop the node (it persists its state and exits).
	Stop,
}

/// What ends the program with an error.
#[derive(Debug, thiserror::Error)]
enum AppError {
	#[error(transparent)]
	Config(#[from] ConfigError),
	#[error(transparent)]
	Node(#[from] NodeError),
	#[error(transparent)]
	Client(#[from] ClientError),
	#[error(transparent)]
	Demo(#[from] DemoError),
	#[error(transparent)]
	Bench(#[from] BenchError),
	#[error(transparent)]
	Auth(#[from] control::auth::AuthError),
	#[error(transparent)]
	Tls(#[from] control::tls::TlsError),
	#[error("cannot listen for the control interface on {addr}: {reason}")]
	ControlListen { addr: std::net::SocketAddr, reason: String },
	#[error("cannot start the async runtime: {0}")]
	Runtime(std::io::Error),
	#[error("{0}")]
	Other(String),
}

fn main() -> ExitCode {
	let cli = Cli::parse();
	let result = match cli.command {
		Command::Node(args) => run_node(*args),
		Command::Ctl(args) => run_ctl(*args),
		Command::Demo => run_demo(),
		Command::Bench(args) => run_bench(args),
	};
	match result {
		Ok(()) => ExitCode::SUCCESS,
		Err(error) => {
			eprintln!("error: {}", with_causes(&error));
			ExitCode::FAILURE
		},
	}
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
	tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(AppError::Runtime)
}

fn run_node(args: NodeArgs) -> Result<(), AppError> {
	let flags = ReferenceNodeConfig {
		network: args.network,
		data_dir: args.data_dir,
		listen: args.listen,
		bitcoind_rpc: args.bitcoind_rpc,
		bitcoind_rpc_user: args.bitcoind_rpc_user,
		bitcoind_rpc_password: args.bitcoind_rpc_password,
		bitcoind_rpc_cookie: args.bitcoind_rpc_cookie,
		control_listen: args.control_listen,
		control_tls_cert: args.control_tls_cert,
		control_tls_key: args.control_tls_key,
		control_hosts: (!args.control_hosts.is_empty()).then_some(args.control_hosts),
		alias: args.alias,
		log_level: args.log_level,
		trampoline_relay: args.trampoline_relay,
		trampoline_fee_base_msat: args.trampoline_fee_base_msat,
		trampoline_fee_proportional_millionths: args.trampoline_fee_proportional_millionths,
		trampoline_cltv_expiry_delta: args.trampoline_cltv_expiry_delta,
		trampoline_legacy_feature_bit: args.trampoline_legacy_feature_bit,
		static_invoice_server: args.static_invoice_server,
		wake_webhook_url: args.wake_webhook_url,
		wake_webhook_ca_cert: args.wake_webhook_ca_cert,
		htlc_hold: args.htlc_hold,
		htlc_hold_max_htlcs_per_peer: args.htlc_hold_max_htlcs_per_peer,
		htlc_hold_max_msat_per_peer: args.htlc_hold_max_msat_per_peer,
		max_forwards: args.max_forwards,
	};
	let settings = ReferenceNodeConfig::from_file_and_flags(args.config.as_deref(), flags)?;
	let runtime = runtime()?;
	let result = runtime.block_on(node_main(settings));
	// Blocking work still running (a bitcoind call) must not hold the exit up.
	runtime.shutdown_timeout(DRAIN_TIMEOUT);
	result
}

async fn node_main(settings: ReferenceNodeSettings) -> Result<(), AppError> {
	let control_addr = settings.control_listen;
	// A bad certificate or a taken port fails before the node starts.
	let tls = match &settings.control_tls {
		Some(tls) => Some(control::tls::server_config(&tls.cert, &tls.key)?),
		None => None,
	};
	let scheme = if tls.is_some() { "https" } else { "http" };
	let listener = tokio::net::TcpListener::bind(control_addr)
		.await
		.map_err(|e| AppError::ControlListen { addr: control_addr, reason: e.to_string() })?;
	let control_addr = listener.local_addr().unwrap_or(control_addr);
	let listener = control::server::ControlListener::new(listener, tls)
		.map_err(|e| AppError::ControlListen { addr: control_addr, reason: e.to_string() })?;
	let data_dir = settings.node.data_dir.clone();
	let node: Arc<Node> = Node::start(settings.node).await?;
	// After the start, which holds the data directory's lock: no other
	// node's tokens are overwritten.
	let tokens = match control::auth::ControlTokens::create(&data_dir) {
		Ok(tokens) => tokens,
		Err(e) => {
			let _ = node.stop().await;
			return Err(e.into());
		},
	};
	// `ctl` finds the node without flags (a failed write only costs that).
	if let Err(e) = control::write_control_url(&data_dir, &format!("{scheme}://{control_addr}")) {
		eprintln!("cannot write {}: {e}", control::CONTROL_URL_FILE);
	}
	let hosts = control::auth::allowed_hosts(control_addr, &settings.control_hosts);
	let guard = control::auth::Guard::new(tokens.clone(), hosts);
	println!(
		"ldk-trampoline node {} on {}: peers at {}, control interface at {scheme}://{} (token in \
		 {}), data in {}",
		node.node_id(),
		node.config().network,
		node.listen_addr(),
		control_addr,
		control::auth::Role::Admin.token_path(&data_dir).display(),
		data_dir.display()
	);

	let (shutdown, mut stopped) = watch::channel(false);
	let mut server =
		tokio::spawn(control::server::serve(listener, Arc::clone(&node), shutdown.clone(), guard));
	let mut server_result = None;
	tokio::select! {
		_ = stopped.wait_for(|stop| *stop) => eprintln!("stopping: requested over the control interface"),
		signal = termination_signal() => eprintln!("stopping: received {signal}"),
		result = &mut server => server_result = Some(result),
	}
	let _ = shutdown.send(true);
	// Idempotent: `/v1/stop` has already stopped it when that was the reason.
	let stop_result = node.stop().await;
	tokens.remove(&data_dir);
	let _ = std::fs::remove_file(data_dir.join(control::CONTROL_URL_FILE));
	let server_result = match server_result {
		Some(result) => Some(result),
		None => match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
			Ok(result) => Some(result),
			Err(_) => {
				server.abort();
				None
			},
		},
	};
	stop_result?;
	match server_result {
		Some(Ok(Err(e))) => {
			Err(AppError::Other(format!("the control interface on {control_addr} failed: {e}")))
		},
		Some(Err(e)) if e.is_panic() => {
			Err(AppError::Other(format!("the control interface on {control_addr} panicked")))
		},
		_ => {
			eprintln!("stopped");
			Ok(())
		},
	}
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn termination_signal() -> &'static str {
	#[cfg(unix)]
	{
		use tokio::signal::unix::{signal, SignalKind};
		match signal(SignalKind::terminate()) {
			Ok(mut term) => tokio::select! {
				_ = tokio::signal::ctrl_c() => "SIGINT",
				_ = term.recv() => "SIGTERM",
			},
			Err(_) => {
				let _ = tokio::signal::ctrl_c().await;
				"SIGINT"
			},
		}
	}
	#[cfg(not(unix))]
	{
		let _ = tokio::signal::ctrl_c().await;
		"Ctrl-C"
	}
}

fn run_demo() -> Result<(), AppError> {
	let runtime = runtime()?;
	let result = runtime.block_on(ldk_trampoline::demo::run());
	runtime.shutdown_timeout(DRAIN_TIMEOUT);
	Ok(result?)
}

fn run_bench(args: BenchArgs) -> Result<(), AppError> {
	let runtime = runtime()?;
	let result = runtime.block_on(ldk_trampoline::bench::run(args.payments));
	runtime.shutdown_timeout(DRAIN_TIMEOUT);
	result.map(|_| ()).map_err(AppError::from)
}

fn run_ctl(args: CtlArgs) -> Result<(), AppError> {
	let target = ldk_trampoline::config::resolve_ctl(CtlFlags {
		control: args.control,
		data_dir: args.data_dir,
		config: args.config,
		token_file: args.control_token_file,
		ca_cert: args.control_ca_cert,
	})?;
	let options = ClientOptions {
		token: Some(TokenSource::File(target.token_file)),
		ca_cert: target.ca_cert,
	};
	let client = ControlClient::with_options(&target.address, options)?;
	let runtime = tokio::runtime::Builder::new_current_thread()
		.enable_all()
		.build()
		.map_err(AppError::Runtime)?;
	runtime.block_on(ctl_main(client, args.command))
}

fn print_json(value: &impl Serialize) -> Result<(), AppError> {
	let text = serde_json::to_string_pretty(value)
		.map_err(|e| AppError::Other(format!("cannot print the answer: {e}")))?;
	println!("{text}");
	Ok(())
}

async fn ctl_main(client: ControlClient, command: CtlCommand) -> Result<(), AppError> {
	match command {
		CtlCommand::Getinfo => print_json(&client.getinfo().await?),
		CtlCommand::Connect { peer } => print_json(&client.connect(&peer).await?),
		CtlCommand::OpenChannel { peer, amount_sat, push_msat, private } => {
			let request = OpenChannelRequest { peer, amount_sat, push_msat, private };
			print_json(&client.open_channel(&request).await?)
		},
		CtlCommand::ListChannels => print_json(&client.list_channels().await?),
		CtlCommand::CloseChannel { channel_id, force } => {
			print_json(&client.close_channel(&channel_id, force).await?)
		},
		CtlCommand::Balances => print_json(&client.balances().await?),
		CtlCommand::NewAddress => print_json(&client.new_address().await?),
		CtlCommand::Invoice { amount_msat, description, expiry_secs } => {
			let request = InvoiceRequest { amount_msat, description, expiry_secs };
			print_json(&client.invoice(&request).await?)
		},
		CtlCommand::Offer { amount_msat, description } => {
			print_json(&client.offer(&OfferRequest { amount_msat, description }).await?)
		},
		CtlCommand::Pay {
			invoice_or_offer,
			amount_msat,
			timeout_secs,
			trampoline,
			trampoline_fee_msat,
			trampoline_cltv_expiry_delta,
			trampoline_max_fee_msat,
		} => {
			let request = PayRequest {
				request: invoice_or_offer,
				amount_msat,
				timeout_secs,
				trampoline,
				trampoline_fee_msat,
				trampoline_cltv_expiry_delta,
				trampoline_max_fee_msat,
			};
			let record = client.pay(&request).await?;
			print_json(&record)?;
			match record.status {
				PaymentStatus::Succeeded => Ok(()),
				PaymentStatus::Failed { reason } => {
					Err(AppError::Other(format!("payment {} failed: {reason}", record.id)))
				},
				PaymentStatus::Pending => Err(AppError::Other(format!(
					"payment {} is still pending; see `ctl list-payments` for its outcome",
					record.id
				))),
			}
		},
		CtlCommand::ListPayments => print_json(&client.list_payments().await?),
		CtlCommand::ListPartialInvoices => print_json(&client.list_partial_invoices().await?),
		CtlCommand::ListPartialPayments => print_json(&client.list_partial_payments().await?),
		CtlCommand::ListForwards { index_offset, limit } => {
			let request = control::ListForwardsRequest { index_offset, limit };
			print_json(&client.list_forwards(&request).await?)
		},
		CtlCommand::TrampolineStats => print_json(&client.trampoline_stats().await?),
		CtlCommand::TrampolineBuckets => print_json(&client.trampoline_buckets().await?),
		CtlCommand::ListHeld => print_json(&client.list_held().await?),
		CtlCommand::ListStaticInvoices => print_json(&client.list_static_invoices().await?),
		CtlCommand::Events { count } => print_events(&client, count).await,
		CtlCommand::SendOnchain { address, amount_sat, all, fee_rate_sat_per_vb } => {
			let request =
				control::SendOnchainRequest { address, amount_sat, all, fee_rate_sat_per_vb };
			print_json(&client.send_onchain(&request).await?)
		},
		CtlCommand::ListPeers => print_json(&client.list_peers().await?),
		CtlCommand::Disconnect { node_id, force } => {
			print_json(&client.disconnect(&node_id, force).await?)
		},
		CtlCommand::Decode { invoice_or_offer } => {
			print_json(&client.decode(&invoice_or_offer).await?)
		},
		CtlCommand::Stop => print_json(&client.stop().await?),
	}
}

/// `ctl events`: one line per event, flushed at once (for `tail`-like use
/// and pipes).
async fn print_events(client: &ControlClient, count: Option<u64>) -> Result<(), AppError> {
	use std::io::Write;
	let mut events = client.events().await?;
	let mut printed = 0u64;
	while count.is_none_or(|count| printed < count) {
		let Some(record) = events.next().await? else { break };
		let line = serde_json::to_string(&record)
			.map_err(|e| AppError::Other(format!("cannot print the event: {e}")))?;
		let mut out = std::io::stdout().lock();
		// A closed pipe (`ctl events | head`) ends the command quietly.
		if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
			break;
		}
		if record != EventRecord::Subscribed {
			printed = printed.saturating_add(1);
		}
	}
	Ok(())
}
