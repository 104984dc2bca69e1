//! ReleasePipelines end to end on the playground (hub and agents as separate processes), driven
//! with cafectl: bad pipelines refused by field with nothing stored; three stages over three
//! deployments in order, Hangzhou's units before Shanghai's, behind an approval gate that survives
//! a SIGKILL of the hub; a direct release of a driven deployment refused; and a crash-looping
//! release in stage 2 rolling stages 2 and 1 back. No request lost.

mod common;

use cafe_federation::tls::Role;
use cafe_sim::member::Backend;
use cafe_tests::demo::DEMO_YAML;
use cafe_tests::driver::{
    apply_yaml, awaiting_confirm, deployment, pipeline_status, settled, status, wait_status,
};
use cafe_tests::playground::PlaygroundOptions;
use cafe_tests::playground::{POLL, Playground};
use common::{BINARY, Setup, cafectl, cafectl_json};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(120);

/// A backend: one pod per unit, one group per stage, no pause of its own.
fn backend(name: &str, image: &str) -> String {
    format!(
        "apiVersion: cafe.io/v1alpha1
kind: CafeDeployment
metadata: {{name: {name}, namespace: finance}}
spec:
  replicas: 4
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: app
          image: {image}
  topology:
    units: [sh-az1, sh-az2, hz-az1, hz-az2]
  strategy:
    batches: 1
    pause: Auto
    maxUnavailable: 1
    minReadySeconds: 1
  traffic:
    finalizers: [traffic.cafe.io/lb]
    drainSeconds: 1
"
    )
}

const PIPELINE: &str = "apiVersion: cafe.io/v1alpha1
kind: ReleasePipeline
metadata: {name: q4, namespace: finance}
spec:
  stages:
    - name: backends
      regions: [cn-hangzhou]
      gate: Approval
      releases:
        - {deployment: ledger, images: {app: registry.example/ledger:2.0.0}}
        - {deployment: accounts, images: {app: registry.example/accounts:2.0.0}}
    - name: backends-shanghai
      releases: [{deployment: ledger}, {deployment: accounts}]
    - name: front
      releases:
        - {deployment: payments, images: {app: registry.example/payments:1.1.0}}
  onFailure: RollbackAll
";

/// The pipeline of the failure: stage 2's image crash-loops.
const BROKEN: &str = "apiVersion: cafe.io/v1alpha1
kind: ReleasePipeline
metadata: {name: q4-fix, namespace: finance}
spec:
  stages:
    - name: ledger
      releases: [{deployment: ledger, images: {app: registry.example/ledger:2.0.1}}]
    - name: accounts
      releases: [{deployment: accounts, images: {app: registry.example/accounts:2.0.1-crashloop}}]
  onFailure: RollbackAll
";

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

