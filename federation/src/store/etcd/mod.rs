//! The replicated store: etcd, for several hub replicas of which one, elected on an etcd lease,
//! writes (DESIGN section 9). Records live under one prefix as `PREFIX/TABLE/KEY`.
//!
//! - Every commit is one etcd transaction whose compares are the commit's conditions (the hub's
//!   fence: the leader key still holds this replica's record).
//! - A commit larger than one transaction may be goes through an intent ([`intent`]).
//! - Reads come from a copy kept by a watch ([`mirror`]): a follower's warm copy, and the leader's
//!   after it has caught up with the leader's own last commit.

pub mod client;
pub mod election;
mod intent;
mod mirror;

use self::client::{EtcdClient, EtcdError};
use self::mirror::{Mirror, range_end};
use super::{Condition, Store, StoreError, Table, Write};
use cafe_proto::etcd::etcdserverpb as pb;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use self::client::EtcdTls;

/// etcd's default `--max-txn-ops`: most operations in one transaction.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// What one transaction's keys and values stay under: etcd's default `--max-request-bytes` is
/// 1.5 MiB, and the request's framing needs some of it.
pub const DEFAULT_MAX_TXN_BYTES: usize = 1024 * 1024;
/// How often the leader compacts etcd's history (the Kubernetes API server's default too).
pub const COMPACTION_PERIOD: Duration = Duration::from_secs(300);
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/cafe";
/// The meta-table key of the store's transaction sequence (see [`EtcdStore`]'s commits).
pub const SEQUENCE_KEY: &str = "txnSeq";
/// How long a read waits for the copy to catch up with the last commit before it fails.
const CATCH_UP: Duration = Duration::from_secs(5);
/// The bytes of framing counted per operation of a transaction.
const OP_OVERHEAD: usize = 64;

/// Where the store is and how large its transactions may be.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// The members' client URLs.
    pub endpoints: Vec<String>,
    /// The key prefix (`/cafe`).
    pub prefix: String,
    /// Client TLS.
    pub tls: EtcdTls,
    /// Most operations per transaction (the members' `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// Most key and value bytes per transaction (below the members' `--max-request-bytes`).
    pub max_txn_bytes: usize,
}

impl EtcdOptions {
    /// The defaults for `endpoints`.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: DEFAULT_PREFIX.to_owned(),
            tls: EtcdTls::default(),
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_txn_bytes: DEFAULT_MAX_TXN_BYTES,
        }
    }
}

/// A committed intent this replica has not finished applying (see [`intent`]).
#[derive(Debug)]
struct Unfinished {
    id: String,
    writes: Vec<Write>,
}

/// The etcd store.
pub struct EtcdStore {
    client: EtcdClient,
    /// `PREFIX/`, with one slash.
    prefix: String,
    options: EtcdOptions,
    mirror: Arc<Mirror>,
    /// The highest revision this replica has written or been told of: reads wait for the copy to
    /// reach it, so that they see this replica's own commits.
    known: AtomicI64,
    /// Whether intents left by an earlier writer have been finished.
    recovered: AtomicBool,
    unfinished: Mutex<Option<Unfinished>>,
    /// The last transaction sequence number this replica wrote (read from the store first).
    sequence: Mutex<Option<u64>>,
    runtime: tokio::runtime::Handle,
    watch: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.client.endpoints())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

fn io(operation: &'static str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        operation,
        source: error.to_string().into(),
    }
}

impl From<EtcdError> for StoreError {
    fn from(error: EtcdError) -> Self {
        Self::Io {
            operation: "etcd",
            source: Box::new(error),
        }
    }
}

/// etcd's compare that `key` holds `value` (`None`: that it is absent, version 0).
pub(super) fn holds(key: Vec<u8>, value: Option<Vec<u8>>) -> pb::Compare {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let (target, union) = match value {
        Some(value) => (CompareTarget::Value, TargetUnion::Value(value)),
        None => (CompareTarget::Version, TargetUnion::Version(0)),
    };
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key,
        target_union: Some(union),
        range_end: Vec::new(),
    }
}

fn put(key: Vec<u8>, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

fn delete(key: Vec<u8>, range_end: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key,
                range_end,
                prev_kv: false,
            },
        )),
    }
}

