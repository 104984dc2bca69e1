//! The release state machine, driven through the seed's example.

use super::*;
use crate::names::UnitName;
use crate::plan::{Plan, plan_deployment};
use crate::resources::{CafeDeployment, LogicalUnit, PauseMode, Resource, parse_yaml_documents};
use std::collections::BTreeMap;

const UNITS: &str = include_str!("../../../deploy/examples/units.yaml");
const PAYMENTS: &str = include_str!("../../../deploy/examples/payments.yaml");

struct Fixture {
    deployment: CafeDeployment,
    units: BTreeMap<UnitName, LogicalUnit>,
    state: ReleaseState,
    now: i64,
}

impl Fixture {
    fn new() -> Self {
        let mut units = BTreeMap::new();
        let mut deployment = None;
        for r in
            parse_yaml_documents(&format!("{UNITS}\n---\n{PAYMENTS}")).expect("examples are valid")
        {
            match r {
                Resource::Unit(u) => {
                    units.insert(u.name().expect("name"), *u);
                }
                Resource::Deployment(d) => deployment = Some(*d),
            }
        }
        let deployment = deployment.expect("payments example");
        let state = ReleaseState::new(&deployment.spec.template, 0);
        Self {
            deployment,
            units,
            state,
            now: 1_000,
        }
    }

    fn plan(&self) -> Plan {
        plan_deployment(&self.deployment, &self.units, &BTreeMap::new()).expect("plans")
    }

    fn new_image(&mut self, image: &str) -> bool {
        let template = &mut self.deployment.spec.template;
        let pod = template.spec.as_mut().expect("pod spec");
        pod.containers[0].image = Some(image.to_owned());
        let template = template.clone();
        self.state.on_template(&template, self.now)
    }

    fn slices(&self) -> Vec<SliceSpec> {
        desired_slices(
            &self.deployment,
            &self.plan(),
            &self.state,
            &BTreeMap::new(),
        )
    }

    fn partitions(&self) -> Vec<i32> {
        self.slices().iter().map(|s| s.partition).collect()
    }

    /// Every unit reports exactly what its slice asks for, healthy.
    fn report_done(&self) -> Vec<UnitProgress> {
        self.progress(|slice| {
            Some(Observed {
                replicas: slice.replicas,
                ready: slice.replicas,
                updated: slice.replicas - slice.partition,
                updated_ready: slice.replicas - slice.partition,
                problems: Vec::new(),
            })
        })
    }

    fn progress(&self, observe: impl Fn(&SliceSpec) -> Option<Observed>) -> Vec<UnitProgress> {
        self.slices()
            .iter()
            .map(|s| UnitProgress {
                unit: s.id.unit.clone(),
                evacuated: false,
                replicas: s.replicas,
                target: s.replicas - s.partition,
                observed: observe(s),
            })
            .collect()
    }

    fn advance(&mut self, progress: &[UnitProgress]) -> bool {
        let groups = self.plan().batches.len();
        self.state
            .advance(&self.deployment.spec.strategy, groups, progress, self.now)
    }

    fn tick(&mut self, ms: i64) {
        self.now += ms;
    }
}

#[test]
fn seed_example_releases_group_by_group_with_confirmation() {
    let mut f = Fixture::new();
    assert_eq!(f.state.phase, Phase::Stable);
    assert_eq!(f.partitions(), [0, 0]);
    assert!(f.new_image("registry.example/payments:1.1.0"));
    assert_eq!((f.state.phase, f.state.batch), (Phase::Progressing, 0));
    assert_eq!(f.partitions(), [4, 4], "group 0 updates one pod per unit");
    let slices = f.slices();
    assert_ne!(slices[0].update_revision, slices[0].stable_revision);

    // Not yet healthy: waits, and the units are named.
    let waiting = f.progress(|_| {
        Some(Observed {
            replicas: 5,
            ready: 5,
            ..Observed::default()
        })
    });
    f.advance(&waiting);
    assert_eq!(
        (f.state.phase, f.state.reason),
        (Phase::Progressing, Reason::WaitingForUnits)
    );
    assert!(f.state.message.contains("sh-az1"), "{}", f.state.message);

    // Healthy, but minReadySeconds (5 s) must pass first.
    let done = f.report_done();
    assert!(!f.advance(&done));
    f.tick(5_000);
    assert!(f.advance(&done));
    assert_eq!(
        (f.state.phase, f.state.reason, f.state.batch),
        (Phase::Paused, Reason::AwaitingConfirm, 0)
    );
    assert_eq!(
        f.partitions(),
        [4, 4],
        "a paused group keeps its partitions"
    );

    // Continue with the wrong expected group is harmless; with the right one it starts group 1.
    let outcome = f
        .state
        .command(ReleaseCommand::Continue, Some(1), f.now)
        .expect("no error");
    assert!(!outcome.changed);
    assert!(
        f.state
            .command(ReleaseCommand::Continue, Some(0), f.now)
            .expect("continues")
            .changed
    );
    assert_eq!((f.state.phase, f.state.batch), (Phase::Progressing, 1));
    assert_eq!(f.partitions(), [2, 2]);
    // Repeating the same continue does nothing harmful.
    assert!(
        !f.state
            .command(ReleaseCommand::Continue, Some(0), f.now)
            .expect("no error")
            .changed
    );
    assert_eq!(f.state.batch, 1);

    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    f.advance(&done);
    assert_eq!((f.state.phase, f.state.batch), (Phase::Paused, 1));
    f.state
        .command(ReleaseCommand::Continue, None, f.now)
        .expect("continues");
    assert_eq!(f.partitions(), [0, 0]);
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    assert!(f.advance(&done));
    assert_eq!(
        (f.state.phase, f.state.reason),
        (Phase::Stable, Reason::Complete)
    );
    assert_eq!(f.state.current_revision, f.state.update_revision);
    assert_eq!(f.partitions(), [0, 0]);
}

