//! `cafe-bench`: the hub's speed and size at 1,000 clusters (issue 7, DESIGN section 12).
//!
//! Each scenario starts its own hub as a separate process ([`hub_process`]) with certificates and a
//! redb store in a temporary directory, registers the units, starts one light agent per cluster in
//! this process ([`agents`]: the real AgentLink client over real mTLS) and measures, on this
//! process's clock, from the operator's call to what the agents received and the hub acknowledged.
//! `rollout` needs no hub: one simulated cluster and the real InPlaceSet controller.

pub mod agents;
pub mod failover;
pub mod fanout;
pub mod hub_process;
pub mod leader;
pub mod release;
pub mod report;
pub mod rollout;
pub mod topology;

use self::agents::{Agents, Receipt, Recorder};
use self::hub_process::{HubProcess, Usage, wait_connected};
use self::report::{Report, round1, round3};
use self::topology::Placement;
use anyhow::{Context as _, bail};
use cafe_proto::v1 as pb;
use cafe_proto::v1::federation_client::FederationClient;
use futures::{StreamExt as _, TryStreamExt as _};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Documents per Apply call.
pub const APPLY_BATCH: usize = 100;
/// Apply calls in flight at once when loading deployments, as a pipeline (a GitOps sync, a script)
/// sends them: the hub's writer commits the calls waiting together in one transaction.
pub const APPLY_CONCURRENCY: usize = 4;
/// The longest any scenario step may take before the run fails.
pub const STEP_DEADLINE: Duration = Duration::from_secs(300);
/// How long 1,000 agents get to dial in (TLS handshakes on 2 shared cores).
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(120);
/// How long each question to the hub may take when explaining a failed step.
const DIAGNOSIS_DEADLINE: Duration = Duration::from_secs(5);
/// How often the hub's ack counter is read while waiting for it.
pub const ACK_POLL: Duration = Duration::from_millis(5);
/// The agent link's status debounce (member-agent `link::session::REPORT_DEBOUNCE`): a status posted
/// by the cluster side leaves the agent no sooner than this.
pub const AGENT_REPORT_DEBOUNCE: Duration = Duration::from_millis(50);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 10,000 slices to 1,000 clusters: time until all are acknowledged, per-slice latency.
    Fanout,
    /// A release of every deployment: per-group coordination overhead.
    Release,
    /// Evacuate the unit every deployment uses: time until the survivors' slices are acknowledged.
    Failover,
    /// A 200-pod in-place update in one simulated cluster against the ideal.
    Rollout,
    /// Three hub replicas on three etcd members, with a playground's agents: the leader killed
    /// `--runs` times; the time until another leads and until every agent is connected to it.
    Leader,
    /// All of the above but `leader`, one after the other.
    All,
}

impl Scenario {
    /// The scenarios `self` stands for, in order.
    pub fn expand(self) -> Vec<Scenario> {
        match self {
            Self::All => vec![Self::Fanout, Self::Release, Self::Failover, Self::Rollout],
            one => vec![one],
        }
    }
}

/// The sizes and the hub executable.
#[derive(Debug, Clone)]
pub struct Options {
    /// Member clusters, one unit each.
    pub clusters: usize,
    /// CafeDeployments.
    pub deployments: usize,
    /// Units each deployment runs in.
    pub units_per_deployment: usize,
    /// Pods of the rollout scenario's InPlaceSet.
    pub pods: usize,
    /// The executable run as `EXE hub serve ...` (cafe-playground).
    pub hub_binary: PathBuf,
    /// The hub's store.
    pub store: hub_process::BenchStore,
    /// Runs of the scenarios that repeat a measurement (`leader`).
    pub runs: usize,
}

impl Options {
    /// Refuses sizes the topology cannot place.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.units_per_deployment == 0 || self.units_per_deployment > self.clusters {
            bail!(
                "--units-per-deployment must be between 1 and --clusters ({})",
                self.clusters
            );
        }
        if self.clusters.min(topology::UNITS_PER_REGION) < self.units_per_deployment {
            bail!("a region must hold at least --units-per-deployment units");
        }
        if self.deployments == 0 || self.pods == 0 {
            bail!("--deployments and --pods must be at least 1");
        }
        Ok(())
    }

    /// Slices the deployments make.
    pub fn slices(&self) -> usize {
        self.deployments * self.units_per_deployment
    }
}

