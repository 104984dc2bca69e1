//! The hub's model without the network: commits that fail leave nothing behind.

use super::clock::ManualClock;
use super::*;
use crate::resources::parse_yaml_documents;
use crate::store::MemoryStore;
use std::sync::atomic::{AtomicBool, Ordering};

const UNITS: &str = include_str!("../../../deploy/examples/units.yaml");
const PAYMENTS: &str = include_str!("../../../deploy/examples/payments.yaml");

/// A store that refuses commits while told to.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
}

impl Store for FlakyStore {
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.load(table)
    }
    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.load_last(table, limit)
    }
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                operation: "commit",
                source: "disk full".into(),
            });
        }
        self.inner.commit(writes)
    }
}

fn key() -> DeploymentKey {
    DeploymentKey {
        namespace: crate::names::Namespace::new("finance").expect("namespace"),
        name: crate::names::DeploymentName::new("payments").expect("name"),
    }
}

#[test]
fn a_failed_commit_changes_nothing_and_the_hub_goes_on() {
    let failing = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        inner: MemoryStore::default(),
        failing: Arc::clone(&failing),
    };
    let hub = Hub::load(Box::new(store), Arc::new(ManualClock::default())).expect("loads");
    let documents = |text: &str| parse_yaml_documents(text).expect("valid");
    hub.apply(
        documents(&format!("{UNITS}\n---\n{PAYMENTS}")),
        "test",
        false,
    )
    .expect("apply");
    let before = hub.status(&key()).expect("status");
    let slices_before = hub.read(|core, _| core.slices.len());

    failing.store(true, Ordering::SeqCst);
    let release = PAYMENTS.replace("payments:1.0.0", "payments:1.1.0");
    let error = hub
        .apply(documents(&release), "test", false)
        .expect_err("the commit fails");
    assert!(matches!(error, HubError::Store(_)), "{error}");
    let after = hub.status(&key()).expect("status");
    assert_eq!(
        after.update_revision, before.update_revision,
        "memory ran ahead of the store"
    );
    assert_eq!(after.phase, "Stable");
    assert_eq!(hub.read(|core, _| core.slices.len()), slices_before);

    failing.store(false, Ordering::SeqCst);
    hub.apply(documents(&release), "test", false)
        .expect("apply");
    let released = hub.status(&key()).expect("status");
    assert_eq!(released.phase, "Progressing");
    assert_ne!(released.update_revision, before.update_revision);
}

#[test]
fn a_cluster_is_unknown_after_three_missed_heartbeats() {
    let clock = ManualClock::default();
    clock.advance_ms(1_000_000);
    let hub = Hub::load(Box::new(MemoryStore::default()), Arc::new(clock.clone())).expect("loads");
    let cluster = ClusterName::new("sh-dc1").expect("name");
    let (session, heard) = hub.connect(&cluster, "test");
    let connected = |hub: &Hub| hub.read(|core, now| core.clusters[&cluster].connected(now));
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
    hub.disconnect(&cluster, session);
    assert!(!connected(&hub));
}

/// A store the test keeps a hand on after the hub took it.
struct Shared(Arc<MemoryStore>);

impl Store for Shared {
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.0.load(table)
    }
    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.0.load_last(table, limit)
    }
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.0.commit(writes)
    }
}

#[test]
fn the_audit_sequence_survives_a_restart_whatever_the_stored_keys_look_like() {
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
    let hub = Hub::load(
        Box::new(Shared(Arc::clone(&store))),
        Arc::new(ManualClock::default()),
    )
    .expect("loads");
    let documents = parse_yaml_documents(UNITS).expect("valid");
    hub.apply(documents, "test", false).expect("apply");
    let audit: std::collections::BTreeMap<String, Vec<u8>> = store
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
