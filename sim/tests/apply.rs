//! Server-side apply on a custom resource with a status subresource: removing what a manager no longer
//! applies, on the main resource and on `/status`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

const API_VERSION: &str = "cafe.io/v1alpha1";
const KIND: &str = "Rollout";

/// Installs a namespaced `Rollout` CRD with the status subresource and returns an API for it.
async fn rollouts(client: &kube::Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "rollouts.cafe.io"},
        "spec": {
            "group": "cafe.io",
            "scope": "Namespaced",
            "names": {"plural": "rollouts", "singular": "rollout", "kind": KIND},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}
            }]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    tokio::time::timeout(
        DEADLINE,
        await_condition(crds, "rollouts.cafe.io", conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("cafe.io", "v1alpha1", KIND));
    Api::namespaced_with(client.clone(), "default", &ar)
}

/// A `Rollout` configuration with `spec.stableTemplate` holding one container when `image` is set.
fn rollout(image: Option<&str>) -> Value {
    let mut spec = json!({"replicas": 2});
    if let Some(image) = image {
        spec["stableTemplate"] = json!({"spec": {"containers": [{"name": "app", "image": image}]}});
    }
    json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "web"}, "spec": spec})
}

/// The apply managed fields entry of `manager`, on `subresource` (`None`: the main resource).
fn apply_entry<'a>(obj: &'a DynamicObject, manager: &str, subresource: Option<&str>) -> &'a Value {
    let entries = obj.metadata.managed_fields.as_ref().expect("managedFields");
    let entry = entries
        .iter()
        .find(|e| {
            e.manager.as_deref() == Some(manager)
                && e.operation.as_deref() == Some("Apply")
                && e.subresource.as_deref() == subresource
        })
        .unwrap_or_else(|| panic!("no Apply entry for {manager} on {subresource:?}: {entries:?}"));
    &entry.fields_v1.as_ref().expect("fieldsV1").0
}

#[tokio::test]
async fn apply_removes_a_dropped_list_item_and_the_objects_it_emptied() {
    let (cluster, client) = start(fast("ssa-items")).await;
    let api = rollouts(&client).await;
    let params = PatchParams::apply("mgr").force();

    let first = api
        .patch("web", &params, &Patch::Apply(rollout(Some("a:1"))))
        .await
        .expect("first apply creates");
    // The list item is owned with all its fields, its merge key included.
    let fields = apply_entry(&first, "mgr", None);
    assert_eq!(
        fields["f:spec"]["f:stableTemplate"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"],
        json!({".": {}, "f:name": {}, "f:image": {}})
    );

    let dropped = api
        .patch("web", &params, &Patch::Apply(rollout(None)))
        .await
        .expect("apply without the template");
    assert_eq!(
        dropped.data["spec"],
        json!({"replicas": 2}),
        "the template and everything in it go"
    );
    assert!(
        apply_entry(&dropped, "mgr", None)["f:spec"]
            .get("f:stableTemplate")
            .is_none()
    );

    let again = api
        .patch("web", &params, &Patch::Apply(rollout(Some("b:1"))))
        .await
        .expect("apply with the template again");
    assert_eq!(
        again.data["spec"]["stableTemplate"],
        json!({"spec": {"containers": [{"name": "app", "image": "b:1"}]}})
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn apply_keeps_what_another_manager_owns_in_a_dropped_object() {
    let (cluster, client) = start(fast("ssa-shared")).await;
    let api = rollouts(&client).await;
    api.patch(
        "web",
        &PatchParams::apply("mgr"),
        &Patch::Apply(rollout(Some("a:1"))),
    )
    .await
    .expect("mgr applies");
    let other = json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "web"},
        "spec": {"stableTemplate": {"metadata": {"labels": {"team": "x"}}}}});
    api.patch("web", &PatchParams::apply("other"), &Patch::Apply(other))
        .await
        .expect("other applies");
    let after = api
        .patch(
            "web",
            &PatchParams::apply("mgr"),
            &Patch::Apply(rollout(None)),
        )
        .await
        .expect("mgr drops the template");
    assert_eq!(
        after.data["spec"]["stableTemplate"],
        json!({"metadata": {"labels": {"team": "x"}}}),
        "only mgr's fields and the objects they alone filled go"
    );
    cluster.shutdown().await;
}

/// Moved from member-agent/tests/sim_bugs.rs: server-side apply on `/status` records the manager's
/// fields (`subresource: status`) and removes a field the manager applied before and omits now.
#[tokio::test]
async fn apply_on_the_status_subresource_removes_fields_the_manager_dropped() {
    let (cluster, client) = start(fast("ssa-status")).await;
    let api = rollouts(&client).await;
    let params = PatchParams::apply("tester").force();
    let status = |status: Value| json!({"apiVersion": API_VERSION, "kind": KIND, "status": status});

    // No creation through /status.
    let err = api
        .patch_status(
            "web",
            &params,
            &Patch::Apply(status(json!({"replicas": 1}))),
        )
        .await
        .expect_err("status apply on a missing object");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err}"
    );

    api.patch("web", &params, &Patch::Apply(rollout(None)))
        .await
        .expect("spec apply creates");
    let first = api
        .patch_status(
            "web",
            &params,
            &Patch::Apply(status(
                json!({"replicas": 1, "problems": [{"pod": "p", "reason": "NotReady"}]}),
            )),
        )
        .await
        .expect("first status apply");
    assert_eq!(first.data["status"]["problems"][0]["pod"], "p");
    assert_eq!(
        apply_entry(&first, "tester", Some("status")),
        &json!({"f:status": {"f:replicas": {}, "f:problems": {}}})
    );
    // The main-resource entry is the spec apply's, without status.
    assert_eq!(
        apply_entry(&first, "tester", None),
        &json!({"f:spec": {"f:replicas": {}}})
    );

    let second = api
        .patch_status(
            "web",
            &params,
            &Patch::Apply(status(json!({"replicas": 1}))),
        )
        .await
        .expect("second status apply");
    assert_eq!(second.data["status"], json!({"replicas": 1}));
    assert_eq!(
        apply_entry(&second, "tester", Some("status")),
        &json!({"f:status": {"f:replicas": {}}})
    );
    assert_eq!(
        second.data["spec"],
        json!({"replicas": 2}),
        "status applies leave spec alone"
    );
    // A later main-resource apply neither owns nor removes status.
    let main = api
        .patch("web", &params, &Patch::Apply(rollout(None)))
        .await
        .expect("spec apply again");
    assert_eq!(main.data["status"], json!({"replicas": 1}));
    cluster.shutdown().await;
}
