//! What a browser gets besides the image: no headers meant for nodes, 404s cached briefly and
//! errors not at all, and a stale immutable image when the origin fails — but never a stale
//! copy of a purged mutable one.

use std::time::Duration;

use fresco_e2e::origin::{TestOrigin, body_of, versioned_body};
use fresco_e2e::{Cluster, LoneEdge, client, x_cache};
use serde_json::json;

const NODE_ONLY: [&str; 2] = ["x-fresco-fill-seq", "x-fresco-origin-cache-control"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_nodes_tell_each_other_reach_browsers_only_when_debugging() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    for expected in ["MISS", "HIT"] {
        let resp = client().get(cluster.edge_url(0, "/img/a.jpg")).send().await.unwrap();
        assert_eq!(x_cache(&resp), expected);
        for name in NODE_ONLY {
            assert!(
                resp.headers().get(name).is_none(),
                "{expected}: {name} went to the browser"
            );
        }
    }
    let debugging = LoneEdge::start(&origin.url, "", "debug_headers: true");
    let url = format!("{}/img/a.jpg", debugging.url);
    client().get(&url).send().await.unwrap();
    let hit = client().get(&url).send().await.unwrap();
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(
        hit.headers()["x-fresco-origin-cache-control"],
        "public, max-age=300",
        "debug_headers shows what the origin asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_is_cached_for_the_negative_ttl_and_a_500_not_at_all() {
    let origin = TestOrigin::start().await;
    let edge = LoneEdge::start(&origin.url, ", negative_ttl_secs: 1", "");
    let get = |path: &'static str| {
        let url = format!("{}{path}", edge.url);
        async move {
            let resp = client().get(url).send().await.unwrap();
            (resp.status().as_u16(), x_cache(&resp))
        }
    };
    assert_eq!(get("/status/404").await, (404, "MISS".into()));
    assert_eq!(get("/status/404").await, (404, "HIT".into()));
    assert_eq!(origin.seen("/status/404").requests, 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        get("/status/404").await.1,
        "MISS",
        "the 404 expired after negative_ttl_secs"
    );
    assert_eq!(origin.seen("/status/404").requests, 2);
    for _ in 0..2 {
        assert_eq!(get("/status/500").await.0, 500);
    }
    assert_eq!(origin.seen("/status/500").requests, 2, "a 500 is never stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_immutable_image_is_served_while_the_origin_fails() {
    let origin = TestOrigin::start().await;
    let edge = LoneEdge::start(&origin.url, "", "");
    let path = "/shortimmutable/logo.png";
    let url = format!("{}{path}", edge.url);
    assert_eq!(x_cache(&client().get(&url).send().await.unwrap()), "MISS");
    tokio::time::sleep(Duration::from_millis(1500)).await; // max-age=1: now stale
    origin.set_failing(true);
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "stale-if-error for an immutable object");
    assert_eq!(x_cache(&resp), "STALE");
    assert_eq!(resp.bytes().await.unwrap(), body_of(path));
    assert_eq!(origin.seen(path).requests, 2, "the origin was asked first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_mutable_image_is_never_served_stale_even_if_the_origin_allows_it() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/siemut/banner.png";
    let url = cluster.edge_url(0, path);
    client().get(&url).send().await.unwrap();
    assert_eq!(x_cache(&client().get(&url).send().await.unwrap()), "HIT");
    // The origin changed the image, then fails before anyone fetched the new one.
    origin.set_version(path, 2);
    let answer = cluster.purge(json!({"urls": [path], "soft": true})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    origin.set_failing(true);
    let resp = client().get(&url).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    assert_ne!(
        body.as_ref(),
        versioned_body(path, 1).as_slice(),
        "the purged bytes went out ({status}) though the origin's stale-if-error allowed it"
    );
    assert!(status >= 500, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_named_by_uuid_or_ulid_are_revalidated_and_hashed_ones_kept_a_year() {
    // A UUID's last group is 12 hex digits, which fresco once took for a content hash: the
    // browser kept such an image for a year although it can change under its name.
    let origin = TestOrigin::start().await;
    let edge = LoneEdge::start(&origin.url, "", "");
    let browser_cache = |path: &'static str| {
        let url = format!("{}{path}", edge.url);
        async move {
            let resp = client().get(url).send().await.unwrap();
            resp.headers()["cache-control"].to_str().unwrap().to_string()
        }
    };
    for named in [
        "/img/d1cff481-70c6-46d6-9c92-fe0c128068e3.jpg",
        "/img/01ARZ3NDEKTSV4RRFFQ69G5FAV.jpg",
        "/img/photo-12345678.jpg",
    ] {
        let cc = browser_cache(named).await;
        assert!(cc.contains("no-cache") && !cc.contains("immutable"), "{named}: {cc}");
    }
    let cc = browser_cache("/img/hero.5d41402abc4b2a76.jpg").await;
    assert!(cc.contains("immutable") && cc.contains("max-age=31536000"), "{cc}");
}
