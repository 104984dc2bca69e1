//! The simulated application behind the load balancers: what answers the prober's requests.
//!
//! Each image can be given a behaviour (an error ratio and a latency). A request a serving pod
//! receives is then answered with HTTP 500 at that ratio, and takes that long. These are answered
//! requests, not lost ones: a pod that answers 500 is up, and a release that ships it passes every
//! pod health check. Only the application's metrics show it, which is what release analysis is for.
//!
//! The control endpoint serves the metrics at `/metrics` in the Prometheus text format:
//! `cafe_sim_requests_total{namespace, pod, inplaceset, revision, code}` and the
//! `cafe_sim_request_duration_seconds` histogram, labelled from the pods' `cafe.io/inplaceset` and
//! `cafe.io/revision` labels. `POST /sim/v1/check` is the application's own smoke check (a webhook
//! target): it fails when a revision's requests erred more than `maxErrorRatio`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How the pods of one image answer.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    /// The share of requests answered with HTTP 500, from 0 to 1.
    #[serde(default)]
    pub error_ratio: f64,
    /// How long each request takes, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
}

impl Behaviour {
    /// Refuses an error ratio outside 0..=1.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_ratio) {
            return Err(format!(
                "errorRatio must be between 0 and 1, not {}",
                self.error_ratio
            ));
        }
        Ok(())
    }
}

/// A behaviour for one image, as `POST /sim/v1/behaviours` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageBehaviour {
    /// The container image, e.g. `registry.example/payments:1.3.0`.
    pub image: String,
    /// The share of requests answered with HTTP 500.
    #[serde(default)]
    pub error_ratio: f64,
    /// How long each request takes, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
}

/// Parses `IMAGE=errorRatio:0.08,latencyMs:20` (the `--behaviour` flag's form).
pub fn parse_behaviour(text: &str) -> Result<(String, Behaviour), String> {
    let (image, settings) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?}: write IMAGE=errorRatio:0.08,latencyMs:20"))?;
    if image.is_empty() {
        return Err(format!("{text:?}: the image is missing"));
    }
    let mut behaviour = Behaviour::default();
    for setting in settings.split(',').filter(|s| !s.is_empty()) {
        let (key, value) = setting
            .split_once(':')
            .ok_or_else(|| format!("{setting:?}: write key:value"))?;
        match key {
            "errorRatio" => {
                behaviour.error_ratio = value
                    .parse()
                    .map_err(|_| format!("errorRatio {value:?} is not a number"))?;
            }
            "latencyMs" => {
                behaviour.latency_ms = value
                    .parse()
                    .map_err(|_| format!("latencyMs {value:?} is not a whole number"))?;
            }
            other => {
                return Err(format!(
                    "unknown setting {other:?} (known: errorRatio, latencyMs)"
                ));
            }
        }
    }
    behaviour.validate()?;
    Ok((image.to_owned(), behaviour))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    namespace: String,
    pod: String,
    inplaceset: String,
    revision: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    namespace: String,
    pod: String,
    inplaceset: String,
    revision: String,
}

/// Request duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// How long a request to an image without a behaviour takes.
const BASE_LATENCY_SECONDS: f64 = 0.001;

/// One pod as the application sees a request reach it.
#[derive(Debug, Clone)]
pub(crate) struct ServingPod<'a> {
    pub(crate) uid: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) image: &'a str,
    pub(crate) inplaceset: &'a str,
    pub(crate) revision: &'a str,
}

/// The simulated application of one cluster.
#[derive(Debug)]
pub(crate) struct Application {
    behaviours: RwLock<BTreeMap<String, Behaviour>>,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram>,
    /// Each pod's series, by uid, taken from the families once per pod and revision: answering a
    /// request (100 a second per pod) allocates nothing.
    pods: Mutex<HashMap<String, PodSeries>>,
    /// Per namespace and revision: requests answered and those answered with 500.
    by_revision: Mutex<HashMap<(String, String), Arc<RevisionTotals>>>,
}

/// Requests a revision answered, and how many with 500.
#[derive(Debug, Default)]
struct RevisionTotals {
    answered: AtomicU64,
    errors: AtomicU64,
}

