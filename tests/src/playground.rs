//! The playground: a hub, several member clusters and their agents on one machine, with real mTLS
//! between them. The hub and the agents run as separate processes (the same code as `cafe-hub` and
//! `cafe-agent`, through `cafe-playground hub|agent`), so that tests can kill and restart them.
//!
//! A member cluster is cafe-sim in-process ([`Backend::Sim`], the default) or a real control plane
//! whose nodes cafe-sim simulates ([`Backend::Kube`]). On `kube` the agent is installed as
//! `deploy/` says: the CRD and the agent's namespace, ServiceAccount and RBAC applied by the
//! administrator, and the agent running with a token of its ServiceAccount.

use anyhow::{Context as _, bail};
use cafe_federation::tls::{CafectlConfig, InitOptions, Role, config_file_name, init, issue_agent};
use cafe_proto::v1 as pb;
use cafe_proto::v1::federation_client::FederationClient;
use cafe_sim::SimConfig;
use cafe_sim::member::{AgentAccess, Backend, MemberCluster, Members};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// The traffic finalizer every playground cluster's simulated load balancer owns.
pub const LB_FINALIZER: &str = "traffic.cafe.io/lb";
/// How long a simulated container takes to start, by default.
pub const DEFAULT_START_DELAY: Duration = Duration::from_millis(300);
/// How long the hub and the agents get to come up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How often a condition is checked while waiting.
pub const POLL: Duration = Duration::from_millis(50);
/// The InPlaceSet CRD, as `deploy/` ships it.
pub const CRD_YAML: &str = include_str!("../../deploy/crds/inplaceset.yaml");
/// The agent's namespace, as `deploy/` ships it.
pub const AGENT_NAMESPACE_YAML: &str = include_str!("../../deploy/agent/namespace.yaml");
/// The agent's ServiceAccount and least-privilege RBAC, as `deploy/` ships them.
pub const AGENT_RBAC_YAML: &str = include_str!("../../deploy/agent/rbac.yaml");

/// One logical unit, served by its own member cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPlan {
    /// The unit's name.
    pub unit: String,
    /// Its region.
    pub region: String,
    /// Its member cluster (also the datacenter).
    pub cluster: String,
}

impl UnitPlan {
    fn new(unit: &str, region: &str, cluster: &str) -> Self {
        Self {
            unit: unit.to_owned(),
            region: region.to_owned(),
            cluster: cluster.to_owned(),
        }
    }
}

/// Four units in two regions, one cluster each: the topology of `deploy/examples/units.yaml`.
pub fn default_units() -> Vec<UnitPlan> {
    vec![
        UnitPlan::new("sh-az1", "cn-shanghai", "sh-dc1"),
        UnitPlan::new("sh-az2", "cn-shanghai", "sh-dc2"),
        UnitPlan::new("hz-az1", "cn-hangzhou", "hz-dc1"),
        UnitPlan::new("hz-az2", "cn-hangzhou", "hz-dc2"),
    ]
}

/// How to build a playground.
#[derive(Debug, Clone)]
pub struct PlaygroundOptions {
    /// Where certificates, kubeconfigs, the hub's data and logs go.
    pub dir: PathBuf,
    /// The `cafe-playground` executable, run as `hub` and `agent`.
    pub binary: PathBuf,
    /// The units.
    pub units: Vec<UnitPlan>,
    /// Simulated container start delay.
    pub start_delay: Duration,
    /// Extra `cafe-hub serve` flags, e.g. `--auto-failover`.
    pub hub_args: Vec<String>,
    /// What runs the member clusters.
    pub backend: Backend,
    /// Hub replicas: 1 runs one hub on redb; more run that many on a 3-member etcd cluster.
    pub hubs: usize,
    /// Replicas whose etcd connections go through a [`FaultProxy`] the test can cut.
    pub proxied_hubs: Vec<usize>,
    /// The replicas' lease TTL (etcd only).
    pub lease_ttl_seconds: u64,
    /// How images behave in the simulated application: `(image, cluster or every cluster, how)`.
    pub behaviours: Vec<PlacedBehaviour>,
    /// Start a Prometheus server scraping every cluster (`DIR/prometheus.url`).
    pub prometheus: bool,
    /// Agent replicas per cluster: more than one run with `--leader-elect` on the Lease
    /// `cafe-system/cafe-agent`, identities `CLUSTER-agent-0`, `CLUSTER-agent-1`, ...
    pub agent_replicas: usize,
}

