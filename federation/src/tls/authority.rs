//! The certificate authority in memory: generating it, loading it, and issuing certificates.
//! No file I/O here; see `files` and `init` for that.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::TlsError;
use super::identity::Identity;
use super::material::{TlsMaterial, certificate_der, check_key_matches, parse_key_pem, require_ca};

/// The CA's Common Name.
const CA_COMMON_NAME: &str = "cafe-federation CA";
/// The CA's Organization (not a role: the CA never authenticates as a peer).
const CA_ORGANIZATION: &str = "cafe";
/// The hub server certificate's Common Name, always also one of its DNS names.
pub const HUB_COMMON_NAME: &str = "cafe-hub";
/// The longest DNS name (RFC 1035).
const MAX_HOST_NAME_LEN: usize = 253;
/// The longest label of a DNS name (RFC 1035).
const MAX_HOST_LABEL_LEN: usize = 63;
/// How long the CA is valid: ten years, since replacing it means reissuing everything.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long hub, agent and user certificates are valid.
const LEAF_VALIDITY: Duration = Duration::days(365);
/// Certificates are valid from this long before they are issued, so that a peer whose clock
/// is a little behind accepts a fresh certificate.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::hours(1);

/// A certificate authority that can issue the hub's, agents' and users' certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key stays out of logs.
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Generates a new self-signed CA with a fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, TlsError> {
        let key = generate_key("the CA key")?;
        let mut params = params_valid_for(CA_VALIDITY);
        params.distinguished_name = subject(CA_ORGANIZATION, CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: "the CA certificate".to_owned(),
                source,
            })?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and key; `cert_what` and `key_what` name them in errors.
    pub fn from_pem(
        cert_pem: &str,
        cert_what: &str,
        key_pem: &str,
        key_what: &str,
    ) -> Result<Self, TlsError> {
        let cert_der = certificate_der(cert_pem, cert_what)?;
        require_ca(&cert_der, cert_what)?;
        let key = parse_key_pem(key_pem, key_what)?;
        check_key_matches(&cert_der, cert_what, &key, key_what)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.into(), key).map_err(|source| {
            TlsError::Generate {
                what: format!("an issuer from {cert_what}"),
                source,
            }
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM-encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM-encoded (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues the hub's server certificate: CN `cafe-hub`, server-auth only, valid for `hosts`
    /// (IP addresses become IP SANs) and always for the DNS name `cafe-hub`.
    pub fn issue_hub(&self, hosts: &[String]) -> Result<TlsMaterial, TlsError> {
        let mut names = Vec::with_capacity(hosts.len() + 1);
        for host in std::iter::once(HUB_COMMON_NAME).chain(hosts.iter().map(String::as_str)) {
            let name = subject_alt_name(host)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut params = params_valid_for(LEAF_VALIDITY);
        params.distinguished_name = common_name_only(HUB_COMMON_NAME);
        params.subject_alt_names = names;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_leaf(params, "the hub certificate")
    }

    /// Issues a client certificate carrying `identity` (client-auth only).
    pub fn issue_client(&self, identity: &Identity) -> Result<TlsMaterial, TlsError> {
        if let Identity::User { name, .. } = identity {
            super::identity::validate_user_name(name)?;
        }
        let (organization, common_name) = identity.subject();
        let mut params = params_valid_for(LEAF_VALIDITY);
        params.distinguished_name = subject(organization, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue_leaf(params, &format!("the certificate for {identity}"))
    }

    fn issue_leaf(
        &self,
        mut params: CertificateParams,
        what: &str,
    ) -> Result<TlsMaterial, TlsError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = generate_key(what)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| TlsError::Generate {
                what: what.to_owned(),
                source,
            })?;
        Ok(TlsMaterial {
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The SAN for a hub host: an IP address, or else a DNS host name.
fn subject_alt_name(host: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    host_name_error(host).map_or(Ok(()), |reason| {
        Err(TlsError::InvalidHost {
            host: host.to_owned(),
            reason,
        })
    })?;
    let name = host.try_into().map_err(|source| TlsError::Generate {
        what: format!("the hub certificate's name {host:?}"),
        source,
    })?;
    Ok(SanType::DnsName(name))
}

/// Why `host` is not a DNS host name (RFC 1123: dot-separated labels of letters, digits and
/// inner hyphens), or `None` if it is one.
fn host_name_error(host: &str) -> Option<&'static str> {
    if host.is_empty() || host.len() > MAX_HOST_NAME_LEN {
        return Some("a host name has 1 to 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > MAX_HOST_LABEL_LEN {
            return Some("each dot-separated part has 1 to 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Some("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a part may not start or end with a hyphen");
        }
    }
    None
}

fn generate_key(what: &str) -> Result<KeyPair, TlsError> {
    // rcgen's default algorithm is ECDSA P-256 with SHA-256.
    KeyPair::generate().map_err(|source| TlsError::Generate {
        what: what.to_owned(),
        source,
    })
}

fn params_valid_for(validity: Duration) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.not_before = now - CLOCK_SKEW_ALLOWANCE;
    params.not_after = now + validity;
    params
}

fn subject(organization: &str, common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, organization);
    name.push(DnType::CommonName, common_name);
    name
}

fn common_name_only(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use x509_parser::extensions::GeneralName;

    use super::*;

    #[test]
    fn hub_names_include_cafe_hub_and_ip_addresses_once() {
        let ca = CertificateAuthority::generate().unwrap();
        let hub = ca
            .issue_hub(&["localhost".into(), "127.0.0.1".into(), "cafe-hub".into()])
            .unwrap();
        let der = certificate_der(&hub.cert_pem, "hub").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(name) => (*name).to_owned(),
                GeneralName::IPAddress([a, b, c, d]) => IpAddr::from([*a, *b, *c, *d]).to_string(),
                other => panic!("unexpected name {other:?}"),
            })
            .collect();
        assert_eq!(names, ["cafe-hub", "localhost", "127.0.0.1"]);
    }

    #[test]
    fn invalid_hub_host_is_named() {
        let ca = CertificateAuthority::generate().unwrap();
        for bad in ["not a host!", "-x.example", "a..b", ""] {
            let err = ca.issue_hub(&[bad.into()]).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("hub host {bad:?} ")),
                "{err}"
            );
        }
        ca.issue_hub(&["Hub-1.example.com".into(), "::1".into()])
            .unwrap();
    }

    #[test]
    fn reloaded_ca_issues_certificates_that_chain_to_it() {
        let ca = CertificateAuthority::generate().unwrap();
        let reloaded =
            CertificateAuthority::from_pem(ca.cert_pem(), "ca.pem", &ca.key_pem(), "ca-key.pem")
                .unwrap();
        let leaf = reloaded
            .issue_client(&Identity::User {
                name: "alice".into(),
                role: crate::tls::Role::Operator,
            })
            .unwrap();
        let ca_der = certificate_der(ca.cert_pem(), "ca").unwrap();
        let leaf_der = certificate_der(&leaf.cert_pem, "leaf").unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf_cert.issuer(), ca_cert.subject());
        leaf_cert
            .verify_signature(Some(ca_cert.public_key()))
            .unwrap();
    }

    #[test]
    fn a_leaf_is_not_accepted_as_ca() {
        let ca = CertificateAuthority::generate().unwrap();
        let leaf = ca
            .issue_client(&Identity::Agent {
                cluster: "a".parse().unwrap(),
            })
            .unwrap();
        let err =
            CertificateAuthority::from_pem(&leaf.cert_pem, "x.pem", &leaf.key_pem, "x-key.pem")
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.pem is not a CA certificate (no basicConstraints CA:TRUE)"
        );
    }
}
