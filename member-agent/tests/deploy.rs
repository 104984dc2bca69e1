//! The agent's manifests in deploy/agent parse and grant what the controller uses, and nothing
//! broader than that. On a real control plane (`CAFE_CLUSTERS=kube`) the API server's own
//! authorizer confirms it for the agent's ServiceAccount.

mod common;

use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

fn documents(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/agent")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("manifest exists");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .collect()
}

fn verbs(role: &Value, group: &str, resource: &str) -> Vec<String> {
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| {
            r["apiGroups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g == group))
        })
        .filter(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g == resource))
        })
        .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_cluster_role_grants_exactly_what_the_agent_uses() {
    let docs = documents("rbac.yaml");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    );
    let role = &docs[1];
    assert_eq!(
        verbs(role, "", "pods"),
        ["list", "watch", "create", "patch", "delete"]
    );
    assert_eq!(verbs(role, "", "pods/status"), ["patch"]);
    assert_eq!(
        verbs(role, "cafe.io", "inplacesets"),
        ["get", "list", "watch", "create", "patch", "delete"]
    );
    assert_eq!(
        verbs(role, "cafe.io", "inplacesets/status"),
        ["get", "patch"]
    );
    assert_eq!(verbs(role, "events.k8s.io", "events"), ["create", "patch"]);
    assert_eq!(verbs(role, "", "namespaces"), ["get", "create"]);
    let all: Vec<String> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(
        !all.iter()
            .any(|v| v == "*" || v == "deletecollection" || v == "update" || v == "escalate")
    );
    assert_eq!(docs[2]["subjects"][0]["name"], docs[0]["metadata"]["name"]);
}

#[test]
fn the_deployment_runs_the_agent_with_its_service_account() {
    let docs = documents("deployment.yaml");
    let spec = &docs[0]["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "cafe-agent");
    let args = pod["containers"][0]["args"].as_array().expect("args");
    assert_eq!(args[0], "run");
    assert_eq!(
        pod["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(
        documents("namespace.yaml")[0]["metadata"]["name"],
        docs[0]["metadata"]["namespace"]
    );
    assert_eq!(documents("crd-installer-rbac.yaml").len(), 2);
}

/// Whether the API server lets the agent's ServiceAccount do `verb` on `resource` (in `namespace`).
async fn allowed(
    admin: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("system:serviceaccount:cafe-system:cafe-agent".into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:cafe-system".into(),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("finance".into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!subresource.is_empty()).then(|| subresource.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(admin.clone());
    let answer = api
        .create(&kube::api::PostParams::default(), &review)
        .await
        .expect("the API server reviews the access");
    answer.status.is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn the_api_server_grants_the_shipped_role_and_nothing_more() {
    if cafe_sim::member::Backend::from_env() != cafe_sim::member::Backend::Kube {
        eprintln!("skipped: needs a real API server's authorizer (CAFE_CLUSTERS=kube)");
        return;
    }
    let (cluster, admin) = common::start(common::fast_sim("rbac")).await;
    let granted = [
        ("get", "cafe.io", "inplacesets", ""),
        ("create", "cafe.io", "inplacesets", ""),
        ("patch", "cafe.io", "inplacesets", ""),
        ("delete", "cafe.io", "inplacesets", ""),
        ("watch", "cafe.io", "inplacesets", ""),
        ("patch", "cafe.io", "inplacesets", "status"),
        ("create", "", "pods", ""),
        ("patch", "", "pods", "status"),
        ("delete", "", "pods", ""),
        ("create", "events.k8s.io", "events", ""),
        ("create", "", "namespaces", ""),
    ];
    for (verb, group, resource, sub) in granted {
        assert!(
            allowed(&admin, verb, group, resource, sub).await,
            "{verb} {group}/{resource}/{sub} should be allowed"
        );
    }
    let refused = [
        ("update", "cafe.io", "inplacesets", ""),
        ("get", "", "pods", ""),
        ("get", "", "secrets", ""),
        ("delete", "", "namespaces", ""),
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
        ),
        ("create", "", "pods", "exec"),
    ];
    for (verb, group, resource, sub) in refused {
        assert!(
            !allowed(&admin, verb, group, resource, sub).await,
            "{verb} {group}/{resource}/{sub} should be refused"
        );
    }
    cluster.shutdown().await;
}
