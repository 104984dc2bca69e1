#![allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.

use super::*;

const YAML: &str = "apiVersion: cafe.io/v1alpha1
kind: ReleasePipeline
metadata: {name: q4, namespace: finance}
spec:
  stages:
  - name: backends
    regions: [cn-hangzhou]
    gate: Approval
    releases:
    - {deployment: ledger, images: {app: ledger:2}}
    - {deployment: accounts, images: {app: accounts:2}}
  - name: backends-shanghai
    releases: [{deployment: ledger}, {deployment: accounts}]
  - name: front
    releases: [{deployment: payments, images: {app: payments:2}}]
";

fn pipeline() -> ReleasePipeline {
    let p: ReleasePipeline = serde_saphyr::from_str(YAML).unwrap();
    p.validate().unwrap();
    p
}

fn names(list: &[&str]) -> BTreeMap<String, String> {
    list.iter()
        .map(|d| ((*d).to_owned(), format!("{d}-old")))
        .collect()
}

fn state() -> PipelineState {
    let from = names(&["ledger", "accounts", "payments"]);
    let targets = from
        .keys()
        .map(|d| (d.clone(), format!("{d}-new")))
        .collect();
    PipelineState::new(from, targets, 0)
}

/// A release on `revision` in `phase`, with groups in `backends` (2) then `backends-shanghai`
/// (2) for the backends, or `front` (2) for payments.
fn view(deployment: &str, phase: Phase, reason: Reason, group: usize, moved: bool) -> ReleaseView {
    let stages: Vec<Option<String>> = if deployment == "payments" {
        vec![Some("front".into()); 2]
    } else {
        vec![
            Some("backends".into()),
            Some("backends".into()),
            Some("backends-shanghai".into()),
            Some("backends-shanghai".into()),
        ]
    };
    let (old, new) = (format!("{deployment}-old"), format!("{deployment}-new"));
    ReleaseView {
        phase,
        reason,
        group,
        current_revision: if phase == Phase::Stable && moved {
            new.clone()
        } else {
            old.clone()
        },
        update_revision: if moved { new } else { old },
        group_stages: stages,
        message: String::new(),
    }
}

fn stable_old() -> BTreeMap<String, ReleaseView> {
    ["ledger", "accounts", "payments"]
        .iter()
        .map(|d| {
            (
                (*d).to_owned(),
                view(d, Phase::Stable, Reason::Created, 0, false),
            )
        })
        .collect()
}

#[test]
fn stages_run_in_order_behind_their_gate() {
    let p = pipeline();
    let mut views = stable_old();
    let step = state().drive(&p, &views, 1);
    assert_eq!(
        step.actions,
        [
            Action::Start {
                deployment: "ledger".into()
            },
            Action::Start {
                deployment: "accounts".into()
            }
        ]
    );
    let s = step.next.unwrap();
    // Asked again with the same releases, it asks for nothing new.
    views.insert(
        "ledger".into(),
        view("ledger", Phase::Progressing, Reason::NewRevision, 0, true),
    );
    views.insert(
        "accounts".into(),
        view("accounts", Phase::Progressing, Reason::NewRevision, 0, true),
    );
    assert_eq!(s.drive(&p, &views, 2), Step::default());
    // ledger holds at the end of Hangzhou's groups; accounts is still on its first group.
    views.insert(
        "ledger".into(),
        view("ledger", Phase::Paused, Reason::AwaitingStage, 1, true),
    );
    assert_eq!(s.drive(&p, &views, 3), Step::default());
    assert_eq!(
        s.standing(&p, 0, "ledger", views.get("ledger")),
        ReleaseStanding::Done
    );
    assert!(s.waiting_for(&p, &views).starts_with("accounts to finish"));
    views.insert(
        "accounts".into(),
        view("accounts", Phase::Paused, Reason::AwaitingStage, 1, true),
    );
    let s = s.drive(&p, &views, 4).next.unwrap();
    assert_eq!(s.progress, Progress::AwaitingApproval { stage: 0 });
    // An approval that names another stage changes nothing; the right one opens the gate.
    let wrong = s.command(&p, PipelineCommand::Approve, Some("front"), &views, 5);
    assert!(!wrong.changed(), "{wrong:?}");
    assert!(wrong.message.contains("at stage backends, not front"));
    let s = s
        .command(&p, PipelineCommand::Approve, Some("backends"), &views, 6)
        .next
        .unwrap();
    assert_eq!(s.progress, Progress::Running { stage: 1 });
    // Stage 2 starts nothing new: the backends were started by stage 1 and only hold.
    assert_eq!(s.drive(&p, &views, 7), Step::default());
    assert_eq!(open_groups(&p, 1, &views["ledger"].group_stages), 4);
    assert_eq!(open_groups(&p, 0, &views["ledger"].group_stages), 2);
    for d in ["ledger", "accounts"] {
        views.insert(d.into(), view(d, Phase::Stable, Reason::Complete, 3, true));
    }
    let s = s.drive(&p, &views, 8).next.unwrap();
    assert_eq!(s.progress, Progress::Running { stage: 2 });
    let step = s.drive(&p, &views, 9);
    assert_eq!(
        step.actions,
        [Action::Start {
            deployment: "payments".into()
        }]
    );
    let s = step.next.unwrap();
    views.insert(
        "payments".into(),
        view("payments", Phase::Stable, Reason::Complete, 1, true),
    );
    let s = s.drive(&p, &views, 10).next.unwrap();
    assert_eq!(s.progress, Progress::Succeeded);
    assert!(!s.progress.drives());
}

