//! The hub's server TLS, read again whenever its files change: a rotated certificate (a renewed
//! Secret, cert-manager's renewal) serves the next connection, without a restart.
//!
//! Each accepted connection asks for the current configuration. That costs three `stat` calls;
//! the files are read and checked again only when one of them changed (size or modification
//! time, which a Secret volume's atomic symlink swap changes too). A bad new file is logged and
//! the previous configuration keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tokio_util::sync::CancellationToken;

use super::TlsError;
use super::material::TlsMaterial;

/// How long a client may take over the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What identifies one version of the files: each one's length and modification time.
type Fingerprint = [(u64, Option<SystemTime>); 3];

/// The server TLS of a directory of PEM files, reloaded when they change.
pub struct ReloadingServerTls {
    /// The CA certificate that verifies clients, the server certificate, its key.
    files: [PathBuf; 3],
    current: Mutex<(Fingerprint, Arc<rustls::ServerConfig>)>,
}

impl std::fmt::Debug for ReloadingServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingServerTls {
    /// Reads the files (`ca`, `cert`, `key`) once; errors name the file at fault.
    pub fn load(files: [PathBuf; 3]) -> Result<Self, TlsError> {
        let fingerprint = fingerprint(&files);
        let config = build(&files)?;
        Ok(Self {
            files,
            current: Mutex::new((fingerprint, config)),
        })
    }

    /// The configuration for the next handshake: the files' current contents when they changed
    /// and are valid, else the last good ones.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        let now = fingerprint(&self.files);
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != now {
            // Recorded either way: a bad file is reported once, not on every connection.
            current.0 = now;
            match build(&self.files) {
                Ok(config) => {
                    tracing::info!(cert = %self.files[1].display(), "the hub's TLS files changed: new connections use them");
                    current.1 = config;
                }
                Err(error) => tracing::warn!(
                    error = %crate::error_chain(&error),
                    "the hub's TLS files changed but cannot be used; the previous ones stay"
                ),
            }
        }
        Arc::clone(&current.1)
    }
}

fn fingerprint(files: &[PathBuf; 3]) -> Fingerprint {
    files.each_ref().map(|path| match std::fs::metadata(path) {
        Ok(meta) => (meta.len(), meta.modified().ok()),
        Err(_) => (0, None),
    })
}

/// A rustls server configuration presenting the certificate and requiring client certificates
/// issued by the CA, speaking HTTP/2 as gRPC needs.
fn build(files: &[PathBuf; 3]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let [ca, cert, key] = files;
    let material = TlsMaterial::load(ca, cert, key)?;
    let invalid = |reason: String| TlsError::Unusable {
        what: cert.display().to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca_cert in CertificateDer::pem_slice_iter(material.ca_pem.as_bytes()) {
        let ca_cert = ca_cert.map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
        roots
            .add(ca_cert)
            .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| invalid(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    let private = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private)
        .map_err(|e| invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The connections `listener` accepts after their TLS handshake, until `stop` is cancelled. Each
/// handshake runs on its own task (a slow client delays nobody) with the configuration of the
/// moment, for at most [`HANDSHAKE_TIMEOUT`]. tonic reads the client's certificates from the
/// streams (`Request::peer_certs`).
pub fn tls_incoming(
    listener: Arc<tokio::net::TcpListener>,
    tls: Arc<ReloadingServerTls>,
    stop: CancellationToken,
) -> impl tokio_stream::Stream<
    Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
> + Send
+ 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a gRPC connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // As tonic's own acceptor does: small gRPC frames go out at once.
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            let sender = sender.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        // A server that stopped meanwhile drops it: the client reconnects.
                        let _ = sender.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "a TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "a TLS handshake took too long"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}
