//! The durable analysis of one group: the measurements taken so far, and the verdict they give
//! against `spec.strategy.analysis`. Pure: the hub's analysis runner takes the measurements and
//! hands them in as events.

use crate::names::UnitName;
use crate::resources::{Analysis, MetricScope};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What one measurement found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeasurementResult {
    /// The success condition held (a webhook answered 2xx).
    Successful,
    /// The value failed (a webhook answered another status).
    Failed,
    /// The value matched neither condition, or the query returned no sample.
    Inconclusive,
    /// The query or the call failed (unreachable, timeout, bad answer).
    Error,
}

impl MeasurementResult {
    /// The name, as the status and the metrics label write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "Successful",
            Self::Failed => "Failed",
            Self::Inconclusive => "Inconclusive",
            Self::Error => "Error",
        }
    }
}

impl fmt::Display for MeasurementResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measurement of one metric (in one unit, for `scope: Unit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// The metric's name.
    pub metric: String,
    /// The unit measured; `None` for `scope: Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitName>,
    /// The value (a webhook's: its HTTP status); `None` when there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// What it found.
    pub result: MeasurementResult,
    /// When it was taken (ms since the epoch).
    pub time_ms: i64,
    /// Why, for results other than Successful.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Measurement {
    /// `metric` (in `unit`) measured `value`, as a readable phrase.
    pub fn describe(&self) -> String {
        let place = self
            .unit
            .as_ref()
            .map_or_else(String::new, |u| format!(" in unit {u}"));
        let value = self
            .value
            .map_or_else(|| "no value".to_owned(), |v| format!("value {v}"));
        let why = if self.message.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.message)
        };
        format!("metric {}{place}: {value}{why}", self.metric)
    }
}

/// The analysis of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRun {
    /// The group analysed.
    pub group: usize,
    /// When the group was first healthy and the analysis began (ms since the epoch); with the
    /// revision and the group, it names the run, so that a measurement taken for an earlier run is
    /// never counted in a later one.
    pub started_ms: i64,
    /// Every measurement so far, oldest first.
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    /// An operator accepted the group with `continue` after the analysis was inconclusive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepted: bool,
    /// How the analysis ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AnalysisOutcome>,
}

/// How an analysis ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisOutcome {
    /// `Passed`, `Failed` or `Inconclusive`.
    pub result: OutcomeResult,
    /// Why: the metric, the unit and the value of a failure.
    pub message: String,
}

/// How an analysis ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutcomeResult {
    /// Every metric passed, or an operator accepted the group.
    Passed,
    /// A metric failed.
    Failed,
    /// A metric was inconclusive too often.
    Inconclusive,
}

impl OutcomeResult {
    /// The Kubernetes Event reason and audit word of this outcome.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Passed => "AnalysisPassed",
            Self::Failed => "AnalysisFailed",
            Self::Inconclusive => "AnalysisInconclusive",
        }
    }
}

/// What the measurements say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough measurements yet.
    Pending,
    /// Every metric passed `count` times (within `failureLimit`), or an operator accepted the group.
    Passed,
    /// A metric failed more often than `failureLimit`: names the metric, the unit and the value.
    Failed(String),
    /// A metric was inconclusive more often than `inconclusiveLimit`.
    Inconclusive(String),
}

impl AnalysisRun {
    /// A run of `group` beginning at `now_ms`.
    pub fn new(group: usize, now_ms: i64) -> Self {
        Self {
            group,
            started_ms: now_ms,
            measurements: Vec::new(),
            accepted: false,
            outcome: None,
        }
    }

    /// Rounds of measurements taken (a round measures every series at once).
    pub fn rounds(&self) -> usize {
        let times: std::collections::BTreeSet<i64> =
            self.measurements.iter().map(|m| m.time_ms).collect();
        times.len()
    }

    /// This run, ended with `result` for `message`.
    pub fn ended(&self, result: OutcomeResult, message: impl Into<String>) -> Self {
        Self {
            outcome: Some(AnalysisOutcome {
                result,
                message: message.into(),
            }),
            ..self.clone()
        }
    }

    /// When the next round of measurements is due.
    pub fn next_due_ms(&self, analysis: &Analysis) -> i64 {
        self.measurements
            .iter()
            .map(|m| m.time_ms)
            .max()
            .map_or_else(
                || self.started_ms + analysis.initial_delay.ms(),
                |last| last + analysis.interval.ms(),
            )
    }

