//! kube-rs CRUD, conflicts, errors, lists, patches and deletion semantics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn cm(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"tier": data}}, "data": {"k": data}}),
    )
    .unwrap()
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_and_conflicts() {
    let (cluster, client) = start(fast("crud")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    let rv1 = meta.resource_version.clone().unwrap();

    // 409 AlreadyExists on a second create.
    let err = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "AlreadyExists".into()));

    // Update with the current resourceVersion works and bumps it.
    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2 = updated.metadata.resource_version.clone().unwrap();
    assert_ne!(rv1, rv2);
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // The stale copy gets 409 Conflict.
    let err = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));

    // An update that changes nothing keeps the resourceVersion.
    let same = cms
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version.as_deref(),
        Some(rv2.as_str())
    );

    // 404 and 422.
    assert_eq!(
        api_error(cms.get("nope").await.unwrap_err()),
        (404, "NotFound".into())
    );
    let err = cms
        .create(&PostParams::default(), &cm("Bad_Name", "1"))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (422, "Invalid".into()));
    let ghost: Api<ConfigMap> = Api::namespaced(client.clone(), "ghost");
    assert_eq!(
        api_error(
            ghost
                .create(&PostParams::default(), &cm("x", "1"))
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    // generateName.
    let mut g = cm("", "1");
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = cms.create(&PostParams::default(), &g).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Delete.
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
    cluster.shutdown().await;
}

#[tokio::test]
async fn list_selectors_and_paging() {
    let (cluster, client) = start(fast("list")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &cm(&format!("c{i}"), if i % 2 == 0 { "even" } else { "odd" }),
        )
        .await
        .unwrap();
    }
    let all = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert!(all.metadata.resource_version.is_some());

    let page1 = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().expect("continue token");
    let page2 = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let page3 = cms
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(page2.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(page3.items.len(), 1);
    assert!(page3.metadata.continue_.is_none());
    let names: Vec<String> = [page1, page2, page3]
        .into_iter()
        .flat_map(|p| p.items)
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(names, vec!["c0", "c1", "c2", "c3", "c4"]);

    let count = |sel: &'static str| {
        let cms = cms.clone();
        async move {
            cms.list(&ListParams::default().labels(sel))
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(count("tier=even").await, 3);
    assert_eq!(count("tier!=even").await, 2);
    assert_eq!(count("tier in (odd, other)").await, 2);
    assert_eq!(count("tier notin (odd)").await, 3);
    assert_eq!(count("tier").await, 5);
    assert_eq!(count("!tier").await, 0);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=c3"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    // All namespaces.
    let everywhere: Api<ConfigMap> = Api::all(client);
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn patches_of_every_kind() {
    let (cluster, client) = start(fast("patch")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut p = pod("p", "nginx:1");
    p.spec
        .as_mut()
        .unwrap()
        .containers
        .push(serde_json::from_value(json!({"name": "side", "image": "envoy:1"})).unwrap());
    pods.create(&PostParams::default(), &p).await.unwrap();
    let pp = PatchParams::default();

    // Strategic merge: containers merge by name.
    let patched = pods
        .patch(
            "p",
            &pp,
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}),
            ),
        )
        .await
        .unwrap();
    let containers = &patched.spec.as_ref().unwrap().containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:2"));
    assert_eq!(containers[1].image.as_deref(), Some("envoy:1"));
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "an image change is a spec change"
    );

    // Merge patch on metadata does not bump the generation.
    let patched = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));

    // JSON patch with a passing and a failing test op.
    let ok = json!([{"op": "test", "path": "/metadata/labels/x", "value": "y"},
                    {"op": "replace", "path": "/metadata/labels/x", "value": "z"}]);
    let patched = pods
        .patch(
            "p",
            &pp,
            &Patch::<()>::Json(serde_json::from_value(ok).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["x"], "z");
    let bad = json!([{"op": "test", "path": "/metadata/labels/x", "value": "y"}]);
    let err = pods
        .patch(
            "p",
            &pp,
            &Patch::<()>::Json(serde_json::from_value(bad).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 422);

    // Pod spec changes beyond images are refused.
    let err = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (422, "Invalid".into()));

    // A merge patch carrying a stale resourceVersion is a conflict.
    let err = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));

    // Server-side apply: create, conflict between managers, force.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1", "b": "1"}});
    let created = cms
        .patch("ssa", &PatchParams::apply("mgr-a"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["a"], "1");
    assert_eq!(
        created.metadata.managed_fields.as_ref().unwrap()[0]
            .manager
            .as_deref(),
        Some("mgr-a")
    );
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "2"}});
    let err = cms
        .patch("ssa", &PatchParams::apply("mgr-b"), &Patch::Apply(&other))
        .await
        .unwrap_err();
    assert_eq!(api_error(err), (409, "Conflict".into()));
    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("mgr-b").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "2");
    // mgr-a drops "b": it is removed; "a" now belongs to mgr-b and stays.
    let shrink =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let shrunk = cms
        .patch("ssa", &PatchParams::apply("mgr-a"), &Patch::Apply(&shrink))
        .await
        .unwrap();
    assert_eq!(
        shrunk
            .data
            .unwrap_or_default()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("a".to_string(), "2".to_string())]
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn finalizers_cascade_and_namespaces() {
    let (cluster, client) = start(fast("del")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = cm("held", "1");
    held.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let deleting = cms.get("held").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(0));
    // No new finalizers once deleting.
    let err = cms
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/keep", "new"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 422);
    // Removing the last finalizer deletes it.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());

    // Owner reference cascade: deleting the owner deletes the dependent pod.
    let owner = cms
        .create(&PostParams::default(), &cm("owner", "1"))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut dependent = pod("dep", "nginx:1");
    dependent.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap()
    })).unwrap()]);
    pods.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    wait_pod(&pods, "dep", "dep scheduled", |p| {
        p.spec.as_ref().unwrap().node_name.is_some()
    })
    .await;
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    wait_gone(&pods, "dep").await;

    // Namespace deletion removes its contents, then the namespace.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    let team: Api<Pod> = Api::namespaced(client.clone(), "team");
    team.create(&PostParams::default(), &pod("t", "nginx:1"))
        .await
        .unwrap();
    wait_pod(&team, "t", "t scheduled", |p| {
        p.spec.as_ref().unwrap().node_name.is_some()
    })
    .await;
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("team").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = team
        .create(&PostParams::default(), &pod("late", "nginx:1"))
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 403);
    eventually("namespace team gone", DEADLINE, || async {
        matches!(nss.get_opt("team").await, Ok(None)).then_some(())
    })
    .await;
    cluster.shutdown().await;
}
