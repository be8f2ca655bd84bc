//! Decoding what operators paste: BOLT 11 invoices, BOLT 12 offers and
//! BOLT 12 invoices, into their fields.

use std::str::FromStr;

use bitcoin::bech32::primitives::decode::CheckedHrpstring;
use bitcoin::bech32::NoChecksum;
use hex::DisplayHex;
use lightning::offers::invoice::Bolt12Invoice;
use lightning::offers::offer::{Amount as OfferAmount, Offer};
use lightning::offers::parse::{Bolt12ParseError, Bolt12SemanticError};
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescriptionRef};
use serde::{Deserialize, Serialize};

use crate::sender::{feature_bits, TrampolineDialects};

/// Why a string did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
	/// Nothing was given.
	#[error("nothing to decode: give a BOLT 11 invoice (lnbc…, lntb…, lnbcrt…), a BOLT 12 offer (lno…) or a BOLT 12 invoice (lni…)")]
	Empty,
	/// It starts like a BOLT 12 offer but does not parse.
	#[error("invalid BOLT 12 offer: {0}")]
	Offer(String),
	/// It starts like a BOLT 12 invoice but does not parse.
	#[error("invalid BOLT 12 invoice: {0}")]
	Bolt12Invoice(String),
	/// It is not a BOLT 11 invoice, and does not start like a BOLT 12 string.
	#[error("not a BOLT 11 invoice ({0}), nor a BOLT 12 offer (lno…) or invoice (lni…)")]
	Unknown(String),
}

/// A decoded invoice or offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Decoded {
	/// A BOLT 11 invoice.
	Bolt11Invoice(DecodedBolt11),
	/// A BOLT 12 offer.
	Bolt12Offer(DecodedOffer),
	/// A BOLT 12 invoice.
	Bolt12Invoice(DecodedBolt12Invoice),
}

/// The fields of a BOLT 11 invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodedBolt11 {
	/// The chain it is for: bitcoin, testnet, signet or regtest.
	pub network: String,
	/// The amount; `None` lets the payer choose.
	pub amount_msat: Option<u64>,
	/// The payee's node id (hex).
	pub payee: String,
	/// The payment hash (hex).
	pub payment_hash: String,
	/// When it was made, seconds since the Unix epoch.
	pub created_at: u64,
	/// How long after `created_at` it is valid, seconds.
	pub expiry_secs: u64,
	/// Whether it has expired.
	pub expired: bool,
	/// Its description, when it carries one in full.
	pub description: Option<String>,
	/// The SHA-256 of its description (hex), when it carries only that.
	pub description_hash: Option<String>,
	/// The CLTV delta the payee needs for the last hop.
	pub min_final_cltv_expiry_delta: u64,
	/// How many route hints (private channels to the payee) it has.
	pub route_hints: usize,
	/// Its feature bits, lowest first.
	pub features: Vec<usize>,
	/// The trampoline dialects among them.
	pub trampoline: TrampolineDialects,
}

/// The fields of a BOLT 12 offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodedOffer {
	/// The offer id (hex).
	pub offer_id: String,
	/// The amount in msat, when it is in bitcoin; `None` lets the payer choose
	/// (or see `amount_currency`).
	pub amount_msat: Option<u64>,
	/// The amount when in a currency: `"<amount> <ISO 4217 code>"`, the amount
	/// in the currency's smallest unit.
	pub amount_currency: Option<String>,
	/// Its description.
	pub description: Option<String>,
	/// Who issued it.
	pub issuer: Option<String>,
	/// How many blinded paths lead to the issuer (none: it is reached at
	/// `issuer_signing_pubkey`).
	pub paths: usize,
	/// The key its invoices are signed with (hex), when it names one.
	pub issuer_signing_pubkey: Option<String>,
	/// When it expires, seconds since the Unix epoch.
	pub absolute_expiry: Option<u64>,
	/// Whether it has expired.
	pub expired: bool,
}

