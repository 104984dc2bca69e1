//! The hub's model without the network: the pure core ([`Core::decide`]) event by event, and the
//! writer's promise that a commit that fails leaves nothing behind.

use super::clock::ManualClock;
use super::event::Decision;
use super::failover::{
    DEFAULT_UNREACHABLE, EvacuationTarget, FailoverPolicy, decide_auto_failover,
};
use super::*;
use crate::names::{DeploymentName, Namespace};
use crate::resources::parse_yaml_documents;
use crate::store::MemoryStore;
use std::sync::atomic::{AtomicBool, Ordering};

const UNITS: &str = include_str!("../../../deploy/examples/units.yaml");
const PAYMENTS: &str = include_str!("../../../deploy/examples/payments.yaml");

/// When the tests' hub starts (ms since the epoch): any day will do, as long as it is not 0.
const T0: i64 = 1_700_000_000_000;

fn key() -> DeploymentKey {
    DeploymentKey {
        namespace: Namespace::new("finance").expect("namespace"),
        name: DeploymentName::new("payments").expect("name"),
    }
}

fn unit(name: &str) -> UnitName {
    UnitName::new(name).expect("unit name")
}

fn cluster(name: &str) -> ClusterName {
    ClusterName::new(name).expect("cluster name")
}

fn documents(text: &str) -> Vec<Resource> {
    parse_yaml_documents(text).expect("valid documents")
}

fn apply(text: &str) -> Event {
    Event::Apply {
        resources: documents(text),
        who: "test".to_owned(),
        dry_run: false,
    }
}

/// The model as the writer drives it, without the thread: each event is decided, and its writes
/// are committed to an in-memory store, which a restart loads again.
struct Model {
    core: Core,
    store: MemoryStore,
    now: i64,
}

impl Model {
    fn new(policy: FailoverPolicy) -> Self {
        Self {
            core: Core::new(T0, policy),
            store: MemoryStore::default(),
            now: T0,
        }
    }

    /// The example units with payments on sh-az1 and sh-az2.
    fn payments(policy: FailoverPolicy) -> Self {
        let mut model = Self::new(policy);
        model.step(apply(&format!("{UNITS}\n---\n{PAYMENTS}")));
        model
    }

    /// Decides `event` and commits its writes, as the writer does; returns the decision.
    fn decide(&mut self, event: Event) -> Result<Decision, HubError> {
        let generation = self.core.next_generation;
        let mut decision = self.core.decide(event, self.now)?;
        if self.core.next_generation != generation {
            decision.effects.writes.push(self.core.generation_write());
        }
        self.store.commit(&decision.effects.writes)?;
        Ok(decision)
    }

    /// [`Model::decide`] for an event that must be accepted; returns its answer.
    fn step(&mut self, event: Event) -> Answer {
        let decision = self.decide(event).expect("the event is accepted");
        decision.answer.expect("the answer is no error")
    }

    /// Loads what the store holds, as a restarted hub does; returns the load's writes.
    fn restart(&mut self) -> Vec<Write> {
        let (core, effects) =
            load_core(&self.store, Core::new(self.now, self.core.policy)).expect("loads");
        self.store.commit(&effects.writes).expect("commit");
        self.core = core;
        effects.writes
    }

    /// Connects `name`'s agent; returns its session.
    fn connect(&mut self, name: &str) -> u64 {
        let session = self.now.unsigned_abs();
        self.step(Event::Connected {
            cluster: cluster(name),
            session,
            agent_version: "test".to_owned(),
        });
        session
    }

    fn slice(&self, unit_name: &str) -> &core::LiveSlice {
        self.core
            .slices
            .get(&SliceId::new(&key(), &unit(unit_name)))
            .expect("the unit's slice")
    }

    /// A report that `unit_name`'s slice runs `ready` pods of its current generation, all updated.
    fn ready_report(&self, unit_name: &str, session: u64, ready: i32) -> PendingReport {
        let slice = self.slice(unit_name);
        let observation =
            core::Observation::new(slice.generation, slice.update_revision.to_string())
                .with_pods(ready, ready, ready, ready);
        let id = SliceId::new(&key(), &unit(unit_name));
        (slice.cluster.clone(), session, id, observation)
    }

    /// Whether payments moves replicas between units (a failover under way).
    fn moving(&self) -> bool {
        self.core
            .deployment(&key())
            .expect("record")
            .rebalancing_since_ms
            .is_some()
    }

    fn generations(&self) -> BTreeMap<SliceId, u64> {
        self.core
            .slices
            .iter()
            .map(|(id, s)| (id.clone(), s.generation))
            .collect()
    }
}

