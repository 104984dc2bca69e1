//! The planner's tests: single decisions, and whole rollouts against a tiny model of the kubelet and
//! the balancers.

use super::*;
use crate::crd::{InPlaceSetSpec, LabelSelector, TrafficPolicy, UpgradeStrategy};
use crate::observed::{Gate, PodFailure};
use serde_json::json;

const LB: &str = "traffic.cafe.io/lb";

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn template(image: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}})
}

fn desired(replicas: i32, partition: i32, max_unavailable: i32) -> Desired {
    Desired::from_spec(&InPlaceSetSpec {
        replicas,
        partition,
        max_unavailable,
        selector: LabelSelector::default(),
        template: template("web:2"),
        stable_template: Some(template("web:1")),
        update_revision: Some("r2".into()),
        stable_revision: Some("r1".into()),
        traffic: Some(TrafficPolicy {
            readiness_gate: None,
            finalizers: vec![LB.into()],
            drain_seconds: 1,
        }),
        ..InPlaceSetSpec::default()
    })
    .unwrap()
}

/// A serving pod of a revision.
fn serving(name: &str, d: &Desired, kind: RevisionKind) -> ObservedPod {
    let template = d.template(kind);
    ObservedPod {
        name: name.into(),
        uid: format!("uid-{name}"),
        resource_version: "1".into(),
        revision: Some(template.revision.clone()),
        shape: Some(template.shape.clone()),
        created: Some(t(-100)),
        terminating: false,
        gate: Gate::Open,
        drain_started: None,
        retired: false,
        containers_ready: true,
        ready_since: Some(t(-50)),
        unready_since: None,
        finalizers: vec![LB.into()],
        failure: None,
    }
}

fn input<'a>(d: &'a Desired, pods: &'a [ObservedPod], now: Timestamp) -> PlanInput<'a> {
    PlanInput {
        desired: d,
        pods,
        now,
        unready_deadline: SignedDuration::from_secs(300),
    }
}

fn names_of(actions: &[Action], pick: impl Fn(&Action) -> bool) -> Vec<String> {
    actions
        .iter()
        .filter(|a| pick(a))
        .filter_map(|a| a.pod().map(|p| p.name.clone()))
        .collect()
}

#[test]
fn scale_out_creates_update_pods_up_to_the_target_then_stable_ones() {
    let d = desired(5, 2, 1);
    let plan = plan(&input(&d, &[], t(0)));
    let kinds: Vec<RevisionKind> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { kind } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            RevisionKind::Update,
            RevisionKind::Update,
            RevisionKind::Update,
            RevisionKind::Stable,
            RevisionKind::Stable
        ]
    );
    assert_eq!(plan.progress, Progress::Scaling);
}

#[test]
fn a_ready_new_pod_is_let_into_traffic() {
    let d = desired(1, 0, 1);
    let mut p = serving("a", &d, RevisionKind::Update);
    p.gate = Gate::Absent;
    p.ready_since = None;
    p.finalizers.clear();
    let plan = plan(&input(&d, std::slice::from_ref(&p), t(0)));
    assert_eq!(
        plan.actions,
        [Action::OpenGate {
            pod: PodRef::of(&p)
        }]
    );
    p.containers_ready = false;
    assert!(super::plan(&input(&d, &[p], t(0))).actions.is_empty());
}

#[test]
fn an_update_drains_at_most_max_unavailable_pods_preferring_unavailable_ones() {
    let d = desired(4, 0, 2);
    let mut pods: Vec<ObservedPod> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| serving(n, &d, RevisionKind::Stable))
        .collect();
    // "c" is not ready: moving it is free, and the one unavailable pod leaves room for one more.
    pods[2].ready_since = None;
    pods[2].containers_ready = false;
    let plan = plan(&input(&d, &pods, t(0)));
    assert_eq!(
        names_of(&plan.actions, |a| matches!(
            a,
            Action::MarkDrainStarted { .. }
        )),
        ["c", "a"]
    );
    assert_eq!(
        names_of(&plan.actions, |a| matches!(a, Action::CloseGate { .. })),
        ["c", "a"]
    );
    assert_eq!(plan.progress, Progress::Updating);
}

