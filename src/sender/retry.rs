//! Fee and expiry escalation: when a trampoline answers
//! `trampoline_fee_or_expiry_insufficient` (NODE|26) with its policy, the
//! wallet pays it again offering what that policy asks, as long as the total
//! stays inside the user's budget. Other failures are final: a
//! `temporary_trampoline_failure` (NODE|25) says "later", which is the
//! user's call (a trampoline holding for an offline recipient answers it at
//! its deadline). Each attempt is a separate LDK payment (LDK keeps a
//! failed payment id for a while to stay idempotent), all reported under the
//! first attempt's id.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use lightning::ln::channelmanager::{AChannelManager, PaymentId};
use lightning::offers::invoice::Bolt12Invoice;

use super::{pay_via_trampolines, SenderState, TrampolineInvoice, TrampolineRouteHop};
use crate::onion::{FailingHop, FailureMessage, TrampolineFailure};

/// How many times one payment is sent at most (the first attempt included).
pub const MAX_ATTEMPTS: u32 = 5;

/// The most the wallet pays its trampolines for one payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrampolineBudget {
	/// The sum of every trampoline's fee, msat.
	pub max_fee_msat: u64,
	/// The sum of every trampoline's CLTV delta, blocks.
	pub max_cltv_expiry_delta: u32,
}

impl TrampolineBudget {
	/// Exactly what `route` offers: no escalation.
	/// The sums saturate (a route past `u64::MAX` msat is over any budget).
	pub fn of_route(route: &[TrampolineRouteHop]) -> Self {
		Self {
			max_fee_msat: route.iter().fold(0, |sum, hop| sum.saturating_add(hop.fee_msat)),
			max_cltv_expiry_delta: route
				.iter()
				.fold(0, |sum, hop| sum.saturating_add(u32::from(hop.cltv_expiry_delta))),
		}
	}

	fn admits(&self, route: &[TrampolineRouteHop]) -> bool {
		let within = Self::of_route(route);
		within.max_fee_msat <= self.max_fee_msat
			&& within.max_cltv_expiry_delta <= self.max_cltv_expiry_delta
	}
}

/// Why a failed attempt is not retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoRetry {
	/// The failure is not one a new attempt can cure.
	#[error("the failure is final")]
	Final,
	/// The trampoline asks for no more than it was offered.
	/// What the trampoline asks does not fit the budget.
	#[error(
		"trampoline {hop} asks for {fee_msat} msat and {cltv_expiry_delta} blocks in all, \
		 over the budget of {budget_fee_msat} msat and {budget_cltv_expiry_delta} blocks"
	)]
	OverBudget {
		/// The trampoline that asked.
		hop: usize,
		/// The route's total fee with what it asks.
		fee_msat: u64,
		/// The route's total CLTV delta with what it asks.
		cltv_expiry_delta: u32,
		/// The budget's fee.
		budget_fee_msat: u64,
		/// The budget's CLTV delta.
		budget_cltv_expiry_delta: u32,
	},
	/// The payment was already sent [`MAX_ATTEMPTS`] times.
	#[error("sent {MAX_ATTEMPTS} times")]
	Exhausted,
	/// A legacy trampoline answered that its route onwards failed
	/// (`unknown_next_peer`, `temporary_node_failure`): Electrum tries another
	/// trampoline route then; this route is not sent again.
	#[error("trampoline {hop} cannot reach the next node: another trampoline route is needed")]
	RouteFailed {
		/// The trampoline that answered.
		hop: usize,
	},
}

/// Electrum's trampoline fee levels (`trampoline.py` `TRAMPOLINE_FEES`, 4.3.4):
/// fee_base_msat and fee_proportional_millionths; every level asks a CLTV
/// delta of [`LEGACY_CLTV_EXPIRY_DELTA`]. Legacy trampolines are tuned to
/// them, and they answer NODE|51 without saying what they want.
pub const LEGACY_FEE_LEVELS: [(u32, u32); 7] = [
	(0, 0),
	(1_000, 100),
	(3_000, 100),
	(5_000, 500),
	(7_000, 1_000),
	(12_000, 3_000),
	(100_000, 3_000),
];

