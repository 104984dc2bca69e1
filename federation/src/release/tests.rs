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
    clock: WaitClock,
    now: i64,
    /// The groups a pipeline lets run (all when `None`).
    open: Option<usize>,
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
                Resource::Pipeline(_) => {}
            }
        }
        let deployment = deployment.expect("payments example");
        let state = ReleaseState::new(&deployment.spec.template, 0);
        Self {
            deployment,
            units,
            state,
            clock: WaitClock::default(),
            now: 1_000,
            open: None,
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
        match self.state.on_template(&template, self.now) {
            Some(next) => {
                self.enter(next);
                true
            }
            None => false,
        }
    }

    /// Makes `next` the state, as the hub does: a group that starts starts its wait clock.
    fn enter(&mut self, next: ReleaseState) {
        if self.state.group_started(&next) {
            self.clock = WaitClock::started(self.now);
        }
        self.state = next;
    }

    /// Runs a command and takes its state.
    fn command(
        &mut self,
        command: ReleaseCommand,
        expected_batch: Option<usize>,
        now: i64,
    ) -> Result<CommandOutcome, CommandError> {
        let outcome = self.state.command(command, expected_batch, now)?;
        if let Some(next) = &outcome.next {
            self.enter(next.clone());
        }
        Ok(outcome)
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
            let r = slice.replicas;
            Some(match slice.blue_green {
                None => Observed {
                    replicas: r,
                    ready: r,
                    updated: r - slice.partition,
                    updated_ready: r - slice.partition,
                    ..Observed::default()
                },
                // Switched: the new pods serve, the old ones stand by.
                Some(bg) if bg.switched => Observed {
                    replicas: 2 * r,
                    ready: r,
                    updated: r,
                    updated_ready: r,
                    serving: r,
                    updated_serving: r,
                    ..Observed::default()
                },
                // The old pods serve, the preview is ready beside them (or not there).
                Some(bg) => Observed {
                    replicas: if bg.preview { 2 * r } else { r },
                    ready: r,
                    updated: if bg.preview { r } else { 0 },
                    serving: r,
                    preview_ready: if bg.preview { r } else { 0 },
                    ..Observed::default()
                },
            })
        })
    }

    /// Every unit reports one updated pod, unready, and `pod` crash-looping.
    fn crashing(&self, pod: &str) -> Vec<UnitProgress> {
        self.progress(|s| {
            Some(Observed {
                replicas: s.replicas,
                ready: s.replicas - 1,
                updated: 1,
                updated_ready: 0,
                problems: vec![format!("{pod}: CrashLoopBackOff")],
                ..Observed::default()
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
                changed: true,
                observed: observe(s),
                blue_green: s.blue_green.map(|bg| BlueGreenPart {
                    switched: bg.switched,
                    preview: bg.preview,
                }),
            })
            .collect()
    }

    /// Looks at `progress`; true on a transition.
    fn advance(&mut self, progress: &[UnitProgress]) -> bool {
        let groups = self.plan().batches.len();
        let (advance, clock) = self.state.advance(
            self.clock,
            &self.deployment.spec.strategy,
            (groups, self.open.unwrap_or(groups)),
            progress,
            self.now,
        );
        self.clock = clock;
        match advance {
            Advance::Unchanged => false,
            Advance::Noted(next) => {
                self.state = next;
                false
            }
            Advance::Moved(next) => {
                self.enter(next);
                true
            }
        }
    }

    fn tick(&mut self, ms: i64) {
        self.now += ms;
    }

    /// Every unit reports what its slice asks for, and stays so past minReadySeconds.
    fn group_done(&mut self) {
        let done = self.report_done();
        self.advance(&done);
        self.tick(5_000);
        self.advance(&done);
    }
}

#[test]
fn seed_example_releases_group_by_group_with_confirmation() {
    let mut f = Fixture::new();
    assert_eq!(f.state.phase(), Phase::Stable);
    assert_eq!(f.partitions(), [0, 0]);
    assert!(f.new_image("registry.example/payments:1.1.0"));
    assert_eq!((f.state.phase(), f.state.batch()), (Phase::Progressing, 0));
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
        (f.state.phase(), f.state.reason()),
        (Phase::Progressing, Reason::WaitingForUnits)
    );
    assert!(
        f.state.message().contains("sh-az1"),
        "{}",
        f.state.message()
    );

    // Healthy, but minReadySeconds (5 s) must pass first.
    let done = f.report_done();
    assert!(!f.advance(&done));
    f.tick(5_000);
    assert!(f.advance(&done));
    assert_eq!(
        (f.state.phase(), f.state.reason(), f.state.batch()),
        (Phase::Paused, Reason::AwaitingConfirm, 0)
    );
    assert_eq!(
        f.partitions(),
        [4, 4],
        "a paused group keeps its partitions"
    );

    // Continue with the wrong expected group is harmless; with the right one it starts group 1.
    let outcome = f
        .command(ReleaseCommand::Continue, Some(1), f.now)
        .expect("no error");
    assert!(!outcome.changed());
    assert!(
        f.command(ReleaseCommand::Continue, Some(0), f.now)
            .expect("continues")
            .changed()
    );
    assert_eq!((f.state.phase(), f.state.batch()), (Phase::Progressing, 1));
    assert_eq!(f.partitions(), [2, 2]);
    // Repeating the same continue does nothing harmful.
    assert!(
        !f.command(ReleaseCommand::Continue, Some(0), f.now)
            .expect("no error")
            .changed()
    );
    assert_eq!(f.state.batch(), 1);

    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    f.advance(&done);
    assert_eq!((f.state.phase(), f.state.batch()), (Phase::Paused, 1));
    f.command(ReleaseCommand::Continue, None, f.now)
        .expect("continues");
    assert_eq!(f.partitions(), [0, 0]);
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    assert!(f.advance(&done));
    assert_eq!(
        (f.state.phase(), f.state.reason()),
        (Phase::Stable, Reason::Complete)
    );
    assert_eq!(f.state.current_revision, f.state.update_revision);
    assert_eq!(f.partitions(), [0, 0]);
}

