//! cafe-bench at a tiny size: every scenario runs and prints sane figures (not a measurement).

use serde_json::Value;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_cafe-bench");
const PLAYGROUND: &str = env!("CARGO_BIN_EXE_cafe-playground");

fn run(args: &[&str]) -> Vec<Value> {
    let out = Command::new(BENCH)
        .args(args)
        .args(["--hub-binary", PLAYGROUND, "-o", "json"])
        .output()
        .expect("cafe-bench runs");
    assert!(
        out.status.success(),
        "cafe-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON document per line"))
        .collect()
}

fn number(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {report}"))
}

#[test]
fn every_scenario_reports_its_figures_at_a_tiny_size() {
    let reports = run(&[
        "all",
        "--clusters",
        "10",
        "--deployments",
        "20",
        "--pods",
        "20",
    ]);
    let scenarios: Vec<&str> = reports
        .iter()
        .map(|r| r["scenario"].as_str().expect("scenario"))
        .collect();
    assert_eq!(scenarios, ["fanout", "release", "failover", "rollout"]);

    let fanout = &reports[0];
    assert_eq!(fanout["clusters"], 10);
    assert_eq!(fanout["deployments"], 20);
    assert_eq!(fanout["slices"], 100);
    assert!(number(fanout, "acked") >= 100.0, "{fanout}");
    let (p50, p99, all) = (
        number(fanout, "p50Ms"),
        number(fanout, "p99Ms"),
        number(fanout, "allAckedMs"),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= all, "{fanout}");

    let release = &reports[1];
    assert_eq!(
        release["groupTransitions"],
        release["groupTransitionsExpected"]
    );
    assert!(number(release, "overheadP50Ms") <= number(release, "overheadP99Ms"));
    assert!(number(release, "totalMs") > 0.0);

    let failover = &reports[2];
    match failover["available"].as_bool().expect("available") {
        true => assert!(number(failover, "dispatchMs") > 0.0, "{failover}"),
        false => assert!(failover["reason"].as_str().is_some_and(|r| !r.is_empty())),
    }

    for report in &reports[..3] {
        assert!(number(report, "hubPeakRssMiB") > 1.0, "{report}");
        assert!(number(report, "hubCpuSeconds") >= 0.0, "{report}");
    }

    let rollout = &reports[3];
    assert_eq!(rollout["pods"], 20);
    assert_eq!(rollout["lost"], 0, "{rollout}");
    assert!(number(rollout, "measuredMs") > 0.0);
    let efficiency = number(rollout, "efficiency");
    assert!(efficiency > 0.0 && efficiency <= 1.5, "{rollout}");
}
