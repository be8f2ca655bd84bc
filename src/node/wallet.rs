//! The node's on-chain wallet: BDK, fed with bitcoind's blocks through the same
//! `lightning-block-sync` pipeline as the channel manager, persisted to a file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bdk_wallet::error::CreateTxError;
use bdk_wallet::file_store::Store as BdkStore;
use bdk_wallet::{ChangeSet, KeychainKind, PersistedWallet, SignOptions, Wallet};
use bitcoin::bip32::Xpriv;
use bitcoin::{Address, Amount, FeeRate, Network, ScriptBuf, Transaction};
use lightning::chain::{BestBlock, Listen};
use lightning::sign::ChangeDestinationSourceSync;
use lightning::util::logger::Logger;
use lightning::{log_error, log_info};

use super::chain::BitcoindClient;
use super::logger::NodeLogger;

/// The magic bytes at the start of the wallet database.
pub(super) const STORE_MAGIC: &[u8] = b"ldk-trampoline-wallet";

/// Errors of the on-chain wallet.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
	/// The wallet file could not be opened, created or read.
	#[error("cannot open the on-chain wallet file {path}: {reason}")]
	Open {
		/// The wallet file.
		path: String,
		/// What went wrong.
		reason: String,
	},
	/// The wallet file was written for another network or seed.
	#[error("the on-chain wallet file {path} belongs to another network or seed: {reason}")]
	Mismatch {
		/// The wallet file.
		path: String,
		/// What did not match.
		reason: String,
	},
	/// Writing the wallet's changes failed.
	#[error("cannot persist the on-chain wallet: {0}")]
	Persist(String),
	/// Not enough confirmed funds, or another coin selection failure.
	#[error("cannot build the transaction: {0}")]
	Build(String),
	/// The wallet could not sign every input.
	#[error("cannot sign the transaction: {0}")]
	Sign(String),
	/// The spendable coins do not cover the amount and the fee.
	#[error("not enough on-chain funds: have {have_sat} sat, need {need_sat} sat (the amount plus the fee)")]
	NotEnoughFunds {
		/// What the wallet can spend now (confirmed and its own unconfirmed change).
		have_sat: u64,
		/// What the transaction needs: the amount plus the fee at the rate asked.
		need_sat: u64,
	},
	/// Sending everything was asked of an empty wallet, or what is left after the
	/// fee would be dust.
	#[error("nothing to send: the wallet can spend {have_sat} sat, too little to pay the fee and leave an output above the dust limit")]
	NothingToSend {
		/// What the wallet can spend now.
		have_sat: u64,
	},
	/// bitcoind refused the transaction; the wallet's coins are unspent.
	#[error("bitcoind refused the transaction: {0}")]
	Broadcast(String),
}

/// How much an on-chain send pays its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendAmount {
	/// This amount; the fee and any change come from the wallet's other coins.
	Exactly(Amount),
	/// Everything the wallet can spend, less the fee (no change output). The
	/// node's channels have no anchors (static remote key), so no reserve is
	/// kept for fee bumping.
	All,
}

/// What an on-chain send did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OnchainSend {
	/// The transaction's id, as bitcoind and explorers show it.
	pub txid: String,
	/// What the recipient's output holds.
	pub amount_sat: u64,
	/// The fee paid.
	pub fee_sat: u64,
	/// The transaction's virtual size, for the fee rate paid.
	pub vsize: u64,
}

/// Confirmed and unconfirmed on-chain balances, in satoshis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OnchainBalance {
	/// Confirmed, spendable.
	pub confirmed_sat: u64,
	/// Unconfirmed: our own change and incoming transactions.
	pub unconfirmed_sat: u64,
	/// Coinbase outputs not yet 100 blocks deep.
	pub immature_sat: u64,
}

/// A BDK wallet whose keys derive from the node's seed.
pub struct OnchainWallet {
	inner: Mutex<(PersistedWallet<BdkStore<ChangeSet>>, BdkStore<ChangeSet>)>,
	broadcaster: Arc<BitcoindClient>,
	logger: Arc<NodeLogger>,
}

