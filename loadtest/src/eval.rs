//! `eval` (`make eval`): every promise of fresco measured in one run, with k6 driving the load.
//!
//! 1. A trace (Zipf popularity, one-hit wonders, log-normal sizes) and the eval origin
//!    (`eval-origin`: the trace's objects after `--origin-latency-ms`, images that change).
//! 2. A devcluster of 2 edges and 2 shields in front of it, and the k6 scenarios of
//!    `loadtest/k6/` against it: `browse.js`, `herd.js`, `purge.js`, then `outage.js` while this
//!    program kills the origin, kills a shield and freezes purge-api in turn.
//! 3. `browse.js` and `herd.js` again against Varnish and Traffic Server (Debian's packages,
//!    installed when missing), each one cache with the memory and disk of one fresco node.
//! 4. `swap-bench`: purges of the demo's images while headless Chromium shows the gallery, and
//!    how long after each purge's answer `live.js` swapped the image (k6 has no EventSource).
//! 5. The edges part of `scale-bench` (throughput against the number of edges).
//!
//! While k6 runs, the edges' and the origin's Prometheus metrics are sampled once a second. Each
//! k6 run leaves its summary (`--summary-export`) and its samples (`--out csv`) in the output
//! directory, with `runs.json`, `faults.csv`, `metrics.csv` and `swap-latency.csv`;
//! `loadtest/plot_eval.py` turns them into `evaluation.md` and its plots.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use fresco_e2e::metrics::Scrape;
use fresco_e2e::{Cluster, Signal, signal_node};
use fresco_loadtest::k6::{EvalOrigin, k6_run};
use fresco_loadtest::trace::{Trace, TraceShape};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::process::{Child, Command};

/// Every promise of fresco measured in one run: k6 scenarios against a devcluster and the
/// peers, with a report.
#[derive(Parser)]
#[command(name = "eval", version)]
struct Cli {
    /// Short runs (about 3 minutes in all) instead of the full evaluation (about 12).
    #[arg(long)]
    quick: bool,
    /// Where the results, plots and `evaluation.md` go.
    #[arg(long, default_value = "target/eval")]
    out: PathBuf,
    /// Where the report goes (default: OUT/evaluation.md); its plots go into `eval/` beside it.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The peers to compare with (`varnish`, `ats`); empty: none.
    #[arg(long, value_delimiter = ',', default_value = "varnish,ats")]
    peers: Vec<String>,
    /// The k6 binary.
    #[arg(long, default_value = "k6")]
    k6: PathBuf,
    /// How long the origin takes to answer a fetch.
    #[arg(long, default_value_t = 10)]
    origin_latency_ms: u64,
    /// The edges' request deadline, the maximum response time every threshold holds to.
    #[arg(long, default_value_t = 5000)]
    deadline_ms: u64,
}

/// How long each part runs.
struct Plan {
    browse_s: u64,
    browse_vus: u64,
    herd_rounds: u64,
    herd_vus: u64,
    purge_s: u64,
    outage_s: u64,
    outage_rate: u64,
    /// (name, start, length) in seconds after the outage run's start.
    faults: [(&'static str, f64, f64); 3],
    scale_seconds: u64,
    /// Changes `swap-bench` measures in Chromium.
    swap_changes: usize,
    trace: TraceShape,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let trace = |catalogue, requests| TraceShape {
            alpha: 0.8,
            one_hit_share: 0.3,
            catalogue,
            requests,
            median_bytes: 30_000.0,
            size_sigma: 1.0,
            size_bounds: (1_000, 2_000_000),
            seed: 14,
        };
        if quick {
            Plan {
                browse_s: 20,
                browse_vus: 60,
                herd_rounds: 3,
                herd_vus: 200,
                purge_s: 15,
                outage_s: 36,
                outage_rate: 200,
                faults: [
                    ("origin_down", 4.0, 5.0),
                    ("shield_killed", 14.0, 6.0),
                    ("purge_api_frozen", 25.0, 5.0),
                ],
                scale_seconds: 2,
                swap_changes: 20,
                trace: trace(8_000, 60_000),
            }
        } else {
            Plan {
                browse_s: 75,
                browse_vus: 150,
                herd_rounds: 5,
                herd_vus: 400,
                purge_s: 60,
                outage_s: 100,
                outage_rate: 300,
                faults: [
                    ("origin_down", 10.0, 15.0),
                    ("shield_killed", 40.0, 20.0),
                    ("purge_api_frozen", 72.0, 10.0),
                ],
                scale_seconds: 6,
                swap_changes: 100,
                trace: trace(40_000, 400_000),
            }
        }
    }
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the sampler reads each second, and which run it belongs to.
#[derive(Default)]
struct Sampled {
    run: String,
    edges: Vec<String>,
    rows: Vec<String>,
}

/// Samples the edges' request counters and the origin's counters once a second into
/// `metrics.csv` rows: `time,run,source,metric,value`.
fn start_sampler(origin_url: String, sampled: Arc<Mutex<Sampled>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .build()
            .expect("a client");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let (run, edges) = {
                let s = sampled.lock().unwrap();
                (s.run.clone(), s.edges.clone())
            };
            if run.is_empty() {
                continue;
            }
            let now = unix_secs();
            let mut rows = Vec::new();
            // A source that does not answer (the origin while it is down) has no row this second.
            if let Some(origin) = scrape(&http, &origin_url).await {
                for metric in ["eval_origin_requests_total", "eval_origin_bytes_total"] {
                    rows.push(format!(
                        "{now:.3},{run},origin,{metric},{}",
                        origin.value_or_zero(metric, &[])
                    ));
                }
            }
            for (i, admin) in edges.iter().enumerate() {
                let Some(edge) = scrape(&http, admin).await else {
                    continue;
                };
                for cache in ["HIT", "MISS", "REVALIDATED", "STALE", "BYPASS"] {
                    let total = edge.value_or_zero("fresco_requests_total", &[("cache", cache)]);
                    rows.push(format!("{now:.3},{run},edge-{},requests_{cache},{total}", i + 1));
                }
            }
            sampled.lock().unwrap().rows.extend(rows);
        }
    })
}

