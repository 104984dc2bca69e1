//! The agent's manifests in deploy/agent parse and grant what the controller uses, and nothing
//! broader than that. On a real control plane (`CAFE_CLUSTERS=kube`) the API server's own
//! authorizer confirms it for the agent's ServiceAccount.

mod common;

use serde_json::Value;
use std::path::PathBuf;

fn documents(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/agent")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("manifest exists");
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text).expect("valid YAML")
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
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding"
        ]
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

    // Leader election: its one Lease in the agent's namespace, created, read and renewed.
    let election = &docs[3];
    assert_eq!(election["metadata"]["namespace"], "cafe-system");
    let rules = election["rules"].as_array().expect("rules");
    assert_eq!(rules[0]["verbs"], serde_json::json!(["create"]));
    assert_eq!(rules[1]["resourceNames"], serde_json::json!(["cafe-agent"]));
    assert_eq!(rules[1]["verbs"], serde_json::json!(["get", "update"]));
    assert!(
        rules
            .iter()
            .all(|r| r["resources"] == serde_json::json!(["leases"]))
    );
    assert_eq!(docs[4]["subjects"][0]["name"], docs[0]["metadata"]["name"]);
}

#[test]
fn the_deployment_runs_two_replicas_that_elect_a_leader() {
    let docs = documents("deployment.yaml");
    let spec = &docs[0]["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "cafe-agent");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.iter().any(|a| a == "--leader-elect"), "{args:?}");
    // The flags are the agent's own: cafe-agent parses them.
    let mut argv = vec!["cafe-agent".to_owned()];
    argv.extend(args);
    <cafe_member_agent::cli::Cli as clap::Parser>::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("cafe-agent refuses the manifest's flags: {e}"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["resources"]["requests"]["cpu"], "50m");
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "cafe-agent-tls");
    assert_eq!(
        documents("namespace.yaml")[0]["metadata"]["name"],
        docs[0]["metadata"]["namespace"]
    );
    assert_eq!(documents("pdb.yaml")[0]["spec"]["minAvailable"], 1);
    assert_eq!(documents("crd-installer-rbac.yaml").len(), 2);
}

/// Whether the API server lets the agent's ServiceAccount do `verb` on `resource` (in `finance`).
async fn allowed(
    admin: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
) -> bool {
    review(admin, "finance", verb, group, resource, subresource, "").await
}

/// Whether the API server lets the agent's ServiceAccount do `verb` on the `resource` called
/// `name` in `namespace`.
async fn allowed_in(
    admin: &kube::Client,
    namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
) -> bool {
    review(admin, namespace, verb, group, resource, "", name).await
}

async fn review(
    admin: &kube::Client,
    namespace: &str,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    name: &str,
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
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!subresource.is_empty()).then(|| subresource.into()),
                name: (!name.is_empty()).then(|| name.into()),
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
    let in_own_namespace = [
        ("create", "coordination.k8s.io", "leases", ""),
        ("get", "coordination.k8s.io", "leases", "cafe-agent"),
        ("update", "coordination.k8s.io", "leases", "cafe-agent"),
    ];
    for (verb, group, resource, name) in in_own_namespace {
        assert!(
            allowed_in(&admin, "cafe-system", verb, group, resource, name).await,
            "{verb} {group}/{resource} {name} should be allowed in cafe-system"
        );
    }
    for (namespace, verb, name) in [
        ("cafe-system", "update", "another-lease"),
        ("finance", "update", "cafe-agent"),
        ("cafe-system", "delete", "cafe-agent"),
    ] {
        assert!(
            !allowed_in(
                &admin,
                namespace,
                verb,
                "coordination.k8s.io",
                "leases",
                name
            )
            .await,
            "{verb} lease {namespace}/{name} should be refused"
        );
    }
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
