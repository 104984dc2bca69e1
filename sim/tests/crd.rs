//! CustomResourceDefinitions: installing one serves its resource, with the status subresource rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

fn crd(plural: &str, kind: &str, scope: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.cafe.io")},
        "spec": {
            "group": "cafe.io",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "shortNames": ["ips"]},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}
            }]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn crd_install_then_custom_resources_with_status() {
    let (cluster, client) = start(fast("crd")).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &crd("inplacesets", "InPlaceSet", "Namespaced"),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        DEADLINE,
        await_condition(
            crds.clone(),
            "inplacesets.cafe.io",
            conditions::is_crd_established(),
        ),
    )
    .await
    .unwrap()
    .unwrap();

    // Discovery lists the new resource.
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("cafe.io", "v1alpha1", "InPlaceSet"))
        .expect("discovered");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    let sets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cafe.io/v1alpha1", "kind": "InPlaceSet",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3},
        "status": {"ignored": true}
    }))
    .unwrap();
    let created = sets.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create"
    );

    let pp = PatchParams::default();
    // Status writes through /status do not bump the generation and do not touch spec.
    let st = sets
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(
                json!({"spec": {"replicas": 9}, "status": {"observedGeneration": 1, "ready": 0}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st.metadata.generation, Some(1));
    assert_eq!(st.data["spec"]["replicas"], 3);
    assert_eq!(st.data["status"]["ready"], 0);
    // Metadata writes do not bump it; main-resource writes ignore status.
    let m = sets
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}, "status": {"ready": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(m.metadata.generation, Some(1));
    assert_eq!(m.data["status"]["ready"], 0);
    // Spec writes do.
    let s = sets
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .unwrap();
    assert_eq!(s.metadata.generation, Some(2));
    // Server-side apply works on custom resources; strategic merge does not (415, as in Kubernetes).
    let applied = json!({"apiVersion": "cafe.io/v1alpha1", "kind": "InPlaceSet", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let a = sets
        .patch(
            "web",
            &PatchParams::apply("cafe-agent").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(a.data["spec"]["replicas"], 5);
    assert_eq!(a.metadata.generation, Some(3));
    let err = sets
        .patch(
            "web",
            &pp,
            &Patch::Strategic(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 415));

    // A cluster-scoped CRD.
    crds.create(&PostParams::default(), &crd("units", "Unit", "Cluster"))
        .await
        .unwrap();
    let units_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cafe.io", "v1alpha1", "Unit"),
        "units",
    );
    let units: Api<DynamicObject> = Api::all_with(client.clone(), &units_ar);
    let unit: DynamicObject = serde_json::from_value(json!({"apiVersion": "cafe.io/v1alpha1", "kind": "Unit", "metadata": {"name": "sh-az1"}, "spec": {}})).unwrap();
    units.create(&PostParams::default(), &unit).await.unwrap();
    assert_eq!(
        units.list(&Default::default()).await.unwrap().items.len(),
        1
    );

    // Deleting the CRD stops serving it.
    crds.delete("units.cafe.io", &Default::default())
        .await
        .unwrap();
    let err = units.list(&Default::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    cluster.shutdown().await;
}