#[test]
fn a_drain_waits_for_the_balancers_and_drain_seconds_then_updates_in_place() {
    let d = desired(2, 0, 1);
    let mut a = serving("a", &d, RevisionKind::Stable);
    a.gate = Gate::Closed;
    a.drain_started = Some(t(0));
    a.ready_since = None;
    let b = serving("b", &d, RevisionKind::Stable);
    // The balancer still holds the pod.
    let plan1 = plan(&input(&d, &[a.clone(), b.clone()], t(5)));
    assert!(plan1.actions.is_empty(), "{:?}", plan1.actions);
    // Deregistered, but drainSeconds not over yet: wake when it is.
    a.finalizers.clear();
    let plan2 = plan(&input(&d, &[a.clone(), b.clone()], t(0)));
    assert!(plan2.actions.is_empty());
    assert_eq!(plan2.requeue_after, Some(Duration::from_secs(1)));
    let plan3 = plan(&input(&d, &[a.clone(), b.clone()], t(1)));
    assert_eq!(
        plan3.actions,
        [Action::UpdateInPlace {
            pod: PodRef::of(&a),
            revision: "r2".into(),
            images: [("app".to_string(), "web:2".to_string())].into(),
        }]
    );
    // A pod whose shape differs is deleted (and recreated) instead.
    a.shape = Some("other".into());
    let plan4 = plan(&input(&d, &[a.clone(), b], t(1)));
    assert_eq!(
        plan4.actions,
        [Action::Delete {
            pod: PodRef::of(&a),
            purpose: DrainPurpose::Update
        }]
    );
}

#[test]
fn recreate_strategy_always_deletes() {
    let mut spec_d = desired(1, 0, 1);
    spec_d.upgrade = UpgradeStrategy::Recreate;
    let mut a = serving("a", &spec_d, RevisionKind::Stable);
    a.gate = Gate::Closed;
    a.drain_started = Some(t(0));
    a.finalizers.clear();
    let plan = plan(&input(&spec_d, std::slice::from_ref(&a), t(2)));
    assert_eq!(
        plan.actions,
        [Action::Delete {
            pod: PodRef::of(&a),
            purpose: DrainPurpose::Update
        }]
    );
}

#[test]
fn a_restarted_pod_on_its_revision_goes_back_into_traffic() {
    let d = desired(1, 0, 1);
    let mut a = serving("a", &d, RevisionKind::Update);
    a.gate = Gate::Closed;
    a.drain_started = Some(t(0));
    a.finalizers.clear();
    a.ready_since = None;
    a.containers_ready = false;
    assert!(
        plan(&input(&d, std::slice::from_ref(&a), t(3)))
            .actions
            .is_empty()
    );
    a.containers_ready = true;
    let p = plan(&input(&d, std::slice::from_ref(&a), t(3)));
    assert_eq!(
        p.actions,
        [
            Action::OpenGate {
                pod: PodRef::of(&a)
            },
            Action::ClearDrainMark {
                pod: PodRef::of(&a)
            }
        ]
    );
    // The gate opened but the agent stopped before clearing the mark.
    a.gate = Gate::Open;
    let p = plan(&input(&d, std::slice::from_ref(&a), t(3)));
    assert_eq!(
        p.actions,
        [Action::ClearDrainMark {
            pod: PodRef::of(&a)
        }]
    );
    // Released once the balancer registered it again.
    a.drain_started = None;
    a.ready_since = Some(t(3));
    assert_eq!(
        plan(&input(&d, std::slice::from_ref(&a), t(3))).progress,
        Progress::Settling
    );
    a.finalizers = vec![LB.into()];
    assert_eq!(
        plan(&input(&d, std::slice::from_ref(&a), t(3))).progress,
        Progress::Complete
    );
}

#[test]
fn scale_in_drains_unready_pods_first_then_stable_ones_and_deletes_when_drained() {
    let d = desired(2, 0, 1);
    let mut pods = vec![
        serving("a", &d, RevisionKind::Update),
        serving("b", &d, RevisionKind::Stable),
        serving("c", &d, RevisionKind::Update),
        serving("d", &d, RevisionKind::Update),
    ];
    pods[3].ready_since = None;
    pods[3].containers_ready = false;
    let p = plan(&input(&d, &pods, t(0)));
    assert_eq!(
        names_of(&p.actions, |a| matches!(
            a,
            Action::MarkDrainStarted {
                purpose: DrainPurpose::ScaleIn,
                ..
            }
        )),
        ["d", "b"]
    );
    // Drained: deleted, with the observed resourceVersion as precondition.
    for p in &mut pods[1..=3] {
        if p.name != "c" {
            p.gate = Gate::Closed;
            p.drain_started = Some(t(0));
            p.finalizers.clear();
            p.ready_since = None;
        }
    }
    let p = plan(&input(&d, &pods, t(1)));
    assert_eq!(
        names_of(&p.actions, |a| matches!(
            a,
            Action::Delete {
                purpose: DrainPurpose::ScaleIn,
                ..
            }
        )),
        ["b", "d"]
    );
}

