//! Releases verified by metrics and webhooks (`spec.strategy.analysis`), end to end: a hub, four
//! member clusters whose simulated application can be told to answer errors, a real Prometheus
//! scraping them, and webhooks served by the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use cafe_federation::release::DeploymentStatusView;
use cafe_federation::tls::Role;
use cafe_proto::v1 as pb;
use cafe_sim::Behaviour;
use cafe_sim::member::Backend;
use cafe_tests::demo::{ERROR_RATIO_QUERY, Gate, analysis_yaml, with_analysis};
use cafe_tests::driver::{apply_yaml, awaiting_confirm, command, deployment, settled, wait_status};
use cafe_tests::playground::{Playground, PlaygroundOptions};
use common::{BINARY, cafectl};
use std::collections::BTreeSet;
use std::time::Duration;

const STEP: Duration = Duration::from_secs(120);

fn image(tag: &str) -> String {
    format!("registry.example/payments:{tag}")
}

async fn start(prometheus: bool) -> (Playground, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = PlaygroundOptions::new(dir.path(), BINARY).with_backend(Backend::from_env());
    options.prometheus = prometheus;
    let playground = Playground::start(options)
        .await
        .expect("the playground starts");
    (playground, dir)
}

/// The notes of the Events with `reason` in `cluster`'s `finance` namespace.
async fn events(playground: &Playground, cluster: &str, reason: &str) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    let client = playground.clusters[cluster].cluster.client().unwrap();
    let api: kube::Api<Event> = kube::Api::namespaced(client, "finance");
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// Waits until `cluster` has an Event with `reason` whose note contains `text`.
async fn wait_event(playground: &Playground, cluster: &str, reason: &str, text: &str) {
    let what = format!("a {reason} Event mentioning {text:?} in {cluster}");
    let found = cafe_tests::driver::poll_until(std::time::Instant::now(), STEP, &what, || async {
        events(playground, cluster, reason)
            .await
            .iter()
            .any(|note| note.contains(text))
    })
    .await;
    if let Err(error) = found {
        panic!(
            "{error}; its notes: {:?}",
            events(playground, cluster, reason).await
        );
    }
}

/// Makes `tag`'s pods in cluster hz-dc1 answer `ratio` of their requests with 500.
async fn errors_in_hz_dc1(playground: &Playground, tag: &str, ratio: f64) {
    let behaviour = Behaviour {
        error_ratio: ratio,
        latency_ms: 0,
    };
    playground
        .set_behaviour(&image(tag), Some("hz-dc1"), behaviour)
        .await
        .unwrap();
}

fn reference() -> pb::DeploymentRef {
    deployment("finance", "payments")
}

/// Rounds of measurements of the analysis of `group` in `status`.
fn rounds(status: &DeploymentStatusView, group: i32) -> usize {
    status
        .analysis
        .as_ref()
        .filter(|a| a.group == group)
        .map_or(0, |a| {
            a.measurements
                .iter()
                .map(|m| m.time.clone())
                .collect::<BTreeSet<_>>()
                .len()
        })
}

/// Deploys 1.0.0 without an analysis and waits until it runs everywhere.
async fn deploy_first(playground: &Playground) {
    let mut operator = playground.client(Role::Operator).await.unwrap();
    apply_yaml(&mut operator, cafe_tests::demo::DEMO_YAML)
        .await
        .unwrap();
    wait_status(&mut operator, &reference(), STEP, |_| {}, settled)
        .await
        .unwrap();
}

/// Rolls back and waits until every unit runs `good` again.
async fn roll_back_to(
    operator: &mut pb::federation_client::FederationClient<tonic::transport::Channel>,
    good: &str,
) {
    operator
        .rollback(command(&reference(), None))
        .await
        .unwrap();
    wait_status(
        operator,
        &reference(),
        STEP,
        |_| {},
        |s| settled(s) && s.current_revision == good,
    )
    .await
    .unwrap();
}

/// Applies `yaml` and waits until the status has `reason`.
async fn apply_until_reason(
    operator: &mut pb::federation_client::FederationClient<tonic::transport::Channel>,
    yaml: &str,
    reason: &str,
) -> DeploymentStatusView {
    apply_yaml(operator, yaml).await.unwrap();
    wait_status(operator, &reference(), STEP, |_| {}, |s| s.reason == reason)
        .await
        .unwrap()
}

