//! The reference node (`ldk-trampoline node`) as a child process of a test:
//! spawning it, waiting for its control interface, running `ctl`, stopping
//! and killing it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use ldk_trampoline::control::auth::{read_token_file, Role};
use ldk_trampoline::control::client::ControlClient;
use ldk_trampoline::control::GetInfoResponse;
use ldk_trampoline::regtest::DEADLINE;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ldk-trampoline");
/// How often [`NodeProcess::wait_ready`] asks.
pub const POLL: Duration = Duration::from_millis(100);

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
	std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A reference node's control interface as its tests reach it: the
/// address and the data directory whose admin token `ctl` and the client
/// send.
#[derive(Clone, Debug)]
pub struct Control {
	/// `127.0.0.1:PORT`.
	pub address: String,
	/// The node's data directory.
	pub data_dir: PathBuf,
}

impl Control {
	/// A free loopback port for the node whose data directory is `data_dir`.
	pub fn new(data_dir: &Path) -> Self {
		Self { address: format!("127.0.0.1:{}", free_port()), data_dir: data_dir.to_path_buf() }
	}

	/// A library client with the node's admin token.
	pub fn client(&self) -> ControlClient {
		ControlClient::for_data_dir(&self.address, &self.data_dir).expect("client")
	}

	/// The token file of `role`.
	pub fn token_file(&self, role: Role) -> PathBuf {
		role.token_path(&self.data_dir)
	}

	/// The admin token now.
	pub fn admin_token(&self) -> String {
		read_token_file(&self.token_file(Role::Admin)).expect("the node wrote its token")
	}
}

impl std::fmt::Display for Control {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str(&self.address)
	}
}

/// A running `ldk-trampoline node`, killed on drop; dumps its output and log
/// when the test fails.
pub struct NodeProcess {
	child: Child,
	/// Where its stdout and stderr go (appended to, across restarts).
	out_dir: PathBuf,
	data_dir: PathBuf,
}

impl NodeProcess {
	/// Runs `ldk-trampoline <args>` with its output in `out_dir`.
	pub fn spawn(args: &[&str], out_dir: &Path, data_dir: &Path) -> Self {
		let append = |name: &str| {
			std::fs::OpenOptions::new().create(true).append(true).open(out_dir.join(name)).unwrap()
		};
		let child = Command::new(BIN)
			.args(args)
			.stdin(Stdio::null())
			.stdout(append("node.stdout"))
			.stderr(append("node.stderr"))
			.kill_on_drop(true)
			.spawn()
			.expect("the binary runs");
		Self { child, out_dir: out_dir.to_path_buf(), data_dir: data_dir.to_path_buf() }
	}

	/// What the node wrote to stderr.
	pub fn stderr(&self) -> String {
		std::fs::read_to_string(self.out_dir.join("node.stderr")).unwrap_or_default()
	}

	/// The node's LDK log (`<data-dir>/logs/ldk.log`), every run's.
	pub fn ldk_log(&self) -> String {
		std::fs::read_to_string(self.data_dir.join("logs").join("ldk.log")).unwrap_or_default()
	}

	/// Its stdout, stderr and the end of its LDK log.
	pub fn diagnostics(&self) -> String {
		let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
		let log = self.ldk_log();
		let tail: Vec<&str> = log.lines().rev().take(60).collect();
		format!(
			"--- node stdout:\n{}--- node stderr:\n{}--- end of ldk.log:\n{}",
			read(self.out_dir.join("node.stdout")),
			self.stderr(),
			tail.into_iter().rev().collect::<Vec<_>>().join("\n")
		)
	}

	/// Panics if the process has exited.
	pub fn assert_running(&mut self) {
		if let Ok(Some(status)) = self.child.try_wait() {
			panic!("the node exited with {status}\n{}", self.diagnostics());
		}
	}

