//! `cafe-hub backup`, `restore` and `migrate`: every record of a store in one JSON file, the same
//! for redb and etcd.
//!
//! The file: `{"format": 1, "createdMs": ..., "source": "...", "tables": {"units": {KEY: VALUE},
//! ...}}`, values as the store holds them (JSON documents, or text for counters). The writer key
//! (the redb hub's token, or the etcd leader's record) and the etcd store's transaction sequence
//! are left out: they belong to a running store.

use crate::hub_cli::StoreArgs;
use crate::store::{EtcdOptions, EtcdStore, RedbStore, Store, Table, Write};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The backup format this build writes, and the newest it reads.
pub const FORMAT: u32 = 1;

/// A backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backup {
    /// The format version.
    pub format: u32,
    /// When it was taken (ms since the epoch).
    pub created_ms: i64,
    /// The store it came from.
    pub source: String,
    /// Table name to key to value.
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
}

type Tables = BTreeMap<Table, BTreeMap<String, Vec<u8>>>;

/// The keys that belong to a running store rather than to the hub's state: the writer key (a
/// redb hub's token, the etcd leader's record) and the etcd store's transaction sequence.
fn is_writer_key(table: Table, key: &str) -> bool {
    table == Table::Meta
        && (key == crate::hub::records::WRITER_KEY || key == crate::store::etcd::SEQUENCE_KEY)
}

impl Backup {
    /// A backup of `tables`.
    pub fn of(tables: &Tables, source: String) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for (table, entries) in tables {
            let mut values = BTreeMap::new();
            for (key, value) in entries {
                if is_writer_key(*table, key) {
                    continue;
                }
                let text = String::from_utf8(value.clone()).map_err(|_| {
                    format!("the {} record {key:?} is not UTF-8 text", table.name())
                })?;
                values.insert(key.clone(), text);
            }
            out.insert(table.name().to_owned(), values);
        }
        Ok(Self {
            format: FORMAT,
            created_ms: crate::hub::server::now_ms(),
            source,
            tables: out,
        })
    }

    /// Reads and checks a backup file: nothing is written anywhere before it has all been read.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a cafe-hub backup: {e}", path.display()))?;
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        match format {
            Some(format) if format > u64::from(FORMAT) => {
                return Err(format!(
                    "{}: format: the backup has format {format}, newer than this cafe-hub reads \
                     (format {FORMAT} and older); restore it with a newer cafe-hub",
                    path.display()
                ));
            }
            Some(_) => {}
            None => {
                return Err(format!(
                    "{}: format: missing; not a cafe-hub backup",
                    path.display()
                ));
            }
        }
        let backup: Self = serde_json::from_value(value)
            .map_err(|e| format!("{}: not a cafe-hub backup: {e}", path.display()))?;
        for name in backup.tables.keys() {
            if !Table::ALL.iter().any(|t| t.name() == name) {
                return Err(format!(
                    "{}: tables.{name}: no such table (the tables are {})",
                    path.display(),
                    Table::ALL.map(Table::name).join(", ")
                ));
            }
        }
        Ok(backup)
    }

    fn entries(&self) -> impl Iterator<Item = (Table, &String, &String)> {
        Table::ALL.into_iter().flat_map(move |table| {
            self.tables
                .get(table.name())
                .into_iter()
                .flatten()
                .map(move |(k, v)| (table, k, v))
        })
    }
}

/// A store opened for the backup commands.
enum Opened {
    Redb(RedbStore, String),
    Etcd(Box<EtcdStore>),
}

impl Opened {
    async fn open(args: &StoreArgs) -> Result<Self, String> {
        match args.etcd_options() {
            Some(options) => EtcdStore::open(options)
                .await
                .map(|s| Self::Etcd(Box::new(s)))
                .map_err(|e| crate::error_chain(&e)),
            None => {
                let dir = args.data_dir();
                RedbStore::open(&dir)
                    .map(|s| Self::Redb(s, dir.display().to_string()))
                    .map_err(|e| crate::error_chain(&e))
            }
        }
    }

    fn source(&self) -> String {
        match self {
            Self::Redb(_, dir) => format!("redb {dir}"),
            Self::Etcd(store) => format!("etcd {}", store.endpoints()),
        }
    }

    async fn tables(&self) -> Result<Tables, String> {
        match self {
            Self::Etcd(store) => store.snapshot().await.map_err(|e| crate::error_chain(&e)),
            Self::Redb(store, _) => {
                let mut tables = Tables::new();
                for table in Table::ALL {
                    let entries = store.load(table).map_err(|e| crate::error_chain(&e))?;
                    tables.insert(table, entries.into_iter().collect());
                }
                Ok(tables)
            }
        }
    }

