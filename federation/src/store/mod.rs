//! The hub's durable store (DESIGN section 9): a small key-value interface with one embedded
//! implementation (redb) and an in-memory one for tests. Records are JSON documents; the hub decides
//! what they hold.

pub mod etcd;
mod memory;
mod redb_store;

pub use etcd::{EtcdOptions, EtcdStore};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;

/// The store's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// LogicalUnits by name.
    Units,
    /// CafeDeployments with their release state, by `namespace/name`.
    Deployments,
    /// The generation and content hash of every slice sent, by slice id.
    Slices,
    /// Counters, such as the next slice generation.
    Meta,
    /// The audit log, by a zero-padded sequence number.
    Audit,
    /// ReleasePipelines with their state, by `namespace/name`.
    Pipelines,
}

impl Table {
    /// Every table.
    pub const ALL: [Self; 6] = [
        Self::Units,
        Self::Deployments,
        Self::Slices,
        Self::Meta,
        Self::Audit,
        Self::Pipelines,
    ];

    /// The table's name in the store.
    pub fn name(self) -> &'static str {
        match self {
            Self::Units => "units",
            Self::Deployments => "deployments",
            Self::Slices => "slices",
            Self::Meta => "meta",
            Self::Audit => "audit",
            Self::Pipelines => "pipelines",
        }
    }
}

/// One write of a commit: a value to store, or `None` to remove the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The table.
    pub table: Table,
    /// The key.
    pub key: String,
    /// The new value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

impl Write {
    /// Stores `value` at `key`.
    pub fn put(table: Table, key: impl Into<String>, value: Vec<u8>) -> Self {
        Self {
            table,
            key: key.into(),
            value: Some(value),
        }
    }

    /// Removes `key`.
    pub fn delete(table: Table, key: impl Into<String>) -> Self {
        Self {
            table,
            key: key.into(),
            value: None,
        }
    }
}

/// What a commit requires of the store when it applies: the value a key holds (`None`: absent).
/// etcd's `Compare(Value(key) == value)`; the hub conditions every commit on its own writer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The table.
    pub table: Table,
    /// The key.
    pub key: String,
    /// The value it must hold.
    pub value: Option<Vec<u8>>,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the store at {path}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A commit's condition did not hold: nothing was written.
    #[error(
        "the store's {table} {key:?} is not what this writer left: another writer has taken over"
    )]
    Conflict {
        /// The table.
        table: &'static str,
        /// The key.
        key: String,
    },
    /// The store did not answer in time: the commit may or may not have been applied.
    #[error(
        "the store ({store}) did not answer; whether the last commit was applied is unknown: {reason}"
    )]
    Unavailable {
        /// Which store.
        store: String,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("store {operation} failed")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Durable key-value tables with atomic multi-key commits.
pub trait Store: Send + Sync + 'static {
    /// Every entry of `table`, sorted by key.
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The last `limit` entries of `table` by key, newest (largest key) first.
    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Applies every write atomically and durably if every condition holds, in one transaction;
    /// else writes nothing and fails with [`StoreError::Conflict`]. After it returns, a crash loses
    /// none of the writes.
    fn commit_if(&self, conditions: &[Condition], writes: &[Write]) -> Result<(), StoreError>;

    /// [`Store::commit_if`] without conditions.
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.commit_if(&[], writes)
    }
}

/// A shared store is a store: the replicated hub shares its etcd store with its election.
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        (**self).load(table)
    }

    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        (**self).load_last(table, limit)
    }

    fn commit_if(&self, conditions: &[Condition], writes: &[Write]) -> Result<(), StoreError> {
        (**self).commit_if(conditions, writes)
    }
}

/// The first of `conditions` that `current` (a key's value now) does not meet, as the error.
pub fn check<'a>(
    conditions: &'a [Condition],
    mut current: impl FnMut(&'a Condition) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<(), StoreError> {
    for condition in conditions {
        if current(condition)? != condition.value {
            return Err(StoreError::Conflict {
                table: condition.table.name(),
                key: condition.key.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn exercise(store: &dyn Store) {
        store
            .commit(&[
                Write::put(Table::Units, "b", b"2".to_vec()),
                Write::put(Table::Units, "a", b"1".to_vec()),
                Write::put(Table::Audit, "00000001", b"x".to_vec()),
                Write::put(Table::Audit, "00000002", b"y".to_vec()),
            ])
            .expect("commit");
        let units = store.load(Table::Units).expect("load");
        assert_eq!(
            units,
            [
                ("a".to_owned(), b"1".to_vec()),
                ("b".to_owned(), b"2".to_vec())
            ]
        );
        store
            .commit(&[Write::delete(Table::Units, "a")])
            .expect("commit");
        assert_eq!(store.load(Table::Units).expect("load").len(), 1);
        let last = store.load_last(Table::Audit, 1).expect("load");
        assert_eq!(last, [("00000002".to_owned(), b"y".to_vec())]);
        assert!(store.load(Table::Slices).expect("empty table").is_empty());

        // A commit whose condition fails writes nothing; one whose conditions hold writes all.
        let token = |value: &[u8]| Condition {
            table: Table::Meta,
            key: "writer".to_owned(),
            value: Some(value.to_vec()),
        };
        store
            .commit(&[Write::put(Table::Meta, "writer", b"a".to_vec())])
            .expect("commit");
        let refused = store.commit_if(
            &[token(b"b")],
            &[Write::put(Table::Units, "c", b"3".to_vec())],
        );
        assert!(
            matches!(refused, Err(StoreError::Conflict { .. })),
            "{refused:?}"
        );
        assert_eq!(store.load(Table::Units).expect("load").len(), 1);
        store
            .commit_if(
                &[token(b"a")],
                &[Write::put(Table::Units, "c", b"3".to_vec())],
            )
            .expect("the condition holds");
        assert_eq!(store.load(Table::Units).expect("load").len(), 2);
    }

    #[test]
    fn memory_store_behaves() {
        exercise(&MemoryStore::default());
    }

    #[test]
    fn redb_store_behaves_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = RedbStore::open(dir.path()).expect("opens");
            exercise(&store);
        }
        let store = RedbStore::open(dir.path()).expect("reopens");
        assert_eq!(
            store.load(Table::Units).expect("load"),
            [
                ("b".to_owned(), b"2".to_vec()),
                ("c".to_owned(), b"3".to_vec())
            ]
        );
    }
}
