//! Child processes of a control plane: started with their output in a log file, killed when
//! dropped, and waited for with a deadline that also notices an early exit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::error::SimError;

/// One component's process.
#[derive(Debug)]
pub(crate) struct Process {
    name: String,
    pid: Option<u32>,
    log: PathBuf,
    child: Mutex<Child>,
}

/// The first port of the kernel's ephemeral range (outgoing connections take their local ports
/// from it), or Linux's default when it cannot be read.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A free loopback port for a server that binds it later (and again after a restart).
///
/// It is picked below the kernel's ephemeral range: a port from that range (what binding port 0
/// gives) can be taken in the meantime as the local port of any outgoing connection on the
/// machine, and the server then fails to bind. Binding port 0 remains the fallback.
pub fn free_port() -> Result<u16, SimError> {
    use rand::RngExt as _;
    // Tests of one binary run at once: a port handed to one must not go to another before it
    // binds it (the check below only sees ports already bound).
    static HANDED: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let top = ephemeral_start();
    let bottom = 10_000.min(top.saturating_sub(1));
    for _ in 0..200 {
        let port = rand::rng().random_range(bottom..top);
        let mut handed = HANDED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !handed.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return Ok(port);
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| SimError::Bind {
        addr: "127.0.0.1:0".into(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| SimError::Bind {
            addr: "127.0.0.1:0".into(),
            source,
        })?
        .port();
    Ok(port)
}

impl Process {
    /// Starts `program` with `args`, its stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Self, SimError> {
        let io = |what: String| {
            move |source| SimError::ControlPlane {
                what,
                source: Some(source),
            }
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("cannot open {}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(io(format!("cannot open {}", log.display())))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("cannot start {}", program.display())))?;
        tracing::debug!(component = name, pid = ?child.id(), "started");
        Ok(Self {
            name: name.to_string(),
            pid: child.id(),
            log: log.to_path_buf(),
            child: Mutex::new(child),
        })
    }

    /// Sends a signal by name (`STOP`, `CONT`) with `kill(1)`, unless the process has exited (its
    /// pid may belong to another process by now).
    pub(crate) fn signal(&self, signal: &str) -> Result<(), SimError> {
        let exited = || SimError::ControlPlane {
            what: format!("{} has exited", self.name),
            source: None,
        };
        let pid = self.pid.ok_or_else(exited)?;
        let mut child = self.child.try_lock().map_err(|_| SimError::ControlPlane {
            what: format!("{} is being stopped", self.name),
            source: None,
        })?;
        if !matches!(child.try_wait(), Ok(None)) {
            return Err(exited());
        }
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(|source| SimError::ControlPlane {
                what: format!("cannot signal {}", self.name),
                source: Some(source),
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(SimError::ControlPlane {
                what: format!("kill -{signal} {pid} ({}) failed: {status}", self.name),
                source: None,
            })
        }
    }

    /// An error if the process has exited, naming its log.
    async fn exited(&self) -> Option<SimError> {
        let status = self.child.lock().await.try_wait().ok().flatten()?;
        Some(SimError::ControlPlane {
            what: format!(
                "{} exited with {status}; see {}",
                self.name,
                self.log.display()
            ),
            source: None,
        })
    }

    /// Kills the process and waits for it.
    pub(crate) async fn kill(&self) {
        let mut child = self.child.lock().await;
        let _ = child.kill().await;
    }
}

/// How long one readiness probe may take; a probe that hangs counts as "not yet".
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `GET path` on the plain-HTTP server at `addr` answers a body containing `needle`.
pub(crate) async fn http_get_contains(addr: &str, path: &str, needle: &str) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.is_ok() && answer.contains(needle)
}

/// Waits until `ready` says so, failing at the deadline or as soon as `process` exits.
pub(crate) async fn wait_until<F, Fut>(
    deadline: Duration,
    poll: Duration,
    process: &Process,
    mut ready: F,
) -> Result<(), SimError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if tokio::time::timeout(PROBE_TIMEOUT, ready()).await == Ok(true) {
            return Ok(());
        }
        if let Some(error) = process.exited().await {
            return Err(error);
        }
        if tokio::time::Instant::now() > until {
            return Err(SimError::ControlPlane {
                what: format!(
                    "{} was not ready within {deadline:?}; see {}",
                    process.name,
                    process.log.display()
                ),
                source: None,
            });
        }
        tokio::time::sleep(poll).await;
    }
}
