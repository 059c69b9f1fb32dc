//! The change feed end to end: real edges, shields and purge-api; a client reading
//! `/_fresco/events` as a browser's EventSource would.

use std::time::Duration;

use fresco_e2e::feed::{Feed, Message};
use fresco_e2e::metrics::Scrape;
use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::{Cluster, Signal, client, header, signal_node, stop_node};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(3);

fn events_url(cluster: &Cluster, edge: usize, query: &str) -> String {
    cluster.edge_url(edge, &format!("/_fresco/events?{query}"))
}

/// The version edge `edge` serves for `path`, checking the body is that version's.
async fn version_at(cluster: &Cluster, edge: usize, path: &str) -> u64 {
    let resp = client().get(cluster.edge_url(edge, path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path} on edge {edge}");
    let version: u64 = header(&resp, "x-version").parse().unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), versioned_body(path, version));
    version
}

async fn hello(feed: &mut Feed) -> u64 {
    let hello = feed.next_event("hello", WAIT).await.expect("a feed starts with hello");
    hello.id.expect("hello carries the position")
}

async fn purge_url(cluster: &Cluster, path: &str) -> u64 {
    let answer = cluster.purge(json!({ "urls": [path] })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["seq"].as_u64().unwrap()
}

fn change_ids(messages: &[Message]) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.event == "change")
        .filter_map(|m| m.id)
        .collect()
}

