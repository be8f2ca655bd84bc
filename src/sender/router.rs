//! A [`Router`] wrapper that tells the message handler which paths LDK chose
//! for a trampoline payment (by payment id), so that it recognises the HTLCs
//! LDK sends along them and builds their outer onion, and tells the relay why no
//! route was found for a payment it relays, so that it answers the payer
//! with the right failure.

use std::ops::Deref;
use std::sync::Arc;

use bitcoin::secp256k1::{self, PublicKey, Secp256k1};
use lightning::blinded_path::payment::{BlindedPaymentPath, ReceiveTlvs};
use lightning::ln::channel_state::ChannelDetails;
use lightning::ln::channelmanager::PaymentId;
use lightning::routing::router::{InFlightHtlcs, Route, RouteParameters, Router};
use lightning::types::payment::PaymentHash;

use super::SenderState;

/// The amount of the route search that tells a node we cannot reach from
/// one we cannot pay this much.
const REACHABILITY_PROBE_MSAT: u64 = 1_000;

/// Why no route was found for a payment a trampoline relays onwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteShortfall {
	/// There is a route, but not within the fee or CLTV budget the payer
	/// left: a payer offering more may succeed.
	Budget,
	/// The next node is reachable, but not with this amount.
	Liquidity,
	/// The next node cannot be reached at all.
	Unreachable,
}

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

	/// Why the inner router found no route for `params`: it finds one
	/// without the fee and CLTV limits (the payer's budget was short), one
	/// for a token amount only (liquidity is short), or none at all.
	fn classify(
		&self, payer: &PublicKey, params: &RouteParameters, first_hops: Option<&[&ChannelDetails]>,
		inflight_htlcs: InFlightHtlcs,
	) -> RouteShortfall {
		let mut unlimited = params.clone();
		unlimited.max_total_routing_fee_msat = None;
		unlimited.payment_params.max_total_cltv_expiry_delta = u32::MAX;
		if self.inner.find_route(payer, &unlimited, first_hops, inflight_htlcs.clone()).is_ok() {
			return RouteShortfall::Budget;
		}
		unlimited.final_value_msat = REACHABILITY_PROBE_MSAT;
		if self.inner.find_route(payer, &unlimited, first_hops, inflight_htlcs).is_ok() {
			return RouteShortfall::Liquidity;
		}
		RouteShortfall::Unreachable
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
		let watched = self.sender.is_route_watched(&payment_id);
		let inflight = watched.then(|| inflight_htlcs.clone());
		let found = self.inner.find_route_with_id(
			payer,
			route_params,
			first_hops,
			inflight_htlcs,
			payment_hash,
			payment_id,
		);
		let route = match (found, inflight) {
			(Ok(route), _) => route,
			(Err(e), Some(inflight)) => {
				let shortfall = self.classify(payer, route_params, first_hops, inflight);
				self.sender.record_shortfall(&payment_id, shortfall);
				return Err(e);
			},
			(Err(e), None) => return Err(e),
		};
		if self.sender.is_registered(&payment_id) {
			self.sender.record_paths(&payment_id, &route.paths);
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