/// Asks Prometheus for `query` until `accept` takes the value.
async fn wait_prometheus(url: &str, query: &str, accept: impl Fn(Option<f64>) -> bool) {
    let until = tokio::time::Instant::now() + STEP;
    loop {
        let answer = cafe_federation::http_client::get(
            &format!(
                "{url}/api/v1/query?query={}",
                cafe_federation::http_client::encode_query_value(query)
            ),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let value = body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        if accept(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "Prometheus never gave an accepted value for {query}: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn prometheus_gates_every_group_and_rolls_a_bad_version_back() {
    let (playground, _dir) = start(true).await;
    let mut operator = playground.client(Role::Operator).await.unwrap();
    let gate = Gate::of(&playground);
    assert!(matches!(gate, Gate::Prometheus(_)));
    deploy_first(&playground).await;

    // A good version passes its analysis in every group and completes.
    apply_yaml(
        &mut operator,
        &with_analysis(&image("1.1.0"), &analysis_yaml(&gate, 2, "Rollback")),
    )
    .await
    .unwrap();
    loop {
        let status = wait_status(
            &mut operator,
            &reference(),
            STEP,
            |_| {},
            |s| awaiting_confirm(s) || s.phase == "Stable",
        )
        .await
        .unwrap();
        let analysis = status.analysis.clone().expect("an analysis");
        assert_eq!(analysis.phase, "Passed", "{status:#?}");
        assert_eq!(analysis.group, status.batch);
        assert!(rounds(&status, status.batch) >= 2, "{status:#?}");
        assert!(analysis.measurements.iter().all(|m| m.result != "Failed"));
        if status.phase == "Stable" {
            assert_eq!(status.reason, "Complete");
            break;
        }
        operator
            .r#continue(command(&reference(), Some(status.batch)))
            .await
            .unwrap();
    }
    let good = wait_status(&mut operator, &reference(), STEP, |_| {}, settled)
        .await
        .unwrap()
        .current_revision;
    // The clusters the groups changed heard that their analyses passed. (Kubernetes counts a
    // repeated Event as a series of the first, whose note it keeps: group 0's.)
    wait_event(&playground, "sh-dc1", "AnalysisPassed", "group 0:").await;

    // 8% errors in one cluster: group 0 fails, and the hub rolls back by itself. No unit ever gets
    // more than group 0's one updated pod.
    errors_in_hz_dc1(&playground, "1.2.0", 0.08).await;
    apply_yaml(
        &mut operator,
        &with_analysis(&image("1.2.0"), &analysis_yaml(&gate, 3, "Rollback")),
    )
    .await
    .unwrap();
    let mut seen_rolling_back = None;
    let until = tokio::time::Instant::now() + STEP;
    let rolled = loop {
        let s = cafe_tests::driver::status(&mut operator, &reference())
            .await
            .unwrap();
        if s.update_revision != good {
            // The pods themselves, not the reports (which may describe the last release).
            let mut per_unit = std::collections::BTreeMap::<String, usize>::new();
            for (name, pod) in common::pods(&playground, "finance").await {
                if pod.revision == s.update_revision {
                    let unit = name
                        .trim_start_matches("payments-")
                        .rsplit_once('-')
                        .unwrap()
                        .0
                        .to_owned();
                    *per_unit.entry(unit).or_default() += 1;
                }
            }
            for (unit, count) in &per_unit {
                assert!(
                    *count <= 1,
                    "{unit} ran the bad version beyond group 0: {count} pods"
                );
            }
        }
        if s.phase == "RollingBack" && seen_rolling_back.is_none() {
            seen_rolling_back = Some(s.clone());
        }
        if s.phase == "Stable" && s.reason == "RolledBack" {
            break s;
        }
        assert!(tokio::time::Instant::now() < until, "no rollback: {s:#?}");
        tokio::time::sleep(cafe_tests::playground::POLL).await;
    };
    assert_eq!(rolled.current_revision, good);
    for status in [seen_rolling_back.as_ref().unwrap(), &rolled] {
        assert!(status.message.contains("error-ratio"), "{}", status.message);
        assert!(status.message.contains("hz-az1"), "{}", status.message);
        assert!(status.message.contains("value 0.0"), "{}", status.message);
    }
    assert_eq!(seen_rolling_back.unwrap().reason, "AnalysisFailed");
    let analysis = rolled.analysis.clone().unwrap();
    assert_eq!(analysis.phase, "Failed");
    let failed = analysis
        .measurements
        .iter()
        .find(|m| m.result == "Failed")
        .unwrap();
    assert_eq!(failed.unit.as_deref(), Some("hz-az1"));
    assert!(failed.value.unwrap() > 0.05, "{failed:?}");
    // The spec returned to the good template, as `cafectl rollback` leaves it.
    let (code, yaml, _) = cafectl(
        &playground,
        Role::Operator,
        &[
            "get",
            "cafedeployment",
            "payments",
            "-n",
            "finance",
            "-o",
            "yaml",
        ],
    );
    assert_eq!(code, 0);
    assert!(yaml.contains(&image("1.1.0")), "{yaml}");
    // The clusters of the failed group record why, as a Warning Event on their InPlaceSet.
    for cluster in ["hz-dc1", "sh-dc1"] {
        wait_event(
            &playground,
            cluster,
            "AnalysisFailed",
            "metric error-ratio in unit hz-az1",
        )
        .await;
    }
    // The outcome is audited as the hub's.
    let audit = operator
        .audit(pb::AuditRequest { limit: 50 })
        .await
        .unwrap()
        .into_inner();
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.who == "hub" && e.result.starts_with("AnalysisFailed")),
        "{audit:#?}"
    );

    // A query without data (a wrong label) is inconclusive, never a pass.
    let no_data = format!(
        "      interval: 1s\n      count: 2\n      metrics:\n      - name: no-data\n        prometheus:\n          address: {}\n          query: 'sum(rate(cafe_sim_requests_total{{namespace=\"{{{{namespace}}}}\",revision=\"no-such-revision\"}}[10s]))'\n        successCondition: \"result < 1000000\"\n",
        playground.prometheus.as_ref().unwrap().url
    );
    apply_yaml(&mut operator, &with_analysis(&image("1.3.0"), &no_data))
        .await
        .unwrap();
    let paused = wait_status(
        &mut operator,
        &reference(),
        STEP,
        |s| {
            assert!(
                s.phase != "Stable" || s.update_revision == good,
                "passed without data"
            )
        },
        |s| s.reason == "AnalysisInconclusive",
    )
    .await
    .unwrap();
    assert_eq!(paused.phase, "Paused");
    assert!(paused.message.contains("no sample"), "{}", paused.message);
    roll_back_to(&mut operator, &good).await;

    // onFailure: Pause stops at the failed group; continue is refused; retry measures again.
    errors_in_hz_dc1(&playground, "1.4.0", 0.08).await;
    let failed = apply_until_reason(
        &mut operator,
        &with_analysis(&image("1.4.0"), &analysis_yaml(&gate, 2, "Pause")),
        "AnalysisFailed",
    )
    .await;
    assert_eq!(failed.phase, "Failed");
    assert_eq!(failed.batch, 0);
    let refused = operator
        .r#continue(command(&reference(), None))
        .await
        .expect_err("continue is refused while the analysis has failed");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("retry"), "{}", refused.message());
    // The application is fixed; once Prometheus sees no more errors, a retry measures again and
    // the group passes.
    errors_in_hz_dc1(&playground, "1.4.0", 0.0).await;
    let fixed_query = ERROR_RATIO_QUERY
        .replace("{{namespace}}", "finance")
        .replace("{{inplaceset}}", "payments-hz-az1")
        .replace("{{revision}}", &failed.update_revision);
    wait_prometheus(
        &playground.prometheus.as_ref().unwrap().url,
        &fixed_query,
        |v| v.is_some_and(|v| v <= 0.01),
    )
    .await;
    operator
        .retry(command(&reference(), Some(0)))
        .await
        .unwrap();
    let passed = wait_status(&mut operator, &reference(), STEP, |_| {}, awaiting_confirm)
        .await
        .unwrap();
    let analysis = passed.analysis.unwrap();
    assert_eq!(analysis.phase, "Passed");
    assert!(
        analysis.measurements.iter().all(|m| m.result != "Failed"),
        "the retry measured afresh: {analysis:#?}"
    );

    // Measurements are counted by the hub's metrics.
    let (sent, lost) = playground.traffic();
    assert!(sent > 0);
    assert_eq!(lost, 0, "answered errors are not lost requests");
    playground.shutdown().await;
}