/// Runs one scenario.
pub async fn run(scenario: Scenario, options: &Options) -> anyhow::Result<Report> {
    options.validate()?;
    let load = load_average();
    let mut report = match scenario {
        Scenario::Fanout => fanout::run(options).await?,
        Scenario::Release => release::run(options).await?,
        Scenario::Failover => failover::run(options).await?,
        Scenario::Rollout => rollout::run(options).await?,
        Scenario::Leader => leader::run(options).await?,
        Scenario::All => bail!("`all` is run scenario by scenario"),
    };
    if scenario != Scenario::Rollout && scenario != Scenario::Leader {
        report.set("store", options.store.as_str());
    }
    report.set(
        "loadAverageBefore",
        load.map_or(serde_json::Value::Null, round1),
    );
    Ok(report)
}

/// The 1-minute load average, to note how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A hub with every unit registered and a light agent per cluster connected.
pub struct World {
    /// The hub process.
    pub hub: HubProcess,
    /// The agents.
    pub agents: Agents,
    /// An admin client.
    pub client: FederationClient<Channel>,
}

impl World {
    /// Starts the hub, registers `options.clusters` units and connects their agents.
    pub async fn start(options: &Options) -> anyhow::Result<Self> {
        let hub = HubProcess::start(&options.hub_binary, options.store).await?;
        let mut client = hub.admin().await?;
        for batch in topology::unit_documents(options.clusters).chunks(APPLY_BATCH * 10) {
            apply(&mut client, batch.to_vec())
                .await
                .context("cannot register the units")?;
        }
        let ca = cafe_federation::tls::load_ca(&hub.pki)?;
        let agents = Agents::start(&ca, &hub.url(), &topology::clusters(options.clusters))?;
        let connected = wait_connected(&mut client, options.clusters, CONNECT_DEADLINE).await;
        let world = Self {
            hub,
            agents,
            client,
        };
        if let Err(error) = connected {
            bail!("{error:#}\n{}", world.diagnosis().await);
        }
        Ok(world)
    }