#[test]
fn a_failure_rolls_back_every_release_latest_stage_first() {
    let p = pipeline();
    let mut views = stable_old();
    let mut s = state();
    s.progress = Progress::Running { stage: 2 };
    s.started = ["ledger", "accounts", "payments"]
        .iter()
        .map(|d| (*d).to_owned())
        .collect();
    for d in ["ledger", "accounts"] {
        views.insert(d.into(), view(d, Phase::Stable, Reason::Complete, 3, true));
    }
    views.insert(
        "payments".into(),
        view("payments", Phase::Failed, Reason::PodsFailing, 0, true),
    );
    let s = s.drive(&p, &views, 1).next.unwrap();
    let Progress::RollingBack {
        stage: 2,
        from_stage: 2,
        failure: Some(failure),
    } = &s.progress
    else {
        panic!("{s:?}");
    };
    assert!(failure.starts_with("payments: PodsFailing"), "{failure}");
    // The front goes back first; the backends wait.
    let step = s.drive(&p, &views, 2);
    assert_eq!(
        step.actions,
        [Action::Rollback {
            deployment: "payments".into(),
            revision: "payments-old".into()
        }]
    );
    views.insert(
        "payments".into(),
        view("payments", Phase::Stable, Reason::RolledBack, 0, false),
    );
    let s = s.drive(&p, &views, 3).next.unwrap();
    assert!(matches!(s.progress, Progress::RollingBack { stage: 1, .. }));
    let step = s.drive(&p, &views, 4);
    assert_eq!(
        step.actions,
        [
            Action::Rollback {
                deployment: "ledger".into(),
                revision: "ledger-old".into()
            },
            Action::Rollback {
                deployment: "accounts".into(),
                revision: "accounts-old".into()
            }
        ]
    );
    for d in ["ledger", "accounts"] {
        views.insert(
            d.into(),
            view(d, Phase::Stable, Reason::RolledBack, 0, false),
        );
    }
    // The backends rolled back with stage 1, their latest: stage 0 has nothing left.
    let s = s.drive(&p, &views, 5).next.unwrap();
    assert!(matches!(s.progress, Progress::RollingBack { stage: 0, .. }));
    let s = s.drive(&p, &views, 6).next.unwrap();
    assert!(matches!(
        s.progress,
        Progress::RolledBack { failure: Some(_) }
    ));
}

