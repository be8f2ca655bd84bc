//! Closing channels: which transaction spent each channel's funding output
//! (learned from what the node broadcasts and from the blocks it sees), and
//! the closing-channel view built from the channel monitors and the output
//! sweeper once the channel manager has forgotten a channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Transaction, Txid};
use lightning::chain::channelmonitor::{Balance, ANTI_REORG_DELAY};
use lightning::ln::types::ChannelId;
use lightning::sign::SpendableOutputDescriptor;
use lightning::util::persist::KVStoreSync;
use lightning::util::sweep::{OutputSpendStatus, TrackedSpendableOutput};
use serde::{Deserialize, Serialize};

use super::types::Store;
use super::NodeError;

/// The store namespace of closing transaction ids (key: channel id in hex,
/// value: the 32 bytes of the txid).
const CLOSING_NAMESPACE: &str = "closing_txids";

/// At most this many funding outputs are watched (a node with more channels
/// learns the rest's closing transactions from their monitors' listing only
/// when they confirm in a block it sees: nothing is lost, it is only later).
const MAX_WATCHED: usize = 100_000;

/// Which transaction spent each channel's funding output, persisted under
/// [`CLOSING_NAMESPACE`] so a restart still names it. An entry goes when the
/// channel is fully resolved ([`ClosingTxids::forget`]).
pub(super) struct ClosingTxids {
	state: Mutex<State>,
	store: Arc<Store>,
}

#[derive(Default)]
struct State {
	/// The funding output of every channel with a monitor.
	funding: HashMap<OutPoint, ChannelId>,
	/// The transaction seen spending it.
	closing: HashMap<ChannelId, Txid>,
}

impl ClosingTxids {
	/// Reads the stored closing transaction ids.
	pub(super) fn load(store: Arc<Store>) -> Result<Self, NodeError> {
		let stored = |reason: String| NodeError::StoredState { what: "closing txids", reason };
		let mut closing = HashMap::new();
		for key in
			KVStoreSync::list(&*store, CLOSING_NAMESPACE, "").map_err(|e| stored(e.to_string()))?
		{
			let bytes = KVStoreSync::read(&*store, CLOSING_NAMESPACE, "", &key)
				.map_err(|e| stored(e.to_string()))?;
			let id = <[u8; 32] as hex::FromHex>::from_hex(&key)
				.map_err(|e| stored(format!("key {key}: {e}")))?;
			let txid = Txid::from_slice(&bytes).map_err(|e| stored(format!("{key}: {e}")))?;
			closing.insert(ChannelId(id), txid);
		}
		Ok(Self { state: Mutex::new(State { funding: HashMap::new(), closing }), store })
	}

	fn lock(&self) -> std::sync::MutexGuard<'_, State> {
		self.state.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// Watches a channel's funding output for the transaction that spends it.
	pub(super) fn watch_funding(&self, funding: OutPoint, channel_id: ChannelId) {
		let mut state = self.lock();
		if state.funding.len() < MAX_WATCHED || state.funding.contains_key(&funding) {
			state.funding.insert(funding, channel_id);
		}
	}

	/// Notes `tx` if it spends a watched funding output: a transaction we
	/// broadcast is kept unless one is already known, a `confirmed` one
	/// replaces what was known (the peer's commitment may win the race).
	pub(super) fn observe(&self, tx: &Transaction, confirmed: bool) {
		let mut state = self.lock();
		let Some(channel_id) =
			tx.input.iter().find_map(|input| state.funding.get(&input.previous_output).copied())
		else {
			return;
		};
		let txid = tx.compute_txid();
		let known = state.closing.get(&channel_id).copied();
		if known == Some(txid) || (known.is_some() && !confirmed) {
			return;
		}
		state.closing.insert(channel_id, txid);
		drop(state);
		// Best effort: a lost write only means the txid is learned again
		// from the block (or not named after a restart before it confirms).
		let _ = KVStoreSync::write(
			&*self.store,
			CLOSING_NAMESPACE,
			"",
			&channel_id.to_string(),
			txid.to_byte_array().to_vec(),
		);
	}