#[test]
fn slice_generations_are_kept_across_a_restart() {
    let mut model = Model::payments(FailoverPolicy::default());
    let before = model.generations();
    assert_eq!(before.len(), 2, "payments has a slice in sh-az1 and sh-az2");
    let writes = model.restart();
    assert_eq!(model.generations(), before, "agents would see new slices");
    assert!(
        writes.iter().all(|w| w.table != Table::Slices),
        "an unchanged slice's record is not rewritten: {writes:?}"
    );
    // A change after the restart still gets a generation newer than any sent before.
    model.step(apply(&PAYMENTS.replace("payments:1.0.0", "payments:1.1.0")));
    let newest = before.values().max().copied().unwrap_or_default();
    assert!(model.generations().values().all(|g| *g > newest));
}

#[test]
fn a_removed_slice_leaves_a_tombstone_until_its_agent_confirms_the_removal() {
    let mut model = Model::payments(FailoverPolicy::default());
    let sh_az1 = model.slice("sh-az1").generation;
    let answer = model.step(Event::DeleteDeployment {
        key: key(),
        who: "test".to_owned(),
    });
    assert!(matches!(answer, Answer::Deleted(true)));
    assert!(model.core.slices.is_empty());
    let id = SliceId::new(&key(), &unit("sh-az1"));
    let tombstone = model.core.tombstones[&cluster("sh-dc1")][&id];
    assert!(tombstone > sh_az1, "the removal is newer than the slice");
    assert!(
        model.store.load(Table::Slices).expect("load").is_empty(),
        "the slice records are gone"
    );
    // The tombstone survives an ack of an older generation, and goes with the removal's own.
    let ack = |generation| Event::RemovalAcked {
        cluster: cluster("sh-dc1"),
        id: id.clone(),
        generation,
    };
    model.step(ack(sh_az1));
    assert!(model.core.tombstones[&cluster("sh-dc1")].contains_key(&id));
    model.step(ack(tombstone));
    assert!(!model.core.tombstones[&cluster("sh-dc1")].contains_key(&id));
}

#[test]
fn a_stored_slice_no_longer_desired_becomes_a_tombstone_at_the_restart() {
    let mut model = Model::payments(FailoverPolicy::default());
    let generation = model.slice("sh-az2").generation;
    // The deployment's record goes, as if an older hub had crashed between two commits.
    model
        .store
        .commit(&[Write::delete(Table::Deployments, key().to_string())])
        .expect("commit");
    let writes = model.restart();
    let id = SliceId::new(&key(), &unit("sh-az2"));
    assert!(model.core.tombstones[&cluster("sh-dc2")][&id] > generation);
    assert!(writes.contains(&Write::delete(Table::Slices, id.to_string())));
}

#[test]
fn a_unit_that_moves_to_another_cluster_leaves_its_old_cluster() {
    let mut model = Model::payments(FailoverPolicy::default());
    // Operators cannot move a unit in use...
    let moved = UNITS.replace("cluster: sh-dc1", "cluster: sh-dc9");
    let refused = model.decide(apply(&moved)).expect_err("refused");
    assert!(refused.to_string().contains("spec.cluster"), "{refused}");
    assert!(model.core.units[&unit("sh-az1")].spec.cluster == cluster("sh-dc1"));
    // ...but when a unit's cluster changes (an older hub's record), its slice follows it.
    let before = model.slice("sh-az1").generation;
    if let Some(sh_az1) = model.core.units_mut().get_mut(&unit("sh-az1")) {
        sh_az1.spec.cluster = cluster("sh-dc9");
    }
    let effects = model.core.sync_slices(&key()).expect("sync");
    let id = SliceId::new(&key(), &unit("sh-az1"));
    assert_eq!(model.slice("sh-az1").cluster, cluster("sh-dc9"));
    assert!(model.slice("sh-az1").generation > before);
    assert!(model.core.tombstones[&cluster("sh-dc1")].contains_key(&id));
    assert!(!model.core.cluster_slices[&cluster("sh-dc1")].contains_key(&id));
    assert!(model.core.cluster_slices[&cluster("sh-dc9")].contains_key(&id));
    assert!(
        effects.clusters.contains(&cluster("sh-dc1"))
            && effects.clusters.contains(&cluster("sh-dc9"))
    );
}

