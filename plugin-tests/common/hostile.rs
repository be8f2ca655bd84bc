//! A hostile payer for the adversarial regtest tests: one of our nodes whose
//! outgoing `update_add_htlc`s carry an outer onion of the test's making
//! (any amount, CLTV, payment secret, total and custom TLVs around a real
//! trampoline packet), keysends with any custom TLV (the relay's bucket TLV
//! too), and a raw peer speaking LDK's wire protocol without a channel,
//! which sends `update_add_htlc`s on channel ids that do not exist.
//!
//! The HTLC itself (amount, `cltv_expiry`) is LDK's, as the payer's channel
//! commits it: rewriting it would break the commitment. Only the onion lies.

#![allow(dead_code)] // Each case uses its own subset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::constants::ChainHash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::Network;
use ldk_trampoline::node::{Node, NodeEvent};
use ldk_trampoline::onion::{
	self, OnionPacket, OuterHop, OuterPayload, PaymentData, SphinxHop, TlvLayout, UnknownTlvs,
	PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use ldk_trampoline::regtest::DEADLINE;
use ldk_trampoline::sender::{send_to_trampoline, OuterSend};
use lightning::ln::channelmanager::{PaymentId, RecipientOnionFields, Retry};
use lightning::ln::msgs::{
	self, BaseMessageHandler, ChannelMessageHandler, CommitmentUpdate, MessageSendEvent,
	UpdateAddHTLC,
};
use lightning::ln::peer_handler::{IgnoringMessageHandler, MessageHandler, PeerManager};
use lightning::ln::types::ChannelId;
use lightning::routing::router::{PaymentParameters, RouteParameters};
use lightning::sign::KeysManager;
use lightning::types::features::{InitFeatures, NodeFeatures};
use lightning::types::payment::{PaymentHash, PaymentPreimage, PaymentSecret};
use tokio::sync::broadcast;

/// The outer onion a hostile payer puts around a trampoline packet, in place
/// of the one its LDK built. Every `None` takes the honest value.
#[derive(Clone, Debug)]
pub struct OuterLie {
	/// The trampoline node the HTLC goes to (our direct peer).
	pub trampoline: PublicKey,
	/// The trampoline packet, as is.
	pub packet: OnionPacket,
	/// Type 20 or 66100 for the packet.
	pub layout: TlvLayout,
	/// `amt_to_forward` (honest: the HTLC's amount).
	pub amt_to_forward: Option<u64>,
	/// `outgoing_cltv_value` (honest: the HTLC's `cltv_expiry`).
	pub outgoing_cltv_value: Option<u32>,
	/// `payment_data`: the outer secret and total.
	pub payment_data: Option<PaymentData>,
	/// Extra odd TLV records in the outer payload.
	pub custom_tlvs: Vec<(u64, Vec<u8>)>,
}

impl OuterLie {
	/// The onion an HTLC `add` carries under this lie.
	pub fn onion_for(&self, add: &UpdateAddHTLC) -> msgs::OnionPacket {
		one_hop_onion(self.trampoline, self.payload(add), &add.payment_hash)
	}

	/// The outer payload for `add`.
	fn payload(&self, add: &UpdateAddHTLC) -> Vec<u8> {
		let payload = OuterPayload {
			hop: OuterHop::TrampolineEntry {
				amt_to_forward: self.amt_to_forward.unwrap_or(add.amount_msat),
				outgoing_cltv_value: self.outgoing_cltv_value.unwrap_or(add.cltv_expiry),
				payment_data: self.payment_data,
				current_path_key: None,
				trampoline_onion: self.packet.clone(),
				layout: self.layout,
			},
			unknown_tlvs: UnknownTlvs::from_records(self.custom_tlvs.clone()).expect("odd TLVs"),
		};
		payload.encode().expect("outer payload encodes")
	}
}

/// A one-hop payment onion to `node_id` carrying `payload`.
pub fn one_hop_onion(
	node_id: PublicKey, payload: Vec<u8>, hash: &PaymentHash,
) -> msgs::OnionPacket {
	let session_key = SecretKey::from_slice(&rand::random::<[u8; 32]>()).expect("key");
	let built = onion::build(
		&Secp256k1::new(),
		&session_key,
		&[SphinxHop { node_id, payload }],
		&hash.0,
		PAYMENT_ONION_HOP_PAYLOADS_LEN,
	)
	.expect("onion builds");
	msgs::OnionPacket::try_from(&built.packet).expect("LDK onion")
}

/// The lies to tell, by (payment hash, HTLC amount).
type Lies = Arc<Mutex<HashMap<([u8; 32], u64), OuterLie>>>;

/// Our node as a hostile payer: the outgoing HTLCs of a payment hash and
/// amount it was told about carry the [`OuterLie`] given for them.
pub struct HostilePayer {
	/// The node.
	pub node: Arc<Node>,
	lies: Lies,
}

impl HostilePayer {
	/// Makes `node` a hostile payer (its sender's outbound tamper hook).
	pub fn new(node: Arc<Node>) -> Self {
		let lies: Lies = Arc::default();
		let table = Arc::clone(&lies);
		node.trampoline_sender().set_outbound_tamper(Some(Arc::new(
			move |peer: &PublicKey, add: &mut UpdateAddHTLC| {
				let lie =
					table.lock().unwrap().get(&(add.payment_hash.0, add.amount_msat)).cloned();
				if let Some(lie) = lie.filter(|lie| lie.trampoline == *peer) {
					add.onion_routing_packet = lie.onion_for(add);
				}
			},
		)));
		Self { node, lies }
	}

	/// Sends one HTLC of `amount_msat` expiring `cltv_delta` blocks from now
	/// straight to `lie.trampoline`, with `lie` as its outer onion. Returns the
	/// payment id (fresh: several HTLCs of one hash are several LDK payments)
	/// and the node's events, subscribed before the send.
	pub fn send(
		&self, hash: PaymentHash, amount_msat: u64, cltv_delta: u32, lie: OuterLie,
	) -> (PaymentId, broadcast::Receiver<NodeEvent>) {
		let trampoline = lie.trampoline;
		let packet = lie.packet.to_bytes();
		self.lies.lock().unwrap().insert((hash.0, amount_msat), lie);
		let events = self.node.subscribe();
		let send = OuterSend {
			payment_hash: hash,
			trampoline,
			trampoline_packet: packet,
			amount_msat,
			total_msat: amount_msat,
			cltv_expiry_delta: cltv_delta,
			outer_secret: PaymentSecret(rand::random()),
			payment_id: PaymentId(rand::random()),
			retry: Retry::Attempts(0),
			max_routing_fee_msat: None,
			max_total_cltv_expiry_delta: None,
		};
		let id = send_to_trampoline(&**self.node.channel_manager(), &send, None).expect("send");
		(id, events)
	}

	/// A keysend of `amount_msat` to `to` with `custom_tlvs` in its onion.
	pub fn keysend(
		&self, to: PublicKey, amount_msat: u64, custom_tlvs: Vec<(u64, Vec<u8>)>,
	) -> (PaymentId, broadcast::Receiver<NodeEvent>) {
		let events = self.node.subscribe();
		let preimage = PaymentPreimage(rand::random());
		let id = PaymentId(rand::random());
		let onion =
			RecipientOnionFields::spontaneous_empty().with_custom_tlvs(custom_tlvs).expect("TLVs");
		let params = RouteParameters::from_payment_params_and_value(
			PaymentParameters::for_keysend(to, 40, false),
			amount_msat,
		);
		self.node
			.channel_manager()
			.send_spontaneous_payment(Some(preimage), onion, id, params, Retry::Attempts(0))
			.expect("keysend");
		(id, events)
	}

	/// Pays `invoice` (issued by our peer `to`) with `custom_tlvs` in the
	/// onion: an invoice payment that names something it is not.
	pub fn pay_invoice_with_tlvs(
		&self, invoice: &lightning_invoice::Bolt11Invoice, custom_tlvs: Vec<(u64, Vec<u8>)>,
	) -> (PaymentId, broadcast::Receiver<NodeEvent>) {
		use bitcoin::hashes::Hash;
		let events = self.node.subscribe();
		let id = PaymentId(rand::random());
		let secret = PaymentSecret(invoice.payment_secret().0);
		let onion =
			RecipientOnionFields::secret_only(secret).with_custom_tlvs(custom_tlvs).expect("TLVs");
		let amount = invoice.amount_milli_satoshis().expect("amount");
		let payee = invoice.recover_payee_pub_key();
		let delta = u32::try_from(invoice.min_final_cltv_expiry_delta()).expect("delta");
		let params = RouteParameters::from_payment_params_and_value(
			PaymentParameters::from_node_id(payee, delta),
			amount,
		);
		self.node
			.channel_manager()
			.send_payment(
				PaymentHash(invoice.payment_hash().to_byte_array()),
				onion,
				id,
				params,
				Retry::Attempts(0),
			)
			.expect("send");
		(id, events)
	}
}

/// How a payment of ours ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
	/// `PaymentSent`.
	Sent,
	/// `PaymentFailed`, with LDK's reason.
	Failed(String),
}