#[test]
fn paused_sets_scale_but_do_not_update_and_undo_unstarted_drains() {
    let mut d = desired(3, 0, 1);
    d.paused = true;
    let mut a = serving("a", &d, RevisionKind::Stable);
    a.gate = Gate::Closed;
    a.drain_started = Some(t(0));
    a.ready_since = None;
    let b = serving("b", &d, RevisionKind::Stable);
    let p = plan(&input(&d, &[a.clone(), b], t(1)));
    assert_eq!(
        p.actions,
        [
            Action::OpenGate {
                pod: PodRef::of(&a)
            },
            Action::ClearDrainMark {
                pod: PodRef::of(&a)
            },
            Action::Create {
                kind: RevisionKind::Update
            },
        ]
    );
    assert_eq!(p.progress, Progress::Paused);
}

#[test]
fn failing_update_pods_hold_the_release_and_name_the_pod() {
    let d = desired(3, 0, 1);
    let mut a = serving("a", &d, RevisionKind::Update);
    a.containers_ready = false;
    a.ready_since = None;
    a.failure = Some(PodFailure {
        reason: ProblemReason::CrashLoopBackOff,
        message: "container app: back-off".into(),
    });
    let b = serving("b", &d, RevisionKind::Stable);
    let c = serving("c", &d, RevisionKind::Stable);
    let p = plan(&input(&d, &[a, b, c], t(0)));
    assert_eq!(p.progress, Progress::Failed);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.release_failures.len(), 1);
    assert_eq!(p.release_failures[0].pod, "a");
    assert_eq!(
        p.release_failures[0].reason,
        ProblemReason::CrashLoopBackOff
    );
    // New pods get the stable template while the release fails.
    let a = {
        let mut a = serving("a", &d, RevisionKind::Update);
        a.failure = Some(PodFailure {
            reason: ProblemReason::ImagePullBackOff,
            message: String::new(),
        });
        a
    };
    let p = plan(&input(&d, &[a], t(0)));
    assert!(p.actions.iter().all(|x| *x
        == Action::Create {
            kind: RevisionKind::Stable
        }));
}

#[test]
fn pods_unready_past_the_deadline_are_problems() {
    let d = desired(1, 0, 1);
    let mut a = serving("a", &d, RevisionKind::Stable);
    a.containers_ready = false;
    a.ready_since = None;
    a.unready_since = Some(t(0));
    let p = plan(&input(&d, std::slice::from_ref(&a), t(100)));
    assert!(p.problems.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(200)));
    let p = plan(&input(&d, &[a], t(301)));
    assert_eq!(p.problems[0].reason, ProblemReason::NotReady);
    // A stable-revision pod failing is a problem, not a release failure.
    assert!(p.release_failures.is_empty());
    assert_ne!(p.progress, Progress::Failed);
}

#[test]
fn a_larger_partition_moves_update_pods_back_to_the_stable_revision() {
    let d = desired(3, 2, 1);
    let pods = vec![
        serving("a", &d, RevisionKind::Update),
        serving("b", &d, RevisionKind::Update),
        serving("c", &d, RevisionKind::Update),
    ];
    let p = plan(&input(&d, &pods, t(0)));
    assert_eq!(
        names_of(&p.actions, |a| matches!(a, Action::CloseGate { .. })),
        ["b"]
    );
}

#[test]
fn without_a_stable_template_partition_pods_keep_their_revision() {
    let mut d = desired(2, 1, 1);
    d.stable = None;
    let mut old = serving("a", &d, RevisionKind::Update);
    old.revision = Some("r0".into());
    let old2 = ObservedPod {
        name: "b".into(),
        ..old.clone()
    };
    let p = plan(&input(&d, &[old, old2], t(0)));
    assert_eq!(
        names_of(&p.actions, |a| matches!(a, Action::CloseGate { .. })),
        ["a"]
    );
}

