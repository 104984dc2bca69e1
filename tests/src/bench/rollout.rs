//! rollout: one simulated cluster, an InPlaceSet of 200 pods (200 ms start delay, maxUnavailable 20,
//! a traffic finalizer) updated in place by the real controller; measured time against the ideal of
//! DESIGN section 12 and the requests the simulated balancer lost. The ideal is the approach of
//! member-agent's `bench_rollout`: ceil(pods / maxUnavailable) waves, each as long as one pod's drain
//! (balancer reaction + deregistration), restart (start delay) and re-registration (one traffic
//! tick). No hub takes part, so the hub's fields are null.

use super::Options;
use super::report::{Report, ms, round3};
use anyhow::{Context as _, bail};
use cafe_member_agent::crd::{InPlaceSet, InPlaceSetSpec, LabelSelector, TrafficPolicy};
use cafe_member_agent::names::{REVISION_LABEL, SET_LABEL};
use cafe_member_agent::revision::template_revision;
use cafe_member_agent::{ControllerConfig, Metrics, ensure_crd, run_controller};
use cafe_sim::{SimCluster, SimConfig, TRAFFIC_TICK};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Pods are updated this many at a time.
pub const MAX_UNAVAILABLE: usize = 20;
/// A simulated container's start delay.
pub const START_DELAY: Duration = Duration::from_millis(200);
/// The balancer's finalizer.
const LB: &str = "traffic.cafe.io/lb";
/// The set's namespace and name.
const NAMESPACE: &str = "default";
const SET: &str = "bench";
/// How often the set is checked.
const POLL: Duration = Duration::from_millis(20);
/// The longest the creation or the update may take.
const DEADLINE: Duration = Duration::from_secs(300);

fn template(image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": SET}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": image}]}
    })
}

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let pods = options.pods;
    let config = SimConfig::new("bench")
        .with_start_delay(START_DELAY)
        .with_traffic_finalizer(LB);
    let wave =
        config.lb_reaction_delay + config.deregistration_delay + config.start_delay + TRAFFIC_TICK;
    let waves = pods.div_ceil(MAX_UNAVAILABLE);
    let ideal = wave * u32::try_from(waves)?;
    let cluster = SimCluster::start(config).await?;
    let client = cluster.client()?;
    ensure_crd(client.clone()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = {
        let client = client.clone();
        let config = ControllerConfig {
            namespace: Some(NAMESPACE.into()),
            ..ControllerConfig::default()
        };
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) =
                run_controller(client, config, Metrics::unregistered(), shutdown).await
            {
                tracing::error!(%error, "the InPlaceSet controller failed");
            }
        })
    };
    let result = measure(&cluster, &client, pods).await;
    let _ = stop.send(());
    let _ = controller.await;
    cluster.shutdown().await;
    let (measured, lost) = result?;
    let efficiency = ideal.as_secs_f64() / measured.as_secs_f64();
    Ok(Report::new("rollout")
        .with("pods", pods)
        .with("maxUnavailable", MAX_UNAVAILABLE)
        .with("startDelayMs", ms(START_DELAY))
        .with("waves", waves)
        .with("waveMs", ms(wave))
        .with("measuredMs", ms(measured))
        .with("idealMs", ms(ideal))
        .with("efficiency", round3(efficiency))
        .with("lost", lost)
        .with("hubPeakRssMiB", Value::Null)
        .with("hubCpuSeconds", Value::Null))
}

/// Creates the set, waits until it settles, updates its image; returns the update's duration and
/// the requests lost during it.
async fn measure(
    cluster: &SimCluster,
    client: &Client,
    pods: usize,
) -> anyhow::Result<(Duration, u64)> {
    let replicas = i32::try_from(pods)?;
    let sets: Api<InPlaceSet> = Api::namespaced(client.clone(), NAMESPACE);
    let spec = InPlaceSetSpec {
        replicas,
        selector: LabelSelector {
            match_labels: BTreeMap::from([("app".to_owned(), SET.to_owned())]),
        },
        template: template("bench:1"),
        max_unavailable: i32::try_from(MAX_UNAVAILABLE)?,
        traffic: Some(TrafficPolicy {
            readiness_gate: None,
            finalizers: vec![LB.into()],
            drain_seconds: 0,
        }),
        ..InPlaceSetSpec::default()
    };
    sets.create(&PostParams::default(), &InPlaceSet::new(SET, spec))
        .await
        .context("cannot create the InPlaceSet")?;
    wait_settled(client, pods, &template_revision(&template("bench:1"))).await?;
    let lost_before = cluster.traffic().lost;
    let started = Instant::now();
    let body = json!({"spec": {"template": template("bench:2")}});
    sets.patch(SET, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .context("cannot update the InPlaceSet")?;
    wait_settled(client, pods, &template_revision(&template("bench:2"))).await?;
    Ok((started.elapsed(), cluster.traffic().lost - lost_before))
}

/// Waits until the set reports every pod ready on `revision` for its current generation, and every
/// pod is ready, on that revision and registered with the balancer.
async fn wait_settled(client: &Client, pods: usize, revision: &str) -> anyhow::Result<()> {
    let sets: Api<InPlaceSet> = Api::namespaced(client.clone(), NAMESPACE);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let replicas = i32::try_from(pods)?;
    let until = Instant::now() + DEADLINE;
    loop {
        let set = sets.get(SET).await?;
        let reported = set.status.as_ref().is_some_and(|status| {
            status.observed_generation == set.metadata.generation.unwrap_or_default()
                && status.replicas == replicas
                && status.updated_ready_replicas == replicas
                && status.update_revision.as_deref() == Some(revision)
        });
        if reported {
            let list = pod_api
                .list(&ListParams::default().labels(&format!("{SET_LABEL}={SET}")))
                .await?;
            let settled = list.items.len() == pods
                && list.items.iter().all(|pod| {
                    ready(pod)
                        && pod.labels().get(REVISION_LABEL).map(String::as_str) == Some(revision)
                        && pod.finalizers().iter().any(|f| f == LB)
                });
            if settled {
                return Ok(());
            }
        }
        if Instant::now() > until {
            bail!("the InPlaceSet did not settle on {revision} within {DEADLINE:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
