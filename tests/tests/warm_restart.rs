//! Warm restarts (issue 5): a node killed with `-9`, or a whole devcluster stopped and started
//! again on the same state dir, comes back with its disk cache — serving what it held without
//! asking upstream, and never what was purged while it was down. A node stopped with SIGTERM
//! first finishes its requests in flight, and keeps their fills.

use std::time::Duration;

use fresco_e2e::feed::Feed;
use fresco_e2e::metrics::{Scrape, wait_for_disk_writes};
use fresco_e2e::origin::{TestOrigin, body_of, versioned_body};
use fresco_e2e::{Cluster, NodeInfo, Signal, client, header, signal_node, stop_node, wait_for_exit, x_cache};
use serde_json::json;

/// The bodies of `/mut/` and `/img/` paths are 20 KB.
const BODY_BYTES: u64 = 20 * 1024;

/// A GET through `node` (an edge or a shield): `X-Cache`, `X-Version` (0 when absent) and body.
async fn fetch(node: &NodeInfo, path: &str) -> (String, u64, Vec<u8>) {
    let resp = client().get(format!("{}{path}", node.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path} on {}", node.id);
    let cache = x_cache(&resp);
    let version = header(&resp, "x-version").parse().unwrap_or(0);
    (cache, version, resp.bytes().await.unwrap().to_vec())
}

/// Store lookups that found the object on disk.
async fn disk_lookups(node: &NodeInfo) -> f64 {
    Scrape::of(&node.admin)
        .await
        .value_or_zero("fresco_store_lookups_total", &[("result", "disk")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_with_objects_on_disk_restarts_warm_and_refetches_only_what_was_purged() {
    let origin = TestOrigin::start().await;
    // One edge and no shield: every miss of the edge is an origin request, so the origin's
    // counts say exactly what the edge did not have.
    let cluster = Cluster::builder().origin(&origin.url).size(1, 0).start();
    let edge = cluster.info.edges[0].clone();
    let paths: Vec<String> = (0..20).map(|i| format!("/mut/warm-{i}.png")).collect();
    for path in &paths {
        assert_eq!(fetch(&edge, path).await.0, "MISS", "{path}");
        assert_eq!(fetch(&edge, path).await.0, "HIT", "{path}");
    }
    wait_for_disk_writes(&edge.admin, BODY_BYTES * paths.len() as u64, Duration::from_secs(10)).await;

    tokio::task::block_in_place(|| stop_node(&edge, Signal::SIGKILL));
    let purged = &paths[7];
    origin.set_version(purged, 2);
    let answer = cluster.purge(json!({"urls": [purged]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["lease_expired"],
        json!([edge.id]),
        "the purge completed without the dead edge: {}",
        answer.body
    );

    let _restarted = tokio::task::block_in_place(|| cluster.restart_node(&edge));
    let (cache, version, body) = fetch(&edge, purged).await;
    assert_eq!((cache.as_str(), version), ("MISS", 2), "{purged} is fetched fresh");
    assert_eq!(body, versioned_body(purged, 2));
    assert_eq!(origin.seen(purged).requests, 2);
    for path in paths.iter().filter(|p| *p != purged) {
        let (cache, version, body) = fetch(&edge, path).await;
        assert_eq!((cache.as_str(), version), ("HIT", 1), "{path} after the restart");
        assert_eq!(
            body,
            versioned_body(path, 1),
            "{path}: the bytes written before the kill"
        );
        assert_eq!(origin.seen(path).requests, 1, "{path} was not fetched again");
    }
    assert!(
        disk_lookups(&edge).await >= (paths.len() - 1) as f64,
        "the restarted edge's hits were read from its disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devcluster_restarted_on_its_state_dir_brings_every_node_back_warm() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(2, 1).start();
    let (edges, shield) = (cluster.info.edges.clone(), cluster.info.shields[0].clone());
    let paths: Vec<String> = (0..10).map(|i| format!("/img/warm-{i}.jpg")).collect();
    for path in &paths {
        for edge in &edges {
            fetch(edge, path).await;
        }
        assert_eq!(fetch(&shield, path).await.0, "HIT", "{path} is on the shield");
        assert_eq!(origin.seen(path).requests, 1, "{path}: one origin fetch");
    }
    // Stopped right after the last fill, with disk writes still queued: a clean stop writes
    // them before the process exits.
    let state = cluster.stop();

    let cluster = Cluster::builder()
        .origin(&origin.url)
        .size(2, 1)
        .state_of_dir(state)
        .start();
    let restarted_shield = &cluster.info.shields[0];
    assert_ne!(restarted_shield.pid, shield.pid, "a new shield process");
    for path in &paths {
        for edge in &cluster.info.edges {
            let (cache, _, body) = fetch(edge, path).await;
            assert_eq!(cache, "HIT", "{path} on {} right after the restart", edge.id);
            assert_eq!(body, body_of(path));
        }
        assert_eq!(fetch(restarted_shield, path).await.0, "HIT", "{path} on the shield");
        assert_eq!(
            origin.seen(path).requests,
            1,
            "{path}: no origin fetch after the restart"
        );
    }
    for node in cluster.info.edges.iter().chain([restarted_shield]) {
        assert!(
            disk_lookups(node).await >= paths.len() as f64,
            "{} read its hits from disk",
            node.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_after_a_burst_of_fills_keeps_every_object_it_had_written() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 0).start();
    let edge = cluster.info.edges[0].clone();
    // 120 MB: more than the memory tier (64 MiB), less than the disk tier (256 MiB), written
    // by concurrent fills as a busy edge's are.
    let paths: Vec<String> = (0..6000).map(|i| format!("/img/burst-{i}.jpg")).collect();
    let mut fills = tokio::task::JoinSet::new();
    for lane in 0..8 {
        let (edge, paths) = (edge.clone(), paths.clone());
        fills.spawn(async move {
            for path in paths.iter().skip(lane).step_by(8) {
                fetch(&edge, path).await;
            }
        });
    }
    fills.join_all().await;
    wait_for_disk_writes(&edge.admin, BODY_BYTES * paths.len() as u64, Duration::from_secs(30)).await;

    tokio::task::block_in_place(|| stop_node(&edge, Signal::SIGKILL));
    let _restarted = tokio::task::block_in_place(|| cluster.restart_node(&edge));
    let mut lost = Vec::new();
    for path in &paths {
        let (cache, _, body) = fetch(&edge, path).await;
        assert_eq!(body, body_of(path));
        if cache != "HIT" {
            lost.push(path.as_str());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} objects written before the kill were not recovered, e.g. {:?}",
        lost.len(),
        paths.len(),
        &lost[..lost.len().min(8)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_edge_finishes_its_requests_in_flight_keeps_their_fills_and_exits() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 0).start();
    let edge = cluster.info.edges[0].clone();
    let events = format!("{}/_fresco/events?url=/img/a.jpg", edge.url);
    let mut feed = Feed::open(&events, None).await;
    assert_eq!(feed.next(Duration::from_secs(5)).await.unwrap().event, "hello");
    // The origin answers /slowmut/ 600 ms after the request reaches it: once it has, the
    // request is in flight for that long.
    let path = "/slowmut/draining.png";
    let in_flight = tokio::spawn({
        let edge = edge.clone();
        async move { fetch(&edge, path).await }
    });
    while origin.seen(path).requests == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal_node(&edge, Signal::SIGTERM);

    // Unready at once, so that a load balancer sends it nothing more, while the request goes on.
    let readyz = format!("{}/readyz", edge.admin);
    let mut unready = false;
    while !unready && !in_flight.is_finished() {
        unready = client().get(&readyz).send().await.is_ok_and(|r| r.status() == 503);
    }
    assert!(unready, "/readyz answers 503 while the edge drains");
    let refused = reqwest::get(&events).await.expect("the draining edge still answers");
    assert_eq!(refused.status(), 503, "no new feed on a stopping edge");
    let error: serde_json::Value = refused.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("stopping"), "{error}");
    // Its change feeds end (their clients resume by id, elsewhere or after the restart).
    let waiting = std::time::Instant::now();
    assert!(feed.next(Duration::from_secs(10)).await.is_none());
    assert!(waiting.elapsed() < Duration::from_secs(8), "the feed ended");
    let (cache, version, body) = in_flight.await.expect("the request in flight is answered");
    assert_eq!((cache.as_str(), version), ("MISS", 1));
    assert_eq!(body, versioned_body(path, 1), "the whole body");
    // It exits once its requests are done, well before the drain limit (10 s).
    wait_for_exit(&edge, Duration::from_secs(5));

    // The fill that was in flight was stored and written before the exit.
    let _restarted = cluster.restart_node(&edge);
    assert_eq!(fetch(&edge, path).await.0, "HIT");
    assert_eq!(origin.seen(path).requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigint_cuts_a_drain_short() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 0).start();
    let edge = cluster.info.edges[0].clone();
    // The origin never answers /hang/: the request would hold the drain until the edge's
    // deadline (5 s).
    let path = "/hang/drain.png";
    let hanging = tokio::spawn(client().get(format!("{}{path}", edge.url)).send());
    while origin.seen(path).requests == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal_node(&edge, Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal_node(&edge, Signal::SIGINT);
    wait_for_exit(&edge, Duration::from_secs(2));
    hanging.abort();
}