/// The CLTV delta of every Electrum fee level (and of Electrum's forwarder).
pub const LEGACY_CLTV_EXPIRY_DELTA: u16 = 576;

/// What a trampoline's failure asks of the next attempt, by code: both the
/// spec's and the legacy set (eclair's and Electrum's), read as Electrum's
/// pay loop (`lnworker.py` `pay_to_node`) reads the legacy ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escalation {
	/// NODE|26 (spec): offer the policy it sends.
	Policy,
	/// NODE|51 `trampoline_fee_insufficient`, or `temporary_channel_failure`
	/// (which Electrum answers the same way: a trampoline's route may need
	/// more fee): the next fee level.
	RaiseFee,
	/// NODE|52 `trampoline_expiry_too_soon`: more CLTV delta.
	RaiseCltv,
	/// `unknown_next_peer`, `temporary_node_failure`: this trampoline route
	/// failed; another one may work.
	OtherRoute,
	/// Anything else (25, 27, a recipient's answer, `mpp_timeout`): final.
	Final,
}

/// The [`Escalation`] for a trampoline's `message`.
pub fn escalation(message: &FailureMessage) -> Escalation {
	match message {
		FailureMessage::TrampolineFeeOrExpiryInsufficient { .. } => Escalation::Policy,
		FailureMessage::TrampolineFeeInsufficient
		| FailureMessage::TemporaryChannelFailure { .. } => Escalation::RaiseFee,
		FailureMessage::TrampolineExpiryTooSoon => Escalation::RaiseCltv,
		FailureMessage::UnknownNextPeer | FailureMessage::TemporaryNodeFailure => {
			Escalation::OtherRoute
		},
		_ => Escalation::Final,
	}
}

/// The next fee level's fee for forwarding `forwarded_msat` above
/// `current_msat`: the first of [`LEGACY_FEE_LEVELS`] that asks more, or
/// twice the current fee past the last level.
fn next_fee_level(current_msat: u64, forwarded_msat: u64) -> u64 {
	LEGACY_FEE_LEVELS
		.iter()
		.map(|&(base, ppm)| {
			u64::from(base)
				.saturating_add(forwarded_msat.saturating_mul(u64::from(ppm)) / 1_000_000)
		})
		.find(|fee| *fee > current_msat)
		.unwrap_or_else(|| current_msat.saturating_mul(2).max(1))
}

/// The route of the next attempt after `failure`, for a payment of
/// `amount_msat` to the recipient: the trampoline that answered NODE|26 is
/// offered its policy on what it forwards (the amount plus the fees of the
/// trampolines after it), the others what they had. A trampoline that was
/// already offered its policy and still answers NODE|26 found no route
/// within what was left beyond it: it gets twice that surplus of fee and
/// CLTV delta (at least its policy's worth more), as Phoenix and Electrum
/// climb their fee levels.
pub fn next_route(
	route: &[TrampolineRouteHop], amount_msat: u64, failure: &TrampolineFailure,
	budget: &TrampolineBudget,
) -> Result<Vec<TrampolineRouteHop>, NoRetry> {
	let FailingHop::Trampoline(index) = failure.hop else { return Err(NoRetry::Final) };
	if index >= route.len() {
		return Err(NoRetry::Final);
	}
	let (fee_base_msat, fee_proportional_millionths, cltv_expiry_delta) = match failure.message {
		FailureMessage::TrampolineFeeOrExpiryInsufficient {
			fee_base_msat,
			fee_proportional_millionths,
			cltv_expiry_delta,
		} => (fee_base_msat, fee_proportional_millionths, cltv_expiry_delta),
		ref message => {
			return match escalation(message) {
				Escalation::RaiseFee => within(budget, index, raise_fees(route, amount_msat)),
				Escalation::RaiseCltv => within(budget, index, raise_cltv(route)),
				Escalation::OtherRoute => Err(NoRetry::RouteFailed { hop: index }),
				Escalation::Policy | Escalation::Final => Err(NoRetry::Final),
			}
		},
	};
	let Some(hop) = route.get(index) else { return Err(NoRetry::Final) };
	let after = route.get(index + 1..).unwrap_or_default();
	let forwarded = after.iter().fold(amount_msat, |sum, h| sum.saturating_add(h.fee_msat));
	let asked_fee = u64::from(fee_base_msat).saturating_add(
		forwarded.saturating_mul(u64::from(fee_proportional_millionths)) / 1_000_000,
	);
	let mut next = route.to_vec();
	if asked_fee <= hop.fee_msat && cltv_expiry_delta <= hop.cltv_expiry_delta {
		// Its own policy was met: what it lacks is for the route beyond it
		// (it found none within what was left). Double what it had beyond
		// its policy, or give it its policy once more.
		next[index].fee_msat =
			hop.fee_msat.saturating_add((hop.fee_msat - asked_fee).max(asked_fee));
		let extra_cltv = (hop.cltv_expiry_delta - cltv_expiry_delta).max(cltv_expiry_delta);
		next[index].cltv_expiry_delta = hop.cltv_expiry_delta.saturating_add(extra_cltv);
	} else {
		next[index].fee_msat = hop.fee_msat.max(asked_fee);
		next[index].cltv_expiry_delta = hop.cltv_expiry_delta.max(cltv_expiry_delta);
	}
	within(budget, index, next)
}