/// The fields of a BOLT 12 invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodedBolt12Invoice {
	/// The amount.
	pub amount_msat: u64,
	/// The payment hash (hex).
	pub payment_hash: String,
	/// The key it is signed with (hex).
	pub signing_pubkey: String,
	/// When it was made, seconds since the Unix epoch.
	pub created_at: u64,
	/// How long after `created_at` it is valid, seconds.
	pub expiry_secs: u64,
	/// Whether it has expired.
	pub expired: bool,
	/// The description of the offer or refund it answers.
	pub description: Option<String>,
	/// Who issued the offer it answers.
	pub issuer: Option<String>,
	/// How many blinded payment paths lead to the payee.
	pub payment_paths: usize,
}

/// Decodes a BOLT 11 invoice, a BOLT 12 offer (`lno…`) or a BOLT 12 invoice
/// (`lni…`); a `lightning:` prefix is accepted.
pub fn decode(text: &str) -> Result<Decoded, DecodeError> {
	let text = text.trim();
	let text = match text.get(..10) {
		Some(prefix) if prefix.eq_ignore_ascii_case("lightning:") => text.get(10..).unwrap_or(""),
		_ => text,
	};
	if text.is_empty() {
		return Err(DecodeError::Empty);
	}
	let hrp = text.get(..3).map(str::to_ascii_lowercase);
	match hrp.as_deref() {
		Some("lno") => Offer::from_str(text)
			.map(|offer| Decoded::Bolt12Offer(decode_offer(&offer)))
			.map_err(|e| DecodeError::Offer(parse_error_words(&e))),
		Some("lni") => decode_bolt12_invoice(text).map(Decoded::Bolt12Invoice),
		_ => Bolt11Invoice::from_str(text)
			.map(|invoice| Decoded::Bolt11Invoice(decode_bolt11(&invoice)))
			.map_err(|e| DecodeError::Unknown(e.to_string())),
	}
}

fn decode_bolt11(invoice: &Bolt11Invoice) -> DecodedBolt11 {
	let (description, description_hash) = match invoice.description() {
		Bolt11InvoiceDescriptionRef::Direct(d) => (Some(d.to_string()), None),
		Bolt11InvoiceDescriptionRef::Hash(h) => (None, Some(h.0.to_string())),
	};
	let flags = invoice.features().map(|f| f.le_flags()).unwrap_or(&[]);
	DecodedBolt11 {
		network: invoice.network().to_string(),
		amount_msat: invoice.amount_milli_satoshis(),
		payee: invoice.get_payee_pub_key().to_string(),
		payment_hash: invoice.payment_hash().to_string(),
		created_at: invoice.duration_since_epoch().as_secs(),
		expiry_secs: invoice.expiry_time().as_secs(),
		expired: invoice.is_expired(),
		description,
		description_hash,
		min_final_cltv_expiry_delta: invoice.min_final_cltv_expiry_delta(),
		route_hints: invoice.route_hints().len(),
		features: feature_bits(flags),
		trampoline: TrampolineDialects::of_flags(flags),
	}
}

fn decode_offer(offer: &Offer) -> DecodedOffer {
	let (amount_msat, amount_currency) = match offer.amount() {
		Some(OfferAmount::Bitcoin { amount_msats }) => (Some(amount_msats), None),
		Some(OfferAmount::Currency { iso4217_code, amount }) => {
			(None, Some(format!("{amount} {iso4217_code}")))
		},
		None => (None, None),
	};
	DecodedOffer {
		offer_id: offer.id().0.to_lower_hex_string(),
		amount_msat,
		amount_currency,
		description: offer.description().map(|d| d.to_string()),
		issuer: offer.issuer().map(|i| i.to_string()),
		paths: offer.paths().len(),
		issuer_signing_pubkey: offer.issuer_signing_pubkey().map(|k| k.to_string()),
		absolute_expiry: offer.absolute_expiry().map(|t| t.as_secs()),
		expired: offer.is_expired(),
	}
}