/// A behaviour of one image, in one cluster or in all.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedBehaviour {
    /// The image.
    pub image: String,
    /// The cluster; `None`: every cluster.
    pub cluster: Option<String>,
    /// How its pods answer.
    pub behaviour: cafe_sim::Behaviour,
}

/// Parses `IMAGE[@CLUSTER]=errorRatio:0.08,latencyMs:20`. An `@` followed by a name without `:`
/// or `/` names a cluster; an image digest (`@sha256:...`) does not.
pub fn parse_placed_behaviour(text: &str) -> Result<PlacedBehaviour, String> {
    let (target, behaviour) = cafe_sim::parse_behaviour(text)?;
    let (image, cluster) = match target.rsplit_once('@') {
        Some((image, cluster)) if !cluster.contains([':', '/']) && !cluster.is_empty() => {
            (image.to_owned(), Some(cluster.to_owned()))
        }
        _ => (target, None),
    };
    Ok(PlacedBehaviour {
        image,
        cluster,
        behaviour,
    })
}

impl PlaygroundOptions {
    /// The default topology in `dir`.
    pub fn new(dir: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            binary: binary.into(),
            units: default_units(),
            start_delay: DEFAULT_START_DELAY,
            hub_args: Vec::new(),
            backend: Backend::Sim,
            hubs: 1,
            proxied_hubs: Vec::new(),
            lease_ttl_seconds: cafe_federation::store::etcd::election::DEFAULT_LEASE_TTL.as_secs(),
            behaviours: Vec::new(),
            prometheus: false,
            agent_replicas: 1,
        }
    }

    /// The same, with `hubs` replicas.
    pub fn with_hubs(mut self, hubs: usize) -> Self {
        self.hubs = hubs;
        self
    }

    /// The same, on `backend`.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
}

/// One member cluster of the playground.
#[derive(Debug)]
pub struct PlaygroundCluster {
    /// The cluster.
    pub cluster: MemberCluster,
    /// Its administrator's kubeconfig file.
    pub kubeconfig: PathBuf,
    /// The kubeconfig file its agent runs with.
    pub agent_kubeconfig: PathBuf,
    /// Its agent's certificate bundle.
    pub tls_dir: PathBuf,
    install_crd: bool,
    /// Its agents, by replica.
    agents: Vec<Option<Child>>,
}

/// One entry of `DIR/clusters.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterEntry {
    /// The cluster's name.
    pub name: String,
    /// `sim` or `kube`.
    pub backend: String,
    /// The administrator's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The simulation endpoint: `/sim/v1/traffic`, `/sim/v1/faults`.
    pub control: String,
}

