//! `cargo run --example relay_node -- <data dir> <bitcoind host:port> <rpc user> <rpc password> [listen address]`
//!
//! A minimal LDK node, composed by hand, that relays trampoline payments on
//! regtest: the plugin is enabled through `Plugin::builder` (see `node.rs`).
//! It prints its node id and address, then runs until Ctrl-C, and then
//! what it relayed.

mod node;

use std::error::Error;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
	let args: Vec<String> = std::env::args().skip(1).collect();
	let [data_dir, bitcoind, user, password, rest @ ..] = &args[..] else {
		return Err("usage: relay_node <data dir> <bitcoind host:port> <rpc user> <rpc password> [listen address]".into());
	};
	let listen = rest.first().map_or("127.0.0.1:9735", String::as_str);
	let config = node::RelayNodeConfig {
		data_dir: data_dir.into(),
		bitcoind: (bitcoind.parse()?, user.clone(), password.clone()),
		listen: listen.parse()?,
		trampoline: ldk_trampoline::relay::TrampolinePolicy::default(),
	};
	let node = node::start(config).await?;
	println!("{}@{}", node.node_id(), node.listen_addr());
	tokio::signal::ctrl_c().await?;
	let (relayed, failed) = node.relayed();
	let (channels, sat) = (node.list_channels().len(), node.lightning_balance_sat());
	println!("{channels} channels ({sat} sat ours); relayed {relayed} trampoline payments, failed {failed}");
	node.stop().await
}
