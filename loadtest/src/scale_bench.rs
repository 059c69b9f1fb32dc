//! `scale-bench`: how fresco grows with nodes (issue 9; `make bench-scale`).
//!
//! 1. **Edges.** Warm-hit throughput of 1, 2 and 4 edges, each confined to the same CPU quota
//!    (a cgroup v1 group per edge, `--edge-cpus`, default 0.25), so the machine's two cores do
//!    not cap their sum; one wrk per edge, outside the quotas. Reported as requests/s, p50/p99
//!    and the ratio to N times one edge.
//! 2. **Shields.** Origin fetches for a working set twice one shield's memory (`--shield-mib`,
//!    64 MiB, memory only) through one edge with a tiny memory tier, against 1 shield and
//!    against 2: a first pass over every object in order, then the same seeded sequence of
//!    uniform random requests; reported in all and after the first pass.
//! 3. **Replicas.** 2 edges (tiny memory tiers) and 3 shields with `routing.replicas` 1 and 2:
//!    the shields' bytes once 600 keys are warm, and the origin fetches in the minute after
//!    shield-1's `kill -9` under uniform random requests.
//!
//! Writes `<out>.csv` (and prints a table); `loadtest/plot_scaling.py` draws `<out>.png`.

#[path = "scale_bench/cgroup.rs"]
mod cgroup;
#[path = "scale_bench/wrk.rs"]
mod wrk;

use std::io::Write;
use std::sync::Arc;

use clap::Parser;
use fresco_e2e::origin::TestOrigin;
use fresco_e2e::{Cluster, get_ok};
use fresco_loadtest::node_sizes::{CacheSizes, restart_with_sizes};
use fresco_loadtest::pool::{Until, get, run_pool};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cgroup::CpuQuota;

/// How fresco scales: warm-hit throughput of 1, 2, 4 edges under equal CPU quotas, and the
/// origin fetches of a working set twice one shield's memory with 1 and 2 shields.
#[derive(Parser)]
#[command(name = "scale-bench")]
struct Cli {
    /// Seconds of load per edge count.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// CPUs each edge may use (its cgroup's cfs quota).
    #[arg(long, default_value_t = 0.25)]
    edge_cpus: f64,
    /// wrk connections per edge.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Memory tier of each shield in part 2, MiB; the working set is twice this.
    #[arg(long, default_value_t = 64)]
    shield_mib: u64,
    /// Requests in part 2, per shield count.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Seed of part 2's request sequence.
    #[arg(long, default_value_t = 9)]
    seed: u64,
    /// Keys of part 3 (replicas).
    #[arg(long, default_value_t = 600)]
    replica_keys: usize,
    /// Seconds of part 3's load after the shield is killed ("the minute after").
    #[arg(long, default_value_t = 60)]
    after_seconds: u64,
    /// Measure part 1 (edges) only, as `make eval` does.
    #[arg(long)]
    edges_only: bool,
    /// Output prefix.
    #[arg(long, default_value = "target/bench/scaling")]
    out: String,
}

/// One row of the results.
struct Row {
    part: &'static str,
    n: usize,
    value: f64,
    ratio: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn edges_part(cli: &Cli) -> anyhow::Result<Vec<Row>> {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).size(4, 1).start();
    let path = "/img/scale-30kb.jpg";
    let mut quotas = Vec::new();
    for (i, edge) in cluster.info.edges.iter().enumerate() {
        quotas.push(CpuQuota::confine(
            &format!("fresco-scale-edge-{i}"),
            edge.pid,
            cli.edge_cpus,
        )?);
        get_ok(&format!("{}{path}", edge.url)).await;
        get_ok(&format!("{}{path}", edge.url)).await;
    }
    let mut rows = Vec::new();
    let mut one = 0.0;
    for n in [1usize, 2, 4] {
        eprintln!(
            "==> {n} edge(s) at {} CPU each: wrk for {} s",
            cli.edge_cpus, cli.seconds
        );
        let before: Vec<u64> = quotas.iter().map(CpuQuota::throttled_periods).collect();
        let runs: Vec<_> = cluster.info.edges[..n]
            .iter()
            .map(|e| wrk::start(&format!("{}{path}", e.url), cli.connections, cli.seconds))
            .collect::<Result<_, _>>()?;
        let results: Vec<wrk::WrkResult> =
            tokio::task::block_in_place(|| runs.into_iter().map(wrk::finish).collect::<Result<_, _>>())?;
        let rps: f64 = results.iter().map(|r| r.rps).sum();
        let errors: u64 = results.iter().map(|r| r.errors).sum();
        let throttled = quotas[..n].iter().zip(&before).all(|(q, b)| q.throttled_periods() > *b);
        if n == 1 {
            one = rps;
        }
        let ratio = rps / (n as f64 * one);
        let p50 = results.iter().map(|r| r.p50_ms).sum::<f64>() / n as f64;
        let p99 = results.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
        eprintln!(
            "    {rps:.0} req/s ({:.2} of {n} x one edge), p50 {p50:.2} ms, p99 {p99:.2} ms, {errors} errors{}",
            ratio,
            if throttled {
                ""
            } else {
                "; an edge never reached its quota: not CPU-bound"
            }
        );
        rows.push(Row {
            part: "edges",
            n,
            value: rps,
            ratio,
            p50_ms: p50,
            p99_ms: p99,
        });
    }
    drop(quotas);
    Ok(rows)
}

