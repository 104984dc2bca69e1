//! `spec.strategy.analysis`: the metrics and webhooks that must pass before a group counts as
//! done. Conditions are CEL expressions over `result`, compiled once at apply.

use super::error::Collector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// The shortest interval between measurements.
pub const MIN_INTERVAL_MS: i64 = 1000;
/// A webhook's timeout when none is given.
pub const DEFAULT_WEBHOOK_TIMEOUT_SECONDS: u32 = 10;
/// How long a Prometheus query may take.
pub const PROMETHEUS_TIMEOUT_SECONDS: u32 = 10;

/// The variables a query may use, and whether each needs `scope: Unit`.
pub const QUERY_VARIABLES: [(&str, bool); 8] = [
    ("namespace", false),
    ("name", false),
    ("revision", false),
    ("stableRevision", false),
    ("unit", true),
    ("region", true),
    ("cluster", true),
    ("inplaceset", true),
];

/// How a release is verified, group by group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// Between measurements, e.g. `10s`.
    #[serde(default = "default_interval")]
    pub interval: DurationText,
    /// Measurements per group (of every metric, in every measured unit).
    #[serde(default = "default_count")]
    pub count: u32,
    /// After the group is healthy, before the first measurement.
    #[serde(default)]
    pub initial_delay: DurationText,
    /// Failed measurements tolerated in a group (per metric and unit).
    #[serde(default)]
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated before the release pauses for a human.
    #[serde(default)]
    pub inconclusive_limit: u32,
    /// Measurement errors in a row that count as one inconclusive measurement.
    #[serde(default = "default_consecutive_error_limit")]
    pub consecutive_error_limit: u32,
    /// What a failed analysis does.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// What is measured.
    pub metrics: Vec<Metric>,
}

fn default_interval() -> DurationText {
    DurationText("10s".to_owned())
}
fn default_count() -> u32 {
    1
}
fn default_consecutive_error_limit() -> u32 {
    4
}

/// What a failed analysis does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnFailure {
    /// Every unit returns to the stable revision at once, as `cafectl rollback` does.
    #[default]
    Rollback,
    /// The release stops at the failed group and waits for `retry` or `rollback`.
    Pause,
}

/// Where a metric is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MetricScope {
    /// Once for the whole deployment.
    #[default]
    Deployment,
    /// Once for each unit the group changed.
    Unit,
}

impl fmt::Display for MetricScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One metric: a provider and, for Prometheus, the conditions on its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// Unique within the analysis.
    pub name: String,
    /// Deployment or Unit.
    #[serde(default)]
    pub scope: MetricScope,
    /// A PromQL query whose result is one number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// An HTTP check: 2xx passes, another status fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookMetric>,
    /// CEL over `result`: the measurement passes when true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// CEL over `result`: the measurement fails when true. Without it, a value that does not pass
    /// fails; with it, a value that matches neither condition is inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
}

/// A Prometheus instant query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusMetric {
    /// The server, e.g. `http://prometheus.monitoring:9090`.
    pub address: String,
    /// PromQL with `{{variable}}`s.
    pub query: String,
}

/// An HTTP check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookMetric {
    /// Receives a POST of the group's JSON.
    pub url: String,
    /// A call that takes longer is a measurement error.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u32,
}

fn default_webhook_timeout() -> u32 {
    DEFAULT_WEBHOOK_TIMEOUT_SECONDS
}

/// A duration as Kubernetes writes them: `10s`, `500ms`, `1m30s`, `0`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationText(pub String);

impl DurationText {
    /// The duration in milliseconds, or why the text is not one.
    pub fn millis(&self) -> Result<i64, String> {
        parse_duration_ms(&self.0)
    }

    /// The duration, 0 for text that is not one (validated at apply).
    pub fn ms(&self) -> i64 {
        self.millis().unwrap_or(0)
    }
}

