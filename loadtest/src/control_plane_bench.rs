//! `control-plane-bench`: one real purge-api in front of hundreds or thousands of nodes, which
//! this machine cannot run as real edges. Each simulated node is a few tokio tasks in this
//! process speaking the node protocol over real sockets, as `tier::freshness::subscriber`
//! does: it leases with its own credential and renews every third of the lease, follows
//! `GET /v1/log`, applies each batch after a delay drawn from this machine's measured journal
//! appends (an `fsync`, what a real node waits for before it acks) and acks it.
//!
//! For each number of nodes and each purge rate it sends URL purges open-loop (`wait: true`)
//! and records the answer latency, purge-api's CPU and resident memory, and this process's
//! CPU (it shares the machine's cores with purge-api, so it is reported beside it). Prints a
//! table and writes `OUT/control-plane.csv` for `loadtest/plot_control_plane.py`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use fresco_loadtest::latencies::Latencies;
use fresco_protocol::{AckRequest, LeaseRequest, LeaseResponse, LogLine, Role, credential};
use fresco_tier::freshness::log_stream::LogStream;
use rand::seq::IndexedRandom;
use serde_json::json;

/// Drives one purge-api with simulated nodes: purge answer latency, purge-api CPU and memory
/// against the number of nodes and the purge rate.
#[derive(Parser)]
#[command(name = "control-plane-bench", version)]
struct Cli {
    /// Numbers of simulated nodes, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,300,1000")]
    nodes: Vec<usize>,
    /// Purge rates (purges per second, open loop) measured at each number of nodes.
    #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
    rates: Vec<u64>,
    /// Seconds of purging per point.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// purge-api's lease length.
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    /// Where the CSV, the plot and purge-api's data and log go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

const TOKEN: &str = "bench-operator-token-0001";
const NODE_KEY: &str = "bench-node-key-0000000001";

/// How long real nodes take to apply a batch: journal appends timed on this machine's disk.
struct ApplyDelays(Vec<Duration>);

impl ApplyDelays {
    /// Times `samples` appends of a journal-sized record, each followed by `fdatasync`.
    fn measure(dir: &Path, samples: usize) -> anyhow::Result<Self> {
        let path = dir.join("apply-delay-probe");
        let mut file = std::fs::File::create(&path)?;
        let record = [0x5a_u8; 96];
        let mut delays = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            file.write_all(&record)?;
            file.sync_data()?;
            delays.push(started.elapsed());
        }
        std::fs::remove_file(&path)?;
        Ok(Self(delays))
    }

    fn sample(&self) -> Duration {
        *self.0.choose(&mut rand::rng()).expect("at least one sample")
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let ms: Latencies = self.0.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.quantile_ms(q)
    }
}

/// What the simulated nodes of one run share.
struct Simulation {
    http: reqwest::Client,
    purge_api: String,
    delays: Arc<ApplyDelays>,
    leased: AtomicUsize,
    acks: AtomicU64,
    refused: AtomicU64,
}

