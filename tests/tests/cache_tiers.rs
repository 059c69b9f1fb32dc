//! The cache tiers end to end: real edges, shield and origin processes on real sockets.

use std::time::{Duration, Instant};

use fresco_e2e::origin::{TestOrigin, body_of, etag_of};
use fresco_e2e::{Cluster, bin_dir, client, free_port, header, x_cache};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_and_the_second_edge_is_served_by_the_shield() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let http = client();
    let path = "/img/cat.jpg";

    let first = http.get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(header(&first, "x-fresco-node"), "edge-1");
    assert_eq!(header(&first, "etag"), etag_of(path));
    assert_eq!(first.bytes().await.unwrap().as_ref(), body_of(path));

    let second = http.get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(x_cache(&second), "HIT");
    assert!(!header(&second, "age").is_empty(), "a hit carries Age");
    assert_eq!(second.bytes().await.unwrap().as_ref(), body_of(path));

    let other_edge = http.get(cluster.edge_url(1, path)).send().await.unwrap();
    assert_eq!(x_cache(&other_edge), "MISS", "edge-2 had not seen it");
    assert_eq!(header(&other_edge, "x-fresco-node"), "edge-2");
    assert_eq!(other_edge.bytes().await.unwrap().as_ref(), body_of(path));
    assert_eq!(origin.seen(path).requests, 1, "the shield served edge-2 from its cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_cold_requests_cost_one_origin_fetch() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/slow/cold.jpg";
    let expected = body_of(path);
    for outcome in cluster.concurrent_gets(path, 300).await {
        let (status, body) = outcome.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body.as_ref(), expected, "every waiter gets the whole body");
    }
    assert_eq!(
        origin.seen(path).requests,
        1,
        "concurrent misses collapse into one origin fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_object_is_revalidated_with_a_304() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let http = client();
    let path = "/short/clock.jpg";
    let first = http.get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(x_cache(&first), "MISS");
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let again = http.get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(x_cache(&again), "REVALIDATED");
    assert_eq!(
        again.bytes().await.unwrap().as_ref(),
        body_of(path),
        "the cached body is served"
    );
    let seen = origin.seen(path);
    assert_eq!(seen.requests, 2);
    assert_eq!(
        (seen.conditional, seen.not_modified),
        (1, 1),
        "one If-None-Match answered with 304"
    );

    let fresh_again = http.get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(x_cache(&fresh_again), "HIT", "the 304 refreshed the object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_conditional_and_range_requests_are_served_from_cache() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let http = client();
    let path = "/img/range.jpg";
    let url = cluster.edge_url(0, path);
    http.get(&url).send().await.unwrap().bytes().await.unwrap();

    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(x_cache(&head), "HIT");
    assert_eq!(header(&head, "content-length"), body_of(path).len().to_string());
    assert!(head.bytes().await.unwrap().is_empty());

    let conditional = http
        .get(&url)
        .header("if-none-match", etag_of(path))
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.status(), 304);
    assert_eq!(x_cache(&conditional), "HIT");

    let range = http.get(&url).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(x_cache(&range), "HIT");
    assert_eq!(
        header(&range, "content-range"),
        format!("bytes 100-199/{}", body_of(path).len())
    );
    assert_eq!(range.bytes().await.unwrap().as_ref(), &body_of(path)[100..200]);

    assert_eq!(origin.seen(path).requests, 1, "none of these went to the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_cookie_responses_are_not_shared() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let http = client();
    for path in ["/private/account.jpg", "/cookie/avatar.jpg"] {
        for _ in 0..2 {
            let resp = http.get(cluster.edge_url(0, path)).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(x_cache(&resp), "BYPASS", "{path}");
        }
        assert_eq!(origin.seen(path).requests, 2, "{path} must reach the origin every time");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_down_is_a_502_with_a_json_error() {
    // A port nobody listens on.
    let port = free_port();
    let cluster = Cluster::builder().origin(format!("http://127.0.0.1:{port}")).start();
    let resp = client().get(cluster.edge_url(0, "/img/a.jpg")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "content-type"), "application/json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_origin_is_a_504_within_the_deadline() {
    let origin = TestOrigin::start().await;
    let deadline = Duration::from_millis(1500);
    let cluster = Cluster::builder()
        .origin(&origin.url)
        .deadline_ms(deadline.as_millis() as u64)
        .start();
    let started = Instant::now();
    let resp = client()
        .get(cluster.edge_url(0, "/hang/forever.jpg"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|e| e.contains("deadline")), "{body}");
    assert!(took < deadline + Duration::from_millis(500), "answered after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_drops_the_first_syns_is_fetched_when_the_kernel_resends_one() {
    // The kernel resends a SYN after 1 s, then 3 s: an origin connect cut at 1 s made every
    // SYN lost to a burst a 504, though the origin was there and the deadline (5 s) far off.
    let origin = TestOrigin::start_refusing_syns_for(Duration::from_millis(1500)).await;
    let edge = fresco_e2e::LoneEdge::start(&origin.url, "", "");
    let started = Instant::now();
    let resp = client().get(format!("{}/img/late.jpg", edge.url)).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert!(took >= Duration::from_millis(1500), "the SYN was not dropped: {took:?}");
    assert_eq!(origin.seen("/img/late.jpg").requests, 1);
}

/// Runs `fresco-edge` on `config` and returns its exit code and stderr.
fn edge_with_config(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(bin_dir().join("fresco-edge"))
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_invalid_config_is_rejected_naming_the_field() {
    let good = "node_id: edge-1\nlisten: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\n\
                cache: { memory: 64MiB }\nsites: [{ name: default, origin: 'http://127.0.0.1:3' }]\n";
    for (bad, field) in [
        (good.replace("memory: 64MiB", "memory: lots"), "cache.memory"),
        (good.replace("http://", "gopher://"), "sites[0].origin"),
        (good.replace("listen: 127.0.0.1:1", "listen: nowhere"), "listen"),
    ] {
        let (code, stderr) = edge_with_config(&bad);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_fails_midway_is_never_served_as_complete() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/broken/half.jpg";
    for outcome in cluster.concurrent_gets(path, 20).await {
        match outcome {
            Ok((status, body)) if status == 200 => {
                assert_eq!(
                    body.len(),
                    body_of(path).len(),
                    "a 200 that ends cleanly must carry the whole body"
                )
            }
            Ok((status, _)) => assert!(status.is_server_error(), "unexpected {status}"),
            Err(_) => {} // the client saw the cut: it knows the body is incomplete
        }
    }
    let http = client();
    let after = http.get(cluster.edge_url(0, path)).send().await;
    if let Ok(resp) = after {
        assert_ne!(x_cache(&resp), "HIT", "a truncated fill must not have been stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_shield_is_killed_serves_from_the_origin() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let shield = &cluster.info.shields[0];
    fresco_e2e::signal_node(shield, fresco_e2e::Signal::SIGKILL);
    // SIGKILL is asynchronous: wait until the shield's port refuses, as a dead shield's does.
    let addr = shield.url.trim_start_matches("http://").to_string();
    let gone = Instant::now();
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the killed shield still accepts"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let resp = client()
        .get(cluster.edge_url(0, "/img/failover.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), body_of("/img/failover.jpg"));
    assert_eq!(origin.seen("/img/failover.jpg").requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_reuses_its_ports_and_comes_back_warm() {
    let origin = TestOrigin::start().await;
    let http = client();
    let path = "/img/warm.jpg";
    let first = Cluster::builder().origin(&origin.url).start();
    let ports: Vec<String> = first.info.edges.iter().map(|e| e.url.clone()).collect();
    assert_eq!(
        x_cache(&http.get(first.edge_url(0, path)).send().await.unwrap()),
        "MISS"
    );
    // Stored once the fill has finished (it completes just after the response is sent).
    let stored = Instant::now();
    while x_cache(&http.get(first.edge_url(0, path)).send().await.unwrap()) != "HIT" {
        assert!(stored.elapsed() < Duration::from_secs(5), "never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = first.stop();

    let again = Cluster::builder().origin(&origin.url).state_of_dir(state).start();
    let ports_again: Vec<String> = again.info.edges.iter().map(|e| e.url.clone()).collect();
    assert_eq!(ports, ports_again, "same ids on the same ports");
    let resp = http.get(again.edge_url(0, path)).send().await.unwrap();
    assert_eq!(
        x_cache(&resp),
        "HIT",
        "served from the disk cache kept across the restart"
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), body_of(path));
    assert_eq!(origin.seen(path).requests, 1);
}