async fn shields_part(cli: &Cli) -> anyhow::Result<Vec<Row>> {
    // 20 KB bodies: a working set twice one shield's memory.
    let working_set = (2 * cli.shield_mib as usize * 1024) / 20;
    let mut sequence: Vec<usize> = Vec::with_capacity(cli.requests);
    let mut rng = StdRng::seed_from_u64(cli.seed);
    for _ in 0..cli.requests {
        sequence.push(rng.random_range(0..working_set));
    }
    let sequence = Arc::new(sequence);
    let mut rows = Vec::new();
    let (mut one, mut one_steady) = (0.0, 0.0);
    for shields in [1usize, 2] {
        eprintln!(
            "==> {shields} shield(s) of {} MiB: {} requests over {working_set} objects ({} MiB)",
            cli.shield_mib,
            cli.requests,
            working_set * 20 / 1024
        );
        let origin = TestOrigin::start().await;
        let cluster = Cluster::builder().origin(&origin.url).size(1, shields).start();
        let mut keep = Vec::new();
        for shield in &cluster.info.shields {
            let sizes = CacheSizes {
                memory_mib: Some(cli.shield_mib),
                disk_mib: Some(0),
            };
            keep.push(tokio::task::block_in_place(|| {
                restart_with_sizes(&cluster, shield, sizes, true)
            }));
        }
        let edge = cluster.info.edges[0].clone();
        let sizes = CacheSizes {
            memory_mib: Some(2),
            disk_mib: Some(0),
        };
        keep.push(tokio::task::block_in_place(|| {
            restart_with_sizes(&cluster, &edge, sizes, true)
        }));
        let cold: Vec<usize> = (0..working_set).collect();
        let failed = send(&edge.url, Arc::new(cold), 0).await;
        let after_cold = origin.requests_total();
        let failed = failed + send(&edge.url, sequence.clone(), 5000).await;
        let fetched = origin.requests_total() as f64;
        let steady = fetched - after_cold as f64;
        if shields == 1 {
            one = fetched;
            one_steady = steady;
        }
        eprintln!(
            "    origin fetches: {fetched:.0} in all ({:.3} of 1 shield's), {steady:.0} after the first pass ({:.3}), {failed} failed requests",
            fetched / one,
            steady / one_steady.max(1.0)
        );
        rows.push(Row {
            part: "shields_steady",
            n: shields,
            value: steady,
            ratio: steady / one_steady.max(1.0),
            p50_ms: 0.0,
            p99_ms: 0.0,
        });
        rows.push(Row {
            part: "shields",
            n: shields,
            value: fetched,
            ratio: fetched / one,
            p50_ms: 0.0,
            p99_ms: 0.0,
        });
        drop(keep);
        drop(cluster);
    }
    Ok(rows)
}