impl EtcdStore {
    /// Connects, reads everything under the prefix, and starts the watch that keeps the copy.
    /// Must run inside a tokio runtime, which the store's calls then use.
    pub async fn open(options: EtcdOptions) -> Result<Self, StoreError> {
        let client =
            EtcdClient::new(&options.endpoints, &options.tls).map_err(|e| StoreError::Open {
                path: options.endpoints.join(","),
                source: Box::new(e),
            })?;
        let trimmed = options.prefix.trim_end_matches('/');
        if !trimmed.starts_with('/') {
            return Err(StoreError::Open {
                path: options.endpoints.join(","),
                source: format!(
                    "--etcd-prefix: {:?} must start with '/' (for example {DEFAULT_PREFIX})",
                    options.prefix
                )
                .into(),
            });
        }
        let prefix = format!("{trimmed}/");
        let mirror = Arc::new(Mirror::new());
        let revision = mirror
            .list(&client, &prefix)
            .await
            .map_err(|reason| StoreError::Open {
                path: client.endpoints(),
                source: reason.into(),
            })?;
        let watch = tokio::spawn(Arc::clone(&mirror).follow(client.clone(), prefix.clone()));
        Ok(Self {
            client,
            prefix,
            options,
            mirror,
            known: AtomicI64::new(revision),
            recovered: AtomicBool::new(false),
            unfinished: Mutex::new(None),
            sequence: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            watch,
        })
    }

    /// The members' URLs.
    pub fn endpoints(&self) -> String {
        self.client.endpoints()
    }

    fn full_key(&self, relative: &str) -> Vec<u8> {
        format!("{}{relative}", self.prefix).into_bytes()
    }

    fn table_key(&self, table: Table, key: &str) -> Vec<u8> {
        self.full_key(&format!("{}/{key}", table.name()))
    }

    /// Notes that etcd has reached `revision` (a transaction of this replica's).
    pub(crate) fn note_revision(&self, revision: i64) {
        self.known.fetch_max(revision, Ordering::SeqCst);
    }

