//! Reading and validating resource documents: every error names its field.

use cafe_federation::names::UnitName;
use cafe_federation::resources::{
    DocumentError, LogicalUnit, PauseMode, Resource, UpgradeKind, parse_json_document,
    parse_yaml_documents,
};
use std::collections::BTreeMap;

const UNITS: &str = include_str!("../../deploy/examples/units.yaml");
const PAYMENTS: &str = include_str!("../../deploy/examples/payments.yaml");

fn units() -> BTreeMap<UnitName, LogicalUnit> {
    parse_yaml_documents(UNITS)
        .expect("example units are valid")
        .into_iter()
        .map(|r| match r {
            Resource::Unit(u) => (u.name().expect("valid name"), *u),
            Resource::Deployment(_) | Resource::Pipeline(_) => {
                panic!("units.yaml holds only units")
            }
        })
        .collect()
}

fn deployment_with(spec_tail: &str) -> String {
    format!(
        "apiVersion: cafe.io/v1alpha1
kind: CafeDeployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: app, image: web:1}}]}}
{spec_tail}"
    )
}

/// The `path: message` lines of the only failing document.
fn errors_of(text: &str) -> Vec<String> {
    let failures: Vec<DocumentError> = parse_yaml_documents(text).expect_err("must be refused");
    assert_eq!(failures.len(), 1, "{failures:?}");
    failures[0]
        .errors
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn assert_error(text: &str, expected: &str) {
    let errors = errors_of(text);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?}, got {errors:?}"
    );
}

#[test]
fn example_files_parse_with_defaults() {
    assert_eq!(units().len(), 4);
    let resources = parse_yaml_documents(PAYMENTS).expect("example deployment is valid");
    let [Resource::Deployment(payments)] = resources.as_slice() else {
        panic!("one deployment expected, got {resources:?}");
    };
    assert_eq!(payments.namespace(), "finance");
    assert_eq!(payments.spec.strategy.upgrade, UpgradeKind::InPlace);
    assert_eq!(payments.spec.strategy.pause, PauseMode::Manual);
    assert_eq!(payments.spec.strategy.progress_deadline_seconds, 600);
    assert!(payments.resolve_units(&units()).is_ok());
}

#[test]
fn defaults_apply_when_strategy_and_traffic_are_omitted() {
    let text = deployment_with("  topology: {units: [sh-az1]}\n");
    let resources = parse_yaml_documents(&text).expect("valid");
    let Resource::Deployment(d) = &resources[0] else {
        panic!("deployment expected")
    };
    assert_eq!(d.spec.strategy.batches, 1);
    assert!(!d.spec.strategy.beta);
    assert_eq!(d.spec.strategy.max_unavailable, 1);
    assert_eq!(d.spec.traffic.readiness_gate, "cafe.io/traffic-ready");
    assert!(d.spec.traffic.finalizers.is_empty());
}

#[test]
fn unknown_units_are_named_by_index() {
    let text = deployment_with("  topology: {units: [sh-az1, sh-az2, sh-az9]}\n");
    let resources = parse_yaml_documents(&text).expect("structurally valid");
    let Resource::Deployment(d) = &resources[0] else {
        panic!("deployment expected")
    };
    let errors = d
        .resolve_units(&units())
        .expect_err("sh-az9 does not exist");
    assert_eq!(
        errors.to_string(),
        r#"spec.topology.units[2]: unknown unit "sh-az9""#
    );
}

#[test]
fn field_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "  topology: {units: [sh-az1, sh-az1]}\n",
            r#"spec.topology.units[1]: duplicate unit "sh-az1""#,
        ),
        (
            "  topology: {units: []}\n",
            "spec.topology.units: must name at least one unit",
        ),
        (
            "  topology: {units: [a, b], unitReplicas: [{unit: a, replicas: 2}, {unit: b, min: 1}]}\n",
            "spec.topology.unitReplicas: fixed replicas and min/max cannot be mixed",
        ),
        (
            "  topology: {units: [a], unitReplicas: [{unit: a, min: 5, max: 2}]}\n",
            "spec.topology.unitReplicas[0] (a).min: 5 is more than max 2",
        ),
        (
            "  topology: {units: [a], unitReplicas: [{unit: a, replicas: \"140%\"}]}\n",
            "spec.topology.unitReplicas[0] (a).replicas: must be within 0% and 100%",
        ),
        (
            "  topology: {units: [a], unitReplicas: [{unit: a, replicas: \"4\"}]}\n",
            "spec.topology.unitReplicas[0].replicas",
        ),
        (
            "  topology: {units: [a]}\n  strategy: {batches: 0}\n",
            "spec.strategy.batches: must be at least 1",
        ),
        (
            "  topology: {units: [a]}\n  strategy: {maxUnavailable: 0}\n",
            "spec.strategy.maxUnavailable: must be at least 1",
        ),
        (
            "  topology: {units: [a]}\n  strategy: {minReadySeconds: 700}\n",
            "spec.strategy.progressDeadlineSeconds: must be greater than minReadySeconds",
        ),
        (
            "  topology: {units: [a]}\n  strategy: {regionOrder: Sequential}\n",
            "spec.strategy.regions",
        ),
        (
            "  topology: {units: [a]}\n  strategy: {pause: Sometimes}\n",
            "spec.strategy.pause: unknown variant `Sometimes`",
        ),
        (
            "  topology: {units: [a]}\n  strategy: {batchs: 2}\n",
            "spec.strategy.batchs: unknown field `batchs`",
        ),
        (
            "  topology: {units: [a]}\n  traffic: {finalizers: [\"bad/name/x\"]}\n",
            "spec.traffic.finalizers[0]",
        ),
        (
            "  topology: {units: [a]}\n  traffic: {readinessGate: \"\"}\n",
            "spec.traffic.readinessGate",
        ),
        ("  topology: {units: [Bad]}\n", "spec.topology.units[0]"),
    ];
    for (tail, expected) in cases {
        assert_error(&deployment_with(tail), expected);
    }
}

