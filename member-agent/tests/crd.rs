//! The CRD in deploy/ is generated from the Rust type and must not drift from it.

use cafe_member_agent::crd::{InPlaceSet, inplaceset_crd, inplaceset_crd_yaml};
use std::path::PathBuf;

#[test]
fn deploy_crd_matches_the_rust_type() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds/inplaceset.yaml");
    let on_disk = std::fs::read_to_string(&path).expect("deploy/crds/inplaceset.yaml exists");
    let generated = inplaceset_crd_yaml().expect("renders");
    assert!(
        on_disk == generated,
        "deploy/crds/inplaceset.yaml is stale: regenerate it with `cargo run --bin cafe-agent -- crd > deploy/crds/inplaceset.yaml`"
    );
}

#[test]
fn the_binary_prints_the_same_crd() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cafe-agent"))
        .arg("crd")
        .output()
        .expect("cafe-agent runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        inplaceset_crd_yaml().expect("renders")
    );
}

#[test]
fn crd_is_namespaced_with_status_and_open_templates() {
    let crd = inplaceset_crd();
    assert_eq!(crd.spec.group, "cafe.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "InPlaceSet");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let schema = serde_json::to_value(&version.schema).expect("serializes");
    let template = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"];
    assert_eq!(template["x-kubernetes-preserve-unknown-fields"], true);
    let required = schema["openAPIV3Schema"]["properties"]["spec"]["required"].clone();
    assert!(
        required
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "replicas"))
    );
    // A hand-written set parses with defaults.
    let set: InPlaceSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "cafe.io/v1alpha1", "kind": "InPlaceSet",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:1"}]}}}
    }))
    .expect("parses");
    assert_eq!(set.spec.max_unavailable, 1);
    assert_eq!(set.spec.partition, 0);
}