#[test]
fn a_disconnected_unit_blocks_progress() {
    let mut f = Fixture::new();
    f.new_image("registry.example/payments:1.1.0");
    let mut progress = f.report_done();
    progress[1].observed = None;
    f.tick(60_000);
    f.advance(&progress);
    assert_eq!(f.state.phase, Phase::Progressing);
    assert!(f.state.message.contains("sh-az2"));
}

#[test]
fn evacuated_units_are_left_out() {
    let mut f = Fixture::new();
    f.new_image("registry.example/payments:1.1.0");
    let mut progress = f.report_done();
    progress[1].observed = None;
    progress[1].evacuated = true;
    f.advance(&progress);
    f.tick(5_000);
    f.advance(&progress);
    assert_eq!(f.state.phase, Phase::Paused);
}

#[test]
fn failing_pods_fail_the_release_and_pause_the_slices_until_retry() {
    let mut f = Fixture::new();
    f.new_image("registry.example/payments:crashloop");
    let progress = f.progress(|s| {
        Some(Observed {
            replicas: s.replicas,
            ready: s.replicas - 1,
            updated: 1,
            updated_ready: 0,
            problems: vec!["payments-x: CrashLoopBackOff".to_owned()],
        })
    });
    assert!(f.advance(&progress));
    assert_eq!(
        (f.state.phase, f.state.reason, f.state.batch),
        (Phase::Failed, Reason::PodsFailing, 0)
    );
    assert!(f.state.message.contains("CrashLoopBackOff"));
    assert!(
        f.slices().iter().all(|s| s.paused),
        "a failed release stops the agents' updates"
    );
    // Nothing advances while failed.
    f.tick(10_000);
    assert!(!f.advance(&f.report_done()));
    assert!(
        f.state
            .command(ReleaseCommand::Retry, None, f.now)
            .expect("retries")
            .changed
    );
    assert_eq!(
        (f.state.phase, f.state.reason),
        (Phase::Progressing, Reason::Retrying)
    );
    assert!(f.slices().iter().all(|s| !s.paused));
}

#[test]
fn unknown_units_do_not_count_towards_the_progress_deadline() {
    let mut f = Fixture::new();
    f.deployment.spec.strategy.progress_deadline_seconds = 30;
    f.new_image("registry.example/payments:1.1.0");
    let mut stuck = f.progress(|s| {
        Some(Observed {
            replicas: s.replicas,
            ready: s.replicas - 1,
            ..Observed::default()
        })
    });
    stuck[1].observed = None;
    f.tick(60_000);
    f.advance(&stuck);
    assert_eq!(
        f.state.phase,
        Phase::Progressing,
        "an unknown unit blocks, it does not fail the release"
    );
    // Known again: the deadline counts from here.
    let stuck = f.progress(|s| {
        Some(Observed {
            replicas: s.replicas,
            ready: s.replicas - 1,
            ..Observed::default()
        })
    });
    f.tick(29_000);
    f.advance(&stuck);
    assert_eq!(f.state.phase, Phase::Progressing);
    f.tick(1_000);
    f.advance(&stuck);
    assert_eq!(f.state.phase, Phase::Failed);
}

#[test]
fn progress_deadline_fails_the_group() {
    let mut f = Fixture::new();
    f.deployment.spec.strategy.progress_deadline_seconds = 30;
    f.new_image("registry.example/payments:1.1.0");
    let stuck = f.progress(|s| {
        Some(Observed {
            replicas: s.replicas,
            ready: s.replicas - 1,
            ..Observed::default()
        })
    });
    f.tick(29_000);
    f.advance(&stuck);
    assert_eq!(f.state.phase, Phase::Progressing);
    f.tick(1_000);
    assert!(f.advance(&stuck));
    assert_eq!(
        (f.state.phase, f.state.reason),
        (Phase::Failed, Reason::ProgressDeadlineExceeded)
    );
}

