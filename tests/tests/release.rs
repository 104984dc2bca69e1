//! A release over four units in two regions, driven with cafectl against the playground (hub and
//! agents as separate processes): group by group with confirmations, status matching the plan at
//! every pause, every pod updated in place exactly once, a crash-looping image failing group 0, a
//! rollback, and no request lost.

mod common;

use cafe_federation::tls::Role;
use cafe_tests::demo::DEMO_YAML;
use cafe_tests::driver::{awaiting_confirm, deployment, settled, wait_status};
use common::{ReadyWatcher, cafectl, cafectl_json, pods, start};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(120);

fn write(dir: &std::path::Path, name: &str, image: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        DEMO_YAML.replace("registry.example/payments:1.0.0", image),
    )
    .expect("write manifest");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_groups_match_the_plan_and_rollback_restores_the_stable_revision() {
    let setup = start().await;
    let pg = &setup.playground;
    let reference = deployment("finance", "payments");
    let mut client = pg.client(Role::Operator).await.expect("client");

    let v1 = write(
        setup.dir.path(),
        "v1.yaml",
        "registry.example/payments:1.0.0",
    );
    let (code, out, err) = cafectl(pg, Role::Operator, &["apply", "-f", &v1]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cafedeployment/finance/payments created"),
        "{out}"
    );
    wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("v1 runs everywhere");
    let before = pods(pg, "finance").await;
    assert_eq!(before.len(), 10);
    // An independent watcher over every cluster: no unit may fall below its replicas minus
    // maxUnavailable (1) ready pods, through the release, the failed release and the rollback.
    let watcher = ReadyWatcher::start(pg, "finance");
    watcher.wait_ready(10).await;
    watcher.arm();

    let v2 = write(
        setup.dir.path(),
        "v2.yaml",
        "registry.example/payments:1.1.0",
    );
    cafectl(pg, Role::Operator, &["apply", "-f", &v2]);
    let mut pauses = 0;
    loop {
        let status = wait_status(
            &mut client,
            &reference,
            STEP,
            |_| {},
            |s| awaiting_confirm(s) || s.phase == "Stable",
        )
        .await
        .expect("the group finishes");
        if status.phase == "Stable" {
            break;
        }
        // At every pause, cafectl status agrees with cafectl plan unit by unit.
        let status = cafectl_json(pg, &["status", "payments", "-n", "finance", "-o", "json"]);
        let plan = cafectl_json(pg, &["plan", "payments", "-n", "finance", "-o", "json"]);
        let batch = status["batch"].as_u64().expect("batch") as usize;
        assert_eq!(batch, pauses, "paused at the wrong group");
        assert_eq!(status["phase"], "Paused");
        assert_eq!(
            status["batches"],
            plan["batches"].as_array().expect("batches").len()
        );
        for unit in status["units"].as_array().expect("units") {
            let name = &unit["unit"];
            let planned = plan["units"]
                .as_array()
                .expect("units")
                .iter()
                .find(|u| &u["unit"] == name)
                .expect("planned unit");
            let step = plan["batches"][batch]["units"]
                .as_array()
                .expect("steps")
                .iter()
                .find(|u| &u["unit"] == name)
                .expect("step");
            assert_eq!(unit["replicas"], planned["replicas"], "{name}");
            assert_eq!(unit["target"], step["updated"], "{name} in group {batch}");
            assert_eq!(unit["updated"], step["updated"], "{name} in group {batch}");
            assert_eq!(
                unit["updatedReady"], step["updated"],
                "{name} in group {batch}"
            );
            assert_eq!(unit["ready"], planned["replicas"], "{name}");
            assert_eq!(unit["connected"], true);
        }
        // A continue that names another group changes nothing.
        let (code, out, _) = cafectl(
            pg,
            Role::Operator,
            &[
                "continue",
                "payments",
                "-n",
                "finance",
                "--batch",
                &(batch + 1).to_string(),
            ],
        );
        assert_eq!(code, 0);
        assert!(out.contains("unchanged"), "{out}");
        let (code, _, err) = cafectl(
            pg,
            Role::Operator,
            &[
                "continue",
                "payments",
                "-n",
                "finance",
                "--batch",
                &batch.to_string(),
            ],
        );
        assert_eq!(code, 0, "{err}");
        pauses += 1;
    }
    assert_eq!(
        pauses, 2,
        "beta plus 2 batches pauses twice before the last group"
    );
    let released = wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("v2 everywhere");
    let after = pods(pg, "finance").await;
    assert_eq!(after.len(), 10);
    for (name, pod) in &after {
        let old = before
            .get(name)
            .unwrap_or_else(|| panic!("pod {name} was replaced; in-place updates keep pods"));
        assert_eq!(pod.uid, old.uid);
        assert_eq!(
            pod.restarts,
            old.restarts + 1,
            "{name} was not updated exactly once"
        );
        assert_eq!(pod.revision, released.current_revision);
    }

    let bad = write(
        setup.dir.path(),
        "bad.yaml",
        "registry.example/payments:1.2.0-crashloop",
    );
    cafectl(pg, Role::Operator, &["apply", "-f", &bad]);
    let failed = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| s.phase == "Failed",
    )
    .await
    .expect("the release fails");
    assert_eq!((failed.batch, failed.reason.as_str()), (0, "PodsFailing"));
    assert!(
        failed.message.contains("CrashLoopBackOff"),
        "{}",
        failed.message
    );
    // Group 0 updates one pod per unit and no more.
    assert!(failed.units.iter().all(|u| u.updated <= 1), "{failed:#?}");

    let (code, out, err) = cafectl(
        pg,
        Role::Operator,
        &["rollback", "payments", "-n", "finance"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&released.current_revision), "{out}");
    let rolled = wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("rolled back");
    assert_eq!(rolled.reason, "RolledBack");
    assert_eq!(rolled.current_revision, released.current_revision);
    assert!(
        pods(pg, "finance")
            .await
            .values()
            .all(|p| p.revision == released.current_revision)
    );

    let (sent, lost) = pg.traffic();
    assert!(sent > 0, "the load balancers sent no traffic");
    assert_eq!(lost, 0, "requests lost during the release and the rollback");
    let lowest = watcher.lowest_per_cluster();
    for unit in &rolled.units {
        let floor = unit.replicas.saturating_sub(1) as usize;
        assert!(
            lowest[&unit.cluster] >= floor,
            "{}: ready pods fell to {} (replicas {}, maxUnavailable 1)",
            unit.unit,
            lowest[&unit.cluster],
            unit.replicas
        );
    }
    setup.playground.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs() {
    let setup = start().await;
    cafe_tests::demo::run(&setup.playground)
        .await
        .expect("the demo goes as narrated");
    setup.playground.shutdown().await;
}
