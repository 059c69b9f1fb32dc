//! `store-bench`: what the store keeps and how fast it comes back (issue 5), on a real cluster
//! (one edge, one shield) in front of a generated corpus origin.
//!
//! 1. **Bytes**: a corpus with 30 % duplicate bodies and 10 % SVG is warmed through the edge;
//!    the edge's and shield's `fresco_store_logical_bytes` / `fresco_store_stored_bytes` per
//!    tier say what deduplication and compression saved.
//! 2. **Hit latency** from memory and from disk: the edge is restarted with a memory tier much
//!    smaller than the corpus, then a few hot URLs (memory) and every other URL once (disk) are
//!    requested one at a time; the store's lookup counters confirm where the hits were found.
//! 3. **Warm restart**: a second cluster's edge (disk ≥ 2 GiB) is warmed with `--disk-gb` of
//!    distinct bodies; a Zipf trace is replayed for `--trace-secs`, the edge is killed with
//!    `-9` and restarted, and the same trace is replayed from its start: time to ready, to the
//!    first hit, and the hit ratio of the period after against the period before.
//!
//! Writes `<out>-bytes.csv`, `<out>-latency.csv`, `<out>-restart.csv` and `<out>-summary.csv`
//! for `loadtest/plot_store.py`.

// A binary's root looks for its modules beside it; these are the bench's own, in its folder.
#[path = "store_bench/bytes.rs"]
mod bytes;
#[path = "store_bench/latency.rs"]
mod latency;
#[path = "store_bench/restart.rs"]
mod restart;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fresco_e2e::corpus::{BodyKind, Corpus, CorpusMix, CorpusOrigin};
use fresco_e2e::metrics::{Scrape, wait_for_disk_writes};
use fresco_e2e::{Cluster, NodeInfo};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use fresco_loadtest::node_sizes::{CacheSizes, restart_with_sizes};
use fresco_loadtest::pool::{Until, get, run_pool};

/// Measures the store on a real cluster: stored against logical bytes, hit latency from
/// memory and disk, and a warm restart after `kill -9`.
#[derive(Parser)]
#[command(name = "store-bench", version)]
struct Cli {
    /// URLs of the corpus of phases 1 and 2.
    #[arg(long, default_value_t = 2000)]
    urls: usize,
    /// Hits timed per tier in phase 2.
    #[arg(long, default_value_t = 2000)]
    latency_requests: usize,
    /// The edge's memory tier in phase 2, MiB (small, so that most hits come from disk).
    #[arg(long, default_value_t = 4)]
    small_memory_mib: u64,
    /// Distinct bytes on the edge's disk before the restart of phase 3, GB.
    #[arg(long, default_value_t = 1.0)]
    disk_gb: f64,
    /// The edge's memory tier in phase 3, MiB.
    #[arg(long, default_value_t = 64)]
    restart_memory_mib: u64,
    /// Seconds of trace replayed before the kill, and again after the restart.
    #[arg(long, default_value_t = 60)]
    trace_secs: u64,
    /// Requests in flight during the replays.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Requests in flight while warming.
    #[arg(long, default_value_t = 8)]
    warm_concurrency: usize,
    /// Zipf exponent of the trace.
    #[arg(long, default_value_t = 0.9)]
    zipf: f64,
    /// Seed of corpora and trace.
    #[arg(long, default_value_t = 5)]
    seed: u64,
    /// Prefix of the CSVs written.
    #[arg(long, default_value = "target/bench/store")]
    out: String,
}

