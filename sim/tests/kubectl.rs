//! kubectl against `cafe-sim serve` running as a real process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Deadline for one kubectl command.
const KUBECTL_DEADLINE: Duration = Duration::from_secs(30);

/// Kills the server when the test ends, even on failure.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl is on PATH (the test script installs Debian's kubernetes-client)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: NAME
  labels: {app: web}
spec:
  containers:
  - name: app
    image: nginx:1.25
";

#[test]
fn kubectl_get_create_delete_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cafe-sim"))
        .args([
            "serve",
            "--name",
            "kctl",
            "--port",
            "0",
            "--nodes",
            "2",
            "--zones",
            "a,b",
            "--start-delay-ms",
            "50",
        ])
        .args([
            "--traffic-finalizer",
            "traffic.cafe.io/lb",
            "--kubeconfig-out",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Server(child);
    assert!(
        line.starts_with("cafe-sim: cluster kctl listening on http://127.0.0.1:"),
        "{line}"
    );
    let port = line.trim().rsplit(':').next().unwrap();
    assert_ne!(port, "0");
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!("127.0.0.1:{port}"))
    );

    let nodes = kubectl(&kubeconfig, &["get", "nodes"]);
    assert!(
        nodes.contains("kctl-node-0") && nodes.contains("Ready"),
        "{nodes}"
    );

    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, POD.replace("NAME", "web-0")).unwrap();
    let created = kubectl(&kubeconfig, &["create", "-f", manifest.to_str().unwrap()]);
    assert!(created.contains("pod/web-0 created"), "{created}");

    // `get -w` prints the table, then changes.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "pods", "-w", "--request-timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut watch_out = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + KUBECTL_DEADLINE;
        while Instant::now() < deadline && !seen.contains("web-1") {
            match watch_out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    let deadline = Instant::now() + KUBECTL_DEADLINE;
    let table = loop {
        let t = kubectl(&kubeconfig, &["get", "pods"]);
        if t.contains("Running") || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(common::POLL);
    };
    assert!(
        table.contains("NAME") && table.contains("READY") && table.contains("STATUS"),
        "{table}"
    );
    assert!(
        table.contains("web-0") && table.contains("1/1") && table.contains("Running"),
        "{table}"
    );
    std::fs::write(&manifest, POD.replace("NAME", "web-1")).unwrap();
    kubectl(&kubeconfig, &["create", "-f", manifest.to_str().unwrap()]);
    let seen = reader.join().unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        seen.contains("web-0") && seen.contains("web-1"),
        "kubectl get -w printed: {seen}"
    );

    let yaml = kubectl(&kubeconfig, &["get", "pod", "web-0", "-o", "yaml"]);
    assert!(
        yaml.contains("traffic.cafe.io/lb"),
        "the balancer registered the ready pod: {yaml}"
    );

    // kubectl delete waits until the pod is gone (after the balancer released it).
    let deleted = kubectl(&kubeconfig, &["delete", "pod", "web-0", "--timeout=30s"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let left = kubectl(&kubeconfig, &["get", "pods", "-o", "name"]);
    assert_eq!(left.trim(), "pod/web-1");
}
