//! Phase 2: hit latency from memory and from disk, one request at a time (service time, not
//! queueing), with the store's lookup counters saying where the hits were found.

use std::io::Write;

use fresco_e2e::NodeInfo;
use fresco_e2e::metrics::Scrape;

use fresco_loadtest::latencies::Latencies;
use fresco_loadtest::pool::get;

/// The hits of one run, and where the store found them.
pub struct TierLatency {
    /// What the run aimed at: `memory` or `disk`.
    pub tier: &'static str,
    /// Latency of each hit, sorted.
    pub sorted_ms: Vec<f64>,
    /// Requests that were not hits.
    pub not_hits: usize,
    /// Increase of `fresco_store_lookups_total{result="memory"}` during the run.
    pub memory_lookups: f64,
    /// Increase of `fresco_store_lookups_total{result="disk"}` during the run.
    pub disk_lookups: f64,
}

/// The node's store lookups so far that found the object in memory, and on disk.
pub async fn store_lookups(edge: &NodeInfo) -> (f64, f64) {
    let scrape = Scrape::of(&edge.admin).await;
    let found = |result| scrape.value_or_zero("fresco_store_lookups_total", &[("result", result)]);
    (found("memory"), found("disk"))
}

/// GETs each of `urls` in order, one at a time.
pub async fn measure(http: &reqwest::Client, edge: &NodeInfo, tier: &'static str, urls: &[String]) -> TierLatency {
    let (memory_before, disk_before) = store_lookups(edge).await;
    let mut sorted_ms = Vec::with_capacity(urls.len());
    let mut not_hits = 0;
    for url in urls {
        let outcome = get(http, url).await;
        if outcome.hit {
            sorted_ms.push(outcome.latency_ms);
        } else {
            not_hits += 1;
        }
    }
    sorted_ms.sort_by(f64::total_cmp);
    let (memory_after, disk_after) = store_lookups(edge).await;
    TierLatency {
        tier,
        sorted_ms,
        not_hits,
        memory_lookups: memory_after - memory_before,
        disk_lookups: disk_after - disk_before,
    }
}

impl TierLatency {
    /// The hits' latencies, for percentiles.
    pub fn latencies(&self) -> Latencies {
        self.sorted_ms.iter().collect()
    }

    /// Prints one line.
    pub fn print(&self) {
        let latencies = self.latencies();
        println!(
            "  {:<6} hits: p50 {:.3} ms, p99 {:.3} ms over {} hits ({} not hits); store lookups: {:.0} memory, {:.0} disk",
            self.tier,
            latencies.quantile_ms(0.5),
            latencies.quantile_ms(0.99),
            self.sorted_ms.len(),
            self.not_hits,
            self.memory_lookups,
            self.disk_lookups
        );
    }
}

/// Writes `tier,latency_ms`, one line per hit.
pub fn write_csv(path: &str, runs: &[TierLatency]) {
    let mut csv = fresco_loadtest::output::create(path);
    writeln!(csv, "tier,latency_ms").unwrap();
    for run in runs {
        for ms in &run.sorted_ms {
            writeln!(csv, "{},{ms:.4}", run.tier).unwrap();
        }
    }
}