/// Requests every path of `paths` once through `base`, printing progress; returns how many
/// were not answered 200.
async fn warm(base: &str, paths: Arc<Vec<String>>, concurrency: usize) -> usize {
    let http = reqwest::Client::new();
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (n, started) = (paths.len(), Instant::now());
    let job = {
        let (base, failed) = (base.to_string(), failed.clone());
        move |i: usize| {
            let (http, url, failed) = (http.clone(), format!("{base}{}", paths[i]), failed.clone());
            async move {
                if !get(&http, &url).await.ok {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if (i + 1).is_multiple_of((n / 10).max(1)) {
                    eprintln!("    warmed {}/{n} ({:.1} s)", i + 1, started.elapsed().as_secs_f64());
                }
            }
        }
    };
    run_pool(concurrency, Until::Jobs(n), job).await;
    failed.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits until the disk tiers of `nodes` have stopped writing.
async fn settle(nodes: &[&NodeInfo]) {
    for node in nodes {
        wait_for_disk_writes(&node.admin, 0, Duration::from_secs(120)).await;
    }
}

fn paths_of(corpus: &Corpus) -> Arc<Vec<String>> {
    Arc::new(corpus.entries().iter().map(|e| e.path.clone()).collect())
}

/// Headline numbers, `metric,value`, for the plot and for docs/benchmarks.md.
struct Summary(Vec<(String, f64)>);

impl Summary {
    fn add(&mut self, metric: impl Into<String>, value: f64) {
        self.0.push((metric.into(), value));
    }

    fn write_csv(&self, path: &str) {
        let mut csv = fresco_loadtest::output::create(path);
        writeln!(csv, "metric,value").unwrap();
        for (metric, value) in &self.0 {
            writeln!(csv, "{metric},{value:.6}").unwrap();
        }
    }
}

/// Phases 1 and 2, on one cluster.
async fn bytes_and_latency(cli: &Cli, summary: &mut Summary) {
    let mix = CorpusMix {
        seed: cli.seed,
        ..CorpusMix::default()
    };
    let origin = CorpusOrigin::start(Corpus::with_urls(mix, cli.urls)).await;
    let totals = origin.corpus.totals();
    let paths = paths_of(&origin.corpus);
    eprintln!("==> phase 1: {} URLs through 1 edge and 1 shield", totals.urls);
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let (edge, shield) = (cluster.info.edges[0].clone(), cluster.info.shields[0].clone());
    let failed = warm(&edge.url, paths.clone(), cli.warm_concurrency).await;
    settle(&[&edge, &shield]).await;
    let rows = bytes::read(&[&edge, &shield]).await;
    println!("store-bench phase 1: stored/logical bytes ({failed} warm requests failed)");
    bytes::print(&totals, &rows);
    bytes::write_csv(&format!("{}-bytes.csv", cli.out), &totals, &rows);
    for node in bytes::read_savings(&[&edge, &shield]).await {
        node.print();
        if let Some(ratio) = node.compression_ratio() {
            summary.add(format!("compression_ratio_{}", node.node), ratio);
        }
    }
    summary.add(
        "corpus_svg_share_of_distinct_bytes",
        totals.distinct_svg_bytes as f64 / totals.distinct_bytes as f64,
    );
    summary.add(
        "ideal_dedup_ratio",
        totals.distinct_bytes as f64 / totals.logical_bytes as f64,
    );
    for row in &rows {
        if let Some(ratio) = row.ratio() {
            summary.add(format!("stored_over_logical_{}_{}", row.node, row.tier), ratio);
        }
    }

    eprintln!(
        "==> phase 2: the edge restarted with a {} MiB memory tier; hits timed one at a time",
        cli.small_memory_mib
    );
    let sizes = CacheSizes {
        memory_mib: Some(cli.small_memory_mib),
        disk_mib: None,
    };
    let _edge_process = tokio::task::block_in_place(|| restart_with_sizes(&cluster, &edge, sizes, false));
    // Hot: a few distinct images, well within the small memory tier; cold: every other URL
    // once, in a random order, so each is read from disk.
    let images: Vec<&String> = origin
        .corpus
        .entries()
        .iter()
        .zip(paths.iter())
        .filter(|(e, _)| e.kind == BodyKind::Image)
        .map(|(_, p)| p)
        .collect();
    let hot: Vec<String> = images[..16].iter().map(|p| format!("{}{p}", edge.url)).collect();
    let mut cold: Vec<String> = paths
        .iter()
        .filter(|p| !images[..16].contains(p))
        .map(|p| format!("{}{p}", edge.url))
        .collect();
    let mut rng = StdRng::seed_from_u64(cli.seed);
    cold.shuffle(&mut rng);
    cold.truncate(cli.latency_requests);
    let http = reqwest::Client::new();
    for url in &hot {
        get(&http, url).await;
    }
    let hot_requests: Vec<String> = hot.iter().cycle().take(cli.latency_requests).cloned().collect();
    let runs = [
        latency::measure(&http, &edge, "memory", &hot_requests).await,
        latency::measure(&http, &edge, "disk", &cold).await,
    ];
    println!(
        "store-bench phase 2: hit latency on the edge ({} MiB memory)",
        cli.small_memory_mib
    );
    for run in &runs {
        run.print();
        let latencies = run.latencies();
        summary.add(format!("{}_hit_p50_ms", run.tier), latencies.quantile_ms(0.5));
        summary.add(format!("{}_hit_p99_ms", run.tier), latencies.quantile_ms(0.99));
        let found = run.memory_lookups + run.disk_lookups;
        let share = if run.tier == "memory" {
            run.memory_lookups
        } else {
            run.disk_lookups
        };
        summary.add(
            format!("{}_run_share_found_in_{}", run.tier, run.tier),
            share / found.max(1.0),
        );
    }
    latency::write_csv(&format!("{}-latency.csv", cli.out), &runs);
}

/// Phase 3, on a cluster of its own (its edge's disk tier is sized for it).
async fn warm_restart(cli: &Cli, summary: &mut Summary) {
    let mix = CorpusMix {
        duplicate_share: 0.0,
        seed: cli.seed + 1,
        ..CorpusMix::default()
    };
    let corpus = Corpus::with_distinct_bytes(mix, (cli.disk_gb * 1e9) as u64);
    let origin = CorpusOrigin::start(corpus).await;
    let totals = origin.corpus.totals();
    let paths = paths_of(&origin.corpus);
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let edge = cluster.info.edges[0].clone();
    let disk_mib = ((cli.disk_gb * 2.0 * 1024.0) as u64).max(2048);
    let sizes = CacheSizes {
        memory_mib: Some(cli.restart_memory_mib),
        disk_mib: Some(disk_mib),
    };
    let edge_process = tokio::task::block_in_place(|| restart_with_sizes(&cluster, &edge, sizes, true));
    eprintln!(
        "==> phase 3: warming {} URLs ({:.2} GB) through an edge with {} MiB memory, {disk_mib} MiB disk",
        totals.urls,
        totals.logical_bytes as f64 / 1e9,
        cli.restart_memory_mib
    );
    let started = Instant::now();
    let failed = warm(&edge.url, paths.clone(), cli.warm_concurrency).await;
    settle(&[&edge]).await;
    let scrape = Scrape::of(&edge.admin).await;
    let on_disk = scrape.value_or_zero("fresco_store_bytes", &[("tier", "disk")]);
    eprintln!(
        "    warmed in {:.1} s ({failed} failed); the edge's disk tier holds {:.2} GB",
        started.elapsed().as_secs_f64(),
        on_disk / 1e9
    );
    summary.add("restart_disk_bytes_before_kill", on_disk);
    // foyer drops a disk write, rather than wait, when its queues are full: such an object is
    // served from memory but is not on disk, and a kill -9 loses it.
    let dropped = [
        ("foyer_storage_inner_op_total", "buffer_overflow"),
        ("foyer_storage_inner_op_total", "channel_overflow"),
        ("foyer_storage_block_engine_op_total", "enqueue_skip"),
    ]
    .map(|(name, op)| format!("{op} {}", scrape.value_or_zero(name, &[("op", op)])));
    eprintln!(
        "    foyer disk writes: {} enqueued; dropped: {}",
        scrape.value_or_zero("foyer_storage_op_total", &[("op", "enqueue")]),
        dropped.join(", ")
    );

    let trace = restart::zipf_trace(paths.len(), cli.zipf, cli.seed, 4_000_000);
    let hot_url = format!("{}{}", edge.url, paths[trace.hottest]);
    let trace = Arc::new(trace.requests);
    let duration = Duration::from_secs(cli.trace_secs);
    let http = reqwest::Client::new();
    eprintln!(
        "==> phase 3: replaying the trace for {} s, then kill -9 and restart",
        cli.trace_secs
    );
    let lookups_at_start = latency::store_lookups(&edge).await;
    let origin_at_start = origin.requests();
    let before = restart::replay(
        &http,
        &edge.url,
        paths.clone(),
        trace.clone(),
        cli.concurrency,
        Instant::now(),
        duration,
    )
    .await;
    let lookups_at_end = latency::store_lookups(&edge).await;
    let origin_before = origin.requests() - origin_at_start;
    let origin_after_kill = origin.requests();
    drop(edge_process); // SIGKILL, and reaped
    let spawned = Instant::now();
    let _edge_process = cluster.spawn_node(&edge);
    let readyz = format!("{}/readyz", edge.admin);
    let (recovery, after) = tokio::join!(
        restart::time_recovery(&readyz, &hot_url, spawned),
        restart::replay(&http, &edge.url, paths, trace, cli.concurrency, spawned, duration)
    );
    let recovery_metric = Scrape::of(&edge.admin)
        .await
        .value("fresco_store_recovery_seconds", &[]);
    // The restarted process counts from zero.
    let lookups_after = latency::store_lookups(&edge).await;
    let restarted = Scrape::of(&edge.admin).await;
    let lost = [
        "fresco_store_dangling_entries_total",
        "fresco_store_integrity_failures_total",
        "fresco_store_lookups_total",
    ]
    .map(|name| {
        let labels: &[(&str, &str)] = if name == "fresco_store_lookups_total" {
            &[("result", "miss")]
        } else {
            &[]
        };
        format!("{name} {}", restarted.value_or_zero(name, labels))
    });
    let lookups_before = (
        lookups_at_end.0 - lookups_at_start.0,
        lookups_at_end.1 - lookups_at_start.1,
    );
    let disk_share = |(memory, disk): (f64, f64)| disk / (memory + disk).max(1.0);
    restart::write_csv(&format!("{}-restart.csv", cli.out), &before, &after);

    let ratio = |(answered, hits, _): (usize, usize, usize)| hits as f64 / answered.max(1) as f64;
    let (totals_before, totals_after) = (restart::totals(&before), restart::totals(&after));
    println!(
        "store-bench phase 3: warm restart with {:.2} GB on the edge's disk ({} URLs, Zipf {})",
        on_disk / 1e9,
        totals.urls,
        cli.zipf
    );
    println!(
        "  kill -9 → /readyz 200 in {:.3} s, first HIT in {:.3} s (store recovery: {})",
        recovery.ready_s,
        recovery.first_hit_s,
        recovery_metric.map_or("n/a".into(), |s| format!("{s:.3} s"))
    );
    println!(
        "  hit ratio: {:.4} in the {} s before the kill ({} answered), {:.4} in the {} s after the restart ({} answered, {} failed while it started)",
        ratio(totals_before),
        cli.trace_secs,
        totals_before.0,
        ratio(totals_after),
        cli.trace_secs,
        totals_after.0,
        totals_after.2
    );
    for (phase, seconds) in [("before", &before), ("after", &after)] {
        let (by_status, first) = restart::not_hits(seconds);
        if !by_status.is_empty() {
            println!("  not hits {phase}: {by_status:?}; first: {}", first.join(", "));
        }
    }
    println!(
        "  origin requests during the replays: {origin_before} before, {} after",
        origin.requests() - origin_after_kill
    );
    println!("  the restarted edge's store: {}", lost.join(", "));
    println!(
        "  hits found on disk (the rest in memory): {:.1} % before, {:.1} % after",
        disk_share(lookups_before) * 100.0,
        disk_share(lookups_after) * 100.0
    );
    summary.add("disk_share_before", disk_share(lookups_before));
    summary.add("disk_share_after", disk_share(lookups_after));
    summary.add("restart_ready_s", recovery.ready_s);
    summary.add("restart_first_hit_s", recovery.first_hit_s);
    if let Some(seconds) = recovery_metric {
        summary.add("restart_store_recovery_s", seconds);
    }
    summary.add("hit_ratio_before", ratio(totals_before));
    summary.add("hit_ratio_after", ratio(totals_after));
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let mut summary = Summary(Vec::new());
    let started = Instant::now();
    bytes_and_latency(&cli, &mut summary).await;
    warm_restart(&cli, &mut summary).await;
    summary.write_csv(&format!("{}-summary.csv", cli.out));
    eprintln!(
        "==> done in {:.0} s; CSVs: {}-{{bytes,latency,restart,summary}}.csv",
        started.elapsed().as_secs_f64(),
        cli.out
    );
}
