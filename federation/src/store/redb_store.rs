//! The embedded store: one redb file under the hub's `--data-dir`.

use super::{Condition, Store, StoreError, Table, Write, check};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "hub.redb";

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

fn io(operation: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
    move |e| StoreError::Io {
        operation,
        source: Box::new(e),
    }
}

/// A redb database; every commit is durable (fsync) before it returns.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens (or creates) `dir/hub.redb`, creating `dir` and every table.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(Box::new(e)))?;
        let db = Database::create(&path).map_err(|e| open_error(Box::new(e)))?;
        let txn = db.begin_write().map_err(|e| open_error(Box::new(e)))?;
        for table in Table::ALL {
            txn.open_table(definition(table))
                .map_err(|e| open_error(Box::new(e)))?;
        }
        txn.commit().map_err(|e| open_error(Box::new(e)))?;
        Ok(Self { db })
    }
}

impl Store for RedbStore {
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| io("read")(e.into()))?;
        let t = txn
            .open_table(definition(table))
            .map_err(|e| io("read")(e.into()))?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| io("read")(e.into()))? {
            let (k, v) = entry.map_err(|e| io("read")(e.into()))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| io("read")(e.into()))?;
        let t = txn
            .open_table(definition(table))
            .map_err(|e| io("read")(e.into()))?;
        let mut out = Vec::new();
        for entry in t
            .iter()
            .map_err(|e| io("read")(e.into()))?
            .rev()
            .take(limit)
        {
            let (k, v) = entry.map_err(|e| io("read")(e.into()))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit_if(&self, conditions: &[Condition], writes: &[Write]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| io("commit")(e.into()))?;
        // Checked inside the write transaction: nothing can change the keys in between. A failed
        // check drops the transaction, which aborts it.
        check(conditions, |c| {
            let t = txn
                .open_table(definition(c.table))
                .map_err(|e| io("commit")(e.into()))?;
            let value = t
                .get(c.key.as_str())
                .map_err(|e| io("commit")(e.into()))?
                .map(|v| v.value().to_vec());
            Ok(value)
        })?;
        {
            for table in Table::ALL {
                if !writes.iter().any(|w| w.table == table) {
                    continue;
                }
                let mut t = txn
                    .open_table(definition(table))
                    .map_err(|e| io("commit")(e.into()))?;
                for write in writes.iter().filter(|w| w.table == table) {
                    match &write.value {
                        Some(value) => {
                            t.insert(write.key.as_str(), value.as_slice())
                                .map_err(|e| io("commit")(e.into()))?;
                        }
                        None => {
                            t.remove(write.key.as_str())
                                .map_err(|e| io("commit")(e.into()))?;
                        }
                    }
                }
            }
        }
        txn.commit().map_err(|e| io("commit")(e.into()))
    }
}