impl Simulation {
    /// One node: its lease loop beside its log stream, until the task is aborted.
    async fn node(self: Arc<Self>, id: String) {
        let credential = credential::derive(NODE_KEY.as_bytes(), &id);
        let applied = AtomicU64::new(0);
        let following = async {
            loop {
                // A stream that ends or fails is opened again, as a real node does.
                let _ = self.follow(&id, &credential, &applied).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::join!(self.lease_loop(&id, &credential, &applied), following);
    }

    async fn lease_loop(&self, id: &str, credential: &str, applied: &AtomicU64) {
        let mut held = false;
        loop {
            let request = LeaseRequest {
                node: id.to_string(),
                role: Role::Edge,
                address: "127.0.0.1:9".into(),
                admin: None,
                applied: applied.load(Ordering::Relaxed),
            };
            let answer = self
                .http
                .post(format!("{}/v1/lease", self.purge_api))
                .bearer_auth(credential)
                .json(&request)
                .send()
                .await;
            let lease = match answer {
                Ok(resp) if resp.status().is_success() => resp.json::<LeaseResponse>().await.ok(),
                _ => None,
            }
            .filter(|l| l.granted);
            if lease.is_some() != held {
                held = lease.is_some();
                if held {
                    self.leased.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.leased.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if !held {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            let period = lease.map_or(200, |l| l.lease_ms / 3);
            tokio::time::sleep(Duration::from_millis(period)).await;
        }
    }

    /// Follows the log from the first purge not applied, applying and acking batch by batch.
    async fn follow(&self, id: &str, credential: &str, applied: &AtomicU64) -> Result<(), String> {
        let from = applied.load(Ordering::Relaxed) + 1;
        let mut stream = LogStream::open(&self.http, &self.purge_api, credential, from).await?;
        while let Some(lines) = stream.next_lines(Duration::from_secs(3)).await? {
            let mut newest = None;
            for line in lines {
                match line {
                    LogLine::Purge(record) => newest = Some(record.seq),
                    LogLine::Reset { next } => newest = Some(next - 1),
                    LogLine::Heartbeat { .. } => {}
                }
            }
            let Some(newest) = newest else { continue };
            tokio::time::sleep(self.delays.sample()).await;
            applied.store(newest, Ordering::Relaxed);
            let ack = AckRequest {
                node: id.to_string(),
                applied: newest,
                copy: false,
            };
            // As a real node does, the ack goes out on its own and the next batch is applied
            // meanwhile.
            let sent = self
                .http
                .post(format!("{}/v1/ack", self.purge_api))
                .bearer_auth(credential)
                .json(&ack)
                .send();
            tokio::spawn(sent);
            self.acks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A purge-api process of its own, on a fresh data directory.
struct PurgeApi {
    child: Child,
    url: String,
}

impl PurgeApi {
    async fn start(dir: &Path, lease_ms: u64) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data = dir.join("purge-api-data");
        let _ = std::fs::remove_dir_all(&data);
        let config = dir.join("purge-api.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\ntokens: [{TOKEN}]\nnode_keys: [{NODE_KEY}]\nlease_ms: {lease_ms}\n",
                data.display()
            ),
        )?;
        let binary = fresco_e2e::bin_dir().join("purge-api");
        let log = std::fs::File::create(dir.join("purge-api.log"))?;
        let child = Command::new(&binary)
            .args(["-c".as_ref(), config.as_os_str()])
            .env("FRESCO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while !http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "purge-api did not get ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, url })
    }
}

impl Drop for PurgeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) and resident bytes of a process, from `/proc`.
fn usage(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // Linux counts CPU time in USER_HZ ticks, 100 per second on every architecture it runs on.
    Some((ticks / 100.0, rss_kb * 1024))
}

/// One measured point.
struct Point {
    nodes: usize,
    rate: u64,
    sent: usize,
    answered: usize,
    latencies: Latencies,
    api_cpu: f64,
    api_rss_mib: f64,
    sim_cpu: f64,
    acks_per_s: f64,
    refused: u64,
}

async fn measure(
    cli: &Cli,
    http: &reqwest::Client,
    delays: &Arc<ApplyDelays>,
    nodes: usize,
    rate: u64,
) -> anyhow::Result<Point> {
    let api = PurgeApi::start(&cli.out.join("control-plane"), cli.lease_ms).await?;
    let sim = Arc::new(Simulation {
        http: http.clone(),
        purge_api: api.url.clone(),
        delays: delays.clone(),
        leased: AtomicUsize::new(0),
        acks: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..nodes)
        .map(|i| tokio::spawn(sim.clone().node(format!("sim-{i:04}"))))
        .collect();
    let started = Instant::now();
    while sim.leased.load(Ordering::Relaxed) < nodes {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "only {} of {nodes} simulated nodes got a lease",
            sim.leased.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let members: serde_json::Value = sim
        .http
        .get(format!("{}/v1/members", api.url))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let listed = members["members"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(listed == nodes, "purge-api lists {listed} members, not {nodes}");

    let pid = api.child.id().to_string();
    let (api_before, _) = usage(&pid).context("purge-api's /proc entry")?;
    let (sim_before, _) = usage("self").context("this process's /proc entry")?;
    let acks_before = sim.acks.load(Ordering::Relaxed);
    let refused_before = sim.refused.load(Ordering::Relaxed);
    let clock = Instant::now();
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut in_flight = Vec::new();
    let mut rss_peak = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let total = (rate * cli.seconds) as usize;
    for i in 0..total {
        ticker.tick().await;
        let (http, url, results) = (sim.http.clone(), api.url.clone(), results.clone());
        in_flight.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = http
                .post(format!("{url}/v1/purge"))
                .bearer_auth(TOKEN)
                .json(&json!({ "urls": [format!("/img/sim-{}.jpg", i % 1000)], "wait": true }))
                .timeout(Duration::from_secs(15))
                .send()
                .await;
            let ok = answer.is_ok_and(|r| r.status() == 200);
            results
                .lock()
                .unwrap()
                .push((ok, sent.elapsed().as_secs_f64() * 1000.0));
        }));
        if i % 50 == 0 {
            rss_peak = rss_peak.max(usage(&pid).map_or(0, |u| u.1));
        }
    }
    for purge in in_flight {
        let _ = purge.await;
    }
    let elapsed = clock.elapsed().as_secs_f64();
    let (api_after, rss) = usage(&pid).context("purge-api's /proc entry")?;
    let (sim_after, _) = usage("self").context("this process's /proc entry")?;
    for task in tasks {
        task.abort();
    }
    let results = results.lock().unwrap();
    Ok(Point {
        nodes,
        rate,
        sent: total,
        answered: results.iter().filter(|r| r.0).count(),
        latencies: results.iter().filter(|r| r.0).map(|r| r.1).collect(),
        api_cpu: (api_after - api_before) / elapsed,
        api_rss_mib: rss_peak.max(rss) as f64 / (1 << 20) as f64,
        sim_cpu: (sim_after - sim_before) / elapsed,
        acks_per_s: (sim.acks.load(Ordering::Relaxed) - acks_before) as f64 / elapsed,
        refused: sim.refused.load(Ordering::Relaxed) - refused_before,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let dir = cli.out.join("control-plane");
    std::fs::create_dir_all(&dir)?;
    let delays = ApplyDelays::measure(&dir, 200)?;
    println!(
        "control-plane-bench: a node applies a batch in {:.2} ms (p50), {:.2} ms (p99): 200 journal appends with fdatasync timed here",
        delays.quantile_ms(0.5),
        delays.quantile_ms(0.99)
    );
    let delays = Arc::new(delays);
    // Each node's log stream holds a connection of its own; leases and acks share the others.
    let http = reqwest::Client::builder().pool_max_idle_per_host(4096).build()?;
    let mut points = Vec::new();
    let runs = cli.nodes.len() * cli.rates.len();
    for &nodes in &cli.nodes {
        for &rate in &cli.rates {
            println!(
                "==> [{}/{runs}] {nodes} nodes, {rate} purges/s for {} s",
                points.len() + 1,
                cli.seconds
            );
            let point = measure(&cli, &http, &delays, nodes, rate).await?;
            println!(
                "    answered {}/{}, p50 {:.1} ms, p99 {:.1} ms; purge-api {:.2} cores, {:.0} MiB",
                point.answered,
                point.sent,
                point.latencies.quantile_ms(0.5),
                point.latencies.quantile_ms(0.99),
                point.api_cpu,
                point.api_rss_mib
            );
            points.push(point);
        }
    }
    let csv_path = cli.out.join("control-plane.csv");
    let mut csv = fresco_loadtest::output::create(&csv_path);
    writeln!(
        csv,
        "nodes,rate,sent,answered,p50_ms,p99_ms,max_ms,api_cpu_cores,api_rss_mib,sim_cpu_cores,acks_per_s,lease_refusals"
    )?;
    println!(
        "| nodes | purges/s | answered | p50 | p99 | max | purge-api CPU | purge-api RSS | acks/s | simulator CPU |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &points {
        let (p50, p99, max) = (
            p.latencies.quantile_ms(0.5),
            p.latencies.quantile_ms(0.99),
            p.latencies.max_ms(),
        );
        writeln!(
            csv,
            "{},{},{},{},{p50:.3},{p99:.3},{max:.3},{:.3},{:.1},{:.3},{:.0},{}",
            p.nodes, p.rate, p.sent, p.answered, p.api_cpu, p.api_rss_mib, p.sim_cpu, p.acks_per_s, p.refused
        )?;
        println!(
            "| {} | {} | {}/{} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms | {:.2} cores | {:.0} MiB | {:.0} | {:.2} cores |",
            p.nodes, p.rate, p.answered, p.sent, p.api_cpu, p.api_rss_mib, p.acks_per_s, p.sim_cpu
        );
    }
    Ok(())
}
