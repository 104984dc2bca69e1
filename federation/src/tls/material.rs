//! PEM material (a CA certificate, a certificate and its key) and the tonic TLS configurations
//! built from it.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rcgen::KeyPair;
use tonic::transport::{Certificate, ClientTlsConfig, ServerTlsConfig};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::TlsError;
use super::files::read_text;
use super::identity::{Identity, identity_from_der_named};

/// A DNS name every hub certificate of `cafe-hub init` carries besides its hosts, so that a client
/// told `tlsServerName: cafe-hub` verifies the hub whatever address it dials (a load balancer
/// the certificate does not name).
pub const HUB_TLS_DOMAIN: &str = super::authority::HUB_COMMON_NAME;

/// How long the hub waits for a client to finish the TLS handshake before dropping it, so that
/// idle or malicious connections cannot hold resources.
const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for the hub's TLS handshake.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A CA certificate plus a certificate and its private key, all PEM-encoded: what one side of an
/// mTLS connection needs. The in-memory form lets a process run many agents without files.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The CA certificate that verifies the other side.
    pub ca_pem: String,
    /// This side's certificate.
    pub cert_pem: String,
    /// This side's private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What each part of a [`TlsMaterial`] is called in error messages: file paths when it was
/// loaded from files.
struct Labels {
    ca: String,
    cert: String,
    key: String,
}

impl Labels {
    fn in_memory() -> Self {
        Self {
            ca: "the CA certificate".to_owned(),
            cert: "the certificate".to_owned(),
            key: "the private key".to_owned(),
        }
    }
}

impl TlsMaterial {
    /// Reads and checks the three PEM files; errors name the file at fault.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let material = Self {
            ca_pem: read_text(ca)?,
            cert_pem: read_text(cert)?,
            key_pem: read_text(key)?,
        };
        material.check(&Labels {
            ca: ca.display().to_string(),
            cert: cert.display().to_string(),
            key: key.display().to_string(),
        })?;
        Ok(material)
    }

    /// The identity this material's certificate carries.
    pub fn identity(&self) -> Result<Identity, TlsError> {
        let labels = Labels::in_memory();
        identity_from_der_named(
            &certificate_der(&self.cert_pem, &labels.cert)?,
            &labels.cert,
        )
    }

    /// A server configuration presenting this certificate and requiring client certificates
    /// issued by this CA.
    pub fn server_tls_config(&self) -> Result<ServerTlsConfig, TlsError> {
        self.check(&Labels::in_memory())?;
        Ok(self.server_tls_config_unchecked())
    }

    /// A client configuration presenting this certificate and trusting only this CA for the
    /// server, whose certificate must be valid for `domain` (for example [`HUB_TLS_DOMAIN`]).
    pub fn client_tls_config(&self, domain: &str) -> Result<ClientTlsConfig, TlsError> {
        self.check(&Labels::in_memory())?;
        Ok(self.client_tls_config_unchecked(Some(domain)))
    }

    fn server_tls_config_unchecked(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            // The default, spelled out: a client without a certificate cannot connect.
            .client_auth_optional(false)
            .timeout(SERVER_HANDSHAKE_TIMEOUT)
    }

    fn client_tls_config_unchecked(&self, server_name: Option<&str>) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .timeout(CLIENT_HANDSHAKE_TIMEOUT);
        match server_name {
            Some(name) => config.domain_name(name),
            None => config,
        }
    }

    /// tonic only parses PEM when the server starts or the channel connects, with vague errors;
    /// checking here names the file and the problem.
    fn check(&self, labels: &Labels) -> Result<(), TlsError> {
        certificate_der(&self.ca_pem, &labels.ca)?;
        let cert_der = certificate_der(&self.cert_pem, &labels.cert)?;
        let key = parse_key_pem(&self.key_pem, &labels.key)?;
        check_key_matches(&cert_der, &labels.cert, &key, &labels.key)
    }
}

/// The hub's TLS files in `dir` ([`cafe_proto::protocol::tls_dir_files`]): `ca.pem`, `hub.pem`
/// and `hub-key.pem`, or a cert-manager Secret's `ca.crt`, `tls.crt` and `tls.key`.
pub fn hub_tls_files(dir: &Path) -> [std::path::PathBuf; 3] {
    cafe_proto::protocol::tls_dir_files(dir, super::HUB_CERT_FILE, super::HUB_KEY_FILE)
}

