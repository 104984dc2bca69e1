//! Certificates and keys of the test control planes: one CA for the API servers' serving
//! certificates, and a service-account signing key per API server. Administrators authenticate with a
//! static bearer token, the simplest of the API server's authenticators.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::SimError;

fn generate(what: &str, e: rcgen::Error) -> SimError {
    SimError::ControlPlane {
        what: format!("cannot generate {what}: {e}"),
        source: None,
    }
}

/// The CA that signs every API server's serving certificate.
pub(crate) struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key stays out of logs.
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub(crate) struct KeyedCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Authority {
    /// A fresh CA (ECDSA P-256).
    pub(crate) fn generate() -> Result<Self, SimError> {
        let key = KeyPair::generate().map_err(|e| generate("the CA key", e))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "cafe-sim control-plane CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| generate("the CA certificate", e))?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A serving certificate for an API server on loopback (`127.0.0.1` and `localhost`).
    pub(crate) fn issue_server(&self, name: &str) -> Result<KeyedCert, SimError> {
        let key = KeyPair::generate().map_err(|e| generate("a serving key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::DnsName(
                "localhost"
                    .try_into()
                    .map_err(|e| generate("a serving certificate name", e))?,
            ),
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| generate("a serving certificate", e))?;
        Ok(KeyedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Authority {
    /// A client certificate named `name` (for etcd's `--client-cert-auth`).
    pub(crate) fn issue_client(&self, name: &str) -> Result<KeyedCert, SimError> {
        let key = KeyPair::generate().map_err(|e| generate("a client key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| generate("a client certificate", e))?;
        Ok(KeyedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A service-account token signing key pair: (private key PEM, public key PEM).
pub(crate) fn service_account_keys() -> Result<(String, String), SimError> {
    let key = KeyPair::generate().map_err(|e| generate("a service-account key", e))?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// A random bearer token.
pub(crate) fn token() -> String {
    use rand::RngExt as _;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}