async fn scrape(http: &reqwest::Client, base: &str) -> Option<Scrape> {
    let response = http.get(format!("{base}/metrics")).send().await.ok()?;
    Some(Scrape::from_text(response.text().await.ok()?))
}

/// One k6 run: a scenario against a target.
struct K6Run<'a> {
    scenario: &'a str,
    target: &'a str,
    seconds: u64,
    env: Vec<(&'a str, String)>,
}

/// Runs k6 with a progress line; returns what `runs.json` records of it.
async fn run_k6(cli: &Cli, run: K6Run<'_>) -> anyhow::Result<serde_json::Value> {
    let name = format!("{}-{}", run.scenario, run.target);
    let summary = cli.out.join(format!("{name}.summary.json"));
    let samples = cli.out.join(format!("{name}.csv"));
    let log = std::fs::File::create(cli.out.join(format!("{name}.log")))?;
    let options = [
        format!("--summary-export={}", summary.display()),
        format!("--out=csv={}", samples.display()),
        "--system-tags=status,name,scenario,check,method".into(),
        "--summary-trend-stats=avg,min,med,max,p(90),p(99),p(99.9)".into(),
    ];
    let mut env = run.env.clone();
    env.push(("DEADLINE_MS", cli.deadline_ms.to_string()));
    let mut cmd = k6_run(&cli.k6, run.scenario, &options, &env);
    cmd.env("K6_CSV_TIME_FORMAT", "unix_milli")
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = unix_secs();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} (scripts/setup.sh bench installs k6)", cli.k6.display()))?;
    let bar = ProgressBar::new(run.seconds)
        .with_style(ProgressStyle::with_template("  {msg:24} {bar:30} {pos}/{len} s").expect("a valid template"));
    bar.set_message(name.clone());
    let clock = Instant::now();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(500)) => bar.set_position(clock.elapsed().as_secs().min(run.seconds)),
        }
    };
    bar.finish_and_clear();
    // k6 exits 99 when a threshold fails: the report says which; anything else is a failed run.
    let code = status.code().unwrap_or(-1);
    if code != 0 && code != 99 {
        bail!(
            "k6 {name} exited {code}; see {}",
            cli.out.join(format!("{name}.log")).display()
        );
    }
    let passed = code == 0;
    println!(
        "  {name:24} {:5.1} s  thresholds {}",
        clock.elapsed().as_secs_f64(),
        if passed { "met" } else { "NOT met" }
    );
    Ok(json!({
        "scenario": run.scenario, "target": run.target, "started": started, "ended": unix_secs(),
        "thresholds_met": passed, "summary": summary.file_name().map(|f| f.to_string_lossy().into_owned()),
        "samples": samples.file_name().map(|f| f.to_string_lossy().into_owned()),
    }))
}

