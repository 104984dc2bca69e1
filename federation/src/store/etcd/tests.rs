//! The etcd store on a real etcd process.

use super::election::LeaderRecord;
use super::*;
use cafe_sim::control_plane::etcd::EtcdCluster;
use std::sync::Arc;

async fn etcd(dir: &tempfile::TempDir) -> EtcdCluster {
    EtcdCluster::start(dir.path().join("etcd"), 1)
        .await
        .expect("etcd starts")
}

fn options(cluster: &EtcdCluster) -> EtcdOptions {
    EtcdOptions::new(cluster.urls())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_behaves_like_the_others_and_reads_its_own_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = etcd(&dir).await;
    let store = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let shared = Arc::clone(&store);
    blocking(move || crate::store::tests::exercise(shared.as_ref())).await;
    // Another store on the same prefix sees the same records; one on another prefix sees none.
    let other = EtcdStore::open(options(&cluster)).await.expect("opens");
    let units = blocking(move || other.load(Table::Units).expect("load")).await;
    assert_eq!(units.len(), 2);
    let mut elsewhere = options(&cluster);
    elsewhere.prefix = "/elsewhere".to_owned();
    let elsewhere = EtcdStore::open(elsewhere).await.expect("opens");
    assert!(
        blocking(move || elsewhere.load(Table::Units).expect("load"))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_larger_than_a_transaction_is_seen_whole_or_not_at_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = etcd(&dir).await;
    let mut small = options(&cluster);
    small.max_txn_ops = 8;
    small.max_txn_bytes = 4096;
    let writer = Arc::new(EtcdStore::open(small).await.expect("opens"));
    let w = Arc::clone(&writer);
    blocking(move || {
        w.commit(&[Write::put(Table::Units, "old", b"1".to_vec())])
            .expect("commit")
    })
    .await;
    let reader = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let decision: Vec<Write> = (0..300)
        .map(|i| Write::put(Table::Units, format!("u{i:04}"), vec![b'x'; 100]))
        .chain([Write::delete(Table::Units, "old")])
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (reader, done) = (Arc::clone(&reader), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(Ordering::SeqCst) {
                let units = reader.load(Table::Units).expect("load");
                seen.insert(units.len());
            }
            seen
        })
    };
    let w = Arc::clone(&writer);
    blocking(move || w.commit(&decision).expect("a large commit")).await;
    // Let the reader's copy reach the end, then stop it.
    let r = Arc::clone(&reader);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blocking({
        let r = Arc::clone(&r);
        move || r.load(Table::Units).expect("load").len()
    })
    .await
        != 300
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never saw the decision"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::SeqCst);
    let seen = watcher.join().expect("the reader ran");
    // Before: the one old unit. After: the 300 new ones without it. Nothing in between.
    assert!(
        seen.iter().all(|n| *n == 1 || *n == 300),
        "a reader saw part of a decision: {seen:?}"
    );
    let entries = writer.mirror.read(|c| c.entries.clone());
    assert!(
        !entries.keys().any(|k| k.starts_with(intent::INTENTS)),
        "the intent is removed once applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_committed_but_not_applied_before_a_crash_is_finished_by_the_next_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = etcd(&dir).await;
    let crashed = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let decided = vec![
        Write::put(Table::Units, "a", b"new".to_vec()),
        Write::put(Table::Units, "b", b"new".to_vec()),
    ];
    // What a writer that crashed after its commit point leaves: the parts and the commit key, and
    // one of the two writes applied. Plus an intent staged but never committed.
    let c = Arc::clone(&crashed);
    blocking(move || {
        let part = c.full_key(&intent::part_key("7", 0));
        c.txn(&[], vec![put(part, intent::encode(&decided))])
            .expect("stage");
        c.txn(
            &[],
            vec![put(c.full_key(&intent::commit_key("7")), b"1".to_vec())],
        )
        .expect("commit point");
        c.txn(
            &[],
            vec![put(c.table_key(Table::Units, "a"), b"new".to_vec())],
        )
        .expect("half applied");
        let staged = c.full_key(&intent::part_key("8", 0));
        let never = [Write::put(Table::Units, "c", b"never".to_vec())];
        c.txn(&[], vec![put(staged, intent::encode(&never))])
            .expect("stage");
    })
    .await;
    drop(crashed);
    let next = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let n = Arc::clone(&next);
    let units = blocking(move || n.load(Table::Units).expect("load")).await;
    assert_eq!(
        units,
        [
            ("a".to_owned(), b"new".to_vec()),
            ("b".to_owned(), b"new".to_vec())
        ],
        "the committed decision is read whole; the staged one not at all"
    );
    let n = Arc::clone(&next);
    blocking(move || {
        n.commit(&[Write::put(Table::Meta, "x", b"1".to_vec())])
            .expect("commit")
    })
    .await;
    let after = EtcdStore::open(options(&cluster)).await.expect("opens");
    let entries = after.mirror.read(|c| c.entries.clone());
    assert_eq!(entries.get("units/b").map(Vec::as_slice), Some(&b"new"[..]));
    assert!(!entries.contains_key("units/c"));
    assert!(
        !entries.keys().any(|k| k.starts_with(intent::INTENTS)),
        "both intents are gone: {entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_deposed_leader_is_fenced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = etcd(&dir).await;
    let ttl = std::time::Duration::from_secs(2);
    let a = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let b = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let lead_a = a.campaign("a", "https://a", ttl).await;
    let b_campaign = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.campaign("b", "https://b", ttl).await })
    };
    // a leads and keeps its lease alive well past the TTL; b waits.
    tokio::time::sleep(ttl * 2).await;
    assert!(!b_campaign.is_finished(), "b took the lead while a held it");
    let a2 = Arc::clone(&a);
    let fence = lead_a.fence.clone();
    blocking(move || {
        a2.commit_if(&[fence], &[Write::put(Table::Units, "by-a", b"1".to_vec())])
            .expect("the leader commits")
    })
    .await;
    // a's lease goes (as when it expires); b leads, and a's fenced commits fail.
    a.client.revoke(lead_a.lease).await.expect("revoke");
    let lead_b = tokio::time::timeout(ttl * 3, b_campaign)
        .await
        .expect("b leads in time")
        .expect("campaign");
    assert_eq!(lead_b.record.url, "https://b");
    assert_eq!(
        b.leader().map(|l: LeaderRecord| l.url),
        Some("https://b".to_owned())
    );
    let reason = tokio::time::timeout(ttl * 2, lead_a.lost())
        .await
        .expect("a learns it lost");
    assert!(!reason.is_empty());
    let a2 = Arc::clone(&a);
    let fence = lead_a.fence.clone();
    let refused = blocking(move || {
        a2.commit_if(&[fence], &[Write::put(Table::Units, "by-a", b"2".to_vec())])
    })
    .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redb_hub_migrates_to_etcd_and_a_backup_of_etcd_restores_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = etcd(&dir).await;
    let redb_dir = dir.path().join("redb");
    {
        let redb = crate::store::RedbStore::open(&redb_dir).expect("opens");
        redb.commit(&[
            Write::put(Table::Units, "u1", b"{\"unit\":1}".to_vec()),
            Write::put(Table::Deployments, "ns/app", b"{\"d\":1}".to_vec()),
            Write::put(
                Table::Meta,
                crate::hub::records::WRITER_KEY,
                b"old-hub".to_vec(),
            ),
        ])
        .expect("commit");
    }
    crate::backup::migrate(&redb_dir, options(&cluster), false)
        .await
        .expect("migrates");
    let migrated = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let m = Arc::clone(&migrated);
    let (units, meta) = blocking(move || {
        (
            m.load(Table::Units).expect("load"),
            m.load(Table::Meta).expect("load"),
        )
    })
    .await;
    assert_eq!(units, [("u1".to_owned(), b"{\"unit\":1}".to_vec())]);
    assert!(
        !meta
            .iter()
            .any(|(k, _)| k == crate::hub::records::WRITER_KEY),
        "the old hub's writer token stays behind: {meta:?}"
    );
    // A second migration into the same store is refused: nothing is overwritten unasked.
    let again = crate::backup::migrate(&redb_dir, options(&cluster), false).await;
    assert!(again.is_err_and(|e| e.contains("holds 2 records")));
    // etcd to a file and back into another prefix.
    let args = |prefix: &str| crate::hub_cli::StoreArgs {
        store: crate::hub_cli::StoreKind::Etcd,
        data_dir: None,
        etcd_endpoints: cluster.urls(),
        etcd: crate::hub_cli::EtcdArgs {
            etcd_prefix: prefix.to_owned(),
            etcd_ca: None,
            etcd_cert: None,
            etcd_key: None,
            etcd_max_txn_ops: 128,
        },
    };
    let file = dir.path().join("backup.json");
    crate::backup::backup(&args("/cafe"), &file)
        .await
        .expect("backs up");
    crate::backup::restore(&args("/copy"), &file, false)
        .await
        .expect("restores");
    let mut copy = options(&cluster);
    copy.prefix = "/copy".to_owned();
    let copy = EtcdStore::open(copy).await.expect("opens");
    let deployments = blocking(move || copy.load(Table::Deployments).expect("load")).await;
    assert_eq!(deployments, [("ns/app".to_owned(), b"{\"d\":1}".to_vec())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_etcd_with_client_certificates_serves_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = EtcdCluster::start_tls(dir.path().join("etcd"), 1)
        .await
        .expect("etcd starts");
    let files = cluster.client_tls().expect("TLS files").clone();
    let mut secure = options(&cluster);
    assert!(secure.endpoints[0].starts_with("https://"));
    // Without a client certificate etcd refuses the connection: the store does not open.
    secure.tls = EtcdTls {
        ca: Some(files.ca.clone()),
        cert: None,
        key: None,
    };
    assert!(EtcdStore::open(secure.clone()).await.is_err());
    secure.tls = EtcdTls {
        ca: Some(files.ca),
        cert: Some(files.cert),
        key: Some(files.key),
    };
    let store = Arc::new(EtcdStore::open(secure).await.expect("opens over TLS"));
    let s = Arc::clone(&store);
    blocking(move || crate::store::tests::exercise(s.as_ref())).await;
    // An http:// member next to TLS flags is a configuration error naming the flag.
    let mut mixed = options(&cluster);
    mixed.endpoints = vec!["http://127.0.0.1:1".to_owned()];
    mixed.tls = store.options.tls.clone();
    let error = EtcdStore::open(mixed).await.expect_err("refused");
    assert!(
        crate::error_chain(&error).contains("--etcd-endpoints"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_sent_twice_applies_once_and_a_late_copy_never_lands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = etcd(&dir).await;
    let store = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let s = Arc::clone(&store);
    blocking(move || {
        let set = |value: &str| Write::put(Table::Units, "u", value.as_bytes().to_vec());
        s.commit(&[set("a")]).expect("commit a");
        s.commit(&[set("b")]).expect("commit b");
        let sequence = |n: u64| {
            *s.sequence
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(n);
        };
        // b sent again (its first copy was applied, the answer lost): success, nothing written.
        sequence(1);
        s.commit(&[set("b")])
            .expect("the second copy of b reports success");
        // a sent again after b (a first copy applied late): refused, b stays.
        sequence(0);
        let late = s.commit(&[set("a")]);
        assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");
        sequence(2);
        assert_eq!(
            s.load(Table::Units).expect("load"),
            [("u".to_owned(), b"b".to_vec())]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_compacts_history_and_a_follower_still_follows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = etcd(&dir).await;
    let writer = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let follower = Arc::new(EtcdStore::open(options(&cluster)).await.expect("opens"));
    let w = Arc::clone(&writer);
    blocking(move || {
        for i in 0..20 {
            w.commit(&[Write::put(Table::Units, "u", format!("{i}").into_bytes())])
                .expect("commit");
        }
    })
    .await;
    let compactor = {
        let w = Arc::clone(&writer);
        tokio::spawn(async move { w.compact_every(std::time::Duration::from_millis(100)).await })
    };
    // The history before the writes' last revision goes: an old revision can no longer be read.
    let first = cafe_proto::etcd::etcdserverpb::RangeRequest {
        key: b"/cafe/units/u".to_vec(),
        revision: 2,
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writer.client.range(first.clone()).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "history was never compacted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    compactor.abort();
    // The store goes on, and the follower's copy follows it.
    let w = Arc::clone(&writer);
    blocking(move || {
        w.commit(&[Write::put(Table::Units, "u", b"last".to_vec())])
            .expect("commit after compaction")
    })
    .await;
    let revision = writer.known.load(Ordering::SeqCst);
    let f = Arc::clone(&follower);
    let caught_up = blocking(move || {
        f.mirror
            .wait_blocking(revision, std::time::Duration::from_secs(5))
    })
    .await;
    assert!(caught_up, "the follower's copy stopped at the compaction");
    let f = Arc::clone(&follower);
    let units = blocking(move || f.mirror.read(|c| c.entries.get("units/u").cloned())).await;
    assert_eq!(units.as_deref(), Some(&b"last"[..]));
}
