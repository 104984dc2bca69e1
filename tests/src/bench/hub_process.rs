//! The hub under test, as a separate process (`cafe-playground hub serve`), so that its memory and
//! CPU can be read from `/proc` apart from the benchmark's agents.

use anyhow::{Context as _, bail};
use cafe_federation::tls::{CafectlConfig, InitOptions, Role, config_file_name, init};
use cafe_proto::v1 as pb;
use cafe_proto::v1::federation_client::FederationClient;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// How long the hub gets to print its addresses.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// `/proc/PID/stat` counts CPU time in clock ticks of `USER_HZ`, which the Linux ABI fixes at 100.
const USER_HZ: f64 = 100.0;
/// The first stdout line of `cafe-hub serve` names the gRPC address after this prefix.
const LISTENING_PREFIX: &str = "cafe-hub listening on ";
/// The second names the metrics address.
const METRICS_PREFIX: &str = "cafe-hub metrics on http://";
/// The ack counter in the hub's `/metrics` text.
const ACKS_METRIC: &str = "cafe_hub_slice_acks_total";
/// The sent-slices counter.
const SENT_METRIC: &str = "cafe_hub_slices_sent_total";
/// Generous room for a large Apply.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The hub's resource use so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

/// A running hub process with its certificates and data in a temporary directory.
#[derive(Debug)]
pub struct HubProcess {
    child: Child,
    pid: u32,
    /// The gRPC address.
    pub grpc: SocketAddr,
    metrics: SocketAddr,
    /// The directory of `cafe-hub init` (CA, hub certificate, cafectl configs).
    pub pki: PathBuf,
    /// The hub's log (stderr).
    pub log: PathBuf,
    /// The etcd cluster of a hub on etcd.
    etcd: Option<cafe_sim::control_plane::etcd::EtcdCluster>,
    _dir: tempfile::TempDir,
}

/// The store the benchmark's hub runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BenchStore {
    /// One redb file (the default hub).
    #[default]
    Redb,
    /// Three etcd members on this machine; the hub is the elected leader of its replica set.
    Etcd,
}

impl BenchStore {
    /// The store's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redb => "redb",
            Self::Etcd => "etcd",
        }
    }
}

