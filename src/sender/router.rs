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
use lightning::routing::router::{InFlightHtlcs, Path, Route, RouteParameters, Router};
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
	/// Wraps `inner`; `sender` is the state shared with the plugin (a fresh
	/// `Arc::default()` for a new node).
	pub fn new(inner: R, sender: Arc<SenderState>) -> Self {
		Self { inner, sender }
	}

	/// The state it shares with the plugin ([`crate::plugin::Plugin::builder`]).
	pub fn sender(&self) -> &Arc<SenderState> {
		&self.sender
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

/// `params` limited so that every HTLC of the route expires by `limit` when
/// LDK sends it at `height`: LDK sets the first HTLC's expiry to the height
/// plus one plus the route's total CLTV delta, and applies the payment's
/// `max_total_cltv_expiry_delta` to the height of each attempt, so a retry
/// blocks after the first attempt would otherwise expire that much later.
/// Refused when the height is not known yet or the limit is reached.
fn within_expiry_limit(
	params: &RouteParameters, limit: u32, height: u32,
) -> Result<RouteParameters, &'static str> {
	if height == 0 {
		return Err("the chain height is not known yet: no route for a relayed payment");
	}
	let room = limit.saturating_sub(height.saturating_add(1));
	if room == 0 {
		return Err("the relayed payment's expiry limit is reached");
	}
	let mut limited = params.clone();
	let max = &mut limited.payment_params.max_total_cltv_expiry_delta;
	*max = (*max).min(room);
	Ok(limited)
}