/// Polls the pipeline's status until `done` holds.
async fn wait_pipeline(
    pg: &Playground,
    name: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let until = tokio::time::Instant::now() + STEP;
    loop {
        let (code, out, _) = cafectl(
            pg,
            Role::Viewer,
            &["pipeline", "status", name, "-n", "finance", "-o", "json"],
        );
        if code == 0
            && let Ok(status) = serde_json::from_str::<Value>(&out)
        {
            if done(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the pipeline did not reach {what} within {STEP:?}: {status:#}"
            );
        } else {
            assert!(
                tokio::time::Instant::now() < until,
                "no pipeline status within {STEP:?}: {out}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn is(phase: &'static str, stage: &'static str) -> impl Fn(&Value) -> bool {
    move |s| s["phase"] == phase && s["stage"] == stage
}

/// Waits for ledger, accounts and payments to settle; their revisions.
async fn settle_all(
    client: &mut cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
) -> [String; 3] {
    let mut revisions = Vec::new();
    for name in ["ledger", "accounts", "payments"] {
        let s = wait_status(client, &deployment("finance", name), STEP, |_| {}, settled)
            .await
            .expect("the deployment settles");
        revisions.push(s.current_revision);
    }
    revisions.try_into().expect("three")
}

/// What the observer saw break the pipeline's order.
#[derive(Default)]
struct Order {
    samples: usize,
    violations: Vec<String>,
}

/// Watches the three deployments and then the pipeline, over and over: while the pipeline (read
/// after the deployments) is still at stage 0, no Shanghai unit of a backend may be given a pod to
/// update (its target), and before stage 2 the front may not have started.
async fn watch_order(
    pg: &Playground,
    from: [String; 3],
) -> (Arc<Mutex<Order>>, tokio::task::JoinHandle<()>) {
    let order = Arc::new(Mutex::new(Order::default()));
    let seen = Arc::clone(&order);
    let mut client = pg.client(Role::Viewer).await.expect("client");
    let task = tokio::spawn(async move {
        loop {
            let mut statuses = Vec::new();
            for name in ["ledger", "accounts", "payments"] {
                match status(&mut client, &deployment("finance", name)).await {
                    Ok(s) => statuses.push(s),
                    Err(_) => break,
                }
            }
            let pipeline = pipeline_status(&mut client, "finance", "q4").await;
            let (Ok(value), 3) = (pipeline, statuses.len()) else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            let stage = value["stageIndex"].as_u64();
            let phase = value["phase"].as_str().unwrap_or_default().to_owned();
            {
                let mut order = seen.lock().expect("order");
                order.samples += 1;
                let before = |n: u64| phase != "Succeeded" && stage.is_some_and(|s| s < n);
                for s in &statuses[..2] {
                    for unit in s.units.iter().filter(|u| u.unit.starts_with("sh-")) {
                        if before(1)
                            && s.update_revision != from[if s.name == "ledger" { 0 } else { 1 }]
                            && unit.target > 0
                        {
                            order.violations.push(format!(
                                "{} moved {} in stage 0 ({phase})",
                                s.name, unit.unit
                            ));
                        }
                    }
                }
                if before(2) && statuses[2].update_revision != from[2] {
                    order.violations.push(format!(
                        "payments started before stage front ({phase} {stage:?})"
                    ));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    });
    (order, task)
}

/// The notices the hub posts.
type Notices = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver that accepts every notice: its URL and what it heard.
async fn receiver() -> (String, Notices) {
    let notices = Notices::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let kept = Arc::clone(&notices);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| async move {
            kept.lock().expect("notices").push(body.0);
            axum::http::StatusCode::OK
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, notices)
}

/// The pipeline notices about `name`, as `TYPE STAGE`.
fn pipeline_notices(notices: &Notices, name: &str) -> Vec<String> {
    notices
        .lock()
        .expect("notices")
        .iter()
        .filter(|n| n["pipeline"]["name"] == name)
        .map(|n| {
            format!(
                "{} {}",
                n["type"].as_str().unwrap_or_default(),
                n["stage"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

async fn scrape(url: &str) -> String {
    cafe_federation::http_client::get(url, Duration::from_secs(5))
        .await
        .expect("the hub serves its metrics")
        .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_releases_stage_by_stage_and_rolls_back_as_one() {
    let (hook, notices) = receiver().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics_port = cafe_sim::control_plane::free_port().expect("port");
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let mut options = PlaygroundOptions::new(dir.path(), BINARY).with_backend(Backend::from_env());
    options.hub_args = vec![
        "--notify-webhook".to_owned(),
        hook,
        "--metrics-listen".to_owned(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    let playground = Playground::start(options)
        .await
        .expect("the playground starts");
    let mut setup = Setup { playground, dir };
    let dir = setup.dir.path().to_owned();
    let mut client = setup
        .playground
        .client(Role::Operator)
        .await
        .expect("client");
    let apps = format!(
        "{}---\n{}---\n{DEMO_YAML}",
        backend("ledger", "registry.example/ledger:1.0.0"),
        backend("accounts", "registry.example/accounts:1.0.0")
    );
    apply_yaml(&mut client, &apps)
        .await
        .expect("apply the applications");
    let from = settle_all(&mut client).await;
    let pg = &setup.playground;

    // Bad pipelines: refused with exit code 2 naming the field, and nothing stored.
    let bad = [
        (
            PIPELINE.replace(
                "        - {deployment: payments, images: {app: registry.example/payments:1.1.0}}",
                "        - {deployment: payments, images: {app: registry.example/payments:1.1.0}}\n        - {deployment: acounts, images: {app: registry.example/accounts:2.0.0}}",
            ),
            "spec.stages[2].releases[1].deployment",
            "CafeDeployment finance/acounts not found",
        ),
        (
            PIPELINE.replace(
                "    - name: backends-shanghai\n      releases:",
                "    - name: backends-shanghai\n      regions: [cn-hangzhou]\n      releases:",
            ),
            "spec.stages[1].releases[0].deployment",
            "already released in cn-hangzhou by stage backends",
        ),
        (
            PIPELINE.replace("regions: [cn-hangzhou]", "regions: [cn-hongkong]"),
            "spec.stages[0].regions[0]",
            "unknown region cn-hongkong",
        ),
        (
            PIPELINE.replace(
                "{app: registry.example/ledger:2.0.0}",
                "{api: registry.example/ledger:2.0.0}",
            ),
            "spec.stages[0].releases[0].images.api",
            "has no container api",
        ),
    ];
    for (i, (text, field, reason)) in bad.iter().enumerate() {
        let file = write(&dir, &format!("bad-{i}.yaml"), text);
        let (code, out, err) = cafectl(pg, Role::Operator, &["apply", "-f", &file]);
        assert_eq!(code, 2, "bad pipeline {i} exit code: {out}{err}");
        assert!(
            err.contains(field) && err.contains(reason),
            "bad pipeline {i}: {err}"
        );
    }
    let listed = cafectl_json(pg, &["get", "pipelines", "-o", "json"]);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    for (i, name) in ["ledger", "accounts", "payments"].iter().enumerate() {
        let s = status(&mut client, &deployment("finance", name))
            .await
            .expect("status");
        assert_eq!(
            s.update_revision, from[i],
            "a refused pipeline moved {name}"
        );
    }

    // The pipeline, watched all along for releases out of order.
    let (order, watcher) = watch_order(pg, from.clone()).await;
    let file = write(&dir, "q4.yaml", PIPELINE);
    let (code, out, err) = cafectl(pg, Role::Operator, &["apply", "-f", &file]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("releasepipeline/finance/q4 created"), "{out}");
    let gate = wait_pipeline(
        pg,
        "q4",
        "the approval gate",
        is("AwaitingApproval", "backends"),
    )
    .await;
    assert_eq!(gate["gateState"], "Waiting");
    assert!(
        gate["waitingFor"]
            .as_str()
            .is_some_and(|w| w.contains("approve")),
        "{gate}"
    );
    for name in ["ledger", "accounts"] {
        let s = status(&mut client, &deployment("finance", name))
            .await
            .expect("status");
        assert_eq!(
            (s.phase.as_str(), s.reason.as_str()),
            ("Paused", "AwaitingStage"),
            "{name}"
        );
        for unit in &s.units {
            let moved = if unit.unit.starts_with("hz-") {
                unit.replicas
            } else {
                0
            };
            assert_eq!(
                unit.updated_ready, moved,
                "{name} in {} after stage backends",
                unit.unit
            );
        }
    }
    // The plan shows which stage moves which units.
    let plan = cafectl_json(pg, &["plan", "ledger", "-n", "finance", "-o", "json"]);
    let stages: Vec<&str> = plan["batches"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["stage"].as_str())
        .collect();
    assert_eq!(stages, ["backends", "backends-shanghai"], "{plan}");
    // A direct release of a driven deployment is refused, naming the pipeline; nothing changes.
    let direct = write(
        &dir,
        "ledger-direct.yaml",
        &backend("ledger", "registry.example/ledger:9.9.9"),
    );
    let (code, _, err) = cafectl(pg, Role::Operator, &["apply", "-f", &direct]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("spec.template") && err.contains("pipeline finance/q4"),
        "{err}"
    );
    let scraped = scrape(&metrics).await;
    assert!(
        scraped.contains(r#"cafe_pipeline_info{namespace="finance",name="q4",phase="AwaitingApproval",stage="backends"} 1"#),
        "{scraped}"
    );
    let table = cafectl(
        pg,
        Role::Viewer,
        &["pipeline", "status", "q4", "-n", "finance"],
    )
    .1;
    assert!(
        table.contains("AwaitingApproval at stage backends (1/3)"),
        "{table}"
    );

    // SIGKILL of the hub at the gate: it waits at the same gate after the restart.
    setup.playground.kill_hub().await.expect("kill -9 the hub");
    setup
        .playground
        .start_hub()
        .await
        .expect("the hub restarts");
    let pg = &setup.playground;
    let mut client = pg.client(Role::Operator).await.expect("client");
    let after = wait_pipeline(pg, "q4", "the gate after the restart", |s| s["phase"] != "").await;
    assert_eq!(
        (after["phase"].as_str(), after["stage"].as_str()),
        (Some("AwaitingApproval"), Some("backends")),
        "{after}"
    );
    // An approval naming another stage changes nothing; the right one opens the gate.
    let (code, out, _) = cafectl(
        pg,
        Role::Operator,
        &[
            "pipeline", "approve", "q4", "-n", "finance", "--stage", "front",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("at stage backends, not front"), "{out}");
    let (code, out, err) = cafectl(
        pg,
        Role::Operator,
        &[
            "pipeline",
            "approve",
            "q4",
            "-n",
            "finance",
            "--stage",
            "backends",
            "--reason",
            "hangzhou looks good",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stage backends-shanghai starts"), "{out}");

    // The front's own pauses still hold it: continue it group by group.
    wait_pipeline(pg, "q4", "stage front", is("Running", "front")).await;
    let payments = deployment("finance", "payments");
    loop {
        let s = wait_status(
            &mut client,
            &payments,
            STEP,
            |_| {},
            |s| awaiting_confirm(s) || settled(s),
        )
        .await
        .expect("the front's group finishes");
        if s.phase == "Stable" && s.current_revision != from[2] {
            break;
        }
        let (code, _, err) = cafectl(
            pg,
            Role::Operator,
            &[
                "continue",
                "payments",
                "-n",
                "finance",
                "--batch",
                &s.batch.to_string(),
                "--reason",
                "front group verified",
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    let done = wait_pipeline(pg, "q4", "success", |s| s["phase"] == "Succeeded").await;
    assert!(
        done["releases"]
            .as_array()
            .expect("releases")
            .iter()
            .all(|r| r["standing"] == "Done"),
        "{done:#}"
    );
    watcher.abort();
    let (samples, violations) = {
        let order = order.lock().expect("order");
        (order.samples, order.violations.clone())
    };
    assert!(samples > 10, "the observer saw {samples} samples");
    assert!(violations.is_empty(), "{violations:?}");
    let released = settle_all(&mut client).await;
    for (i, revision) in released.iter().enumerate() {
        assert_ne!(*revision, from[i], "deployment {i} was not released");
    }

    // A crash-looping image in stage 2 stops the pipeline, and RollbackAll returns stage 2, then
    // stage 1, to their revisions from before it.
    let file = write(&dir, "q4-fix.yaml", BROKEN);
    let (code, _, err) = cafectl(pg, Role::Operator, &["apply", "-f", &file]);
    assert_eq!(code, 0, "{err}");
    let back = wait_pipeline(pg, "q4-fix", "the rollback", |s| s["phase"] == "RolledBack").await;
    assert!(
        back["message"]
            .as_str()
            .is_some_and(|m| m.contains("accounts: PodsFailing")),
        "{back:#}"
    );
    for (i, name) in ["ledger", "accounts"].iter().enumerate() {
        let s = wait_status(
            &mut client,
            &deployment("finance", name),
            STEP,
            |_| {},
            settled,
        )
        .await
        .expect("rolled back");
        assert_eq!(
            (s.reason.as_str(), &s.current_revision),
            ("RolledBack", &released[i]),
            "{name}"
        );
    }
    let audit = cafectl(pg, Role::Viewer, &["audit", "-o", "json"]).1;
    let audit: Value = serde_json::from_str(&audit).expect("audit JSON");
    let lines: Vec<String> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} | {} | {}", r["who"], r["what"], r["result"]))
        .collect();
    let find = |needle: &str| lines.iter().position(|l| l.contains(needle));
    assert!(
        find("continue finance/payments (front group verified)").is_some(),
        "{lines:#?}"
    );
    assert!(
        find("pipeline approve finance/q4 (hangzhou looks good)").is_some(),
        "{lines:#?}"
    );
    // Newest first: accounts (stage 2) went back before ledger (stage 1).
    let rolled = |name: &str| {
        lines
            .iter()
            .position(|l| l.contains("rollback --to-revision") && l.contains(name))
    };
    let (accounts_back, ledger_back) = (rolled("finance/accounts"), rolled("finance/ledger"));
    assert!(
        matches!((accounts_back, ledger_back), (Some(a), Some(l)) if l < a),
        "stage 2 rolls back before stage 1: {lines:#?}"
    );

    // What a webhook heard, and what the metrics say, of both pipelines.
    cafe_tests::driver::poll_until(
        std::time::Instant::now(),
        STEP,
        "the rollback's notice",
        || {
            let last = pipeline_notices(&notices, "q4-fix").last().cloned();
            async move { last.is_some_and(|l| l.starts_with("PipelineRolledBack")) }
        },
    )
    .await
    .expect("the notices arrive");
    assert_eq!(
        pipeline_notices(&notices, "q4"),
        [
            "PipelineStageStarted backends",
            "PipelineAwaitingApproval backends",
            "PipelineStageStarted backends-shanghai",
            "PipelineStageStarted front",
            "PipelineSucceeded -",
        ]
    );
    assert_eq!(
        pipeline_notices(&notices, "q4-fix"),
        [
            "PipelineStageStarted ledger",
            "PipelineStageStarted accounts",
            "PipelineRollingBack accounts",
            "PipelineRollingBack ledger",
            "PipelineRolledBack -",
        ]
    );
    let scraped = scrape(&metrics).await;
    for line in [
        r#"cafe_pipeline_info{namespace="finance",name="q4",phase="Succeeded",stage=""} 1"#,
        r#"cafe_pipeline_info{namespace="finance",name="q4-fix",phase="RolledBack",stage=""} 1"#,
        r#"cafe_pipeline_stage{namespace="finance",name="q4"} -1"#,
    ] {
        assert!(scraped.contains(line), "{line} not in {scraped}");
    }

    let (sent, lost) = pg.traffic();
    assert!(sent > 0, "the load balancers sent no traffic");
    assert_eq!(lost, 0, "requests lost during the pipelines");
}
