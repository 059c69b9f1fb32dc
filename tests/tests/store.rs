//! Storing less end to end: deduplicated bodies and compression at rest on real edges and
//! shields, read through `/metrics` and what clients receive.

use std::io::Read;
use std::time::Duration;

use fresco_e2e::metrics::{Scrape, wait_for_disk_writes};
use fresco_e2e::origin::{TestOrigin, body_of};
use fresco_e2e::{Cluster, Signal, client, header, stop_node};

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .expect("a brotli body");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svg_is_stored_compressed_and_served_with_and_without_br() {
    let cluster = Cluster::builder().size(1, 1).start();
    let http = client();
    let origin_svg = http
        .get(format!("{}/img/logo.svg", cluster.info.origin))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let url = cluster.edge_url(0, "/img/logo.svg");
    let first = http.get(&url).header("accept-encoding", "br").send().await.unwrap();
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(
        first.bytes().await.unwrap(),
        origin_svg,
        "a miss is relayed as the origin sent it"
    );

    let strong_etag = {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(header(&resp, "x-cache"), "HIT");
        assert_eq!(header(&resp, "content-encoding"), "", "no br accepted: decompressed");
        assert!(header(&resp, "vary").contains("Accept-Encoding"));
        let etag = header(&resp, "etag");
        assert!(
            etag.starts_with('"'),
            "the body as served keeps the strong ETag: {etag}"
        );
        assert_eq!(resp.bytes().await.unwrap(), origin_svg);
        etag
    };
    let resp = http
        .get(&url)
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-encoding"), "br", "sent as stored");
    assert!(header(&resp, "vary").contains("Accept-Encoding"));
    assert_eq!(
        header(&resp, "etag"),
        format!("W/{strong_etag}"),
        "another representation"
    );
    let packed = resp.bytes().await.unwrap();
    assert!(
        packed.len() * 10 < origin_svg.len() * 9,
        "compressed: {} of {}",
        packed.len(),
        origin_svg.len()
    );
    assert_eq!(unbrotli(&packed), origin_svg);

    // Either ETag revalidates the client's copy; a range is cut from the decompressed bytes.
    for etag in [strong_etag.clone(), format!("W/{strong_etag}")] {
        let resp = http
            .get(&url)
            .header("accept-encoding", "br")
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304, "If-None-Match: {etag}");
    }
    let resp = http
        .get(&url)
        .header("accept-encoding", "br")
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(header(&resp, "content-encoding"), "");
    assert_eq!(resp.bytes().await.unwrap(), origin_svg.slice(0..10));

    // Both tiers keep it compressed, and say so.
    for admin in [&cluster.info.edges[0].admin, &cluster.info.shields[0].admin] {
        let scrape = Scrape::of(admin).await;
        let logical = scrape.value("fresco_store_compression_input_bytes_total", &[("type", "svg")]);
        let stored = scrape.value("fresco_store_compression_output_bytes_total", &[("type", "svg")]);
        assert_eq!(logical, Some(origin_svg.len() as f64), "{admin}");
        assert!(
            stored.unwrap() < logical.unwrap() * 0.9,
            "{admin}: {stored:?} of {logical:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighty_urls_over_twenty_bodies_keep_twenty_bodies_on_each_node() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let http = client();
    // The test origin's body depends on the path only: four query variants share a body.
    for i in 0..80 {
        let path = format!("/img/dedup-{}.jpg?copy={}", i % 20, i / 20);
        let resp = http.get(cluster.edge_url(0, &path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let want = body_of(&format!("/img/dedup-{}.jpg", i % 20));
        assert_eq!(resp.bytes().await.unwrap(), want, "{path}");
    }
    for i in 0..80 {
        let path = format!("/img/dedup-{}.jpg?copy={}", i % 20, i / 20);
        let resp = http.get(cluster.edge_url(0, &path)).send().await.unwrap();
        assert_eq!(header(&resp, "x-cache"), "HIT", "{path}");
        let want = body_of(&format!("/img/dedup-{}.jpg", i % 20));
        assert_eq!(resp.bytes().await.unwrap(), want, "every URL keeps its own bytes");
    }
    let body_len = body_of("/img/dedup-0.jpg").len() as f64;
    for admin in [&cluster.info.edges[0].admin, &cluster.info.shields[0].admin] {
        let scrape = Scrape::of(admin).await;
        assert_eq!(
            scrape.value("fresco_store_dedup_hits_total", &[]),
            Some(60.0),
            "{admin}"
        );
        let stored = scrape
            .value("fresco_store_stored_bytes", &[("tier", "memory")])
            .unwrap();
        let logical = scrape
            .value("fresco_store_logical_bytes", &[("tier", "memory")])
            .unwrap();
        assert_eq!(stored, 20.0 * body_len, "{admin}: twenty bodies in memory");
        assert_eq!(logical, 80.0 * body_len, "{admin}: eighty as served");
        let disk = scrape.value("fresco_store_stored_bytes", &[("tier", "disk")]).unwrap();
        assert_eq!(disk, 20.0 * body_len, "{admin}: twenty bodies written to disk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_damaged_on_an_edges_disk_is_never_served() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 0).start();
    let edge = cluster.info.edges[0].clone();
    let path = "/img/damaged.jpg";
    let original = body_of(path);
    for expected in ["MISS", "HIT"] {
        let resp = client().get(cluster.edge_url(0, path)).send().await.unwrap();
        assert_eq!(header(&resp, "x-cache"), expected);
    }
    wait_for_disk_writes(&edge.admin, original.len() as u64, Duration::from_secs(10)).await;
    tokio::task::block_in_place(|| stop_node(&edge, Signal::SIGKILL));

    // Flip one bit in the middle of the body, in whichever file of the edge's cache holds it.
    let needle = &original[10_000..10_064];
    let mut flipped = 0;
    for file in std::fs::read_dir(cluster.state_dir().join("cache").join(&edge.id)).unwrap() {
        let file = file.unwrap().path();
        let mut bytes = std::fs::read(&file).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 20] ^= 0x10;
            std::fs::write(&file, bytes).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1, "the body is on the edge's disk once");

    let _restarted = tokio::task::block_in_place(|| cluster.restart_node(&edge));
    let resp = client().get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(header(&resp, "x-cache"), "MISS", "the damaged copy is not a hit");
    assert_eq!(
        resp.bytes().await.unwrap(),
        original,
        "the client gets the origin's bytes"
    );
    assert_eq!(origin.seen(path).requests, 2, "fetched again");
    let scrape = Scrape::of(&edge.admin).await;
    assert_eq!(scrape.value("fresco_store_integrity_failures_total", &[]), Some(1.0));
    let resp = client().get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(header(&resp, "x-cache"), "HIT", "and stored again");
}