/// `next` if `budget` admits it, else why not (`index` asked).
fn within(
	budget: &TrampolineBudget, index: usize, next: Vec<TrampolineRouteHop>,
) -> Result<Vec<TrampolineRouteHop>, NoRetry> {
	if !budget.admits(&next) {
		let total = TrampolineBudget::of_route(&next);
		return Err(NoRetry::OverBudget {
			hop: index,
			fee_msat: total.max_fee_msat,
			cltv_expiry_delta: total.max_cltv_expiry_delta,
			budget_fee_msat: budget.max_fee_msat,
			budget_cltv_expiry_delta: budget.max_cltv_expiry_delta,
		});
	}
	Ok(next)
}

/// Every trampoline of `route` at its next fee level (a legacy NODE|51 does
/// not say which trampoline asked: a first legacy trampoline re-issues a
/// later one's failure as its own, and Electrum raises one level for all of
/// them), on what each forwards (the amount plus the fees after it).
fn raise_fees(route: &[TrampolineRouteHop], amount_msat: u64) -> Vec<TrampolineRouteHop> {
	let mut next = route.to_vec();
	let mut forwarded = amount_msat;
	for hop in next.iter_mut().rev() {
		hop.fee_msat = next_fee_level(hop.fee_msat, forwarded);
		forwarded = forwarded.saturating_add(hop.fee_msat);
	}
	next
}

/// Every trampoline of `route` offered more CLTV delta: at least Electrum's
/// [`LEGACY_CLTV_EXPIRY_DELTA`], else twice what it had.
fn raise_cltv(route: &[TrampolineRouteHop]) -> Vec<TrampolineRouteHop> {
	let mut next = route.to_vec();
	for hop in &mut next {
		hop.cltv_expiry_delta = if hop.cltv_expiry_delta < LEGACY_CLTV_EXPIRY_DELTA {
			LEGACY_CLTV_EXPIRY_DELTA
		} else {
			hop.cltv_expiry_delta.saturating_mul(2)
		};
	}
	next
}

/// One attempt of a trampoline payment.
#[derive(Clone, Debug)]
struct Attempt {
	payment_id: PaymentId,
	number: u32,
	invoice: TrampolineInvoice,
	route: Vec<TrampolineRouteHop>,
	budget: TrampolineBudget,
}

/// What became of a failed attempt.
#[derive(Debug)]
pub enum AfterFailure {
	/// Not an attempt of an escalating trampoline payment.
	NotOurs,
	/// The invoice request of an offer paid through trampolines, abandoned
	/// on purpose once its invoice arrived: nothing failed.
	Superseded,
	/// Sent again: the payment goes on under a new attempt id.
	Retried {
		/// The payment's id (its first attempt's).
		payment_id: PaymentId,
		/// The new attempt.
		route: Vec<TrampolineRouteHop>,
	},
	/// The payment failed for good.
	Failed {
		/// The payment's id (its first attempt's).
		payment_id: PaymentId,
		/// Why it is not retried.
		why: NoRetry,
	},
}