impl OnchainWallet {
	/// Opens the wallet stored at `path`, or creates it, with BIP 84 descriptors
	/// derived from `seed`.
	pub fn open(
		path: &Path, seed: &[u8; 32], network: Network, broadcaster: Arc<BitcoindClient>,
		logger: Arc<NodeLogger>,
	) -> Result<Self, WalletError> {
		let path_str = path.display().to_string();
		let open_err = |reason: String| WalletError::Open { path: path_str.clone(), reason };
		let xprv = Xpriv::new_master(network, seed).map_err(|e| open_err(e.to_string()))?;
		let coin = if network == Network::Bitcoin { 0 } else { 1 };
		let external = format!("wpkh({xprv}/84'/{coin}'/0'/0/*)");
		let internal = format!("wpkh({xprv}/84'/{coin}'/0'/1/*)");
		let (mut store, changeset) = BdkStore::<ChangeSet>::load_or_create(STORE_MAGIC, path)
			.map_err(|e| open_err(e.to_string()))?;
		let wallet = if changeset.is_some() {
			Wallet::load()
				.descriptor(KeychainKind::External, Some(external.clone()))
				.descriptor(KeychainKind::Internal, Some(internal.clone()))
				.extract_keys()
				.check_network(network)
				.load_wallet(&mut store)
				.map_err(|e| WalletError::Mismatch {
					path: path_str.clone(),
					reason: e.to_string(),
				})?
				.ok_or_else(|| open_err("the wallet file is empty".into()))?
		} else {
			Wallet::create(external, internal)
				.network(network)
				.create_wallet(&mut store)
				.map_err(|e| open_err(e.to_string()))?
		};
		Ok(Self { inner: Mutex::new((wallet, store)), broadcaster, logger })
	}

	/// A fresh receive address.
	pub fn new_address(&self) -> Result<Address, WalletError> {
		let mut guard = self.lock();
		let (wallet, store) = &mut *guard;
		let address = wallet.reveal_next_address(KeychainKind::External).address;
		wallet.persist(store).map_err(|e| WalletError::Persist(e.to_string()))?;
		Ok(address)
	}

	/// The wallet's balances.
	pub fn balance(&self) -> OnchainBalance {
		let guard = self.lock();
		let balance = guard.0.balance();
		OnchainBalance {
			confirmed_sat: balance.confirmed.to_sat(),
			unconfirmed_sat: (balance.trusted_pending + balance.untrusted_pending).to_sat(),
			immature_sat: balance.immature.to_sat(),
		}
	}

	/// The block the wallet has synced to.
	pub fn current_best_block(&self) -> BestBlock {
		let checkpoint = self.lock().0.latest_checkpoint();
		BestBlock { block_hash: checkpoint.hash(), height: checkpoint.height() }
	}

	/// Builds and signs a transaction paying `amount` to `script`, and records it
	/// as unconfirmed so its inputs are not selected again before it confirms.
	pub fn create_signed_transaction(
		&self, script: ScriptBuf, amount: Amount, fee_rate: FeeRate,
	) -> Result<Transaction, WalletError> {
		let mut guard = self.lock();
		let (wallet, store) = &mut *guard;
		let mut builder = wallet.build_tx();
		builder.add_recipient(script, amount).fee_rate(fee_rate);
		let mut psbt = builder.finish().map_err(|e| WalletError::Build(e.to_string()))?;
		sign(wallet, &mut psbt)?;
		let tx = psbt.extract_tx().map_err(|e| WalletError::Sign(e.to_string()))?;
		let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
		wallet.apply_unconfirmed_txs([(tx.clone(), now)]);
		wallet.persist(store).map_err(|e| WalletError::Persist(e.to_string()))?;
		Ok(tx)
	}