#[test]
fn an_evacuated_unit_keeps_its_pods_until_the_survivors_run_theirs_ready() {
    let mut model = Model::payments(FailoverPolicy::default());
    let session = model.connect("sh-dc2");
    assert_eq!(model.slice("sh-az1").replicas, 5);
    model.step(Event::Evacuate {
        target: EvacuationTarget::Unit(unit("sh-az1")),
        force: false,
        reason: String::new(),
        who: "test".to_owned(),
    });
    assert_eq!(
        model.slice("sh-az2").replicas,
        10,
        "the survivor scales out"
    );
    assert_eq!(
        model.slice("sh-az1").replicas,
        5,
        "the evacuated unit holds its pods meanwhile"
    );
    assert!(model.moving());
    // The survivor reports only part of its new capacity: still held.
    let partly = model.ready_report("sh-az2", session, 7);
    model.step(Event::Reports(vec![partly]));
    assert_eq!(model.slice("sh-az1").replicas, 5);
    // A restart in the middle of the move holds the same.
    model.restart();
    assert_eq!(model.slice("sh-az1").replicas, 5);
    let session = model.connect("sh-dc2");
    let ready = model.ready_report("sh-az2", session, 10);
    model.step(Event::Reports(vec![ready]));
    assert_eq!(model.slice("sh-az1").replicas, 0, "the move completes");
    assert!(!model.moving());
}

/// Automatic failover after 30 s of silence, up to half of the units.
fn auto() -> FailoverPolicy {
    FailoverPolicy {
        auto: true,
        ..FailoverPolicy::default()
    }
}

/// The example units, their agents connected at T0 and, but for `silent`, heard from again
/// `DEFAULT_UNREACHABLE` later, which is now.
fn silent_after_connecting(policy: FailoverPolicy, silent: &[&str]) -> Model {
    let mut model = Model::payments(policy);
    let mut heard = Vec::new();
    for name in ["sh-dc1", "sh-dc2", "hz-dc1", "hz-dc2"] {
        let session = model.now.unsigned_abs();
        let answer = model.step(Event::Connected {
            cluster: cluster(name),
            session,
            agent_version: "test".to_owned(),
        });
        model.now += 1;
        if let Answer::Connected(live) = answer
            && !silent.contains(&name)
        {
            heard.push(live);
        }
    }
    model.now = T0 + i64::try_from(DEFAULT_UNREACHABLE.as_millis()).expect("ms") + 10;
    for live in heard {
        live.saw(model.now);
    }
    model
}

#[test]
fn automatic_failover_evacuates_a_cluster_silent_past_the_policy() {
    let mut model = silent_after_connecting(auto(), &["sh-dc1"]);
    let decided = decide_auto_failover(&model.core, model.now);
    assert_eq!(decided.map(|(c, _)| c), Some(cluster("sh-dc1")));
    model.step(Event::Tick);
    assert_eq!(
        model.core.units[&unit("sh-az1")].phase(),
        crate::resources::UnitPhase::Evacuated
    );
    // Not before the silence lasted long enough.
    let early = silent_after_connecting(auto(), &["sh-dc1"]);
    assert!(decide_auto_failover(&early.core, T0 + 29_000).is_none());
}

#[test]
fn automatic_failover_waits_while_the_hub_sees_fewer_than_half_of_the_clusters() {
    // Three of four silent: the hub is the one cut off.
    let model = silent_after_connecting(auto(), &["sh-dc1", "sh-dc2", "hz-dc1"]);
    assert_eq!(decide_auto_failover(&model.core, model.now), None);
    // Two of four silent is half: still the hub's call.
    let model = silent_after_connecting(auto(), &["sh-dc1", "hz-dc1"]);
    assert!(decide_auto_failover(&model.core, model.now).is_some());
}

#[test]
fn automatic_failover_never_evacuates_more_than_the_share_of_units() {
    let policy = FailoverPolicy {
        max_evacuated_share: 0.2,
        ..auto()
    };
    // One unit of four is 25%, over the 20% the policy allows.
    let model = silent_after_connecting(policy, &["sh-dc1"]);
    assert_eq!(decide_auto_failover(&model.core, model.now), None);
    let policy = FailoverPolicy {
        max_evacuated_share: 0.25,
        ..auto()
    };
    let model = silent_after_connecting(policy, &["sh-dc1"]);
    assert!(decide_auto_failover(&model.core, model.now).is_some());
}

#[test]
fn automatic_failover_evacuates_one_cluster_at_a_time() {
    // Both of payments' units are silent: the first to go moves its replicas to the second.
    let mut model = silent_after_connecting(auto(), &["sh-dc1", "sh-dc2"]);
    model.step(Event::Tick);
    let evacuated = |model: &Model| {
        model
            .core
            .units
            .values()
            .filter(|u| u.phase() == crate::resources::UnitPhase::Evacuated)
            .count()
    };
    assert_eq!(evacuated(&model), 1);
    assert_eq!(
        model.core.units[&unit("sh-az1")].phase(),
        crate::resources::UnitPhase::Evacuated
    );
    // The first evacuation still restores capacity (sh-az2 has not reported its new pods): the
    // second silent cluster waits.
    assert!(!model.core.restoring.is_empty());
    model.step(Event::Tick);
    assert_eq!(
        evacuated(&model),
        1,
        "a second cluster went while the first moved"
    );
    assert_eq!(decide_auto_failover(&model.core, model.now), None);
}