#[test]
fn a_pipeline_holds_the_groups_of_its_later_stages() {
    let mut f = Fixture::new();
    f.open = Some(1);
    assert!(f.new_image("registry.example/payments:1.1.0"));
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    assert!(f.advance(&done));
    // The stage's last group is done: the pipeline, not `pause: Manual`, starts the next.
    assert_eq!(
        (f.state.phase(), f.state.reason(), f.state.batch()),
        (Phase::Paused, Reason::AwaitingStage, 0)
    );
    assert!(!f.state.slices_paused(), "the units keep what they run");
    let outcome = f
        .command(ReleaseCommand::Continue, None, f.now)
        .expect("no error");
    assert!(
        !outcome.changed(),
        "continue cannot pass a pipeline's stage"
    );
    assert!(!f.advance(&done), "nothing moves while the stage holds");
    f.open = Some(3);
    assert!(f.advance(&done));
    assert_eq!((f.state.phase(), f.state.batch()), (Phase::Progressing, 1));
    assert_eq!(f.partitions(), [2, 2]);
}

#[test]
fn a_disconnected_unit_blocks_progress() {
    let mut f = Fixture::new();
    f.new_image("registry.example/payments:1.1.0");
    let mut progress = f.report_done();
    progress[1].observed = None;
    f.tick(60_000);
    f.advance(&progress);
    assert_eq!(f.state.phase(), Phase::Progressing);
    assert!(f.state.message().contains("sh-az2"));
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
    assert_eq!(f.state.phase(), Phase::Paused);
}

