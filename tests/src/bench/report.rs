//! One scenario's figures: an ordered list of named JSON values, printed as one JSON document or as
//! rows of a table, always in the order the scenario added them (deterministic output).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::fmt::Write as _;

/// The figures of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Report {
    fields: Vec<(&'static str, Value)>,
}

impl Report {
    /// A report for `scenario`.
    pub fn new(scenario: &str) -> Self {
        Self::default().with("scenario", scenario)
    }

    /// Adds (or replaces) a field.
    pub fn with(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }

    /// Adds (or replaces) a field in place.
    pub fn set(&mut self, name: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name, value)),
        }
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The report as a JSON value.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
        )
    }

    /// The report as `name  value` rows.
    pub fn table(&self) -> String {
        let width = self.fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in &self.fields {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            let _ = writeln!(out, "  {name:<width$}  {text}");
        }
        out
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, value) in &self.fields {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Milliseconds with one decimal, for JSON.
pub fn ms(duration: std::time::Duration) -> Value {
    round1(duration.as_secs_f64() * 1000.0)
}

/// A number rounded to one decimal.
pub fn round1(value: f64) -> Value {
    serde_json::Number::from_f64((value * 10.0).round() / 10.0).map_or(Value::Null, Value::Number)
}

/// A number rounded to three decimals.
pub fn round3(value: f64) -> Value {
    serde_json::Number::from_f64((value * 1000.0).round() / 1000.0)
        .map_or(Value::Null, Value::Number)
}

/// Latency samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, duration: std::time::Duration) {
        self.values.push(duration.as_secs_f64() * 1000.0);
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The nearest-rank percentile `p` (0..=100), in ms; `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
    }

    /// The percentile as a JSON number (null without samples).
    pub fn percentile_json(&self, p: f64) -> Value {
        self.percentile(p).map_or(Value::Null, round1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples = Samples::default();
        for ms in 1..=100 {
            samples.push(Duration::from_millis(ms));
        }
        assert_eq!(samples.percentile(50.0), Some(50.0));
        assert_eq!(samples.percentile(99.0), Some(99.0));
        assert_eq!(samples.percentile(100.0), Some(100.0));
        assert_eq!(Samples::default().percentile(50.0), None);
    }

    #[test]
    fn reports_keep_the_order_fields_were_added_in() {
        let report = Report::new("fanout").with("b", 1).with("a", 2).with("b", 3);
        assert_eq!(
            serde_json::to_string(&report).expect("serializes"),
            r#"{"scenario":"fanout","b":3,"a":2}"#
        );
        assert!(report.table().contains("scenario  fanout"));
    }
}