/// What to do with the invoice of an offer whose invoice LDK does not pay.
#[derive(Clone, Debug)]
enum InvoiceUse {
	/// Pay it through these trampolines within this budget.
	PayThrough(Vec<TrampolineRouteHop>, TrampolineBudget),
	/// Hand it back to the caller.
	HandBack,
}

/// What became of a BOLT 12 invoice LDK received.
#[derive(Debug)]
pub enum ReceivedInvoice {
	/// Not one of ours: LDK's usual payment applies.
	NotOurs,
	/// Being paid through trampolines.
	Paying,
	/// Requested only to be handed back to the caller.
	HandBack,
	/// It could not be paid through trampolines.
	Failed(super::SenderError),
}

/// Trampoline payments in flight that may be sent again (in memory: after a
/// restart an attempt in flight completes or fails under its own id).
#[derive(Default)]
pub struct TrampolineRetries {
	attempts: Mutex<HashMap<PaymentId, Attempt>>,
	/// Offers whose invoice is awaited, by invoice request id.
	offers: Mutex<HashMap<PaymentId, InvoiceUse>>,
	/// Invoice requests abandoned once their invoice arrived.
	superseded: Mutex<HashSet<PaymentId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
	m.lock().unwrap_or_else(|p| p.into_inner())
}

fn attempt_id(payment_id: &PaymentId, number: u32) -> PaymentId {
	if number == 0 {
		return *payment_id;
	}
	let mut engine = sha256::Hash::engine();
	engine.input(&payment_id.0);
	engine.input(&number.to_be_bytes());
	PaymentId(sha256::Hash::from_engine(engine).to_byte_array())
}

impl TrampolineRetries {
	fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PaymentId, Attempt>> {
		lock(&self.attempts)
	}

	/// Remembers the first attempt `payment_id` of paying `invoice` through
	/// `route` within `budget`.
	pub fn track(
		&self, payment_id: PaymentId, invoice: TrampolineInvoice, route: &[TrampolineRouteHop],
		budget: TrampolineBudget,
	) {
		let attempt = Attempt { payment_id, number: 0, invoice, route: route.to_vec(), budget };
		self.lock().insert(payment_id, attempt);
	}

	/// Remembers that the invoice LDK fetches for `request` (an offer's
	/// invoice request) is to be paid through `route` within `budget`.
	pub fn await_invoice(
		&self, request: PaymentId, route: &[TrampolineRouteHop], budget: TrampolineBudget,
	) {
		lock(&self.offers).insert(request, InvoiceUse::PayThrough(route.to_vec(), budget));
	}

	/// Remembers that the invoice LDK fetches for `request` is only to be
	/// handed to the caller, not paid.
	pub fn await_invoice_only(&self, request: PaymentId) {
		lock(&self.offers).insert(request, InvoiceUse::HandBack);
	}

	/// Acts on the invoice received for `request`: pays it through its
	/// trampolines (as attempt 1 of `request`) or hands it back. Either way
	/// the request itself must be abandoned: its `PaymentFailed` is then
	/// [`AfterFailure::Superseded`].
	pub fn on_invoice<C: AChannelManager + ?Sized>(
		&self, cm: &C, state: &SenderState, request: PaymentId, invoice: &Bolt12Invoice,
	) -> ReceivedInvoice {
		let Some(usage) = lock(&self.offers).remove(&request) else {
			return ReceivedInvoice::NotOurs;
		};
		lock(&self.superseded).insert(request);
		let (route, budget) = match usage {
			InvoiceUse::HandBack => return ReceivedInvoice::HandBack,
			InvoiceUse::PayThrough(route, budget) => (route, budget),
		};
		let invoice = TrampolineInvoice::from(invoice.clone());
		let id = attempt_id(&request, 1);
		let attempt = Attempt {
			payment_id: request,
			number: 1,
			invoice: invoice.clone(),
			route: route.clone(),
			budget,
		};
		self.lock().insert(id, attempt);
		match pay_via_trampolines(cm, &invoice, &route, Some(state), id) {
			Ok(_) => ReceivedInvoice::Paying,
			Err(e) => {
				self.lock().remove(&id);
				ReceivedInvoice::Failed(e)
			},
		}
	}