#[test]
fn a_refused_command_is_audited_and_changes_nothing_else() {
    let mut model = Model::payments(FailoverPolicy::default());
    let before = model.core.deployment(&key()).cloned().expect("record");
    let decision = model
        .decide(Event::Command {
            key: key(),
            command: ReleaseCommand::Rollback {
                to_revision: Some(9),
            },
            expected_batch: None,
            reason: String::new(),
            who: "test".to_owned(),
        })
        .expect("decided");
    assert!(matches!(
        decision.answer,
        Err(HubError::Command(CommandError::UnknownRevision(9)))
    ));
    assert!(
        decision
            .effects
            .writes
            .iter()
            .all(|w| w.table == Table::Audit)
    );
    assert_eq!(decision.effects.writes.len(), 1);
    assert_eq!(model.core.deployment(&key()), Some(&before));
}

/// A store that refuses commits while told to: all of them (`failing`), or those writing a
/// deployment (`refuse_deployments`). Its commits also wait while a test holds `gate`.
#[derive(Default)]
struct FlakyStore {
    inner: Arc<MemoryStore>,
    failing: Arc<AtomicBool>,
    refuse_deployments: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Commits begun.
    started: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store for FlakyStore {
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.load(table)
    }
    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.load_last(table, limit)
    }
    fn commit_if(
        &self,
        conditions: &[crate::store::Condition],
        writes: &[Write],
    ) -> Result<(), StoreError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        // Only the writer, a thread of its own outside the runtime, finds the gate held and blocks
        // (loading commits on the test's own thread, with the gate open).
        let _open = match self.gate.try_lock() {
            Ok(open) => open,
            Err(_) => self.gate.blocking_lock(),
        };
        let deployment = writes.iter().any(|w| w.table == Table::Deployments);
        let refused = self.failing.load(Ordering::SeqCst)
            || (deployment && self.refuse_deployments.load(Ordering::SeqCst));
        if refused {
            return Err(StoreError::Io {
                operation: "commit",
                source: "disk full".into(),
            });
        }
        self.inner.commit_if(conditions, writes)
    }
}

/// Everything an operator or an agent can see of the hub.
fn answers(hub: &Hub) -> (String, String, Vec<String>) {
    let status = format!("{:?}", hub.status(&key()).expect("status"));
    let document = hub.read(|core, _| {
        serde_json::to_string(core.deployment(&key()).expect("the deployment")).expect("json")
    });
    let slices = ["sh-dc1", "sh-dc2"]
        .iter()
        .map(|name| format!("{:?}", hub.cluster_view(&cluster(name))))
        .collect();
    (status, document, slices)
}

#[tokio::test]
async fn a_failed_commit_leaves_every_answer_as_it_was_and_the_hub_goes_on() {
    let failing = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        failing: Arc::clone(&failing),
        ..FlakyStore::default()
    };
    let clock = ManualClock::default();
    clock.advance_ms(T0);
    let hub = Hub::load(Box::new(store), Arc::new(clock)).expect("loads");
    hub.apply(
        documents(&format!("{UNITS}\n---\n{PAYMENTS}")),
        "test",
        false,
    )
    .await
    .expect("apply");
    let mut wakeup = hub.subscribe_cluster(&cluster("sh-dc1"));
    wakeup.mark_unchanged();
    let before = answers(&hub);

    failing.store(true, Ordering::SeqCst);
    let release = PAYMENTS.replace("payments:1.0.0", "payments:1.1.0");
    let error = hub
        .apply(documents(&release), "test", false)
        .await
        .expect_err("the commit fails");
    assert!(matches!(error, HubError::Store(_)), "{error}");
    let evacuated = hub
        .evacuate(&EvacuationTarget::Unit(unit("sh-az1")), true, "", "test")
        .await;
    assert!(
        matches!(evacuated, Err(HubError::Store(_))),
        "{evacuated:?}"
    );
    assert_eq!(
        answers(&hub),
        before,
        "an answer changed without its commit"
    );
    assert!(
        !wakeup.has_changed().expect("open"),
        "a stream was woken for slices the store does not hold"
    );

    failing.store(false, Ordering::SeqCst);
    hub.apply(documents(&release), "test", false)
        .await
        .expect("apply");
    let released = hub.status(&key()).expect("status");
    assert_eq!(released.phase, "Progressing");
    assert_ne!(answers(&hub), before);
    assert!(wakeup.has_changed().expect("open"));
}