	/// The transaction known to spend the channel's funding output.
	pub(super) fn closing_txid(&self, channel_id: &ChannelId) -> Option<Txid> {
		self.lock().closing.get(channel_id).copied()
	}

	/// Drops what is kept of a channel whose funds are all resolved.
	pub(super) fn forget(&self, channel_id: &ChannelId) {
		let mut state = self.lock();
		state.funding.retain(|_, id| id != channel_id);
		if state.closing.remove(channel_id).is_some() {
			drop(state);
			let _ = KVStoreSync::remove(
				&*self.store,
				CLOSING_NAMESPACE,
				"",
				&channel_id.to_string(),
				false,
			);
		}
	}
}

/// Where a closing channel's funds are, the first that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosingState {
	/// The closing (or commitment) transaction has not confirmed yet.
	WaitingForClosingTx,
	/// HTLCs on the commitment transaction are not resolved on-chain yet
	/// (claims by preimage or timeout, or a revoked commitment's outputs).
	ResolvingHtlcs,
	/// Our outputs confirmed and become spendable at
	/// [`ClosingChannel::claimable_at_height`] (the CSV delay of a force
	/// close, or the reorganisation safety margin).
	AwaitingConfirmations,
	/// The output sweeper is moving our outputs into the on-chain wallet
	/// (its sweep transaction is not yet broadcast or not yet confirmed).
	Sweeping,
	/// The sweep confirmed: the funds are in the on-chain wallet; the entry
	/// goes once the sweep has 6 confirmations (LDK's `ANTI_REORG_DELAY`).
	Swept,
}

/// A channel the channel manager has closed whose funds are not all back in
/// the on-chain wallet, as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosingChannel {
	/// The channel id (hex).
	pub channel_id: String,
	/// The peer.
	pub counterparty: String,
	/// The funding transaction.
	pub funding_txid: String,
	/// The funding transaction's output that is the channel.
	pub funding_output_index: u16,
	/// The transaction spending the funding output (the cooperative closing
	/// transaction or a commitment transaction), once the node has broadcast
	/// it or seen it in a block.
	pub closing_txid: Option<String>,
	/// Where the funds are.
	pub state: ClosingState,
	/// What the channel monitor still counts as ours, in satoshis (LDK's
	/// `Balance::claimable_amount_satoshis` summed: our output, and HTLCs
	/// we can claim; before the on-chain fees of claiming them).
	pub claimable_sat: u64,
	/// HTLC amounts that are ours only if the peer does not claim them
	/// first (outbound HTLCs of our own payments awaiting their timeout,
	/// inbound HTLCs whose preimage we do not have), not in `claimable_sat`.
	pub maybe_claimable_sat: u64,
	/// The latest height at which an output awaiting confirmations becomes
	/// spendable and is handed to the sweeper.
	pub claimable_at_height: Option<u32>,
	/// Outputs the sweeper tracks whose sweep has not confirmed, in
	/// satoshis before the sweep's fee.
	pub sweeping_sat: u64,
	/// The sweeper's latest sweep transaction, once broadcast.
	pub sweep_txid: Option<String>,
}

/// What a set of claimable balances and sweeper outputs add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ClosingAmounts {
	/// LDK's `claimable_amount_satoshis`, summed.
	pub claimable_sat: u64,
	/// HTLCs that may become ours.
	pub maybe_sat: u64,
	/// Sweeper outputs whose sweep has not confirmed.
	pub sweeping_sat: u64,
}

/// The sum of `balances` (of one closing channel or many).
pub(super) fn claimable(balances: &[Balance]) -> ClosingAmounts {
	let mut amounts = ClosingAmounts::default();
	for balance in balances {
		amounts.claimable_sat =
			amounts.claimable_sat.saturating_add(balance.claimable_amount_satoshis());
		let maybe = match balance {
			Balance::MaybeTimeoutClaimableHTLC {
				amount_satoshis, outbound_payment: true, ..
			}
			| Balance::MaybePreimageClaimableHTLC { amount_satoshis, .. } => *amount_satoshis,
			_ => 0,
		};
		amounts.maybe_sat = amounts.maybe_sat.saturating_add(maybe);
	}
	amounts
}