/// A tiny world: the kubelet makes containers ready one step after an image change or creation, the
/// balancer drops its finalizer one step after the gate closes and adds it one step after the pod is
/// ready. The planner runs every step; the invariant is checked after every step.
struct World {
    pods: Vec<ObservedPod>,
    next: usize,
    in_place: usize,
    recreated: usize,
}

impl World {
    fn new(d: &Desired, n: usize) -> Self {
        let pods = (0..n)
            .map(|i| serving(&format!("p{i:02}"), d, RevisionKind::Stable))
            .collect();
        Self {
            pods,
            next: n,
            in_place: 0,
            recreated: 0,
        }
    }

    fn step(&mut self, d: &Desired, now: Timestamp) -> Plan {
        let plan = plan(&input(d, &self.pods, now));
        for a in &plan.actions {
            let find = |pods: &mut Vec<ObservedPod>, name: &str| {
                pods.iter().position(|p| p.name == name).unwrap()
            };
            match a {
                Action::Create { kind } => {
                    let template = d.template(*kind);
                    let mut p = serving(&format!("p{:02}", self.next), d, *kind);
                    self.next += 1;
                    p.revision = Some(template.revision.clone());
                    p.gate = Gate::Absent;
                    p.containers_ready = false;
                    p.ready_since = None;
                    p.finalizers.clear();
                    self.pods.push(p);
                }
                Action::CloseGate { pod } => {
                    let i = find(&mut self.pods, &pod.name);
                    self.pods[i].gate = Gate::Closed;
                    self.pods[i].ready_since = None;
                }
                Action::MarkDrainStarted { pod, purpose } => {
                    let i = find(&mut self.pods, &pod.name);
                    self.pods[i].drain_started = Some(now);
                    self.pods[i].retired = *purpose == DrainPurpose::Retire;
                }
                Action::UpdateInPlace { pod, revision, .. } => {
                    let i = find(&mut self.pods, &pod.name);
                    self.pods[i].revision = Some(revision.clone());
                    self.pods[i].containers_ready = false;
                    self.in_place += 1;
                }
                Action::Delete { pod, purpose } => {
                    let i = find(&mut self.pods, &pod.name);
                    self.pods.remove(i);
                    self.recreated += usize::from(*purpose == DrainPurpose::Update);
                }
                Action::OpenGate { pod } => {
                    let i = find(&mut self.pods, &pod.name);
                    self.pods[i].gate = Gate::Open;
                    self.pods[i].ready_since = Some(now);
                }
                Action::ClearDrainMark { pod } => {
                    let i = find(&mut self.pods, &pod.name);
                    self.pods[i].drain_started = None;
                    self.pods[i].retired = false;
                }
            }
        }
        // The kubelet and the balancer.
        for p in &mut self.pods {
            if p.gate == Gate::Closed {
                p.finalizers.clear();
            } else if p.gate == Gate::Open && p.containers_ready && p.ready_since.is_some() {
                p.finalizers = vec![LB.into()];
            }
            if !p.containers_ready
                && !plan
                    .actions
                    .iter()
                    .any(|a| a.pod().is_some_and(|r| r.name == p.name))
            {
                p.containers_ready = true;
            }
        }
        plan
    }

    fn unavailable(&self, d: &Desired) -> usize {
        let ready = self
            .pods
            .iter()
            .filter(|p| p.gate == Gate::Open && p.containers_ready)
            .count();
        (d.replicas as usize).saturating_sub(ready)
    }

    fn on(&self, revision: &str) -> usize {
        self.pods
            .iter()
            .filter(|p| p.revision.as_deref() == Some(revision))
            .count()
    }
}

fn run_until_complete(world: &mut World, d: &Desired, clock: &mut i64) {
    for _ in 0..500 {
        *clock += 1;
        let plan = world.step(d, t(*clock));
        assert!(
            world.unavailable(d) <= d.max_unavailable as usize,
            "{} unavailable at step {clock}",
            world.unavailable(d)
        );
        if plan.progress == Progress::Complete {
            return;
        }
    }
    panic!("no convergence");
}