#[tokio::test]
async fn a_cluster_is_unknown_after_three_missed_heartbeats() {
    let clock = ManualClock::default();
    clock.advance_ms(1_000_000);
    let hub = Hub::load(Box::new(MemoryStore::default()), Arc::new(clock.clone())).expect("loads");
    let name = cluster("sh-dc1");
    let (session, heard) = hub.connect(&name, "test").await.expect("connects");
    let connected = |hub: &Hub| hub.read(|core, now| core.clusters[&name].connected(now));
    clock.advance_ms(5_900);
    assert!(connected(&hub), "2 heartbeats missed is not yet unknown");
    heard.saw(clock.now_ms());
    clock.advance_ms(6_000);
    assert!(connected(&hub));
    clock.advance_ms(1);
    assert!(
        !connected(&hub),
        "3 missed heartbeats (6 s) make the cluster Unknown"
    );
    heard.saw(clock.now_ms());
    assert!(connected(&hub));
    hub.disconnect(&name, session).await.expect("disconnects");
    assert!(!connected(&hub));
}

#[tokio::test]
async fn the_audit_sequence_survives_a_restart_whatever_the_stored_keys_look_like() {
    let store = Arc::new(MemoryStore::default());
    // What an earlier hub left: padded records, an unpadded one (sorting after them) and a key
    // that is no number at all (sorting last).
    let old = [
        (records::audit_key(7), b"seven".to_vec()),
        ("12".to_owned(), b"twelve".to_vec()),
        ("zz-imported".to_owned(), b"foreign".to_vec()),
    ];
    let writes: Vec<Write> = old
        .iter()
        .map(|(k, v)| Write::put(Table::Audit, k.clone(), v.clone()))
        .collect();
    store.commit(&writes).expect("seed");
    let flaky = FlakyStore {
        inner: Arc::clone(&store),
        ..FlakyStore::default()
    };
    let hub = Hub::load(Box::new(flaky), Arc::new(ManualClock::default())).expect("loads");
    hub.apply(documents(UNITS), "test", false)
        .await
        .expect("apply");
    let audit: BTreeMap<String, Vec<u8>> = store
        .load(Table::Audit)
        .expect("load")
        .into_iter()
        .collect();
    for (key, value) in &old {
        assert_eq!(audit.get(key), Some(value), "record {key} was overwritten");
    }
    let new: Vec<u64> = audit
        .keys()
        .filter(|k| !old.iter().any(|(o, _)| o == *k))
        .map(|k| k.parse::<u64>().expect("a numbered record"))
        .collect();
    assert!(!new.is_empty(), "the apply was audited");
    assert!(
        new.iter().all(|n| *n > 12),
        "new records {new:?} continue after the highest number, 12"
    );
}