/// The value of a spendable output.
fn output_value(descriptor: &SpendableOutputDescriptor) -> u64 {
	match descriptor {
		SpendableOutputDescriptor::StaticOutput { output, .. } => output.value.to_sat(),
		SpendableOutputDescriptor::DelayedPaymentOutput(d) => d.output.value.to_sat(),
		SpendableOutputDescriptor::StaticPaymentOutput(d) => d.output.value.to_sat(),
	}
}

/// Whether `output` still belongs in the closing view at `height`: its
/// sweep has not confirmed, or has fewer than `ANTI_REORG_DELAY`
/// confirmations (the sweeper keeps confirmed outputs for thousands of
/// blocks more, which the view leaves out).
pub(super) fn still_closing(output: &TrackedSpendableOutput, height: u32) -> bool {
	match output.status {
		OutputSpendStatus::PendingThresholdConfirmations { confirmation_height, .. } => {
			height.saturating_add(1) < confirmation_height.saturating_add(ANTI_REORG_DELAY)
		},
		_ => true,
	}
}

/// Whether the sweep of `output` has not confirmed yet.
pub(super) fn sweep_pending(output: &TrackedSpendableOutput) -> bool {
	!matches!(output.status, OutputSpendStatus::PendingThresholdConfirmations { .. })
}

/// The total of the outputs whose sweep has not confirmed.
pub(super) fn sweeping_sat<'a>(
	outputs: impl IntoIterator<Item = &'a TrackedSpendableOutput>,
) -> u64 {
	outputs
		.into_iter()
		.filter(|o| sweep_pending(o))
		.fold(0u64, |sum, o| sum.saturating_add(output_value(&o.descriptor)))
}

/// The closing view of one channel, `None` when nothing is left of it.
pub(super) fn closing_channel(
	channel_id: ChannelId, counterparty: String, funding: OutPoint, closing_txid: Option<Txid>,
	balances: &[Balance], outputs: &[&TrackedSpendableOutput],
) -> Option<ClosingChannel> {
	if balances.is_empty() && outputs.is_empty() {
		return None;
	}
	let amounts = claimable(balances);
	let claimable_at_height = balances
		.iter()
		.filter_map(|b| match b {
			Balance::ClaimableAwaitingConfirmations { confirmation_height, .. } => {
				Some(*confirmation_height)
			},
			_ => None,
		})
		.max();
	let sweep_txid = outputs.iter().find_map(|o| match &o.status {
		OutputSpendStatus::PendingFirstConfirmation { latest_spending_tx, .. }
		| OutputSpendStatus::PendingThresholdConfirmations { latest_spending_tx, .. } => {
			Some(latest_spending_tx.compute_txid().to_string())
		},
		OutputSpendStatus::PendingInitialBroadcast { .. } => None,
	});
	let any = |f: fn(&Balance) -> bool| balances.iter().any(f);
	let state = if any(|b| matches!(b, Balance::ClaimableOnChannelClose { .. })) {
		ClosingState::WaitingForClosingTx
	} else if any(|b| !matches!(b, Balance::ClaimableAwaitingConfirmations { .. })) {
		ClosingState::ResolvingHtlcs
	} else if !balances.is_empty() {
		ClosingState::AwaitingConfirmations
	} else if outputs.iter().any(|o| sweep_pending(o)) {
		ClosingState::Sweeping
	} else {
		ClosingState::Swept
	};
	Some(ClosingChannel {
		channel_id: channel_id.to_string(),
		counterparty,
		funding_txid: funding.txid.to_string(),
		funding_output_index: u16::try_from(funding.vout).unwrap_or(u16::MAX),
		closing_txid: closing_txid.map(|t| t.to_string()),
		state,
		claimable_sat: amounts.claimable_sat,
		maybe_claimable_sat: amounts.maybe_sat,
		claimable_at_height,
		sweeping_sat: sweeping_sat(outputs.iter().copied()),
		sweep_txid,
	})
}
