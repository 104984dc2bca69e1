//! The configuration of one simulated cluster.

use std::time::Duration;

/// Default number of simulated nodes.
pub const DEFAULT_NODES: usize = 3;
/// Default container start delay: long enough to observe `ContainerCreating`, short enough for fast tests.
pub const DEFAULT_START_DELAY: Duration = Duration::from_millis(200);
/// Default factor applied to pod grace periods: 30 s of `terminationGracePeriodSeconds` last 300 ms.
pub const DEFAULT_GRACE_PERIOD_SCALE: f64 = 0.01;
/// Default time a load balancer takes to confirm that a target is deregistered.
pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_millis(200);
/// Default lag between a pod change and the load balancer acting on it (endpoint propagation).
pub const DEFAULT_LB_REACTION_DELAY: Duration = Duration::from_millis(100);
/// Default number of watch events kept for watches that resume from an older resourceVersion.
pub const DEFAULT_WATCH_HISTORY: usize = 10_000;
/// Default interval of watch bookmarks (a real apiserver sends one about every minute).
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Default time a crash-looping container stays up before crashing again.
pub const DEFAULT_CRASH_INTERVAL: Duration = Duration::from_millis(300);

/// How to start a simulated cluster. `SimConfig::new("name")` gives sensible defaults; the `with_*`
/// helpers change one field each.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Cluster name (also the kubeconfig's cluster, user and context name).
    pub name: String,
    /// TCP port on 127.0.0.1; 0 picks a free port.
    pub port: u16,
    /// Number of simulated nodes, named `{name}-node-{i}`.
    pub nodes: usize,
    /// Zones spread round-robin over the nodes as `topology.kubernetes.io/zone`; empty means one zone
    /// named `{name}-zone-a`.
    pub zones: Vec<String>,
    /// Time from a container's start to it being ready (overridable per pod with the
    /// [`crate::START_DELAY_ANNOTATION`] annotation).
    pub start_delay: Duration,
    /// One simulated load balancer per entry; each uses the entry as its pod finalizer.
    pub traffic_finalizers: Vec<String>,
    /// Factor applied to a pod's grace period before the kubelet finishes deleting it.
    pub grace_period_scale: f64,
    /// Time between a balancer deciding to deregister a pod and it removing its finalizer.
    pub deregistration_delay: Duration,
    /// Time between a pod stopping to qualify for traffic and its balancer noticing.
    pub lb_reaction_delay: Duration,
    /// Number of watch events retained; a watch from an older resourceVersion gets 410 Expired.
    pub watch_history: usize,
    /// Time a crash-looping container runs before it crashes again (also the unit of its back-off and
    /// of the image-pull error cycle).
    pub crash_interval: Duration,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// How the application answers requests to the pods of each image (see
    /// [`crate::application`]); images not listed answer 200 at once.
    pub behaviours: std::collections::BTreeMap<String, crate::Behaviour>,
}

impl SimConfig {
    /// A configuration with defaults for everything but the name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Sets the port (0 picks a free one).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the number of nodes.
    pub fn with_nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Sets the zones spread over the nodes.
    pub fn with_zones<I, S>(mut self, zones: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.zones = zones.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the container start delay.
    pub fn with_start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }

    /// Adds a simulated load balancer using `finalizer`.
    pub fn with_traffic_finalizer(mut self, finalizer: impl Into<String>) -> Self {
        self.traffic_finalizers.push(finalizer.into());
        self
    }

    /// Sets the grace period scale.
    pub fn with_grace_period_scale(mut self, scale: f64) -> Self {
        self.grace_period_scale = scale;
        self
    }

    /// Sets the deregistration delay.
    pub fn with_deregistration_delay(mut self, delay: Duration) -> Self {
        self.deregistration_delay = delay;
        self
    }

    /// Sets the balancers' reaction delay.
    pub fn with_lb_reaction_delay(mut self, delay: Duration) -> Self {
        self.lb_reaction_delay = delay;
        self
    }

    /// Sets the number of retained watch events.
    pub fn with_watch_history(mut self, events: usize) -> Self {
        self.watch_history = events;
        self
    }

    /// Sets the bookmark interval.
    pub fn with_bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// The zone names actually used (see [`SimConfig::zones`]).
    pub fn effective_zones(&self) -> Vec<String> {
        if self.zones.is_empty() {
            vec![format!("{}-zone-a", self.name)]
        } else {
            self.zones.clone()
        }
    }

    /// Checks the values that would make the simulator misbehave.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("name must not be empty".into());
        }
        if !self.grace_period_scale.is_finite() || self.grace_period_scale < 0.0 {
            return Err("grace_period_scale must be a finite, non-negative number".into());
        }
        if self.bookmark_interval.is_zero() {
            return Err("bookmark_interval must not be zero".into());
        }
        if self.watch_history == 0 {
            return Err("watch_history must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            name: "sim".into(),
            port: 0,
            nodes: DEFAULT_NODES,
            zones: Vec::new(),
            start_delay: DEFAULT_START_DELAY,
            traffic_finalizers: Vec::new(),
            grace_period_scale: DEFAULT_GRACE_PERIOD_SCALE,
            deregistration_delay: DEFAULT_DEREGISTRATION_DELAY,
            lb_reaction_delay: DEFAULT_LB_REACTION_DELAY,
            watch_history: DEFAULT_WATCH_HISTORY,
            crash_interval: DEFAULT_CRASH_INTERVAL,
            bookmark_interval: DEFAULT_BOOKMARK_INTERVAL,
            behaviours: std::collections::BTreeMap::new(),
        }
    }
}
