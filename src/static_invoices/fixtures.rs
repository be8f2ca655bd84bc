//! Synthetic static invoices for tests and benchmarks: signed, parseable and
//! of a chosen size, with fake blinded paths (after ldk-node 0.7.1's store
//! tests).

use std::time::Duration;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::blinded_path::payment::{BlindedPayInfo, BlindedPaymentPath};
use lightning::blinded_path::BlindedHop;
use lightning::ln::inbound_payment::ExpandedKey;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::OfferBuilder;
use lightning::offers::static_invoice::{StaticInvoice, StaticInvoiceBuilder};
use lightning::sign::EntropySource;
use lightning::types::features::BlindedHopFeatures;

struct FixedEntropy([u8; 32]);

impl EntropySource for FixedEntropy {
	fn get_secure_random_bytes(&self) -> [u8; 32] {
		self.0
	}
}

fn pubkey(byte: u8) -> PublicKey {
	let secret = SecretKey::from_slice(&[byte.max(1); 32]).expect("valid secret key");
	PublicKey::from_secret_key(&Secp256k1::signing_only(), &secret)
}

/// A fake two-hop blinded message path.
pub fn message_path() -> BlindedMessagePath {
	BlindedMessagePath::from_blinded_path(
		pubkey(40),
		pubkey(41),
		vec![
			BlindedHop { blinded_node_id: pubkey(42), encrypted_payload: vec![0; 43] },
			BlindedHop { blinded_node_id: pubkey(43), encrypted_payload: vec![0; 44] },
		],
	)
}

/// A static invoice created at `created_at` (since the Unix epoch) that
/// expires `relative_expiry` later, padded with `padding` bytes of blinded
/// payment path payload (about 600 bytes with no padding).
pub fn invoice(created_at: Duration, relative_expiry: Duration, padding: usize) -> StaticInvoice {
	invoice_of_offer(created_at, relative_expiry, padding, None)
}

/// [`invoice`] for an offer that expires at `offer_expiry` (since the Unix
/// epoch), if given.
pub fn invoice_of_offer(
	created_at: Duration, relative_expiry: Duration, padding: usize, offer_expiry: Option<Duration>,
) -> StaticInvoice {
	let secp = Secp256k1::new();
	let expanded_key = ExpandedKey::new([42; 32]);
	let nonce = Nonce::from_entropy_source(&FixedEntropy([42; 32]));
	let mut offer = OfferBuilder::deriving_signing_pubkey(pubkey(43), &expanded_key, nonce, &secp)
		.path(message_path());
	if let Some(expiry) = offer_expiry {
		offer = offer.absolute_expiry(expiry);
	}
	let offer = offer.build().expect("offer builds");
	let payment_path = BlindedPaymentPath::from_blinded_path_and_payinfo(
		pubkey(40),
		pubkey(41),
		vec![
			BlindedHop { blinded_node_id: pubkey(43), encrypted_payload: vec![0; 43 + padding] },
			BlindedHop { blinded_node_id: pubkey(44), encrypted_payload: vec![0; 44] },
		],
		BlindedPayInfo {
			fee_base_msat: 1,
			fee_proportional_millionths: 1_000,
			cltv_expiry_delta: 42,
			htlc_minimum_msat: 100,
			htlc_maximum_msat: 1_000_000_000_000,
			features: BlindedHopFeatures::empty(),
		},
	);
	StaticInvoiceBuilder::for_offer_using_derived_keys(
		&offer,
		vec![payment_path],
		vec![message_path()],
		created_at,
		&expanded_key,
		nonce,
		&secp,
	)
	.expect("builder")
	.relative_expiry(relative_expiry.as_secs().min(u64::from(u32::MAX)) as u32)
	.build_and_sign(&secp)
	.expect("invoice signs")
}