#[test]
fn template_problems_name_the_field() {
    let wrong_labels = deployment_with("  topology: {units: [a]}\n")
        .replace("labels: {app: web}", "labels: {app: other}");
    assert_error(
        &wrong_labels,
        "spec.template.metadata.labels: must carry the selector's label app=web",
    );
    let typo = deployment_with("  topology: {units: [a]}\n").replace(
        "spec: {containers",
        "spec: {restartPolcy: Always, containers",
    );
    assert_error(&typo, "spec.template.spec.restartPolcy: unknown field");
    let no_image =
        deployment_with("  topology: {units: [a]}\n").replace("image: web:1", "image: \"\"");
    assert_error(
        &no_image,
        "spec.template.spec.containers[0].image: is required",
    );
    let not_a_pod = deployment_with("  topology: {units: [a]}\n").replace(
        "spec: {containers: [{name: app, image: web:1}]}",
        "spec: {containers: 3}",
    );
    assert_error(&not_a_pod, "spec.template");
}

#[test]
fn sequential_must_list_exactly_the_regions_in_play() {
    let text = deployment_with(
        "  topology: {units: [sh-az1, hz-az1]}\n  strategy: {regionOrder: Sequential, regions: [cn-shanghai, cn-beijing]}\n",
    );
    let resources = parse_yaml_documents(&text).expect("structurally valid");
    let Resource::Deployment(d) = &resources[0] else {
        panic!("deployment expected")
    };
    let errors = d
        .resolve_units(&units())
        .expect_err("regions do not match")
        .to_string();
    assert!(errors.contains(r#""cn-hangzhou" is missing"#), "{errors}");
    assert!(
        errors.contains(
            r#"spec.strategy.regions[1]: no unit of the deployment is in region "cn-beijing""#
        ),
        "{errors}"
    );
}

#[test]
fn unit_documents_are_checked() {
    let text = "apiVersion: cafe.io/v1alpha1\nkind: LogicalUnit\nmetadata: {name: u1, namespace: x}\nspec: {region: r, zone: z, cluster: C1, weight: 0}\n";
    let errors = errors_of(text);
    assert!(
        errors.iter().any(|e| e.starts_with("spec.cluster:")),
        "{errors:?}"
    );
    let fixed = text.replace("C1", "c1");
    let errors = errors_of(&fixed);
    assert!(
        errors.iter().any(|e| e.starts_with("metadata.namespace:")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("spec.weight: must be at least 1")),
        "{errors:?}"
    );
}

#[test]
fn kinds_and_versions_are_checked_and_every_document_reported() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\napiVersion: cafe.io/v2\nkind: LogicalUnit\nmetadata: {name: u}\nspec: {region: r, zone: z, cluster: c}\n";
    let failures = parse_yaml_documents(text).expect_err("both refused");
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].index, 1);
    assert!(
        failures[0]
            .to_string()
            .contains(r#"kind: unknown kind "Pod""#),
        "{}",
        failures[0]
    );
    assert_eq!(failures[1].index, 2);
    assert!(
        failures[1].to_string().contains("apiVersion: must be"),
        "{}",
        failures[1]
    );
}

#[test]
fn json_documents_parse_like_yaml_and_round_trip() {
    let resources = parse_yaml_documents(PAYMENTS).expect("valid");
    let Resource::Deployment(d) = &resources[0] else {
        panic!("deployment expected")
    };
    let json = serde_json::to_string(d).expect("serializes");
    let again = parse_json_document(1, &json).expect("the serialized form parses again");
    assert_eq!(again, resources[0]);
}