/// Waits until payment `id` succeeded or failed.
pub async fn outcome(
	node: &Node, events: broadcast::Receiver<NodeEvent>, id: PaymentId,
) -> Outcome {
	node.wait_for_event(events, DEADLINE, "the payment's outcome", |e| match e {
		NodeEvent::PaymentSent { payment_id, .. } if *payment_id == id => Some(Outcome::Sent),
		NodeEvent::PaymentFailed { payment_id, reason } if *payment_id == id => {
			Some(Outcome::Failed(reason.clone()))
		},
		_ => None,
	})
	.await
	.expect("an outcome")
}

/// A logger that drops everything.
pub struct Quiet;

impl lightning::util::logger::Logger for Quiet {
	fn log(&self, _record: lightning::util::logger::Record) {}
}

/// The channel handler of a [`RawPeer`]: sends what it is given, records the
/// errors it gets, handles nothing else.
#[derive(Default)]
pub struct RawHandler {
	outbox: Mutex<Vec<MessageSendEvent>>,
	errors: Mutex<Vec<msgs::ErrorMessage>>,
	notify: tokio::sync::Notify,
}

macro_rules! ignore {
	($($name:ident($($arg:ident: $ty:ty),*);)*) => {
		$(fn $name(&self, _their_node_id: PublicKey, $($arg: $ty),*) { $(let _ = $arg;)* })*
	};
}

