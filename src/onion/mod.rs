//! BOLT 4 onions for trampoline routing: the 1300-byte payment onion and the
//! variable-size trampoline onion.
//!
//! * [`build`] / [`peel`]: Sphinx construction and processing, any
//!   `hop_payloads` size, ECDH through a callback (LDK's `NodeSigner::ecdh`).
//! * [`OuterPayload`] / [`TrampolinePayload`]: typed hop payloads, spec layout
//!   and legacy eclair layout, BOLT 1 TLV rules with errors that map to
//!   `invalid_onion_payload`.
//! * [`FailureMessage`] and the error packet functions: creation, wrapping,
//!   decryption at the origin, trampoline double wrapping.
//! * [`blinding`] and [`RecipientDataTlvs`]: route blinding, for trampoline hops
//!   inside blinded paths and for paying blinded paths.
//!
//! Shared secrets are [`SharedSecret`](bitcoin::secp256k1::ecdh::SharedSecret)s
//! (what `NodeSigner::ecdh` returns) everywhere.

pub mod blinding;
mod build;
mod error_packet;
mod failure;
mod fields;
mod keys;
mod packet;
mod payload;
mod peel;
mod recipient_data;
mod tlv;
mod trampoline_payload;

pub use build::{build, exact_hop_payloads_len, BuildError, BuiltOnion, SphinxHop};
pub use error_packet::{
	create_error_packet, create_error_packet_from_bytes, create_trampoline_error_packet,
	decrypt_error_packet, decrypt_trampoline_error_packet, failure_payload, peel_error_packet,
	wrap_error_packet, wrap_trampoline_error_packet, DecryptedFailure, FailingHop, FailureError,
	PeeledError, TrampolineFailure, MIN_FAILURE_PLUS_PAD_LEN,
};
pub use failure::{codes, FailureDecodeError, FailureMessage, BADONION, NODE, PERM, UPDATE};
pub use fields::{legacy_route_hints_to_ldk, LegacyRouteHintHop, PaymentBlindedPath, PaymentData};
pub use keys::{derive_key, route_keys, HopKeys, KeyType, RouteKeysError};
pub use packet::{
	OnionPacket, MAX_HOP_PAYLOADS_LEN, ONION_VERSION, PACKET_OVERHEAD,
	PAYMENT_ONION_HOP_PAYLOADS_LEN,
};
pub use payload::{types, OuterHop, OuterPayload, TlvLayout};
pub use peel::{peel, peel_with_secret_key, NextPacket, PeeledOnion, SphinxError};
pub use recipient_data::{NextBlindedHop, RecipientData, RecipientDataTlvs};
pub use tlv::{PayloadError, UnknownTlvs, MAX_VALUE_MSAT};
pub use trampoline_payload::{TrampolineHop, TrampolinePayload};