/// The fresco part: the cluster, its four scenarios, the faults.
async fn evaluate_fresco(
    cli: &Cli,
    plan: &Plan,
    origin: &mut EvalOrigin,
    sampled: &Arc<Mutex<Sampled>>,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<String>)> {
    let cluster = Cluster::builder()
        .origin(&origin.url)
        .size(2, 2)
        .deadline_ms(cli.deadline_ms)
        .start();
    let info = &cluster.info;
    let edges = info.edges.iter().map(|e| e.url.clone()).collect::<Vec<_>>().join(",");
    sampled.lock().unwrap().edges = info.edges.iter().map(|e| e.admin.clone()).collect();
    let trace = cli.out.join("trace.csv").display().to_string();
    let mut runs = Vec::new();
    let mut faults = Vec::new();
    let set_run = |run: &str| sampled.lock().unwrap().run = run.to_owned();

    set_run("browse-fresco");
    runs.push(
        run_k6(
            cli,
            K6Run {
                scenario: "browse",
                target: "fresco",
                seconds: plan.browse_s,
                env: vec![
                    ("EDGES", edges.clone()),
                    ("TRACE", trace.clone()),
                    ("VUS", plan.browse_vus.to_string()),
                    ("DURATION", format!("{}s", plan.browse_s)),
                ],
            },
        )
        .await?,
    );
    set_run("herd-fresco");
    runs.push(run_k6(cli, herd_run(plan, "fresco", &edges, &origin.url)).await?);
    set_run("purge-fresco");
    runs.push(
        run_k6(
            cli,
            K6Run {
                scenario: "purge",
                target: "fresco",
                seconds: plan.purge_s,
                env: vec![
                    ("EDGES", edges.clone()),
                    ("ORIGIN", origin.url.clone()),
                    ("PURGE_API", info.purge_api.clone()),
                    ("SECRET", info.webhook_secret.clone()),
                    ("DURATION", format!("{}s", plan.purge_s)),
                ],
            },
        )
        .await?,
    );

    // The outage: the schedule in Unix seconds, so that k6 tags each request with the phase
    // it was sent in by the same clock this program injects the faults by.
    set_run("outage-fresco");
    let start = unix_secs() + 3.0;
    let schedule: Vec<(&str, f64, f64)> = plan.faults.iter().map(|(n, at, len)| (*n, start + at, *len)).collect();
    let spec = schedule
        .iter()
        .map(|(n, at, len)| format!("{n}@{at:.3}+{len}"))
        .collect::<Vec<_>>()
        .join(",");
    let outage = run_k6(
        cli,
        K6Run {
            scenario: "outage",
            target: "fresco",
            seconds: plan.outage_s + 3,
            env: vec![
                ("EDGES", edges.clone()),
                ("TRACE", trace.clone()),
                ("OFFSET", (plan.trace.requests / 2).to_string()),
                ("RATE", plan.outage_rate.to_string()),
                ("DURATION", format!("{}s", plan.outage_s)),
                ("FAULTS", spec),
            ],
        },
    );
    let inject = async {
        let shield = &info.shields[0];
        let purge_api = nix::unistd::Pid::from_raw(info.purge_api_pid as i32);
        let mut restarted_shield = None;
        for (name, at, len) in &schedule {
            tokio::time::sleep(Duration::from_secs_f64((at - unix_secs()).max(0.0))).await;
            let began = unix_secs();
            match *name {
                "origin_down" => origin.kill().await,
                "shield_killed" => signal_node(shield, Signal::SIGKILL),
                _ => nix::sys::signal::kill(purge_api, Signal::SIGSTOP)?,
            }
            tokio::time::sleep(Duration::from_secs_f64(*len)).await;
            match *name {
                "origin_down" => origin.restart().await?,
                "shield_killed" => {
                    restarted_shield = Some(restart_node(
                        &shield.config,
                        "fresco-shield",
                        &cli.out.join("shield-restarted.log"),
                    )?)
                }
                _ => nix::sys::signal::kill(purge_api, Signal::SIGCONT)?,
            }
            faults.push(format!("{name},{began:.3},{:.3}", unix_secs()));
        }
        anyhow::Ok(restarted_shield)
    };
    let (outage, restarted_shield) = tokio::join!(outage, inject);
    runs.push(outage?);
    if let Some(mut shield) = restarted_shield? {
        let _ = shield.kill().await;
    }
    set_run("");
    drop(cluster);
    Ok((runs, faults))
}

fn herd_run<'a>(plan: &Plan, target: &'a str, edges: &str, origin: &str) -> K6Run<'a> {
    K6Run {
        scenario: "herd",
        target,
        seconds: plan.herd_rounds * 2 + 3,
        env: vec![
            ("EDGES", edges.to_owned()),
            ("ORIGIN", origin.to_owned()),
            ("VUS", plan.herd_vus.to_string()),
            ("ROUNDS", plan.herd_rounds.to_string()),
        ],
    }
}

