//! The sharded shield tier end to end: keys spread over the shields by the ring, shields that
//! join take their share, and a shield killed or frozen under load costs no errors and no
//! extra origin fetches beyond its own keys.

use std::time::Duration;

use fresco_e2e::load::{Load, LoadReport};
use fresco_e2e::metrics::Scrape;
use fresco_e2e::origin::{TestOrigin, body_of};
use fresco_e2e::ring::{holders, home_of, path_homed_on, stored_on, wait_for_ring};
use fresco_e2e::{Cluster, Signal, client, get_ok, signal_node, x_cache};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_the_shields_and_a_joining_shield_takes_only_its_share() {
    let origin = TestOrigin::start().await;
    let mut cluster = Cluster::builder().origin(&origin.url).size(2, 3).start();
    let paths: Vec<String> = (0..600).map(|i| format!("/img/ring-{i}.jpg")).collect();
    for path in &paths {
        get_ok(&cluster.edge_url(0, path)).await;
    }
    let shields = cluster.info.shields.clone();
    let mut share = [0usize; 3];
    for path in &paths {
        let on = holders(&shields, path).await;
        assert_eq!(on.len(), 1, "{path} is stored on exactly one shield, not {on:?}");
        assert_eq!(
            shields[on[0]].id,
            home_of(&shields, path),
            "{path} is on its home shield"
        );
        share[on[0]] += 1;
    }
    for (i, n) in share.iter().enumerate() {
        assert!(
            (150..=250).contains(n),
            "shield-{} holds {n} of 600 keys: {share:?}",
            i + 1
        );
    }

    let newcomer = cluster.join("shield");
    assert_eq!(newcomer.id, "shield-4");
    wait_for_ring(&cluster.info.edges[1], 4).await;
    // edge-2 has seen none of the keys: each is a miss there, answered by its shield now.
    for path in &paths {
        get_ok(&cluster.edge_url(1, path)).await;
    }
    let moved: Vec<&String> = paths.iter().filter(|p| origin.seen(p).requests > 1).collect();
    assert!(
        moved.len() as f64 <= 600.0 * 1.2 / 4.0,
        "{} of 600 keys moved when a 4th shield joined",
        moved.len()
    );
    assert!(
        moved.len() >= 100,
        "the newcomer took a share: only {} moved",
        moved.len()
    );
    for path in &moved {
        assert!(stored_on(&newcomer, path).await, "{path} moved to the newcomer");
        assert_eq!(origin.seen(path).requests, 2);
    }
}

/// Warms `count` keys through edge-1; returns them.
async fn warm(cluster: &Cluster, tag: &str, count: usize) -> Vec<String> {
    let paths: Vec<String> = (0..count).map(|i| format!("/img/{tag}-{i}.jpg")).collect();
    for path in &paths {
        get_ok(&cluster.edge_url(0, path)).await;
    }
    paths
}

/// After a shield is lost: edge-2 asks for every warmed key. Keys of the other shields are
/// still shield hits (one origin fetch in all); the lost shield's keys are fetched once more.
async fn only_the_lost_shields_keys_go_to_the_origin(
    cluster: &Cluster,
    origin: &TestOrigin,
    warmed: &[String],
    lost: &str,
) {
    let shields = cluster.info.shields.clone();
    for path in warmed {
        get_ok(&cluster.edge_url(1, path)).await;
        let expected = if home_of(&shields, path) == lost { 2 } else { 1 };
        assert_eq!(
            origin.seen(path).requests,
            expected,
            "{path} (home {}) after losing {lost}",
            home_of(&shields, path)
        );
    }
}

/// 300 concurrent requests over both edges for a new key whose home is `lost`: one origin fetch.
async fn a_herd_on_a_lost_shields_key_costs_one_fetch(cluster: &Cluster, origin: &TestOrigin, lost: &str) {
    let path = path_homed_on(&cluster.info.shields, lost, "slow", "herd");
    let expected = body_of(&path);
    for outcome in cluster.concurrent_gets(&path, 300).await {
        let (status, body) = outcome.expect("every request is answered");
        assert_eq!(status, 200);
        assert_eq!(body.as_ref(), expected, "whole bodies only");
    }
    assert_eq!(origin.seen(&path).requests, 1, "300 requests for {path} over 2 edges");
}