	/// Waits (at most [`DEADLINE`]) until the process exits.
	pub async fn wait_exit(&mut self) -> ExitStatus {
		match tokio::time::timeout(DEADLINE, self.child.wait()).await {
			Ok(status) => status.expect("wait for the node"),
			Err(_) => panic!("the node did not exit within {DEADLINE:?}\n{}", self.diagnostics()),
		}
	}

	/// Polls `getinfo` until the control interface answers.
	pub async fn wait_ready(&mut self, client: &ControlClient) -> GetInfoResponse {
		let deadline = tokio::time::Instant::now() + DEADLINE;
		loop {
			self.assert_running();
			match client.getinfo().await {
				Ok(info) => return info,
				Err(e) if tokio::time::Instant::now() > deadline => {
					panic!("control interface not up: {e}\n{}", self.diagnostics())
				},
				Err(_) => tokio::time::sleep(POLL).await,
			}
		}
	}

	/// Sends SIGTERM (a clean stop).
	pub fn sigterm(&self) {
		let pid = self.child.id().expect("the node runs");
		let status = std::process::Command::new("kill")
			.args(["-TERM", &pid.to_string()])
			.status()
			.expect("kill runs");
		assert!(status.success());
	}

	/// Sends SIGKILL (no chance to persist anything) and waits until the
	/// process is gone, so that its data directory lock is free again.
	pub async fn sigkill(&mut self) {
		if let Err(e) = self.child.start_kill() {
			panic!("cannot SIGKILL the node: {e}\n{}", self.diagnostics());
		}
		self.wait_exit().await;
	}
}

impl Drop for NodeProcess {
	fn drop(&mut self) {
		if std::thread::panicking() {
			eprintln!("{}", self.diagnostics());
		}
	}
}

/// Runs `ldk-trampoline ctl --control <address> --data-dir <data dir> <args>`.
pub async fn run_ctl(control: &Control, args: &[&str]) -> Output {
	let data_dir = control.data_dir.display().to_string();
	run_ctl_with(&["--control", &control.address, "--data-dir", &data_dir], args).await
}

/// Runs `ldk-trampoline ctl <flags> <args>`.
pub async fn run_ctl_with(flags: &[&str], args: &[&str]) -> Output {
	let run = Command::new(BIN)
		.arg("ctl")
		.args(flags)
		.args(args)
		.stdin(Stdio::null())
		.kill_on_drop(true)
		.output();
	tokio::time::timeout(2 * DEADLINE, run)
		.await
		.unwrap_or_else(|_| panic!("ctl {args:?} timed out"))
		.expect("ctl runs")
}

/// Runs `ldk-trampoline ctl`, expecting success, and returns its JSON.
pub async fn ctl(control: &Control, args: &[&str]) -> Value {
	let out = run_ctl(control, args).await;
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert!(out.status.success(), "ctl {args:?} failed with {}: {stderr}", out.status);
	serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
		panic!("ctl {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
	})
}

/// Runs `ldk-trampoline ctl`, expecting it to fail cleanly, and returns stderr.
pub async fn ctl_err(control: &Control, args: &[&str]) -> String {
	let out = run_ctl(control, args).await;
	let stderr = String::from_utf8_lossy(&out.stderr).to_string();
	assert_eq!(out.status.code(), Some(1), "ctl {args:?}: {stderr}");
	assert!(stderr.starts_with("error: "), "ctl {args:?}: {stderr}");
	assert!(!stderr.contains("panicked"), "ctl {args:?}: {stderr}");
	stderr
}

/// `node` with what every run here is given on the command line: the
/// network, data directory, bitcoind and its credentials, a free listen port
/// and the control address.
pub fn node_args(
	network: &str, data_dir: &str, bitcoind: &str, user: &str, password: &str, control: &str,
) -> Vec<String> {
	[
		"node",
		"--network",
		network,
		"--data-dir",
		data_dir,
		"--bitcoind-rpc",
		bitcoind,
		"--bitcoind-rpc-user",
		user,
		"--bitcoind-rpc-password",
		password,
		"--listen",
		"127.0.0.1:0",
		"--control-listen",
		control,
	]
	.map(String::from)
	.to_vec()
}
