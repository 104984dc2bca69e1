//! An in-memory store for tests and throwaway hubs.

use super::{Condition, Store, StoreError, Table, Write, check};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Tables in memory; lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<BTreeMap<Table, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<Table, BTreeMap<String, Vec<u8>>>) -> R) -> R {
        // A panic while holding the lock leaves plain maps behind, still consistent to read.
        let mut guard = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

impl Store for MemoryStore {
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.with(|t| {
            t.get(&table)
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default()
        }))
    }

    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.with(|t| {
            t.get(&table)
                .map(|m| {
                    m.iter()
                        .rev()
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    fn commit_if(&self, conditions: &[Condition], writes: &[Write]) -> Result<(), StoreError> {
        self.with(|t| {
            check(conditions, |c| {
                Ok(t.get(&c.table).and_then(|m| m.get(&c.key)).cloned())
            })?;
            for write in writes {
                let table = t.entry(write.table).or_default();
                match &write.value {
                    Some(value) => table.insert(write.key.clone(), value.clone()),
                    None => table.remove(&write.key),
                };
            }
            Ok(())
        })
    }
}