/// The blocks `path` adds to the height for its first HTLC's expiry: the sum
/// of its hops' deltas (the last one's is the final delta, or the blinded
/// path's). A blinded tail's excess is not added again: LDK's shadow offset
/// goes into the last hop's delta *and* the excess, and the onion puts the
/// excess only in the recipient's encrypted payload, whose expiry the HTLCs
/// before it already cover (`onion_utils::build_onion_payloads_callback`).
///
/// A tail's trampoline hops (LDK 0.2.7's router never fills them) would
/// move the outer route's start up by their deltas
/// (`onion_utils::create_payment_onion_internal`): counted too.
fn path_cltv_delta(path: &Path) -> u32 {
	let hops = path.hops.iter().fold(0u32, |sum, hop| sum.saturating_add(hop.cltv_expiry_delta));
	let trampolines = path.blinded_tail.iter().flat_map(|t| t.trampoline_hops.iter());
	trampolines.fold(hops, |sum, hop| sum.saturating_add(hop.cltv_expiry_delta))
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
		let limited = match self.sender.expiry_limit(&payment_id) {
			Some(limit) => {
				Some(within_expiry_limit(route_params, limit, self.sender.chain_height())?)
			},
			None => None,
		};
		let params = limited.as_ref().unwrap_or(route_params);
		let inflight = limited.is_some().then(|| inflight_htlcs.clone());
		let found = self.inner.find_route_with_id(
			payer,
			params,
			first_hops,
			inflight_htlcs,
			payment_hash,
			payment_id,
		);
		let mut route = match (found, inflight) {
			(Ok(route), _) => route,
			(Err(e), Some(inflight)) => {
				let shortfall = self.classify(payer, params, first_hops, inflight);
				self.sender.record_shortfall(&payment_id, shortfall);
				return Err(e);
			},
			(Err(e), None) => return Err(e),
		};
		if let Some(limited) = &limited {
			// Not trusting the inner router with funds: every path fits.
			let room = limited.payment_params.max_total_cltv_expiry_delta;
			if route.paths.iter().any(|path| path_cltv_delta(path) > room) {
				return Err("a path outlives the relayed payment's expiry limit");
			}
			// LDK checks that a route answers the parameters it asked for
			// (a debug assertion; in release it puts them back itself).
			route.route_params = Some(route_params.clone());
		}
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

#[cfg(test)]
mod tests {
	use std::sync::Mutex;

	use bitcoin::secp256k1::SecretKey;
	use lightning::routing::router::{BlindedTail, PaymentParameters, RouteHop};
	use lightning::types::features::{ChannelFeatures, NodeFeatures};

	use super::*;

	const HEIGHT: u32 = 1_000;

	/// A router that remembers the CLTV limit it was asked for and answers
	/// a one-hop route of the given delta (whatever the limit: a router
	/// that does not honour it), or none; with a blinded tail of the given
	/// excess when set (LDK's shadow offset, in the hop's delta too).
	#[derive(Default)]
	struct Recording(Mutex<Vec<u32>>, Option<u32>, Option<u32>);

	impl Router for Recording {
		fn find_route(
			&self, _: &PublicKey, params: &RouteParameters, _: Option<&[&ChannelDetails]>,
			_: InFlightHtlcs,
		) -> Result<Route, &'static str> {
			self.0.lock().unwrap().push(params.payment_params.max_total_cltv_expiry_delta);
			let cltv_expiry_delta = self.1.ok_or("no route")?;
			let hop = RouteHop {
				pubkey: key(2),
				node_features: NodeFeatures::empty(),
				short_channel_id: 42,
				channel_features: ChannelFeatures::empty(),
				fee_msat: params.final_value_msat,
				cltv_expiry_delta,
				maybe_announced_channel: false,
			};
			let blinded_tail = self.2.map(|excess| BlindedTail {
				trampoline_hops: Vec::new(),
				hops: Vec::new(),
				blinding_point: key(3),
				excess_final_cltv_expiry_delta: excess,
				final_value_msat: params.final_value_msat,
			});
			Ok(Route {
				paths: vec![Path { hops: vec![hop], blinded_tail }],
				route_params: Some(params.clone()),
			})
		}

		fn create_blinded_payment_paths<T: secp256k1::Signing + secp256k1::Verification>(
			&self, _: PublicKey, _: Vec<ChannelDetails>, _: ReceiveTlvs, _: Option<u64>,
			_: &Secp256k1<T>,
		) -> Result<Vec<BlindedPaymentPath>, ()> {
			Err(())
		}
	}

	fn key(byte: u8) -> PublicKey {
		let secret = SecretKey::from_slice(&[byte; 32]).expect("valid key");
		PublicKey::from_secret_key(&Secp256k1::new(), &secret)
	}

	/// Asks for a route to pay 10,000 msat with a 500-block limit (what the
	/// relay's plan allowed at the first attempt); the inner router records
	/// what it is asked and finds none.
	fn ask(router: &TrampolineRouter<Arc<Recording>>, id: PaymentId) -> Result<(), &'static str> {
		ask_for_route(router, id).map(|_| ())
	}

	fn params() -> RouteParameters {
		RouteParameters::from_payment_params_and_value(
			PaymentParameters::from_node_id(key(2), 40).with_max_total_cltv_expiry_delta(500),
			10_000,
		)
	}

	fn ask_for_route(
		router: &TrampolineRouter<Arc<Recording>>, id: PaymentId,
	) -> Result<Route, &'static str> {
		let payer = key(1);
		router.find_route_with_id(
			&payer,
			&params(),
			None,
			InFlightHtlcs::new(),
			PaymentHash([7; 32]),
			id,
		)
	}

	/// A router over an inner one answering a route of `delta` (with a
	/// blinded tail of `excess`), for the payments of `sender`.
	fn answering(
		sender: &Arc<SenderState>, delta: Option<u32>, excess: Option<u32>,
	) -> TrampolineRouter<Arc<Recording>> {
		TrampolineRouter::new(
			Arc::new(Recording(Mutex::default(), delta, excess)),
			Arc::clone(sender),
		)
	}

	/// The limit of the search for the route (the searches after it are
	/// the shortfall's classification, without limits).
	fn limit_asked(router: &TrampolineRouter<Arc<Recording>>) -> u32 {
		*router.inner.0.lock().unwrap().first().expect("the inner router was asked")
	}

	#[test]
	fn every_attempt_of_a_relayed_payment_expires_by_its_limit() {
		let sender = Arc::new(SenderState::default());
		let router = TrampolineRouter::new(Arc::new(Recording::default()), Arc::clone(&sender));
		let id = PaymentId([1; 32]);
		let limit = HEIGHT + 300;
		sender.watch_route(id, limit);
		sender.best_block_updated(HEIGHT);
		assert!(!sender.was_routed(&id), "not asked yet");
		// The first attempt: the plan's limit fits (LDK's first HTLC at
		// HEIGHT + 1 + the route's total, at most the limit).
		let _ = ask(&router, id);
		assert_eq!(limit_asked(&router), 299);
		// The relay can tell its payment went through this router (a
		// ChannelManager built with another one never asks it).
		assert!(sender.was_routed(&id));
		let other = SenderState::default();
		other.watch_route(id, limit);
		assert!(!other.was_routed(&id), "a router with its own state is not this one");
		// A retry 100 blocks later may take 100 blocks less.
		router.inner.0.lock().unwrap().clear();
		sender.best_block_updated(HEIGHT + 100);
		let _ = ask(&router, id);
		assert_eq!(limit_asked(&router), 199);
		// LDK's own height lags (the relay's tick reports it): the router
		// keeps the higher one.
		sender.best_block_updated(HEIGHT + 50);
		assert_eq!(sender.chain_height(), HEIGHT + 100);
		// At the limit's last block nothing fits: refused without a search.
		router.inner.0.lock().unwrap().clear();
		sender.best_block_updated(limit - 1);
		assert!(ask(&router, id).is_err());
		assert!(router.inner.0.lock().unwrap().is_empty(), "searched past the limit");
		// The payment's routes are no longer watched once it is settled.
		assert_eq!(sender.take_route_shortfall(&id), Some(RouteShortfall::Unreachable));
		assert_eq!(sender.expiry_limit(&id), None);
	}

	#[test]
	fn a_relayed_payment_is_not_routed_before_the_height_is_known() {
		let sender = Arc::new(SenderState::default());
		let router = TrampolineRouter::new(Arc::new(Recording::default()), Arc::clone(&sender));
		let id = PaymentId([1; 32]);
		sender.watch_route(id, HEIGHT + 300);
		assert!(ask(&router, id).is_err());
		assert!(router.inner.0.lock().unwrap().is_empty(), "routed at height 0");
	}

	#[test]
	fn payments_the_relay_does_not_make_keep_their_limit() {
		let sender = Arc::new(SenderState::default());
		let router = TrampolineRouter::new(Arc::new(Recording::default()), Arc::clone(&sender));
		sender.best_block_updated(HEIGHT + 10_000);
		let _ = ask(&router, PaymentId([2; 32]));
		assert_eq!(router.inner.0.lock().unwrap().clone(), [500]);
	}

	#[test]
	fn a_found_route_answers_the_asked_parameters_and_fits_the_limit() {
		let sender = Arc::new(SenderState::default());
		let id = PaymentId([1; 32]);
		sender.watch_route(id, HEIGHT + 300);
		sender.best_block_updated(HEIGHT);
		// A route within the room (299) carries the parameters LDK asked
		// for, not the clamped ones (LDK asserts it in debug builds).
		let fits = answering(&sender, Some(299), None);
		let route = ask_for_route(&fits, id).expect("a route");
		assert_eq!(route.route_params, Some(params()));
		// A route one block longer than the room is refused, whatever the
		// inner router thought of the limit.
		let outlives = answering(&sender, Some(300), None);
		assert!(ask_for_route(&outlives, id).is_err());
		// LDK adds its shadow offset to a blinded path's last hop and to
		// the tail's excess; the first HTLC's expiry counts it once, and so
		// does the check (it refused such routes at random when it counted
		// the excess again).
		let shadowed = answering(&sender, Some(299), Some(120));
		assert!(ask_for_route(&shadowed, id).is_ok());
	}
}
