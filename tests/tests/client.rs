//! The Rust client (`fresco-client`) against a real cluster: failover between edges killed
//! with -9, the local cache revalidated through the edges, and the change feed delivering
//! every change exactly once, in order, across a failover.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fresco_client::{Client, Source, WatchEvent};
use fresco_e2e::origin::{TestOrigin, body_of, versioned_body};
use fresco_e2e::{Cluster, Signal, bin_dir, signal_node};
use futures_util::StreamExt;
use serde_json::json;

fn client_of(cluster: &Cluster) -> Client {
    Client::builder()
        .edges(cluster.info.edges.iter().map(|e| e.url.clone()))
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

async fn purge_url(cluster: &Cluster, path: &str) -> u64 {
    let answer = cluster.purge(json!({ "urls": [path] })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["seq"].as_u64().expect("the answer has a seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_fails_over_to_the_next_edge_when_the_first_is_killed() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let edges: Vec<String> = cluster.info.edges.iter().map(|e| e.url.clone()).collect();
    let client = client_of(&cluster);

    let first = client.get("/img/failover-a.jpg").await.unwrap();
    assert_eq!(first.status.as_u16(), 200);
    assert_eq!(first.body.as_ref(), body_of("/img/failover-a.jpg"));
    assert_eq!(first.edge.as_deref(), Some(edges[0].as_str()));

    signal_node(&cluster.info.edges[0], Signal::SIGKILL);
    let second = client.get("/img/failover-b.jpg").await.unwrap();
    assert_eq!(second.status.as_u16(), 200);
    assert_eq!(second.body.as_ref(), body_of("/img/failover-b.jpg"));
    assert_eq!(second.edge.as_deref(), Some(edges[1].as_str()));
    assert_eq!(
        client.preferred_edge(),
        edges[1],
        "the edge that answered is tried first"
    );

    // The copy fetched from the dead edge is revalidated through the live one.
    let again = client.get("/img/failover-a.jpg").await.unwrap();
    assert_eq!(
        (again.source, again.edge.as_deref()),
        (Source::Revalidated, Some(edges[1].as_str()))
    );
    assert_eq!(again.body.as_ref(), body_of("/img/failover-a.jpg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_copy_is_revalidated_with_if_none_match_and_replaced_after_a_purge() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let dir = tempfile::tempdir().unwrap();
    let client = Client::builder()
        .edges(cluster.info.edges.iter().map(|e| e.url.clone()))
        .cache_dir(dir.path())
        .build()
        .unwrap();
    let path = "/mut/revalidate.png";

    let first = client.get(path).await.unwrap();
    assert_eq!((first.status.as_u16(), first.source), (200, Source::Network));
    assert_eq!(first.etag.as_deref(), Some("\"v1\""));
    assert_eq!(first.body.as_ref(), versioned_body(path, 1));

    // The edge answers the conditional request from its cache with a 304: only a request
    // carrying `If-None-Match: "v1"` gets one, and the origin is not asked again.
    let second = client.get(path).await.unwrap();
    assert_eq!((second.status.as_u16(), second.source), (200, Source::Revalidated));
    assert_eq!(second.body.as_ref(), versioned_body(path, 1));
    assert_eq!(origin.seen(path).requests, 1, "{:?}", origin.seen(path));

    // A new client on the same directory revalidates the copy on disk.
    let reopened = Client::builder()
        .edges(cluster.info.edges.iter().map(|e| e.url.clone()))
        .cache_dir(dir.path())
        .build()
        .unwrap();
    assert_eq!(reopened.get(path).await.unwrap().source, Source::Revalidated);

    origin.set_version(path, 2);
    purge_url(&cluster, path).await;
    let third = client.get(path).await.unwrap();
    assert_eq!((third.status.as_u16(), third.source), (200, Source::Network));
    assert_eq!(third.etag.as_deref(), Some("\"v2\""));
    assert_eq!(third.body.as_ref(), versioned_body(path, 2));
    assert_eq!(client.get(path).await.unwrap().source, Source::Revalidated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_every_change_exactly_once_in_order_across_a_kill_of_its_edge() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let client = Client::builder()
        .edges(cluster.info.edges.iter().map(|e| e.url.clone()))
        .feed_read_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let paths: Vec<String> = (0..4).map(|i| format!("/mut/watched-{i}.png")).collect();
    for path in &paths {
        client.get(path).await.unwrap();
    }
    let mut watch = client.watch(paths.clone(), Vec::<String>::new());
    let connected = match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Connected { edge, .. }))) => edge,
        other => panic!("the watch connects first: {other:?}"),
    };
    let victim = cluster
        .info
        .edges
        .iter()
        .find(|e| e.url == connected)
        .expect("connected to an edge of the cluster")
        .clone();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        while let Some(event) = watch.next().await {
            if tx.send(event.expect("the watch does not fail")).is_err() {
                return;
            }
        }
    });

    let mut purged = Vec::new();
    for i in 0..20 {
        if i == 10 {
            signal_node(&victim, Signal::SIGKILL);
        }
        let path = &paths[i % paths.len()];
        purged.push((purge_url(&cluster, path).await, path.clone()));
    }

    let mut changes = Vec::new();
    let mut reconnected_to = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while changes.len() < purged.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(WatchEvent::Change(change))) => changes.push((change.seq, change.url.unwrap_or_default())),
            Ok(Some(WatchEvent::Connected { edge, .. })) => reconnected_to.push(edge),
            Ok(Some(WatchEvent::Disconnected { .. })) => {}
            Ok(Some(WatchEvent::Reset(reset))) => panic!("no reset expected: {reset:?}"),
            Ok(None) | Err(_) => break,
        }
    }
    // Anything extra (a duplicate) would come right after.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await {
        if let WatchEvent::Change(change) = event {
            changes.push((change.seq, change.url.unwrap_or_default()));
        }
    }
    collector.abort();
    assert_eq!(
        changes, purged,
        "every purge once, in order (reconnections: {reconnected_to:?})"
    );
    assert!(
        reconnected_to.iter().any(|e| *e != victim.url),
        "the watch moved to another edge: {reconnected_to:?}"
    );
    for path in &paths {
        assert!(!client.is_cached(path), "{path} was dropped from the local cache");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_fetches_from_cluster_json_and_prints_changes_as_json_lines() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let cli = bin_dir().join("fresco-client");
    assert!(
        cli.exists(),
        "{} is missing: cargo build --release --bins",
        cli.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let cluster_json = dir.path().join("cluster.json");
    std::fs::write(&cluster_json, serde_json::to_vec(&cluster.info).unwrap()).unwrap();

    let out = dir.path().join("a.jpg");
    let status = Command::new(&cli)
        .arg("--cluster")
        .arg(&cluster_json)
        .args(["get", "/img/cli.jpg", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&out).unwrap(), body_of("/img/cli.jpg"));

    let missing = Command::new(&cli)
        .arg("--cluster")
        .arg(&cluster_json)
        .args(["get", "/nothing/here"])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "a 404 fails the command");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    let path = "/mut/cli.png";
    let mut watcher = tokio::process::Command::new(&cli)
        .args(["--edge", &cluster.info.edges[0].url, "watch", "--url", path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(watcher.stderr.take().unwrap());
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(Duration::from_secs(10), stderr.read_line(&mut line))
        .await
        .expect("the watcher says it is connected")
        .unwrap();
    assert!(line.starts_with("connected to"), "{line}");
    let seq = purge_url(&cluster, path).await;
    let mut stdout = tokio::io::BufReader::new(watcher.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line))
        .await
        .expect("the change is printed")
        .unwrap();
    let change: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(change["event"], "change");
    assert_eq!(change["seq"], seq);
    assert_eq!(change["url"], path);
}

/// Resumes a frozen node when dropped, so that a failed assertion does not leave it stopped.
struct Thaw(fresco_e2e::NodeInfo);

impl Drop for Thaw {
    fn drop(&mut self) {
        signal_node(&self.0, Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_leaves_a_frozen_edge_after_its_read_timeout_and_misses_nothing() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    // Far below the edges' 15 s heartbeat: idle moments reconnect too, which must not
    // duplicate anything either.
    let client = Client::builder()
        .edges(cluster.info.edges.iter().map(|e| e.url.clone()))
        .feed_read_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let paths: Vec<String> = (0..2).map(|i| format!("/mut/frozen-{i}.png")).collect();
    let mut watch = client.watch(paths.clone(), Vec::<String>::new());
    let connected = match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Connected { edge, .. }))) => edge,
        other => panic!("the watch connects first: {other:?}"),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        while let Some(event) = watch.next().await {
            if let Ok(WatchEvent::Change(change)) = event
                && tx.send((change.seq, change.url.unwrap_or_default())).is_err()
            {
                return;
            }
        }
    });

    let mut purged = Vec::new();
    for i in 0..3 {
        let path = &paths[i % paths.len()];
        purged.push((purge_url(&cluster, path).await, path.clone()));
    }
    let victim = cluster.info.edges.iter().find(|e| e.url == connected).unwrap().clone();
    signal_node(&victim, Signal::SIGSTOP);
    let thaw = Thaw(victim);
    for i in 0..5 {
        let path = &paths[i % paths.len()];
        purged.push((purge_url(&cluster, path).await, path.clone()));
    }

    let mut changes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while changes.len() < purged.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(change)) => changes.push(change),
            Ok(None) | Err(_) => break,
        }
    }
    drop(thaw);
    while let Ok(Some(change)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        changes.push(change);
    }
    collector.abort();
    assert_eq!(changes, purged, "every purge once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_misses_no_purge_made_while_it_was_still_finding_an_edge() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let frozen = cluster.info.edges[0].clone();
    signal_node(&frozen, Signal::SIGSTOP);
    let thaw = Thaw(frozen);
    let client = Client::builder()
        .edges(cluster.info.edges.iter().map(|e| e.url.clone()))
        .feed_read_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let path = "/mut/while-connecting.png";
    // The first edge takes the read timeout to give up on; the purge lands meanwhile.
    let mut watch = client.watch([path], Vec::<String>::new());
    let seq = purge_url(&cluster, path).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let change = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, watch.next()).await {
            Ok(Some(Ok(WatchEvent::Change(change)))) => break change,
            Ok(Some(Ok(_))) => continue,
            other => panic!("the purge made before the first hello is delivered: {other:?}"),
        }
    };
    assert_eq!((change.seq, change.url.as_deref()), (seq, Some(path)));
    drop(thaw);
}
