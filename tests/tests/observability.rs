//! What a platform team's tooling sees of the hub: the notification webhook (each release and
//! failover event once, in order, retried when the receiver fails), the labelled state metrics, the
//! audit records as JSON log lines, and the deployment's `conditions[]`.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use cafe_federation::tls::Role;
use cafe_sim::member::Backend;
use cafe_tests::driver::{awaiting_confirm, command, deployment, poll_until, settled, wait_status};
use cafe_tests::playground::{Playground, PlaygroundOptions};
use common::{BINARY, cafectl};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(120);

/// A receiver that refuses every notice's first attempt with 503 and accepts the retry.
#[derive(Default)]
struct Receiver {
    attempts: Vec<String>,
    accepted: Vec<Value>,
}

async fn receive(
    State(receiver): State<Arc<Mutex<Receiver>>>,
    body: axum::Json<Value>,
) -> StatusCode {
    let mut receiver = receiver.lock().expect("receiver");
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    let first = !receiver.attempts.contains(&id);
    receiver.attempts.push(id);
    if first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    receiver.accepted.push(body.0);
    StatusCode::OK
}

/// The accepted notices as `TYPE` or `TYPE/group`.
fn kinds(receiver: &Mutex<Receiver>) -> Vec<String> {
    receiver
        .lock()
        .expect("receiver")
        .accepted
        .iter()
        .map(|n| match n["group"].as_u64() {
            Some(group) => format!("{}/{group}", n["type"].as_str().unwrap_or_default()),
            None => format!(
                "{} {}",
                n["type"].as_str().unwrap_or_default(),
                n["unit"].as_str().unwrap_or_default()
            ),
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
async fn notifications_metrics_audit_lines_and_conditions() {
    let receiver = Arc::new(Mutex::new(Receiver::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&receiver));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let metrics_port = cafe_sim::control_plane::free_port().expect("port");
    let mut options = PlaygroundOptions::new(dir.path(), BINARY).with_backend(Backend::from_env());
    options.hub_args = vec![
        "--notify-webhook".to_owned(),
        hook,
        "--metrics-listen".to_owned(),
        format!("127.0.0.1:{metrics_port}"),
        "--log-format".to_owned(),
        "json".to_owned(),
    ];
    let pg = Playground::start(options)
        .await
        .expect("the playground starts");
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let reference = deployment("finance", "payments");
    let mut client = pg.client(Role::Operator).await.expect("client");
    cafe_tests::driver::apply_yaml(&mut client, cafe_tests::demo::DEMO_YAML)
        .await
        .expect("apply");
    wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("1.0.0 everywhere");

    // A release through its three groups, confirmed twice.
    cafe_tests::driver::apply_yaml(
        &mut client,
        &cafe_tests::demo::DEMO_YAML.replace("payments:1.0.0", "payments:1.1.0"),
    )
    .await
    .expect("apply 1.1.0");
    for group in 0..2 {
        wait_status(&mut client, &reference, STEP, |_| {}, awaiting_confirm)
            .await
            .expect("the group waits");
        if group == 0 {
            // The state metrics, while paused at group 0.
            let text = scrape(&metrics).await;
            for line in [
                "cafe_deployment_info{namespace=\"finance\",name=\"payments\",phase=\"Paused\",reason=\"AwaitingConfirm\"} 1",
                "cafe_deployment_group{namespace=\"finance\",name=\"payments\"} 0",
                "cafe_cluster_connected{cluster=\"sh-dc1\"} 1",
                &format!(
                    "cafe_build_info{{version=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION")
                ),
            ] {
                assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
            }
            // conditions[], as Kubernetes workloads have them.
            let (code, out, err) = cafectl(
                &pg,
                Role::Viewer,
                &["get", "deployments", "finance/payments", "-o", "json"],
            );
            assert_eq!(code, 0, "{err}");
            let document: Value = serde_json::from_str(&out).expect("JSON");
            let conditions = document["status"]["conditions"]
                .as_array()
                .expect("conditions");
            let condition = |kind: &str| {
                conditions
                    .iter()
                    .find(|c| c["type"] == kind)
                    .unwrap_or_else(|| panic!("no {kind} condition in {conditions:?}"))
                    .clone()
            };
            assert_eq!(condition("Available")["status"], "True");
            assert_eq!(condition("Progressing")["status"], "True");
            assert_eq!(condition("Paused")["status"], "True");
            assert_eq!(condition("Paused")["reason"], "AwaitingConfirm");
            for c in conditions {
                assert!(
                    c["lastTransitionTime"]
                        .as_str()
                        .is_some_and(|t| t.ends_with('Z')),
                    "{c}"
                );
                assert!(c["message"].is_string(), "{c}");
            }
        }
        client
            .r#continue(command(&reference, Some(group)))
            .await
            .expect("continue");
    }
    wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("1.1.0 everywhere");

    // A datacenter evacuated, then failed back.
    let evacuate = cafectl(
        &pg,
        Role::Admin,
        &[
            "failover", "evacuate", "--unit", "sh-az1", "--reason", "drill",
        ],
    );
    assert_eq!(evacuate.0, 0, "{}", evacuate.2);
    let failback = cafectl(
        &pg,
        Role::Admin,
        &[
            "failover",
            "failback",
            "--unit",
            "sh-az1",
            "--reason",
            "drill over",
        ],
    );
    assert_eq!(failback.0, 0, "{}", failback.2);

    let expected = [
        "ReleaseStarted/0",
        "GroupDone/0",
        "AwaitingConfirmation/0",
        "GroupDone/1",
        "AwaitingConfirmation/1",
        "GroupDone/2",
        "ReleaseComplete/2",
        "Evacuated sh-az1",
        "FailedBack sh-az1",
    ];
    poll_until(Instant::now(), STEP, "every notice delivered", || async {
        kinds(&receiver).len() >= expected.len()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", kinds(&receiver)));
    // Each once, in order, though every first attempt was refused.
    assert_eq!(kinds(&receiver), expected);
    {
        let receiver = receiver.lock().expect("receiver");
        assert_eq!(receiver.attempts.len(), 2 * expected.len());
        let first = &receiver.accepted[0];
        assert_eq!(first["deployment"]["namespace"], "finance");
        assert_eq!(first["deployment"]["name"], "payments");
        assert!(
            first["revision"].is_string() && first["time"].is_string(),
            "{first}"
        );
        assert_eq!(receiver.accepted[7]["message"], "drill");
    }
    let text = scrape(&metrics).await;
    assert!(
        text.lines().any(|l| l
            == format!(
                "cafe_hub_notifications_total{{result=\"delivered\"}} {}",
                expected.len()
            )),
        "{text}"
    );

    // The audit log, as structured lines in the hub's JSON log.
    let log = std::fs::read_to_string(dir.path().join("logs/hub.log")).expect("the hub's log");
    let audits: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "cafe::audit")
        .collect();
    let evacuation = audits
        .iter()
        .find(|a| {
            a["fields"]["what"]
                .as_str()
                .is_some_and(|w| w.contains("evacuate") && w.contains("sh-az1"))
        })
        .unwrap_or_else(|| panic!("no evacuation among {audits:?}"));
    assert!(
        evacuation["fields"]["who"]
            .as_str()
            .is_some_and(|w| w.contains("admin"))
    );
    assert_eq!(evacuation["fields"]["result"], "ok");
    pg.shutdown().await;
}
