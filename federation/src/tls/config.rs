//! The cafectl configuration file: where the hub is and which credentials to present.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tonic::transport::ClientTlsConfig;

use super::TlsError;
use super::files::{Access, read_text, write_file};
use super::material::client_tls_config;

/// What cafectl needs to reach the hub, as written by `cafe-hub init`:
///
/// ```yaml
/// hub: https://127.0.0.1:7443
/// # or, for several hub replicas (cafectl finds the leader):
/// # hubs: [https://hub-0:7443, https://hub-1:7443, https://hub-2:7443]
/// ca: ca.pem
/// cert: admin.pem
/// key: admin-key.pem
/// # optional: verify the hub's certificate as this name instead of the URL's host
/// # tlsServerName: hub.bank.example
/// ```
///
/// Relative paths are relative to the directory of the file; [`CafectlConfig::load`] resolves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CafectlConfig {
    /// The hub's URL, `https://HOST:PORT` (`http://` only for a hub started with `--insecure`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hub: String,
    /// The URLs of several hub replicas, instead of `hub`: cafectl talks to the leader.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hubs: Vec<String>,
    /// The CA certificate that verifies the hub.
    pub ca: PathBuf,
    /// The client certificate (its subject is the user's name and role).
    pub cert: PathBuf,
    /// The client certificate's private key.
    pub key: PathBuf,
    /// The name the hub's certificate must be valid for, when it is not the URL's host (an
    /// ingress routing by server name, an address the certificate does not carry).
    #[serde(
        rename = "tlsServerName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_server_name: Option<String>,
}

impl CafectlConfig {
    /// Reads a configuration file, checks the hub URL and resolves relative paths against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let text = read_text(path)?;
        let invalid = |source: Box<dyn std::error::Error + Send + Sync>| TlsError::InvalidConfig {
            path: path.to_owned(),
            source,
        };
        let mut config: CafectlConfig = serde_saphyr::with_deserializer_from_str(&text, |yaml| {
            Ok(serde_path_to_error::deserialize(yaml))
        })
        .map_err(|error| invalid(Box::new(error)))?
        .map_err(|error| invalid(Box::new(error)))?;
        config.check_urls(&path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new(""));
        for file in [&mut config.ca, &mut config.cert, &mut config.key] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    /// The hub replicas' URLs: `hubs`, or else `hub`.
    pub fn urls(&self) -> Vec<String> {
        if self.hubs.is_empty() {
            vec![self.hub.clone()]
        } else {
            self.hubs.clone()
        }
    }

    fn check_urls(&self, what: &str) -> Result<(), TlsError> {
        if self.hub.is_empty() && self.hubs.is_empty() {
            return check_hub_url("", &format!("{what}: hub (or hubs)"));
        }
        if !self.hub.is_empty() {
            check_hub_url(&self.hub, what)?;
        }
        for url in &self.hubs {
            check_hub_url(url, &format!("{what}: hubs"))?;
        }
        Ok(())
    }

    /// The client TLS configuration for these credentials: the hub's certificate must be valid
    /// for `tlsServerName` when set, else for the host of the URL dialled.
    pub fn client_tls_config(&self) -> Result<ClientTlsConfig, TlsError> {
        client_tls_config(
            &self.ca,
            &self.cert,
            &self.key,
            self.tls_server_name.as_deref(),
        )
    }
}

/// Writes `config` to `path` as YAML, paths as given (relative ones are read back relative to
/// `path`'s directory).
pub fn write_cafectl_config(path: &Path, config: &CafectlConfig) -> Result<(), TlsError> {
    config.check_urls("the cafectl configuration")?;
    let text = serde_saphyr::to_string(config).map_err(|source| TlsError::SerializeConfig {
        path: path.to_owned(),
        source,
    })?;
    write_file(path, &text, Access::Public)
}

/// Checks that `url` is an `http(s)://` URL tonic can connect to; `what` says where it came from.
pub(super) fn check_hub_url(url: &str, what: &str) -> Result<(), TlsError> {
    let invalid = |reason: String| TlsError::InvalidHubUrl {
        what: what.to_owned(),
        url: url.to_owned(),
        reason,
    };
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|err| invalid(format!("{err}")))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(invalid("it must start with https://".to_owned())),
    }
    if uri.host().is_none() {
        return Err(invalid("it has no host".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use super::*;

    #[test]
    fn load_resolves_relative_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cafectl.yaml");
        write_cafectl_config(
            &path,
            &CafectlConfig {
                hub: "https://127.0.0.1:7443".into(),
                hubs: Vec::new(),
                ca: "ca.pem".into(),
                cert: "sub/admin.pem".into(),
                key: "/abs/admin-key.pem".into(),
                tls_server_name: None,
            },
        )
        .unwrap();
        let loaded = CafectlConfig::load(&path).unwrap();
        assert_eq!(loaded.hub, "https://127.0.0.1:7443");
        assert_eq!(loaded.ca, dir.path().join("ca.pem"));
        assert_eq!(loaded.cert, dir.path().join("sub/admin.pem"));
        assert_eq!(loaded.key, PathBuf::from("/abs/admin-key.pem"));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "hub: https://h:1\nca: a\ncert: b\nkey: c\nextra: 1\n",
        )
        .unwrap();
        let err = CafectlConfig::load(&path).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            chain.contains("c.yaml: invalid cafectl configuration"),
            "{chain}"
        );
        assert!(chain.contains("extra"), "{chain}");

        std::fs::write(&path, "hub: ftp://h:1\nca: a\ncert: b\nkey: c\n").unwrap();
        let err = CafectlConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("c.yaml") && err.contains("ftp://h:1"), "{err}");
    }
}
