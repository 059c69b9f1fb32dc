//! Web cache poisoning and request smuggling, from outside against a running cluster: whatever
//! a hostile client sends that is not part of the cache key must not reach the origin, so that
//! what is stored under a clean URL's key is what the clean URL gets from the origin.

use std::io::{Read, Write};
use std::time::Duration;

use fresco_e2e::origin::{POISONED, TestOrigin, body_of};
use fresco_e2e::{Cluster, client, x_cache};

/// A clean client asks edge `edge` for `path`: it must get the origin's real body.
async fn clean_body_at(cluster: &Cluster, edge: usize, path: &str) {
    let resp = client().get(cluster.edge_url(edge, path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path} for a clean client");
    let body = resp.bytes().await.unwrap();
    assert_ne!(
        body.as_ref(),
        POISONED,
        "{path}: a clean client got the poisoned answer"
    );
    assert_eq!(body.as_ref(), body_of(path), "{path}: the origin's real body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_headers_parameters_and_bodies_never_reach_the_origin() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let http = client();
    let attacks: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "/img/xfh.jpg",
            http.get(cluster.edge_url(0, "/img/xfh.jpg"))
                .header("x-forwarded-host", "evil.example"),
        ),
        (
            "/img/xou.jpg",
            http.get(cluster.edge_url(0, "/img/xou.jpg"))
                .header("x-original-url", "/admin"),
        ),
        (
            "/img/override.jpg",
            http.get(cluster.edge_url(0, "/img/override.jpg"))
                .header("x-http-method-override", "DELETE"),
        ),
        (
            "/img/utm.jpg",
            http.get(cluster.edge_url(0, "/img/utm.jpg?utm_source=evil")),
        ),
        (
            "/img/live.jpg",
            http.get(cluster.edge_url(0, &format!("/img/live.jpg?fresco={}", "x".repeat(9000)))),
        ),
    ];
    for (path, attack) in attacks {
        let _ = attack.send().await.unwrap().bytes().await;
        clean_body_at(&cluster, 1, path).await;
        clean_body_at(&cluster, 0, path).await;
        assert_eq!(
            origin.seen(path).poisoned,
            0,
            "{path}: the unkeyed input reached the origin"
        );
    }

    // A fat GET (a body on a GET) is refused, not passed on.
    let fat = http
        .get(cluster.edge_url(0, "/img/fat.jpg"))
        .body("callback=evil")
        .send()
        .await
        .unwrap();
    assert_eq!(fat.status(), 400);
    assert!(fat.text().await.unwrap().contains("error"));
    assert_eq!(origin.seen("/img/fat.jpg").requests, 0);
    clean_body_at(&cluster, 0, "/img/fat.jpg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_target_over_8_kib_is_414_and_never_fetched_or_stored() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let long = format!("/img/long.jpg?w={}", "9".repeat(8200));
    for edge in [0, 1] {
        let resp = client().get(cluster.edge_url(edge, &long)).send().await.unwrap();
        assert_eq!(resp.status(), 414);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("8192"), "{body}");
    }
    assert_eq!(origin.seen("/img/long.jpg").requests, 0, "nothing went upstream");
    let shorter = format!("/img/long.jpg?w={}", "9".repeat(8000));
    let resp = client().get(cluster.edge_url(0, &shorter)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "8 KiB and under is served");
}

/// GETs `target` exactly as written (an HTTP client would resolve `..` itself) from `addr`
/// with `Connection: close`; returns the status line and the body.
fn raw_get(addr: &str, target: &str) -> (String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: default\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let status = String::from_utf8_lossy(&answer[..split])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (status, answer[split..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_sent_upstream_as_they_are_keyed() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let addr = cluster.info.edges[0].url.trim_start_matches("http://").to_string();
    // Each of these resolves (in the key) to /img/dots.jpg: the origin must be asked for that,
    // not for the raw target, which it would answer with a 404 stored under the clean key.
    for raw in ["/x/../img/dots.jpg", "/x/%2e%2e/img/dots.jpg", "/img/./dots.jpg"] {
        let (status, body) = tokio::task::block_in_place(|| raw_get(&addr, raw));
        assert!(status.contains(" 200 "), "{raw} is /img/dots.jpg: {status}");
        assert_eq!(body, body_of("/img/dots.jpg"), "{raw}");
        assert_eq!(origin.seen(raw).requests, 0, "the origin was asked for {raw} as sent");
    }
    assert_eq!(origin.seen("/img/dots.jpg").requests, 1, "one key, one fetch");
    // These are other keys: whatever the origin makes of them is not stored as /img/slash.jpg.
    for raw in [
        "//img/slash.jpg",
        "/img\\slash.jpg",
        "/img/slash.jpg;x=1",
        "/img/slash.jpg?%75tm_source=evil",
    ] {
        let _ = tokio::task::block_in_place(|| raw_get(&addr, raw));
    }
    clean_body_at(&cluster, 0, "/img/slash.jpg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_other_than_404_and_410_are_not_stored_by_heuristic() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    for code in [414u16, 405, 501] {
        let path = format!("/status/{code}");
        for _ in 0..2 {
            let resp = client().get(cluster.edge_url(0, &path)).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), code);
        }
        assert_eq!(origin.seen(&path).requests, 2, "{path} was not stored");
    }
    let gone = "/status/404";
    for _ in 0..2 {
        let _ = client().get(cluster.edge_url(0, gone)).send().await.unwrap();
    }
    assert_eq!(origin.seen(gone).requests, 1, "a 404 is stored for the heuristic TTL");
}

/// Sends `request` as raw bytes to `addr`; returns the status line.
fn raw_status(addr: &str, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_framings_are_refused_and_store_nothing() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let addr = cluster.info.edges[0].url.trim_start_matches("http://").to_string();
    let requests = [
        "GET /img/smuggle.jpg HTTP/1.1\r\nHost: default\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /img/smuggle.jpg HTTP/1.1\r\nHost: default\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
    ];
    for request in requests {
        let status = tokio::task::block_in_place(|| raw_status(&addr, request));
        assert!(status.contains(" 400 "), "{request:?} got {status:?}");
    }
    assert_eq!(origin.seen("/img/smuggle.jpg").requests, 0, "nothing went upstream");
    let clean = client()
        .get(cluster.edge_url(0, "/img/smuggle.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&clean), "MISS", "nothing was stored");
}
