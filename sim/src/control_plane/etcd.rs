//! A multi-member etcd cluster of real etcd processes (the binary of [`super::binaries`]), for
//! the replicated hub: members can be killed, started again, stopped and continued.

use super::process::{self, Process, free_port};
use super::{POLL, READY_DEADLINE, binaries, io_error};
use crate::error::SimError;
use std::path::{Path, PathBuf};

/// One member.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health` and `/metrics` (the client port may be TLS).
    metrics_port: u16,
    tls: bool,
    process: Option<Process>,
}

/// The files of a TLS etcd cluster: its CA, and a client certificate it accepts.
#[derive(Debug, Clone)]
pub struct EtcdClientTls {
    /// The CA certificate (it signed the members' and the client's certificates).
    pub ca: PathBuf,
    /// The client certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

impl Member {
    fn client_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running etcd cluster.
#[derive(Debug)]
pub struct EtcdCluster {
    bin: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
    tls: Option<EtcdClientTls>,
}

impl EtcdCluster {
    /// Starts `size` members with their data under `dir` (emptied first), and waits until every
    /// one reports itself healthy.
    pub async fn start(dir: impl AsRef<Path>, size: usize) -> Result<Self, SimError> {
        Self::start_with(dir, size, false).await
    }

    /// [`EtcdCluster::start`] with TLS on the client port and client certificates required
    /// (`--client-cert-auth`); [`EtcdCluster::client_tls`] has what a client needs.
    pub async fn start_tls(dir: impl AsRef<Path>, size: usize) -> Result<Self, SimError> {
        Self::start_with(dir, size, true).await
    }

    async fn start_with(dir: impl AsRef<Path>, size: usize, tls: bool) -> Result<Self, SimError> {
        let bin = binaries()?.join("etcd");
        let dir = super::fresh_dir(dir.as_ref())?;
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            members.push(Member {
                name: format!("etcd{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                metrics_port: free_port()?,
                tls,
                process: None,
            });
        }
        let tls = if tls {
            let authority = super::pki::Authority::generate()?;
            let server = authority.issue_server("etcd")?;
            let client = authority.issue_client("cafe-hub")?;
            let files = dir.join("tls");
            std::fs::create_dir_all(&files)
                .map_err(io_error(format!("cannot create {}", files.display())))?;
            let write = |name: &str, text: &str| {
                let path = files.join(name);
                std::fs::write(&path, text)
                    .map_err(io_error(format!("cannot write {}", path.display())))?;
                Ok::<_, SimError>(path)
            };
            write("server.pem", &server.cert_pem)?;
            write("server-key.pem", &server.key_pem)?;
            Some(EtcdClientTls {
                ca: write("ca.pem", authority.cert_pem())?,
                cert: write("client.pem", &client.cert_pem)?,
                key: write("client-key.pem", &client.key_pem)?,
            })
        } else {
            None
        };
        let mut cluster = Self {
            bin,
            dir,
            members,
            tls,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_healthy(i).await?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, index: usize) -> Result<(), SimError> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        let member = &self.members[index];
        let mut args = vec![
            format!("--name={}", member.name),
            format!("--data-dir={}", self.dir.join(&member.name).display()),
            format!("--listen-client-urls={}", member.client_url()),
            format!("--advertise-client-urls={}", member.client_url()),
            format!("--listen-peer-urls={}", member.peer_url()),
            format!("--initial-advertise-peer-urls={}", member.peer_url()),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=new".into(),
            "--initial-cluster-token=cafe-hub-test".into(),
            // Test data: losing it in a power cut does not matter, fsync latency does.
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
            format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                member.metrics_port
            ),
        ];
        if let Some(tls) = &self.tls {
            let files = self.dir.join("tls");
            args.extend([
                format!("--cert-file={}", files.join("server.pem").display()),
                format!("--key-file={}", files.join("server-key.pem").display()),
                format!("--trusted-ca-file={}", tls.ca.display()),
                "--client-cert-auth=true".to_owned(),
            ]);
        }
        let log = self.dir.join(format!("logs/{}.log", member.name));
        let process = Process::spawn(&member.name, &self.bin, &args, &log)?;
        self.members[index].process = Some(process);
        Ok(())
    }

    async fn wait_healthy(&self, index: usize) -> Result<(), SimError> {
        let member = &self.members[index];
        let Some(process) = &member.process else {
            return Err(SimError::ControlPlane {
                what: format!("{} is not running", member.name),
                source: None,
            });
        };
        let addr = format!("127.0.0.1:{}", member.metrics_port);
        process::wait_until(READY_DEADLINE, POLL, process, || {
            process::http_get_contains(&addr, "/health", "\"health\":\"true\"")
        })
        .await
    }

    /// The CA and client certificate of a TLS cluster.
    pub fn client_tls(&self) -> Option<&EtcdClientTls> {
        self.tls.as_ref()
    }

    /// Every member's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// The client ports, in member order.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    /// Kills member `index` (SIGKILL) and waits for it to be gone.
    pub async fn kill(&mut self, index: usize) {
        if let Some(process) = self.members[index].process.take() {
            process.kill().await;
        }
    }

    /// Starts member `index` again on its data and waits until the cluster it rejoins is healthy
    /// through it (which needs a quorum).
    pub async fn restart(&mut self, index: usize) -> Result<(), SimError> {
        // A restarted member joins the existing cluster from its data directory: the initial
        // cluster flags are ignored then.
        self.spawn(index)?;
        self.wait_healthy(index).await
    }
}
