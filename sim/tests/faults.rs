//! Fault injection: latency, errors, dropped watches, offline and back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cafe_sim::{Faults, FaultsUpdate};
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchParams};

/// Opens a raw watch on configmaps; once its headers are in, returns a task reading the rest.
async fn raw_watch(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "the watch answered");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    tokio::spawn(async move {
        let mut rest = Vec::new();
        // A reset connection is an acceptable way to be cut off too.
        let _ = s.read_to_end(&mut rest).await;
        String::from_utf8_lossy(&rest).to_string()
    })
}

#[tokio::test]
async fn latency_delays_api_requests() {
    let (cluster, client) = start(fast("latency")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.list(&Default::default()).await.unwrap();
    cluster.set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let t = Instant::now();
    cms.list(&Default::default()).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    cluster.set_faults(Faults::default());
    let t = Instant::now();
    cms.list(&Default::default()).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn error_rate_answers_500_and_429() {
    let (cluster, client) = start(fast("errors")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // Through the control endpoint, as another process would.
    let (code, _, body) = http(
        cluster.addr(),
        "POST",
        "/sim/v1/faults",
        r#"{"errorRate": 1.0}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(cluster.faults().error_rate, 1.0);
    // Raw requests: kube-rs retries 429s by itself.
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (code, _, body) = http(
            cluster.addr(),
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "",
        )
        .await;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], code);
        codes.insert(code);
    }
    assert_eq!(codes.into_iter().collect::<Vec<_>>(), vec![429, 500]);
    // 429 carries Retry-After.
    let retry_after = eventually("a 429", DEADLINE, || async {
        let (code, head, _) = http(
            cluster.addr(),
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "",
        )
        .await;
        (code == 429).then_some(head)
    })
    .await;
    assert!(
        retry_after.to_ascii_lowercase().contains("retry-after: 1"),
        "{retry_after}"
    );
    cluster.update_faults(FaultsUpdate {
        error_rate: Some(0.0),
        ..FaultsUpdate::default()
    });
    cms.list(&Default::default()).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn drop_watches_closes_open_watches() {
    let (cluster, client) = start(fast("dropwatch")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = cms
        .watch(&WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let raw = raw_watch(cluster.addr()).await;
    let (code, _, _) = http(
        cluster.addr(),
        "POST",
        "/sim/v1/faults",
        r#"{"dropWatches": true}"#,
    )
    .await;
    assert_eq!(code, 200);
    let ended = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the watch ends");
    assert!(ended.is_none(), "the stream ended cleanly: {ended:?}");
    let rest = tokio::time::timeout(DEADLINE, raw)
        .await
        .expect("the raw watch ends")
        .unwrap();
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "a clean end of the chunked response: {rest:?}"
    );
    assert!(!cluster.faults().drop_watches, "dropWatches is an action");
    // New watches work.
    let _open = cms.watch(&WatchParams::default(), "0").await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn offline_cluster_answers_nothing_until_it_is_back() {
    let (cluster, client) = start(fast("offline")).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let watch = raw_watch(cluster.addr()).await;
    cluster.update_faults(FaultsUpdate {
        offline: Some(true),
        ..FaultsUpdate::default()
    });
    // The open watch is cut: the chunked response never gets its final chunk.
    let rest = tokio::time::timeout(DEADLINE, watch)
        .await
        .expect("the watch breaks")
        .unwrap();
    assert!(
        !rest.ends_with("0\r\n\r\n"),
        "the watch ended cleanly: {rest:?}"
    );
    // API requests get their connection closed: a transport error, not a Status.
    let err = tokio::time::timeout(DEADLINE, cms.list(&Default::default()))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "no answer expected, got {err:?}"
    );
    // The control endpoint stays reachable and brings it back.
    let (code, _, body) = http(cluster.addr(), "GET", "/sim/v1/faults", "").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"offline\":true"), "{body}");
    let (code, _, _) = http(
        cluster.addr(),
        "POST",
        "/sim/v1/faults",
        r#"{"offline": false}"#,
    )
    .await;
    assert_eq!(code, 200);
    eventually("the API back", DEADLINE, || async {
        cms.list(&Default::default()).await.ok()
    })
    .await;
    cluster.shutdown().await;
}
