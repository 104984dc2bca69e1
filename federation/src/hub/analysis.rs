//! The analysis runner: the hub's I/O side of `spec.strategy.analysis`. It looks at the published
//! model, takes the rounds of measurements that are due (Prometheus queries, webhook calls), and
//! hands each round to the writer as an event. Deciding what the measurements mean is the release
//! state machine's job ([`crate::release::AnalysisRun::verdict`]); the runner only measures.
//!
//! Nothing here is durable: the measurements are, once committed. A hub that restarts mid-analysis
//! finds the run in its records and measures on from the last round.

use super::Hub;
use super::core::{Core, Measured};
use crate::http_client::{self, HttpError, encode_query_value};
use crate::names::{DeploymentKey, UnitName};
use crate::release::{Measurement, MeasurementResult};
use crate::resources::{
    Analysis, Condition, Metric, MetricScope, PROMETHEUS_TIMEOUT_SECONDS, PrometheusMetric,
    WebhookMetric, expand,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

/// How often the runner looks for rounds that are due.
const ANALYSIS_TICK: Duration = Duration::from_millis(200);

/// One unit the group changed, as queries and webhooks name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuredUnit {
    /// The unit.
    pub unit: UnitName,
    /// Its region.
    pub region: String,
    /// Its member cluster.
    pub cluster: String,
    /// The InPlaceSet its slice runs as.
    pub inplaceset: String,
}

/// A round of measurements that is due.
#[derive(Debug, Clone)]
pub struct Round {
    /// The deployment.
    pub key: DeploymentKey,
    /// The update revision measured.
    pub revision: String,
    /// The stable revision.
    pub stable_revision: String,
    /// The group.
    pub group: usize,
    /// The run's start.
    pub started_ms: i64,
    /// When the round is due.
    pub due_ms: i64,
    /// What to measure.
    pub analysis: Analysis,
    /// The units the group changed.
    pub units: Vec<MeasuredUnit>,
}

impl Core {
    /// The rounds of measurements due at `now_ms`.
    pub fn analysis_rounds_due(&self, now_ms: i64) -> Vec<Round> {
        let mut rounds = Vec::new();
        for (key, record) in &self.deployments {
            let release = &record.release;
            let Some(analysis) = &record.deployment.spec.strategy.analysis else {
                continue;
            };
            let Some(run) = release.measuring() else {
                continue;
            };
            let due_ms = run.next_due_ms(analysis);
            if due_ms > now_ms {
                continue;
            }
            let Some(Ok(plan)) = self.plan(key) else {
                continue;
            };
            let Some(group) = plan.batches.get(run.group) else {
                continue;
            };
            let units = plan
                .units
                .iter()
                .filter(|u| !u.evacuated && group.changes(&u.unit))
                .map(|u| MeasuredUnit {
                    unit: u.unit.clone(),
                    region: u.region.to_string(),
                    cluster: u.cluster.to_string(),
                    inplaceset: cafe_proto::protocol::inplaceset_name(
                        key.name.as_str(),
                        u.unit.as_str(),
                    ),
                })
                .collect();
            rounds.push(Round {
                key: key.clone(),
                revision: release.update_revision.clone(),
                stable_revision: release.current_revision.clone(),
                group: run.group,
                started_ms: run.started_ms,
                due_ms,
                analysis: analysis.clone(),
                units,
            });
        }
        rounds
    }
}

