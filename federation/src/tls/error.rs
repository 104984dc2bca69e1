//! The one error type of the TLS layer.

use std::path::PathBuf;

use crate::names::InvalidName;

/// Everything that can go wrong while generating, loading or interpreting certificates.
///
/// Messages name the file (or, for in-memory material, what it was meant to be) and what is wrong
/// with it, so that an operator can act on them without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `init` found an existing certificate authority and was not told to replace it.
    #[error(
        "{} already exists: refusing to replace the certificate authority (every certificate it \
         issued would stop working); pass --force to replace it",
        path.display()
    )]
    CaExists {
        /// The existing CA file.
        path: PathBuf,
    },
    /// Material that parses but that TLS cannot use (rustls refuses it).
    #[error("{what}: cannot serve TLS with it: {reason}")]
    Unusable {
        /// The file.
        what: String,
        /// What rustls said.
        reason: String,
    },
    /// PEM text that does not hold a parsable X.509 certificate.
    #[error("{what}: not a PEM-encoded X.509 certificate")]
    InvalidCertificatePem {
        /// The file or in-memory source.
        what: String,
        /// What the parser said.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::PEMError>,
    },
    /// DER bytes that do not parse as an X.509 certificate.
    #[error("{what}: invalid X.509 certificate")]
    InvalidCertificate {
        /// The file, in-memory source or "peer certificate".
        what: String,
        /// What the parser said.
        #[source]
        source: x509_parser::error::X509Error,
    },
    /// PEM text that does not hold a private key we can use.
    #[error("{what}: not a PEM-encoded PKCS#8 private key")]
    InvalidKey {
        /// The file or in-memory source.
        what: String,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// A private key that does not belong to the certificate it is paired with.
    #[error("{key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate's file or source.
        cert: String,
        /// The key's file or source.
        key: String,
    },
    /// A certificate that was expected to be a certificate authority is not one.
    #[error("{what} is not a CA certificate (no basicConstraints CA:TRUE)")]
    NotCa {
        /// The file or in-memory source.
        what: String,
    },
    /// rcgen failed to generate a key or sign a certificate.
    #[error("cannot generate {what}")]
    Generate {
        /// What was being generated.
        what: String,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// A hub host that is neither a DNS name nor an IP address.
    #[error("hub host {host:?} is neither an IP address nor a DNS name: {reason}")]
    InvalidHost {
        /// The offending host.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A certificate subject without a Common Name.
    #[error("{what}: the subject has no Common Name (CN)")]
    MissingCommonName {
        /// Which certificate.
        what: String,
    },
    /// A certificate subject with more than one Common Name or Organization.
    #[error("{what}: the subject has {count} {attribute} attributes; exactly one is allowed")]
    AmbiguousSubject {
        /// Which certificate.
        what: String,
        /// "Common Name (CN)" or "Organization (O)".
        attribute: &'static str,
        /// How many there are.
        count: usize,
    },
    /// A subject attribute that is not valid UTF-8 text.
    #[error("{what}: the subject's {attribute} is not a text string")]
    NonTextAttribute {
        /// Which certificate.
        what: String,
        /// "Common Name (CN)" or "Organization (O)".
        attribute: &'static str,
    },
    /// A certificate subject without an Organization, i.e. without a role.
    #[error(
        "{what}: the subject has no Organization (O); expected one of cafe:agent, cafe:admin, \
         cafe:operator, cafe:viewer"
    )]
    MissingOrganization {
        /// Which certificate.
        what: String,
    },
    /// A certificate subject whose Organization is not one of ours.
    #[error(
        "{what}: unknown Organization (O) {organization:?}; expected one of cafe:agent, \
         cafe:admin, cafe:operator, cafe:viewer"
    )]
    UnknownOrganization {
        /// Which certificate.
        what: String,
        /// The organization found.
        organization: String,
    },
    /// An agent certificate whose Common Name is not a valid cluster name.
    #[error("{what}: the Common Name {name:?} is not a valid cluster name")]
    InvalidClusterName {
        /// Which certificate.
        what: String,
        /// The Common Name.
        name: String,
        /// Why it is invalid.
        #[source]
        source: InvalidName,
    },
    /// A user name that cannot be a certificate identity (and a directory name).
    #[error("invalid user name {name:?}: {reason}")]
    InvalidUserName {
        /// The name.
        name: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A role name that is not viewer, operator or admin.
    #[error("unknown role {0:?}; expected viewer, operator or admin")]
    UnknownRole(String),
    /// A cafectl configuration file that does not parse.
    #[error("{}: invalid cafectl configuration", path.display())]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field's path.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A cafectl configuration that cannot be serialized.
    #[error("cannot serialize the cafectl configuration for {}", path.display())]
    SerializeConfig {
        /// The file it was meant for.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_saphyr::ser_error::Error,
    },
    /// A hub URL that is not an http(s) URL.
    #[error("{what}: invalid hub URL {url:?}: {reason}")]
    InvalidHubUrl {
        /// Where the URL came from.
        what: String,
        /// The URL.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
}
