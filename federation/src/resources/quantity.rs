//! `replicas: 4` or `replicas: "40%"`: a count or a share of `spec.replicas`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A count of replicas, or a percentage of the deployment's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaCount {
    /// Exactly this many.
    Count(i32),
    /// This share of `spec.replicas`, 0 to 100, rounded half up.
    Percent(u32),
}

impl ReplicaCount {
    /// The number of replicas out of `total`: a percentage rounds half up.
    pub fn resolve(self, total: i32) -> i32 {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => {
                let scaled = i64::from(total.max(0)) * i64::from(p);
                // Half up: add half of the divisor before dividing. p <= 100 keeps this within i32.
                i32::try_from((scaled + 50) / 100).unwrap_or(i32::MAX)
            }
        }
    }

    /// Why the value is out of range, if it is.
    pub fn range_error(self) -> Option<String> {
        match self {
            Self::Count(n) if n < 0 => Some(format!("must not be negative, got {n}")),
            Self::Percent(p) if p > 100 => Some(format!("must be within 0% and 100%, got {p}%")),
            _ => None,
        }
    }
}

impl fmt::Display for ReplicaCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for ReplicaCount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => serializer.serialize_i32(*n),
            Self::Percent(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for ReplicaCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ReplicaCount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a percentage such as \"40%\"")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ReplicaCount, E> {
                i32::try_from(v)
                    .map(ReplicaCount::Count)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ReplicaCount, E> {
                i32::try_from(v)
                    .map(ReplicaCount::Count)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ReplicaCount, E> {
                let digits = v.strip_suffix('%').ok_or_else(|| {
                    E::custom(format!(
                        "{v:?} is neither an integer nor a percentage like \"40%\""
                    ))
                })?;
                digits
                    .trim()
                    .parse::<u32>()
                    .map(ReplicaCount::Percent)
                    .map_err(|_| E::custom(format!("{v:?} is not a whole percentage")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_half_up() {
        assert_eq!(ReplicaCount::Percent(25).resolve(10), 3); // 2.5 -> 3
        assert_eq!(ReplicaCount::Percent(24).resolve(10), 2); // 2.4 -> 2
        assert_eq!(ReplicaCount::Percent(100).resolve(7), 7);
        assert_eq!(ReplicaCount::Count(4).resolve(10), 4);
    }

    #[test]
    fn parses_counts_and_percentages() {
        let parsed: Vec<ReplicaCount> =
            serde_json::from_str(r#"[4, "40%", "0%"]"#).expect("valid values");
        assert_eq!(
            parsed,
            [
                ReplicaCount::Count(4),
                ReplicaCount::Percent(40),
                ReplicaCount::Percent(0)
            ]
        );
        assert!(serde_json::from_str::<ReplicaCount>(r#""40""#).is_err());
        assert!(serde_json::from_str::<ReplicaCount>(r#""4.5%""#).is_err());
        assert!(ReplicaCount::Percent(101).range_error().is_some());
    }
}