    /// The agents' recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.agents.recorder
    }

    /// Applies every deployment at `image` in batches; returns when each deployment's Apply call
    /// started, by deployment index.
    /// Applies every deployment, `concurrency` calls of [`APPLY_BATCH`] documents in flight; returns
    /// when each document's call started.
    pub async fn apply_deployments(
        &mut self,
        options: &Options,
        placement: Placement,
        image: &str,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Instant>> {
        let documents = topology::deployment_documents(
            options.deployments,
            options.units_per_deployment,
            options.clusters,
            placement,
            image,
        );
        // Each call's start time, for every document of the call, in document order.
        let calls = documents.chunks(APPLY_BATCH).map(|batch| {
            let mut client = self.client.clone();
            let batch = batch.to_vec();
            async move {
                let at = Instant::now();
                let count = batch.len();
                apply(&mut client, batch).await?;
                anyhow::Ok(std::iter::repeat_n(at, count))
            }
        });
        let done: Vec<_> = futures::stream::iter(calls)
            .buffered(concurrency.max(1))
            .try_collect()
            .await?;
        Ok(done.into_iter().flatten().collect())
    }

    /// Applies the deployments and waits until every slice is delivered and acknowledged.
    pub async fn settle_deployments(
        &mut self,
        options: &Options,
        placement: Placement,
    ) -> anyhow::Result<()> {
        let acks = self.hub.acks().await?;
        let before = self.recorder().count();
        self.apply_deployments(options, placement, topology::IMAGE_V1, APPLY_CONCURRENCY)
            .await?;
        self.wait_receipts(before + options.slices()).await?;
        self.wait_acks(acks + options.slices() as u64).await
    }

    /// Waits until the agents received `count` slice generations in total.
    pub async fn wait_receipts(&self, count: usize) -> anyhow::Result<()> {
        if tokio::time::timeout(STEP_DEADLINE, self.recorder().wait_count(count))
            .await
            .is_err()
        {
            bail!(
                "the agents received {} of {count} slices within {STEP_DEADLINE:?}\n{}",
                self.recorder().count(),
                self.diagnosis().await
            );
        }
        Ok(())
    }

    /// Waits until the hub has received `count` acks in total.
    pub async fn wait_acks(&self, count: u64) -> anyhow::Result<()> {
        if let Err(error) = self.hub.wait_acks(count, ACK_POLL, STEP_DEADLINE).await {
            bail!("{error:#}\n{}", self.diagnosis().await);
        }
        Ok(())
    }

    /// What the hub and the agents say, for the error of a step that did not finish.
    pub async fn diagnosis(&self) -> String {
        let mut lines = Vec::new();
        let mut per_cluster: std::collections::BTreeMap<String, usize> =
            topology::clusters(self.agents.clusters())
                .into_iter()
                .map(|c| (c, 0))
                .collect();
        for receipt in self.recorder().receipts() {
            *per_cluster.entry(receipt.cluster).or_default() += 1;
        }
        lines.push(format!("receipts per cluster: {per_cluster:?}"));
        // The hub may be the one stuck: every question to it gets a few seconds.
        let sent = within(self.hub.sent()).await;
        let acked = within(self.hub.acks()).await;
        lines.push(format!("hub counters: sent {sent:?}, acked {acked:?}"));
        let mut client = self.client.clone();
        let list = within(async move {
            Ok(client
                .list_clusters(pb::ListClustersRequest {})
                .await?
                .into_inner())
        })
        .await;
        match list {
            Ok(list) => {
                let states: Vec<String> = list
                    .clusters
                    .iter()
                    .map(|c| format!("{}={} ({} slices)", c.name, c.state, c.slices))
                    .collect();
                lines.push(format!("hub's clusters: {}", states.join(" ")));
            }
            Err(error) => lines.push(format!("ListClusters failed: {error:#}")),
        }
        lines.push(format!("hub log tail:\n{}", self.hub.log_tail(60)));
        lines.join("\n")
    }

    /// Feeds every receipt from index `from` on to `done` as they arrive, until it returns true.
    pub async fn wait_until(
        &self,
        from: usize,
        mut done: impl FnMut(&Receipt) -> bool,
    ) -> anyhow::Result<()> {
        let mut seen = from;
        let mut changes = self.recorder().subscribe();
        let until = Instant::now() + STEP_DEADLINE;
        loop {
            for receipt in self.recorder().receipts_since(seen) {
                seen += 1;
                if done(&receipt) {
                    return Ok(());
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the agents' recorder is gone"),
                Err(_) => bail!(
                    "the expected slices did not arrive within {STEP_DEADLINE:?}\n{}",
                    self.diagnosis().await
                ),
            }
        }
    }

    /// Stops the agents (first, so that they do not count as the hub's) and then the hub, returning
    /// the hub's final usage.
    pub async fn stop(mut self) -> anyhow::Result<Usage> {
        self.hub.check_alive()?;
        let usage = self.hub.usage()?;
        self.agents.stop().await;
        self.hub.stop().await;
        Ok(usage)
    }
}

/// `what`, or an error once it has taken longer than [`DIAGNOSIS_DEADLINE`].
async fn within<T>(what: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(DIAGNOSIS_DEADLINE, what)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {DIAGNOSIS_DEADLINE:?}")))
}

/// Applies documents; fails on any refusal.
pub async fn apply(
    client: &mut FederationClient<Channel>,
    documents: Vec<String>,
) -> anyhow::Result<()> {
    client
        .apply(pb::ApplyRequest {
            documents_json: documents,
            dry_run: false,
        })
        .await
        .context("Apply failed")?;
    Ok(())
}

/// The hub's figures common to every scenario: peak memory over its life, CPU seconds of the
/// measured phase and of its whole life, and CPU per slice.
pub fn hub_fields(report: &mut Report, before: Usage, after: Usage, slices: usize) {
    let measured = after.cpu_seconds - before.cpu_seconds;
    report.set("hubPeakRssMiB", round1(after.peak_rss_mib));
    report.set("hubCpuSeconds", round3(measured));
    report.set("hubCpuSecondsTotal", round3(after.cpu_seconds));
    // Every slice an agent received is one slice change the hub decided, committed and sent.
    report.set(
        "hubCpuUsPerSliceChange",
        round1(measured * 1_000_000.0 / slices.max(1) as f64),
    );
}

/// The deployment index of a slice id `bench/dNNNN@unit`.
pub fn deployment_index(id: &str) -> Option<usize> {
    topology::slice_deployment(id)
        .strip_prefix(topology::NAMESPACE)?
        .strip_prefix("/d")?
        .parse()
        .ok()
}

/// Prints reports as JSON lines or tables.
pub fn render(report: &Report, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(serde_json::to_string(report)?);
    }
    let name = report
        .get("scenario")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    Ok(format!("== {name}\n{}", report.table()))
}