/// Starts a node again on its configuration, as its supervisor would after a crash.
fn restart_node(config: &Path, bin: &str, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(fresco_e2e::bin_dir().join(bin))
        .arg("-c")
        .arg(config)
        .env("FRESCO_LOG", "warn")
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("restarting {bin} on {}", config.display()))
}

/// A peer cache running for the comparison; stopped when dropped.
struct Peer {
    url: String,
    stop: Box<dyn FnMut()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        (self.stop)();
    }
}

/// Each peer gets what one fresco node has: 64 MiB of memory and 256 MiB of disk (Varnish,
/// memory only: 320 MiB), and collapses concurrent misses.
fn start_peer(name: &str, root: &Path, origin: &EvalOrigin, work: &Path) -> anyhow::Result<Peer> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let (url, stop): (String, Box<dyn FnMut()>) = match name {
        "varnish" => {
            let vcl = std::fs::read_to_string(root.join("loadtest/peers/varnish.vcl"))?
                .replace("\"9000\"", &format!("\"{}\"", origin.port()));
            std::fs::write(dir.join("eval.vcl"), vcl)?;
            let pid = dir.join("varnishd.pid");
            let status = std::process::Command::new("varnishd")
                .args(["-a", "127.0.0.1:9201", "-s", "malloc,320m", "-p", "thread_pools=1"])
                .arg("-f")
                .arg(dir.join("eval.vcl"))
                .arg("-n")
                .arg(dir.join("work"))
                .arg("-P")
                .arg(&pid)
                .stdout(Stdio::null())
                .status()
                .context("starting varnishd")?;
            if !status.success() {
                bail!("varnishd exited {status}");
            }
            let stop = move || stop_pid_file(&pid);
            ("http://127.0.0.1:9201".into(), Box::new(stop))
        }
        "ats" => {
            let status = std::process::Command::new("bash")
                .arg(root.join("loadtest/peers/ats-setup.sh"))
                .env("ATS_DIR", dir.join("runroot"))
                .env("ATS_PORT", "9203")
                .env("ORIGIN_PORT", origin.port())
                .env("ATS_RAM", (64u64 << 20).to_string())
                .env("ATS_DISK", "256M")
                .env("ATS_COLLAPSE", "1")
                // The cache's verdict in `Via`, which browse.js reads as a hit or a miss.
                .env("ATS_VIA", "2")
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("loadtest/peers/ats-setup.sh exited {status}");
            }
            let log = std::fs::File::create(dir.join("traffic_server.log"))?;
            let child = std::process::Command::new("traffic_server")
                .arg(format!("--run-root={}", dir.join("runroot/runroot.yaml").display()))
                .current_dir(&dir)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting traffic_server")?;
            let mut child = Some(child);
            let stop = move || {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            };
            ("http://127.0.0.1:9203".into(), Box::new(stop))
        }
        other => bail!("--peers: `{other}` is not a peer this knows (varnish, ats)"),
    };
    let peer = Peer { url, stop };
    wait_until_answering(&format!("{}/t/1-1000.jpg", peer.url), Duration::from_secs(20))?;
    Ok(peer)
}