    /// Runs `future` on the store's runtime and waits for it on this thread, which may be any:
    /// the writer's thread, or a runtime worker for a short read.
    fn block<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .map_err(|_| io("etcd", "the runtime that talks to etcd is gone"))
    }

    /// The copy, once it holds everything this replica knows was written.
    fn current<R>(
        &self,
        read: impl FnOnce(&BTreeMap<String, Vec<u8>>) -> R,
    ) -> Result<R, StoreError> {
        let known = self.known.load(Ordering::SeqCst);
        if !self.mirror.wait_blocking(known, CATCH_UP) {
            let trouble = self.mirror.read(|c| c.trouble.clone()).unwrap_or_default();
            return Err(io(
                "read",
                format!(
                    "the copy of etcd at {} has not caught up with revision {known} within {CATCH_UP:?} ({trouble})",
                    self.client.endpoints()
                ),
            ));
        }
        Ok(self.mirror.read(|copy| read(&copy.entries)))
    }

    /// The leader record in the copy (see [`election`]).
    pub fn leader_value(&self) -> Option<Vec<u8>> {
        let key = format!("{}/{}", Table::Meta.name(), crate::hub::records::WRITER_KEY);
        self.mirror.read(|c| c.entries.get(&key).cloned())
    }

    /// A receiver that changes when the copy moves.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.mirror.subscribe()
    }

    /// Compacts etcd's history every `period`, each time to the revision the store had reached one
    /// period before, as the Kubernetes API server does for its own etcd: without it every commit
    /// (reports, heartbeats of streams, ticks) stays in etcd's history until its space quota
    /// stops all writes. A replica's watch that falls further behind than a period lists again.
    /// Runs until dropped; the leader runs it.
    pub async fn compact_every(&self, period: Duration) {
        let mut previous: Option<i64> = None;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Some(revision) = previous {
                match self.client.compact(revision).await {
                    Ok(()) => tracing::debug!(revision, "compacted etcd's history"),
                    Err(error) => tracing::warn!(%error, "cannot compact etcd's history"),
                }
            }
            previous = Some(self.known.load(Ordering::SeqCst));
        }
    }

    /// Why the copy is not current, when it is not.
    pub fn trouble(&self) -> Option<String> {
        self.mirror.read(|c| c.trouble.clone())
    }

    /// Every table at one revision, read from etcd itself (with committed intents laid over it): a
    /// consistent snapshot for backups, whichever replica takes it.
    pub async fn snapshot(&self) -> Result<BTreeMap<Table, BTreeMap<String, Vec<u8>>>, StoreError> {
        let copy = Mirror::new();
        copy.list(&self.client, &self.prefix)
            .await
            .map_err(|reason| io("read", reason))?;
        Ok(copy.read(|c| {
            Table::ALL
                .iter()
                .map(|t| (*t, intent::view(&c.entries, *t)))
                .collect()
        }))
    }

    fn compares(&self, conditions: &[Condition]) -> Vec<pb::Compare> {
        conditions
            .iter()
            .map(|c| holds(self.table_key(c.table, &c.key), c.value.clone()))
            .collect()
    }

    fn op(&self, write: &Write) -> pb::RequestOp {
        let key = self.table_key(write.table, &write.key);
        match &write.value {
            Some(value) => put(key, value.clone()),
            None => delete(key, Vec::new()),
        }
    }

    fn op_bytes(write: &Write) -> usize {
        OP_OVERHEAD + write.key.len() + write.value.as_ref().map_or(0, Vec::len)
    }

    /// One transaction: `ops` if every condition holds.
    ///
    /// Every such transaction also requires the sequence key ([`SEQUENCE_KEY`]) to hold the last
    /// number this replica wrote, and writes the next. A transaction that a member did not
    /// answer can then be sent again to another: if the first copy was applied, the second finds
    /// the sequence moved on by exactly this transaction and reports success without writing;
    /// a first copy applied late finds the sequence moved on by the second and writes nothing.
    fn txn(&self, conditions: &[Condition], mut ops: Vec<pb::RequestOp>) -> Result<(), StoreError> {
        let mut sequence = self
            .sequence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = match *sequence {
            Some(last) => last,
            None => self.current(|entries| {
                entries
                    .get(&format!("{}/{SEQUENCE_KEY}", Table::Meta.name()))
                    .and_then(|v| String::from_utf8_lossy(v).parse::<u64>().ok())
                    .unwrap_or(0)
            })?,
        };
        let next = last + 1;
        let sequence_key = self.table_key(Table::Meta, SEQUENCE_KEY);
        let mut compare = self.compares(conditions);
        compare.push(holds(
            sequence_key.clone(),
            (last > 0).then(|| last.to_string().into_bytes()),
        ));
        ops.push(put(sequence_key.clone(), next.to_string().into_bytes()));
        // On failure, the sequence and the conditions' keys as they are, to tell an earlier copy
        // of this transaction (applied) from another writer (a conflict).
        let read = |key: Vec<u8>| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key,
                ..Default::default()
            })),
        };
        let mut failure = vec![read(sequence_key)];
        failure.extend(
            conditions
                .iter()
                .map(|c| read(self.table_key(c.table, &c.key))),
        );
        let request = pb::TxnRequest {
            compare,
            success: ops,
            failure,
        };
        let client = self.client.clone();
        let reply = match self.block(async move { client.txn(request).await })? {
            Ok(reply) => reply,
            // No member answered: the transaction may have been applied all the same.
            Err(error @ EtcdError::Unreachable { retried: true, .. }) => {
                return Err(StoreError::Unavailable {
                    store: format!("etcd at {}", self.client.endpoints()),
                    reason: error.to_string(),
                });
            }
            Err(error) => return Err(error.into()),
        };
        if reply.succeeded {
            *sequence = Some(next);
            if let Some(header) = &reply.header {
                self.note_revision(header.revision);
            }
            return Ok(());
        }
        let values: Vec<Option<(Vec<u8>, i64)>> = reply
            .responses
            .iter()
            .map(|op| match &op.response {
                Some(pb::response_op::Response::ResponseRange(range)) => range
                    .kvs
                    .first()
                    .map(|kv| (kv.value.clone(), kv.mod_revision)),
                _ => None,
            })
            .collect();
        let fenced = conditions
            .iter()
            .zip(values.iter().skip(1))
            .all(|(c, v)| v.as_ref().map(|(value, _)| value) == c.value.as_ref());
        if fenced
            && let Some(Some((value, revision))) = values.first()
            && *value == next.to_string().into_bytes()
        {
            // An earlier copy of this very transaction was applied.
            *sequence = Some(next);
            self.note_revision(*revision);
            return Ok(());
        }
        let first = conditions.first();
        Err(StoreError::Conflict {
            table: first.map_or("meta", |c| c.table.name()),
            key: first.map_or_else(|| SEQUENCE_KEY.to_owned(), |c| c.key.clone()),
        })
    }

    /// Cuts `writes` into transactions within the limits.
    fn chunks<'a>(&self, writes: &'a [Write]) -> Vec<&'a [Write]> {
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut bytes = 0;
        for (i, write) in writes.iter().enumerate() {
            let size = Self::op_bytes(write);
            if i > start
                && (i - start >= self.write_ops() || bytes + size > self.options.max_txn_bytes)
            {
                chunks.push(&writes[start..i]);
                start = i;
                bytes = 0;
            }
            bytes += size;
        }
        if start < writes.len() {
            chunks.push(&writes[start..]);
        }
        chunks
    }

    /// Writes per transaction: one operation goes to the sequence.
    fn write_ops(&self) -> usize {
        self.options.max_txn_ops.saturating_sub(1).max(1)
    }

    fn fits(&self, writes: &[Write]) -> bool {
        writes.len() <= self.write_ops()
            && writes.iter().map(Self::op_bytes).sum::<usize>() <= self.options.max_txn_bytes
    }

    /// Applies a committed intent's writes to the tables, then removes the intent.
    fn finish(&self, conditions: &[Condition], unfinished: &Unfinished) -> Result<(), StoreError> {
        for chunk in self.chunks(&unfinished.writes) {
            self.txn(conditions, chunk.iter().map(|w| self.op(w)).collect())?;
        }
        let prefix = self.full_key(&intent::intent_prefix(&unfinished.id));
        let end = range_end(&prefix);
        self.txn(conditions, vec![delete(prefix, end)])
    }

    /// Before this replica's first commit: finishes the intents an earlier writer committed, and
    /// removes those it only staged. Then the intent this replica could not finish, if any.
    fn recover(&self, conditions: &[Condition]) -> Result<(), StoreError> {
        if !self.recovered.load(Ordering::SeqCst) {
            let (committed, staged) = self.current(intent::found)?;
            for (id, writes) in committed {
                tracing::info!(intent = %id, writes = writes.len(), "finishing a decision an earlier writer committed");
                self.finish(conditions, &Unfinished { id, writes })?;
            }
            for id in staged {
                tracing::info!(intent = %id, "removing a decision an earlier writer never committed");
                let prefix = self.full_key(&intent::intent_prefix(&id));
                let end = range_end(&prefix);
                self.txn(conditions, vec![delete(prefix, end)])?;
            }
            self.recovered.store(true, Ordering::SeqCst);
        }
        let mut unfinished = self
            .unfinished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pending) = unfinished.as_ref() {
            self.finish(conditions, pending)?;
            *unfinished = None;
        }
        Ok(())
    }

    /// A commit too large for one transaction (see [`intent`]).
    fn commit_large(&self, conditions: &[Condition], writes: &[Write]) -> Result<(), StoreError> {
        let part_limit = self.options.max_txn_bytes.saturating_sub(OP_OVERHEAD * 2);
        if let Some(big) = writes.iter().find(|w| intent::encoded_len(w) > part_limit) {
            return Err(io(
                "commit",
                format!(
                    "the {} record {:?} is {} bytes; one etcd request takes at most {part_limit}",
                    big.table.name(),
                    big.key,
                    intent::encoded_len(big)
                ),
            ));
        }
        use std::hash::BuildHasher as _;
        let id = format!(
            "{:020}-{:016x}",
            self.known.load(Ordering::SeqCst),
            std::collections::hash_map::RandomState::new().hash_one(writes.len())
        );
        let mut parts: Vec<&[Write]> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, write) in writes.iter().enumerate() {
            let size = intent::encoded_len(write);
            if i > start && bytes + size > part_limit {
                parts.push(&writes[start..i]);
                start = i;
                bytes = 0;
            }
            bytes += size;
        }
        parts.push(&writes[start..]);
        for (n, part) in parts.iter().enumerate() {
            let key = self.full_key(&intent::part_key(&id, n));
            self.txn(conditions, vec![put(key, intent::encode(part))])?;
        }
        // The commit point: from here on the decision is durable, whatever happens next.
        let key = self.full_key(&intent::commit_key(&id));
        self.txn(
            conditions,
            vec![put(key, parts.len().to_string().into_bytes())],
        )?;
        let unfinished = Unfinished {
            id,
            writes: writes.to_vec(),
        };
        if let Err(error) = self.finish(conditions, &unfinished) {
            // Committed all the same: readers see it through the intent, and the caller is told
            // it succeeded. The next commit finishes it first (or, if this replica no longer
            // leads, its refused fence stops the hub and the next leader finishes it).
            tracing::warn!(%error, "a committed decision is not yet applied to the tables; it will be");
            *self
                .unfinished
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(unfinished);
        }
        Ok(())
    }
}

