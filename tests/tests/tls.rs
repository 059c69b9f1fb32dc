//! TLS (issue 10, item 5): a `devcluster --tls` cluster serves browsers HTTPS with HTTP/2,
//! takes purges and feeds over TLS, fetches from an `https://` origin, and trusts only the CA
//! it is told to.

use std::time::Duration;

use fresco_client::{Client, WatchEvent};
use fresco_e2e::{Cluster, LoneEdge, x_cache};
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_http2_takes_purges_and_feeds_over_tls() {
    let cluster = Cluster::builder().size(1, 1).tls().start();
    let ca = cluster.info.ca.clone().expect("cluster.json names the CA");
    let edge = &cluster.info.edges[0];
    assert!(edge.url.starts_with("https://"), "{}", edge.url);
    assert!(cluster.info.purge_api.starts_with("https://"));
    assert!(cluster.info.origin.starts_with("https://"));
    let url = cluster.edge_url(0, "/img/sunset.jpg");
    let http = cluster.http();

    let miss = http.get(&url).send().await.expect("the edge answers over TLS");
    assert_eq!(miss.version(), reqwest::Version::HTTP_2, "browsers get HTTP/2");
    assert_eq!((miss.status().as_u16(), x_cache(&miss)), (200, "MISS".to_string()));
    let first = miss.bytes().await.unwrap();
    let hit = http.get(&url).send().await.unwrap();
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(hit.bytes().await.unwrap(), first);

    // Only the cluster's CA makes the certificate good, and there is no plain HTTP on the port.
    let stranger = reqwest::Client::builder().build().unwrap();
    let refused = stranger
        .get(&url)
        .send()
        .await
        .expect_err("a client without the CA refuses");
    assert!(
        format!("{refused:?}").to_lowercase().contains("certificate"),
        "{refused:?}"
    );
    let plain = url.replacen("https://", "http://", 1);
    assert!(
        stranger.get(&plain).send().await.is_err_and(|e| !e.is_status()),
        "plain HTTP on the TLS port gets no HTTP answer"
    );

    // The feed over TLS (fresco-client with the CA), a purge over TLS, acked by both nodes
    // over their TLS connections to purge-api.
    let client = Client::builder().edge(&edge.url).ca_file(&ca).build().unwrap();
    let mut watch = client.watch(["/img/sunset.jpg"], Vec::<String>::new());
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Connected { .. }))) => {}
        other => panic!("the watch connects over TLS: {other:?}"),
    }
    let answer = cluster.purge(json!({"urls": ["/img/sunset.jpg"]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut acked = answer.acked();
    acked.sort();
    assert_eq!(acked, ["edge-1", "shield-1"]);
    match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Change(change)))) => assert_eq!(change.url.as_deref(), Some("/img/sunset.jpg")),
        other => panic!("the change arrives over TLS: {other:?}"),
    }
    let after = http.get(&url).send().await.unwrap();
    assert_eq!(x_cache(&after), "MISS", "the purge took effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_is_verified_against_the_ca_file_only() {
    // The demo origin of a TLS cluster is an https:// origin with a certificate of its CA.
    let cluster = Cluster::builder().size(1, 1).tls().start();
    let origin = &cluster.info.origin;
    let ca = cluster.info.ca.clone().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = other_dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, fresco_tls::LocalCa::generate().unwrap().certificate_pem()).unwrap();

    let trusting = LoneEdge::start(origin, "", &format!("tls: {{ ca_file: {} }}", ca.display()));
    let wrong_ca = LoneEdge::start(origin, "", &format!("tls: {{ ca_file: {} }}", other_ca.display()));
    let system_roots = LoneEdge::start(origin, "", "");
    let http = fresco_e2e::client();
    let ok = http
        .get(format!("{}/img/sunset.jpg", trusting.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "an origin certificate of the configured CA is good");
    for (edge, what) in [(&wrong_ca, "another CA"), (&system_roots, "the system's roots")] {
        for _ in 0..2 {
            let resp = http.get(format!("{}/img/sunset.jpg", edge.url)).send().await.unwrap();
            assert_eq!(resp.status(), 502, "with {what} the origin's certificate is refused");
            assert_ne!(x_cache(&resp), "HIT", "and nothing is stored");
        }
    }
}
