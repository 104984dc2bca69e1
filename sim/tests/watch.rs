//! Watches: events, selectors, bookmarks, 410 Expired and kube-runtime's watcher relisting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

fn cm(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}})).unwrap()
}

async fn next_event<S>(stream: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("an event before the deadline")
        .expect("the stream is open")
        .expect("a decodable event")
}

#[tokio::test]
async fn watch_events_follow_the_selector() {
    let (cluster, client) = start(fast("watch")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let start_rv = cms
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = cms
        .watch(
            &WatchParams::default().labels("app=web").timeout(30),
            &start_rv,
        )
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("a", "web"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("ignored", "db"))
        .await
        .unwrap();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("a"))
    );
    let pp = PatchParams::default();
    cms.patch("a", &pp, &Patch::Merge(json!({"data": {"x": "1"}})))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Modified(_)
    ));
    // Leaving the selector reads as DELETED, entering it as ADDED.
    cms.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Deleted(_)
    ));
    cms.patch(
        "ignored",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("ignored"))
    );
    cms.delete("ignored", &Default::default()).await.unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Deleted(_)
    ));

    // A watch from the start replays history in order.
    let mut replay = cms
        .watch(&WatchParams::default(), &start_rv)
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next_event(&mut replay).await, WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("a"))
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn bookmarks_and_timeouts() {
    let (cluster, client) =
        start(fast("bookmarks").with_bookmark_interval(Duration::from_millis(50))).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    // Events keep coming until the bookmark; each wait is bounded by `next_event`'s deadline.
    let bookmark = loop {
        if let WatchEvent::Bookmark(b) = next_event(&mut stream).await {
            break b;
        }
    };
    assert!(!bookmark.metadata.resource_version.is_empty());
    // timeoutSeconds=1 ends the stream cleanly.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = stream.next().await {
            e.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch ended after its timeout");
    cluster.shutdown().await;
}

#[tokio::test]
async fn expired_resource_version_gets_410() {
    let (cluster, client) = start(fast("expired").with_watch_history(2)).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let old_rv = cms
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), "web"))
            .await
            .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_watcher_relists_after_410() {
    let (cluster, client) = start(fast("relist").with_watch_history(3)).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", "web"))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Bookmarks would move the watcher's resourceVersion past the compaction; this test wants it stale.
    let w = watcher(cms.clone(), watcher::Config::default().disable_bookmarks());
    let task = tokio::spawn(async move {
        let mut w = w.boxed();
        while let Some(e) = w.next().await {
            if tx.send(e.map_err(|e| e.to_string())).is_err() {
                break;
            }
        }
    });
    type Item = Result<watcher::Event<ConfigMap>, String>;
    async fn wait_for(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Item>,
        pred: fn(&Item) -> bool,
        what: &str,
    ) {
        loop {
            let e = tokio::time::timeout(DEADLINE, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("the watcher task is running");
            if pred(&e) {
                return;
            }
        }
    }
    wait_for(
        &mut rx,
        |e| matches!(e, Ok(watcher::Event::InitDone)),
        "the first InitDone",
    )
    .await;
    // Churn elsewhere pushes the watcher's resourceVersion out of the retained history.
    let nss: Api<Namespace> = Api::all(client);
    for i in 0..5 {
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("churn-{i}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    cluster.drop_watches();
    wait_for(
        &mut rx,
        |e| matches!(e, Err(msg) if msg.contains("410") || msg.contains("Expired")),
        "a 410 error",
    )
    .await;
    wait_for(
        &mut rx,
        |e| matches!(e, Ok(watcher::Event::Init)),
        "a relist",
    )
    .await;
    wait_for(&mut rx, |e| matches!(e, Ok(watcher::Event::InitApply(c)) if c.metadata.name.as_deref() == Some("a")), "the relisted object").await;
    wait_for(
        &mut rx,
        |e| matches!(e, Ok(watcher::Event::InitDone)),
        "the second InitDone",
    )
    .await;
    task.abort();
    cluster.shutdown().await;
}

#[tokio::test]
async fn watcher_sees_changes_through_dropped_watches() {
    let (cluster, client) = start(fast("dropped")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let stream = watcher(cms.clone(), watcher::Config::default()).applied_objects();
    let collector = tokio::spawn(async move {
        stream
            .try_filter(|c| futures::future::ready(c.metadata.name.as_deref() == Some("late")))
            .boxed()
            .try_next()
            .await
    });
    cms.create(&PostParams::default(), &cm("early", "web"))
        .await
        .unwrap();
    cluster.drop_watches();
    cms.create(&PostParams::default(), &cm("late", "web"))
        .await
        .unwrap();
    let found = tokio::time::timeout(DEADLINE, collector)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(found.unwrap().metadata.name.as_deref(), Some("late"));
    cluster.shutdown().await;
}
