//! Stand-ins shared by the unit tests, the benches and the fuzz targets: a
//! key-value store in memory, a silent logger, the node as the inbound
//! rewrite sees it, and HTLCs carrying onions to it. Not part of the API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, Signing, Verification};
use lightning::io;
use lightning::ln::inbound_payment::{self, ExpandedKey};
use lightning::ln::msgs::{self, UpdateAddHTLC};
use lightning::ln::types::ChannelId;
use lightning::sign::{KeysManager, NodeSigner, Recipient};
use lightning::types::payment::{PaymentHash, PaymentSecret};
use lightning::util::logger::{Logger, Record};
use lightning::util::persist::KVStoreSync;
use lightning_invoice::{Bolt11Invoice, Currency, InvoiceBuilder};

use crate::handler::InboundNode;
use crate::onion::{
	self, OuterHop, OuterPayload, PaymentData, SphinxHop, TlvLayout, PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
use crate::sender::{trampoline_onion, TrampolineRouteHop};

type Key = (String, String, String);

/// Records in a map; every write fails while [`Self::set_failing`] is on.
#[derive(Default)]
pub struct MemoryStore {
	records: Mutex<HashMap<Key, Vec<u8>>>,
	fail_writes: AtomicBool,
}

impl MemoryStore {
	fn records(&self) -> MutexGuard<'_, HashMap<Key, Vec<u8>>> {
		self.records.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// Makes every later write fail (`true`) or succeed.
	pub fn set_failing(&self, failing: bool) {
		self.fail_writes.store(failing, Ordering::SeqCst);
	}
}

fn key(p: &str, s: &str, k: &str) -> Key {
	(p.to_string(), s.to_string(), k.to_string())
}

impl KVStoreSync for MemoryStore {
	fn read(&self, p: &str, s: &str, k: &str) -> Result<Vec<u8>, io::Error> {
		self.records().get(&key(p, s, k)).cloned().ok_or_else(|| io::ErrorKind::NotFound.into())
	}

	fn write(&self, p: &str, s: &str, k: &str, buf: Vec<u8>) -> Result<(), io::Error> {
		if self.fail_writes.load(Ordering::SeqCst) {
			return Err(io::Error::new(io::ErrorKind::Other, "writes fail in this test"));
		}
		self.records().insert(key(p, s, k), buf);
		Ok(())
	}

	fn remove(&self, p: &str, s: &str, k: &str, _lazy: bool) -> Result<(), io::Error> {
		self.records().remove(&key(p, s, k));
		Ok(())
	}

	fn list(&self, p: &str, s: &str) -> Result<Vec<String>, io::Error> {
		Ok(self
			.records()
			.keys()
			.filter(|(kp, ks, _)| kp == p && ks == s)
			.map(|(_, _, k)| k.clone())
			.collect())
	}
}

/// A logger that drops everything.
pub struct NoLogger;

impl Logger for NoLogger {
	fn log(&self, _: Record) {}
}

/// How the stand-in node issues payment secrets for new buckets.
pub enum SecretIssuer {
	/// As LDK does (`inbound_payment::create_from_hash` with the node's key).
	Ldk {
		/// The node's inbound payment key.
		key: ExpandedKey,
		/// "Now", seconds since the Unix epoch.
		now: u64,
	},
	/// A fixed function of the hash (what a fuzz input can predict).
	HashOfHash,
	/// Never (LDK refusing the expiry).
	Refuse,
}

/// The node as the inbound rewrite sees it, without a channel manager: its
/// answers are fields.
pub struct StandInNode {
	/// Its node id.
	pub node_id: PublicKey,
	/// How it issues payment secrets.
	pub secrets: SecretIssuer,
	/// What `has_channel` answers.
	pub has_channel: bool,
	/// What `has_inbound_htlc` answers.
	pub has_inbound_htlc: bool,
}

impl StandInNode {
	/// The node of `keys`, issuing secrets as LDK does, with the channel and
	/// no committed HTLC.
	pub fn new(keys: &KeysManager, now: u64) -> Self {
		Self {
			node_id: keys.get_node_id(Recipient::Node).unwrap_or_else(|()| unreachable!()),
			secrets: SecretIssuer::Ldk { key: keys.get_expanded_key(), now },
			has_channel: true,
			has_inbound_htlc: false,
		}
	}
}

impl InboundNode for StandInNode {
	fn our_node_id(&self) -> PublicKey {
		self.node_id
	}

	fn create_inbound_payment_for_hash(
		&self, payment_hash: PaymentHash, invoice_expiry_delta_secs: u32,
	) -> Option<PaymentSecret> {
		match &self.secrets {
			SecretIssuer::Ldk { key, now } => inbound_payment::create_from_hash(
				key,
				None,
				payment_hash,
				invoice_expiry_delta_secs,
				*now,
				None,
			)
			.ok(),
			SecretIssuer::HashOfHash => {
				Some(PaymentSecret(sha256::Hash::hash(&payment_hash.0).to_byte_array()))
			},
			SecretIssuer::Refuse => None,
		}
	}

	fn has_channel(&self, _peer: &PublicKey, _channel_id: &ChannelId) -> bool {
		self.has_channel
	}

	fn has_inbound_htlc(&self, _peer: &PublicKey, _channel_id: &ChannelId, _htlc_id: u64) -> bool {
		self.has_inbound_htlc
	}
}

/// Where an HTLC arrives and what it carries besides its onion.
pub struct HtlcShape {
	/// Its channel.
	pub channel_id: ChannelId,
	/// Its id in that channel.
	pub htlc_id: u64,
	/// Its amount.
	pub amount_msat: u64,
	/// Its expiry.
	pub cltv_expiry: u32,
}

/// An HTLC of `shape` for `payment_hash` whose onion has one hop, `node_id`,
/// with the outer payload `hop`.
pub fn onion_htlc<C: Signing>(
	secp: &Secp256k1<C>, node_id: PublicKey, payment_hash: PaymentHash, hop: OuterHop,
	shape: &HtlcShape,
) -> UpdateAddHTLC {
	let payload = OuterPayload::new(hop).encode().expect("an encodable payload");
	let session_key = SecretKey::from_slice(&rand::random::<[u8; 32]>()).expect("a key");
	let built = onion::build(
		secp,
		&session_key,
		&[SphinxHop { node_id, payload }],
		&payment_hash.0,
		PAYMENT_ONION_HOP_PAYLOADS_LEN,
	)
	.expect("an onion");
	let mut hop_data = [0u8; PAYMENT_ONION_HOP_PAYLOADS_LEN];
	hop_data.copy_from_slice(built.packet.hop_payloads());
	UpdateAddHTLC {
		channel_id: shape.channel_id,
		htlc_id: shape.htlc_id,
		amount_msat: shape.amount_msat,
		payment_hash,
		cltv_expiry: shape.cltv_expiry,
		skimmed_fee_msat: None,
		onion_routing_packet: msgs::OnionPacket {
			version: 0,
			public_key: Ok(*built.packet.public_key()),
			hop_data,
			hmac: *built.packet.hmac(),
		},
		blinding_point: None,
		hold_htlc: None,
	}
}

/// A fresh BOLT 11 invoice of `recipient_key` for `amount_msat` (final CLTV
/// delta 144) and its payment hash.
pub fn invoice<C: Signing>(
	secp: &Secp256k1<C>, recipient_key: &SecretKey, amount_msat: u64,
) -> (Bolt11Invoice, PaymentHash) {
	let preimage: [u8; 32] = rand::random();
	let hash = sha256::Hash::hash(&preimage);
	let invoice = InvoiceBuilder::new(Currency::Regtest)
		.description("testkit".into())
		.payment_hash(hash)
		.payment_secret(PaymentSecret(rand::random()))
		.current_timestamp()
		.min_final_cltv_expiry_delta(144)
		.amount_milli_satoshis(amount_msat)
		.build_signed(|h| secp.sign_ecdsa_recoverable(h, recipient_key))
		.expect("an invoice");
	(invoice, PaymentHash(hash.to_byte_array()))
}

/// A legacy trampoline payment of `invoice` through `trampoline` (fee
/// `fee_msat`, CLTV delta 288), as a wallet sends it at `height`, in an
/// HTLC of `shape` (its amount should cover the invoice and the fee).
pub fn trampoline_htlc<C: Signing + Verification>(
	secp: &Secp256k1<C>, trampoline: PublicKey, invoice: &Bolt11Invoice, fee_msat: u64,
	height: u32, shape: &HtlcShape,
) -> UpdateAddHTLC {
	let hop = TrampolineRouteHop {
		node_id: trampoline,
		fee_msat,
		cltv_expiry_delta: 288,
		async_payment: false,
	};
	let onion = trampoline_onion(&invoice.clone().into(), &[hop], height).expect("an onion");
	let hash = PaymentHash(invoice.payment_hash().to_byte_array());
	onion_htlc(
		secp,
		trampoline,
		hash,
		OuterHop::TrampolineEntry {
			amt_to_forward: shape.amount_msat,
			outgoing_cltv_value: shape.cltv_expiry,
			payment_data: Some(PaymentData {
				payment_secret: PaymentSecret(rand::random()),
				total_msat: shape.amount_msat,
			}),
			current_path_key: None,
			trampoline_onion: onion.packet,
			layout: TlvLayout::Legacy,
		},
		shape,
	)
}