	/// Pays `amount` to `address` at `fee_rate`, has bitcoind accept the
	/// transaction, and only then records it as unconfirmed (the balance shows
	/// the spend at once; a refused transaction leaves the coins unspent).
	pub fn send_to_address(
		&self, address: &Address, amount: SendAmount, fee_rate: FeeRate,
	) -> Result<OnchainSend, WalletError> {
		let mut guard = self.lock();
		let (wallet, store) = &mut *guard;
		let script = address.script_pubkey();
		let have_sat = wallet.balance().trusted_spendable().to_sat();
		let mut builder = wallet.build_tx();
		match amount {
			SendAmount::Exactly(amount) => {
				builder.add_recipient(script.clone(), amount);
			},
			SendAmount::All => {
				builder.drain_wallet().drain_to(script.clone());
			},
		}
		builder.fee_rate(fee_rate);
		let mut psbt = builder.finish().map_err(|e| match e {
			CreateTxError::CoinSelection(_)
			| CreateTxError::NoUtxosSelected
			| CreateTxError::OutputBelowDustLimit(_)
				if amount == SendAmount::All =>
			{
				WalletError::NothingToSend { have_sat }
			},
			CreateTxError::CoinSelection(e) => WalletError::NotEnoughFunds {
				have_sat: e.available.to_sat(),
				need_sat: e.needed.to_sat(),
			},
			e => WalletError::Build(e.to_string()),
		})?;
		sign(wallet, &mut psbt)?;
		let fee = psbt.fee().map_err(|e| WalletError::Build(e.to_string()))?;
		let tx = psbt.extract_tx().map_err(|e| WalletError::Sign(e.to_string()))?;
		let sent: u64 = tx
			.output
			.iter()
			.filter(|o| o.script_pubkey == script)
			.map(|o| o.value.to_sat())
			.fold(0, u64::saturating_add);
		let txid = self.broadcaster.send_raw_transaction(&tx).map_err(WalletError::Broadcast)?;
		let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
		let vsize = u64::try_from(tx.vsize()).unwrap_or(u64::MAX);
		wallet.apply_unconfirmed_txs([(tx, now)]);
		wallet.persist(store).map_err(|e| WalletError::Persist(e.to_string()))?;
		log_info!(self.logger, "Sent {sent} sat to {address} in {txid} (fee {fee})");
		Ok(OnchainSend { txid: txid.to_string(), amount_sat: sent, fee_sat: fee.to_sat(), vsize })
	}

	fn lock(
		&self,
	) -> std::sync::MutexGuard<'_, (PersistedWallet<BdkStore<ChangeSet>>, BdkStore<ChangeSet>)> {
		// A panic while the lock was held leaves BDK's state as it was before the
		// failed call, which is safe to keep using.
		self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
	}
}

/// Signs and finalizes every input of `psbt`.
fn sign(wallet: &Wallet, psbt: &mut bdk_wallet::bitcoin::Psbt) -> Result<(), WalletError> {
	let finalized =
		wallet.sign(psbt, SignOptions::default()).map_err(|e| WalletError::Sign(e.to_string()))?;
	if !finalized {
		return Err(WalletError::Sign("not every input could be finalized".into()));
	}
	Ok(())
}

impl Listen for OnchainWallet {
	fn filtered_block_connected(
		&self, _header: &bitcoin::block::Header,
		_txdata: &lightning::chain::transaction::TransactionData, _height: u32,
	) {
		// Blocks always arrive whole from bitcoind (see `block_connected`).
	}

	fn block_connected(&self, block: &bitcoin::Block, height: u32) {
		let mut guard = self.lock();
		let (wallet, store) = &mut *guard;
		if let Err(e) = wallet.apply_block(block, height) {
			log_error!(self.logger, "On-chain wallet cannot apply block {height}: {e}");
			return;
		}
		if let Err(e) = wallet.persist(store) {
			log_error!(self.logger, "Cannot persist the on-chain wallet: {e}");
		}
	}

	fn blocks_disconnected(&self, _fork_point: BestBlock) {
		// BDK re-anchors on the next connected block from the point of disagreement.
	}
}

impl ChangeDestinationSourceSync for OnchainWallet {
	fn get_change_destination_script(&self) -> Result<ScriptBuf, ()> {
		let mut guard = self.lock();
		let (wallet, store) = &mut *guard;
		let script = wallet.reveal_next_address(KeychainKind::Internal).address.script_pubkey();
		wallet
			.persist(store)
			.map_err(|e| log_error!(self.logger, "Cannot persist the wallet: {e}"))?;
		Ok(script)
	}
}
