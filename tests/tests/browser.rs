//! `live.js` in a real headless Chromium: the demo gallery opened through an edge swaps a
//! changed image within a second of the purge's answer, without reloading the page, and keeps
//! doing so after its edge is killed with -9 and restarted.

use std::time::{Duration, Instant};

use fresco_e2e::browser::{Browser, change_demo_image};
use fresco_e2e::{Cluster, Signal, signal_node};
use serde_json::json;

/// The image the test changes.
const IMAGE: &str = "badge.png";

/// Changes [`IMAGE`] and waits until the page shows other pixels than `before`, at most one
/// second after purge-api answered. Returns the new digest.
async fn change_and_see_it(browser: &Browser, cluster: &Cluster, before: &str, when: &str) -> String {
    let change = change_demo_image(&cluster.info, IMAGE).await;
    assert_eq!(change.status, 200, "{when}: the purge answered {}", change.body);
    let answered = Instant::now();
    loop {
        let now = browser.image_digest(IMAGE).await;
        if !now.is_empty() && now != before {
            eprintln!(
                "{when}: new pixels {:?} after the purge answer (purge {})",
                answered.elapsed(),
                change.body["seq"]
            );
            return now;
        }
        assert!(
            answered.elapsed() < Duration::from_secs(1),
            "{when}: the page still shows the old image 1 s after the purge answer \
             (live.js state: {})",
            browser
                .execute(
                    "return JSON.stringify({lastEventId: frescoLive.lastEventId, \
                     hellos: frescoLive.hellos, swaps: frescoLive.swaps, \
                     feeds: frescoLive.feeds.map(f => f.source && f.source.readyState)})",
                    json!([])
                )
                .await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn not_reloaded(browser: &Browser, when: &str) {
    let marker = browser.execute("return window.__noReload", json!([])).await;
    assert_eq!(marker, json!(1), "{when}: the page was reloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_image_is_swapped_in_place_also_after_the_edge_restarts() {
    let browser = Browser::start().await;
    let cluster = Cluster::builder().start();
    let edge = cluster.info.edges[0].clone();
    browser.goto(&format!("{}/gallery.html", edge.url)).await;
    let loaded = format!("return frescoLive.hellos > 0 && document.querySelector('img[alt=\"{IMAGE}\"]').complete");
    browser
        .wait_for(
            &loaded,
            Duration::from_secs(10),
            "live.js subscribes and the image loads",
        )
        .await;
    let tracked = browser
        .execute("return Array.from(frescoLive.tracked.keys()).sort()", json!([]))
        .await;
    assert_eq!(
        tracked,
        json!(["/img/badge.png", "/img/logo.svg", "/img/sunset.jpg", "/img/tile.webp"]),
        "live.js follows every image of the gallery"
    );
    let first = browser.image_digest(IMAGE).await;
    assert!(!first.is_empty(), "the image is displayed");
    browser.execute("window.__noReload = 1", json!([])).await;

    let second = change_and_see_it(&browser, &cluster, &first, "first change").await;
    not_reloaded(&browser, "first change").await;

    // The edge dies without a word and comes back on its port: live.js reconnects and
    // resumes from its last event id.
    let hellos = browser.execute("return frescoLive.hellos", json!([])).await;
    signal_node(&edge, Signal::SIGKILL);
    let _restarted = tokio::task::block_in_place(|| cluster.restart_node(&edge));
    browser
        .wait_for(
            &format!("return frescoLive.hellos > {hellos}"),
            Duration::from_secs(20),
            "live.js reconnects to the restarted edge",
        )
        .await;
    change_and_see_it(&browser, &cluster, &second, "change after the edge restarted").await;
    not_reloaded(&browser, "change after the edge restarted").await;
}