/// Takes every round that comes due until `shutdown` resolves.
pub async fn run_analysis(hub: Hub, shutdown: impl std::future::Future<Output = ()>) {
    let in_flight: Arc<Mutex<BTreeSet<(DeploymentKey, i64, i64)>>> = Arc::default();
    let mut interval = tokio::time::interval(ANALYSIS_TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tasks = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = interval.tick() => {
                for round in hub.read(|core, now| core.analysis_rounds_due(now)) {
                    let id = (round.key.clone(), round.started_ms, round.due_ms);
                    if !lock(&in_flight).insert(id.clone()) {
                        continue;
                    }
                    let hub = hub.clone();
                    let in_flight = Arc::clone(&in_flight);
                    let span = tracing::info_span!("analysis", deployment = %round.key, group = round.group);
                    tasks.spawn(async move {
                        let measured = measure_round(&round, hub.now_ms()).await;
                        if let Err(error) = hub.measured(measured).await {
                            tracing::warn!(%error, "measurements not recorded");
                        }
                        lock(&in_flight).remove(&id);
                    }.instrument(span));
                }
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Measures every series of `round` at once.
async fn measure_round(round: &Round, now_ms: i64) -> Measured {
    let mut calls = Vec::new();
    for metric in &round.analysis.metrics {
        match metric.scope {
            MetricScope::Deployment => calls.push(measure(round, metric, None, now_ms)),
            MetricScope::Unit => {
                for unit in &round.units {
                    calls.push(measure(round, metric, Some(unit), now_ms));
                }
            }
        }
    }
    let measurements = futures::future::join_all(calls).await;
    for m in &measurements {
        tracing::info!(metric = %m.metric, unit = ?m.unit.as_ref().map(UnitName::as_str), value = ?m.value, result = %m.result, message = %m.message, "measured");
    }
    Measured {
        key: round.key.clone(),
        revision: round.revision.clone(),
        group: round.group,
        started_ms: round.started_ms,
        measurements,
    }
}

/// One measurement of `metric` (in `unit`), stamped with its round's time `now_ms`.
async fn measure(
    round: &Round,
    metric: &Metric,
    unit: Option<&MeasuredUnit>,
    now_ms: i64,
) -> Measurement {
    let (value, result, message) = match (&metric.prometheus, &metric.webhook) {
        (Some(prometheus), _) => query_prometheus(round, metric, prometheus, unit).await,
        (None, Some(webhook)) => call_webhook(round, webhook, unit).await,
        (None, None) => (
            None,
            MeasurementResult::Error,
            "the metric has no provider".to_owned(),
        ),
    };
    Measurement {
        metric: metric.name.clone(),
        unit: unit.map(|u| u.unit.clone()),
        value,
        result,
        time_ms: now_ms,
        message,
    }
}

type Found = (Option<f64>, MeasurementResult, String);

fn error(message: impl Into<String>) -> Found {
    (None, MeasurementResult::Error, message.into())
}

/// The value of `{{name}}` for a round (and a unit, for `scope: Unit`).
fn variable(round: &Round, unit: Option<&MeasuredUnit>, name: &str) -> Option<String> {
    Some(match name {
        "namespace" => round.key.namespace.to_string(),
        "name" => round.key.name.to_string(),
        "revision" => round.revision.clone(),
        "stableRevision" => round.stable_revision.clone(),
        "unit" => unit?.unit.to_string(),
        "region" => unit?.region.clone(),
        "cluster" => unit?.cluster.clone(),
        "inplaceset" => unit?.inplaceset.clone(),
        _ => return None,
    })
}

async fn query_prometheus(
    round: &Round,
    metric: &Metric,
    prometheus: &PrometheusMetric,
    unit: Option<&MeasuredUnit>,
) -> Found {
    let query = match expand(&prometheus.query, |name| variable(round, unit, name)) {
        Ok(q) => q,
        Err(e) => return error(format!("query {e}")),
    };
    let url = format!(
        "{}/api/v1/query?query={}",
        prometheus.address.trim_end_matches('/'),
        encode_query_value(&query)
    );
    let timeout = Duration::from_secs(u64::from(PROMETHEUS_TIMEOUT_SECONDS));
    let answer = match http_client::get(&url, timeout).await {
        Ok(a) => a,
        Err(e) => return error(format!("Prometheus at {}: {e}", prometheus.address)),
    };
    let parsed: Value = match serde_json::from_str(&answer.body) {
        Ok(v) => v,
        Err(_) => {
            return error(format!(
                "Prometheus answered {} with a body that is not JSON",
                answer.status
            ));
        }
    };
    if parsed["status"] != "success" {
        return error(format!(
            "Prometheus refused the query: {}",
            parsed["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let sample = match parsed["data"]["resultType"].as_str() {
        Some("vector") => {
            let series = parsed["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match series.as_slice() {
                [] => {
                    return (
                        None,
                        MeasurementResult::Inconclusive,
                        "the query returned no sample".to_owned(),
                    );
                }
                [one] => one["value"][1].clone(),
                many => {
                    return error(format!(
                        "the query returned {} series; aggregate it to one (sum, max, ...)",
                        many.len()
                    ));
                }
            }
        }
        Some("scalar") => parsed["data"]["result"][1].clone(),
        other => {
            return error(format!(
                "the query returned a {}, not a number",
                other.unwrap_or("nothing")
            ));
        }
    };
    let Some(value) = sample.as_str().and_then(|s| s.parse::<f64>().ok()) else {
        return error(format!("the sample {sample} is not a number"));
    };
    if !value.is_finite() {
        return (
            None,
            MeasurementResult::Inconclusive,
            format!("the query gave {value} (no data to divide?)"),
        );
    }
    judge(metric, value)
}

/// Applies the metric's conditions to `value`.
fn judge(metric: &Metric, value: f64) -> Found {
    let holds = |source: &Option<String>| -> Result<Option<bool>, String> {
        source
            .as_deref()
            .map(|s| Condition::compile(s).and_then(|c| c.holds(value)))
            .transpose()
    };
    match (
        holds(&metric.success_condition),
        holds(&metric.failure_condition),
    ) {
        (Err(e), _) | (_, Err(e)) => (Some(value), MeasurementResult::Error, e),
        (Ok(Some(true)), _) => (Some(value), MeasurementResult::Successful, String::new()),
        (Ok(_), Ok(Some(true))) => (
            Some(value),
            MeasurementResult::Failed,
            format!(
                "failureCondition {} holds",
                metric.failure_condition.as_deref().unwrap_or_default()
            ),
        ),
        (Ok(_), Ok(Some(false))) => (
            Some(value),
            MeasurementResult::Inconclusive,
            "matches neither condition".to_owned(),
        ),
        (Ok(_), Ok(None)) => (
            Some(value),
            MeasurementResult::Failed,
            format!(
                "successCondition {} does not hold",
                metric.success_condition.as_deref().unwrap_or_default()
            ),
        ),
    }
}

async fn call_webhook(
    round: &Round,
    webhook: &WebhookMetric,
    unit: Option<&MeasuredUnit>,
) -> Found {
    let units: Vec<&MeasuredUnit> = match unit {
        Some(u) => vec![u],
        None => round.units.iter().collect(),
    };
    let body = json!({
        "namespace": round.key.namespace.as_str(),
        "name": round.key.name.as_str(),
        "revision": round.revision,
        "stableRevision": round.stable_revision,
        "group": round.group,
        "units": units.iter().map(|u| json!({
            "unit": u.unit.as_str(),
            "cluster": u.cluster,
            "region": u.region,
        })).collect::<Vec<_>>(),
    });
    let timeout = Duration::from_secs(u64::from(webhook.timeout_seconds));
    match http_client::post_json(&webhook.url, &body, timeout).await {
        Ok(answer) if (200..300).contains(&answer.status) => (
            Some(f64::from(answer.status)),
            MeasurementResult::Successful,
            String::new(),
        ),
        Ok(answer) => {
            let said: String = answer.body.trim().chars().take(200).collect();
            (
                Some(f64::from(answer.status)),
                MeasurementResult::Failed,
                format!("the webhook answered {}: {said}", answer.status),
            )
        }
        Err(HttpError::Timeout(t)) => error(format!("the webhook did not answer within {t:?}")),
        Err(e) => error(format!("the webhook failed: {e}")),
    }
}