#[test]
fn partitioned_rollouts_converge_within_the_budget() {
    let mut clock = 0;
    let d10 = desired(10, 10, 3);
    let mut world = World::new(&d10, 10);
    run_until_complete(&mut world, &d10, &mut clock);
    assert_eq!(world.on("r2"), 0);
    let d5 = desired(10, 5, 3);
    run_until_complete(&mut world, &d5, &mut clock);
    assert_eq!((world.on("r1"), world.on("r2"), world.in_place), (5, 5, 5));
    let d0 = desired(10, 0, 3);
    run_until_complete(&mut world, &d0, &mut clock);
    assert_eq!(
        (world.on("r2"), world.in_place, world.recreated),
        (10, 10, 0)
    );
    // Scale in, then out, then a template change beyond images (recreate).
    let d6 = desired(6, 0, 3);
    run_until_complete(&mut world, &d6, &mut clock);
    assert_eq!(world.pods.len(), 6);
    let mut d8 = desired(8, 0, 2);
    d8.update.shape = "changed".into();
    d8.update.revision = "r3".into();
    run_until_complete(&mut world, &d8, &mut clock);
    assert_eq!(
        (world.pods.len(), world.on("r3"), world.recreated),
        (8, 8, 6)
    );
}

#[test]
fn min_ready_seconds_delay_availability_and_the_next_pod() {
    let mut d = desired(2, 0, 1);
    d.min_ready = SignedDuration::from_secs(5);
    let mut a = serving("a", &d, RevisionKind::Update);
    a.ready_since = Some(t(0));
    let b = serving("b", &d, RevisionKind::Stable);
    // "a" is back but not available yet: "b" waits, and the planner wakes when "a" becomes available.
    let p = plan(&input(&d, &[a.clone(), b.clone()], t(2)));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(3)));
    let p = plan(&input(&d, &[a, b.clone()], t(5)));
    assert_eq!(
        p.actions,
        [
            Action::CloseGate {
                pod: PodRef::of(&b)
            },
            Action::MarkDrainStarted {
                pod: PodRef::of(&b),
                purpose: DrainPurpose::Update
            }
        ]
    );
}

/// A blue-green set of `replicas` between web:1 (r1) and web:2 (r2); `back` swaps the templates, as
/// a rollback sends them.
fn blue_green(replicas: i32, switched: bool, preview: bool, back: bool) -> Desired {
    let (update, stable) = if back { ("r1", "r2") } else { ("r2", "r1") };
    let image = |r: &str| format!("web:{}", &r[1..]);
    Desired::from_spec(&InPlaceSetSpec {
        replicas,
        max_unavailable: 1,
        template: template(&image(update)),
        stable_template: Some(template(&image(stable))),
        update_revision: Some(update.into()),
        stable_revision: Some(stable.into()),
        traffic: Some(TrafficPolicy {
            readiness_gate: None,
            finalizers: vec![LB.into()],
            drain_seconds: 1,
        }),
        blue_green: Some(crate::crd::BlueGreenPolicy {
            switched,
            preview,
            scale_down_delay_seconds: 30,
        }),
        ..InPlaceSetSpec::default()
    })
    .unwrap()
}

impl World {
    /// Pods in traffic of `revision`.
    fn serving_on(&self, revision: &str) -> usize {
        self.pods
            .iter()
            .filter(|p| p.revision.as_deref() == Some(revision))
            .filter(|p| p.gate == Gate::Open && p.containers_ready && p.drain_started.is_none())
            .count()
    }

    /// Steps until the plan is complete, checking after every step that at least `floor` pods
    /// serve, and that no pod of `hidden` (if any) is in traffic.
    fn run_blue_green(&mut self, d: &Desired, clock: &mut i64, floor: usize, hidden: Option<&str>) {
        for _ in 0..500 {
            *clock += 1;
            let plan = self.step(d, t(*clock));
            let serving = self.serving_on("r1") + self.serving_on("r2");
            assert!(serving >= floor, "{serving} serving at step {clock}");
            if let Some(hidden) = hidden {
                assert_eq!(
                    self.serving_on(hidden),
                    0,
                    "{hidden} in traffic at step {clock}"
                );
            }
            if plan.progress == Progress::Complete {
                return;
            }
        }
        panic!("no convergence");
    }
}

