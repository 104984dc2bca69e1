//! Reaching the hub: the global connection flags, the cafectl configuration, and turning gRPC
//! failures into cafectl's errors and exit codes.

use super::CliError;
use crate::error_chain;
use crate::tls::CafectlConfig;
use cafe_proto::v1 as pb;
use cafe_proto::v1::federation_client::FederationClient;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The configuration read when neither `--config` nor `CAFE_CONFIG` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "cafectl.yaml";

/// How long to wait for the TCP (and TLS) connection to the hub: long enough for a hub across a
/// WAN, short enough that a wrong address fails while the operator still looks at the terminal.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a single non-streaming call may take. The hub answers from memory, so anything near
/// this is a hub in trouble.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest response accepted: a `get deployments` over many deployments. Matches the hub.
use cafe_proto::protocol::MAX_MESSAGE_BYTES;

/// Where the hub is and which credentials to present. Global: valid before or after the command.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// The cafectl configuration (hub URL and client certificate), as written by `cafe-hub init`.
    /// Default: `cafectl.yaml` in the current directory, if present.
    #[arg(long, env = "CAFE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The hub's URL; overrides the configuration's `hub`.
    #[arg(long, global = true, value_name = "URL")]
    pub hub: Option<String>,
    /// Talk plaintext gRPC to a hub started with `cafe-hub serve --insecure` (local tries only);
    /// the URL must be `http://`.
    #[arg(long, global = true)]
    pub insecure: bool,
}

/// A connected client, with the address it reached for error messages.
#[derive(Debug, Clone)]
pub struct HubClient {
    /// The generated client.
    pub client: FederationClient<Channel>,
    /// Its channel, for the hub's other services.
    pub channel: Channel,
    /// The hub's URL, as given.
    pub url: String,
    /// Whether the connection is plaintext (`--insecure`).
    pub insecure: bool,
}

impl HubArgs {
    /// The configuration file to read: `--config`/`CAFE_CONFIG`, else `./cafectl.yaml` if present.
    fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = Path::new(DEFAULT_CONFIG_FILE);
            default.exists().then(|| default.to_owned())
        })
    }

    /// Whether a hub is named at all (by a configuration file or `--hub`), so that commands that
    /// can also work offline know whether to try.
    pub fn configured(&self) -> bool {
        self.hub.is_some() || self.config_path().is_some()
    }

    /// The configuration, if there is one.
    fn config(&self) -> Result<Option<CafectlConfig>, CliError> {
        match self.config_path() {
            Some(path) => CafectlConfig::load(&path)
                .map(Some)
                .map_err(|e| self.bad_config(&e)),
            None => Ok(None),
        }
    }

    fn bad_config(&self, error: &crate::tls::TlsError) -> CliError {
        let path = self
            .config_path()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        CliError::BadInput(format!(
            "error: {} (cafectl configuration {})",
            error_chain(error),
            path.display()
        ))
    }

    /// The replicas' URLs (`--hub`, else the configuration's `hubs` or `hub`) and their endpoints,
    /// with the configuration's credentials.
    pub fn replica_endpoints(&self) -> Result<Vec<(String, Endpoint)>, CliError> {
        let config = self.config()?;
        let urls: Vec<String> = match (&self.hub, &config) {
            (Some(url), _) => url.split(',').map(|u| u.trim().to_owned()).collect(),
            (None, Some(config)) => config.urls(),
            (None, None) => {
                return Err(CliError::BadInput(format!(
                    "error: no hub to talk to: pass --config FILE (or set CAFE_CONFIG, or put \
                     {DEFAULT_CONFIG_FILE} in the current directory), or --hub URL --insecure"
                )));
            }
        };
        urls.into_iter()
            .map(|url| {
                let endpoint = self.endpoint(&url, config.as_ref())?;
                Ok((url, endpoint))
            })
            .collect()
    }

    /// Reads the configuration and connects to the leading hub replica.
    pub async fn connect(&self) -> Result<HubClient, CliError> {
        let replicas = self.replica_endpoints()?;

        // The first replica that answers says who leads; a follower names the leader, which
        // may be a URL of its own (a replica's advertised address) rather than one of the list.
        let mut trouble = Vec::new();
        for (url, endpoint) in &replicas {
            let channel = match endpoint.connect().await {
                Ok(channel) => channel,
                Err(e) => {
                    trouble.push(format!(
                        "cannot reach the hub at {url}: {}",
                        error_chain(&e)
                    ));
                    continue;
                }
            };
            match replica_role(channel.clone()).await {
                Role::Leads | Role::Unknown => return Ok(self.client(channel, url.clone())),
                Role::Follows(leader, _) if leader == *url => {
                    return Ok(self.client(channel, url.clone()));
                }
                Role::Follows(leader, store) => {
                    // The leader's endpoint: the same credentials, its own URL.
                    let endpoint = self.endpoint(&leader, self.config()?.as_ref())?;
                    match endpoint.connect().await {
                        Ok(channel) => return Ok(self.client(channel, leader)),
                        Err(e) => trouble.push(format!(
                            "the hub at {url} (a follower on {store}) follows the leader at \
                             {leader}, which cannot be reached: {}",
                            error_chain(&e)
                        )),
                    }
                }
                Role::Leaderless(why) => trouble.push(format!("the hub at {url}: {why}")),
            }
        }
        Err(CliError::Failed(trouble.join("\n")))
    }

    fn client(&self, channel: Channel, url: String) -> HubClient {
        let client = FederationClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        HubClient {
            client,
            channel,
            url,
            insecure: self.insecure,
        }
    }

    fn endpoint(&self, url: &str, config: Option<&CafectlConfig>) -> Result<Endpoint, CliError> {
        let bad_url =
            |reason: String| CliError::BadInput(format!("error: hub URL {url}: {reason}"));
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| bad_url(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT);
        if self.insecure {
            if !url.starts_with("http://") {
                return Err(bad_url("--insecure needs an http:// URL".to_owned()));
            }
        } else {
            let Some(config) = config else {
                return Err(CliError::BadInput(
                    "error: no client certificate: pass --config FILE (or set CAFE_CONFIG), or \
                     --insecure for a hub started with --insecure"
                        .to_owned(),
                ));
            };
            if !url.starts_with("https://") {
                return Err(bad_url(
                    "it must be https:// (or pass --insecure for a plaintext hub)".to_owned(),
                ));
            }
            let tls = config
                .client_tls_config()
                .map_err(|e| self.bad_config(&e))?;
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| bad_url(error_chain(&e)))?;
        }
        Ok(endpoint)
    }
}

