//! Leader election on an etcd lease. The leader key is the store's writer key
//! (`PREFIX/meta/writer`): a replica leads while the key holds its [`LeaderRecord`], attached to
//! its lease, and every commit of the leader is conditional on that (the fence). A replica that
//! cannot renew its lease stops leading before the lease can expire, so that two replicas never
//! act at once.

use super::EtcdStore;
use crate::hub::records::WRITER_KEY;
use crate::store::{Condition, Table};
use cafe_proto::etcd::etcdserverpb as pb;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The default lease TTL.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// What the leader key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRecord {
    /// Unique to this replica's term.
    pub id: String,
    /// Where agents and cafectl reach the leader.
    pub url: String,
    /// When it took the lead (ms since the epoch).
    pub since_ms: i64,
}

impl LeaderRecord {
    /// The record in a stored value.
    pub fn parse(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }
}

/// This replica's lead: ends when [`Leadership::lost`] resolves.
pub struct Leadership {
    /// The record.
    pub record: LeaderRecord,
    /// The condition of every commit: the leader key still holds the record.
    pub fence: Condition,
    pub(super) lease: i64,
    store: Arc<EtcdStore>,
    /// When the last renewal that etcd confirmed was sent.
    renewed: Arc<Mutex<Instant>>,
    lost: watch::Receiver<Option<String>>,
    keeper: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("record", &self.record)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Leadership {
    /// Resolves, with why, when this replica must stop acting as the leader.
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        match lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the lease keeper stopped".to_owned(),
        }
    }

    /// Gives the lead up: stops renewing and revokes the lease (its key goes with it), best
    /// effort and for 2 s at most.
    pub async fn resign(&self) {
        self.keeper.abort();
        let revoked =
            tokio::time::timeout(Duration::from_secs(2), self.store.client.revoke(self.lease))
                .await;
        if !matches!(revoked, Ok(Ok(()))) {
            tracing::warn!(
                "could not revoke the leader's lease; a successor waits for it to expire"
            );
        }
    }

    /// How long ago the last confirmed renewal was sent.
    pub fn renewed_ago(&self) -> Duration {
        self.renewed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }
}

fn leader_key(store: &EtcdStore) -> Vec<u8> {
    store.table_key(Table::Meta, WRITER_KEY)
}

impl EtcdStore {
    /// The leader's record, as the copy has it.
    pub fn leader(&self) -> Option<LeaderRecord> {
        self.leader_value().as_deref().and_then(LeaderRecord::parse)
    }

    /// Waits until this replica leads: whenever the copy shows no leader, takes a lease of `ttl`
    /// and tries to create the leader key on it.
    pub async fn campaign(self: &Arc<Self>, id: &str, url: &str, ttl: Duration) -> Leadership {
        let mut moved = self.subscribe();
        loop {
            if self.leader_value().is_none() {
                match self.try_lead(id, url, ttl).await {
                    Ok(Some(leadership)) => return leadership,
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "cannot campaign for the lead"),
                }
            }
            // The copy moves when the leader key goes; the timeout covers a watch that is down.
            let _ = tokio::time::timeout(Duration::from_secs(1), moved.changed()).await;
        }
    }

    async fn try_lead(
        self: &Arc<Self>,
        id: &str,
        url: &str,
        ttl: Duration,
    ) -> Result<Option<Leadership>, super::EtcdError> {
        let sent = Instant::now();
        let lease = self.client.grant(ttl).await?;
        let record = LeaderRecord {
            id: id.to_owned(),
            url: url.to_owned(),
            since_ms: unix_ms(),
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let request = pb::TxnRequest {
            compare: vec![super::holds(leader_key(self), None)],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: leader_key(self),
                    value: value.clone(),
                    lease: lease.id,
                    prev_kv: false,
                })),
            }],
            failure: Vec::new(),
        };
        let reply = self.client.txn(request).await?;
        if !reply.succeeded {
            let _ = self.client.revoke(lease.id).await;
            return Ok(None);
        }
        let revision = reply.header.map_or(0, |h| h.revision);
        self.note_revision(revision);
        // The new leader reads its own record (`leader()`, health) from the copy: wait for the copy
        // to hold it, so that no caller sees "no leader" from the replica that leads.
        let mut moved = self.subscribe();
        let caught_up = tokio::time::timeout(super::CATCH_UP, moved.wait_for(|r| *r >= revision));
        if !matches!(caught_up.await, Ok(Ok(_))) {
            tracing::warn!(
                revision,
                "the copy has not caught up with this replica's lead yet"
            );
        }
        let granted = Duration::from_secs(u64::try_from(lease.ttl).unwrap_or(0)).max(ttl);
        tracing::info!(lease = lease.id, ttl = ?granted, %url, "this replica leads");
        let renewed = Arc::new(Mutex::new(sent));
        let (tx, lost) = watch::channel(None);
        let keeper = tokio::spawn(keep(
            Arc::clone(self),
            lease.id,
            granted,
            value.clone(),
            revision,
            Arc::clone(&renewed),
            tx,
        ));
        Ok(Some(Leadership {
            record,
            fence: Condition {
                table: Table::Meta,
                key: WRITER_KEY.to_owned(),
                value: Some(value),
            },
            lease: lease.id,
            store: Arc::clone(self),
            renewed,
            lost,
            keeper,
        }))
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When a leader whose last confirmed renewal was sent at `renewed` must stop: well before etcd
/// can expire the lease (no earlier than `renewed + ttl`), so that its successor never overlaps it.
pub fn step_down_at(renewed: Instant, ttl: Duration) -> Instant {
    renewed + ttl.mul_f64(0.7)
}

/// Renews the lease every fifth of its TTL until the lead is lost: no confirmed renewal before
/// [`step_down_at`], the lease gone, or another record in the leader key.
async fn keep(
    store: Arc<EtcdStore>,
    lease: i64,
    ttl: Duration,
    value: Vec<u8>,
    won_at: i64,
    renewed: Arc<Mutex<Instant>>,
    lost: watch::Sender<Option<String>>,
) {
    let mut tick = tokio::time::interval(ttl / 5);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut moved = store.subscribe();
    let last = || {
        *renewed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let reason = loop {
        let deadline = step_down_at(last(), ttl);
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                break format!(
                    "etcd at {} confirmed no lease renewal for {:?}",
                    store.endpoints(),
                    last().elapsed()
                );
            }
            _ = tick.tick() => {
                let sent = Instant::now();
                match tokio::time::timeout_at(deadline, store.client.keep_alive(lease)).await {
                    Ok(Ok(left)) if left > 0 => {
                        *renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = sent;
                    }
                    Ok(Ok(_)) => break "the lease expired".to_owned(),
                    Ok(Err(error)) => tracing::warn!(%error, "cannot renew the leader's lease"),
                    // The deadline passed: the next turn says so.
                    Err(_) => {}
                }
            }
            changed = moved.changed() => {
                if changed.is_err() {
                    break "the store's copy stopped".to_owned();
                }
                let current = *moved.borrow_and_update();
                if current >= won_at && store.leader_value().as_deref() != Some(value.as_slice()) {
                    break "another replica leads".to_owned();
                }
            }
        }
    };
    tracing::error!(%reason, "this replica no longer leads");
    let _ = lost.send(Some(reason));
    // Best effort: lets a successor take over now rather than when the lease expires.
    let client = store.client.clone();
    tokio::spawn(async move {
        let _ = client.revoke(lease).await;
    });
}