async fn replicas_part(cli: &Cli) -> anyhow::Result<Vec<Row>> {
    let keys = cli.replica_keys;
    let mut rows = Vec::new();
    let (mut fetched_one, mut bytes_one) = (0.0, 0.0);
    for replicas in [1usize, 2] {
        eprintln!("==> replicas {replicas}: 2 edges, 3 shields, {keys} keys; then shield-1 is killed");
        let origin = TestOrigin::start().await;
        let cluster = Cluster::builder()
            .origin(&origin.url)
            .size(2, 3)
            .replicas(replicas)
            .start();
        // Edges with a tiny memory tier, so the keys' misses keep reaching the shields.
        let mut keep = Vec::new();
        for edge in &cluster.info.edges {
            let sizes = CacheSizes {
                memory_mib: Some(2),
                disk_mib: Some(0),
            };
            keep.push(tokio::task::block_in_place(|| {
                restart_with_sizes(&cluster, edge, sizes, true)
            }));
        }
        let edges: Vec<String> = cluster.info.edges.iter().map(|e| e.url.clone()).collect();
        // Each key asked 6 times over both edges: the edges spread a key's misses over its
        // replicas, so each replica is filled (all but about 1 in 32 keys, for R = 2).
        let warm: Vec<String> = (0..keys * 6)
            .map(|i| format!("{}/img/rep-{}.jpg", edges[i % 2], (i / 2) % keys))
            .collect();
        send_urls(Arc::new(warm)).await;
        let mut bytes = 0.0;
        for shield in &cluster.info.shields {
            bytes += fresco_e2e::metrics::Scrape::of(&shield.admin)
                .await
                .value("fresco_store_logical_bytes", &[("tier", "memory")])
                .unwrap_or(0.0);
        }
        fresco_e2e::signal_node(&cluster.info.shields[0], fresco_e2e::Signal::SIGKILL);
        let before = origin.requests_total();
        eprintln!(
            "    shield-1 killed; uniform random requests for {} s",
            cli.after_seconds
        );
        let until = Until::Deadline(std::time::Instant::now() + std::time::Duration::from_secs(cli.after_seconds));
        let http = fresco_e2e::client();
        let seed = cli.seed;
        run_pool(8, until, move |i| {
            let key =
                StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).random_range(0..keys);
            let (http, url) = (http.clone(), format!("{}/img/rep-{key}.jpg", edges[i % 2]));
            async move {
                get(&http, &url).await;
            }
        })
        .await;
        let fetched = (origin.requests_total() - before) as f64;
        if replicas == 1 {
            (fetched_one, bytes_one) = (fetched, bytes);
        }
        eprintln!(
            "    origin fetches after the kill: {fetched:.0} ({:.3} of R = 1's); shields hold {:.1} MiB ({:.2}x R = 1's)",
            fetched / fetched_one.max(1.0),
            bytes / 1048576.0,
            bytes / bytes_one
        );
        rows.push(Row {
            part: "replicas_after_kill",
            n: replicas,
            value: fetched,
            ratio: fetched / fetched_one.max(1.0),
            p50_ms: 0.0,
            p99_ms: 0.0,
        });
        rows.push(Row {
            part: "replicas_bytes",
            n: replicas,
            value: bytes,
            ratio: bytes / bytes_one,
            p50_ms: 0.0,
            p99_ms: 0.0,
        });
        drop(keep);
        drop(cluster);
    }
    Ok(rows)
}

/// GETs every URL of `urls`, 8 at a time.
async fn send_urls(urls: Arc<Vec<String>>) {
    let http = fresco_e2e::client();
    run_pool(8, Until::Jobs(urls.len()), move |i| {
        let (http, urls) = (http.clone(), urls.clone());
        async move {
            get(&http, &urls[i]).await;
        }
    })
    .await;
}

/// GETs `/img/ws-<k>.jpg` for every k of `keys` through `edge`, 8 at a time; returns how many
/// failed. Prints progress every `progress` requests (0: never).
async fn send(edge: &str, keys: Arc<Vec<usize>>, progress: usize) -> usize {
    let http = fresco_e2e::client();
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (count, url, failures) = (keys.len(), edge.to_string(), failed.clone());
    run_pool(8, Until::Jobs(count), move |i| {
        let (http, target, failures) = (http.clone(), format!("{url}/img/ws-{}.jpg", keys[i]), failures.clone());
        async move {
            if !get(&http, &target).await.ok {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if progress > 0 && i % progress == 0 {
                eprintln!("    {i} of {count} requests sent");
            }
        }
    })
    .await;
    failed.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut rows = match edges_part(&cli).await {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("scale-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let more_parts = if cli.edges_only {
        Vec::new()
    } else {
        vec![shields_part(&cli).await, replicas_part(&cli).await]
    };
    for part in more_parts {
        match part {
            Ok(more) => rows.extend(more),
            Err(e) => {
                eprintln!("scale-bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let path = format!("{}.csv", cli.out);
    let mut csv = String::from("part,n,value,ratio,p50_ms,p99_ms\n");
    println!("part     n  value        ratio  p50_ms  p99_ms");
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{:.1},{:.4},{:.3},{:.3}\n",
            r.part, r.n, r.value, r.ratio, r.p50_ms, r.p99_ms
        ));
        println!(
            "{:<8} {}  {:>11.1}  {:.3}  {:>6.2}  {:>6.2}",
            r.part, r.n, r.value, r.ratio, r.p50_ms, r.p99_ms
        );
    }
    if let Err(e) = fresco_loadtest::output::create(&path).write_all(csv.as_bytes()) {
        eprintln!("scale-bench: writing {path}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    eprintln!("wrote {path}");
    std::process::ExitCode::SUCCESS
}