/// What a replica says of itself.
enum Role {
    Leads,
    /// The leader's URL, and the follower's store.
    Follows(String, String),
    Leaderless(String),
    /// It cannot say (a hub from before replicas): talk to it.
    Unknown,
}

async fn replica_role(channel: Channel) -> Role {
    let mut client = pb::replica_client::ReplicaClient::new(channel);
    match client.get_replica(unary(pb::GetReplicaRequest {})).await {
        Ok(reply) => {
            let info = reply.into_inner();
            if info.role == "Leader" {
                Role::Leads
            } else if info.leader_url.is_empty() {
                Role::Leaderless(info.trouble)
            } else {
                Role::Follows(info.leader_url, info.store)
            }
        }
        Err(_) => Role::Unknown,
    }
}

impl HubClient {
    /// Maps a failed call to cafectl's error: INVALID_ARGUMENT is bad input (exit 2), the rest
    /// fails (exit 1), with the hub's message and, for connection trouble, the hub's address.
    pub fn error(&self, status: Status) -> CliError {
        let message = status.message().trim_end().to_owned();
        match status.code() {
            Code::InvalidArgument => CliError::BadInput(
                message
                    .lines()
                    .map(|line| format!("error: {line}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Code::PermissionDenied => CliError::Failed(format!("permission denied: {message}")),
            Code::Unauthenticated => CliError::Failed(format!(
                "the hub at {} did not accept the client certificate: {message}",
                self.url
            )),
            Code::Unavailable | Code::DeadlineExceeded => CliError::Failed(format!(
                "cannot reach the hub at {}: {}",
                self.url,
                status_chain(&status)
            )),
            Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
                CliError::Failed(message)
            }
            Code::Unimplemented => CliError::Failed(format!("the hub cannot do this: {message}")),
            other => {
                // A plaintext client talking to a TLS hub gets only HTTP/2 framing errors.
                // A TLS hub that refuses the client certificate just closes the connection.
                let hint = match (self.insecure, other) {
                    (true, _) => {
                        " (is the hub serving TLS? then use --config instead of --insecure)"
                    }
                    (false, Code::Cancelled | Code::Unknown) => {
                        " (the hub may have refused the client certificate: was it issued by \
                         the hub's CA?)"
                    }
                    (false, _) => "",
                };
                CliError::Failed(format!(
                    "the hub at {} answered {other:?}: {}{hint}",
                    self.url,
                    status_chain(&status)
                ))
            }
        }
    }
}

/// Sets [`CALL_TIMEOUT`] on a unary request.
pub fn unary<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// A deployment reference from `NAME` or `NAMESPACE/NAME` and `-n`; `default` when neither names
/// a namespace.
pub fn deployment_ref(name: &str, namespace: Option<&str>) -> Result<pb::DeploymentRef, CliError> {
    let bad = |m: &str| CliError::BadInput(format!("error: deployment {name:?}: {m}"));
    let (from_name, name) = match name.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name),
    };
    let namespace = match (from_name, namespace) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(&format!("the name says namespace {a}, -n says {b}")));
        }
        (Some(ns), _) | (None, Some(ns)) => ns,
        (None, None) => crate::resources::DEFAULT_NAMESPACE,
    };
    if name.is_empty() || namespace.is_empty() {
        return Err(bad("expected NAME or NAMESPACE/NAME"));
    }
    Ok(pb::DeploymentRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// A status's message and the transport error behind it, if any.
fn status_chain(status: &Status) -> String {
    match std::error::Error::source(status) {
        Some(source) if status.message().is_empty() => error_chain(source),
        Some(source) => format!("{}: {}", status.message(), error_chain(source)),
        None => status.message().to_owned(),
    }
}
