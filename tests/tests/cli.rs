//! cafectl for people and pipelines, against the playground (hub and agents as processes): the
//! kubectl output formats with their exact output, `-A` and `--waiting`, `set image`, `promote
//! --full`, and `status --timeout` whose exit code a CI pipeline waits on.

mod common;

use cafe_federation::tls::Role;
use cafe_tests::demo::DEMO_YAML;
use cafe_tests::driver::{awaiting_confirm, deployment, settled, wait_status};
use common::{cafectl, start};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(120);

/// Runs cafectl as the operator and insists that it succeeds; returns stdout.
fn ok(pg: &cafe_tests::playground::Playground, args: &[&str]) -> String {
    let (code, out, err) = cafectl(pg, Role::Operator, args);
    assert_eq!(code, 0, "cafectl {args:?}: {err}");
    out
}

/// `cafectl status finance/payments --timeout TIMEOUT -o OUTPUT` as a viewer: (exit code, stdout,
/// stderr).
fn status_within(
    pg: &cafe_tests::playground::Playground,
    timeout: &str,
    output: &str,
) -> (i32, String, String) {
    cafectl(
        pg,
        Role::Viewer,
        &[
            "status",
            "finance/payments",
            "--timeout",
            timeout,
            "-o",
            output,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_waits_on_releases_and_reads_them_with_kubectl_formats() {
    let setup = start().await;
    let pg = &setup.playground;
    let reference = deployment("finance", "payments");
    let mut client = pg.client(Role::Operator).await.expect("client");
    let file = setup.dir.path().join("payments.yaml");
    std::fs::write(&file, DEMO_YAML).unwrap();
    ok(pg, &["apply", "-f", file.to_str().unwrap()]);
    wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("1.0.0 runs everywhere");

    // The formats, exactly.
    assert_eq!(
        ok(pg, &["get", "deployments", "-A", "-o", "name"]),
        "cafedeployment/payments\n"
    );
    assert_eq!(
        ok(
            pg,
            &[
                "get",
                "deployments",
                "-A",
                "-o",
                "jsonpath={.items[*].metadata.namespace}/{.items[*].metadata.name}: {.items[0].spec.replicas} replicas, {.items[0].status.phase}"
            ]
        ),
        "finance/payments: 10 replicas, Stable"
    );
    let table = ok(pg, &["get", "deployments", "-A"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAMESPACE",
            "NAME",
            "REPLICAS",
            "UNITS",
            "PHASE",
            "GROUP",
            "REVISION"
        ]
    );
    assert_eq!(
        lines[1][..6],
        ["finance", "payments", "10", "4", "Stable", "-"]
    );
    let wide = ok(pg, &["get", "deployments", "-A", "-o", "wide"]);
    let wide_header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        wide_header[7..],
        ["REASON", "STABLE-REVISION", "MESSAGE"],
        "{wide}"
    );
    assert_eq!(
        ok(pg, &["get", "deployments", "--waiting", "-o", "name"]),
        ""
    );
    // A template that is not JSONPath is refused before the hub is asked.
    let (code, _, err) = cafectl(
        pg,
        Role::Operator,
        &["get", "deployments", "-o", "jsonpath={items}"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a JSONPath starts with . or $"), "{err}");

    // set image: an unknown container changes nothing; a known one starts a release.
    let (code, _, err) = cafectl(
        pg,
        Role::Operator,
        &[
            "set",
            "image",
            "finance/payments",
            "web=registry.example/payments:1.1.0",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no container named \"web\" (it has app)"),
        "{err}"
    );
    assert_eq!(
        ok(
            pg,
            &[
                "set",
                "image",
                "finance/payments",
                "app=registry.example/payments:1.1.0"
            ]
        ),
        "cafedeployment/finance/payments configured\n"
    );
    wait_status(&mut client, &reference, STEP, |_| {}, awaiting_confirm)
        .await
        .expect("group 0 waits for confirmation");
    // Waiting for a human, across namespaces.
    assert_eq!(
        ok(pg, &["get", "deployments", "-A", "--waiting", "-o", "name"]),
        "cafedeployment/payments\n"
    );
    // Paused for a human, the release does not end within 2 s: exit 1, saying where it stands.
    let (code, _, err) = status_within(pg, "2s", "name");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("did not end within 2s: it is Paused (AwaitingConfirm) in group 0"),
        "{err}"
    );

    // promote --full: every remaining group runs without another pause, and `status --timeout`
    // exits 0 once the release is Stable.
    let out = ok(pg, &["promote", "finance/payments", "--full"]);
    assert!(out.contains("promoted"), "{out}");
    let (code, out, err) = status_within(pg, "4m", "jsonpath={.phase} {.reason} {.batch}\\n");
    assert_eq!(code, 0, "{err}\n{out}");
    let states: Vec<&str> = out.lines().collect();
    assert_eq!(states.last(), Some(&"Stable Complete 2"), "{out}");
    assert!(
        !states.iter().any(|s| s.starts_with("Paused")),
        "a promoted release paused: {out}"
    );
    let done = wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("1.1.0 runs everywhere");
    assert_eq!(done.current_revision, done.update_revision);

    // A crash-looping image: `status --timeout` exits 1 with the failure.
    ok(
        pg,
        &[
            "set",
            "image",
            "finance/payments",
            "app=registry.example/payments:1.2.0-crashloop",
        ],
    );
    let (code, _, err) = status_within(pg, "4m", "name");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("finance/payments failed (PodsFailing) in group 0"),
        "{err}"
    );

    // version: the client's and the hub's.
    let version = ok(pg, &["version"]);
    let lines: Vec<&str> = version.lines().collect();
    assert_eq!(
        lines[0],
        format!("Client Version: {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        lines[1].starts_with(&format!(
            "Hub Version: {} (https://",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    setup.playground.shutdown().await;
}