/// One pod's series on its current revision.
#[derive(Debug)]
struct PodSeries {
    revision: String,
    /// Requests this pod answered on this revision: decides deterministically which of them err.
    answered: u64,
    ok: Counter,
    errors: Counter,
    duration: Histogram,
    totals: Arc<RevisionTotals>,
}

impl Application {
    /// An application whose images behave as `behaviours` says (the others answer 200 at once).
    pub(crate) fn new(behaviours: BTreeMap<String, Behaviour>) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<DurationLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(DURATION_BUCKETS)) as fn() -> Histogram,
        );
        let mut registry = Registry::default();
        let sim = registry.sub_registry_with_prefix("cafe_sim");
        sim.register(
            "requests",
            "Requests the simulated application answered, by pod and HTTP status",
            requests.clone(),
        );
        sim.register(
            "request_duration_seconds",
            "How long the simulated application took to answer",
            durations.clone(),
        );
        Self {
            behaviours: RwLock::new(behaviours),
            registry,
            requests,
            durations,
            pods: Mutex::default(),
            by_revision: Mutex::default(),
        }
    }

    fn behaviour(&self, image: &str) -> Behaviour {
        self.behaviours
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(image)
            .copied()
            .unwrap_or_default()
    }

    /// Sets how `image` behaves from now on.
    pub(crate) fn set_behaviour(&self, image: String, behaviour: Behaviour) {
        self.behaviours
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(image, behaviour);
    }

    /// Every behaviour set.
    pub(crate) fn behaviours(&self) -> Vec<ImageBehaviour> {
        self.behaviours
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(image, b)| ImageBehaviour {
                image: image.clone(),
                error_ratio: b.error_ratio,
                latency_ms: b.latency_ms,
            })
            .collect()
    }

    /// The series of `pod` on its revision, made on its first request there.
    fn series_of(&self, pod: &ServingPod<'_>) -> PodSeries {
        let labels = |code: &str| RequestLabels {
            namespace: pod.namespace.to_owned(),
            pod: pod.name.to_owned(),
            inplaceset: pod.inplaceset.to_owned(),
            revision: pod.revision.to_owned(),
            code: code.to_owned(),
        };
        let totals = Arc::clone(
            self.by_revision
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry((pod.namespace.to_owned(), pod.revision.to_owned()))
                .or_default(),
        );
        // Both codes' series exist from the first request, as instrumented applications initialise
        // them: a ratio of 500s to all requests is then 0, not "no data", while nothing errs. (One
        // statement each: a family's guard must be gone before the next series is created.)
        let ok = self.requests.get_or_create(&labels("200")).clone();
        let errors = self.requests.get_or_create(&labels("500")).clone();
        let duration = self
            .durations
            .get_or_create(&DurationLabels {
                namespace: pod.namespace.to_owned(),
                pod: pod.name.to_owned(),
                inplaceset: pod.inplaceset.to_owned(),
                revision: pod.revision.to_owned(),
            })
            .clone();
        PodSeries {
            revision: pod.revision.to_owned(),
            answered: 0,
            ok,
            errors,
            duration,
            totals,
        }
    }

    /// `pod` answers one request.
    pub(crate) fn answer(&self, pod: &ServingPod<'_>) {
        let behaviour = self.behaviour(pod.image);
        let mut pods = self
            .pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pods
            .get(pod.uid)
            .is_none_or(|series| series.revision != pod.revision)
        {
            let series = self.series_of(pod);
            pods.insert(pod.uid.to_owned(), series);
        }
        let Some(series) = pods.get_mut(pod.uid) else {
            return;
        };
        series.answered += 1;
        let n = series.answered;
        // Exactly `error_ratio` of each pod's requests err, spread evenly: request n errs when it
        // carries the running count of errors over a whole number.
        #[allow(clippy::cast_precision_loss)]
        let errs = {
            let r = behaviour.error_ratio;
            (n as f64 * r).floor() > ((n - 1) as f64 * r).floor()
        };
        if errs {
            series.errors.inc();
            series.totals.errors.fetch_add(1, Ordering::Relaxed);
        } else {
            series.ok.inc();
        }
        series.totals.answered.fetch_add(1, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let seconds = BASE_LATENCY_SECONDS + behaviour.latency_ms as f64 / 1000.0;
        series.duration.observe(seconds);
    }

    fn totals(&self, namespace: &str, revision: &str) -> (u64, u64) {
        self.by_revision
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(namespace.to_owned(), revision.to_owned()))
            .map_or((0, 0), |t| {
                (
                    t.answered.load(Ordering::Relaxed),
                    t.errors.load(Ordering::Relaxed),
                )
            })
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// The application's routes: `/metrics`, `/sim/v1/behaviours`, `/sim/v1/check`.
pub(crate) fn routes<S>(app: Arc<Application>) -> Router<S> {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/sim/v1/behaviours",
            get(get_behaviours).post(post_behaviour),
        )
        .route("/sim/v1/check", post(check))
        .with_state(app)
}