/// Parses `1h2m3s4ms`-style text (units h, m, s, ms; whole numbers) into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration (write e.g. 10s, 500ms or 1m30s)");
    let text = text.trim();
    if text == "0" || text.is_empty() {
        return Ok(0);
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let value: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1000, 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total = value
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A compiled condition over `result`.
#[derive(Debug)]
pub struct Condition(cel::Program);

impl Condition {
    /// Compiles `source`; refuses one that does not parse, uses another variable than `result`, or
    /// does not give a boolean.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = cel::Program::compile(source).map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default().to_owned();
            format!("does not parse as CEL: {first}")
        })?;
        let variables = program.references();
        if let Some(other) = variables.variables().into_iter().find(|v| *v != "result") {
            return Err(format!(
                "unknown variable {other:?}: a condition may only use `result`"
            ));
        }
        let condition = Self(program);
        condition
            .holds(0.0)
            .map_err(|e| format!("cannot be evaluated: {e}"))?;
        Ok(condition)
    }

    /// Whether the condition holds for `result`.
    pub fn holds(&self, result: f64) -> Result<bool, String> {
        let mut context = cel::Context::default();
        context
            .add_variable("result", result)
            .map_err(|e| e.to_string())?;
        match self.0.execute(&context).map_err(|e| e.to_string())? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!("gives {other:?}, not a boolean")),
        }
    }
}

/// A piece of a query template: text as it stands, or a `{{variable}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Variable(&'a str),
}

/// Splits `template` at its `{{variable}}`s; `Err` for a `{{` without its `}}`.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "has a `{{` without its `}}`".to_owned())?;
        pieces.push(Piece::Variable(after[..end].trim()));
        rest = &after[end + 2..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Replaces every `{{variable}}` in `template` with its value from `lookup`; `Err` names the first
/// variable `lookup` does not know.
pub fn expand(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Variable(name) => out
                .push_str(&lookup(name).ok_or_else(|| format!("unknown variable {{{{{name}}}}}"))?),
        }
    }
    Ok(out)
}

/// Why a query may not use `name` in `scope`, if it may not.
fn variable_error(name: &str, scope: MetricScope) -> Option<String> {
    match QUERY_VARIABLES.iter().find(|(v, _)| *v == name) {
        None => Some(format!(
            "unknown variable {{{{{name}}}}}; known: {}",
            QUERY_VARIABLES
                .map(|(v, _)| format!("{{{{{v}}}}}"))
                .join(" ")
        )),
        Some((_, true)) if scope != MetricScope::Unit => {
            Some(format!("{{{{{name}}}}} needs scope: Unit"))
        }
        Some(_) => None,
    }
}

impl Analysis {
    /// Checks the analysis; paths start at `spec.strategy.analysis`.
    pub fn validate(&self, errors: &mut Collector) {
        let base = "spec.strategy.analysis";
        match self.interval.millis() {
            Ok(ms) if ms < MIN_INTERVAL_MS => errors.push(
                format!("{base}.interval"),
                format!("must be at least 1s, not {:?}", self.interval.0),
            ),
            Ok(_) => {}
            Err(e) => errors.push(format!("{base}.interval"), e),
        }
        if let Err(e) = self.initial_delay.millis() {
            errors.push(format!("{base}.initialDelay"), e);
        }
        if self.count == 0 {
            errors.push(format!("{base}.count"), "must be at least 1");
        }
        if self.consecutive_error_limit == 0 {
            errors.push(
                format!("{base}.consecutiveErrorLimit"),
                "must be at least 1",
            );
        }
        if self.metrics.is_empty() {
            errors.push(format!("{base}.metrics"), "must list at least one metric");
        }
        let mut names = BTreeSet::new();
        for (i, metric) in self.metrics.iter().enumerate() {
            let path = format!("{base}.metrics[{i}]");
            if !names.insert(metric.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("duplicate metric {:?}", metric.name),
                );
            }
            metric.validate(&path, errors);
        }
    }
}