#[tokio::test]
async fn a_task_that_panics_fails_the_hub_and_stops_the_server() {
    let hub = Hub::load(
        Box::new(MemoryStore::default()),
        Arc::new(ManualClock::default()),
    )
    .expect("loads");
    let options = server::ServeOptions {
        data_dir: std::path::PathBuf::from("unused"),
        listen: "127.0.0.1:0".parse().expect("address"),
        metrics_listen: None,
        tls_dir: None,
        insecure: true,
        failover: FailoverPolicy::default(),
        advertise_url: None,
        replicated: None,
        notify_webhook: None,
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let serving = tokio::spawn(server::serve_hub(
        hub.clone(),
        options,
        move |bound| {
            let _ = ready_tx.send(bound);
        },
        std::future::pending(),
    ));
    let deadline = std::time::Duration::from_secs(30);
    tokio::time::timeout(deadline, ready_rx)
        .await
        .expect("serves in time")
        .expect("bound");
    hub.spawn("a test task", async { panic!("the task's own failure") });
    let served = tokio::time::timeout(deadline, serving)
        .await
        .expect("the server stops in time")
        .expect("the server task ends normally");
    let error = served.expect_err("the server reports the failure");
    assert_eq!(error.to_string(), "the hub failed: a test task panicked");
    assert_eq!(hub.failed().await, "a test task panicked");
}

#[tokio::test]
async fn a_hub_whose_store_another_hub_loaded_stops_writing_and_fails() {
    let store = Arc::new(MemoryStore::default());
    let shared = |store: &Arc<MemoryStore>| FlakyStore {
        inner: Arc::clone(store),
        ..FlakyStore::default()
    };
    let first =
        Hub::load(Box::new(shared(&store)), Arc::new(ManualClock::default())).expect("loads");
    first
        .apply(documents(UNITS), "first", false)
        .await
        .expect("the first hub writes while it owns the store");
    // A second hub loads the same store (a failover, or a mistake): it owns it now.
    let second =
        Hub::load(Box::new(shared(&store)), Arc::new(ManualClock::default())).expect("loads");
    let before = store.load(Table::Deployments).expect("load");
    let refused = first
        .apply(documents(PAYMENTS), "first", false)
        .await
        .expect_err("the first hub's commit is refused");
    assert!(
        matches!(refused, HubError::Store(StoreError::Conflict { .. })),
        "{refused}"
    );
    assert_eq!(
        store.load(Table::Deployments).expect("load"),
        before,
        "nothing was written"
    );
    let reason = tokio::time::timeout(std::time::Duration::from_secs(10), first.failed())
        .await
        .expect("the first hub fails");
    assert!(reason.contains("another writer has taken over"), "{reason}");
    second
        .apply(documents(PAYMENTS), "second", false)
        .await
        .expect("the second hub writes");
}

#[tokio::test]
async fn a_failed_group_commit_fails_only_the_events_whose_writes_were_refused() {
    let store = FlakyStore::default();
    let (gate, started, refuse) = (
        Arc::clone(&store.gate),
        Arc::clone(&store.started),
        Arc::clone(&store.refuse_deployments),
    );
    let hub = Hub::load(Box::new(store), Arc::new(ManualClock::default())).expect("loads");
    hub.apply(documents(UNITS), "test", false)
        .await
        .expect("apply");
    let deadline = std::time::Duration::from_secs(10);
    let until = |what: &'static str, done: Box<dyn Fn() -> bool + Send>| async move {
        tokio::time::timeout(deadline, async {
            while !done() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what} in time"));
    };
    // The writer is held in a commit, so that the next events wait for it together.
    let held = gate.lock().await;
    let committed = started.load(Ordering::SeqCst);
    let first = tokio::spawn({
        let hub = hub.clone();
        async move {
            let moved = UNITS.replace("zone: hz-dc2", "zone: hz-dc9");
            hub.apply(documents(&moved), "test", false).await
        }
    });
    until(
        "the first commit starts",
        Box::new(move || started.load(Ordering::SeqCst) > committed),
    )
    .await;
    refuse.store(true, Ordering::SeqCst);
    let payments = tokio::spawn({
        let hub = hub.clone();
        async move { hub.apply(documents(PAYMENTS), "test", false).await }
    });
    let connect = tokio::spawn({
        let hub = hub.clone();
        async move { hub.connect(&cluster("sh-dc1"), "test").await }
    });
    let events = hub.inner.events.clone();
    until(
        "both events are queued",
        Box::new(move || events.capacity() == writer::QUEUE - 2),
    )
    .await;
    drop(held);
    first
        .await
        .expect("joins")
        .expect("the first apply commits");
    let refused = payments.await.expect("joins");
    assert!(matches!(refused, Err(HubError::Store(_))), "{refused:?}");
    connect
        .await
        .expect("joins")
        .expect("the stream opens although its group's commit failed");
    assert!(
        hub.read(|core, now| core.clusters[&cluster("sh-dc1")].connected(now)),
        "the connection was lost with the refused apply"
    );
    assert!(
        hub.status(&key()).is_err(),
        "the refused apply left nothing"
    );
}

/// `unit_name`'s slice runs `replicas` ready pods of its generation, `updated` of them on its
/// update revision.
fn report(
    model: &Model,
    unit_name: &str,
    session: u64,
    replicas: i32,
    updated: i32,
) -> PendingReport {
    let slice = model.slice(unit_name);
    let observation = core::Observation::new(slice.generation, slice.update_revision.to_string())
        .with_pods(replicas, replicas, updated, updated);
    let id = SliceId::new(&key(), &unit(unit_name));
    (slice.cluster.clone(), session, id, observation)
}

const PIPELINE: &str = "apiVersion: cafe.io/v1alpha1
kind: ReleasePipeline
metadata: {name: q4, namespace: finance}
spec:
  stages:
    - name: hangzhou
      regions: [cn-hangzhou]
      gate: Approval
      releases: [{deployment: payments, images: {app: registry.example/payments:2.0.0}}]
    - name: shanghai
      releases: [{deployment: payments}]
";

#[test]
fn a_pipeline_holds_the_other_region_and_waits_at_its_gate_across_a_restart() {
    let mut model = Model::new(FailoverPolicy::default());
    model.step(apply(&format!(
        "{UNITS}\n---\n{}",
        payments_in_both_regions()
    )));
    let units = ["sh-az1", "sh-az2", "hz-az1", "hz-az2"];
    let clusters = ["sh-dc1", "sh-dc2", "hz-dc1", "hz-dc2"];
    let mut sessions: Vec<u64> = clusters.iter().map(|c| model.connect(c)).collect();
    let replicas = |model: &Model, u: &str| model.slice(u).replicas;
    let all_ready = |model: &Model, sessions: &[u64], updated: &dyn Fn(&str) -> bool| {
        let reports = units
            .iter()
            .zip(sessions)
            .map(|(u, s)| {
                let n = replicas(model, u);
                report(model, u, *s, n, if updated(u) { n } else { 0 })
            })
            .collect();
        Event::Reports(reports)
    };
    let event = all_ready(&model, &sessions, &|_| true);
    model.step(event);

    model.step(apply(PIPELINE));
    let targets =
        |model: &Model| -> Vec<i32> { units.iter().map(|u| model.slice(u).target).collect() };
    assert_eq!(targets(&model)[..2], [0, 0], "Shanghai waits for its stage");
    assert!(
        targets(&model)[2..].iter().all(|t| *t > 0),
        "Hangzhou moves: {:?}",
        targets(&model)
    );
    let event = all_ready(&model, &sessions, &|u| u.starts_with("hz-"));
    model.step(event);
    let pkey = key_of("q4");
    let stage = |model: &Model| {
        model
            .core
            .pipeline_status(&pkey)
            .map(|s| (s.phase, s.stage))
    };
    assert_eq!(
        stage(&model),
        Some(("AwaitingApproval".into(), "hangzhou".into()))
    );
    let release = model
        .core
        .deployment(&key())
        .expect("record")
        .release
        .clone();
    assert_eq!(release.reason(), crate::release::Reason::AwaitingStage);

    // A restarted hub (or the next leader, which loads the same records) waits at the same gate.
    model.restart();
    assert_eq!(
        stage(&model),
        Some(("AwaitingApproval".into(), "hangzhou".into()))
    );
    assert_eq!(targets(&model)[..2], [0, 0]);
    sessions = clusters.iter().map(|c| model.connect(c)).collect();
    let event = all_ready(&model, &sessions, &|u| u.starts_with("hz-"));
    model.step(event);
    assert_eq!(
        stage(&model),
        Some(("AwaitingApproval".into(), "hangzhou".into()))
    );

    // Its deployment is the pipeline's: a direct release and a deletion are refused.
    let direct = payments_in_both_regions().replace("payments:1.0.0", "payments:9.0.0");
    let refused = model.decide(apply(&direct)).expect_err("refused");
    assert!(refused.to_string().contains("spec.template"), "{refused}");
    assert!(
        refused.to_string().contains("pipeline finance/q4"),
        "{refused}"
    );
    let refused = model
        .decide(Event::DeleteDeployment {
            key: key(),
            who: "test".to_owned(),
        })
        .expect_err("refused");
    assert!(
        refused.to_string().contains("pipeline finance/q4"),
        "{refused}"
    );

    let approve = |stage: &str| Event::PipelineCommand {
        key: key_of("q4"),
        command: crate::pipeline::PipelineCommand::Approve,
        expected_stage: Some(stage.to_owned()),
        reason: String::new(),
        who: "test".to_owned(),
    };
    let Answer::Pipeline(outcome) = model.step(approve("shanghai")) else {
        panic!("a pipeline answer");
    };
    assert!(!outcome.changed, "another stage's approval changes nothing");
    model.step(approve("hangzhou"));
    assert_eq!(stage(&model), Some(("Running".into(), "shanghai".into())));
    assert!(
        targets(&model).iter().all(|t| *t > 0),
        "{:?}",
        targets(&model)
    );
    let event = all_ready(&model, &sessions, &|_| true);
    model.step(event);
    assert_eq!(stage(&model).map(|s| s.0), Some("Succeeded".into()));
}

fn key_of(name: &str) -> DeploymentKey {
    DeploymentKey {
        namespace: Namespace::new("finance").expect("namespace"),
        name: DeploymentName::new(name).expect("name"),
    }
}

/// Payments over every example unit, one group per stage, no pauses or waits of its own.
fn payments_in_both_regions() -> String {
    PAYMENTS
        .replace(
            "units: [sh-az1, sh-az2]",
            "units: [sh-az1, sh-az2, hz-az1, hz-az2]",
        )
        .replace(
            "beta: true\n    batches: 2\n    pause: Manual",
            "batches: 1\n    pause: Auto",
        )
        .replace("minReadySeconds: 5", "minReadySeconds: 0")
}

#[test]
fn an_aborted_pipeline_frees_its_deployment_and_goes_once_its_release_settles() {
    let mut model = Model::new(FailoverPolicy::default());
    model.step(apply(&format!(
        "{UNITS}\n---\n{}",
        payments_in_both_regions()
    )));
    model.step(apply(PIPELINE));
    let release = |model: &Model| {
        model
            .core
            .deployment(&key())
            .expect("record")
            .release
            .clone()
    };
    assert_eq!(release(&model).phase(), crate::release::Phase::Progressing);
    // A second pipeline over the same deployment is refused.
    let other = PIPELINE.replace("name: q4,", "name: q5,");
    let refused = model.decide(apply(&other)).expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("released by pipeline finance/q4"),
        "{refused}"
    );

    model.step(Event::PipelineCommand {
        key: key_of("q4"),
        command: crate::pipeline::PipelineCommand::Abort,
        expected_stage: None,
        reason: "test".to_owned(),
        who: "test".to_owned(),
    });
    assert_eq!(
        release(&model).reason(),
        crate::release::Reason::PausedByOperator
    );
    let delete = || Event::DeletePipeline {
        key: key_of("q4"),
        who: "test".to_owned(),
    };
    let refused = model.decide(delete()).expect_err("refused");
    assert!(refused.to_string().contains("under way"), "{refused}");
    // The deployment is free: a direct release starts, and nothing pauses it again.
    let direct = payments_in_both_regions().replace("payments:1.0.0", "payments:9.0.0");
    model.step(apply(&direct));
    assert_eq!(release(&model).phase(), crate::release::Phase::Progressing);
    model.step(Event::Tick);
    assert_eq!(release(&model).phase(), crate::release::Phase::Progressing);
    assert!(matches!(model.step(delete()), Answer::Deleted(true)));
}

