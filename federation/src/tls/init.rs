//! Generating the material on disk: `cafe-hub init` and `cafe-hub issue-agent`.
//!
//! Layout of the hub's TLS directory `D`:
//!
//! ```text
//! D/ca.pem  ca-key.pem  hub.pem  hub-key.pem
//!   admin.pem  admin-key.pem  operator.pem  operator-key.pem  viewer.pem  viewer-key.pem
//!   cafectl.yaml (admin)  cafectl-operator.yaml  cafectl-viewer.yaml
//!   agents/<cluster>/ca.pem  agent.pem  agent-key.pem
//!   users/<name>/ca.pem  user.pem  user-key.pem  cafectl.yaml
//! ```

use std::path::{Path, PathBuf};

use super::authority::CertificateAuthority;
use super::config::{CafectlConfig, check_hub_url, write_cafectl_config};
use super::files::{Access, create_dir, read_text, write_file};
use super::identity::{Identity, Role, validate_user_name};
use super::material::TlsMaterial;
use super::{
    AGENT_CERT_FILE, AGENT_KEY_FILE, AGENTS_DIR, CA_CERT_FILE, CA_KEY_FILE, CAFECTL_CONFIG_FILE,
    HUB_CERT_FILE, HUB_KEY_FILE, TlsError, USER_CERT_FILE, USER_KEY_FILE, USERS_DIR,
};
use crate::names::ClusterName;

/// The names the hub certificate is valid for unless told otherwise: loopback only.
pub const DEFAULT_HUB_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// The hub URL written into the cafectl configurations unless told otherwise.
pub const DEFAULT_HUB_URL: &str = "https://127.0.0.1:7443";

/// What `cafe-hub init` should create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// The directory to write into (created if missing).
    pub dir: PathBuf,
    /// The DNS names and IP addresses the hub certificate is valid for, besides `cafe-hub`.
    pub hub_hosts: Vec<String>,
    /// The hub URL written into the cafectl configurations.
    pub hub_url: String,
    /// Replace an existing CA (and everything else) instead of refusing.
    pub force: bool,
    /// Issue from this existing CA (its certificate and key files, for example an intermediate
    /// of the bank's PKI) instead of generating one. Both are copied into `dir`, so that
    /// `issue-agent` and `issue-user` issue from it too.
    pub ca: Option<(PathBuf, PathBuf)>,
}

impl InitOptions {
    /// Options for `dir` with the default hosts and URL, not forcing.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            hub_hosts: DEFAULT_HUB_HOSTS.iter().map(|&h| h.to_owned()).collect(),
            hub_url: DEFAULT_HUB_URL.to_owned(),
            force: false,
            ca: None,
        }
    }
}

/// What `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The directory.
    pub dir: PathBuf,
    /// Every file written, in the order written.
    pub files: Vec<PathBuf>,
    /// The admin's cafectl configuration (`D/cafectl.yaml`).
    pub admin_config: PathBuf,
}

/// An agent's credentials on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBundle {
    /// The directory holding them (the agent's `--tls-dir`).
    pub dir: PathBuf,
    /// The CA certificate that verifies the hub.
    pub ca: PathBuf,
    /// The agent's certificate, `O=cafe:agent, CN=<cluster>`.
    pub cert: PathBuf,
    /// The agent's private key (mode 0600).
    pub key: PathBuf,
}

/// A user's credentials on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserBundle {
    /// The directory holding them.
    pub dir: PathBuf,
    /// The CA certificate that verifies the hub.
    pub ca: PathBuf,
    /// The user's certificate, `O=cafe:<role>, CN=<name>`.
    pub cert: PathBuf,
    /// The user's private key (mode 0600).
    pub key: PathBuf,
    /// A cafectl configuration for these credentials, written when the hub URL is known from
    /// `D/cafectl.yaml`.
    pub config: Option<PathBuf>,
}

/// Files to write, prepared in memory so that a failure to generate writes nothing.
#[derive(Default)]
struct Plan {
    files: Vec<(PathBuf, String, Access)>,
    configs: Vec<(PathBuf, CafectlConfig)>,
}

impl Plan {
    fn file(&mut self, path: PathBuf, contents: String, access: Access) {
        self.files.push((path, contents, access));
    }

    /// The CA certificate, `cert` and `key` (0600) of `material` under `dir`.
    fn material(&mut self, dir: &Path, material: TlsMaterial, cert: &str, key: &str) {
        self.file(dir.join(CA_CERT_FILE), material.ca_pem, Access::Public);
        self.file(dir.join(cert), material.cert_pem, Access::Public);
        self.file(dir.join(key), material.key_pem, Access::Private);
    }

