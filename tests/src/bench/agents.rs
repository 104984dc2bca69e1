//! Light agents: the real AgentLink client ([`run_link`]) over real mTLS, with a cluster side that
//! records every slice it is given and reports it ready at once, so that the hub's coordination runs
//! for real while no pods exist.

use anyhow::Context as _;
use cafe_federation::names::ClusterName;
use cafe_federation::tls::{CertificateAuthority, Identity};
use cafe_member_agent::link::{
    ClusterSide, HubEndpoint, LinkConfig, LinkError, StatusBoard, run_link,
};
use cafe_proto::v1 as pb;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One slice generation as an agent received it.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// When the agent's cluster side was given it (its ready status is posted at the same moment).
    pub at: Instant,
    /// The slice's cluster.
    pub cluster: String,
    /// The slice as sent.
    pub slice: pb::Slice,
}

impl Receipt {
    /// Pods that must run the update revision.
    pub fn target(&self) -> i32 {
        self.slice.replicas - self.slice.partition
    }
}

/// Everything every light agent received, in one clock.
#[derive(Debug)]
pub struct Recorder {
    receipts: Mutex<Vec<Receipt>>,
    removals: Mutex<Vec<(Instant, String)>>,
    count: watch::Sender<usize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            receipts: Mutex::new(Vec::new()),
            removals: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only pushes happen under these locks; a panicking holder leaves a consistent vector.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    fn record(&self, cluster: &str, slice: &pb::Slice) {
        let receipt = Receipt {
            at: Instant::now(),
            cluster: cluster.to_owned(),
            slice: slice.clone(),
        };
        let count = {
            let mut receipts = lock(&self.receipts);
            receipts.push(receipt);
            receipts.len()
        };
        // Agents record from several threads: one that pushed earlier may publish its count after
        // a later one did, and must not take the count back.
        self.count
            .send_modify(|published| *published = (*published).max(count));
    }

    fn record_removal(&self, id: &str) {
        lock(&self.removals).push((Instant::now(), id.to_owned()));
    }

    /// Receipts so far.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// A copy of every receipt so far, in arrival order.
    pub fn receipts(&self) -> Vec<Receipt> {
        lock(&self.receipts).clone()
    }

    /// Receipts from index `from` on.
    pub fn receipts_since(&self, from: usize) -> Vec<Receipt> {
        lock(&self.receipts)
            .get(from..)
            .map(<[Receipt]>::to_vec)
            .unwrap_or_default()
    }

    /// Slice removals so far.
    pub fn removals(&self) -> Vec<(Instant, String)> {
        lock(&self.removals).clone()
    }

    /// Waits until `count` receipts arrived in total.
    pub async fn wait_count(&self, count: usize) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n >= count).await;
    }

    /// A receiver bumped on every receipt.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}

/// The ready status of a slice as a settled cluster would report it.
pub fn ready_status(slice: &pb::Slice) -> pb::SliceStatus {
    let updated = slice.replicas - slice.partition;
    let current = if slice.partition == 0 {
        &slice.update_revision
    } else {
        &slice.stable_revision
    };
    pb::SliceStatus {
        id: slice.id.clone(),
        observed_generation: slice.generation,
        current_revision: current.clone(),
        update_revision: slice.update_revision.clone(),
        replicas: slice.replicas,
        ready_replicas: slice.replicas,
        available_replicas: slice.replicas,
        updated_replicas: updated,
        updated_ready_replicas: updated,
        serving_replicas: slice.replicas,
        updated_serving_replicas: updated,
        problems: Vec::new(),
        ..pb::SliceStatus::default()
    }
}

/// A cluster whose every slice is ready as soon as it is written.
struct LightSide {
    cluster: String,
    board: StatusBoard,
    held: Mutex<BTreeMap<String, u64>>,
    recorder: Arc<Recorder>,
}

impl ClusterSide for LightSide {
    async fn inventory(&self) -> Result<Vec<(String, u64)>, LinkError> {
        Ok(lock(&self.held)
            .iter()
            .map(|(id, g)| (id.clone(), *g))
            .collect())
    }

    async fn apply(&self, slice: &pb::Slice) -> Result<(), LinkError> {
        lock(&self.held).insert(slice.id.clone(), slice.generation);
        self.recorder.record(&self.cluster, slice);
        self.board.post(ready_status(slice));
        Ok(())
    }

    async fn remove(&self, id: &str, _generation: u64) -> Result<(), LinkError> {
        lock(&self.held).remove(id);
        self.recorder.record_removal(id);
        Ok(())
    }
}

/// The light agents of every cluster, running until [`Agents::stop`].
#[derive(Debug)]
pub struct Agents {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    /// What they received.
    pub recorder: Arc<Recorder>,
}

impl Agents {
    /// Starts one agent per cluster, each with its own certificate from `ca`, dialing `url`.
    pub fn start(
        ca: &CertificateAuthority,
        url: &str,
        clusters: &[String],
    ) -> anyhow::Result<Self> {
        let recorder = Arc::new(Recorder::default());
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(clusters.len());
        for cluster in clusters {
            let name = ClusterName::new(cluster.clone())?;
            let material = ca
                .issue_client(&Identity::Agent { cluster: name })
                .with_context(|| format!("cannot issue the certificate of {cluster}"))?;
            let config = LinkConfig::new(
                cluster.clone(),
                HubEndpoint::TlsPem {
                    url: url.to_owned(),
                    ca_pem: material.ca_pem,
                    cert_pem: material.cert_pem,
                    key_pem: material.key_pem,
                },
            );
            let board = StatusBoard::default();
            let side = Arc::new(LightSide {
                cluster: cluster.clone(),
                board: board.clone(),
                held: Mutex::new(BTreeMap::new()),
                recorder: Arc::clone(&recorder),
            });
            let mut stopped = stopped.clone();
            let cluster = cluster.clone();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(error) = run_link(config, side, board, shutdown).await {
                    tracing::error!(%cluster, %error, "light agent failed");
                }
            }));
        }
        Ok(Self {
            tasks,
            stop,
            recorder,
        })
    }

    /// How many agents (clusters) run.
    pub fn clusters(&self) -> usize {
        self.tasks.len()
    }

    /// Stops every agent and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_status_runs_what_the_slice_asks_for() {
        let slice = pb::Slice {
            id: "bench/d0@u0".into(),
            generation: 7,
            replicas: 5,
            partition: 2,
            update_revision: "v2".into(),
            stable_revision: "v1".into(),
            ..pb::Slice::default()
        };
        let status = ready_status(&slice);
        assert_eq!(status.observed_generation, 7);
        assert_eq!(
            (status.ready_replicas, status.updated_ready_replicas),
            (5, 3)
        );
        assert_eq!(status.current_revision, "v1");
        assert_eq!(status.update_revision, "v2");
    }
}