#[test]
fn failing_pods_fail_the_release_and_pause_the_slices_until_retry() {
    let mut f = Fixture::new();
    f.new_image("registry.example/payments:crashloop");
    let progress = f.crashing("payments-x");
    assert!(f.advance(&progress));
    assert_eq!(
        (f.state.phase(), f.state.reason(), f.state.batch()),
        (Phase::Failed, Reason::PodsFailing, 0)
    );
    assert!(f.state.message().contains("CrashLoopBackOff"));
    assert!(
        f.slices().iter().all(|s| s.paused),
        "a failed release stops the agents' updates"
    );
    // Nothing advances while failed.
    f.tick(10_000);
    assert!(!f.advance(&f.report_done()));
    assert!(
        f.command(ReleaseCommand::Retry, None, f.now)
            .expect("retries")
            .changed()
    );
    assert_eq!(
        (f.state.phase(), f.state.reason()),
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
        f.state.phase(),
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
    assert_eq!(f.state.phase(), Phase::Progressing);
    f.tick(1_000);
    f.advance(&stuck);
    assert_eq!(f.state.phase(), Phase::Failed);
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
    assert_eq!(f.state.phase(), Phase::Progressing);
    f.tick(1_000);
    assert!(f.advance(&stuck));
    assert_eq!(
        (f.state.phase(), f.state.reason()),
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
        .command(ReleaseCommand::Rollback { to_revision: None }, None, f.now)
        .expect("rolls back");
    assert!(outcome.changed());
    assert_eq!(
        outcome
            .next
            .as_ref()
            .and_then(ReleaseState::rollback_target),
        Some(&stable_template)
    );
    assert_eq!(f.state.phase(), Phase::RollingBack);
    assert_eq!(f.state.update_revision, stable);
    let slices = f.slices();
    assert!(slices.iter().all(|s| s.partition == 0
        && s.update_revision == stable
        && *s.template == stable_template));
    // Idempotent.
    assert!(
        !f.command(ReleaseCommand::Rollback { to_revision: None }, None, f.now)
            .expect("ok")
            .changed()
    );
    assert!(f.advance(&f.report_done()));
    assert_eq!(
        (f.state.phase(), f.state.reason()),
        (Phase::Stable, Reason::RolledBack)
    );
    assert_eq!(f.state.current_revision, stable);
}

#[test]
fn rollback_of_a_stable_deployment_goes_to_the_previous_revision() {
    let mut f = Fixture::new();
    assert_eq!(
        f.command(ReleaseCommand::Rollback { to_revision: None }, None, f.now),
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
    assert_eq!(f.state.phase(), Phase::Stable, "{:?}", f.state);
    assert_ne!(f.state.current_revision, first);
    let history: Vec<i64> = f.state.history.iter().map(|r| r.number).collect();
    assert_eq!(history, [1, 2]);
    f.command(
        ReleaseCommand::Rollback {
            to_revision: Some(1),
        },
        None,
        f.now,
    )
    .expect("rolls back");
    assert_eq!(f.state.update_revision, first);
    assert_eq!(
        f.command(
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
        f.command(ReleaseCommand::Pause, None, f.now)
            .expect("pauses")
            .changed()
    );
    assert_eq!(
        (f.state.phase(), f.state.reason()),
        (Phase::Paused, Reason::PausedByOperator)
    );
    assert!(f.slices().iter().all(|s| s.paused));
    assert!(
        !f.command(ReleaseCommand::Pause, None, f.now)
            .expect("ok")
            .changed()
    );
    f.command(ReleaseCommand::Continue, None, f.now)
        .expect("continues");
    assert_eq!((f.state.phase(), f.state.batch()), (Phase::Progressing, 0));
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
        (f.state.phase(), f.state.reason(), f.state.batch()),
        (Phase::Progressing, Reason::AutoPausing, 0)
    );
    f.tick(10_000);
    assert!(f.advance(&done));
    assert_eq!(f.state.batch(), 1);
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

#[test]
fn a_stored_release_reads_back_into_the_state_it_was_and_keeps_its_record_form() {
    let mut f = Fixture::new();
    assert!(f.new_image("registry.example/payments:1.1.0"));
    let crashing = f.crashing("payments-0");
    assert!(f.advance(&crashing));
    let json = serde_json::to_value(&f.state).expect("serialises");
    // The record form is the flat one stored records always had, with the failing pods.
    assert_eq!(json["phase"], "Failed");
    assert_eq!(json["reason"], "PodsFailing");
    assert_eq!(json["batch"], 0);
    assert_eq!(
        json["failing"][0], "sh-az1: payments-0: CrashLoopBackOff",
        "{json}"
    );
    assert!(
        json.get("waitedMs").is_none(),
        "runtime counters stay out of the record"
    );
    let back: ReleaseState = serde_json::from_value(json).expect("reads back");
    assert_eq!(back, f.state);
    let Stage::Failed {
        group: 0,
        failure: Failure::PodsFailing { pods },
    } = back.stage()
    else {
        panic!("{:?}", back.stage());
    };
    assert_eq!(pods.len(), 2, "one failing pod per unit");
}

#[test]
fn a_record_of_an_older_hub_reads_as_the_state_it_describes() {
    let f = Fixture::new();
    let mut json = serde_json::to_value(&f.state).expect("serialises");
    // What hubs before the typed states stored: no `failing`, a paused group.
    json["phase"] = "Paused".into();
    json["reason"] = "AwaitingConfirm".into();
    json["batch"] = 1.into();
    json.as_object_mut().expect("object").remove("failing");
    let state: ReleaseState = serde_json::from_value(json).expect("reads");
    assert_eq!(
        state.stage(),
        &Stage::Paused {
            group: 1,
            reason: PauseReason::AwaitingConfirm
        }
    );
}

#[test]
fn a_record_with_an_impossible_state_is_refused_by_name() {
    let f = Fixture::new();
    let mut json = serde_json::to_value(&f.state).expect("serialises");
    json["phase"] = "Stable".into();
    json["reason"] = "PodsFailing".into();
    let error = serde_json::from_value::<ReleaseState>(json).expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("a release cannot be Stable for reason PodsFailing"),
        "{error}"
    );
}

#[test]
fn a_transition_leaves_the_state_it_started_from_as_it_was() {
    let mut f = Fixture::new();
    assert!(f.new_image("registry.example/payments:1.1.0"));
    let before = f.state.clone();
    let done = f.report_done();
    let groups = f.plan().batches.len();
    f.now += 10_000;
    let (advance, clock) = f.state.advance(
        f.clock,
        &f.deployment.spec.strategy,
        (groups, groups),
        &done,
        f.now,
    );
    assert_eq!(f.state, before, "advance changed the state in place");
    let Advance::Noted(next) = advance else {
        panic!("a healthy group first notes since when: {advance:?}");
    };
    assert!(matches!(
        next.stage(),
        Stage::Progressing {
            healthy_since_ms: Some(_),
            ..
        }
    ));
    assert!(clock.last_checked_ms == Some(f.now));
}

#[test]
fn a_slice_digest_is_its_content_not_where_it_runs() {
    let f = Fixture::new();
    let slices = f.slices();
    let (a, b) = (&slices[0], &slices[1]);
    assert_ne!(a.id, b.id);
    assert_eq!(
        a.digest(),
        b.digest(),
        "two units with the same content have the same digest"
    );
    let mut moved = a.clone();
    moved.cluster = crate::names::ClusterName::new("elsewhere").expect("name");
    assert_eq!(moved.digest(), a.digest());
    let changes: [fn(&mut SliceSpec); 8] = [
        |s| s.replicas += 1,
        |s| s.partition += 1,
        |s| s.update_revision.push('x'),
        |s| s.paused = !s.paused,
        |s| s.reason.push_str("failover"),
        |s| s.traffic.drain_seconds += 1,
        |s| s.traffic.finalizers.push("lb.example/x".to_owned()),
        |s| {
            s.node_selector.insert("zone".to_owned(), "z1".to_owned());
        },
    ];
    for change in changes {
        let mut changed = a.clone();
        change(&mut changed);
        assert_ne!(changed.digest(), a.digest(), "{changed:?}");
    }
}

/// Which units serve the new revision, and which preview it.
fn blue_green_parts(f: &Fixture) -> Vec<(bool, bool)> {
    f.slices()
        .iter()
        .map(|s| {
            s.blue_green
                .map(|b| (b.switched, b.preview))
                .expect("blue-green slice")
        })
        .collect()
}

#[test]
fn a_blue_green_release_previews_pauses_before_each_switch_and_switches_back() {
    let mut f = Fixture::new();
    f.deployment.spec.strategy.type_ = crate::resources::StrategyType::BlueGreen;
    f.deployment.spec.strategy.blue_green = Some(crate::resources::BlueGreenStrategy {
        scale_down_delay_seconds: 600,
    });
    let groups: Vec<Vec<i32>> = f
        .plan()
        .batches
        .iter()
        .map(|g| g.units.iter().map(|s| s.updated).collect())
        .collect();
    assert_eq!(
        groups,
        [vec![5, 0], vec![5, 5]],
        "a unit switches whole, one per group"
    );
    let stable = f.state.current_revision.clone();
    assert_eq!(blue_green_parts(&f), [(true, false), (true, false)]);
    assert!(f.new_image("registry.example/payments:1.1.0"));
    assert_eq!(
        blue_green_parts(&f),
        [(false, true), (false, false)],
        "sh-az1 previews"
    );

    // The preview is not ready: nothing moves.
    let not_ready = f.progress(|s| {
        Some(Observed {
            replicas: s.replicas,
            ready: s.replicas,
            serving: s.replicas,
            ..Observed::default()
        })
    });
    f.advance(&not_ready);
    assert_eq!(f.state.reason(), Reason::WaitingForUnits);
    // Ready, and minReadySeconds later: the switch waits for an operator.
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    f.advance(&done);
    assert_eq!(
        (f.state.phase(), f.state.reason(), f.state.batch()),
        (Phase::Paused, Reason::AwaitingSwitch, 0)
    );
    assert_eq!(
        blue_green_parts(&f),
        [(false, true), (false, false)],
        "no traffic moved yet"
    );

    f.command(ReleaseCommand::Continue, Some(0), f.now)
        .expect("continue");
    assert_eq!(f.state.reason(), Reason::Switching);
    assert_eq!(
        blue_green_parts(&f),
        [(true, false), (false, false)],
        "sh-az1 switches"
    );
    // Until the old pods leave traffic, the switch is not done.
    let mid_switch = f.progress(|s| {
        Some(Observed {
            replicas: 2 * s.replicas,
            ready: 2 * s.replicas,
            updated: s.replicas,
            updated_ready: s.replicas,
            serving: 2 * s.replicas,
            updated_serving: s.replicas,
            ..Observed::default()
        })
    });
    f.advance(&mid_switch);
    assert_eq!((f.state.reason(), f.state.batch()), (Reason::Switching, 0));
    // Switched: the next group's preview starts without a pause.
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    f.advance(&done);
    assert_eq!((f.state.phase(), f.state.batch()), (Phase::Progressing, 1));
    assert_eq!(blue_green_parts(&f), [(true, false), (false, true)]);
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    f.advance(&done);
    assert_eq!(f.state.reason(), Reason::AwaitingSwitch);
    f.command(ReleaseCommand::Continue, Some(1), f.now)
        .expect("continue");
    assert_eq!(blue_green_parts(&f), [(true, false), (true, false)]);
    let done = f.report_done();
    f.advance(&done);
    f.tick(5_000);
    f.advance(&done);
    assert_eq!(
        (f.state.phase(), f.state.reason()),
        (Phase::Stable, Reason::Complete)
    );

    // The way back: every unit switches back to the old revision at once.
    f.command(ReleaseCommand::Rollback { to_revision: None }, None, f.now)
        .expect("rollback");
    assert_eq!(f.state.phase(), Phase::RollingBack);
    assert_eq!(f.state.update_revision, stable);
    assert!(
        f.slices()
            .iter()
            .all(|s| s.update_revision == stable && s.blue_green.is_some_and(|b| b.switched))
    );
    let done = f.report_done();
    f.advance(&done);
    assert_eq!(
        (f.state.phase(), f.state.reason()),
        (Phase::Stable, Reason::RolledBack)
    );
}

/// Evacuates `unit` and returns the slices while the hub still holds its pods (its slice keeps
/// `held` replicas until the survivors' new pods are ready).
fn held_slices(f: &mut Fixture, unit: &str, held: i32) -> Vec<SliceSpec> {
    let name = UnitName::new(unit).expect("unit");
    f.units.get_mut(&name).expect("the unit").status = Some(crate::resources::LogicalUnitStatus {
        phase: crate::resources::UnitPhase::Evacuated,
        ..Default::default()
    });
    let mut plan = f.plan();
    let planned = plan
        .units
        .iter_mut()
        .find(|u| u.unit == name)
        .expect("planned");
    assert_eq!(planned.replicas, 0, "the evacuated unit's replicas move");
    planned.replicas = held;
    desired_slices(&f.deployment, &plan, &f.state, &BTreeMap::new())
}

#[test]
fn an_evacuated_unit_keeps_its_updated_pods_while_it_holds_them() {
    let mut f = Fixture::new();
    f.new_image("registry.example/payments:1.1.0");
    f.group_done();
    f.command(ReleaseCommand::Continue, Some(0), f.now)
        .expect("continue");
    assert_eq!(
        f.partitions(),
        [2, 2],
        "group 1: three of five pods updated"
    );
    // sh-az1's pods follow the groups it would have had: none of them goes back meanwhile.
    let slices = held_slices(&mut f, "sh-az1", 5);
    assert_eq!(
        slices.iter().map(|s| s.partition).collect::<Vec<_>>(),
        [2, 5]
    );
}

#[test]
fn an_evacuated_blue_green_unit_does_not_switch_back_while_it_holds_its_pods() {
    let mut f = Fixture::new();
    f.deployment.spec.strategy.type_ = crate::resources::StrategyType::BlueGreen;
    f.deployment.spec.strategy.blue_green = Some(crate::resources::BlueGreenStrategy {
        scale_down_delay_seconds: 600,
    });
    assert!(f.new_image("registry.example/payments:1.1.0"));
    f.group_done();
    f.command(ReleaseCommand::Continue, Some(0), f.now)
        .expect("continue");
    f.group_done();
    assert_eq!(blue_green_parts(&f), [(true, false), (false, true)]);
    // sh-az1 switched in group 0 and keeps serving the new revision until its pods go.
    let slices = held_slices(&mut f, "sh-az1", 5);
    let parts: Vec<(bool, bool)> = slices
        .iter()
        .filter_map(|s| s.blue_green.map(|b| (b.switched, b.preview)))
        .collect();
    assert_eq!(parts, [(true, false), (false, true)]);
    assert_eq!(slices[0].partition, 0);
}