	/// Forgets a payment that could not be started.
	pub fn forget(&self, payment_id: &PaymentId) {
		self.lock().remove(payment_id);
		lock(&self.offers).remove(payment_id);
	}

	/// The payment an attempt that succeeded belongs to (`attempt` itself if
	/// it is not one of ours).
	pub fn on_sent(&self, attempt: &PaymentId) -> PaymentId {
		self.lock().remove(attempt).map(|a| a.payment_id).unwrap_or(*attempt)
	}

	/// Decides on a failed attempt: sends the next one if the trampoline's
	/// answer (read from `state`) allows it within the budget.
	pub fn on_failed<C: AChannelManager + ?Sized>(
		&self, cm: &C, state: &SenderState, attempt: &PaymentId,
	) -> AfterFailure {
		if lock(&self.superseded).remove(attempt) {
			return AfterFailure::Superseded;
		}
		if lock(&self.offers).remove(attempt).is_some() {
			// No invoice came for the offer.
			return AfterFailure::NotOurs;
		}
		let Some(failed) = self.lock().remove(attempt) else { return AfterFailure::NotOurs };
		let payment_id = failed.payment_id;
		let route = if failed.number + 1 >= MAX_ATTEMPTS {
			Err(NoRetry::Exhausted)
		} else if let (Some(failure), Some(amount)) =
			(state.failure_of(attempt), failed.invoice.amount_msat())
		{
			next_route(&failed.route, amount, &failure, &failed.budget)
		} else {
			Err(NoRetry::Final)
		};
		let route = match route {
			Ok(route) => route,
			Err(why) => return AfterFailure::Failed { payment_id, why },
		};
		let number = failed.number + 1;
		let next_id = attempt_id(&payment_id, number);
		let next = Attempt { number, route: route.clone(), ..failed };
		self.lock().insert(next_id, next.clone());
		match pay_via_trampolines(cm, &next.invoice, &route, Some(state), next_id) {
			Ok(_) => AfterFailure::Retried { payment_id, route },
			Err(_) => {
				self.lock().remove(&next_id);
				AfterFailure::Failed { payment_id, why: NoRetry::Final }
			},
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};

	fn hop(fee_msat: u64, cltv_expiry_delta: u16) -> TrampolineRouteHop {
		let key = SecretKey::from_slice(&[7; 32]).unwrap();
		let node_id = PublicKey::from_secret_key(&Secp256k1::new(), &key);
		TrampolineRouteHop { node_id, fee_msat, cltv_expiry_delta, async_payment: false }
	}

	fn insufficient(hop: usize, base: u32, ppm: u32, cltv: u16) -> TrampolineFailure {
		TrampolineFailure {
			hop: FailingHop::Trampoline(hop),
			message: FailureMessage::TrampolineFeeOrExpiryInsufficient {
				fee_base_msat: base,
				fee_proportional_millionths: ppm,
				cltv_expiry_delta: cltv,
			},
		}
	}

	const BUDGET: TrampolineBudget =
		TrampolineBudget { max_fee_msat: 50_000, max_cltv_expiry_delta: 1000 };

	#[test]
	fn the_failing_trampoline_is_offered_its_policy_on_what_it_forwards() {
		let route = [hop(1_000, 100), hop(2_000, 100)];
		// Trampoline 0 forwards 10,000,000 + 2,000 msat: 1000 + 1 per mille.
		let next = next_route(&route, 10_000_000, &insufficient(0, 1_000, 1_000, 144), &BUDGET);
		assert_eq!(next, Ok(vec![hop(11_002, 144), hop(2_000, 100)]));
		// The last one forwards the amount only; its CLTV ask is lower than
		// offered and stays as it was.
		let next = next_route(&route, 10_000_000, &insufficient(1, 3_000, 0, 40), &BUDGET);
		assert_eq!(next, Ok(vec![hop(1_000, 100), hop(3_000, 100)]));
	}

	#[test]
	fn escalation_stops_at_the_budget_and_doubles_the_surplus_when_the_policy_was_met() {
		let route = [hop(1_000, 100)];
		assert_eq!(
			next_route(&route, 10_000_000, &insufficient(0, 60_000, 0, 100), &BUDGET),
			Err(NoRetry::OverBudget {
				hop: 0,
				fee_msat: 60_000,
				cltv_expiry_delta: 100,
				budget_fee_msat: 50_000,
				budget_cltv_expiry_delta: 1000
			})
		);
		// Offered its policy (1000 msat, 100 blocks) and still short: the
		// surplus beyond the policy doubles, at least by one policy's worth.
		assert_eq!(
			next_route(&route, 10_000_000, &insufficient(0, 1_000, 0, 100), &BUDGET),
			Ok(vec![hop(2_000, 200)])
		);
		assert_eq!(
			next_route(&[hop(3_000, 150)], 10_000_000, &insufficient(0, 1_000, 0, 100), &BUDGET),
			Ok(vec![hop(5_000, 250)])
		);
		assert_eq!(
			next_route(&[hop(30_000, 600)], 1, &insufficient(0, 1_000, 0, 100), &BUDGET),
			Err(NoRetry::OverBudget {
				hop: 0,
				fee_msat: 59_000,
				cltv_expiry_delta: 1_100,
				budget_fee_msat: 50_000,
				budget_cltv_expiry_delta: 1000
			})
		);
		assert_eq!(
			next_route(&route, 1, &insufficient(0, 0, 0, 1_001), &BUDGET),
			Err(NoRetry::OverBudget {
				hop: 0,
				fee_msat: 1_000,
				cltv_expiry_delta: 1_001,
				budget_fee_msat: 50_000,
				budget_cltv_expiry_delta: 1000
			})
		);
	}

	#[test]
	fn only_trampoline_fee_failures_are_retried() {
		let route = [hop(1_000, 100)];
		let temporary = TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::TemporaryTrampolineFailure,
		};
		assert_eq!(next_route(&route, 1, &temporary, &BUDGET), Err(NoRetry::Final));
		let unknown = TrampolineFailure {
			hop: FailingHop::Trampoline(0),
			message: FailureMessage::UnknownNextTrampoline,
		};
		assert_eq!(next_route(&route, 1, &unknown, &BUDGET), Err(NoRetry::Final));
		let outer = TrampolineFailure { hop: FailingHop::Outer(0), ..insufficient(0, 9, 9, 9) };
		assert_eq!(next_route(&route, 1, &outer, &BUDGET), Err(NoRetry::Final));
		// A hop index beyond the route (a confused answer) is final.
		assert_eq!(next_route(&route, 1, &insufficient(3, 9, 9, 9), &BUDGET), Err(NoRetry::Final));
	}

