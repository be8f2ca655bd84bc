//! Composite field values shared by the payload types: `payment_data`, the
//! payment blinded paths of `recipient_blinded_paths` / `outgoing_blinded_paths`,
//! and the legacy `invoice_routing_info` route hints.

use bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::payment::{BlindedPayInfo, BlindedPaymentPath};
use lightning::blinded_path::{BlindedHop, Direction, IntroductionNode};
use lightning::routing::gossip::RoutingFees;
use lightning::routing::router::{RouteHint, RouteHintHop};
use lightning::types::payment::PaymentSecret;
use lightning::util::ser::{Readable, Writeable};

use crate::onion::tlv::{decode_msat, encode_tu64};

/// `payment_data` (type 8): the payment secret and the total amount of a
/// (possibly multi-part) payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PaymentData {
	/// The payment secret.
	pub payment_secret: PaymentSecret,
	/// Total amount of all parts, in millisatoshi (`tu64`).
	pub total_msat: u64,
}

impl PaymentData {
	pub(crate) fn encode(&self) -> Vec<u8> {
		let mut out = self.payment_secret.0.to_vec();
		out.extend_from_slice(&encode_tu64(self.total_msat));
		out
	}

	pub(crate) fn decode(value: &[u8]) -> Result<Self, &'static str> {
		if value.len() < 32 {
			return Err("payment_data is shorter than its 32-byte payment secret");
		}
		let mut secret = [0u8; 32];
		secret.copy_from_slice(&value[..32]);
		let total_msat = decode_msat(&value[32..])?;
		Ok(Self { payment_secret: PaymentSecret(secret), total_msat })
	}
}

/// A BOLT 4 `blinded_path` followed by its BOLT 12 `blinded_payinfo`: one entry
/// of `recipient_blinded_paths` (22) or legacy `outgoing_blinded_paths` (66102).
///
/// It always has between 1 and 255 hops. Unlike LDK's [`BlindedPaymentPath`] it
/// can hold a `sciddir` introduction node; [`Self::to_ldk`] converts when the
/// introduction node is a node id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PaymentBlindedPath {
	introduction_node: IntroductionNode,
	first_path_key: PublicKey,
	hops: Vec<BlindedHop>,
	payinfo: BlindedPayInfo,
}

impl PaymentBlindedPath {
	/// Builds a path; `None` if `hops` is empty or has more than 255 entries.
	pub fn new(
		introduction_node: IntroductionNode, first_path_key: PublicKey, hops: Vec<BlindedHop>,
		payinfo: BlindedPayInfo,
	) -> Option<Self> {
		if hops.is_empty() || hops.len() > usize::from(u8::MAX) {
			return None;
		}
		Some(Self { introduction_node, first_path_key, hops, payinfo })
	}

	/// Takes the parts of an LDK path (whose introduction node is always
	/// representable here).
	pub fn from_ldk(path: &BlindedPaymentPath) -> Option<Self> {
		Self::new(
			path.introduction_node().clone(),
			path.blinding_point(),
			path.blinded_hops().to_vec(),
			path.payinfo.clone(),
		)
	}

	/// The LDK equivalent, for LDK's router; `None` if the introduction node is a
	/// directed short channel id (LDK 0.2.7 has no public constructor for that).
	pub fn to_ldk(&self) -> Option<BlindedPaymentPath> {
		match self.introduction_node {
			IntroductionNode::NodeId(node_id) => {
				Some(BlindedPaymentPath::from_blinded_path_and_payinfo(
					node_id,
					self.first_path_key,
					self.hops.clone(),
					self.payinfo.clone(),
				))
			},
			IntroductionNode::DirectedShortChannelId(..) => None,
		}
	}

	/// The introduction node.
	pub fn introduction_node(&self) -> &IntroductionNode {
		&self.introduction_node
	}

	/// The path key (blinding point) for the introduction node.
	pub fn first_path_key(&self) -> &PublicKey {
		&self.first_path_key
	}

	/// The blinded hops (never empty).
	pub fn hops(&self) -> &[BlindedHop] {
		&self.hops
	}

	/// Fees, CLTV delta and HTLC limits of the whole path.
	pub fn payinfo(&self) -> &BlindedPayInfo {
		&self.payinfo
	}

	fn write(&self, out: &mut Vec<u8>) {
		match &self.introduction_node {
			IntroductionNode::NodeId(node_id) => out.extend_from_slice(&node_id.serialize()),
			IntroductionNode::DirectedShortChannelId(direction, scid) => {
				out.push(match direction {
					Direction::NodeOne => 0,
					Direction::NodeTwo => 1,
				});
				out.extend_from_slice(&scid.to_be_bytes());
			},
		}
		out.extend_from_slice(&self.first_path_key.serialize());
		// `new` bounds the hop count to 255.
		out.push(self.hops.len() as u8);
		for hop in &self.hops {
			out.extend_from_slice(&hop.encode());
		}
		out.extend_from_slice(&self.payinfo.encode());
	}