/// The last write of each key, in the order of those last writes: etcd refuses a transaction that
/// changes one key twice, and only the last write of a commit counts.
fn last_writes(writes: &[Write]) -> Vec<Write> {
    let mut last: std::collections::HashMap<(Table, &str), usize> =
        std::collections::HashMap::new();
    for (i, write) in writes.iter().enumerate() {
        last.insert((write.table, write.key.as_str()), i);
    }
    writes
        .iter()
        .enumerate()
        .filter(|(i, w)| last.get(&(w.table, w.key.as_str())) == Some(i))
        .map(|(_, w)| w.clone())
        .collect()
}

impl Store for EtcdStore {
    fn load(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.current(|entries| intent::view(entries, table).into_iter().collect())
    }

    fn load_last(&self, table: Table, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.current(|entries| {
            intent::view(entries, table)
                .into_iter()
                .rev()
                .take(limit)
                .collect()
        })
    }

    fn commit_if(&self, conditions: &[Condition], writes: &[Write]) -> Result<(), StoreError> {
        self.recover(conditions)?;
        let writes = &last_writes(writes);
        if writes.is_empty() {
            return Ok(());
        }
        if self.fits(writes) {
            return self.txn(conditions, writes.iter().map(|w| self.op(w)).collect());
        }
        self.commit_large(conditions, writes)
    }
}

#[cfg(test)]
mod tests;
