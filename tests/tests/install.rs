//! The installable manifests in deploy/: kustomize bases for the hub (three replicas on etcd) and
//! the agent (two replicas electing a leader), rendered by `kubectl kustomize` as a user installs
//! them. On a real control plane (`CAFE_CLUSTERS=kube`), the API server itself checks every field
//! with a server-side dry run. An agent started from the rendered Deployment's arguments, values
//! and Secret layout connects to the hub.

mod common;

use cafe_sim::SimConfig;
use cafe_sim::member::{Backend, Members};
use cafe_tests::playground::{Playground, PlaygroundOptions};
use common::BINARY;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .canonicalize()
        .expect("deploy/ exists")
}

/// `kubectl kustomize DIR`: the YAML and its documents.
fn render(dir: &Path) -> (String, Vec<Value>) {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("UTF-8");
    let documents =
        serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&yaml).expect("valid YAML");
    (yaml, documents)
}

fn find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An overlay of the agent's base in `dir` setting the hub and the cluster, as the README tells
/// users to write one (kustomize wants the base as a relative path).
fn agent_overlay(dir: &Path, hub: &str, cluster: &str) {
    let up = "../".repeat(dir.components().count() - 1);
    let base = format!(
        "{up}{}",
        deploy()
            .join("agent")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {base}\n\
             configMapGenerator:\n  - name: cafe-agent\n    namespace: cafe-system\n    behavior: replace\n    \
             literals:\n      - CAFE_HUB={hub}\n      - CAFE_CLUSTER={cluster}\n"
        ),
    )
    .expect("write the overlay");
}