/// BOLT 12 strings are bech32 without a checksum, possibly split by `+`
/// and whitespace.
fn decode_bolt12_invoice(text: &str) -> Result<DecodedBolt12Invoice, DecodeError> {
	let joined: String = text.chars().filter(|c| *c != '+' && !c.is_whitespace()).collect();
	let parsed = CheckedHrpstring::new::<NoChecksum>(&joined)
		.map_err(|e| DecodeError::Bolt12Invoice(format!("not bech32: {e}")))?;
	let bytes: Vec<u8> = parsed.byte_iter().collect();
	let invoice = Bolt12Invoice::try_from(bytes)
		.map_err(|e| DecodeError::Bolt12Invoice(parse_error_words(&e)))?;
	Ok(DecodedBolt12Invoice {
		amount_msat: invoice.amount_msats(),
		payment_hash: invoice.payment_hash().to_string(),
		signing_pubkey: invoice.signing_pubkey().to_string(),
		created_at: invoice.created_at().as_secs(),
		expiry_secs: invoice.relative_expiry().as_secs(),
		expired: invoice.is_expired(),
		description: invoice.description().map(|d| d.to_string()),
		issuer: invoice.issuer().map(|i| i.to_string()),
		payment_paths: invoice.payment_paths().len(),
	})
}

/// A BOLT 12 parse failure in words (LDK's errors print as Rust syntax).
fn parse_error_words(error: &Bolt12ParseError) -> String {
	use Bolt12SemanticError as S;
	match error {
		Bolt12ParseError::InvalidContinuation => {
			"a `+` continuation is empty or holds whitespace".into()
		},
		Bolt12ParseError::InvalidLeadingWhitespace => "whitespace before the first `+`".into(),
		Bolt12ParseError::InvalidBech32Hrp => "wrong prefix for its kind".into(),
		Bolt12ParseError::Bech32(e) => format!("not bech32: {e}"),
		Bolt12ParseError::Decode(_) => {
			"its TLV records do not decode (truncated or corrupt)".into()
		},
		Bolt12ParseError::InvalidSignature(e) => format!("bad signature: {e}"),
		Bolt12ParseError::InvalidSemantics(e) => match e {
			S::AlreadyExpired => "it has expired".into(),
			S::UnsupportedChain | S::UnexpectedChain => "it is for another chain".into(),
			S::MissingAmount | S::InvalidAmount | S::InsufficientAmount | S::UnexpectedAmount => {
				"its amount is missing or invalid".into()
			},
			S::InvalidCurrencyCode | S::UnsupportedCurrency => {
				"its currency is not supported".into()
			},
			S::UnknownRequiredFeatures | S::UnexpectedFeatures => {
				"it requires features this node does not know".into()
			},
			S::MissingDescription => "it has an amount but no description".into(),
			S::MissingIssuerSigningPubkey | S::MissingSigningPubkey | S::InvalidSigningPubkey => {
				"its signing key is missing or invalid".into()
			},
			S::MissingPaths => "it has no blinded paths and no node to reach".into(),
			S::InvalidPayInfo => "its payment paths' fee information is invalid".into(),
			S::MissingCreationTime => "it has no creation time".into(),
			S::MissingPaymentHash => "it has no payment hash".into(),
			S::MissingSignature => "it is not signed".into(),
			_ => "its fields are inconsistent (a field is missing or one is not allowed there)"
				.into(),
		},
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn what_is_not_an_invoice_or_offer_is_named() {
		assert!(matches!(decode("  "), Err(DecodeError::Empty)));
		assert!(matches!(decode("lightning:"), Err(DecodeError::Empty)));
		let err = decode("hello").expect_err("not an invoice").to_string();
		assert!(err.starts_with("not a BOLT 11 invoice"), "{err}");
		let err = decode("lno1qqqq").expect_err("a broken offer").to_string();
		assert!(err.starts_with("invalid BOLT 12 offer: "), "{err}");
		let err = decode("lni1qqqq").expect_err("a broken invoice").to_string();
		assert!(err.starts_with("invalid BOLT 12 invoice: "), "{err}");
		// In words, not LDK's Rust syntax.
		assert!(!err.contains('(') && !err.contains('{'), "{err}");
	}
}
