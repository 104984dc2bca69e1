//! What the end-to-end tests share: a playground in a temporary directory, cafectl runs, and pod
//! inspection in the simulated clusters.

#![allow(dead_code)]

use cafe_federation::tls::Role;
use cafe_tests::playground::{Playground, PlaygroundOptions};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::process::Command;

/// The playground binary, which also runs cafectl (`ctl`).
pub const BINARY: &str = env!("CARGO_BIN_EXE_cafe-playground");

/// A started playground and the directory it lives in (removed when dropped).
pub struct Setup {
    pub playground: Playground,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let playground = Playground::start(PlaygroundOptions::new(dir.path(), BINARY))
        .await
        .expect("the playground starts");
    Setup { playground, dir }
}

/// Runs cafectl with `role`'s config; returns (exit code, stdout, stderr).
pub fn cafectl(playground: &Playground, role: Role, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BINARY)
        .arg("ctl")
        .arg("--config")
        .arg(playground.cafectl_config(role))
        .args(args)
        .output()
        .expect("cafectl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// cafectl's JSON output, failing the test on a non-zero exit.
pub fn cafectl_json(playground: &Playground, args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = cafectl(playground, Role::Operator, args);
    assert_eq!(code, 0, "cafectl {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("cafectl {args:?} printed no JSON ({e}): {stdout}"))
}

/// One pod as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub uid: String,
    pub revision: String,
    pub restarts: i32,
}

/// The application's pods in every cluster, by pod name.
pub async fn pods(playground: &Playground, namespace: &str) -> BTreeMap<String, PodView> {
    let mut all = BTreeMap::new();
    for cluster in playground.clusters.values() {
        let client = cluster.sim.client().expect("client");
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let list = api.list(&ListParams::default()).await.expect("list pods");
        for pod in list.items {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let restarts = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
            all.insert(
                name,
                PodView {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    revision: pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("cafe.io/revision"))
                        .cloned()
                        .unwrap_or_default(),
                    restarts,
                },
            );
        }
    }
    all
}
