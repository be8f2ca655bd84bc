//! The control interface over TLS (rustls through `tokio-rustls`), required
//! when it listens on an address other than loopback.
//!
//! [`TlsListener`] accepts TCP connections and runs each handshake in a task
//! of its own (at most [`HANDSHAKE_TIMEOUT`]), so a client that stalls its
//! handshake holds up nobody else; finished connections go to axum.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake is done and that axum has not taken yet.
const ACCEPTED_BACKLOG: usize = 64;

/// Why the TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
	/// The certificate file cannot be read or holds no PEM certificate.
	#[error("cannot load the control TLS certificate {}: {reason} (a PEM file with the certificate chain expected)", path.display())]
	Cert {
		/// The file.
		path: PathBuf,
		/// What failed.
		reason: String,
	},
	/// The key file cannot be read or holds no PEM private key.
	#[error("cannot load the control TLS key {}: {reason} (a PEM file with a PKCS#8, PKCS#1 or SEC1 private key expected)", path.display())]
	Key {
		/// The file.
		path: PathBuf,
		/// What failed.
		reason: String,
	},
	/// rustls refused the pair (e.g. the key is not the certificate's).
	#[error("the control TLS certificate and key cannot be used together: {0}")]
	Config(String),
}

/// Reads the PEM certificates of `path`.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
	let failed = |reason: String| TlsError::Cert { path: path.to_path_buf(), reason };
	let certs = CertificateDer::pem_file_iter(path)
		.map_err(|e| failed(e.to_string()))?
		.collect::<Result<Vec<_>, _>>()
		.map_err(|e| failed(e.to_string()))?;
	if certs.is_empty() {
		return Err(failed("no certificate in it".into()));
	}
	Ok(certs)
}

/// The rustls server configuration of a certificate chain and key (PEM
/// files), with rustls' safe defaults (TLS 1.2 and 1.3, ring).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
	let certs = load_certs(cert)?;
	let key = PrivateKeyDer::from_pem_file(key)
		.map_err(|e| TlsError::Key { path: key.to_path_buf(), reason: e.to_string() })?;
	let provider = Arc::new(rustls::crypto::ring::default_provider());
	let config = rustls::ServerConfig::builder_with_provider(provider)
		.with_safe_default_protocol_versions()
		.map_err(|e| TlsError::Config(e.to_string()))?
		.with_no_client_auth()
		.with_single_cert(certs, key)
		.map_err(|e| TlsError::Config(e.to_string()))?;
	Ok(Arc::new(config))
}

/// A listener handing axum TLS connections whose handshake is done.
pub struct TlsListener {
	accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
	local_addr: SocketAddr,
}

impl TlsListener {
	/// Serves TLS with `config` on `listener`; the accepting task ends when
	/// the listener is dropped.
	pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
		let local_addr = listener.local_addr()?;
		let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
		let acceptor = TlsAcceptor::from(config);
		tokio::spawn(async move {
			loop {
				let (stream, peer) = tokio::select! {
					_ = sender.closed() => return,
					accepted = listener.accept() => match accepted {
						Ok(accepted) => accepted,
						// Out of descriptors and the like: wait, as axum does.
						Err(_) => {
							tokio::time::sleep(Duration::from_millis(100)).await;
							continue;
						},
					},
				};
				let (acceptor, sender) = (acceptor.clone(), sender.clone());
				tokio::spawn(async move {
					let handshake =
						tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
					if let Ok(Ok(tls)) = handshake.await {
						let _ = sender.send((tls, peer)).await;
					}
				});
			}
		});
		Ok(Self { accepted, local_addr })
	}
}

impl axum::serve::Listener for TlsListener {
	type Io = TlsStream<TcpStream>;
	type Addr = SocketAddr;

	async fn accept(&mut self) -> (Self::Io, Self::Addr) {
		match self.accepted.recv().await {
			Some(accepted) => accepted,
			// The accepting task never ends while this receiver lives.
			None => std::future::pending().await,
		}
	}

	fn local_addr(&self) -> std::io::Result<Self::Addr> {
		Ok(self.local_addr)
	}
}