    /// Fills the store with `backup`, replacing what it holds only with `force`.
    async fn restore(self, backup: &Backup, force: bool) -> Result<usize, String> {
        let existing = self.tables().await?;
        let held: usize = existing
            .iter()
            .map(|(t, e)| e.keys().filter(|k| !is_writer_key(*t, k)).count())
            .sum();
        if let Self::Etcd(store) = &self
            && let Some(leader) = store.leader()
        {
            return Err(format!(
                "a hub replica leads this store ({}): stop every replica before restoring",
                leader.url
            ));
        }
        if held > 0 && !force {
            return Err(format!(
                "the store ({}) holds {held} records: restore goes into an empty store (or pass \
                 --force to replace them)",
                self.source()
            ));
        }
        let mut writes: Vec<Write> = Vec::new();
        for (table, entries) in &existing {
            for key in entries.keys() {
                writes.push(Write::delete(*table, key.clone()));
            }
        }
        let mut count = 0;
        for (table, key, value) in backup.entries() {
            writes.push(Write::put(table, key.clone(), value.clone().into_bytes()));
            count += 1;
        }
        // Deletes and puts of one key: the put is last, so it wins (every store applies a
        // commit's writes in order). One commit: all or nothing (etcd takes it through an intent
        // when it is larger than one transaction).
        let store = match self {
            Self::Redb(store, _) => Box::new(store) as Box<dyn Store>,
            Self::Etcd(store) => store as Box<dyn Store>,
        };
        tokio::task::spawn_blocking(move || store.commit(&writes))
            .await
            .map_err(|e| format!("the restore failed: {e}"))?
            .map_err(|e| crate::error_chain(&e))?;
        Ok(count)
    }
}

/// `cafe-hub backup`.
pub async fn backup(args: &StoreArgs, out: &Path) -> Result<(), String> {
    let store = Opened::open(args).await?;
    let backup = Backup::of(&store.tables().await?, store.source())?;
    let records: usize = backup.tables.values().map(BTreeMap::len).sum();
    let text = serde_json::to_string_pretty(&backup).map_err(|e| e.to_string())? + "\n";
    // Written aside and renamed: a failed backup never leaves half a file under the name.
    let partial = out.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, out))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "backed up {records} records of {} to {}",
        store.source(),
        out.display()
    );
    Ok(())
}

/// `cafe-hub restore`.
pub async fn restore(args: &StoreArgs, from: &Path, force: bool) -> Result<(), String> {
    let backup = Backup::read(from)?;
    let store = Opened::open(args).await?;
    let source = store.source();
    let count = store.restore(&backup, force).await?;
    println!(
        "restored {count} records from {} into {source}",
        from.display()
    );
    Ok(())
}

/// `cafe-hub migrate`.
pub async fn migrate(from_redb: &Path, to: EtcdOptions, force: bool) -> Result<(), String> {
    let source = Opened::Redb(
        RedbStore::open(from_redb).map_err(|e| crate::error_chain(&e))?,
        from_redb.display().to_string(),
    );
    let backup = Backup::of(&source.tables().await?, source.source())?;
    let target = Opened::Etcd(Box::new(
        EtcdStore::open(to)
            .await
            .map_err(|e| crate::error_chain(&e))?,
    ));
    let target_name = target.source();
    let count = target.restore(&backup, force).await?;
    println!(
        "migrated {count} records from {} to {target_name}",
        source.source()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("b.json");
        std::fs::write(
            &path,
            r#"{"format": 9, "createdMs": 0, "source": "x", "tables": {}}"#,
        )
        .expect("write");
        let error = Backup::read(&path).expect_err("refused");
        assert!(error.contains("format: the backup has format 9"), "{error}");
        std::fs::write(
            &path,
            r#"{"format": 1, "createdMs": 0, "source": "x", "tables": {"nope": {}}}"#,
        )
        .expect("write");
        let error = Backup::read(&path).expect_err("refused");
        assert!(error.contains("tables.nope: no such table"), "{error}");
    }

    #[tokio::test]
    async fn redb_round_trip_leaves_out_the_writer_token_and_refuses_a_full_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = RedbStore::open(&dir.path().join("a")).expect("opens");
        source
            .commit(&[
                Write::put(Table::Units, "u1", b"{}".to_vec()),
                Write::put(Table::Meta, crate::hub::records::WRITER_KEY, b"t".to_vec()),
            ])
            .expect("commit");
        let args = |name: &str| StoreArgs {
            store: crate::hub_cli::StoreKind::Redb,
            data_dir: Some(dir.path().join(name)),
            etcd_endpoints: Vec::new(),
            etcd: crate::hub_cli::EtcdArgs {
                etcd_prefix: "/cafe".to_owned(),
                etcd_ca: None,
                etcd_cert: None,
                etcd_key: None,
                etcd_max_txn_ops: 128,
            },
        };
        drop(source);
        let file = dir.path().join("backup.json");
        backup(&args("a"), &file).await.expect("backs up");
        let read = Backup::read(&file).expect("reads");
        assert_eq!(read.tables["units"]["u1"], "{}");
        assert!(!read.tables["meta"].contains_key(crate::hub::records::WRITER_KEY));
        restore(&args("b"), &file, false).await.expect("restores");
        let error = restore(&args("b"), &file, false)
            .await
            .expect_err("not empty");
        assert!(error.contains("holds 1 records"), "{error}");
        let restored = RedbStore::open(&dir.path().join("b")).expect("opens");
        assert_eq!(
            restored.load(Table::Units).expect("load"),
            [("u1".to_owned(), b"{}".to_vec())]
        );
    }
}