impl HubProcess {
    /// Makes certificates and starts `binary hub serve` on a free loopback port, on `store`.
    pub async fn start(binary: &Path, store: BenchStore) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot make the hub's temporary directory")?;
        let pki = dir.path().join("pki");
        let mut options = InitOptions::new(&pki);
        options.force = true;
        init(&options).context("cannot create the hub's certificates")?;
        let log = dir.path().join("hub.log");
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(binary);
        command
            .args(["hub", "serve", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"]);
        let etcd = match store {
            BenchStore::Redb => {
                command.arg("--data-dir").arg(dir.path().join("data"));
                None
            }
            BenchStore::Etcd => {
                let etcd =
                    cafe_sim::control_plane::etcd::EtcdCluster::start(dir.path().join("etcd"), 3)
                        .await
                        .context(
                            "cannot start etcd (build it with scripts/control-plane.sh build)",
                        )?;
                command
                    .args(["--store", "etcd", "--etcd-endpoints"])
                    .arg(etcd.urls().join(","));
                Some(etcd)
            }
        };
        let mut child = command
            .arg("--tls-dir")
            .arg(&pki)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} hub serve", binary.display()))?;
        let pid = child.id().context("the hub exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut grpc, mut metrics) = (None, None);
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                    grpc = Some(addr.trim().parse::<SocketAddr>()?);
                } else if let Some(rest) = line.strip_prefix(METRICS_PREFIX) {
                    let addr = rest.trim().trim_end_matches("/metrics");
                    metrics = Some(addr.parse::<SocketAddr>()?);
                }
                if grpc.is_some() && metrics.is_some() {
                    return anyhow::Ok(());
                }
            }
            bail!(
                "the hub exited before naming its addresses; see {}",
                log.display()
            )
        };
        tokio::time::timeout(STARTUP_DEADLINE, read)
            .await
            .context("the hub did not start in time")??;
        // Keep draining stdout so that a later line never finds a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (Some(grpc), Some(metrics)) = (grpc, metrics) else {
            bail!("the hub named no address");
        };
        let hub = Self {
            child,
            pid,
            grpc,
            metrics,
            pki,
            log,
            etcd,
            _dir: dir,
        };
        if hub.etcd.is_some() {
            hub.wait_leading().await?;
        }
        Ok(hub)
    }

    /// Waits until the replica leads (it campaigns after it names its addresses).
    async fn wait_leading(&self) -> anyhow::Result<()> {
        let config = CafectlConfig::load(&self.pki.join(config_file_name(Role::Admin)))?;
        let until = tokio::time::Instant::now() + STARTUP_DEADLINE;
        loop {
            let channel = tonic::transport::Endpoint::from_shared(self.url())?
                .tls_config(config.client_tls_config()?)?
                .connect()
                .await;
            if let Ok(channel) = channel {
                let mut client = pb::replica_client::ReplicaClient::new(channel);
                if let Ok(info) = client.get_replica(pb::GetReplicaRequest {}).await
                    && info.get_ref().role == "Leader"
                {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > until {
                bail!(
                    "the hub did not lead within {STARTUP_DEADLINE:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    /// A Federation client with the admin certificate.
    pub async fn admin(&self) -> anyhow::Result<FederationClient<Channel>> {
        let config = CafectlConfig::load(&self.pki.join(config_file_name(Role::Admin)))?;
        let channel = tonic::transport::Endpoint::from_shared(self.url())?
            .tls_config(config.client_tls_config()?)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .context("cannot reach the hub")?;
        Ok(FederationClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Peak memory and CPU time so far, from `/proc`.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        read_usage(self.pid)
    }

    /// A counter from the hub's `/metrics`.
    pub async fn counter(&self, name: &str) -> anyhow::Result<u64> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        parse_counter(&body, name).with_context(|| format!("no {name} in the hub's metrics"))
    }

    /// Slice acknowledgements the hub has received.
    pub async fn acks(&self) -> anyhow::Result<u64> {
        self.counter(ACKS_METRIC).await
    }

    /// Slice messages the hub has sent.
    pub async fn sent(&self) -> anyhow::Result<u64> {
        self.counter(SENT_METRIC).await
    }

    /// The last `lines` lines of the hub's log, to explain a failed run (the log goes with the
    /// temporary directory).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the hub has received at least `count` acks; fails after `deadline`.
    pub async fn wait_acks(
        &self,
        count: u64,
        poll: Duration,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let acks = self.acks().await?;
            if acks >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() > until {
                bail!("the hub has {acks} of {count} acks after {deadline:?}");
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Whether the hub still runs.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the hub exited with {status}; see {}", self.log.display());
        }
        Ok(())
    }

    /// Stops the hub (SIGKILL: its state is thrown away with the directory).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The value of a counter in Prometheus text.
fn parse_counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

fn read_usage(pid: u32) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(Usage {
        peak_rss_mib: hwm_kib / 1024.0,
        cpu_seconds: cpu_ticks(&stat).context("unreadable /proc/PID/stat")? / USER_HZ,
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line; the command name (field 2) may hold
/// spaces, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Waits until the hub lists every one of `clusters` as connected.
pub async fn wait_connected(
    client: &mut FederationClient<Channel>,
    clusters: usize,
    deadline: Duration,
) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let list = client.list_clusters(pb::ListClustersRequest {}).await?;
        let connected = list
            .into_inner()
            .clusters
            .iter()
            .filter(|c| c.state == "Connected")
            .count();
        if connected >= clusters {
            return Ok(());
        }
        if tokio::time::Instant::now() > until {
            bail!("{connected} of {clusters} agents connected after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "42 (cafe play (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_ticks(stat), Some(280.0));
    }

    #[test]
    fn counters_are_read_from_prometheus_text() {
        let text = "# HELP x\ncafe_hub_slice_acks_total 1234\ncafe_hub_slices_sent_total 5\n";
        assert_eq!(parse_counter(text, ACKS_METRIC), Some(1234));
        assert_eq!(parse_counter(text, "missing"), None);
    }

    #[test]
    fn this_process_has_usage() {
        let usage = read_usage(std::process::id()).expect("readable");
        assert!(usage.peak_rss_mib > 0.0);
    }
}
