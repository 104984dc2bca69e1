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
