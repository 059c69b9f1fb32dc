//! Purge rules are bounded (issue 10, item 6): beyond `freshness.max_rules` an edge drops its
//! oldest rules, and what it stored before them is revalidated, never served on the strength
//! of a rule it no longer has.

use fresco_e2e::metrics::Scrape;
use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::{Cluster, Signal, client, stop_node, x_cache};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_soft_purge_still_keeps_the_old_bytes_from_being_served() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let edge = cluster.info.edges[0].clone();
    let config = std::fs::read_to_string(&edge.config).unwrap();
    let state_dir_line = config
        .lines()
        .find(|l| l.trim_start().starts_with("state_dir:"))
        .unwrap();
    std::fs::write(
        &edge.config,
        config.replace(state_dir_line, &format!("{state_dir_line}\n  max_rules: 4")),
    )
    .unwrap();
    stop_node(&edge, Signal::SIGTERM);
    let _edge = cluster.restart_node(&edge);

    let http = client();
    let (changed, untouched) = ("/mut/compacted.png", "/mut/untouched.png");
    for path in [changed, untouched] {
        let url = cluster.edge_url(0, path);
        assert_eq!(x_cache(&http.get(&url).send().await.unwrap()), "MISS");
        assert_eq!(x_cache(&http.get(&url).send().await.unwrap()), "HIT");
    }

    // A soft purge of a changed image, then enough other purges that its rule is compacted
    // away before anyone asks for the image again.
    origin.set_version(changed, 2);
    let soft = cluster.purge(json!({"urls": [changed], "soft": true})).await;
    assert_eq!(soft.status, 200, "{}", soft.body);
    for i in 0..6 {
        let answer = cluster.purge(json!({"urls": [format!("/mut/other-{i}.png")]})).await;
        assert_eq!(answer.status, 200);
    }
    let compacted = Scrape::of(&edge.admin)
        .await
        .value_or_zero("fresco_purge_rules_compacted_total", &[]);
    assert!(compacted >= 3.0, "the edge compacted its rules: {compacted}");

    let resp = http.get(cluster.edge_url(0, changed)).send().await.unwrap();
    let cache = x_cache(&resp);
    assert_ne!(cache, "HIT", "a copy from before the compaction is not served as it is");
    assert_eq!(
        resp.bytes().await.unwrap(),
        versioned_body(changed, 2),
        "{cache}: the new bytes"
    );

    // What did not change costs one revalidation, then hits again.
    let url = cluster.edge_url(0, untouched);
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(x_cache(&first), "REVALIDATED");
    assert_eq!(first.bytes().await.unwrap(), versioned_body(untouched, 1));
    assert_eq!(x_cache(&http.get(&url).send().await.unwrap()), "HIT");
}
