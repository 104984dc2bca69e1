//! What the playground's releases are verified with: a real Prometheus server scraping every
//! cluster's simulated application, and a webhook gate that asks each cluster's application
//! (`POST /sim/v1/check`) about the units a group changed.

use anyhow::{Context as _, bail};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cafe_federation::http_client;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The environment variable naming the Prometheus binary; otherwise `prometheus` on the PATH.
pub const PROMETHEUS_BIN_ENV: &str = "CAFE_PROMETHEUS_BIN";
/// How often Prometheus scrapes each cluster.
pub const SCRAPE_INTERVAL: &str = "1s";
/// How long Prometheus gets to come up.
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(60);

/// Where the Prometheus binary is, or how to install it.
pub fn prometheus_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(PROMETHEUS_BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    found.with_context(|| {
        format!(
            "--prometheus needs the prometheus server, which is not installed: \
             `apt-get install prometheus` (Debian's package; scripts/test.sh installs it), \
             or set {PROMETHEUS_BIN_ENV}"
        )
    })
}

/// A running Prometheus server.
#[derive(Debug)]
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping each `(cluster, control URL)` every second with a
    /// `cluster` label, and waits until it is ready.
    pub async fn start(dir: &Path, targets: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let binary = prometheus_binary()?;
        std::fs::create_dir_all(dir)?;
        let mut config = format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n"
        );
        for (cluster, control) in targets {
            let address = control.trim_start_matches("http://");
            config.push_str(&format!(
                "  - job_name: {cluster}\n    scrape_interval: {SCRAPE_INTERVAL}\n    static_configs:\n      - targets: ['{address}']\n        labels: {{cluster: {cluster}}}\n"
            ));
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = cafe_sim::control_plane::free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let mut prometheus = Self { url, child };
        let deadline = tokio::time::Instant::now() + PROMETHEUS_DEADLINE;
        loop {
            let ready = http_client::get(
                &format!("{}/-/ready", prometheus.url),
                Duration::from_secs(2),
            )
            .await
            .is_ok_and(|a| a.status == 200);
            if ready {
                break;
            }
            if let Some(status) = prometheus.child.try_wait()? {
                bail!(
                    "prometheus exited ({status}); see {}",
                    dir.join("prometheus.log").display()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("prometheus was not ready within {PROMETHEUS_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(prometheus)
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The webhook gate: forwards a release webhook's body to the check endpoint of every cluster it
/// names, and passes only when every one passes.
#[derive(Debug)]
pub struct CheckGate {
    /// `http://127.0.0.1:PORT/check`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, serde::Deserialize)]
struct GateQuery {
    #[serde(rename = "maxErrorRatio")]
    max_error_ratio: Option<f64>,
}

impl CheckGate {
    /// Serves the gate for clusters `controls` (name to control URL) on a free port.
    pub async fn start(controls: BTreeMap<String, String>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/check", listener.local_addr()?);
        let router = Router::new()
            .route("/check", post(gate))
            .with_state(Arc::new(controls));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { url, task })
    }
}

impl Drop for CheckGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn gate(
    State(controls): State<Arc<BTreeMap<String, String>>>,
    Query(query): Query<GateQuery>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let clusters: Vec<String> = body["units"]
        .as_array()
        .map(|units| {
            units
                .iter()
                .filter_map(|u| u["cluster"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if clusters.is_empty() {
        return (StatusCode::BAD_REQUEST, "the body names no unit").into_response();
    }
    let suffix = query
        .max_error_ratio
        .map_or_else(String::new, |r| format!("?maxErrorRatio={r}"));
    let mut answers = Vec::new();
    let mut worst = StatusCode::OK;
    for cluster in clusters {
        let Some(control) = controls.get(&cluster) else {
            return (
                StatusCode::BAD_REQUEST,
                format!("unknown cluster {cluster}"),
            )
                .into_response();
        };
        let url = format!("{control}/sim/v1/check{suffix}");
        match http_client::post_json(&url, &body, Duration::from_secs(5)).await {
            Ok(answer) => {
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                if !status.is_success() && worst.is_success() {
                    worst = status;
                }
                answers.push(serde_json::json!({"cluster": cluster, "status": answer.status, "answer": answer.body}));
            }
            Err(error) => {
                worst = StatusCode::BAD_GATEWAY;
                answers.push(serde_json::json!({"cluster": cluster, "error": error.to_string()}));
            }
        }
    }
    (worst, Json(serde_json::Value::Array(answers))).into_response()
}