#[test]
fn blue_green_previews_switches_and_switches_back_without_a_new_pod() {
    let mut clock = 0;
    let before = blue_green(4, false, false, false);
    let mut world = World::new(&before, 4);
    // Preview: four r2 pods beside, never in traffic.
    let preview = blue_green(4, false, true, false);
    world.run_blue_green(&preview, &mut clock, 4, Some("r2"));
    assert_eq!((world.on("r1"), world.on("r2")), (4, 4));
    assert_eq!(world.serving_on("r1"), 4);
    assert!(
        world
            .pods
            .iter()
            .filter(|p| p.revision.as_deref() == Some("r2"))
            .all(|p| p.containers_ready && p.gate != Gate::Open)
    );
    let created = world.next;
    // The switch: r2 opens first, so serving never drops below the four.
    let switched = blue_green(4, true, false, false);
    world.run_blue_green(&switched, &mut clock, 4, None);
    assert_eq!((world.serving_on("r1"), world.serving_on("r2")), (0, 4));
    assert_eq!(world.on("r1"), 4, "the old pods stay as the way back");
    assert!(
        world
            .pods
            .iter()
            .filter(|p| p.revision.as_deref() == Some("r1"))
            .all(|p| p.retired && p.finalizers.is_empty())
    );
    // Back within the delay: no pod is created, r1 serves again.
    let back = blue_green(4, true, false, true);
    world.run_blue_green(&back, &mut clock, 4, None);
    assert_eq!((world.serving_on("r1"), world.serving_on("r2")), (4, 0));
    assert_eq!(world.next, created, "a switch back creates no pod");
    // After the delay the retired r2 pods go.
    clock += 31;
    for _ in 0..3 {
        clock += 1;
        world.step(&back, t(clock));
    }
    assert_eq!((world.on("r1"), world.on("r2")), (4, 0));
}

#[test]
fn a_blue_green_switch_keeps_the_old_pods_while_the_new_ones_do_not_serve() {
    let d = blue_green(2, true, false, false);
    let old = [
        serving("a", &d, RevisionKind::Stable),
        serving("b", &d, RevisionKind::Stable),
    ];
    let mut new = [
        serving("c", &d, RevisionKind::Update),
        serving("d", &d, RevisionKind::Update),
    ];
    for p in &mut new {
        p.gate = Gate::Absent;
        p.ready_since = None;
        p.finalizers.clear();
        p.containers_ready = false;
    }
    let pods: Vec<ObservedPod> = old.iter().chain(new.iter()).cloned().collect();
    let first = plan(&input(&d, &pods, t(0)));
    // The new pods' containers are not ready: nothing opens, nothing old leaves, nothing is created.
    assert!(first.actions.is_empty(), "{:?}", first.actions);
    // One new pod serves: with maxUnavailable 1 it alone keeps the floor, so both old pods leave.
    let mut pods = pods;
    pods[2].gate = Gate::Open;
    pods[2].ready_since = Some(t(-10));
    pods[2].finalizers = vec![LB.into()];
    pods[2].containers_ready = true;
    let next = plan(&input(&d, &pods, t(0)));
    assert_eq!(
        names_of(&next.actions, |a| matches!(a, Action::CloseGate { .. })),
        ["a", "b"]
    );
    assert!(
        next.actions
            .iter()
            .all(|a| !matches!(a, Action::Create { .. }))
    );
}

#[test]
fn a_blue_green_set_scaled_in_lets_its_surplus_go_down_to_no_pod() {
    let mut clock = 0;
    let mut world = World::new(&blue_green(4, false, false, false), 4);
    world.run_blue_green(
        &blue_green(4, false, true, false),
        &mut clock,
        4,
        Some("r2"),
    );
    // Fewer replicas: the surplus of the serving and of the preview revision goes, and the
    // serving pods that stay keep replicas - maxUnavailable in traffic.
    world.run_blue_green(
        &blue_green(2, false, true, false),
        &mut clock,
        1,
        Some("r2"),
    );
    assert_eq!(
        (world.on("r1"), world.serving_on("r1"), world.on("r2")),
        (2, 2, 2)
    );
    // No replica at all (the unit was evacuated): every pod goes, the serving ones too.
    world.run_blue_green(
        &blue_green(0, false, false, false),
        &mut clock,
        0,
        Some("r2"),
    );
    assert!(world.pods.is_empty(), "{:?}", world.pods);
}
