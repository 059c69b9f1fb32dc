//! `purge-bench`: purge acknowledgement latency, sustained purge rate, and what purging costs
//! hits, on a real cluster (8 edges and 2 shields by default) on this machine, once for each
//! control plane: the embedded redb log (one purge-api) and etcd (3 members, 2 replicas).
//!
//! Prints a table and writes `target/bench/purge-latency.csv` (one line per purge and backend)
//! for `loadtest/plot_purge.py`.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use fresco_e2e::Cluster;
use fresco_e2e::origin::TestOrigin;
use fresco_loadtest::latencies::Latencies;
use serde_json::json;

/// Measures purges on a real cluster: acknowledgement latency (one purge at a time), the
/// sustained rate with many in flight, and hit throughput with and without purging.
#[derive(Parser)]
#[command(name = "purge-bench", version)]
struct Cli {
    /// Edges in the cluster.
    #[arg(long, default_value_t = 8)]
    edges: usize,
    /// Shields in the cluster.
    #[arg(long, default_value_t = 2)]
    shields: usize,
    /// Purges timed one at a time.
    #[arg(long, default_value_t = 1000)]
    sequential: usize,
    /// Seconds of the sustained-rate and hit-cost phases.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Purges in flight during the sustained phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Where to write the per-purge CSV.
    #[arg(long, default_value = "target/bench/purge-latency.csv")]
    csv: String,
    /// The control planes measured, in turn: `embedded`, `etcd`.
    #[arg(long, value_delimiter = ',', default_value = "embedded,etcd")]
    control_planes: Vec<String>,
}

/// One backend's results.
struct Measured {
    backend: String,
    latencies: Vec<f64>,
    rate: f64,
    hits: Vec<Hits>,
}

/// Hits per second on one edge without and with 200 purges/s.
struct Hits {
    quiet: f64,
    busy: f64,
    /// Purges answered per second while `busy` was measured.
    purges_per_s: f64,
}

/// Times one purge, sent to the replicas in turn.
async fn purge(http: &reqwest::Client, cluster: &Cluster, i: usize) -> f64 {
    let replicas = &cluster.info.purge_apis;
    let started = Instant::now();
    let resp = http
        .post(format!("{}/v1/purge", replicas[i % replicas.len()].url))
        .bearer_auth(&cluster.info.purge_token)
        .json(&json!({ "urls": [format!("/img/bench-{}.jpg", i % 500)] }))
        .send()
        .await
        .expect("purge-api answers");
    assert_eq!(resp.status(), 200, "purge answered {}", resp.status());
    started.elapsed().as_secs_f64() * 1000.0
}

/// wrk's requests per second on `url` for `seconds`, on `cpus` (a `taskset` list) if given.
fn wrk(url: &str, seconds: u64, cpus: Option<&str>) -> f64 {
    let args = ["-t1", "-c32", &format!("-d{seconds}s"), url];
    let out = match cpus {
        Some(cpus) => Command::new("taskset").args(["-c", cpus, "wrk"]).args(args).output(),
        None => Command::new("wrk").args(args).output(),
    }
    .expect("wrk runs (apt-get install wrk)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:").map(|v| v.trim().parse().unwrap_or(0.0)))
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let mut results = Vec::new();
    for backend in &cli.control_planes {
        results.push(measure(&cli, backend).await);
    }
    let mut csv = fresco_loadtest::output::create(&cli.csv);
    writeln!(csv, "backend,purge,latency_ms").unwrap();
    for m in &results {
        for (i, l) in m.latencies.iter().enumerate() {
            writeln!(csv, "{},{i},{l:.3}", m.backend).unwrap();
        }
    }
    println!(
        "purge-bench: {} edges, {} shields, lease 2000 ms, loopback, {} sequential URL purges, {} in flight for the rate",
        cli.edges, cli.shields, cli.sequential, cli.concurrency
    );
    println!(
        "| control plane | p50 | p90 | p99 | max | purges/s | hits without → with 200 purges/s | the same, edge-1 on a core of its own |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for m in &results {
        let answers: Latencies = m.latencies.iter().collect();
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {} | {} |",
            m.backend,
            answers.quantile_ms(0.5),
            answers.quantile_ms(0.9),
            answers.quantile_ms(0.99),
            answers.max_ms(),
            m.rate,
            m.hits[0].describe(),
            m.hits.get(1).map_or("n/a (one CPU)".into(), Hits::describe)
        );
    }
    println!("per-purge latencies: {}", cli.csv);
}

