//! Helpers shared by the regtest tests: ldk-node 0.7.1 peers (third-party LDK
//! nodes) running against the harness' bitcoind.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod relay_process;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash as _;
use ldk_node::bitcoin::Network;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_trampoline::node::RpcAuth;
use ldk_trampoline::node::{Node, NodeEvent};
use ldk_trampoline::regtest::{RegtestNetwork, DEADLINE};
use ldk_trampoline::relay::BucketStage;
use lightning::ln::channelmanager::PaymentId;
use lightning::types::payment::PaymentHash;

/// Starts an ldk-node 0.7.1 node against the harness' bitcoind, listening on a
/// free loopback port, with its data in the harness directory.
pub fn start_ldk_node(net: &RegtestNetwork, name: &str) -> Arc<ldk_node::Node> {
	start_ldk_node_with_role(net, name, None)
}

/// [`start_ldk_node`] with an async payments role (`None`: none).
pub fn start_ldk_node_with_role(
	net: &RegtestNetwork, name: &str, role: Option<ldk_node::config::AsyncPaymentsRole>,
) -> Arc<ldk_node::Node> {
	let rpc = net.bitcoind().rpc_config();
	let RpcAuth::UserPass { user, password } = rpc.auth else { panic!("harness uses user/pass") };
	let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
	let mut builder = ldk_node::Builder::new();
	builder.set_network(Network::Regtest);
	builder.set_storage_dir_path(net.dir().join(name).display().to_string());
	builder.set_chain_source_bitcoind_rpc(rpc.host, rpc.port, user, password);
	builder
		.set_listening_addresses(vec![SocketAddress::TcpIpV4 { addr: [127, 0, 0, 1], port }])
		.unwrap();
	builder.set_node_alias(name.to_string()).unwrap();
	builder.set_async_payments_role(role).unwrap();
	let node = Arc::new(builder.build().expect("ldk-node builds"));
	node.start().expect("ldk-node starts");
	node
}

/// Opens a channel from `from` to the ldk-node `peer`, and waits until both
/// sides see it ready.
pub async fn open_channel_to_ldk_node(
	net: &RegtestNetwork, from: &Arc<ldk_trampoline::node::Node>, peer: &ldk_node::Node, sat: u64,
	push_msat: u64, announce: bool,
) {
	net.open_channel_to(from, peer.node_id(), ldk_node_addr(peer), sat, push_msat, announce)
		.await
		.expect("channel to ldk-node");
	sync_ldk_node(peer);
	wait_ldk_event(peer, DEADLINE, "channel ready", |e| {
		matches!(e, ldk_node::Event::ChannelReady { .. }).then_some(())
	})
	.await;
}

/// The address an ldk-node listens on.
pub fn ldk_node_addr(node: &ldk_node::Node) -> std::net::SocketAddr {
	match node.listening_addresses().and_then(|a| a.into_iter().next()) {
		Some(SocketAddress::TcpIpV4 { addr, port }) => (addr, port).into(),
		other => panic!("unexpected listening address {other:?}"),
	}
}

/// Waits for an ldk-node event that `pick` accepts, acknowledging every event.
pub async fn wait_ldk_event<T>(
	node: &ldk_node::Node, timeout: Duration, what: &str,
	mut pick: impl FnMut(&ldk_node::Event) -> Option<T>,
) -> T {
	let deadline = tokio::time::Instant::now() + timeout;
	loop {
		let event = tokio::time::timeout_at(deadline, node.next_event_async())
			.await
			.unwrap_or_else(|_| panic!("timed out after {timeout:?} waiting for {what}"));
		node.event_handled().expect("event handled");
		if let Some(found) = pick(&event) {
			return found;
		}
	}
}

/// Waits until an ldk-node receives a payment; returns its amount.
pub async fn wait_ldk_received(node: &ldk_node::Node) -> u64 {
	wait_ldk_event(node, DEADLINE, "a payment received", |e| match e {
		ldk_node::Event::PaymentReceived { amount_msat, .. } => Some(*amount_msat),
		_ => None,
	})
	.await
}

/// Makes an ldk-node catch up with bitcoind's tip.
pub fn sync_ldk_node(node: &ldk_node::Node) {
	node.sync_wallets().expect("ldk-node syncs");
}

/// Waits until an ldk-node's wallet holds `sat` spendable on-chain.
pub async fn wait_ldk_onchain_balance(node: &ldk_node::Node, sat: u64) {
	let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
	loop {
		sync_ldk_node(node);
		let balances = node.list_balances();
		if balances.spendable_onchain_balance_sats >= sat {
			return;
		}
		assert!(
			tokio::time::Instant::now() < deadline,
			"ldk-node wallet never reached {sat} sat: {balances:?}"
		);
		tokio::time::sleep(Duration::from_millis(200)).await;
	}
}