fn stop_pid_file(pid_file: &Path) {
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_until_answering(url: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let answered = std::process::Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2", url])
            .status()
            .is_ok_and(|s| s.success());
        if answered {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{url} did not answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs another of the benchmarks, its output in `OUT/<log>.log`. One that fails leaves its
/// part out of the report rather than the whole evaluation.
fn run_sibling(cli: &Cli, bin: &str, args: &[&str], log: &str) -> anyhow::Result<()> {
    let log = cli.out.join(format!("{log}.log"));
    let file = std::fs::File::create(&log)?;
    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("a valid template"))
        .with_message(bin.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(200));
    let status = std::process::Command::new(fresco_e2e::bin_dir().join(bin))
        .args(args)
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("starting {bin}"))?;
    spinner.finish_and_clear();
    if !status.success() {
        eprintln!(
            "{bin} exited {status}: the report leaves its part out; see {}",
            log.display()
        );
    }
    Ok(())
}

/// Installs the peers from Debian's packages when they are missing and this may (root).
fn install_peers(peers: &[String]) -> anyhow::Result<()> {
    let missing: Vec<&str> = peers
        .iter()
        .filter_map(|p| match p.as_str() {
            "varnish" => Some(("varnishd", "varnish")),
            "ats" => Some(("traffic_server", "trafficserver")),
            _ => None,
        })
        .filter(|(bin, _)| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("==> installing {} (apt-get)", missing.join(" "));
    let status = std::process::Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .context("apt-get")?;
    if !status.success() {
        bail!(
            "installing {} failed; install them, or pass --peers ''",
            missing.join(" ")
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    let plan = Plan::new(cli.quick);
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    // k6 opens files relative to the script, not to where it was started.
    cli.out = std::fs::canonicalize(&cli.out)?;
    let peers: Vec<String> = cli.peers.iter().filter(|p| !p.is_empty()).cloned().collect();
    install_peers(&peers)?;
    let total = 2 + peers.len() + 2;

    println!(
        "==> [1/{total}] a trace of {} requests and the eval origin",
        plan.trace.requests
    );
    let trace = Trace::generate(&plan.trace)?;
    trace.write_csv(&cli.out.join("trace.csv"))?;
    let stats = trace.stats();
    let mut origin = EvalOrigin::start("127.0.0.1:0", cli.origin_latency_ms).await?;
    let sampled = Arc::new(Mutex::new(Sampled::default()));
    let sampler = start_sampler(origin.url.clone(), sampled.clone());

    println!("==> [2/{total}] fresco: 2 edges, 2 shields (browse, herd, purge, outage)");
    let (mut runs, faults) = evaluate_fresco(&cli, &plan, &mut origin, &sampled).await?;

    let work = tempfile::tempdir()?;
    for (i, name) in peers.iter().enumerate() {
        println!("==> [{}/{total}] {name} (browse, herd)", 3 + i);
        let peer = start_peer(name, &root, &origin, work.path())?;
        sampled.lock().unwrap().edges.clear();
        sampled.lock().unwrap().run = format!("browse-{name}");
        runs.push(
            run_k6(
                &cli,
                K6Run {
                    scenario: "browse",
                    target: name,
                    seconds: plan.browse_s,
                    env: vec![
                        ("BASE_URL", peer.url.clone()),
                        ("TRACE", cli.out.join("trace.csv").display().to_string()),
                        ("VUS", plan.browse_vus.to_string()),
                        ("DURATION", format!("{}s", plan.browse_s)),
                    ],
                },
            )
            .await?,
        );
        sampled.lock().unwrap().run = format!("herd-{name}");
        runs.push(run_k6(&cli, herd_run(&plan, name, &peer.url, &origin.url)).await?);
        sampled.lock().unwrap().run.clear();
        drop(peer);
    }
    sampler.abort();

    println!(
        "==> [{}/{total}] purge answer → image swapped in headless Chromium (swap-bench)",
        total - 1
    );
    let changes = plan.swap_changes.to_string();
    let swap_csv = cli.out.join("swap-latency.csv").display().to_string();
    run_sibling(&cli, "swap-bench", &["--changes", &changes, "--csv", &swap_csv], "swap")?;

    println!("==> [{total}/{total}] throughput against the number of edges (scale-bench, edges part)");
    let seconds = plan.scale_seconds.to_string();
    let scaling_dir = cli.out.join("scaling").display().to_string();
    run_sibling(
        &cli,
        "scale-bench",
        &["--edges-only", "--seconds", &seconds, "--out", &scaling_dir],
        "scaling",
    )?;

    let metrics = std::mem::take(&mut sampled.lock().unwrap().rows);
    std::fs::write(
        cli.out.join("metrics.csv"),
        format!("time,run,source,metric,value\n{}\n", metrics.join("\n")),
    )?;
    std::fs::write(
        cli.out.join("faults.csv"),
        format!("fault,start,end\n{}\n", faults.join("\n")),
    )?;
    let runs_json = json!({
        "quick": cli.quick, "deadline_ms": cli.deadline_ms, "origin_latency_ms": cli.origin_latency_ms,
        "trace": { "requests": stats.requests, "objects": stats.objects, "footprint": stats.footprint,
                   "one_hit_share": stats.one_hit_share, "alpha": plan.trace.alpha },
        "runs": runs,
    });
    std::fs::write(cli.out.join("runs.json"), serde_json::to_string_pretty(&runs_json)?)?;
    let report = cli.report.clone().unwrap_or_else(|| cli.out.join("evaluation.md"));
    let plotted = std::process::Command::new("python3")
        .arg(root.join("loadtest/plot_eval.py"))
        .arg(&cli.out)
        .arg(&report)
        .status()?;
    if !plotted.success() {
        bail!("loadtest/plot_eval.py exited {plotted}");
    }
    println!("wrote {}", report.display());
    Ok(())
}
