//! Nodes that join and leave a running cluster (`devcluster join`, `devcluster leave`) while it
//! serves: a new edge is served by the shields and follows purges, a new shield is on every
//! edge's ring within seconds, and a shield that leaves drains with no errors at the edges.

use std::time::Duration;

use fresco_e2e::load::Load;
use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::ring::{stored_on, wait_for_ring};
use fresco_e2e::{Cluster, client, get_ok, x_cache};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_and_a_shield_join_and_leave_while_the_cluster_serves() {
    let origin = TestOrigin::start().await;
    let mut cluster = Cluster::builder().origin(&origin.url).size(2, 2).start();
    let warmed: Vec<String> = (0..40).map(|i| format!("/img/member-{i}.jpg")).collect();
    for path in &warmed {
        get_ok(&cluster.edge_url(0, path)).await;
    }
    let load = Load::misses(&cluster, "member-load");

    // A new edge: its misses are served by the shields, and it follows purges.
    let edge = cluster.join("edge");
    assert_eq!(edge.id, "edge-3");
    let http = client();
    for path in &warmed[..10] {
        let resp = http.get(format!("{}{path}", edge.url)).send().await.unwrap();
        assert_eq!((resp.status().as_u16(), x_cache(&resp)), (200, "MISS".to_string()));
        assert_eq!(
            origin.seen(path).requests,
            1,
            "{path} came from a shield, not the origin"
        );
    }
    let mutable = "/mut/joined.png";
    origin.set_version(mutable, 1);
    let first = http.get(format!("{}{mutable}", edge.url)).send().await.unwrap();
    assert_eq!(first.bytes().await.unwrap().as_ref(), versioned_body(mutable, 1));
    origin.set_version(mutable, 2);
    let purge = cluster.purge(json!({ "urls": [mutable] })).await;
    assert_eq!(purge.status, 200, "{}", purge.body);
    let acked = purge.acked();
    assert!(
        acked.iter().any(|a| a == "edge-3"),
        "the new edge acked the purge: {acked:?}"
    );
    let after = http.get(format!("{}{mutable}", edge.url)).send().await.unwrap();
    assert_eq!(after.bytes().await.unwrap().as_ref(), versioned_body(mutable, 2));

    // A new shield: every edge puts it on its ring, and its keys go to it.
    let shield = cluster.join("shield");
    assert_eq!(shield.id, "shield-3");
    for edge in &cluster.info.edges {
        wait_for_ring(edge, 3).await;
    }
    let fresh: Vec<String> = (0..60).map(|i| format!("/img/after-join-{i}.jpg")).collect();
    let mut on_newcomer = 0;
    for path in &fresh {
        get_ok(&cluster.edge_url(0, path)).await;
        on_newcomer += usize::from(stored_on(&shield, path).await);
    }
    assert!(on_newcomer >= 8, "shield-3 took {on_newcomer} of 60 new keys");

    // shield-1 leaves (SIGTERM: it drains) and edge-3 leaves, under load.
    cluster.leave("shield-1");
    cluster.leave("edge-3");
    assert_eq!(cluster.info.shields.len(), 2);
    assert_eq!(cluster.info.edges.len(), 2);
    for path in &warmed {
        get_ok(&cluster.edge_url(1, path)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.finish().await.assert_at_most(0.0);
}