impl BaseMessageHandler for RawHandler {
	fn get_and_clear_pending_msg_events(&self) -> Vec<MessageSendEvent> {
		std::mem::take(&mut *self.outbox.lock().unwrap())
	}

	fn peer_disconnected(&self, _their_node_id: PublicKey) {}

	fn provided_node_features(&self) -> NodeFeatures {
		NodeFeatures::empty()
	}

	fn provided_init_features(&self, _their_node_id: PublicKey) -> InitFeatures {
		// What a default LDK node offers, so that T accepts the connection.
		lightning::ln::channelmanager::provided_init_features(&Default::default())
	}

	fn peer_connected(
		&self, _their_node_id: PublicKey, _msg: &msgs::Init, _inbound: bool,
	) -> Result<(), ()> {
		self.notify.notify_waiters();
		Ok(())
	}
}

impl ChannelMessageHandler for RawHandler {
	fn handle_error(&self, _their_node_id: PublicKey, msg: &msgs::ErrorMessage) {
		self.errors.lock().unwrap().push(msg.clone());
		self.notify.notify_waiters();
	}

	ignore! {
		handle_open_channel(msg: &msgs::OpenChannel);
		handle_open_channel_v2(msg: &msgs::OpenChannelV2);
		handle_accept_channel(msg: &msgs::AcceptChannel);
		handle_accept_channel_v2(msg: &msgs::AcceptChannelV2);
		handle_funding_created(msg: &msgs::FundingCreated);
		handle_funding_signed(msg: &msgs::FundingSigned);
		handle_channel_ready(msg: &msgs::ChannelReady);
		handle_peer_storage(msg: msgs::PeerStorage);
		handle_peer_storage_retrieval(msg: msgs::PeerStorageRetrieval);
		handle_shutdown(msg: &msgs::Shutdown);
		handle_closing_signed(msg: &msgs::ClosingSigned);
		handle_stfu(msg: &msgs::Stfu);
		handle_splice_init(msg: &msgs::SpliceInit);
		handle_splice_ack(msg: &msgs::SpliceAck);
		handle_splice_locked(msg: &msgs::SpliceLocked);
		handle_tx_add_input(msg: &msgs::TxAddInput);
		handle_tx_add_output(msg: &msgs::TxAddOutput);
		handle_tx_remove_input(msg: &msgs::TxRemoveInput);
		handle_tx_remove_output(msg: &msgs::TxRemoveOutput);
		handle_tx_complete(msg: &msgs::TxComplete);
		handle_tx_signatures(msg: &msgs::TxSignatures);
		handle_tx_init_rbf(msg: &msgs::TxInitRbf);
		handle_tx_ack_rbf(msg: &msgs::TxAckRbf);
		handle_tx_abort(msg: &msgs::TxAbort);
		handle_update_add_htlc(msg: &msgs::UpdateAddHTLC);
		handle_update_fulfill_htlc(msg: msgs::UpdateFulfillHTLC);
		handle_update_fail_htlc(msg: &msgs::UpdateFailHTLC);
		handle_update_fail_malformed_htlc(msg: &msgs::UpdateFailMalformedHTLC);
		handle_commitment_signed(msg: &msgs::CommitmentSigned);
		handle_commitment_signed_batch(channel_id: ChannelId, batch: Vec<msgs::CommitmentSigned>);
		handle_revoke_and_ack(msg: &msgs::RevokeAndACK);
		handle_update_fee(msg: &msgs::UpdateFee);
		handle_announcement_signatures(msg: &msgs::AnnouncementSignatures);
		handle_channel_reestablish(msg: &msgs::ChannelReestablish);
		handle_channel_update(msg: &msgs::ChannelUpdate);
	}

