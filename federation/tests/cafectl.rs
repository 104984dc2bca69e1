//! cafectl's offline commands, run as the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn cafectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cafectl"))
        .args(args)
        .output()
        .expect("cafectl runs")
}

fn example(name: &str) -> String {
    repo_file(&format!("deploy/examples/{name}"))
        .display()
        .to_string()
}

#[test]
fn plan_prints_the_seed_example_as_json() {
    let out = cafectl(&[
        "plan",
        "-f",
        &example("payments.yaml"),
        "--units",
        &example("units.yaml"),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let expected = serde_json::json!({
        "name": "payments", "namespace": "finance", "replicas": 10, "strategy": "Grouped",
        "units": [
            {"unit": "sh-az1", "region": "cn-shanghai", "cluster": "sh-dc1", "replicas": 5, "peak": 5},
            {"unit": "sh-az2", "region": "cn-shanghai", "cluster": "sh-dc2", "replicas": 5, "peak": 5}
        ],
        "batches": [
            {"index": 0, "units": [{"unit": "sh-az1", "size": 1, "updated": 1}, {"unit": "sh-az2", "size": 1, "updated": 1}]},
            {"index": 1, "units": [{"unit": "sh-az1", "size": 2, "updated": 3}, {"unit": "sh-az2", "size": 2, "updated": 3}]},
            {"index": 2, "units": [{"unit": "sh-az1", "size": 2, "updated": 5}, {"unit": "sh-az2", "size": 2, "updated": 5}]}
        ]
    });
    assert_eq!(plan, expected);
}

#[test]
fn plan_table_shows_groups_by_unit_and_honours_current() {
    let out = cafectl(&[
        "plan",
        "-f",
        &example("payments.yaml"),
        "--units",
        &example("units.yaml"),
        "-o",
        "table",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.contains("G0") && table.contains("G2"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("sh-az1") && l.contains("+1=1") && l.contains("+2=5")),
        "{table}"
    );

    // 9 replicas: the odd one goes to the unit with more current pods.
    let nine = std::fs::read_to_string(example("payments.yaml"))
        .expect("example")
        .replace("replicas: 10", "replicas: 9");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nine.yaml");
    std::fs::write(&path, nine).expect("write");
    let path = path.display().to_string();
    let json = |current: &str| -> serde_json::Value {
        let out = cafectl(&[
            "plan",
            "-f",
            &path,
            "--units",
            &example("units.yaml"),
            "--current",
            current,
            "-o",
            "json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    assert_eq!(json("sh-az1=5,sh-az2=1")["units"][0]["replicas"], 5);
    assert_eq!(json("sh-az1=1,sh-az2=5")["units"][0]["replicas"], 4);
}

#[test]
fn bad_input_exits_2_naming_file_document_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.yaml");
    let units = std::fs::read_to_string(example("units.yaml")).expect("example");
    let bad = std::fs::read_to_string(example("payments.yaml"))
        .expect("example")
        .replace("replicas: 10", "replicas: -3");
    std::fs::write(&path, format!("{units}\n---\n{bad}")).expect("write");
    for command in ["validate", "plan"] {
        let out = cafectl(&[command, "-f", &path.display().to_string()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(out.stdout.is_empty(), "{command} printed a result");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "error: {}: document 5 (CafeDeployment finance/payments): spec.replicas: must not be negative, got -3",
            path.display()
        );
        assert!(stderr.contains(&expected), "{command}: {stderr}");
    }
}

#[test]
fn unknown_unit_references_are_refused_with_the_units_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("d.yaml");
    let bad = std::fs::read_to_string(example("payments.yaml"))
        .expect("example")
        .replace("[sh-az1, sh-az2]", "[sh-az1, sh-az2, sh-az9]");
    std::fs::write(&path, bad).expect("write");
    let out = cafectl(&[
        "validate",
        "-f",
        &path.display().to_string(),
        "--units",
        &example("units.yaml"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"spec.topology.units[2]: unknown unit "sh-az9""#),
        "{stderr}"
    );
    let ok = cafectl(&[
        "validate",
        "-f",
        &example("payments.yaml"),
        "--units",
        &example("units.yaml"),
    ]);
    assert!(ok.status.success());
    assert!(
        String::from_utf8_lossy(&ok.stdout)
            .contains("valid: 4 LogicalUnit(s), 1 CafeDeployment(s)")
    );
}

#[test]
fn missing_files_and_bad_flags_exit_2() {
    let out = cafectl(&["validate", "-f", "/nonexistent/x.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml: cannot read"));
    let out = cafectl(&[
        "plan",
        "-f",
        &example("payments.yaml"),
        "--units",
        &example("units.yaml"),
        "--current",
        "sh-az1=x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--current"));
    let out = cafectl(&["plan", "-f", &example("payments.yaml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--units"));
}