	fn read(reader: &mut &[u8]) -> Result<Self, &'static str> {
		let first: u8 = Readable::read(reader).map_err(|_| "blinded path is truncated")?;
		let introduction_node = match first {
			0 | 1 => {
				let scid: u64 =
					Readable::read(reader).map_err(|_| "blinded path sciddir is truncated")?;
				let direction = if first == 0 { Direction::NodeOne } else { Direction::NodeTwo };
				IntroductionNode::DirectedShortChannelId(direction, scid)
			},
			2 | 3 => {
				let mut bytes = [0u8; 33];
				bytes[0] = first;
				let rest: [u8; 32] =
					Readable::read(reader).map_err(|_| "introduction node id is truncated")?;
				bytes[1..].copy_from_slice(&rest);
				let node_id = PublicKey::from_slice(&bytes)
					.map_err(|_| "introduction node id is not a valid point")?;
				IntroductionNode::NodeId(node_id)
			},
			_ => return Err("introduction node is neither a node id nor a sciddir"),
		};
		let first_path_key: PublicKey =
			Readable::read(reader).map_err(|_| "first_path_key is invalid or truncated")?;
		let num_hops: u8 = Readable::read(reader).map_err(|_| "blinded path is truncated")?;
		if num_hops == 0 {
			return Err("blinded path has no hops");
		}
		let mut hops = Vec::with_capacity(usize::from(num_hops));
		for _ in 0..num_hops {
			hops.push(BlindedHop::read(reader).map_err(|_| "blinded hop is invalid or truncated")?);
		}
		let payinfo =
			BlindedPayInfo::read(reader).map_err(|_| "blinded_payinfo is invalid or truncated")?;
		Ok(Self { introduction_node, first_path_key, hops, payinfo })
	}

	/// Encodes a list of paths as the value of type 22 / 66102.
	pub(crate) fn encode_list(paths: &[PaymentBlindedPath]) -> Vec<u8> {
		let mut out = Vec::new();
		for path in paths {
			path.write(&mut out);
		}
		out
	}

	/// Decodes the value of type 22 / 66102 (one or more paths, back to back).
	pub(crate) fn decode_list(value: &[u8]) -> Result<Vec<PaymentBlindedPath>, &'static str> {
		let mut reader = value;
		let mut paths = Vec::new();
		while !reader.is_empty() {
			paths.push(Self::read(&mut reader)?);
		}
		if paths.is_empty() {
			return Err("blinded path list is empty");
		}
		Ok(paths)
	}
}

/// One hop of a legacy (eclair) `invoice_routing_info` route hint: the BOLT 11
/// `r` field layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LegacyRouteHintHop {
	/// The node at the start of the channel.
	pub node_id: PublicKey,
	/// The channel.
	pub short_channel_id: u64,
	/// Base fee in millisatoshi.
	pub fee_base_msat: u32,
	/// Proportional fee in millionths.
	pub fee_proportional_millionths: u32,
	/// CLTV delta of the channel.
	pub cltv_expiry_delta: u16,
}

impl LegacyRouteHintHop {
	const ENCODED_LEN: usize = 33 + 8 + 4 + 4 + 2;

	/// The LDK route hint hop (HTLC limits unknown).
	pub fn to_ldk(&self) -> RouteHintHop {
		RouteHintHop {
			src_node_id: self.node_id,
			short_channel_id: self.short_channel_id,
			fees: RoutingFees {
				base_msat: self.fee_base_msat,
				proportional_millionths: self.fee_proportional_millionths,
			},
			cltv_expiry_delta: self.cltv_expiry_delta,
			htlc_minimum_msat: None,
			htlc_maximum_msat: None,
		}
	}

	/// Encodes route hints as the value of type 66099: for each hint, a `u8` hop
	/// count followed by the hops. Fails if a hint has more than 255 hops.
	pub(crate) fn encode_hints(hints: &[Vec<LegacyRouteHintHop>]) -> Option<Vec<u8>> {
		let mut out = Vec::new();
		for hint in hints {
			out.push(u8::try_from(hint.len()).ok()?);
			for hop in hint {
				out.extend_from_slice(&hop.node_id.serialize());
				out.extend_from_slice(&hop.short_channel_id.to_be_bytes());
				out.extend_from_slice(&hop.fee_base_msat.to_be_bytes());
				out.extend_from_slice(&hop.fee_proportional_millionths.to_be_bytes());
				out.extend_from_slice(&hop.cltv_expiry_delta.to_be_bytes());
			}
		}
		Some(out)
	}

	/// Decodes the value of type 66099.
	pub(crate) fn decode_hints(value: &[u8]) -> Result<Vec<Vec<LegacyRouteHintHop>>, &'static str> {
		let mut reader = value;
		let mut hints = Vec::new();
		while let Some((&count, rest)) = reader.split_first() {
			reader = rest;
			let needed = usize::from(count) * Self::ENCODED_LEN;
			if reader.len() < needed {
				return Err("route hint is truncated");
			}
			let mut hint = Vec::with_capacity(usize::from(count));
			for _ in 0..count {
				let node_id: PublicKey =
					Readable::read(&mut reader).map_err(|_| "route hint node id is invalid")?;
				let short_channel_id: u64 =
					Readable::read(&mut reader).map_err(|_| "route hint is truncated")?;
				let fee_base_msat: u32 =
					Readable::read(&mut reader).map_err(|_| "route hint is truncated")?;
				let fee_proportional_millionths: u32 =
					Readable::read(&mut reader).map_err(|_| "route hint is truncated")?;
				let cltv_expiry_delta: u16 =
					Readable::read(&mut reader).map_err(|_| "route hint is truncated")?;
				hint.push(LegacyRouteHintHop {
					node_id,
					short_channel_id,
					fee_base_msat,
					fee_proportional_millionths,
					cltv_expiry_delta,
				});
			}
			hints.push(hint);
		}
		Ok(hints)
	}
}

/// Converts legacy route hints into LDK's.
pub fn legacy_route_hints_to_ldk(hints: &[Vec<LegacyRouteHintHop>]) -> Vec<RouteHint> {
	hints
		.iter()
		.map(|hint| RouteHint(hint.iter().map(LegacyRouteHintHop::to_ldk).collect()))
		.collect()
}