async fn metrics(State(app): State<Arc<Application>>) -> Response {
    match app.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn get_behaviours(State(app): State<Arc<Application>>) -> Json<Vec<ImageBehaviour>> {
    Json(app.behaviours())
}

async fn post_behaviour(
    State(app): State<Arc<Application>>,
    Json(body): Json<ImageBehaviour>,
) -> Response {
    let behaviour = Behaviour {
        error_ratio: body.error_ratio,
        latency_ms: body.latency_ms,
    };
    if body.image.is_empty() {
        return (StatusCode::BAD_REQUEST, "image: is required").into_response();
    }
    if let Err(message) = behaviour.validate() {
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    tracing::info!(image = %body.image, error_ratio = behaviour.error_ratio, latency_ms = behaviour.latency_ms, "behaviour set");
    app.set_behaviour(body.image, behaviour);
    Json(app.behaviours()).into_response()
}

/// The part of a release webhook's body the check reads.
#[derive(Debug, Deserialize)]
struct CheckRequest {
    namespace: String,
    revision: String,
}

/// `?maxErrorRatio=0.01` (the default).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckQuery {
    #[serde(default = "default_max_error_ratio")]
    max_error_ratio: f64,
}

fn default_max_error_ratio() -> f64 {
    0.01
}

/// Passes (200) when the revision's requests so far erred at most `maxErrorRatio`; fails (500)
/// when they erred more, and (503) when the revision has answered nothing yet.
async fn check(
    State(app): State<Arc<Application>>,
    Query(query): Query<CheckQuery>,
    Json(body): Json<CheckRequest>,
) -> Response {
    let (answered, errors) = app.totals(&body.namespace, &body.revision);
    #[allow(clippy::cast_precision_loss)]
    let ratio = if answered == 0 {
        0.0
    } else {
        errors as f64 / answered as f64
    };
    let report = json!({
        "namespace": body.namespace,
        "revision": body.revision,
        "answered": answered,
        "errors": errors,
        "errorRatio": ratio,
        "maxErrorRatio": query.max_error_ratio,
    });
    let status = if answered == 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if ratio > query.max_error_ratio {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    (status, Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_form_parses_and_bad_input_is_named() {
        let (image, b) =
            parse_behaviour("registry.example/p:1.3=errorRatio:0.08,latencyMs:20").unwrap();
        assert_eq!(image, "registry.example/p:1.3");
        assert_eq!(
            b,
            Behaviour {
                error_ratio: 0.08,
                latency_ms: 20
            }
        );
        assert!(
            parse_behaviour("p:1=errorRatio:2")
                .unwrap_err()
                .contains("between 0 and 1")
        );
        assert!(
            parse_behaviour("p:1=speed:3")
                .unwrap_err()
                .contains("unknown setting")
        );
        assert!(parse_behaviour("p:1").is_err());
    }

    #[test]
    fn exactly_the_error_ratio_of_requests_err() {
        let app = Application::new(BTreeMap::from([(
            "bad".to_owned(),
            Behaviour {
                error_ratio: 0.08,
                latency_ms: 0,
            },
        )]));
        let pod = ServingPod {
            uid: "u1",
            namespace: "ns",
            name: "p",
            image: "bad",
            inplaceset: "s",
            revision: "r",
        };
        for _ in 0..1000 {
            app.answer(&pod);
        }
        assert_eq!(app.totals("ns", "r"), (1000, 80));
        let text = app.encode().unwrap();
        assert!(text.contains(r#"cafe_sim_requests_total{namespace="ns",pod="p",inplaceset="s",revision="r",code="500"} 80"#), "{text}");
    }
}
