//! The hub's manifests in deploy/hub: three replicas on etcd with probes, a disruption budget,
//! least privilege and the certificate Secrets. On a real control plane (`CAFE_CLUSTERS=kube`),
//! the API server itself checks every field with a server-side dry run.

use cafe_sim::SimConfig;
use cafe_sim::member::{Backend, Members};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

const FILES: [&str; 5] = [
    "namespace.yaml",
    "serviceaccount.yaml",
    "service.yaml",
    "pdb.yaml",
    "statefulset.yaml",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/hub")
}

fn document(file: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(file)).expect("manifest exists");
    Value::deserialize(serde_yaml::Deserializer::from_str(&text)).expect("valid YAML")
}

#[test]
fn three_replicas_on_etcd_with_probes_a_budget_and_least_privilege() {
    let set = document("statefulset.yaml");
    assert_eq!(set["kind"], "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3);
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let hub = &pod["containers"][0];
    let args: Vec<&str> = hub["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for flag in [
        "--store=etcd",
        "--etcd-endpoints=",
        "--advertise-url=",
        "--tls-dir=",
    ] {
        assert!(
            args.iter().any(|a| a.starts_with(flag)),
            "{flag} in {args:?}"
        );
    }
    // The flags are the hub's own: cafe-hub parses them.
    let mut argv = vec!["cafe-hub".to_owned()];
    argv.extend(args.iter().map(|a| a.replace("$(POD_NAME)", "cafe-hub-0")));
    <cafe_federation::hub_cli::Cli as clap::Parser>::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("cafe-hub refuses the manifest's flags: {e}"));
    assert_eq!(hub["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(hub["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(hub["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(hub["securityContext"]["readOnlyRootFilesystem"], true);
    let secrets: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(secrets, ["cafe-hub-tls", "cafe-hub-etcd"]);
    let pdb = document("pdb.yaml");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    let service = document("service.yaml");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_every_manifest() {
    if Backend::from_env() != Backend::Kube {
        eprintln!("skipped: needs a real API server (CAFE_CLUSTERS=kube)");
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let members = Members::new(Backend::Kube, temp.path())
        .await
        .expect("control plane");
    let cluster = members
        .start(SimConfig::new("hub-host"))
        .await
        .expect("cluster");
    let kubeconfig = temp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig_yaml()).expect("kubeconfig");
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The namespace for real (a dry run of its objects needs it), the rest as a server-side dry
    // run: every field is checked by the API server's schema, nothing is created.
    let namespace = dir().join("namespace.yaml");
    let (ok, stderr) = kubectl(&["apply", "-f", namespace.to_str().expect("path")]);
    assert!(ok, "namespace: {stderr}");
    for file in &FILES[1..] {
        let path = dir().join(file);
        let (ok, stderr) = kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=cafe-test",
            "-f",
            path.to_str().expect("path"),
        ]);
        assert!(ok, "{file}: {stderr}");
    }
    cluster.shutdown().await;
}