	fn legacy(hop: usize, message: FailureMessage) -> TrampolineFailure {
		TrampolineFailure { hop: FailingHop::Trampoline(hop), message }
	}

	#[test]
	fn every_code_of_both_sets_has_its_escalation() {
		use Escalation::*;
		let cases = [
			(insufficient(0, 1, 1, 1).message, Policy),
			(FailureMessage::TrampolineFeeInsufficient, RaiseFee),
			(FailureMessage::TemporaryChannelFailure { channel_update: Vec::new() }, RaiseFee),
			(FailureMessage::TrampolineExpiryTooSoon, RaiseCltv),
			(FailureMessage::UnknownNextPeer, OtherRoute),
			(FailureMessage::TemporaryNodeFailure, OtherRoute),
			(FailureMessage::TemporaryTrampolineFailure, Final),
			(FailureMessage::UnknownNextTrampoline, Final),
			(FailureMessage::MppTimeout, Final),
			(FailureMessage::IncorrectOrUnknownPaymentDetails { htlc_msat: 1, height: 1 }, Final),
			(FailureMessage::PermanentChannelFailure, Final),
		];
		for (message, expected) in cases {
			assert_eq!(escalation(&message), expected, "{message:?}");
		}
	}

	#[test]
	fn a_legacy_fee_failure_raises_every_trampoline_one_electrum_level() {
		// Level 1 of Electrum's table on 10,000,000 msat: 1000 + 1000.
		let route = [hop(2_000, 576)];
		let next = next_route(
			&route,
			10_000_000,
			&legacy(0, FailureMessage::TrampolineFeeInsufficient),
			&BUDGET,
		);
		// Level 2: 3000 + 1000 (level 1's 2000 is not more than offered).
		assert_eq!(next, Ok(vec![hop(4_000, 576)]));
		// Two trampolines: each on what it forwards, the last first.
		let route = [hop(0, 100), hop(0, 100)];
		let next = next_route(
			&route,
			10_000_000,
			&legacy(0, FailureMessage::TrampolineFeeInsufficient),
			&BUDGET,
		)
		.unwrap();
		assert_eq!(next[1].fee_msat, 2_000);
		assert_eq!(next[0].fee_msat, 1_000 + (10_002_000 * 100) / 1_000_000);
		// temporary_channel_failure escalates the same way.
		let tcf = FailureMessage::TemporaryChannelFailure { channel_update: Vec::new() };
		assert_eq!(
			next_route(&[hop(2_000, 576)], 10_000_000, &legacy(0, tcf), &BUDGET),
			Ok(vec![hop(4_000, 576)])
		);
		// Past the table, the fee doubles; the budget still bounds it.
		assert_eq!(
			next_route(
				&[hop(200_000, 576)],
				1,
				&legacy(0, FailureMessage::TrampolineFeeInsufficient),
				&TrampolineBudget { max_fee_msat: 1_000_000, max_cltv_expiry_delta: 1000 }
			),
			Ok(vec![hop(400_000, 576)])
		);
		assert!(matches!(
			next_route(
				&[hop(40_000, 576)],
				1,
				&legacy(0, FailureMessage::TrampolineFeeInsufficient),
				&BUDGET
			),
			Err(NoRetry::OverBudget { hop: 0, .. })
		));
	}