    /// The series the analysis measures: every metric, per unit in `units` for `scope: Unit`.
    pub fn series<'a>(
        analysis: &'a Analysis,
        units: &'a [UnitName],
    ) -> impl Iterator<Item = (&'a str, Option<&'a UnitName>)> + 'a {
        analysis.metrics.iter().flat_map(move |metric| {
            let per_unit: Vec<Option<&UnitName>> = match metric.scope {
                MetricScope::Deployment => vec![None],
                MetricScope::Unit => units.iter().map(Some).collect(),
            };
            per_unit
                .into_iter()
                .map(move |unit| (metric.name.as_str(), unit))
        })
    }

    /// The verdict of the measurements so far, for the units the group changed.
    pub fn verdict(&self, analysis: &Analysis, units: &[UnitName]) -> Verdict {
        if self.accepted
            || self
                .outcome
                .as_ref()
                .is_some_and(|o| o.result == OutcomeResult::Passed)
        {
            return Verdict::Passed;
        }
        let mut complete = true;
        for (metric, unit) in Self::series(analysis, units) {
            let mut decided = 0;
            let mut failed = 0;
            let mut inconclusive = 0;
            let mut errors_in_row = 0;
            let mut last_failed = None;
            let mut last_inconclusive = None;
            for m in self
                .measurements
                .iter()
                .filter(|m| m.metric == metric && m.unit.as_ref() == unit)
            {
                if m.result == MeasurementResult::Error {
                    errors_in_row += 1;
                    if errors_in_row >= analysis.consecutive_error_limit {
                        inconclusive += 1;
                        errors_in_row = 0;
                        last_inconclusive = Some(m);
                    }
                    continue;
                }
                errors_in_row = 0;
                match m.result {
                    MeasurementResult::Successful => decided += 1,
                    MeasurementResult::Failed => {
                        decided += 1;
                        failed += 1;
                        last_failed = Some(m);
                    }
                    MeasurementResult::Inconclusive => {
                        inconclusive += 1;
                        last_inconclusive = Some(m);
                    }
                    MeasurementResult::Error => {}
                }
            }
            if failed > analysis.failure_limit
                && let Some(m) = last_failed
            {
                return Verdict::Failed(format!(
                    "{} failed {failed} of {decided} measurements (failureLimit {})",
                    m.describe(),
                    analysis.failure_limit
                ));
            }
            if inconclusive > analysis.inconclusive_limit
                && let Some(m) = last_inconclusive
            {
                return Verdict::Inconclusive(format!(
                    "{} was inconclusive {inconclusive} times (inconclusiveLimit {})",
                    m.describe(),
                    analysis.inconclusive_limit
                ));
            }
            if decided < analysis.count {
                complete = false;
            }
        }
        if complete {
            Verdict::Passed
        } else {
            Verdict::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(yaml: &str) -> Analysis {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn m(unit: &str, result: MeasurementResult, time_ms: i64) -> Measurement {
        Measurement {
            metric: "m".into(),
            unit: Some(UnitName::new(unit.to_owned()).unwrap()),
            value: Some(0.5),
            result,
            time_ms,
            message: String::new(),
        }
    }

    const SPEC: &str = "count: 2\nconsecutiveErrorLimit: 2\nmetrics:\n- name: m\n  scope: Unit\n  webhook: {url: 'http://x:1/'}\n";

    #[test]
    fn every_unit_must_pass_count_times_and_one_failure_fails() {
        use MeasurementResult::*;
        let spec = analysis(SPEC);
        let units = [
            UnitName::new("a".to_owned()).unwrap(),
            UnitName::new("b".to_owned()).unwrap(),
        ];
        let mut run = AnalysisRun::new(0, 0);
        run.measurements = vec![
            m("a", Successful, 1),
            m("b", Successful, 1),
            m("a", Successful, 2),
        ];
        assert_eq!(run.verdict(&spec, &units), Verdict::Pending, "b has one");
        run.measurements.push(m("b", Successful, 2));
        assert_eq!(run.verdict(&spec, &units), Verdict::Passed);
        run.measurements.push(m("b", Failed, 3));
        let Verdict::Failed(why) = run.verdict(&spec, &units) else {
            panic!("a failure over failureLimit 0 fails");
        };
        assert!(why.contains("metric m in unit b: value 0.5"), "{why}");
    }

    #[test]
    fn errors_in_a_row_count_as_one_inconclusive_and_never_pass() {
        use MeasurementResult::*;
        let spec = analysis(SPEC);
        let units = [UnitName::new("a".to_owned()).unwrap()];
        let mut run = AnalysisRun::new(0, 0);
        run.measurements = vec![m("a", Error, 1), m("a", Successful, 2), m("a", Error, 3)];
        assert_eq!(run.verdict(&spec, &units), Verdict::Pending, "not in a row");
        run.measurements.push(m("a", Error, 4));
        assert!(matches!(
            run.verdict(&spec, &units),
            Verdict::Inconclusive(_)
        ));
        // Tolerated inconclusive measurements do not count towards `count`: no data never passes.
        let tolerant = analysis(&format!("inconclusiveLimit: 5\n{SPEC}"));
        run.measurements = vec![m("a", Inconclusive, 1), m("a", Inconclusive, 2)];
        assert_eq!(run.verdict(&tolerant, &units), Verdict::Pending);
        run.measurements.push(m("a", Successful, 3));
        run.measurements.push(m("a", Successful, 4));
        assert_eq!(run.verdict(&tolerant, &units), Verdict::Passed);
        assert_eq!(run.rounds(), 4);
        assert_eq!(run.next_due_ms(&spec), 4 + 10_000);
    }
}