#[test]
fn evacuating_the_first_region_of_a_sequential_release_skips_no_group_of_the_next() {
    let mut model = Model::new(FailoverPolicy::default());
    let sequential = payments_in_both_regions().replace(
        "batches: 1\n    pause: Auto",
        "beta: true\n    batches: 2\n    pause: Manual\n    regionOrder: Sequential\n    regions: [cn-shanghai, cn-hangzhou]",
    );
    model.step(apply(&format!("{UNITS}\n---\n{sequential}")));
    let units = ["sh-az1", "sh-az2", "hz-az1", "hz-az2"];
    let sessions: Vec<u64> = ["sh-dc1", "sh-dc2", "hz-dc1", "hz-dc2"]
        .iter()
        .map(|c| model.connect(c))
        .collect();
    // Every unit reports its slice's pods ready, as many on the update revision as its target.
    let reports = |model: &Model| {
        let reports = units
            .iter()
            .zip(&sessions)
            .map(|(u, s)| {
                let slice = model.slice(u);
                report(model, u, *s, slice.replicas, slice.target)
            })
            .collect();
        Event::Reports(reports)
    };
    let event = reports(&model);
    model.step(event);
    model.step(apply(&format!(
        "{UNITS}\n---\n{}",
        sequential.replace("payments:1.0.0", "payments:2.0.0")
    )));
    // Where the release stands: its reason, its group, and the targets of Hangzhou's units.
    let at = |model: &Model| {
        let record = model.core.deployment(&key()).expect("record");
        let hangzhou: Vec<i32> = units[2..].iter().map(|u| model.slice(u).target).collect();
        (record.release.reason(), record.release.batch(), hangzhou)
    };
    let proceed = |model: &mut Model, batch: usize| {
        model.step(Event::Command {
            key: key(),
            command: crate::release::ReleaseCommand::Continue,
            reason: String::new(),
            expected_batch: Some(batch),
            who: "test".to_owned(),
        });
        let event = reports(model);
        model.step(event);
    };
    let confirm = crate::release::Reason::AwaitingConfirm;
    let event = reports(&model);
    model.step(event);
    assert_eq!(at(&model), (confirm, 0, vec![0, 0]));
    proceed(&mut model, 0);
    assert_eq!(at(&model), (confirm, 1, vec![0, 0]), "Hangzhou waits");

    // Shanghai is evacuated while its group 1 waits: Hangzhou takes its pods, on the old revision.
    model.step(Event::Evacuate {
        target: EvacuationTarget::Region(
            crate::names::RegionName::new("cn-shanghai").expect("region"),
        ),
        force: false,
        reason: String::new(),
        who: "test".to_owned(),
    });
    let event = reports(&model);
    model.step(event);
    assert!(!model.moving(), "the move is complete");
    assert_eq!(units.map(|u| model.slice(u).replicas), [0, 0, 5, 5]);
    // The release is where it was, and Hangzhou's groups did not move up: Shanghai's last group
    // has nothing left to do, then Hangzhou's beta group updates one pod per unit.
    assert_eq!(at(&model), (confirm, 1, vec![0, 0]));
    proceed(&mut model, 1);
    assert_eq!(at(&model), (confirm, 2, vec![0, 0]));
    proceed(&mut model, 2);
    assert_eq!(at(&model), (confirm, 3, vec![1, 1]));
}
