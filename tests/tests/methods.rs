//! Methods other than GET and HEAD (issue 11, item 1): passed to the origin uncached, bodies
//! under `max_request_body`, and a successful unsafe method invalidates its target here.

use fresco_e2e::origin::TestOrigin;
use fresco_e2e::{LoneEdge, client, x_cache};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_reaches_the_origin_uncached_and_invalidates_what_the_edge_stored() {
    let origin = TestOrigin::start().await;
    let edge = LoneEdge::start(&origin.url, "", "");
    let http = client();
    let url = format!("{}/img/a.jpg", edge.url);
    for expected in ["MISS", "HIT"] {
        assert_eq!(x_cache(&http.get(&url).send().await.unwrap()), expected);
    }
    let posted = http.post(&url).body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(origin.seen("/img/a.jpg").body_bytes, 1000, "with its body");
    assert_eq!(x_cache(&posted), "BYPASS");
    assert_eq!(origin.seen("/img/a.jpg").requests, 2, "the POST went to the origin");
    let after = http.get(&url).send().await.unwrap();
    assert_eq!(x_cache(&after), "MISS", "the POST invalidated the stored copy");
    assert_eq!(origin.seen("/img/a.jpg").requests, 3);

    // An unsafe method the origin refuses invalidates nothing.
    let refused = http.delete(format!("{}/status/405", edge.url)).send().await.unwrap();
    assert_eq!(refused.status(), 405);
    assert_eq!(x_cache(&http.get(&url).send().await.unwrap()), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_request_body_is_a_413_whether_declared_or_chunked() {
    let origin = TestOrigin::start().await;
    let edge = LoneEdge::start(&origin.url, "", "max_request_body: 64KiB");
    let http = client();
    let url = format!("{}/img/upload.jpg", edge.url);
    let declared = http.put(&url).body(vec![1u8; 65 << 10]).send().await.unwrap();
    assert_eq!(declared.status(), 413);
    let body: serde_json::Value = declared.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|e| e.contains("body")), "{body}");
    assert_eq!(origin.seen("/img/upload.jpg").requests, 0, "refused before the origin");

    // Chunked, so nothing is declared: the edge counts what it reads.
    let status = chunked_put(&edge.url, "/img/upload.jpg", 80, 1024).await;
    assert_eq!(status.as_deref(), Some("413"), "the edge answered (or cut the upload)");
    assert_eq!(
        origin.seen("/img/upload.jpg").bodies,
        0,
        "no body over the limit arrived whole"
    );
    let within = http.put(&url).body(vec![1u8; 64 << 10]).send().await.unwrap();
    assert_eq!(within.status(), 200);
    let seen = origin.seen("/img/upload.jpg");
    assert_eq!(
        (seen.bodies, seen.body_bytes),
        (1, 64 << 10),
        "a body within the limit arrives whole"
    );
}

/// PUTs `chunks` chunks of `size` bytes to `path` with `Transfer-Encoding: chunked` and returns
/// the status the edge answered, if it answered.
async fn chunked_put(base: &str, path: &str, chunks: usize, size: usize) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!("PUT {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let mut chunk = format!("{size:x}\r\n").into_bytes();
        chunk.extend(std::iter::repeat_n(b'x', size));
        chunk.extend(b"\r\n");
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 64];
    let n = stream.read(&mut answer).await.unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    answer.split(' ').nth(1).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_post_through_a_shield_is_sent_once_and_leaves_the_shield_in_the_ring() {
    // A miss the shield is slow to answer is asked again (it joins the fetch under way) and a
    // quiet shield is passed over; a POST has no fetch to join, and sent again it would be
    // done twice.
    let origin = TestOrigin::start().await;
    let cluster = fresco_e2e::Cluster::builder().origin(&origin.url).size(1, 1).start();
    let http = client();
    let posted = http
        .post(cluster.edge_url(0, "/sluggish/upload.jpg"))
        .body("once")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(
        origin.seen("/sluggish/upload.jpg").bodies,
        1,
        "the origin ran the POST once"
    );
    let failovers = fresco_e2e::metrics::Scrape::of(&cluster.info.edges[0].admin)
        .await
        .value_or_zero("fresco_shield_failovers_total", &[]);
    assert_eq!(failovers, 0.0, "the shield was not held to blame");
}