/// One call to the wake-up webhook: its body and LSPS5 headers.
pub struct WakeCall {
	/// The JSON-RPC notification.
	pub body: String,
	/// `x-lsps5-timestamp`.
	pub timestamp: String,
	/// `x-lsps5-signature`.
	pub signature: String,
}

/// A webhook on loopback; returns its URL and the calls it receives.
pub async fn wake_webhook() -> (String, tokio::sync::mpsc::UnboundedReceiver<WakeCall>) {
	use axum::http::HeaderMap;
	let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
	let app = axum::Router::new().route(
		"/wake",
		axum::routing::post(move |headers: HeaderMap, body: String| {
			let header = |name: &str| {
				headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
			};
			let call = WakeCall {
				body,
				timestamp: header("x-lsps5-timestamp"),
				signature: header("x-lsps5-signature"),
			};
			let _ = tx.send(call);
			async {}
		}),
	);
	let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
	let url = format!("http://{}/wake", listener.local_addr().expect("addr"));
	tokio::spawn(async move { axum::serve(listener, app).await });
	(url, rx)
}

/// Waits for the next call to a [`wake_webhook`] and checks it is
/// `expected`, signed by `signer` as LSPS5 specifies (lightning-liquidity's
/// client-side `LSPS5Validator`).
pub async fn expect_wake_call(
	calls: &mut tokio::sync::mpsc::UnboundedReceiver<WakeCall>,
	expected: lightning_liquidity::lsps5::msgs::WebhookNotification,
	signer: bitcoin::secp256k1::PublicKey,
) {
	use lightning_liquidity::lsps0::ser::LSPSDateTime;
	use lightning_liquidity::lsps5::msgs::WebhookNotification;
	let call = tokio::time::timeout(DEADLINE, calls.recv())
		.await
		.expect("the webhook is called in time")
		.expect("a call");
	let notification: WebhookNotification = serde_json::from_str(&call.body).expect("JSON-RPC");
	assert_eq!(notification, expected);
	let timestamp: LSPSDateTime = call.timestamp.parse().expect("an RFC 3339 timestamp");
	lightning_liquidity::lsps5::validator::LSPS5Validator::new()
		.validate(signer, &timestamp, &call.signature, &notification)
		.expect("signed by the node");
}

/// Waits until no channel of `node` with `peer` is usable (it went offline).
pub async fn wait_peer_offline(node: &Node, peer: bitcoin::secp256k1::PublicKey) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while node
		.channel_manager()
		.list_usable_channels()
		.iter()
		.any(|c| c.counterparty.node_id == peer)
	{
		assert!(tokio::time::Instant::now() < deadline, "the peer never went offline");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}

/// Ticks the trampoline's timers until the payer's payment `id` failed: LDK's MPP timer fails an
/// incomplete bucket three ticks after its first part (the background
/// processor ticks once a minute; ticking here is harmless and quicker).
pub async fn tick_until_failed(
	trampoline: &Node, mut events: tokio::sync::broadcast::Receiver<NodeEvent>, id: PaymentId,
) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	loop {
		assert!(tokio::time::Instant::now() < deadline, "the incomplete bucket never timed out");
		trampoline.channel_manager().timer_tick_occurred();
		while let Ok(Ok(event)) =
			tokio::time::timeout(Duration::from_millis(200), events.recv()).await
		{
			match event {
				NodeEvent::PaymentFailed { payment_id, .. } if payment_id == id => return,
				NodeEvent::PaymentSent { payment_id, .. } if payment_id == id => {
					panic!("an incomplete bucket was relayed")
				},
				_ => {},
			}
		}
	}
}

pub fn hash_of(invoice: &lightning_invoice::Bolt11Invoice) -> PaymentHash {
	PaymentHash(invoice.payment_hash().to_byte_array())
}

/// The stages of `node`'s relay buckets for `hash`.
pub fn relayed(node: &Node, hash: PaymentHash) -> Vec<BucketStage> {
	let core = node.trampoline().expect("relay on").core();
	core.buckets().into_iter().filter(|b| b.payment_hash == hash).map(|b| b.state).collect()
}

/// Waits (within [`DEADLINE`]) until `node`'s forwarding history holds at
/// least `count` records, and returns its first page.
pub async fn wait_forwards(node: &Node, count: usize) -> Vec<ldk_trampoline::node::ForwardRecord> {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	loop {
		let page = node.list_forwards(None, 1_000);
		if page.forwards.len() >= count {
			return page.forwards;
		}
		assert!(
			tokio::time::Instant::now() < deadline,
			"{} forwards recorded, expected {count}: {page:?}",
			page.forwards.len()
		);
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}