/// Reads messages until `hello`, returning those before it.
async fn until_hello(feed: &mut Feed) -> (Vec<Message>, u64) {
    let mut before = Vec::new();
    loop {
        let message = feed.next(WAIT).await.expect("the replay ends with hello");
        if message.event == "hello" {
            return (before, message.id.unwrap());
        }
        before.push(message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_reaches_followers_on_every_edge_once_that_edge_serves_the_new_bytes() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/mut/feed-a.png";
    let mut feeds = Vec::new();
    for edge in 0..2 {
        assert_eq!(version_at(&cluster, edge, path).await, 1);
        let mut feed = Feed::open(
            &events_url(&cluster, edge, "url=/mut/feed-a.png&url=/mut/other.png"),
            None,
        )
        .await;
        hello(&mut feed).await;
        feeds.push(feed);
    }
    origin.set_version(path, 2);
    let seq = purge_url(&cluster, path).await;
    for (edge, feed) in feeds.iter_mut().enumerate() {
        let change = feed.next_event("change", WAIT).await.expect("the purge is told");
        // The request a page makes on the event gets the new version from this very edge.
        assert_eq!(
            version_at(&cluster, edge, path).await,
            2,
            "edge {edge} applied it first"
        );
        assert_eq!(change.id, Some(seq));
        let data = change.json();
        assert_eq!(data["url"], path);
        assert_eq!(data["seq"], seq);
        assert_eq!(data["etag"], "\"v1\"", "the ETag of the copy the purge replaced");
        assert_eq!(data["tags"], json!([]));
        assert_eq!(data["soft"], false);
    }
    // A purge of something nobody here follows is not told; the next one that is, is.
    purge_url(&cluster, "/mut/unfollowed.png").await;
    let next = purge_url(&cluster, "/mut/other.png").await;
    for feed in &mut feeds {
        let change = feed.next_event("change", WAIT).await.unwrap();
        assert_eq!(
            (change.id, change.json()["url"].clone()),
            (Some(next), json!("/mut/other.png"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_replays_what_was_missed_in_order() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let url = events_url(&cluster, 0, "url=/mut/replay.png");
    let mut feed = Feed::open(&url, None).await;
    let start = hello(&mut feed).await;
    drop(feed);
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(purge_url(&cluster, "/mut/replay.png").await);
        purge_url(&cluster, "/mut/not-followed.png").await;
    }
    let mut feed = Feed::open(&url, Some(start)).await;
    let (replayed, position) = until_hello(&mut feed).await;
    assert_eq!(change_ids(&replayed), seqs, "every missed change, once, in order");
    assert!(position >= seqs[2], "hello moves the position past the replay");

    let mut feed = Feed::open(&url, Some(seqs[1])).await;
    let (replayed, _) = until_hello(&mut feed).await;
    assert_eq!(
        change_ids(&replayed),
        [seqs[2]],
        "nothing at or before the id is sent again"
    );

    // The query parameter does the same for clients that cannot set headers.
    let mut feed = Feed::open(&format!("{url}&last_event_id={}", seqs[1]), None).await;
    let (replayed, _) = until_hello(&mut feed).await;
    assert_eq!(change_ids(&replayed), [seqs[2]]);

    // A client ahead of this edge (it came from an edge further along) gets nothing twice.
    let mut feed = Feed::open(&url, Some(position + 5)).await;
    let (replayed, ahead) = until_hello(&mut feed).await;
    assert!(replayed.is_empty());
    assert_eq!(ahead, position + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_replays_from_the_log_and_resets_clients_older_than_its_history() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let path = "/mut/restart.png";
    let first = purge_url(&cluster, path).await;
    let second = purge_url(&cluster, path).await;
    let edge = cluster.info.edges[0].clone();
    let mut config = std::fs::read_to_string(&edge.config).unwrap();
    config.push_str("feed:\n  history: 3\n");
    std::fs::write(&edge.config, config).unwrap();
    signal_node(&edge, Signal::SIGKILL);
    let _restarted = cluster.restart_node(&edge);

    // The history was in memory; it is read back from purge-api's log.
    let url = events_url(&cluster, 0, &format!("url={path}"));
    let mut feed = Feed::open(&url, Some(first)).await;
    let (replayed, position) = until_hello(&mut feed).await;
    assert_eq!(
        change_ids(&replayed),
        [second],
        "the restarted edge replays what it applied before"
    );
    assert_eq!(position, second);

    let mut last = second;
    for _ in 0..4 {
        last = purge_url(&cluster, path).await;
    }
    let change = feed.next_event("change", WAIT).await.unwrap();
    assert_eq!(change.id, Some(last - 3), "a connected client follows on");

    // History holds 3 purges: a client last at `second` missed one that is gone.
    let mut feed = Feed::open(&url, Some(second)).await;
    let reset = feed.next(WAIT).await.unwrap();
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert_eq!(reset.id, Some(last), "the client continues from the edge's position");
    assert_eq!(reset.json()["reason"], "history");
    let (_, position) = until_hello(&mut feed).await;
    assert_eq!(position, last);

    // So is a page loaded before the oldest purge the history holds.
    let mut feed = Feed::open(&format!("{url}&age_ms=3600000"), None).await;
    let reset = feed.next(WAIT).await.unwrap();
    assert_eq!(reset.event, "reset", "{reset:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_feed_opens_after_a_purge_of_its_images_is_told_of_it() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let (shown, other) = ("/mut/late.png", "/mut/late-other.png");
    let earlier = purge_url(&cluster, shown).await;
    assert_eq!(version_at(&cluster, 0, shown).await, 1);
    let loaded = std::time::Instant::now();
    // The page has its image; the purge lands before the page's feed is open.
    origin.set_version(shown, 2);
    let missed = purge_url(&cluster, shown).await;
    let unrelated = purge_url(&cluster, other).await;

    let url = events_url(&cluster, 0, &format!("url={shown}"));
    let mut feed = Feed::open(&format!("{url}&age_ms={}", loaded.elapsed().as_millis()), None).await;
    let (replayed, position) = until_hello(&mut feed).await;
    let told = change_ids(&replayed);
    assert!(
        told.contains(&missed),
        "the purge after the page loaded is told: {told:?}"
    );
    assert!(!told.contains(&unrelated), "only followed URLs: {told:?}");
    // The purge just before the load is within the margin for clock and travel: telling it
    // costs one refetch, and is allowed.
    assert!(told.iter().all(|id| [earlier, missed].contains(id)), "{told:?}");
    assert_eq!(position, unrelated);
    assert_eq!(version_at(&cluster, 0, shown).await, 2);

    // Without its age, a client starts at the edge's position and hears nothing of it.
    let mut feed = Feed::open(&url, None).await;
    let (replayed, position) = until_hello(&mut feed).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(position, unrelated);

    let bad = client().get(format!("{url}&age_ms=soon")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_purge_tells_the_followers_of_the_urls_that_carry_the_tag() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let path = "/mut/tagged.png"; // Surrogate-Key: obj-tagged.png all-mut
    assert_eq!(version_at(&cluster, 0, path).await, 1);
    let mut by_url = Feed::open(&events_url(&cluster, 0, &format!("url={path}")), None).await;
    let mut by_tag = Feed::open(&events_url(&cluster, 0, "tag=all-mut"), None).await;
    hello(&mut by_url).await;
    hello(&mut by_tag).await;

    let answer = cluster.purge(json!({ "tags": ["obj-tagged.png"] })).await;
    let seq = answer.body["seq"].as_u64().unwrap();
    let change = by_url
        .next_event("change", WAIT)
        .await
        .expect("the URL's follower is told");
    assert_eq!(change.id, Some(seq));
    assert_eq!(change.json()["url"], path);
    assert_eq!(change.json()["tags"], json!(["obj-tagged.png"]));

    // The tag's follower hears of the purge of its tag only, with the URLs known to carry it.
    let answer = cluster.purge(json!({ "tags": ["all-mut"] })).await;
    let seq = answer.body["seq"].as_u64().unwrap();
    let change = by_tag
        .next_event("change", WAIT)
        .await
        .expect("the tag's follower is told");
    assert_eq!(change.id, Some(seq), "the purge of obj-tagged.png was not told to it");
    // The purge above dropped the copy, so the edge knows the URL from its fill before it.
    assert_eq!(change.json()["url"], path);
    assert_eq!(change.json()["tags"], json!(["all-mut"]));
    let change = by_url.next_event("change", WAIT).await.unwrap();
    assert_eq!(
        (change.id, change.json()["tags"].clone()),
        (Some(seq), json!(["all-mut"]))
    );

    // A tag no cached URL is known to carry is still told, without a URL.
    let mut unknown = Feed::open(&events_url(&cluster, 0, "tag=never-seen"), None).await;
    hello(&mut unknown).await;
    let answer = cluster.purge(json!({ "tags": ["never-seen"] })).await;
    let change = unknown.next_event("change", WAIT).await.unwrap();
    assert_eq!(change.id, answer.body["seq"].as_u64());
    assert_eq!(change.json()["url"], serde_json::Value::Null);
}

/// Every store lookup the node has counted, whatever it found.
async fn store_lookups(admin: &str) -> f64 {
    let scrape = Scrape::of(admin).await;
    ["memory", "disk", "fill", "miss"]
        .iter()
        .map(|found| scrape.value_or_zero("fresco_store_lookups_total", &[("result", found)]))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_tag_purge_reaches_the_followers_of_urls_cached_before_it() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let path = "/mut/tagged.png"; // Surrogate-Key: obj-tagged.png all-mut
    assert_eq!(version_at(&cluster, 0, path).await, 1);
    let edge = cluster.info.edges[0].clone();
    stop_node(&edge, Signal::SIGTERM);
    let _restarted = cluster.restart_node(&edge);

    // The restarted edge has the image on disk but has not seen it fetched: it learns the
    // image's tags from the stored header when a client follows it, without counting that as
    // a request for it.
    let lookups = store_lookups(&edge.admin).await;
    let mut feed = Feed::open(&events_url(&cluster, 0, &format!("url={path}")), None).await;
    hello(&mut feed).await;
    assert_eq!(store_lookups(&edge.admin).await, lookups, "subscribing is not a lookup");

    origin.set_version(path, 2);
    let answer = cluster.purge(json!({ "tags": ["all-mut"] })).await;
    let change = feed
        .next_event("change", WAIT)
        .await
        .expect("the URL's follower is told of its tag's purge");
    assert_eq!(change.id, answer.body["seq"].as_u64());
    assert_eq!(change.json()["url"], path);
    assert_eq!(version_at(&cluster, 0, path).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feed_requests_and_limits_get_clear_errors() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let http = client();
    let expect_error = |status: u16, what: &'static str| {
        move |resp: reqwest::Response| async move {
            assert_eq!(resp.status(), status, "{what}");
            let body: serde_json::Value = resp.json().await.expect("a JSON error");
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
        }
    };
    expect_error(400, "nothing followed")(Feed::request(&events_url(&cluster, 0, ""), None).await).await;
    expect_error(400, "a bad URL")(Feed::request(&events_url(&cluster, 0, "url=img.png"), None).await).await;
    let bad_id = http
        .get(events_url(&cluster, 0, "url=/a.png"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    expect_error(400, "a bad Last-Event-ID")(bad_id).await;
    let too_many: String = (0..257).map(|i| format!("url=/img/{i}.png&")).collect();
    let resp = http
        .post(events_url(&cluster, 0, ""))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(too_many)
        .send()
        .await
        .unwrap();
    expect_error(413, "more than 256 URLs")(resp).await;
    let resp = http.put(events_url(&cluster, 0, "url=/a.png")).send().await.unwrap();
    expect_error(405, "PUT")(resp).await;
    let resp = http.get(cluster.edge_url(0, "/_fresco/nope")).send().await.unwrap();
    expect_error(404, "an unknown /_fresco/ path")(resp).await;

    // The POST form takes JSON too, and answers with the same stream.
    let resp = http
        .post(events_url(&cluster, 0, ""))
        .json(&json!({ "urls": ["/mut/posted.png"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);

    // 64 feeds from one address are allowed; the 65th is told to wait.
    let url = events_url(&cluster, 0, "url=/mut/limit.png");
    let mut open = Vec::new();
    for _ in 0..64 {
        open.push(Feed::open(&url, None).await);
    }
    let refused = Feed::request(&url, None).await;
    assert_eq!(header(&refused, "retry-after"), "5");
    expect_error(429, "a 65th feed from one address")(refused).await;
    open.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Feed::open(&url, None).await;
    hello(&mut again).await;

    // None of it disturbed the cache.
    assert_eq!(version_at(&cluster, 0, "/mut/limit.png").await, 1);
    let resp = http.get(cluster.edge_url(0, "/mut/limit.png")).send().await.unwrap();
    assert_eq!(header(&resp, "x-cache"), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_revalidate_mutable_images_keep_versioned_ones_and_get_live_js() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let http = client();
    for _ in 0..2 {
        let resp = http.get(cluster.edge_url(0, "/mut/browser.png")).send().await.unwrap();
        assert_eq!(
            header(&resp, "cache-control"),
            "no-cache",
            "mutable: revalidate every use"
        );
        assert_eq!(header(&resp, "etag"), "\"v1\"");
    }
    // A revalidated copy is still kept by the edge under the origin's rules, and still tells
    // browsers to revalidate.
    let answer = cluster
        .purge(json!({ "urls": ["/mut/browser.png"], "soft": true }))
        .await;
    assert_eq!(answer.status, 200);
    for expected in ["REVALIDATED", "HIT"] {
        let resp = http.get(cluster.edge_url(0, "/mut/browser.png")).send().await.unwrap();
        assert_eq!(header(&resp, "x-cache"), expected);
        assert_eq!(header(&resp, "cache-control"), "no-cache");
    }
    // live.js's cache-busting variant (pages of another origin) is the object the edge holds.
    let resp = http
        .get(cluster.edge_url(0, "/mut/browser.png?fresco=123"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-cache"), "HIT");
    for path in ["/immutable/a.jpg", "/img/v/3/a.jpg"] {
        let resp = http.get(cluster.edge_url(0, path)).send().await.unwrap();
        assert_eq!(
            header(&resp, "cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
    }
    let resp = http.get(cluster.edge_url(0, "/private/a.jpg")).send().await.unwrap();
    assert_eq!(
        header(&resp, "cache-control"),
        "private, max-age=300",
        "private stays private"
    );

    let resp = http.get(cluster.edge_url(0, "/_fresco/live.js")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/javascript"));
    let etag = header(&resp, "etag");
    assert!(!resp.bytes().await.unwrap().is_empty());
    let resp = http
        .get(cluster.edge_url(0, "/_fresco/live.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_their_feeds_are_not_errors_and_free_their_places() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let edge = cluster.info.edges[0].url.trim_start_matches("http://").to_string();
    let mut feeds = Vec::new();
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(&edge).await.unwrap();
        let request = format!("GET /_fresco/events?url=/mut/leave.png HTTP/1.1\r\nHost: {edge}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("event: hello") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the feed stays open");
            seen.extend_from_slice(&chunk[..n]);
        }
        feeds.push(stream);
    }
    let admin = &cluster.info.edges[0].admin;
    assert_eq!(Scrape::of(admin).await.value("fresco_feed_connections", &[]), Some(5.0));
    // Leave abruptly, as a closed laptop or a killed tab does: the connection is reset.
    for stream in feeds {
        stream.set_zero_linger().unwrap();
        drop(stream);
    }
    purge_url(&cluster, "/mut/leave.png").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while Scrape::of(admin).await.value("fresco_feed_connections", &[]) != Some(0.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feeds' places were given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let errors = Scrape::of(admin)
        .await
        .value("fresco_errors_total", &[("kind", "internal")]);
    assert_eq!(errors, Some(0.0), "a client that leaves is not an error of the edge");
}