async fn measure(cli: &Cli, backend: &str) -> Measured {
    let origin = TestOrigin::start().await;
    eprintln!(
        "==> [{backend}] starting purge-api, {} shields and {} edges",
        cli.shields, cli.edges
    );
    let builder = Cluster::builder().origin(&origin.url).size(cli.edges, cli.shields);
    let builder = match backend {
        "etcd" => builder.etcd(),
        "embedded" => builder,
        other => panic!("--control-planes: `{other}` is neither embedded nor etcd"),
    };
    let cluster = Arc::new(builder.start());
    let http = reqwest::Client::new();
    // A replica that has just started waits out leases it cannot know of (one lease bound)
    // before it answers: not part of what is measured.
    for i in 0..cluster.info.purge_apis.len() {
        purge(&http, &cluster, i).await;
    }

    eprintln!("==> [{backend}] {} purges one at a time", cli.sequential);
    let mut latencies = Vec::with_capacity(cli.sequential);
    for i in 0..cli.sequential {
        latencies.push(purge(&http, &cluster, i).await);
        if (i + 1) % 200 == 0 {
            eprintln!("    {}/{}", i + 1, cli.sequential);
        }
    }

    eprintln!(
        "==> [{backend}] {} purges in flight for {} s",
        cli.concurrency, cli.seconds
    );
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..cli.concurrency {
        let (http, cluster, done, stop) = (http.clone(), cluster.clone(), done.clone(), stop.clone());
        let concurrency = cli.concurrency;
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                purge(&http, &cluster, i).await;
                done.fetch_add(1, Ordering::Relaxed);
                i += concurrency;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(cli.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    let url = cluster.edge_url(0, "/img/hot.jpg");
    http.get(&url).send().await.unwrap().bytes().await.unwrap();
    let mut hits = Vec::new();
    // With one CPU there is nothing to keep apart.
    let placements = if cpus() > 1 {
        &[Placement::Shared, Placement::Apart][..]
    } else {
        &[Placement::Shared]
    };
    for &placement in placements {
        eprintln!(
            "==> [{backend}] hit throughput on edge-1 ({}), {} s without purges and {} s with 200 purges/s",
            placement.describe(),
            cli.seconds,
            cli.seconds
        );
        hits.push(hit_cost(&cluster, &http, &url, cli.seconds, placement).await);
    }
    Measured {
        backend: backend.to_string(),
        latencies,
        rate,
        hits,
    }
}

impl Hits {
    fn describe(&self) -> String {
        let cost = (self.busy / self.quiet - 1.0) * 100.0;
        format!(
            "{:.0} → {:.0} req/s ({cost:+.1} %, {:.0} purges/s answered)",
            self.quiet, self.busy, self.purges_per_s
        )
    }
}

/// Where the hit-cost phase runs the cluster's processes.
#[derive(Clone, Copy)]
enum Placement {
    /// Every process on every core: the edge also pays for the other nodes' share of each
    /// purge, which on this machine share its two cores.
    Shared,
    /// edge-1 and wrk on the first core, every other process of the cluster and this
    /// benchmark (origin, purger) on the others: what purging costs the edge itself, as when
    /// the other nodes and purge-api run on machines of their own.
    Apart,
}

impl Placement {
    fn describe(self) -> &'static str {
        match self {
            Placement::Shared => "all processes on all cores",
            Placement::Apart => "edge-1 and wrk on a core of their own",
        }
    }
}

/// Hits per second on `url` (edge-1) for `seconds` without purges, then with 200 purges/s.
async fn hit_cost(
    cluster: &Arc<Cluster>,
    http: &reqwest::Client,
    url: &str,
    seconds: u64,
    placement: Placement,
) -> Hits {
    let all = format!("0-{}", cpus() - 1);
    let wrk_cpus = match placement {
        Placement::Apart => {
            let rest = format!("1-{}", cpus() - 1);
            pin(cluster.info.edges[0].pid, "0");
            for pid in others(cluster) {
                pin(pid, &rest);
            }
            pin(std::process::id(), &rest);
            Some("0")
        }
        Placement::Shared => None,
    };
    let quiet = tokio::task::spawn_blocking({
        let url = url.to_string();
        move || wrk(&url, seconds, wrk_cpus)
    })
    .await
    .unwrap();
    // Open loop: a purge every 5 ms whether or not the previous one was answered, so that the
    // rate holds when answers slow down.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let purger = tokio::spawn({
        let (http, cluster, stop, answered) = (http.clone(), cluster.clone(), stop.clone(), answered.clone());
        async move {
            let mut in_flight = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            for i in 0.. {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (http, cluster, answered) = (http.clone(), cluster.clone(), answered.clone());
                in_flight.spawn(async move {
                    purge(&http, &cluster, i).await;
                    answered.fetch_add(1, Ordering::Relaxed);
                });
            }
            in_flight.join_all().await;
        }
    });
    let busy = tokio::task::spawn_blocking({
        let url = url.to_string();
        move || wrk(&url, seconds, wrk_cpus)
    })
    .await
    .unwrap();
    let purges_per_s = answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    purger.await.unwrap();
    if wrk_cpus.is_some() {
        for pid in others(cluster).chain([cluster.info.edges[0].pid, std::process::id()]) {
            pin(pid, &all);
        }
    }
    Hits {
        quiet,
        busy,
        purges_per_s,
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Every process of the cluster but edge-1.
fn others(cluster: &Cluster) -> impl Iterator<Item = u32> + '_ {
    let info = &cluster.info;
    let nodes = info.edges.iter().skip(1).chain(&info.shields).map(|n| n.pid);
    let replicas = info.purge_apis.iter().map(|r| r.pid);
    nodes
        .chain(replicas)
        .chain(info.etcd.iter().map(|m| m.pid).filter(|&pid| pid != 0))
}

/// Puts every thread of process `pid` on `cpus` (a `taskset` list, such as `1-3`).
fn pin(pid: u32, cpus: &str) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset runs (util-linux)");
    assert!(status.success(), "taskset -c {cpus} of process {pid}: {status}");
}