/// A client configuration from files: trust `ca_pem` for the server and present `cert` with its
/// `key`. The server's certificate must be valid for `server_name` when given (a `tlsServerName`
/// override), else for the host of the URL the channel connects to.
pub fn client_tls_config(
    ca_pem: &Path,
    cert: &Path,
    key: &Path,
    server_name: Option<&str>,
) -> Result<ClientTlsConfig, TlsError> {
    Ok(TlsMaterial::load(ca_pem, cert, key)?.client_tls_config_unchecked(server_name))
}

/// The DER bytes of the first certificate in `pem`, checked to parse as X.509.
pub(super) fn certificate_der(pem: &str, what: &str) -> Result<Vec<u8>, TlsError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|source| {
        TlsError::InvalidCertificatePem {
            what: what.to_owned(),
            source,
        }
    })?;
    parse_x509(&pem.contents, what)?;
    Ok(pem.contents)
}

/// Parses a DER certificate; `what` names it in errors.
pub(super) fn parse_x509<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, TlsError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|err| TlsError::InvalidCertificate {
            what: what.to_owned(),
            source: err.into(),
        })
}

/// Checks that a certificate is a CA certificate.
pub(super) fn require_ca(cert_der: &[u8], what: &str) -> Result<(), TlsError> {
    if parse_x509(cert_der, what)?.is_ca() {
        Ok(())
    } else {
        Err(TlsError::NotCa {
            what: what.to_owned(),
        })
    }
}

/// Parses a PEM private key.
pub(super) fn parse_key_pem(pem: &str, what: &str) -> Result<KeyPair, TlsError> {
    KeyPair::from_pem(pem).map_err(|source| TlsError::InvalidKey {
        what: what.to_owned(),
        source,
    })
}

/// Checks that `key` is the private half of the certificate's public key.
pub(super) fn check_key_matches(
    cert_der: &[u8],
    cert_what: &str,
    key: &KeyPair,
    key_what: &str,
) -> Result<(), TlsError> {
    let cert = parse_x509(cert_der, cert_what)?;
    if cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw() {
        Ok(())
    } else {
        Err(TlsError::KeyMismatch {
            cert: cert_what.to_owned(),
            key: key_what.to_owned(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use super::*;
    use crate::tls::{CertificateAuthority, Role};

    fn material() -> TlsMaterial {
        CertificateAuthority::generate()
            .unwrap()
            .issue_client(&Identity::User {
                name: "bob".into(),
                role: Role::Viewer,
            })
            .unwrap()
    }

    #[test]
    fn debug_hides_the_key() {
        let material = material();
        let debug = format!("{material:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn identity_and_configs_from_memory() {
        let material = material();
        assert_eq!(
            material.identity().unwrap(),
            Identity::User {
                name: "bob".into(),
                role: Role::Viewer
            }
        );
        material.server_tls_config().unwrap();
        material.client_tls_config(HUB_TLS_DOMAIN).unwrap();
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let mut material = material();
        material.key_pem = self::material().key_pem;
        let err = material.client_tls_config(HUB_TLS_DOMAIN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the private key does not match the certificate in the certificate"
        );
    }

    #[test]
    fn garbage_is_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let material = material();
        let [ca, cert, key] = ["ca.pem", "c.pem", "k.pem"].map(|name| dir.path().join(name));
        std::fs::write(&ca, &material.ca_pem).unwrap();
        std::fs::write(&cert, "hello").unwrap();
        std::fs::write(&key, &material.key_pem).unwrap();
        let err = client_tls_config(&ca, &cert, &key, Some(HUB_TLS_DOMAIN)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: not a PEM-encoded X.509 certificate", cert.display())
        );
        std::fs::write(&cert, &material.cert_pem).unwrap();
        std::fs::write(&key, &material.cert_pem).unwrap();
        let err = client_tls_config(&ca, &cert, &key, Some(HUB_TLS_DOMAIN)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: not a PEM-encoded PKCS#8 private key", key.display())
        );
        let missing = dir.path().join("missing.pem");
        let err = client_tls_config(&missing, &cert, &key, Some(HUB_TLS_DOMAIN)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", missing.display())
        );
    }
}
