//! Certificates and the mTLS identity layer (DESIGN section 10).
//!
//! One CA issues everything: the hub's server certificate, one client certificate per agent
//! (its identity is its cluster) and one per operator (its identity carries a role). The hub
//! requires client certificates on every TLS connection and reads the peer's [`Identity`] from
//! the verified certificate with [`peer_identity`].
//!
//! - [`identity`](Identity): roles, identities, reading them from certificates;
//! - [`CertificateAuthority`]: generating and issuing in memory ([`TlsMaterial`]);
//! - [`init`], [`issue_agent`], [`issue_user`]: the same on disk;
//! - [`ReloadingServerTls`], [`client_tls_config`]: the hub's server TLS (read again when its
//!   files change) and clients' tonic configurations;
//! - [`CafectlConfig`]: the operators' configuration file.

mod authority;
mod config;
mod error;
mod files;
mod identity;
mod init;
mod material;
mod reload;

pub use authority::{CertificateAuthority, HUB_COMMON_NAME};
pub use config::{CafectlConfig, write_cafectl_config};
pub use error::TlsError;
pub use identity::{
    ADMIN_ORGANIZATION, AGENT_ORGANIZATION, Identity, OPERATOR_ORGANIZATION, Role,
    VIEWER_ORGANIZATION, authorize, identity_from_der, peer_identity, validate_user_name,
};
pub use init::{
    AgentBundle, DEFAULT_HUB_HOSTS, DEFAULT_HUB_URL, InitOptions, InitReport, UserBundle,
    config_file_name, init, issue_agent, issue_user, load_ca,
};
pub use material::{HUB_TLS_DOMAIN, TlsMaterial, client_tls_config, hub_tls_files};
pub use reload::{HANDSHAKE_TIMEOUT, ReloadingServerTls, tls_incoming};

/// The CA certificate, in the hub's directory and in every bundle.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key, only in the hub's directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The hub's server certificate.
pub const HUB_CERT_FILE: &str = "hub.pem";
/// The hub's private key.
pub const HUB_KEY_FILE: &str = "hub-key.pem";
/// An agent bundle's certificate.
pub const AGENT_CERT_FILE: &str = "agent.pem";
/// An agent bundle's private key.
pub const AGENT_KEY_FILE: &str = "agent-key.pem";
/// A user bundle's certificate.
pub const USER_CERT_FILE: &str = "user.pem";
/// A user bundle's private key.
pub const USER_KEY_FILE: &str = "user-key.pem";
/// The directory under the hub's directory holding agent bundles by cluster.
pub const AGENTS_DIR: &str = "agents";
/// The directory under the hub's directory holding user bundles by name.
pub const USERS_DIR: &str = "users";
/// The admin's cafectl configuration, and the name of the one in a user bundle.
pub const CAFECTL_CONFIG_FILE: &str = "cafectl.yaml";