#[test]
fn the_hub_base_runs_three_replicas_on_etcd_with_probes_a_budget_and_least_privilege() {
    let (_, documents) = render(&deploy().join("hub"));
    let set = find(&documents, "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3);
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let hub = &pod["containers"][0];
    let args = strings(&hub["args"]);
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
    assert!(hub["resources"]["requests"]["cpu"].is_string());
    let secrets: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(secrets, ["cafe-hub-tls", "cafe-hub-etcd"]);
    assert_eq!(
        find(&documents, "PodDisruptionBudget")["spec"]["minAvailable"],
        2
    );
    let service = find(&documents, "Service");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
}

#[test]
fn the_agent_overlay_sets_the_hub_the_cluster_and_the_image() {
    let (_, documents) = render(&deploy().join("examples/agent-sh-dc1"));
    let config = find(&documents, "ConfigMap");
    assert_eq!(config["data"]["CAFE_CLUSTER"], "sh-dc1");
    assert!(
        config["data"]["CAFE_HUB"]
            .as_str()
            .is_some_and(|h| h.split(',').count() == 3)
    );
    let deployment = find(&documents, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "registry.bank.example/cafe-federation/cafe-agent:0.1.0"
    );
    // The Deployment reads the generated ConfigMap (kustomize gives it a hashed name).
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        config["metadata"]["name"]
    );
    // The base includes the CRD, so that no CRD-write permission is needed.
    assert_eq!(
        find(&documents, "CustomResourceDefinition")["metadata"]["name"],
        "inplacesets.cafe.io"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_every_rendered_manifest() {
    if Backend::from_env() != Backend::Kube {
        eprintln!("skipped: needs a real API server (CAFE_CLUSTERS=kube)");
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let members = Members::new(Backend::Kube, temp.path())
        .await
        .expect("control plane");
    let cluster = members
        .start(SimConfig::new("install"))
        .await
        .expect("cluster");
    let kubeconfig = temp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig_yaml()).expect("kubeconfig");
    let kubectl = |args: &[&str], input: Option<&str>| {
        use std::io::Write as _;
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.unwrap_or_default().as_bytes())
            .expect("write");
        drop(stdin);
        let out = child.wait_with_output().expect("kubectl ends");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The namespace for real (a dry run of the objects in it needs it), then everything as a
    // server-side dry run: every field is checked by the API server's schema, nothing is created.
    let namespace = deploy().join("agent/namespace.yaml");
    let (ok, stderr) = kubectl(&["apply", "-f", namespace.to_str().expect("path")], None);
    assert!(ok, "namespace: {stderr}");
    for base in ["hub", "agent", "examples/agent-sh-dc1"] {
        let (yaml, documents) = render(&deploy().join(base));
        assert!(documents.len() >= 5, "{base}: {yaml}");
        let (ok, stderr) = kubectl(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=cafe-test",
                "-f",
                "-",
            ],
            Some(&yaml),
        );
        assert!(ok, "{base}: {stderr}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_from_the_rendered_manifests_connects_to_the_hub() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = PlaygroundOptions::new(dir.path(), BINARY).with_backend(Backend::from_env());
    let mut pg = Playground::start(options)
        .await
        .expect("the playground starts");
    let cluster = "sh-dc1";

    // The user's overlay names this playground's hub and the cluster.
    let overlay = dir.path().join("overlay");
    std::fs::create_dir_all(&overlay).expect("overlay dir");
    agent_overlay(&overlay, &pg.hub_urls.join(","), cluster);
    let (_, documents) = render(&overlay);
    let values = &find(&documents, "ConfigMap")["data"];
    let deployment = find(&documents, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // The Secret as cert-manager would write it, at the path the manifest mounts it.
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("mountPath");
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "cafe-agent-tls");
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&secret).expect("secret dir");
    let bundle = &pg.clusters[cluster].tls_dir;
    for (from, to) in [
        ("ca.pem", "ca.crt"),
        ("agent.pem", "tls.crt"),
        ("agent-key.pem", "tls.key"),
    ] {
        std::fs::copy(bundle.join(from), secret.join(to)).expect("copy");
    }

    // The environment the kubelet would give the container.
    let mut env: BTreeMap<String, String> = values
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("name").to_owned();
        let value = match (
            var["value"].as_str(),
            var["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Some(value), _) if value == mount => secret.display().to_string(),
            (Some(value), _) => value.to_owned(),
            (None, Some("metadata.namespace")) => "cafe-system".to_owned(),
            (None, Some("metadata.name")) => "cafe-agent-from-manifests".to_owned(),
            other => panic!("{name}: unexpected {other:?}"),
        };
        env.insert(name, value);
    }
    let metrics = format!(
        "127.0.0.1:{}",
        cafe_sim::control_plane::free_port().expect("port")
    );
    let args: Vec<String> = strings(&container["args"])
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr={metrics}")
            } else {
                a
            }
        })
        .collect();

    // The playground's agent goes; the one from the manifests takes its place.
    pg.kill_agent(cluster).await.expect("kill the agent");
    pg.wait_connected(&[cluster.to_owned()], false)
        .await
        .expect("the hub sees the agent gone");
    let log = std::fs::File::create(dir.path().join("manifest-agent.log")).expect("log");
    let mut agent = tokio::process::Command::new(BINARY)
        .arg("agent")
        .args(&args)
        .arg("--kubeconfig")
        .arg(&pg.clusters[cluster].agent_kubeconfig)
        .envs(&env)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the agent starts");
    pg.wait_connected(&[cluster.to_owned()], true)
        .await
        .unwrap_or_else(|e| {
            let log =
                std::fs::read_to_string(dir.path().join("manifest-agent.log")).unwrap_or_default();
            panic!("the agent from the manifests does not connect: {e}\n{log}")
        });
    // It leads by the Lease, under the identity the Deployment gives it.
    assert_eq!(
        pg.agent_lease_holder(cluster).await.expect("lease"),
        Some("cafe-agent-from-manifests".to_owned())
    );
    // Its probes and metrics say so too.
    let get = |path: &str| {
        let url = format!("http://{metrics}{path}");
        async move {
            cafe_federation::http_client::get(&url, std::time::Duration::from_secs(5))
                .await
                .expect("the agent answers")
        }
    };
    let ready = get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "leading"));
    assert_eq!(get("/healthz").await.status, 200);
    let text = get("/metrics").await.body;
    for line in ["cafe_agent_leader 1", "cafe_agent_hub_connected 1"] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    agent.kill().await.expect("stop the agent");
    pg.shutdown().await;
}
