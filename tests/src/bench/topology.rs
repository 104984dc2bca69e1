//! The benchmark's world: units `u0000..` one per cluster `c0000..`, regions of 100 units, and
//! deployments each spread over distinct units. Everything is derived from the sizes, so two runs
//! apply exactly the same documents.

use serde_json::{Value, json};

/// Units per region.
pub const UNITS_PER_REGION: usize = 100;
/// The deployments' namespace.
pub const NAMESPACE: &str = "bench";
/// Pods per unit: with beta and 2 batches every group changes every unit (targets 1, 3, 5), so each
/// group transition sends one new slice to each unit.
pub const PODS_PER_UNIT: usize = 5;
/// The image before a release.
pub const IMAGE_V1: &str = "registry.example/bench:1";
/// The image a release moves to.
pub const IMAGE_V2: &str = "registry.example/bench:2";

/// The name of unit `i`.
pub fn unit(i: usize) -> String {
    format!("u{i:04}")
}

/// The cluster serving unit `i`.
pub fn cluster(i: usize) -> String {
    format!("c{i:04}")
}

/// The name of deployment `i`.
pub fn deployment(i: usize) -> String {
    format!("d{i:04}")
}

/// Every cluster's name.
pub fn clusters(count: usize) -> Vec<String> {
    (0..count).map(cluster).collect()
}

/// The LogicalUnit documents of `count` units.
pub fn unit_documents(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            json!({
                "apiVersion": "cafe.io/v1alpha1",
                "kind": "LogicalUnit",
                "metadata": {"name": unit(i)},
                "spec": {
                    "region": format!("r{:02}", i / UNITS_PER_REGION),
                    "zone": cluster(i),
                    "cluster": cluster(i),
                },
            })
            .to_string()
        })
        .collect()
}

/// How deployments are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Deployment `i` runs in units `i*k .. i*k+k` (mod the unit count): every unit hosts the same
    /// number of slices.
    Spread,
    /// Every deployment runs in unit 0 plus `k - 1` others of unit 0's region, round robin: unit 0
    /// hosts every deployment (the failover scenario evacuates it).
    SharedFirstUnit,
}

/// The units deployment `i` runs in.
pub fn units_of(
    i: usize,
    per_deployment: usize,
    units: usize,
    placement: Placement,
) -> Vec<String> {
    match placement {
        Placement::Spread => (0..per_deployment)
            .map(|k| unit((i * per_deployment + k) % units))
            .collect(),
        Placement::SharedFirstUnit => {
            let region = units.min(UNITS_PER_REGION);
            let others = region - 1;
            std::iter::once(unit(0))
                .chain(
                    (0..per_deployment - 1)
                        .map(|k| unit(1 + (i * (per_deployment - 1) + k) % others)),
                )
                .collect()
        }
    }
}

/// A CafeDeployment document.
pub fn deployment_document(name: &str, units: &[String], image: &str) -> Value {
    json!({
        "apiVersion": "cafe.io/v1alpha1",
        "kind": "CafeDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": PODS_PER_UNIT * units.len(),
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "topology": {"units": units, "failoverScope": "Region"},
            "strategy": {
                "beta": true,
                "batches": 2,
                "pause": "Auto",
                "autoPauseSeconds": 0,
                "minReadySeconds": 0,
            },
        },
    })
}

/// The documents of `count` deployments at `image`.
pub fn deployment_documents(
    count: usize,
    per_deployment: usize,
    units: usize,
    placement: Placement,
    image: &str,
) -> Vec<String> {
    (0..count)
        .map(|i| {
            deployment_document(
                &deployment(i),
                &units_of(i, per_deployment, units, placement),
                image,
            )
            .to_string()
        })
        .collect()
}

/// The deployment part (`namespace/name`) of a slice id `namespace/name@unit`.
pub fn slice_deployment(id: &str) -> &str {
    id.split_once('@').map_or(id, |(d, _)| d)
}

/// The unit part of a slice id.
pub fn slice_unit(id: &str) -> &str {
    id.split_once('@').map_or("", |(_, u)| u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn spread_gives_every_unit_the_same_load_and_distinct_units_per_deployment() {
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..2000 {
            let units = units_of(i, 5, 1000, Placement::Spread);
            assert_eq!(units.iter().collect::<BTreeSet<_>>().len(), 5);
            for u in units {
                *load.entry(u).or_default() += 1;
            }
        }
        assert_eq!(load.len(), 1000);
        assert!(load.values().all(|n| *n == 10));
    }

    #[test]
    fn shared_first_unit_stays_in_its_region() {
        for i in 0..2000 {
            let units = units_of(i, 5, 1000, Placement::SharedFirstUnit);
            assert_eq!(units[0], "u0000");
            assert_eq!(units.iter().collect::<BTreeSet<_>>().len(), 5);
            assert!(units.iter().all(|u| u.as_str() < "u0100"));
        }
        let small = units_of(3, 5, 10, Placement::SharedFirstUnit);
        assert_eq!(small.iter().collect::<BTreeSet<_>>().len(), 5);
    }

    #[test]
    fn documents_parse_as_resources() {
        let docs = deployment_documents(2, 5, 10, Placement::Spread, IMAGE_V1);
        for doc in docs.iter().chain(unit_documents(3).iter()) {
            let yaml = doc.clone();
            cafe_federation::resources::parse_yaml_documents(&yaml).expect("valid");
        }
    }

    #[test]
    fn slice_ids_split() {
        assert_eq!(slice_deployment("bench/d0001@u0002"), "bench/d0001");
        assert_eq!(slice_unit("bench/d0001@u0002"), "u0002");
    }
}