impl Metric {
    fn validate(&self, path: &str, errors: &mut Collector) {
        errors.check(
            format!("{path}.name"),
            crate::names::dns1123_label_error(&self.name),
        );
        match (&self.prometheus, &self.webhook) {
            (None, None) => errors.push(
                path.to_owned(),
                "needs a provider: give prometheus or webhook",
            ),
            (Some(_), Some(_)) => errors.push(
                path.to_owned(),
                "give one provider, prometheus or webhook, not both",
            ),
            (Some(prometheus), None) => {
                check_url(
                    &format!("{path}.prometheus.address"),
                    &prometheus.address,
                    errors,
                );
                let query_path = format!("{path}.prometheus.query");
                match pieces(&prometheus.query) {
                    Err(problem) => errors.push(query_path.clone(), problem),
                    Ok(pieces) => {
                        for piece in pieces {
                            if let Piece::Variable(name) = piece {
                                errors.check(query_path.clone(), variable_error(name, self.scope));
                            }
                        }
                    }
                }
                if prometheus.query.trim().is_empty() {
                    errors.push(format!("{path}.prometheus.query"), "must not be empty");
                }
                match &self.success_condition {
                    None => errors.push(
                        format!("{path}.successCondition"),
                        "is required for a prometheus metric",
                    ),
                    Some(source) => {
                        if let Err(e) = Condition::compile(source) {
                            errors.push(format!("{path}.successCondition"), e);
                        }
                    }
                }
                if let Some(source) = &self.failure_condition
                    && let Err(e) = Condition::compile(source)
                {
                    errors.push(format!("{path}.failureCondition"), e);
                }
            }
            (None, Some(webhook)) => {
                check_url(&format!("{path}.webhook.url"), &webhook.url, errors);
                if webhook.timeout_seconds == 0 {
                    errors.push(
                        format!("{path}.webhook.timeoutSeconds"),
                        "must be at least 1",
                    );
                }
                for (field, given) in [
                    ("successCondition", &self.success_condition),
                    ("failureCondition", &self.failure_condition),
                ] {
                    if given.is_some() {
                        errors.push(
                            format!("{path}.{field}"),
                            "a webhook passes on 2xx and fails on any other status; conditions \
                             apply to prometheus metrics",
                        );
                    }
                }
            }
        }
    }
}

/// Refuses what the hub cannot call: it speaks plain HTTP to metric servers and webhooks.
fn check_url(path: &str, url: &str, errors: &mut Collector) {
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {}
        Ok(uri) if uri.scheme_str() == Some("https") => errors.push(
            path.to_owned(),
            "https is not supported yet: give an http:// URL (e.g. a sidecar or in-cluster service)",
        ),
        _ => errors.push(
            path.to_owned(),
            format!("{url:?} is not an http://host:port/path URL"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("ten seconds").is_err());
    }

    #[test]
    fn conditions_take_only_result_and_give_a_boolean() {
        let c = Condition::compile("result <= 0.01").unwrap();
        assert_eq!(c.holds(0.005), Ok(true));
        assert_eq!(c.holds(0.08), Ok(false));
        // An integer literal compares with the double result.
        assert_eq!(
            Condition::compile("result > 1").unwrap().holds(2.0),
            Ok(true)
        );
        assert!(
            Condition::compile("result <=")
                .unwrap_err()
                .contains("does not parse")
        );
        assert!(
            Condition::compile("value > 1")
                .unwrap_err()
                .contains("\"value\"")
        );
        assert!(
            Condition::compile("result * 2.0")
                .unwrap_err()
                .contains("boolean")
        );
    }

    #[test]
    fn variables_expand_and_unknown_ones_are_named() {
        let lookup = |n: &str| (n == "namespace").then(|| "finance".to_owned());
        assert_eq!(
            expand("a{{namespace}}b", lookup),
            Ok("afinanceb".to_owned())
        );
        assert_eq!(
            expand("{{ nope }}", lookup),
            Err("unknown variable {{nope}}".to_owned())
        );
    }
}