	fn get_chain_hashes(&self) -> Option<Vec<ChainHash>> {
		Some(vec![ChainHash::using_genesis_block(Network::Regtest)])
	}

	fn message_received(&self) {}
}

type RawPeerManager = PeerManager<
	lightning_net_tokio::SocketDescriptor,
	Arc<RawHandler>,
	Arc<IgnoringMessageHandler>,
	Arc<IgnoringMessageHandler>,
	Arc<Quiet>,
	Arc<IgnoringMessageHandler>,
	Arc<KeysManager>,
	Arc<IgnoringMessageHandler>,
>;

/// A peer that speaks LDK's wire protocol to one node and has no channel:
/// it sends whatever channel messages the test gives it.
pub struct RawPeer {
	manager: Arc<RawPeerManager>,
	handler: Arc<RawHandler>,
	/// Its node id.
	pub node_id: PublicKey,
	peer: PublicKey,
}

impl RawPeer {
	/// Connects a fresh raw peer to `peer` at `addr`.
	pub async fn connect(peer: PublicKey, addr: SocketAddr) -> Self {
		let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time");
		let keys =
			Arc::new(KeysManager::new(&rand::random(), now.as_secs(), now.subsec_nanos(), true));
		let node_id = {
			use lightning::sign::NodeSigner;
			keys.get_node_id(lightning::sign::Recipient::Node).expect("node id")
		};
		let handler = Arc::new(RawHandler::default());
		let ignoring = Arc::new(IgnoringMessageHandler {});
		let manager = Arc::new(PeerManager::new(
			MessageHandler {
				chan_handler: Arc::clone(&handler),
				route_handler: Arc::clone(&ignoring),
				onion_message_handler: Arc::clone(&ignoring),
				custom_message_handler: Arc::clone(&ignoring),
				send_only_message_handler: ignoring,
			},
			u32::try_from(now.as_secs()).expect("time"),
			&rand::random(),
			Arc::new(Quiet),
			keys,
		));
		let connected = handler.notify.notified();
		let connection = lightning_net_tokio::connect_outbound(Arc::clone(&manager), peer, addr)
			.await
			.expect("TCP connection");
		tokio::spawn(connection);
		tokio::time::timeout(DEADLINE, connected).await.expect("the peer accepts us");
		Self { manager, handler, node_id, peer }
	}

	/// Sends `adds` (each on its own `channel_id`) without commitment.
	pub fn send_adds(&self, adds: Vec<UpdateAddHTLC>) {
		let mut outbox = self.handler.outbox.lock().unwrap();
		for add in adds {
			outbox.push(MessageSendEvent::UpdateHTLCs {
				node_id: self.peer,
				channel_id: add.channel_id,
				updates: CommitmentUpdate {
					update_add_htlcs: vec![add],
					update_fulfill_htlcs: Vec::new(),
					update_fail_htlcs: Vec::new(),
					update_fail_malformed_htlcs: Vec::new(),
					update_fee: None,
					commitment_signed: Vec::new(),
				},
			});
		}
		drop(outbox);
		self.manager.process_events();
	}

	/// Waits until the peer has answered `count` errors in all; returns them.
	pub async fn wait_errors(&self, count: usize) -> Vec<msgs::ErrorMessage> {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			let notified = self.handler.notify.notified();
			{
				let errors = self.handler.errors.lock().unwrap();
				if errors.len() >= count {
					return errors.clone();
				}
			}
			assert!(
				tokio::time::timeout_at(deadline, notified).await.is_ok()
					|| self.handler.errors.lock().unwrap().len() >= count,
				"the peer answered {} errors, {count} expected",
				self.handler.errors.lock().unwrap().len()
			);
		}
	}
}

/// An `update_add_htlc` on a channel that does not exist, carrying `onion`.
pub fn add_on_no_channel(
	hash: PaymentHash, amount_msat: u64, cltv_expiry: u32, onion: msgs::OnionPacket,
) -> UpdateAddHTLC {
	UpdateAddHTLC {
		channel_id: ChannelId(rand::random()),
		htlc_id: 0,
		amount_msat,
		payment_hash: hash,
		cltv_expiry,
		skimmed_fee_msat: None,
		onion_routing_packet: onion,
		blinding_point: None,
		hold_htlc: None,
	}
}

/// Waits until `check` holds, polling (for states that no event reports,
/// such as the relay's record counts after pruning).
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
	let deadline = tokio::time::Instant::now() + DEADLINE;
	while !check() {
		assert!(tokio::time::Instant::now() < deadline, "never: {what}");
		tokio::time::sleep(Duration::from_millis(50)).await;
	}
}