/// A running playground.
#[derive(Debug)]
pub struct Playground {
    /// Its directory.
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT` of the first replica.
    pub hub_url: String,
    /// Every replica's URL.
    pub hub_urls: Vec<String>,
    /// The etcd cluster of several replicas.
    pub etcd: Option<cafe_sim::control_plane::etcd::EtcdCluster>,
    /// The fault proxies of [`PlaygroundOptions::proxied_hubs`], by replica.
    pub proxies: BTreeMap<usize, Vec<crate::fault_proxy::FaultProxy>>,
    /// The units.
    pub units: Vec<UnitPlan>,
    /// The clusters by name.
    pub clusters: BTreeMap<String, PlaygroundCluster>,
    /// What runs them.
    pub backend: Backend,
    /// The Prometheus server of [`PlaygroundOptions::prometheus`].
    pub prometheus: Option<crate::monitoring::Prometheus>,
    /// The webhook gate over every cluster's application check (`DIR/check.url`).
    pub check_gate: crate::monitoring::CheckGate,
    members: Option<Members>,
    binary: PathBuf,
    hub_ports: Vec<u16>,
    hub_args: Vec<String>,
    hubs: Vec<Option<Child>>,
    lease_ttl_seconds: u64,
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let path = logs.join(format!("{name}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

impl Playground {
    /// Starts everything and registers the units with the hub. Returns once every agent is connected.
    pub async fn start(options: PlaygroundOptions) -> anyhow::Result<Self> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir)?;
        // Each hub replica keeps its port across restarts.
        let replicas = options.hubs.max(1);
        let mut hub_ports = Vec::with_capacity(replicas);
        for _ in 0..replicas {
            hub_ports.push(cafe_sim::control_plane::free_port()?);
        }
        let hub_urls: Vec<String> = hub_ports
            .iter()
            .map(|port| format!("https://127.0.0.1:{port}"))
            .collect();
        let hub_url = hub_urls[0].clone();
        let pki = dir.join("pki");
        let mut init_options = InitOptions::new(&pki);
        init_options.hub_url = hub_url.clone();
        init_options.force = true;
        init(&init_options).context("cannot create the playground's certificates")?;
        for role in [Role::Admin, Role::Operator, Role::Viewer] {
            let name = config_file_name(role);
            let source = pki.join(&name);
            let mut config = CafectlConfig::load(&source)?;
            if replicas > 1 {
                config.hub.clear();
                config.hubs.clone_from(&hub_urls);
            }
            cafe_federation::tls::write_cafectl_config(&dir.join(&name), &config)?;
        }
        let kubeconfigs = dir.join("kubeconfigs");
        std::fs::create_dir_all(&kubeconfigs)?;
        let members = Members::new(options.backend, &dir)
            .await
            .with_context(|| format!("cannot start the {} backend", options.backend))?;
        let mut clusters = BTreeMap::new();
        for placed in &options.behaviours {
            if let Some(cluster) = &placed.cluster
                && !options.units.iter().any(|u| &u.cluster == cluster)
            {
                bail!(
                    "--behaviour {}@{cluster}: no cluster {cluster} in the playground",
                    placed.image
                );
            }
        }
        for plan in &options.units {
            let cluster = cafe_federation::names::ClusterName::new(plan.cluster.clone())?;
            let bundle = issue_agent(&pki, &cluster, None)?;
            let mut config = SimConfig::new(&plan.cluster)
                .with_zones([plan.unit.clone()])
                .with_nodes(3)
                .with_start_delay(options.start_delay)
                .with_traffic_finalizer(LB_FINALIZER);
            for placed in &options.behaviours {
                if placed.cluster.as_ref().is_none_or(|c| c == &plan.cluster) {
                    config
                        .behaviours
                        .insert(placed.image.clone(), placed.behaviour);
                }
            }
            let member = members
                .start(config)
                .await
                .with_context(|| format!("cannot start member cluster {}", plan.cluster))?;
            let AgentAccess {
                kubeconfig: agent_kubeconfig,
                install_crd,
            } = member
                .prepare_agent(CRD_YAML, &[AGENT_NAMESPACE_YAML, AGENT_RBAC_YAML])
                .await
                .with_context(|| format!("cannot install the agent in {}", plan.cluster))?;
            if options.backend == Backend::Sim {
                // A real cluster gets it with the RBAC; the agents' Lease lives in it.
                member
                    .apply_yaml(AGENT_NAMESPACE_YAML)
                    .await
                    .with_context(|| {
                        format!("cannot create the agent's namespace in {}", plan.cluster)
                    })?;
            }
            let kubeconfig = kubeconfigs.join(format!("{}.yaml", plan.cluster));
            std::fs::write(&kubeconfig, member.kubeconfig_yaml())?;
            let agent_path = kubeconfigs.join(format!("{}-agent.yaml", plan.cluster));
            std::fs::write(&agent_path, agent_kubeconfig)?;
            clusters.insert(
                plan.cluster.clone(),
                PlaygroundCluster {
                    cluster: member,
                    kubeconfig,
                    agent_kubeconfig: agent_path,
                    tls_dir: bundle.dir,
                    install_crd,
                    agents: (0..options.agent_replicas.max(1)).map(|_| None).collect(),
                },
            );
        }
        let entries: Vec<ClusterEntry> = clusters
            .iter()
            .map(|(name, c)| ClusterEntry {
                name: name.clone(),
                backend: options.backend.to_string(),
                kubeconfig: c.kubeconfig.clone(),
                control: c.cluster.control_url(),
            })
            .collect();
        std::fs::write(
            dir.join("clusters.json"),
            serde_json::to_string_pretty(&entries)? + "\n",
        )?;
        let controls: BTreeMap<String, String> = entries
            .iter()
            .map(|e| (e.name.clone(), e.control.clone()))
            .collect();
        let check_gate = crate::monitoring::CheckGate::start(controls.clone()).await?;
        std::fs::write(dir.join("check.url"), format!("{}\n", check_gate.url))?;
        let prometheus = if options.prometheus {
            let prometheus =
                crate::monitoring::Prometheus::start(&dir.join("prometheus"), &controls).await?;
            std::fs::write(dir.join("prometheus.url"), format!("{}\n", prometheus.url))?;
            Some(prometheus)
        } else {
            None
        };
        let (etcd, proxies) = if replicas > 1 {
            let etcd = cafe_sim::control_plane::etcd::EtcdCluster::start(dir.join("etcd"), 3)
                .await
                .context("cannot start etcd (build it with scripts/control-plane.sh build)")?;
            let mut proxies = BTreeMap::new();
            for replica in &options.proxied_hubs {
                let mut list = Vec::new();
                for port in etcd.client_ports() {
                    list.push(crate::fault_proxy::FaultProxy::start(port).await?);
                }
                proxies.insert(*replica, list);
            }
            (Some(etcd), proxies)
        } else {
            (None, BTreeMap::new())
        };
        let mut playground = Self {
            dir,
            hub_url,
            hub_urls,
            etcd,
            proxies,
            units: options.units,
            clusters,
            backend: options.backend,
            prometheus,
            check_gate,
            members: Some(members),
            binary: options.binary,
            hub_ports,
            hub_args: options.hub_args,
            hubs: (0..replicas).map(|_| None).collect(),
            lease_ttl_seconds: options.lease_ttl_seconds,
        };
        playground.start_hub().await?;
        let names: Vec<String> = playground.clusters.keys().cloned().collect();
        for name in &names {
            playground.start_agent(name)?;
        }
        playground.wait_connected(&names, true).await?;
        playground.register_units().await?;
        Ok(playground)
    }

    /// The cafectl config of `role` (admin, operator or viewer).
    pub fn cafectl_config(&self, role: Role) -> PathBuf {
        self.dir.join(config_file_name(role))
    }

    /// Starts every hub replica that is not running, and waits until one leads and every one
    /// answers.
    pub async fn start_hub(&mut self) -> anyhow::Result<()> {
        // Replica 0 leads first, so that a test knows which one does.
        if self.hubs.len() > 1 && self.hubs.iter().all(Option::is_none) {
            self.spawn_hub(0)?;
            let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
            while self
                .replica_info(0)
                .await
                .is_none_or(|i| i.role != "Leader")
            {
                if self.hub_exited(0) || tokio::time::Instant::now() > deadline {
                    bail!(
                        "hub replica 0 did not lead; see {}",
                        self.dir.join("logs/hub-0.log").display()
                    );
                }
                tokio::time::sleep(POLL).await;
            }
        }
        for replica in 0..self.hubs.len() {
            if self.hubs[replica].is_none() {
                self.spawn_hub(replica)?;
            }
        }
        self.wait_hubs().await
    }

    /// Starts hub replica `replica` (again, after [`Playground::kill_hub_replica`]).
    pub fn spawn_hub(&mut self, replica: usize) -> anyhow::Result<()> {
        let name = if self.hubs.len() > 1 {
            format!("hub-{replica}")
        } else {
            "hub".to_owned()
        };
        let log = log_file(&self.dir, &name)?;
        let mut command = Command::new(&self.binary);
        command
            .args(["hub", "serve", "--listen"])
            .arg(format!("127.0.0.1:{}", self.hub_ports[replica]))
            .arg("--tls-dir")
            .arg(self.dir.join("pki"));
        match &self.etcd {
            Some(etcd) => {
                let endpoints = match self.proxies.get(&replica) {
                    Some(proxies) => proxies.iter().map(|p| p.url()).collect::<Vec<_>>(),
                    None => etcd.urls(),
                };
                command
                    .args(["--store", "etcd", "--etcd-endpoints"])
                    .arg(endpoints.join(","))
                    .arg("--advertise-url")
                    .arg(&self.hub_urls[replica])
                    .arg("--lease-ttl-seconds")
                    .arg(self.lease_ttl_seconds.to_string());
            }
            None => {
                command.arg("--data-dir").arg(self.dir.join("hub-data"));
            }
        }
        let child = command
            .args(&self.hub_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the hub")?;
        self.hubs[replica] = Some(child);
        Ok(())
    }

    /// What replica `replica` says of itself, if it answers.
    pub async fn replica_info(&self, replica: usize) -> Option<pb::ReplicaInfo> {
        let config = CafectlConfig::load(&self.cafectl_config(Role::Viewer)).ok()?;
        let channel = tonic::transport::Endpoint::from_shared(self.hub_urls[replica].clone())
            .ok()?
            .tls_config(config.client_tls_config().ok()?)
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        let mut client = pb::replica_client::ReplicaClient::new(channel);
        let reply = client.get_replica(pb::GetReplicaRequest {}).await.ok()?;
        Some(reply.into_inner())
    }

    /// The replica that leads now, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for replica in 0..self.hub_urls.len() {
            if self.hubs[replica].is_some()
                && self
                    .replica_info(replica)
                    .await
                    .is_some_and(|i| i.role == "Leader")
            {
                return Some(replica);
            }
        }
        None
    }

    /// Waits until every running replica answers and one of them leads (and serves).
    async fn wait_hubs(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
        loop {
            let mut answering = 0;
            for replica in 0..self.hubs.len() {
                if self.hubs[replica].is_some() && self.replica_info(replica).await.is_some() {
                    answering += 1;
                }
            }
            let running = self.hubs.iter().filter(|h| h.is_some()).count();
            if answering == running
                && let Ok(mut client) = self.client(Role::Viewer).await
                && client
                    .list_clusters(pb::ListClustersRequest {})
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            for (replica, hub) in self.hubs.iter_mut().enumerate() {
                if let Some(child) = hub.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    // The directory is often a test's temporary one, gone with the failure:
                    // the end of the replica's log says why it stopped.
                    let name = if self.hubs.len() > 1 {
                        format!("hub-{replica}")
                    } else {
                        "hub".to_owned()
                    };
                    let log =
                        std::fs::read_to_string(self.dir.join("logs").join(format!("{name}.log")))
                            .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(8).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    bail!(
                        "hub replica {replica} exited with {status}; see {}; its log ends:\n{}",
                        self.dir.join("logs").display(),
                        tail.join("\n")
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the hub did not answer within {STARTUP_DEADLINE:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Replaces the extra `cafe-hub serve` flags of the next starts.
    pub fn set_hub_args(&mut self, args: Vec<String>) {
        self.hub_args = args;
    }

    /// Kills every hub replica with SIGKILL, as a crash would.
    pub async fn kill_hub(&mut self) -> anyhow::Result<()> {
        for replica in 0..self.hubs.len() {
            self.kill_hub_replica(replica).await?;
        }
        Ok(())
    }

    /// Kills hub replica `replica` with SIGKILL.
    pub async fn kill_hub_replica(&mut self, replica: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.hubs[replica].take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Whether hub replica `replica` has exited (it does when it loses the lead); forgets it then.
    pub fn hub_exited(&mut self, replica: usize) -> bool {
        match self.hubs[replica].as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) | None => {
                self.hubs[replica] = None;
                true
            }
            _ => false,
        }
    }

    /// Starts the agents of `cluster` (every replica not running).
    pub fn start_agent(&mut self, cluster: &str) -> anyhow::Result<()> {
        let replicas = self
            .clusters
            .get(cluster)
            .with_context(|| format!("no cluster {cluster}"))?
            .agents
            .len();
        for replica in 0..replicas {
            self.start_agent_replica(cluster, replica)?;
        }
        Ok(())
    }

    /// The Lease identity of agent `replica` of `cluster` (with several replicas).
    pub fn agent_identity(cluster: &str, replica: usize) -> String {
        format!("{cluster}-agent-{replica}")
    }

    /// Starts agent `replica` of `cluster` unless it runs.
    pub fn start_agent_replica(&mut self, cluster: &str, replica: usize) -> anyhow::Result<()> {
        let entry = self
            .clusters
            .get(cluster)
            .with_context(|| format!("no cluster {cluster}"))?;
        let replicas = entry.agents.len();
        if entry.agents.get(replica).is_none_or(Option::is_some) {
            return Ok(());
        }
        let name = if replicas > 1 {
            Self::agent_identity(cluster, replica)
        } else {
            format!("agent-{cluster}")
        };
        let log = log_file(&self.dir, &name)?;
        let mut command = Command::new(&self.binary);
        command.args(["agent", "run"]);
        if entry.install_crd {
            command.arg("--install-crd");
        }
        if replicas > 1 {
            command
                .args(["--leader-elect", "--leader-elect-namespace", "cafe-system"])
                .args(["--leader-elect-identity", &name]);
        }
        let child = command
            .arg("--kubeconfig")
            .arg(&entry.agent_kubeconfig)
            .args(["--log-format", "json"])
            .args([
                "--hub",
                &self.hub_urls.join(","),
                "--cluster",
                cluster,
                "--tls-dir",
            ])
            .arg(&entry.tls_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the agent of {cluster}"))?;
        if let Some(slot) = self
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.agents.get_mut(replica))
        {
            *slot = Some(child);
        }
        Ok(())
    }

    /// Kills every agent of `cluster` with SIGKILL.
    pub async fn kill_agent(&mut self, cluster: &str) -> anyhow::Result<()> {
        let replicas = self.clusters.get(cluster).map_or(0, |c| c.agents.len());
        for replica in 0..replicas {
            self.kill_agent_replica(cluster, replica).await?;
        }
        Ok(())
    }

    /// Kills agent `replica` of `cluster` with SIGKILL.
    pub async fn kill_agent_replica(
        &mut self,
        cluster: &str,
        replica: usize,
    ) -> anyhow::Result<()> {
        if let Some(slot) = self
            .clusters
            .get_mut(cluster)
            .and_then(|c| c.agents.get_mut(replica))
            && let Some(mut child) = slot.take()
        {
            child.kill().await?;
        }
        Ok(())
    }

    /// Who holds the agents' Lease in `cluster` (with several replicas), as its API server says.
    pub async fn agent_lease_holder(&self, cluster: &str) -> anyhow::Result<Option<String>> {
        use k8s_openapi::api::coordination::v1::Lease;
        let entry = self
            .clusters
            .get(cluster)
            .with_context(|| format!("no cluster {cluster}"))?;
        let api: kube::Api<Lease> = kube::Api::namespaced(entry.cluster.client()?, "cafe-system");
        Ok(api
            .get_opt("cafe-agent")
            .await?
            .and_then(|lease| lease.spec)
            .and_then(|spec| spec.holder_identity)
            .filter(|holder| !holder.is_empty()))
    }

    /// Takes a whole datacenter down: its API server stops answering and its agent dies with it.
    pub async fn take_offline(&mut self, cluster: &str) -> anyhow::Result<()> {
        self.kill_agent(cluster).await?;
        let entry = self
            .clusters
            .get(cluster)
            .with_context(|| format!("no cluster {cluster}"))?;
        entry.cluster.set_offline(true)?;
        Ok(())
    }

    /// Brings a datacenter back: its API server answers again and its agent starts.
    pub fn bring_online(&mut self, cluster: &str) -> anyhow::Result<()> {
        let entry = self
            .clusters
            .get(cluster)
            .with_context(|| format!("no cluster {cluster}"))?;
        entry.cluster.set_offline(false)?;
        self.start_agent(cluster)
    }

    /// Waits until the hub sees each of `clusters` connected (or, with `false`, not connected).
    pub async fn wait_connected(&self, clusters: &[String], connected: bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(mut client) = self.client(Role::Viewer).await
                && let Ok(list) = client.list_clusters(pb::ListClustersRequest {}).await
            {
                let states: BTreeMap<String, String> = list
                    .into_inner()
                    .clusters
                    .into_iter()
                    .map(|c| (c.name, c.state))
                    .collect();
                let done = clusters
                    .iter()
                    .all(|c| (states.get(c).map(String::as_str) == Some("Connected")) == connected);
                if done {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "clusters {clusters:?} did not become connected={connected} within {STARTUP_DEADLINE:?}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the leading hub sees every cluster connected.
    pub async fn all_connected(&self) -> bool {
        let Ok(mut client) = self.client(Role::Viewer).await else {
            return false;
        };
        let Ok(list) = client.list_clusters(pb::ListClustersRequest {}).await else {
            return false;
        };
        let clusters = list.into_inner().clusters;
        clusters.len() == self.clusters.len() && clusters.iter().all(|c| c.state == "Connected")
    }

    async fn register_units(&self) -> anyhow::Result<()> {
        let documents = self
            .units
            .iter()
            .map(|u| {
                serde_json::json!({
                    "apiVersion": "cafe.io/v1alpha1",
                    "kind": "LogicalUnit",
                    "metadata": {"name": u.unit},
                    "spec": {"region": u.region, "zone": u.cluster, "cluster": u.cluster},
                })
                .to_string()
            })
            .collect();
        let mut client = self.client(Role::Admin).await?;
        client
            .apply(pb::ApplyRequest {
                documents_json: documents,
                dry_run: false,
            })
            .await?;
        Ok(())
    }

    /// A Federation client with the certificate of `role`, connected to the leading replica.
    pub async fn client(&self, role: Role) -> anyhow::Result<FederationClient<Channel>> {
        let config = CafectlConfig::load(&self.cafectl_config(role))?;
        let url = if self.hub_urls.len() > 1 {
            let leader = self.leader().await.context("no hub replica leads")?;
            self.hub_urls[leader].clone()
        } else {
            self.hub_url.clone()
        };
        let channel = tonic::transport::Endpoint::from_shared(url)?
            .tls_config(config.client_tls_config()?)?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await?;
        Ok(FederationClient::new(channel))
    }

    /// Requests sent and lost over every cluster's simulated load balancers.
    pub fn traffic(&self) -> (u64, u64) {
        self.clusters.values().fold((0, 0), |(sent, lost), c| {
            let t = c.cluster.traffic();
            (sent + t.sent, lost + t.lost)
        })
    }

    /// Makes `image` behave as `behaviour` in `cluster` (every cluster when `None`), through each
    /// cluster's `POST /sim/v1/behaviours`.
    pub async fn set_behaviour(
        &self,
        image: &str,
        cluster: Option<&str>,
        behaviour: cafe_sim::Behaviour,
    ) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "image": image,
            "errorRatio": behaviour.error_ratio,
            "latencyMs": behaviour.latency_ms,
        });
        for (name, c) in &self.clusters {
            if cluster.is_some_and(|wanted| wanted != name) {
                continue;
            }
            let url = format!("{}/sim/v1/behaviours", c.cluster.control_url());
            let answer =
                cafe_federation::http_client::post_json(&url, &body, Duration::from_secs(5))
                    .await?;
            if answer.status != 200 {
                bail!("{url} answered {}: {}", answer.status, answer.body);
            }
        }
        Ok(())
    }

    /// Stops the agents, the hub and the clusters.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.clusters.keys().cloned().collect();
        for name in names {
            let _ = self.kill_agent(&name).await;
        }
        let _ = self.kill_hub().await;
        if let Some(prometheus) = self.prometheus.take() {
            prometheus.stop().await;
        }
        for (_, cluster) in std::mem::take(&mut self.clusters) {
            cluster.cluster.shutdown().await;
        }
        drop(self.members.take());
    }
}