#[test]
fn stop_pauses_the_stage_and_resume_continues_it() {
    let mut p = pipeline();
    p.spec.on_failure = PipelineOnFailure::Stop;
    let mut views = stable_old();
    let mut s = state();
    s.started = ["ledger", "accounts"]
        .iter()
        .map(|d| (*d).to_owned())
        .collect();
    views.insert(
        "ledger".into(),
        view(
            "ledger",
            Phase::Failed,
            Reason::ProgressDeadlineExceeded,
            0,
            true,
        ),
    );
    views.insert(
        "accounts".into(),
        view(
            "accounts",
            Phase::Progressing,
            Reason::WaitingForUnits,
            0,
            true,
        ),
    );
    let step = s.drive(&p, &views, 1);
    assert_eq!(
        step.actions,
        [Action::Pause {
            deployment: "accounts".into()
        }]
    );
    let s = step.next.unwrap();
    assert!(matches!(s.progress, Progress::Failed { stage: 0, .. }));
    views.insert(
        "accounts".into(),
        view("accounts", Phase::Paused, Reason::PausedByOperator, 0, true),
    );
    let resumed = s.command(&p, PipelineCommand::Resume, None, &views, 2);
    assert_eq!(
        resumed.actions,
        [Action::Resume {
            deployment: "accounts".into()
        }]
    );
    let resumed = resumed.next.unwrap();
    assert_eq!(resumed.progress, Progress::Running { stage: 0 });
    // Twice is once: a second resume, or a second pause, changes nothing.
    assert!(
        !resumed
            .command(&p, PipelineCommand::Resume, None, &views, 3)
            .changed()
    );
    let paused = resumed
        .command(&p, PipelineCommand::Pause, None, &views, 4)
        .next
        .unwrap();
    assert!(
        !paused
            .command(&p, PipelineCommand::Pause, None, &views, 5)
            .changed()
    );
}

#[test]
fn an_aborted_pipeline_leaves_its_deployments_alone() {
    let p = pipeline();
    let mut views = stable_old();
    let mut s = state();
    s.started = ["ledger", "accounts"]
        .iter()
        .map(|d| (*d).to_owned())
        .collect();
    for d in ["ledger", "accounts"] {
        views.insert(
            d.into(),
            view(d, Phase::Progressing, Reason::WaitingForUnits, 0, true),
        );
    }
    let step = s.command(&p, PipelineCommand::Abort, Some("backends"), &views, 1);
    assert_eq!(
        step.actions.len(),
        2,
        "the abort pauses what runs: {step:?}"
    );
    let aborted = step.next.unwrap();
    assert!(!aborted.progress.drives());
    // An operator releases another template of ledger: the pipeline does nothing to it.
    let mut direct = view("ledger", Phase::Progressing, Reason::NewRevision, 0, false);
    direct.update_revision = "ledger-direct".into();
    views.insert("ledger".into(), direct);
    assert_eq!(aborted.drive(&p, &views, 2), Step::default());
    // Rolling all of it back would undo the operator's own release of ledger: refused.
    let refused = aborted.command(&p, PipelineCommand::Rollback, None, &views, 3);
    assert!(!refused.changed());
    assert!(
        refused
            .message
            .contains("ledger moves to revision ledger-direct"),
        "{}",
        refused.message
    );
}

#[test]
fn a_stage_without_units_of_a_deployment_starts_it_in_the_next() {
    let p = pipeline();
    let mut views = stable_old();
    // No unit of ledger in Hangzhou: its plan has only the second stage's groups.
    views.get_mut("ledger").unwrap().group_stages = vec![Some("backends-shanghai".into())];
    let step = state().drive(&p, &views, 1);
    assert_eq!(
        step.actions,
        [Action::Start {
            deployment: "accounts".into()
        }],
        "ledger would move Shanghai in stage backends"
    );
    let mut s = step.next.unwrap();
    assert_eq!(
        s.standing(&p, 0, "ledger", views.get("ledger")),
        ReleaseStanding::Done
    );
    views.insert(
        "accounts".into(),
        view("accounts", Phase::Paused, Reason::AwaitingStage, 1, true),
    );
    s.progress = Progress::Running { stage: 1 };
    let step = s.drive(&p, &views, 2);
    assert_eq!(
        step.actions,
        [Action::Start {
            deployment: "ledger".into()
        }]
    );
}

#[test]
fn the_stored_state_reads_back() {
    let mut s = state();
    s.progress = Progress::RollingBack {
        stage: 1,
        from_stage: 2,
        failure: Some("x".into()),
    };
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains(r#""phase":"RollingBack""#), "{json}");
    assert!(json.contains(r#""fromStage":2"#), "{json}");
    let back: PipelineState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}
