//! `swap-bench`: how long after a purge a browser shows the new image. A headless Chromium
//! opens the demo gallery through edge-1; the demo origin changes an image and sends the
//! signed purge webhook, `N` times; for each change the bench records when the webhook was
//! sent and answered (the origin's clock) and when `live.js` swapped the image in the page
//! (`fresco:swap`'s `at`: `performance.timeOrigin + performance.now()`, the same machine's
//! clock).
//!
//! Prints percentiles and writes `target/bench/swap-latency.csv` for `loadtest/plot_swap.py`.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use fresco_e2e::Cluster;
use fresco_e2e::browser::{Browser, change_demo_image};
use fresco_loadtest::latencies::Latencies;
use serde_json::json;

/// Measures purge → image swapped in Chromium on a devcluster with the demo origin.
#[derive(Parser)]
#[command(name = "swap-bench", version)]
struct Cli {
    /// Changes measured, one at a time.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Edges in the cluster (the browser uses edge-1).
    #[arg(long, default_value_t = 2)]
    edges: usize,
    /// Where to write the per-change CSV.
    #[arg(long, default_value = "target/bench/swap-latency.csv")]
    csv: String,
}

/// The demo's images, changed in turn. A signature is accepted once, so the origin waits for
/// the next second before purging one image twice in a second: more images, fewer waits.
const IMAGES: [&str; 4] = ["sunset.jpg", "badge.png", "tile.webp", "logo.svg"];

/// Records every `fresco:swap`, and when each `change` event reached the page (a listener
/// after live.js's own: live.js has just started its fetch).
const RECORD: &str = r#"
window.__swaps = [];
window.__events = {};
document.addEventListener("fresco:swap", e => window.__swaps.push(e.detail));
frescoLive.feeds.forEach(f => f.source.addEventListener("change", e => {
  window.__events[JSON.parse(e.data).seq] = performance.timeOrigin + performance.now();
}));
"#;

/// Resolves with the `fresco:swap` detail of purge `arguments[0]` and when its event
/// arrived, or null after 5 s.
const WAIT_FOR_SWAP: &str = r#"
const [seq, done] = arguments;
const started = performance.now();
(function poll() {
  const swap = window.__swaps.find(s => s.seq === seq);
  if (swap) return done(Object.assign({event: window.__events[seq]}, swap));
  if (performance.now() - started > 5000) return done(null);
  setTimeout(poll, 2);
})();
"#;

/// One measured change.
struct Sample {
    image: &'static str,
    seq: u64,
    sent_ms: f64,
    answered_ms: f64,
    event_ms: f64,
    swap_ms: f64,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let browser = Browser::start().await;
    eprintln!("==> starting devcluster ({} edges, 1 shield, demo origin)", cli.edges);
    let cluster = Cluster::builder().size(cli.edges, 1).start();
    let gallery = format!("{}/gallery.html", cluster.info.edges[0].url);
    browser.goto(&gallery).await;
    browser
        .wait_for(
            "return window.frescoLive && frescoLive.hellos > 0 && \
             Array.from(document.images).every(i => i.complete)",
            Duration::from_secs(10),
            "the gallery loads and live.js subscribes",
        )
        .await;
    browser.execute(RECORD, json!([])).await;

    eprintln!("==> {} changes, one at a time, in {gallery}", cli.changes);
    let mut samples = Vec::with_capacity(cli.changes);
    for i in 0..cli.changes {
        let image = IMAGES[i % IMAGES.len()];
        let change = change_demo_image(&cluster.info, image).await;
        assert_eq!(change.status, 200, "{image}: the purge answered {}", change.body);
        let seq = change.body["seq"].as_u64().expect("the purge answer has a seq");
        let swap = browser.execute_async(WAIT_FOR_SWAP, json!([seq])).await;
        let Some(swap_ms) = swap["at"].as_f64() else {
            panic!("purge {seq} of {image}: no swap in the page within 5 s");
        };
        assert_eq!(swap["url"], json!(format!("/img/{image}")), "purge {seq}");
        samples.push(Sample {
            image,
            seq,
            sent_ms: change.purge_sent_ms,
            answered_ms: change.purge_answered_ms,
            event_ms: swap["event"].as_f64().unwrap_or(f64::NAN),
            swap_ms,
        });
        if (i + 1) % 10 == 0 {
            eprintln!("    {}/{}", i + 1, cli.changes);
        }
    }

    let mut csv = fresco_loadtest::output::create(&cli.csv);
    writeln!(
        csv,
        "change,image,seq,purge_sent_ms,purge_answered_ms,event_ms,swapped_ms,from_sent_ms,from_answer_ms,event_from_sent_ms"
    )
    .unwrap();
    for (i, s) in samples.iter().enumerate() {
        writeln!(
            csv,
            "{i},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3}",
            s.image,
            s.seq,
            s.sent_ms,
            s.answered_ms,
            s.event_ms,
            s.swap_ms,
            s.swap_ms - s.sent_ms,
            s.swap_ms - s.answered_ms,
            s.event_ms - s.sent_ms
        )
        .unwrap();
    }
    let latencies = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Latencies>();
    let from_sent = latencies(|s| s.swap_ms - s.sent_ms);
    let from_answer = latencies(|s| s.swap_ms - s.answered_ms);
    let answer = latencies(|s| s.answered_ms - s.sent_ms);
    let event = latencies(|s| s.event_ms - s.sent_ms);
    let fetch = latencies(|s| s.swap_ms - s.event_ms);
    println!(
        "swap-bench: {} changes, {} edges + 1 shield, headless Chromium on edge-1, loopback",
        samples.len(),
        cli.edges
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}",
        "", "p50 ms", "p95 ms", "min ms", "max ms"
    );
    for (name, v) in [
        ("purge sent -> purge answered", &answer),
        ("purge sent -> change event in page", &event),
        ("change event -> image swapped", &fetch),
        ("purge sent -> image swapped", &from_sent),
        ("purge answered -> image swapped", &from_answer),
    ] {
        println!(
            "{name:<36} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            v.quantile_ms(0.5),
            v.quantile_ms(0.95),
            v.min_ms(),
            v.max_ms()
        );
    }
    println!("csv: {}", cli.csv);
}