/// A webhook server: `/ok` passes, `/fail` answers 500, `/hang` never answers.
async fn webhooks() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/ok", post(|| async { StatusCode::OK }))
        .route(
            "/fail",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "smoke test failed") }),
        )
        .route(
            "/hang",
            post(|| async {
                std::future::pending::<()>().await;
                StatusCode::OK
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn webhook_analysis(url: &str, count: u32, extra: &str) -> String {
    format!(
        "      interval: 1s\n      count: {count}\n      onFailure: Pause\n{extra}      metrics:\n      - name: smoke\n        webhook:\n          url: {url}\n          timeoutSeconds: 1\n"
    )
}

#[tokio::test]
async fn webhooks_gate_groups_and_a_killed_hub_measures_on() {
    let (mut playground, dir) = start(false).await;
    let hooks = webhooks().await;
    let mut operator = playground.client(Role::Operator).await.unwrap();
    deploy_first(&playground).await;
    let good = wait_status(&mut operator, &reference(), STEP, |_| {}, settled)
        .await
        .unwrap()
        .current_revision;

    // Bad analysis specs are refused at apply, naming the field; nothing is stored.
    let bad_specs = [
        (
            "      interval: 500ms\n      metrics:\n      - name: m\n        webhook: {url: http://127.0.0.1:1/x}\n",
            "spec.strategy.analysis.interval",
        ),
        (
            "      metrics:\n      - name: m\n        prometheus: {address: 'http://127.0.0.1:1', query: 'up{x=\"{{nope}}\"}'}\n        successCondition: result > 0\n",
            "spec.strategy.analysis.metrics[0].prometheus.query",
        ),
        (
            "      metrics:\n      - name: m\n        prometheus: {address: 'http://127.0.0.1:1', query: 'up{x=\"{{unit}}\"}'}\n        successCondition: result > 0\n",
            "needs scope: Unit",
        ),
        (
            "      metrics:\n      - name: m\n        prometheus: {address: 'http://127.0.0.1:1', query: up}\n        successCondition: result <=\n",
            "spec.strategy.analysis.metrics[0].successCondition",
        ),
        ("      metrics:\n      - name: m\n", "needs a provider"),
    ];
    for (i, (analysis, field)) in bad_specs.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&file, with_analysis(&image("9.9.9"), analysis)).unwrap();
        let (code, _, stderr) = cafectl(
            &playground,
            Role::Operator,
            &["apply", "-f", file.to_str().unwrap()],
        );
        assert_eq!(code, 2, "bad spec {i} exits 2: {stderr}");
        assert!(
            stderr.contains(field),
            "bad spec {i} names {field}: {stderr}"
        );
    }
    let status = wait_status(&mut operator, &reference(), STEP, |_| {}, |_| true)
        .await
        .unwrap();
    assert_eq!(status.update_revision, good, "nothing was stored");

    // A webhook answering 500 fails the group.
    let failed = apply_until_reason(
        &mut operator,
        &with_analysis(
            &image("2.0.0"),
            &webhook_analysis(&format!("{hooks}/fail"), 1, ""),
        ),
        "AnalysisFailed",
    )
    .await;
    assert!(failed.message.contains("smoke"), "{}", failed.message);
    assert!(failed.message.contains("500"), "{}", failed.message);
    roll_back_to(&mut operator, &good).await;

    // A webhook that hangs past its timeout is an error; errors in a row make it inconclusive.
    let paused = apply_until_reason(
        &mut operator,
        &with_analysis(
            &image("2.1.0"),
            &webhook_analysis(
                &format!("{hooks}/hang"),
                2,
                "      consecutiveErrorLimit: 2\n",
            ),
        ),
        "AnalysisInconclusive",
    )
    .await;
    let analysis = paused.analysis.clone().unwrap();
    assert_eq!(analysis.measurements.len(), 2, "{analysis:#?}");
    for m in &analysis.measurements {
        assert_eq!(m.result, "Error");
        assert!(m.message.contains("did not answer within"), "{m:?}");
    }
    roll_back_to(&mut operator, &good).await;

    // A hub killed mid-analysis measures on after its restart: the group passes only once it has
    // `count` measurements, those taken after the restart included.
    apply_yaml(
        &mut operator,
        &with_analysis(
            &image("2.2.0"),
            &webhook_analysis(&format!("{hooks}/ok"), 5, ""),
        ),
    )
    .await
    .unwrap();
    wait_status(
        &mut operator,
        &reference(),
        STEP,
        |_| {},
        |s| rounds(s, 0) >= 1,
    )
    .await
    .unwrap();
    playground.kill_hub().await.unwrap();
    // Compared as instants: RFC 3339 texts with fractions of varied length do not sort as text.
    let killed_at = k8s_openapi::jiff::Timestamp::now();
    playground.start_hub().await.unwrap();
    let mut operator = playground.client(Role::Operator).await.unwrap();
    let passed = wait_status(
        &mut operator,
        &reference(),
        STEP,
        |s| {
            if s.analysis
                .as_ref()
                .is_some_and(|a| a.group == 0 && a.phase == "Passed")
            {
                assert!(
                    rounds(s, 0) >= 5,
                    "passed with fewer than count measurements: {s:#?}"
                );
            }
        },
        awaiting_confirm,
    )
    .await
    .unwrap();
    let analysis = passed.analysis.unwrap();
    assert_eq!(analysis.phase, "Passed");
    let times: BTreeSet<String> = analysis
        .measurements
        .iter()
        .map(|m| m.time.clone())
        .collect();
    assert_eq!(times.len(), 5, "{analysis:#?}");
    let instants: Vec<k8s_openapi::jiff::Timestamp> =
        times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(
        instants.iter().any(|t| *t < killed_at),
        "the measurements before the kill ({killed_at}) are kept: {times:?}"
    );
    assert!(
        instants.iter().any(|t| *t > killed_at),
        "measuring went on after the restart ({killed_at}): {times:?}"
    );
    playground.shutdown().await;
}