/// A cluster of 2 edges and 3 shields with 90 keys warm, a miss load on both edges, and
/// `signal` sent to shield `victim` a second into it; returns the load's report (after 3 more
/// seconds), checked to have failed at most 0.1 % of its requests.
async fn lose_a_shield_under_load(
    origin: &TestOrigin,
    victim: usize,
    signal: Signal,
    tag: &'static str,
) -> (Cluster, Vec<String>, LoadReport) {
    let cluster = Cluster::builder().origin(&origin.url).size(2, 3).start();
    let warmed = warm(&cluster, tag, 90).await;
    let load = Load::misses(&cluster, "under-load");
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal_node(&cluster.info.shields[victim], signal);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish().await;
    report.assert_at_most(0.001);
    (cluster, warmed, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shield_killed_under_load_costs_no_errors_and_only_its_own_keys() {
    let origin = TestOrigin::start().await;
    let (cluster, warmed, _) = lose_a_shield_under_load(&origin, 1, Signal::SIGKILL, "kill").await;
    let victim = cluster.info.shields[1].clone();
    only_the_lost_shields_keys_go_to_the_origin(&cluster, &origin, &warmed, &victim.id).await;
    a_herd_on_a_lost_shields_key_costs_one_fetch(&cluster, &origin, &victim.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_shield_costs_one_short_timeout_and_comes_back_with_its_keys() {
    let origin = TestOrigin::start().await;
    let (cluster, warmed, report) = lose_a_shield_under_load(&origin, 2, Signal::SIGSTOP, "freeze").await;
    let victim = cluster.info.shields[2].clone();
    // The requests caught on the frozen shield waited one shield timeout (1 s), then went on;
    // nobody waited for the 5 s deadline.
    assert!(
        report.slowest < Duration::from_millis(3000),
        "slowest request: {:?}",
        report.slowest
    );
    only_the_lost_shields_keys_go_to_the_origin(&cluster, &origin, &warmed, &victim.id).await;
    a_herd_on_a_lost_shields_key_costs_one_fetch(&cluster, &origin, &victim.id).await;

    signal_node(&victim, Signal::SIGCONT);
    wait_for_ring(&cluster.info.edges[0], 3).await;
    // Back on the ring with its cache: what it held is still there, and its keys go to it again.
    let kept = warmed
        .iter()
        .find(|p| home_of(&cluster.info.shields, p) == victim.id)
        .unwrap();
    assert!(stored_on(&victim, kept).await, "a frozen shield keeps its cache");
    let new_key = path_homed_on(&cluster.info.shields, &victim.id, "img", "back");
    get_ok(&cluster.edge_url(0, &new_key)).await;
    assert!(stored_on(&victim, &new_key).await, "its new keys go to it again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_behind_a_live_shield_is_waited_for_not_fetched_twice() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(2, 2).start();
    let path = "/sluggish/big-photo.jpg";
    let outcomes = cluster.concurrent_gets(path, 20).await;
    for outcome in outcomes {
        let (status, body) = outcome.expect("answered");
        assert_eq!(status, 200, "a 2.5 s origin is within the 5 s deadline");
        assert_eq!(body.as_ref(), body_of(path));
    }
    assert_eq!(
        origin.seen(path).requests,
        1,
        "asking the slow shield again joined its fetch"
    );
    let slow_retries: f64 = {
        let mut sum = 0.0;
        for edge in &cluster.info.edges {
            sum += Scrape::of(&edge.admin)
                .await
                .value("fresco_shield_retries_total", &[("reason", "slow")])
                .unwrap_or(0.0);
        }
        sum
    };
    assert!(slow_retries >= 1.0, "the edges waited past one shield timeout");
    let resp = client().get(cluster.edge_url(1, path)).send().await.unwrap();
    assert_eq!(x_cache(&resp), "HIT");
}