	#[test]
	fn a_legacy_expiry_failure_raises_the_cltv_delta() {
		let budget = TrampolineBudget { max_fee_msat: 50_000, max_cltv_expiry_delta: 2_000 };
		let expiry = || legacy(0, FailureMessage::TrampolineExpiryTooSoon);
		assert_eq!(
			next_route(&[hop(1_000, 288), hop(1_000, 144)], 1, &expiry(), &budget),
			Ok(vec![hop(1_000, 576), hop(1_000, 576)])
		);
		assert_eq!(
			next_route(&[hop(1_000, 576)], 1, &expiry(), &budget),
			Ok(vec![hop(1_000, 1_152)])
		);
		assert!(matches!(
			next_route(&[hop(1_000, 1_152)], 1, &expiry(), &budget),
			Err(NoRetry::OverBudget { .. })
		));
	}

	#[test]
	fn a_legacy_route_failure_asks_for_another_route() {
		let route = [hop(1_000, 576)];
		for message in [FailureMessage::UnknownNextPeer, FailureMessage::TemporaryNodeFailure] {
			assert_eq!(
				next_route(&route, 1, &legacy(0, message), &BUDGET),
				Err(NoRetry::RouteFailed { hop: 0 })
			);
		}
		// From a plain node on the way (outer layer): final.
		let outer = TrampolineFailure {
			hop: FailingHop::Outer(0),
			message: FailureMessage::TrampolineFeeInsufficient,
		};
		assert_eq!(next_route(&route, 1, &outer, &BUDGET), Err(NoRetry::Final));
	}

	#[test]
	fn attempts_after_the_first_get_distinct_ids() {
		let id = PaymentId([1; 32]);
		assert_eq!(attempt_id(&id, 0), id);
		assert_ne!(attempt_id(&id, 1), id);
		assert_ne!(attempt_id(&id, 1), attempt_id(&id, 2));
	}
}
