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

/// Opens the demo gallery on `edge` and waits until live.js has subscribed and [`IMAGE`] is
/// loaded.
async fn open_gallery(browser: &Browser, edge: &str) {
    browser.goto(&format!("{edge}/gallery.html")).await;
    let loaded = format!("return frescoLive.hellos > 0 && document.querySelector('img[alt=\"{IMAGE}\"]').complete");
    browser
        .wait_for(
            &loaded,
            Duration::from_secs(10),
            "live.js subscribes and the image loads",
        )
        .await;
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
    open_gallery(&browser, &edge.url).await;
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

/// Images the page adds later are followed too: an `srcset`, a `<picture>` source, and not
/// one marked `data-fresco-live="off"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_added_later_srcset_and_picture_are_followed_and_opt_out_is_respected() {
    let browser = Browser::start().await;
    let cluster = Cluster::builder().size(1, 1).start();
    browser
        .goto(&format!("{}/gallery.html", cluster.info.edges[0].url))
        .await;
    browser
        .wait_for(
            "return frescoLive.hellos > 0",
            Duration::from_secs(10),
            "live.js subscribes",
        )
        .await;
    browser
        .execute(
            r#"document.body.insertAdjacentHTML("beforeend",
                '<img alt="srcset" srcset="/img/sunset.jpg 1x" width="320" height="200">' +
                '<picture><source srcset="/img/tile.webp" type="image/webp">' +
                '<img alt="picture" src="/img/badge.png" width="320" height="200"></picture>' +
                '<div data-fresco-live="off"><img alt="off" src="/img/logo.svg?x=off"></div>')"#,
            json!([]),
        )
        .await;
    let added = "const t = frescoLive.tracked; return t.get('/img/sunset.jpg').size === 2 && \
                 t.get('/img/tile.webp').size === 2 && \
                 Array.from(document.images).every(i => i.complete)";
    browser
        .wait_for(added, Duration::from_secs(10), "live.js follows the added images")
        .await;
    let off = browser
        .execute("return frescoLive.tracked.has('/img/logo.svg?x=off')", json!([]))
        .await;
    assert_eq!(off, json!(false), "an image marked off is not followed");
    browser.execute("window.__noReload = 1", json!([])).await;

    for (image, alt) in [("sunset.jpg", "srcset"), ("tile.webp", "picture")] {
        let before = browser.image_digest(alt).await;
        assert!(!before.is_empty(), "{alt} is displayed");
        let change = change_demo_image(&cluster.info, image).await;
        assert_eq!(change.status, 200, "{image}: {}", change.body);
        let answered = Instant::now();
        while browser.image_digest(alt).await == before {
            assert!(
                answered.elapsed() < Duration::from_secs(1),
                "{alt}: still the old {image} 1 s after the purge answer"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        not_reloaded(&browser, alt).await;
    }

    // A feed the browser gave up on (readyState CLOSED, as after an HTTP error from a
    // restarting edge) is opened again by live.js, from its last event id.
    let hellos = browser.execute("return frescoLive.hellos", json!([])).await;
    browser
        .execute(
            "const s = frescoLive.feeds[0].source; s.close(); s.onerror(new Event('error'))",
            json!([]),
        )
        .await;
    let reopened = format!(
        "const f = frescoLive.feeds[0]; return frescoLive.hellos > {hellos} && \
         f.source.url.includes('last_event_id=' + f.lastEventId) && f.lastEventId >= 2"
    );
    browser
        .wait_for(
            &reopened,
            Duration::from_secs(5),
            "live.js reopens a closed feed with last_event_id",
        )
        .await;

    // A page of another origin (here the origin's own index) showing the edge's images: the
    // edge sends no Access-Control-Allow-Origin on images, so live.js cannot read the new
    // bytes and loads a ?fresco=<seq> variant instead (devcluster's sites ignore `fresco`).
    let edge = &cluster.info.edges[0].url;
    show_on_another_origin(&browser, &cluster, "sunset.jpg").await;
    load_live_js(&browser, edge).await;
    browser
        .wait_for(
            "return window.frescoLive && frescoLive.hellos > 0 && document.images[0].complete",
            Duration::from_secs(10),
            "live.js loaded from the edge subscribes from another origin",
        )
        .await;
    let change = change_demo_image(&cluster.info, "sunset.jpg").await;
    assert_eq!(change.status, 200, "{}", change.body);
    see_variant(
        &browser,
        "sunset.jpg",
        &change.body["seq"],
        Duration::from_secs(1),
        "a cross-origin page shows the new version",
    )
    .await;
}

/// Opens the demo origin's own index (a page of another origin than the edge) and shows the
/// edge's `image` on it, recording `fresco:swap` events in `window.__swapped`.
async fn show_on_another_origin(browser: &Browser, cluster: &Cluster, image: &str) {
    browser.goto(&format!("{}/", cluster.info.origin)).await;
    browser
        .execute(
            "const [src] = arguments; \
             document.body.insertAdjacentHTML('beforeend', \
               '<img alt=\"shown\" width=\"320\" height=\"200\" src=\"' + src + '\">'); \
             window.__swapped = []; \
             document.addEventListener('fresco:swap', e => window.__swapped.push(e.detail.url));",
            json!([format!("{}/img/{image}", cluster.info.edges[0].url)]),
        )
        .await;
}

/// Adds `<script src="<edge>/_fresco/live.js">` to the page.
async fn load_live_js(browser: &Browser, edge: &str) {
    browser
        .execute(
            "const [edge] = arguments; const s = document.createElement('script'); \
             s.src = edge + '/_fresco/live.js'; document.head.appendChild(s);",
            json!([edge]),
        )
        .await;
}

/// Waits until the page's first image was swapped to the `?fresco=<seq>` variant of `image`
/// (what live.js shows on a page of another origin) and has decoded.
async fn see_variant(browser: &Browser, image: &str, seq: &serde_json::Value, within: Duration, what: &str) {
    browser
        .wait_for(
            &format!(
                "const img = document.images[0]; return window.__swapped.includes('/img/{image}') && \
                 img.currentSrc.endsWith('/img/{image}?fresco={seq}') && img.naturalWidth > 0"
            ),
            within,
            what,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_opens_its_feed_after_its_image_changed_still_swaps_it() {
    let browser = Browser::start().await;
    let cluster = Cluster::builder().start();
    // The page shows the image; the image changes before live.js (loaded late, as a page may
    // load it lazily) has opened its feed.
    show_on_another_origin(&browser, &cluster, "badge.png").await;
    browser
        .wait_for(
            "return document.images[0].complete && document.images[0].naturalWidth > 0",
            Duration::from_secs(10),
            "the image loads",
        )
        .await;
    let change = change_demo_image(&cluster.info, "badge.png").await;
    assert_eq!(change.status, 200, "{}", change.body);
    load_live_js(&browser, &cluster.info.edges[0].url).await;
    see_variant(
        &browser,
        "badge.png",
        &change.body["seq"],
        Duration::from_secs(5),
        "the purge made before the feed opened is told, and the new version shown",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_js_swaps_a_changed_image_over_https() {
    let cluster = Cluster::builder().size(1, 1).tls().start();
    let server = fresco_devcluster::tls::ClusterTls::of_state_dir(cluster.state_dir()).server;
    let browser = Browser::start_trusting(&[server.public_key_pin().unwrap()]).await;
    let edge = &cluster.info.edges[0];
    assert!(edge.url.starts_with("https://"));
    open_gallery(&browser, &edge.url).await;
    assert_eq!(
        browser.execute("return location.protocol", json!([])).await,
        json!("https:")
    );
    let first = browser.image_digest(IMAGE).await;
    assert!(!first.is_empty(), "the image is displayed");
    browser.execute("window.__noReload = 1", json!([])).await;
    change_and_see_it(&browser, &cluster, &first, "over https").await;
    not_reloaded(&browser, "over https").await;
}
