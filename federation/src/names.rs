//! Typed names: every identifier is parsed once, at the edge, into a type that cannot be invalid.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::sync::Arc;

/// The longest DNS-1123 label Kubernetes accepts.
pub const DNS1123_LABEL_MAX: usize = 63;

/// Why a name is not a DNS-1123 label.
pub fn dns1123_label_error(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if value.len() > DNS1123_LABEL_MAX {
        return Some(format!(
            "must be at most {DNS1123_LABEL_MAX} characters, got {}",
            value.len()
        ));
    }
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok_ends = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_ends {
        return Some(format!(
            "{value:?} is not a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    None
}

/// Why a string is not a Kubernetes qualified name (`prefix/name` or `name`), as used by label keys,
/// finalizers and condition types.
pub fn qualified_name_error(value: &str) -> Option<String> {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix
                .split('.')
                .all(|part| dns1123_label_error(part).is_none());
        if !valid_prefix {
            return Some(format!("{value:?}: the prefix must be a DNS subdomain"));
        }
    }
    let valid_name = !name.is_empty()
        && name.len() <= DNS1123_LABEL_MAX
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_name {
        return Some(format!(
            "{value:?} is not a qualified name: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, with an optional DNS-subdomain prefix and '/'"
        ));
    }
    None
}

/// Why a string is not a valid label value.
pub fn label_value_error(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let valid = value.len() <= DNS1123_LABEL_MAX
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!valid).then(|| {
        format!("{value:?} is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
    })
}

/// A name that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

macro_rules! dns_label_name {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        /// Shared text: the hub copies names all the time (map keys of its model), so that a copy
        /// costs a counter, not an allocation.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses a DNS-1123 label.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
                let value = value.into();
                match dns1123_label_error(&value) {
                    Some(reason) => Err(InvalidName(reason)),
                    None => Ok(Self(Arc::from(value))),
                }
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidName;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::new(value)
            }
        }
    };
}

dns_label_name!(
    /// The name of a logical unit (a cell).
    UnitName
);
dns_label_name!(
    /// The name of a member cluster; also the identity in its agent's certificate.
    ClusterName
);
dns_label_name!(
    /// A Kubernetes namespace.
    Namespace
);
dns_label_name!(
    /// The name of a CafeDeployment.
    DeploymentName
);

/// A region: a group of datacenters. Any non-empty label value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RegionName(String);

impl RegionName {
    /// Parses a region name (a non-empty label value, so it can be used as a label).
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidName> {
        let value = value.into();
        if value.is_empty() {
            return Err(InvalidName("must not be empty".to_owned()));
        }
        match label_value_error(&value) {
            Some(reason) => Err(InvalidName(reason)),
            None => Ok(Self(value)),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RegionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

/// Names one deployment: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentKey {
    /// The deployment's namespace.
    pub namespace: Namespace,
    /// The deployment's name.
    pub name: DeploymentName,
}

impl fmt::Display for DeploymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One deployment's part in one unit: `namespace/name@unit`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceId {
    /// The deployment.
    pub deployment: DeploymentKey,
    /// The unit.
    pub unit: UnitName,
}

impl SliceId {
    /// The slice of `deployment` in `unit`.
    pub fn new(deployment: &DeploymentKey, unit: &UnitName) -> Self {
        Self {
            deployment: deployment.clone(),
            unit: unit.clone(),
        }
    }
}

impl fmt::Display for SliceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = cafe_proto::SLICE_ID_UNIT_SEPARATOR;
        write!(f, "{}{separator}{}", self.deployment, self.unit)
    }
}

impl std::str::FromStr for SliceId {
    type Err = InvalidName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let malformed =
            || InvalidName(format!("{value:?} is not a slice id (namespace/name@unit)"));
        let (namespace, name, unit) =
            cafe_proto::protocol::split_slice_id(value).ok_or_else(malformed)?;
        Ok(Self {
            deployment: DeploymentKey {
                namespace: Namespace::new(namespace)?,
                name: DeploymentName::new(name)?,
            },
            unit: UnitName::new(unit)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(UnitName::new("sh-az1").is_ok());
        for bad in ["", "Sh", "-a", "a-", "a_b", &"x".repeat(64)] {
            assert!(UnitName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn qualified_names() {
        assert!(qualified_name_error("cafe.io/traffic-ready").is_none());
        assert!(qualified_name_error("traffic.cafe.io/lb").is_none());
        assert!(qualified_name_error("ready").is_none());
        assert!(qualified_name_error("/x").is_some());
        assert!(qualified_name_error("Bad_Prefix/x").is_some());
        assert!(qualified_name_error("cafe.io/").is_some());
    }

    #[test]
    fn slice_ids_round_trip() {
        let id: SliceId = "finance/payments@sh-az1".parse().expect("valid id");
        assert_eq!(id.to_string(), "finance/payments@sh-az1");
        assert!("payments@sh-az1".parse::<SliceId>().is_err());
        assert!("finance/payments".parse::<SliceId>().is_err());
    }
}
