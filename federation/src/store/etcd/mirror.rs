//! A copy of everything under the store's prefix, kept by one etcd watch: what a follower keeps
//! warm, and what the store's reads come from.

use super::client::EtcdClient;
use cafe_proto::etcd::etcdserverpb as pb;
use cafe_proto::etcd::mvccpb;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a failed watch waits before it dials again.
const RETRY: Duration = Duration::from_millis(200);

/// The copy: keys relative to the prefix, and the etcd revision it reflects.
#[derive(Debug, Default, Clone)]
pub(super) struct Copy {
    /// The revision: every change up to it is in `entries`.
    pub revision: i64,
    /// Key (without the prefix) to value.
    pub entries: BTreeMap<String, Vec<u8>>,
    /// Why the watch is not running, while it is not.
    pub trouble: Option<String>,
}

/// The copy, with ways to wait for it to reach a revision from sync and async code.
#[derive(Debug)]
pub(super) struct Mirror {
    copy: Mutex<Copy>,
    moved: Condvar,
    revision: watch::Sender<i64>,
}

/// The end of the key range of every key starting with `prefix`.
pub(super) fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Mirror {
    pub(super) fn new() -> Self {
        Self {
            copy: Mutex::new(Copy::default()),
            moved: Condvar::new(),
            revision: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Copy> {
        self.copy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `read` on the copy.
    pub(super) fn read<R>(&self, read: impl FnOnce(&Copy) -> R) -> R {
        read(&self.lock())
    }

    fn update(&self, change: impl FnOnce(&mut Copy)) {
        let revision = {
            let mut copy = self.lock();
            change(&mut copy);
            copy.revision
        };
        self.moved.notify_all();
        self.revision.send_if_modified(|r| {
            let moved = *r != revision;
            *r = revision;
            moved
        });
    }

    /// Blocks until the copy reflects `revision`, for at most `limit`; whether it does.
    pub(super) fn wait_blocking(&self, revision: i64, limit: Duration) -> bool {
        let copy = self.lock();
        let (copy, _) = self
            .moved
            .wait_timeout_while(copy, limit, |c| c.revision < revision)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        copy.revision >= revision
    }

    /// A receiver of the copy's revision, to wait on it in async code.
    pub(super) fn subscribe(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    fn relative(prefix: &str, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(prefix).map(str::to_owned)
    }

    /// Reads everything under `prefix` at one revision and replaces the copy with it.
    pub(super) async fn list(&self, client: &EtcdClient, prefix: &str) -> Result<i64, String> {
        let reply = client
            .range(pb::RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: range_end(prefix.as_bytes()),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let revision = reply.header.map_or(0, |h| h.revision);
        let entries = reply
            .kvs
            .into_iter()
            .filter_map(|kv| Some((Self::relative(prefix, &kv.key)?, kv.value)))
            .collect();
        self.update(|copy| {
            copy.entries = entries;
            copy.revision = revision;
            copy.trouble = None;
        });
        Ok(revision)
    }

    /// Keeps the copy current until the task is dropped: watches from the copy's revision on, and
    /// lists everything again when the history it needs was compacted away.
    pub(super) async fn follow(self: Arc<Self>, client: EtcdClient, prefix: String) {
        loop {
            let from = self.read(|c| c.revision) + 1;
            let create = pb::WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: range_end(prefix.as_bytes()),
                start_revision: from,
                progress_notify: true,
                ..Default::default()
            };
            let trouble = match client.watch(create).await {
                Ok(mut stream) => self.consume(&mut stream, &prefix, &client).await,
                Err(error) => error.to_string(),
            };
            tracing::debug!(%trouble, "the store's watch stopped; watching again");
            self.update(|copy| copy.trouble = Some(trouble));
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Applies the watch's events until it fails; why it did.
    async fn consume(
        &self,
        stream: &mut tonic::Streaming<pb::WatchResponse>,
        prefix: &str,
        client: &EtcdClient,
    ) -> String {
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return "the watch stream ended".to_owned(),
                Err(status) => return format!("watch: {}", status.message()),
            };
            if response.compact_revision > 0 || response.canceled {
                // The history from our revision is gone: start over from a full read.
                if let Err(error) = self.list(client, prefix).await {
                    return error;
                }
                return format!("watch canceled: {}", response.cancel_reason);
            }
            // Only a progress notice (no events, not the creation) promises that every change up to
            // its header's revision has come; otherwise the events' own revisions say how far the
            // copy is (etcd sends all events of one revision together).
            let progress = response.events.is_empty() && !response.created;
            let revision = if progress {
                response.header.as_ref().map_or(0, |h| h.revision)
            } else {
                response
                    .events
                    .iter()
                    .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
                    .max()
                    .unwrap_or(0)
            };
            self.update(|copy| {
                for event in response.events {
                    let Some(kv) = event.kv else { continue };
                    let Some(key) = Self::relative(prefix, &kv.key) else {
                        continue;
                    };
                    if event.r#type == mvccpb::event::EventType::Delete as i32 {
                        copy.entries.remove(&key);
                    } else {
                        copy.entries.insert(key, kv.value);
                    }
                }
                copy.revision = copy.revision.max(revision);
                copy.trouble = None;
            });
        }
    }
}
