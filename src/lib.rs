//! ldk-trampoline: trampoline relaying and sending, async-payment holds and a
//! static invoice server for nodes built on LDK.
//!
//! The crate also ships what it is tested and demonstrated with: a [`node`]
//! composed from LDK's real parts, a [`regtest`] harness that runs several such
//! nodes against a real bitcoind, the reference node's [`control`] interface,
//! the [`demo`] and the [`bench`].
//!
//! The plugin itself, wired into a node by [`plugin::Plugin::builder`]: [`handler`] (the `ChannelMessageHandler` wrapper),
//! [`relay`] (buckets, policy, forwarding, claims) and [`sender`] (paying
//! through a trampoline), on top of [`onion`]; [`static_invoices`] (the static
//! invoice server for often-offline recipients).

#![deny(missing_docs)]

pub mod bench;
pub mod config;
pub mod control;
pub mod demo;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod handler;
pub mod htlc_hold;
pub mod node;
pub mod onion;
pub mod plugin;
pub mod regtest;
pub mod relay;
pub mod sender;
pub mod static_invoices;
#[doc(hidden)]
pub mod testkit;