    fn write(self, dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
        create_dir(dir)?;
        let mut written = Vec::with_capacity(self.files.len() + self.configs.len());
        for (path, contents, access) in self.files {
            write_file(&path, &contents, access)?;
            written.push(path);
        }
        for (path, config) in self.configs {
            write_cafectl_config(&path, &config)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// `cafe-hub init`: creates a CA, the hub's certificate, admin / operator / viewer client
/// certificates and a cafectl configuration for each in `opts.dir`.
///
/// Refuses, writing nothing, when `ca.pem` or `ca-key.pem` already exists there unless
/// `opts.force`. Keys are written with mode 0600.
pub fn init(opts: &InitOptions) -> Result<InitReport, TlsError> {
    let dir = &opts.dir;
    if !opts.force {
        for existing in [CA_CERT_FILE, CA_KEY_FILE].map(|name| dir.join(name)) {
            if existing.exists() {
                return Err(TlsError::CaExists { path: existing });
            }
        }
    }
    check_hub_url(&opts.hub_url, "the hub URL")?;

    let ca = match &opts.ca {
        Some((cert, key)) => CertificateAuthority::from_pem(
            &read_text(cert)?,
            &cert.display().to_string(),
            &read_text(key)?,
            &key.display().to_string(),
        )?,
        None => CertificateAuthority::generate()?,
    };
    let hub = ca.issue_hub(&opts.hub_hosts)?;
    let mut plan = Plan::default();
    plan.file(dir.join(CA_KEY_FILE), ca.key_pem(), Access::Private);
    plan.material(dir, hub, HUB_CERT_FILE, HUB_KEY_FILE);
    // Strongest first, so that the admin's files come first in the report.
    for role in Role::ALL.into_iter().rev() {
        let identity = Identity::User {
            name: role.as_str().to_owned(),
            role,
        };
        let cert = format!("{role}.pem");
        let key = format!("{role}-key.pem");
        let material = ca.issue_client(&identity)?;
        plan.file(dir.join(&cert), material.cert_pem, Access::Public);
        plan.file(dir.join(&key), material.key_pem, Access::Private);
        plan.configs.push((
            dir.join(config_file_name(role)),
            CafectlConfig {
                hub: opts.hub_url.clone(),
                hubs: Vec::new(),
                ca: CA_CERT_FILE.into(),
                cert: cert.into(),
                key: key.into(),
                tls_server_name: None,
            },
        ));
    }
    let files = plan.write(dir)?;
    Ok(InitReport {
        dir: dir.clone(),
        files,
        admin_config: dir.join(CAFECTL_CONFIG_FILE),
    })
}

/// The cafectl configuration written by `init` for `role`: the admin's is the plain
/// `cafectl.yaml`, the others `cafectl-<role>.yaml`.
pub fn config_file_name(role: Role) -> String {
    match role {
        Role::Admin => CAFECTL_CONFIG_FILE.to_owned(),
        Role::Operator | Role::Viewer => format!("cafectl-{role}.yaml"),
    }
}

/// `cafe-hub issue-agent`: issues the certificate of `cluster`'s agent with the CA in `dir` and
/// writes `ca.pem`, `agent.pem` and `agent-key.pem` (0600) to `out_dir`, by default
/// `dir/agents/<cluster>/`. Replaces an earlier bundle for the same cluster.
pub fn issue_agent(
    dir: &Path,
    cluster: &ClusterName,
    out_dir: Option<&Path>,
) -> Result<AgentBundle, TlsError> {
    let out = out_dir.map_or_else(
        || dir.join(AGENTS_DIR).join(cluster.as_str()),
        Path::to_owned,
    );
    let material = load_ca(dir)?.issue_client(&Identity::Agent {
        cluster: cluster.clone(),
    })?;
    let mut plan = Plan::default();
    plan.material(&out, material, AGENT_CERT_FILE, AGENT_KEY_FILE);
    plan.write(&out)?;
    Ok(AgentBundle {
        ca: out.join(CA_CERT_FILE),
        cert: out.join(AGENT_CERT_FILE),
        key: out.join(AGENT_KEY_FILE),
        dir: out,
    })
}

/// Issues a client certificate for an additional user `name` with `role` with the CA in `dir` and
/// writes `ca.pem`, `user.pem` and `user-key.pem` (0600) to `out`, by default
/// `dir/users/<name>/`, plus a `cafectl.yaml` pointing at them when `dir/cafectl.yaml` says where
/// the hub is. Replaces an earlier bundle for the same user.
pub fn issue_user(
    dir: &Path,
    name: &str,
    role: Role,
    out: Option<&Path>,
) -> Result<UserBundle, TlsError> {
    validate_user_name(name)?;
    let out = out.map_or_else(|| dir.join(USERS_DIR).join(name), Path::to_owned);
    let material = load_ca(dir)?.issue_client(&Identity::User {
        name: name.to_owned(),
        role,
    })?;
    let admin_config = dir.join(CAFECTL_CONFIG_FILE);
    let hub = if admin_config.exists() {
        Some(CafectlConfig::load(&admin_config)?.hub)
    } else {
        None
    };
    let mut plan = Plan::default();
    plan.material(&out, material, USER_CERT_FILE, USER_KEY_FILE);
    let config = hub.map(|hub| {
        let path = out.join(CAFECTL_CONFIG_FILE);
        plan.configs.push((
            path.clone(),
            CafectlConfig {
                hub,
                hubs: Vec::new(),
                ca: CA_CERT_FILE.into(),
                cert: USER_CERT_FILE.into(),
                key: USER_KEY_FILE.into(),
                tls_server_name: None,
            },
        ));
        path
    });
    plan.write(&out)?;
    Ok(UserBundle {
        ca: out.join(CA_CERT_FILE),
        cert: out.join(USER_CERT_FILE),
        key: out.join(USER_KEY_FILE),
        config,
        dir: out,
    })
}

/// Loads the CA from `dir/ca.pem` and `dir/ca-key.pem`.
pub fn load_ca(dir: &Path) -> Result<CertificateAuthority, TlsError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    CertificateAuthority::from_pem(
        &read_text(&cert_path)?,
        &cert_path.display().to_string(),
        &read_text(&key_path)?,
        &key_path.display().to_string(),
    )
}
