//! cafectl's hub commands, run as the real binary against a hub served in-process over mTLS on
//! loopback, with the admin, operator and viewer certificates of `tls::init`. No agents: the
//! units' clusters stay disconnected, which is all these commands need.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cafe_federation::hub::Hub;
use cafe_federation::hub::clock::SystemClock;
use cafe_federation::hub::server::{ServeOptions, serve_hub};
use cafe_federation::store::MemoryStore;
use cafe_federation::tls::{self, CafectlConfig, InitOptions, Role};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::Command;
use tokio::sync::oneshot;

/// How long the hub may take to start, and any one cafectl run to finish.
const DEADLINE: Duration = Duration::from_secs(60);

/// A hub serving on an ephemeral port, and cafectl configurations pointing at it.
struct TestHub {
    dir: TempDir,
    tls_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), cafe_federation::hub::server::ServeError>>,
}

impl TestHub {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        tls::init(&InitOptions::new(&tls_dir)).unwrap();
        let hub = Hub::load(Box::new(MemoryStore::default()), Arc::new(SystemClock)).unwrap();
        let options = ServeOptions {
            data_dir: dir.path().join("unused"),
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            tls_dir: Some(tls_dir.clone()),
            insecure: false,
            failover: Default::default(),
            advertise_url: None,
            replicated: None,
            notify_webhook: None,
        };
        let (bound_tx, bound_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve_hub(
            hub,
            options,
            move |bound| {
                let _ = bound_tx.send(bound.grpc);
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let addr = tokio::time::timeout(DEADLINE, bound_rx)
            .await
            .expect("the hub starts in time")
            .expect("the hub reports its address");
        for role in Role::ALL {
            rewrite_hub(
                &tls_dir.join(tls::config_file_name(role)),
                &format!("https://127.0.0.1:{}", addr.port()),
            );
        }
        Self {
            dir,
            tls_dir,
            stop: Some(stop),
            served,
        }
    }

    fn config(&self, role: Role) -> PathBuf {
        self.tls_dir.join(tls::config_file_name(role))
    }

    /// Runs cafectl as `role`.
    async fn cafectl(&self, role: Role, args: &[&str]) -> Run {
        let config = self.config(role);
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        cafectl(&all).await
    }

    /// Runs cafectl as the admin and insists that it succeeds.
    async fn admin_ok(&self, args: &[&str]) -> Run {
        let run = self.cafectl(Role::Admin, args).await;
        assert_eq!(run.code, 0, "cafectl {args:?}: {}", run.stderr);
        run
    }

    /// Writes `value` as a file in the test's directory.
    fn write(&self, name: &str, value: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    }

    /// Stops the hub and waits until it has; returns the directory, which lives on until dropped.
    async fn stop(mut self) -> TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(DEADLINE, &mut self.served)
            .await
            .expect("the hub stops in time")
            .unwrap()
            .unwrap();
        self.dir
    }
}

/// Points a cafectl configuration at `url`.
fn rewrite_hub(path: &Path, url: &str) {
    let mut config = CafectlConfig::load(path).unwrap();
    config.hub = url.to_owned();
    tls::write_cafectl_config(path, &config).unwrap();
}

/// What a cafectl run printed, and its exit code.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs cafectl in an empty directory (so that no `cafectl.yaml` is found by default).
async fn cafectl(args: &[&str]) -> Run {
    let cwd = tempfile::tempdir().unwrap();
    let output: Output = tokio::time::timeout(
        DEADLINE,
        Command::new(env!("CARGO_BIN_EXE_cafectl"))
            .args(args)
            .current_dir(cwd.path())
            .env_remove("CAFE_CONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("cafectl finishes in time")
    .expect("cafectl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name)
        .display()
        .to_string()
}

/// A hub holding the example units and the payments deployment, applied by the admin.
async fn hub_with_payments() -> TestHub {
    let hub = TestHub::start().await;
    let run = hub.admin_ok(&["apply", "-f", &example("units.yaml")]).await;
    assert_eq!(
        run.stdout,
        "logicalunit/sh-az1 created\nlogicalunit/sh-az2 created\nlogicalunit/hz-az1 created\n\
         logicalunit/hz-az2 created\n"
    );
    let run = hub
        .admin_ok(&["apply", "-f", &example("payments.yaml")])
        .await;
    assert_eq!(run.stdout, "cafedeployment/finance/payments created\n");
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_documents_read_back_and_apply_again_unchanged() {
    let hub = hub_with_payments().await;

    // A deployment read back with its status applies again as it is.
    let run = hub
        .admin_ok(&[
            "get",
            "deployments",
            "payments",
            "-n",
            "finance",
            "-o",
            "json",
        ])
        .await;
    let document = run.json();
    assert_eq!(document["kind"], "CafeDeployment");
    assert_eq!(document["status"]["phase"], "Stable");
    let file = hub.write("payments.json", &run.stdout);
    let run = hub.admin_ok(&["apply", "-f", &file]).await;
    assert_eq!(run.stdout, "cafedeployment/finance/payments unchanged\n");

    // Lists are `{"items": [...]}`; each item applies again, here as YAML.
    let run = hub.admin_ok(&["get", "units", "-o", "json"]).await;
    let items = run.json()["items"].as_array().unwrap().clone();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hz-az1", "hz-az2", "sh-az1", "sh-az2"]);
    let file = hub.write("unit.yaml", &serde_saphyr::to_string(&items[2]).unwrap());
    let run = hub.admin_ok(&["apply", "-f", &file]).await;
    assert_eq!(run.stdout, "logicalunit/sh-az1 unchanged\n");
    let run = hub.admin_ok(&["get", "deployments", "-o", "yaml"]).await;
    let list: Value = serde_saphyr::from_str(&run.stdout).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "payments");

    // Tables.
    let run = hub.admin_ok(&["get", "units"]).await;
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", run.stdout);
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["sh-az1", "cn-shanghai", "sh-dc1", "sh-dc1", "1", "Active"]
    );
    let run = hub.admin_ok(&["get", "deployments"]).await;
    assert!(
        run.stdout.lines().any(|l| l
            .split_whitespace()
            .take(5)
            .eq(["finance", "payments", "10", "2", "Stable"])),
        "{}",
        run.stdout
    );

    // A dry run reports without storing.
    let changed = std::fs::read_to_string(example("payments.yaml"))
        .unwrap()
        .replace("replicas: 10", "replicas: 12");
    let file = hub.write("payments-12.yaml", &changed);
    let run = hub.admin_ok(&["apply", "--dry-run", "-f", &file]).await;
    assert_eq!(
        run.stdout,
        "cafedeployment/finance/payments configured (dry run)\n"
    );
    let run = hub
        .admin_ok(&["get", "deployments", "finance/payments", "-o", "json"])
        .await;
    assert_eq!(run.json()["spec"]["replicas"], 10);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_history_and_audit() {
    let hub = hub_with_payments().await;

    let run = hub
        .admin_ok(&["status", "payments", "-n", "finance", "-o", "json"])
        .await;
    let status = run.json();
    let keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "name",
        "namespace",
        "phase",
        "reason",
        "batch",
        "batches",
        "currentRevision",
        "updateRevision",
        "message",
        "units",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected, "{status}");
    assert_eq!(status["name"], "payments");
    assert_eq!(status["namespace"], "finance");
    assert_eq!(status["phase"], "Stable");
    assert_eq!(status["batches"], 3);
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    let units = status["units"].as_array().unwrap();
    assert_eq!(units.len(), 2);
    for (unit, cluster) in units.iter().zip(["sh-dc1", "sh-dc2"]) {
        assert_eq!(unit["cluster"], cluster);
        assert_eq!(unit["connected"], false);
        assert_eq!(unit["replicas"], 5);
        for key in ["ready", "updated", "updatedReady", "target"] {
            assert!(unit[key].is_i64(), "{key} in {unit}");
        }
    }

    let run = hub.admin_ok(&["status", "finance/payments"]).await;
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("finance/payments: Stable") && !lines[0].contains("group"),
        "{}",
        run.stdout
    );
    let header = lines.iter().position(|l| l.starts_with("UNIT")).unwrap();
    assert_eq!(
        lines[header].split_whitespace().collect::<Vec<_>>(),
        [
            "UNIT",
            "CLUSTER",
            "CONNECTED",
            "REPLICAS",
            "READY",
            "UPDATED",
            "UPDATED-READY",
            "TARGET"
        ]
    );
    assert_eq!(
        lines[header + 1]
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>(),
        ["sh-az1", "sh-dc1", "no", "5"],
        "{}",
        run.stdout
    );

    let run = hub
        .admin_ok(&["history", "payments", "-n", "finance", "-o", "json"])
        .await;
    let revisions = run.json()["items"].as_array().unwrap().clone();
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0]["number"], 1);
    assert_eq!(revisions[0]["current"], true);
    assert_eq!(revisions[0]["name"], status["currentRevision"]);
    assert_eq!(
        revisions[0]["template"]["spec"]["containers"][0]["image"],
        "registry.example/payments:1.0.0"
    );
    let run = hub.admin_ok(&["history", "finance/payments"]).await;
    let row: Vec<&str> = run
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&"1"));
    assert_eq!(row.last(), Some(&"*"));

    let run = hub.admin_ok(&["audit", "-o", "json"]).await;
    let entries = run.json()["items"].as_array().unwrap().clone();
    let apply = entries
        .iter()
        .find(|e| e["what"].as_str().unwrap().contains("payments"))
        .unwrap_or_else(|| panic!("no apply of payments in {entries:?}"));
    assert!(
        apply["what"].as_str().unwrap().starts_with("apply"),
        "{apply}"
    );
    assert!(apply["who"].as_str().unwrap().contains("admin"), "{apply}");
    assert_eq!(apply["result"], "ok");
    let run = hub.admin_ok(&["audit", "--limit", "1"]).await;
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_streams_one_json_document_per_line() {
    let hub = hub_with_payments().await;
    let config = hub.config(Role::Viewer);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cafectl"))
        .args(["--config", config.to_str().unwrap()])
        .args(["status", "finance/payments", "--watch", "-o", "json"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the first status comes in time")
        .unwrap()
        .expect("a line");
    let status: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(status["phase"], "Stable");

    // A change (here: a new image starts a release) arrives as another line.
    let changed = std::fs::read_to_string(example("payments.yaml"))
        .unwrap()
        .replace("payments:1.0.0", "payments:1.1.0");
    let file = hub.write("payments-1.1.yaml", &changed);
    let run = hub.admin_ok(&["apply", "-f", &file]).await;
    assert_eq!(run.stdout, "cafedeployment/finance/payments configured\n");
    let released = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the watch goes on");
            let status: Value = serde_json::from_str(&line).unwrap();
            if status["phase"] != "Stable" {
                return status;
            }
        }
    })
    .await
    .expect("the release shows in time");
    assert_ne!(released["currentRevision"], released["updateRevision"]);
    child.start_kill().unwrap();
    let _ = child.wait().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_each_certificate_may_do() {
    let hub = hub_with_payments().await;

    // A viewer reads but may not drive a release nor apply.
    let run = hub
        .cafectl(Role::Viewer, &["status", "finance/payments"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = hub
        .cafectl(Role::Viewer, &["continue", "payments", "-n", "finance"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("error: permission denied: "),
        "{}",
        run.stderr
    );
    let run = hub
        .cafectl(Role::Viewer, &["apply", "-f", &example("payments.yaml")])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("error: permission denied: "),
        "{}",
        run.stderr
    );

    // An operator drives releases; on a stable deployment that changes nothing, and says so.
    for verb in ["pause", "continue"] {
        let run = hub
            .cafectl(Role::Operator, &[verb, "payments", "-n", "finance"])
            .await;
        assert_eq!(run.code, 0, "{verb}: {}", run.stderr);
        assert!(
            run.stdout
                .starts_with("cafedeployment/finance/payments unchanged: ")
                && run.stdout.contains("nothing to"),
            "{verb}: {}",
            run.stdout
        );
    }
    let run = hub
        .cafectl(
            Role::Operator,
            &["continue", "finance/payments", "--batch", "2", "-o", "json"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["phase"], "Stable");
    assert!(run.stderr.contains("unchanged"), "{}", run.stderr);

    // An operator may apply deployments but not units (admin only).
    let run = hub
        .cafectl(Role::Operator, &["apply", "-f", &example("payments.yaml")])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "cafedeployment/finance/payments unchanged\n");
    let run = hub
        .cafectl(Role::Operator, &["apply", "-f", &example("units.yaml")])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("error: permission denied: "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("admin"), "{}", run.stderr);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_stores_nothing() {
    let hub = hub_with_payments().await;

    // The hub refuses an unknown unit, naming the field; cafectl names the file.
    let unknown = std::fs::read_to_string(example("payments.yaml"))
        .unwrap()
        .replace("name: payments", "name: orders")
        .replace("units: [sh-az1, sh-az2]", "units: [sh-az1, sh-az9]");
    let file = hub.write("orders.yaml", &unknown);
    let run = hub.cafectl(Role::Admin, &["apply", "-f", &file]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("error: {file}: CafeDeployment finance/orders: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("spec.topology.units[1]"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("sh-az9"), "{}", run.stderr);

    // A file cafectl cannot read is refused before anything is sent.
    let broken = std::fs::read_to_string(example("payments.yaml"))
        .unwrap()
        .replace("name: payments", "name: broken")
        .replace("replicas: 10", "replicas: ten");
    let file = hub.write("broken.yaml", &broken);
    let run = hub.cafectl(Role::Admin, &["apply", "-f", &file]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("error: {file}: document 1"))
            && run.stderr.contains("spec.replicas"),
        "{}",
        run.stderr
    );

    let run = hub.admin_ok(&["get", "deployments", "-o", "json"]).await;
    let names: Vec<Value> = run.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("payments")]);

    // Flags: no such output format, a namespace twice.
    let run = hub
        .cafectl(Role::Admin, &["get", "units", "-o", "xml"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = hub
        .cafectl(Role::Admin, &["status", "finance/payments", "-n", "other"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_delete_and_plan() {
    let hub = hub_with_payments().await;

    let run = hub.admin_ok(&["get", "clusters", "-o", "json"]).await;
    let clusters = run.json()["items"].as_array().unwrap().clone();
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hz-dc1", "hz-dc2", "sh-dc1", "sh-dc2"]);
    let sh1 = &clusters[2];
    assert_eq!(sh1["state"], "Disconnected");
    assert_eq!(sh1["units"], json!(["sh-az1"]));
    for key in ["agentVersion", "lastSeen", "slices"] {
        assert!(sh1.get(key).is_some(), "{key} in {sh1}");
    }
    let run = hub.admin_ok(&["get", "clusters"]).await;
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("sh-dc1") && l.contains("Disconnected") && l.contains("sh-az1")),
        "{}",
        run.stdout
    );

    // The hub plans as the offline planner does, from a file or the stored deployment.
    let offline = cafectl(&[
        "plan",
        "-f",
        &example("payments.yaml"),
        "--units",
        &example("units.yaml"),
        "-o",
        "json",
    ])
    .await;
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    let from_file = hub
        .admin_ok(&["plan", "-f", &example("payments.yaml"), "-o", "json"])
        .await;
    assert_eq!(from_file.stdout, offline.stdout);
    let stored = hub
        .cafectl(
            Role::Viewer,
            &["plan", "payments", "-n", "finance", "-o", "json"],
        )
        .await;
    assert_eq!(stored.code, 0, "{}", stored.stderr);
    assert_eq!(stored.stdout, offline.stdout);
    let table = hub.admin_ok(&["plan", "finance/payments"]).await;
    assert!(table.stdout.contains("+1=1"), "{}", table.stdout);

    // A unit in use cannot go; the deployment can, once.
    let run = hub
        .cafectl(Role::Admin, &["delete", "unit", "sh-az1"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("payments"), "{}", run.stderr);
    let run = hub
        .cafectl(
            Role::Viewer,
            &["delete", "deployment", "payments", "-n", "finance"],
        )
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    let run = hub
        .admin_ok(&["delete", "deployment", "payments", "-n", "finance"])
        .await;
    assert_eq!(run.stdout, "cafedeployment/finance/payments deleted\n");
    let run = hub
        .admin_ok(&["delete", "deployment", "finance/payments"])
        .await;
    assert_eq!(
        run.stdout,
        "cafedeployment/finance/payments not found: nothing deleted\n"
    );
    let run = hub.admin_ok(&["delete", "unit", "sh-az1"]).await;
    assert_eq!(run.stdout, "logicalunit/sh-az1 deleted\n");
    let run = hub
        .cafectl(Role::Admin, &["status", "finance/payments"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hub_is_named() {
    let hub = TestHub::start().await;
    let config = hub.config(Role::Admin);
    let _dir = hub.stop().await;
    // The stopped hub's port is closed now.
    let url = CafectlConfig::load(&config).unwrap().hub;
    let run = cafectl(&["--config", config.to_str().unwrap(), "get", "units"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot reach the hub at {url}")),
        "{}",
        run.stderr
    );

    // No configuration at all is bad input.
    let run = cafectl(&["get", "units"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
}

#[tokio::test]
async fn the_hub_answers_grpc_health_checks_over_mtls() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let hub = TestHub::start().await;
    let config = CafectlConfig::load(&hub.config(Role::Viewer)).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(config.hub.clone())
        .unwrap()
        .tls_config(config.client_tls_config().unwrap())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in [
        "",
        "cafe.federation.v1.Federation",
        "cafe.federation.v1.AgentLink",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn completion_scripts_for_three_shells() {
    for (shell, marker) in [
        ("bash", "complete -F _cafectl"),
        ("zsh", "#compdef cafectl"),
        ("fish", "complete -c cafectl"),
    ] {
        let run = cafectl(&["completion", shell]).await;
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        // The subcommands are in it.
        assert!(run.stdout.contains("promote"), "{shell}");
    }
    let run = cafectl(&["completion", "tcsh"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = cafectl(&["version"]).await;
    assert_eq!(
        run.stdout,
        format!("Client Version: {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_lists_the_services_by_reflection_v1alpha() {
    // scripts/test.sh installs grpcio and grpcio-reflection and names the interpreter.
    let Ok(python) = std::env::var("CAFE_PYTHON") else {
        eprintln!("skipped: CAFE_PYTHON (a Python with grpcio-reflection) is not set");
        return;
    };
    let hub = TestHub::start().await;
    let config = CafectlConfig::load(&hub.config(Role::Viewer)).unwrap();
    let target = config.hub.trim_start_matches("https://").to_owned();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/reflection_v1alpha.py");
    let output = tokio::time::timeout(
        DEADLINE,
        Command::new(python)
            .arg(script)
            .arg(&target)
            .args([&config.ca, &config.cert, &config.key])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes in time")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<&str> = stdout.lines().collect();
    let files = lines.pop().unwrap();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "cafe.federation.v1.AgentLink",
            "cafe.federation.v1.Federation",
            "cafe.federation.v1.Replica",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "{stdout}"
    );
    assert!(
        files.starts_with("files: ") && files != "files: 0",
        "{files}"
    );
    hub.stop().await;
}
