//! On a real API server, with the agent's RBAC as `deploy/agent/` ships it less one verb the link
//! needs, the agent reports the API server's Forbidden error on the slice, `cafectl status` shows
//! it, and once the verb is back the release goes on: nothing is retried in silence.

mod common;

use cafe_federation::tls::Role;
use cafe_sim::member::Backend;
use cafe_tests::demo::DEMO_YAML;
use cafe_tests::driver::{deployment, wait_status};
use cafe_tests::playground::AGENT_RBAC_YAML;
use common::{STEP, cafectl, cafectl_json, start};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, PostParams};

/// The cluster whose agent loses the verb.
const CLUSTER: &str = "sh-dc1";
/// Its unit.
const UNIT: &str = "sh-az1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_verb_is_reported_on_the_slice_and_the_release_resumes_once_granted() {
    if Backend::from_env() != Backend::Kube {
        eprintln!("skipped: cafe-sim authorizes everything; this needs CAFE_CLUSTERS=kube");
        return;
    }
    let setup = start().await;
    let pg = &setup.playground;
    let admin = pg.clusters[CLUSTER].cluster.client().expect("client");
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let mut role = roles
        .get("cafe-agent")
        .await
        .expect("the shipped ClusterRole");
    for rule in role.rules.iter_mut().flatten() {
        if rule.resources.iter().flatten().any(|r| r == "inplacesets") {
            rule.verbs.retain(|v| v != "patch");
        }
    }
    roles
        .replace("cafe-agent", &PostParams::default(), &role)
        .await
        .expect("the verb removed");

    let file = setup.dir.path().join("demo.yaml");
    std::fs::write(&file, DEMO_YAML).expect("write");
    let file = file.display().to_string();
    let (code, _, err) = cafectl(pg, Role::Operator, &["apply", "-f", &file]);
    assert_eq!(code, 0, "{err}");

    // The refusal reaches the hub's status, then cafectl, with the API server's words.
    let mut client = pg.client(Role::Operator).await.expect("client");
    let reference = deployment("finance", "payments");
    let refused = |s: &cafe_federation::release::DeploymentStatusView| {
        s.units
            .iter()
            .any(|u| u.unit == UNIT && !u.problems.is_empty())
    };
    wait_status(&mut client, &reference, STEP, |_| {}, refused)
        .await
        .expect("the refusal is reported");
    let status = cafectl_json(pg, &["status", "payments", "-n", "finance", "-o", "json"]);
    let problem = status["units"]
        .as_array()
        .expect("units")
        .iter()
        .find(|u| u["unit"] == UNIT)
        .and_then(|u| u["problems"][0].as_str())
        .unwrap_or_else(|| panic!("no problem on {UNIT} in cafectl's JSON: {status}"))
        .to_owned();
    assert!(problem.starts_with("SliceNotApplied: "), "{problem}");
    assert!(
        problem.contains("forbidden")
            && problem.contains("system:serviceaccount:cafe-system:cafe-agent")
            && problem.contains("cannot patch resource \"inplacesets\"")
            && problem.contains("(Forbidden, 403)"),
        "{problem}"
    );
    let (_, table, _) = cafectl(pg, Role::Viewer, &["status", "payments", "-n", "finance"]);
    assert!(
        table.contains("Forbidden"),
        "cafectl status shows it: {table}"
    );

    // The shipped role again: the agent's retries go through and the deployment runs everywhere.
    pg.clusters[CLUSTER]
        .cluster
        .apply_yaml(AGENT_RBAC_YAML)
        .await
        .expect("the role restored");
    let status = common::wait_settled(&mut client, &reference)
        .await
        .expect("the deployment runs once the verb is back");
    assert!(status.units.iter().all(|u| u.problems.is_empty()));
    assert_eq!(pg.traffic().1, 0, "lost requests");
    setup.playground.shutdown().await;
}