#[test]
fn rollback_returns_every_unit_to_the_stable_revision_at_once() {
    let mut f = Fixture::new();
    let stable = f.state.current_revision.clone();
    let stable_template = f.deployment.spec.template.clone();
    f.new_image("registry.example/payments:crashloop");
    let outcome = f
        .state
        .command(ReleaseCommand::Rollback { to_revision: None }, None, f.now)
        .expect("rolls back");
    assert!(outcome.changed);
    assert_eq!(outcome.restore_template.as_ref(), Some(&stable_template));
    assert_eq!(f.state.phase, Phase::RollingBack);
    assert_eq!(f.state.update_revision, stable);
    let slices = f.slices();
    assert!(
        slices.iter().all(|s| s.partition == 0
            && s.update_revision == stable
            && s.template == stable_template)
    );
    // Idempotent.
    assert!(
        !f.state
            .command(ReleaseCommand::Rollback { to_revision: None }, None, f.now)
            .expect("ok")
            .changed
    );
    assert!(f.advance(&f.report_done()));
    assert_eq!(
        (f.state.phase, f.state.reason),
        (Phase::Stable, Reason::RolledBack)
    );
    assert_eq!(f.state.current_revision, stable);
}

#[test]
fn rollback_of_a_stable_deployment_goes_to_the_previous_revision() {
    let mut f = Fixture::new();
    assert_eq!(
        f.state
            .command(ReleaseCommand::Rollback { to_revision: None }, None, f.now),
        Err(CommandError::NothingToRollBack)
    );
    let first = f.state.current_revision.clone();
    f.deployment.spec.strategy.pause = PauseMode::Auto;
    f.new_image("registry.example/payments:1.1.0");
    for _ in 0..6 {
        let done = f.report_done();
        f.advance(&done);
        f.tick(5_000);
    }
    assert_eq!(f.state.phase, Phase::Stable, "{:?}", f.state);
    assert_ne!(f.state.current_revision, first);
    let history: Vec<i64> = f.state.history.iter().map(|r| r.number).collect();
    assert_eq!(history, [1, 2]);
    f.state
        .command(
            ReleaseCommand::Rollback {
                to_revision: Some(1),
            },
            None,
            f.now,
        )
        .expect("rolls back");
    assert_eq!(f.state.update_revision, first);
    assert_eq!(
        f.state.command(
            ReleaseCommand::Rollback {
                to_revision: Some(7)
            },
            None,
            f.now
        ),
        Err(CommandError::UnknownRevision(7))
    );
}

#[test]
fn operator_pause_stops_updates_and_continue_resumes_the_same_group() {
    let mut f = Fixture::new();
    f.new_image("registry.example/payments:1.1.0");
    assert!(
        f.state
            .command(ReleaseCommand::Pause, None, f.now)
            .expect("pauses")
            .changed
    );
    assert_eq!(
        (f.state.phase, f.state.reason),
        (Phase::Paused, Reason::PausedByOperator)
    );
    assert!(f.slices().iter().all(|s| s.paused));
    assert!(
        !f.state
            .command(ReleaseCommand::Pause, None, f.now)
            .expect("ok")
            .changed
    );
    f.state
        .command(ReleaseCommand::Continue, None, f.now)
        .expect("continues");
    assert_eq!((f.state.phase, f.state.batch), (Phase::Progressing, 0));
}

#[test]
fn auto_pause_waits_then_starts_the_next_group() {
    let mut f = Fixture::new();
    f.deployment.spec.strategy.pause = PauseMode::Auto;
    f.deployment.spec.strategy.auto_pause_seconds = 10;
    f.new_image("registry.example/payments:1.1.0");
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    f.advance(&done);
    assert_eq!(
        (f.state.phase, f.state.reason, f.state.batch),
        (Phase::Progressing, Reason::AutoPausing, 0)
    );
    f.tick(10_000);
    assert!(f.advance(&done));
    assert_eq!(f.state.batch, 1);
}

#[test]
fn history_keeps_the_last_ten_revisions_and_reuses_names() {
    let mut f = Fixture::new();
    let first = f.state.current_revision.clone();
    for i in 0..12 {
        f.new_image(&format!("registry.example/payments:2.{i}"));
    }
    assert_eq!(f.state.history.iter().count(), KEPT_REVISIONS);
    assert!(
        f.state.history.get(&first).is_some(),
        "the current revision is never dropped"
    );
    // Going back to a kept template reuses its name with a new number.
    f.new_image("registry.example/payments:2.5");
    let newest = f.state.history.iter().last().expect("history");
    assert_eq!(newest.name, f.state.update_revision);
    assert_eq!(newest.number, 14);
}
