//! A [`Router`] wrapper that tells the message handler which paths LDK chose
//! for a trampoline payment, so that it can build the outer onion of HTLCs
//! that reach the trampoline through other nodes.

use std::ops::Deref;
use std::sync::Arc;

use bitcoin::secp256k1::{self, PublicKey, Secp256k1};
use lightning::blinded_path::payment::{BlindedPaymentPath, ReceiveTlvs};
use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::channelmanager::PaymentId;
use lightning::routing::router::{InFlightHtlcs, Route, RouteParameters, Router};
use lightning::types::payment::PaymentHash;

use super::SenderState;

/// The node's router, with the paths of trampoline payments recorded in the
/// [`SenderState`] shared with the plugin's message handler. Give it to the
/// `ChannelManager` in place of the router it wraps; routes are what the
/// inner router finds, unchanged.
pub struct TrampolineRouter<R: Deref>
where
	R::Target: Router,
{
	inner: R,
	sender: Arc<SenderState>,
}

impl<R: Deref> TrampolineRouter<R>
where
	R::Target: Router,
{
	/// Wraps `inner`; `sender` is the state given to
	/// [`crate::relay::Trampoline::new`].
	pub fn new(inner: R, sender: Arc<SenderState>) -> Self {
		Self { inner, sender }
	}
}

impl<R: Deref> Router for TrampolineRouter<R>
where
	R::Target: Router,
{
	fn find_route(
		&self, payer: &PublicKey, route_params: &RouteParameters,
		first_hops: Option<&[&ChannelDetails]>, inflight_htlcs: InFlightHtlcs,
	) -> Result<Route, &'static str> {
		self.inner.find_route(payer, route_params, first_hops, inflight_htlcs)
	}

	fn find_route_with_id(
		&self, payer: &PublicKey, route_params: &RouteParameters,
		first_hops: Option<&[&ChannelDetails]>, inflight_htlcs: InFlightHtlcs,
		payment_hash: PaymentHash, payment_id: PaymentId,
	) -> Result<Route, &'static str> {
		let route = self.inner.find_route_with_id(
			payer,
			route_params,
			first_hops,
			inflight_htlcs,
			payment_hash,
			payment_id,
		)?;
		if self.sender.is_registered(&payment_hash) {
			self.sender.record_paths(&payment_hash, &route.paths);
		}
		Ok(route)
	}

	fn create_blinded_payment_paths<T: secp256k1::Signing + secp256k1::Verification>(
		&self, recipient: PublicKey, first_hops: Vec<ChannelDetails>, tlvs: ReceiveTlvs,
		amount_msats: Option<u64>, secp_ctx: &Secp256k1<T>,
	) -> Result<Vec<BlindedPaymentPath>, ()> {
		self.inner.create_blinded_payment_paths(recipient, first_hops, tlvs, amount_msats, secp_ctx)
	}
}
