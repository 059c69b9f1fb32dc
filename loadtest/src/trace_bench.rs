//! Hit ratio of a real edge on image-CDN traces, next to libCacheSim's simulated policies on the
//! same traces and cache sizes.
//!
//! For every trace shape of the grid (Zipf α × one-hit-wonder share) it generates a trace
//! (`fresco_loadtest::trace`), then for every cache size (a fraction of the trace's footprint)
//! starts a `fresco-edge` on its own in front of an origin that serves each object at its
//! traced size, replays the trace in order (one request at a time, so that the order is the
//! simulator's), and counts `X-Cache: HIT`s. Then `loadtest/trace_sim.py` runs libCacheSim's
//! policies on the same file and sizes, and the two are printed side by side.
//!
//! `--caches memory,hybrid` adds, for each size, an edge whose disk tier has that size and
//! whose memory a fifth of it (the production shape: a small RAM tier over an SSD), in disk
//! blocks of a 64th of the disk (at least 2 MiB, for the largest object): foyer keeps two
//! blocks open for writing and one clean, which would leave little of a small disk in
//! 16 MiB blocks.
//!
//! Writes the traces and `results.csv` to `--out` (default `target/trace-bench`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use fresco_e2e::LoneEdge;
use fresco_e2e::metrics::Scrape;
use fresco_loadtest::trace::{HitCounts, Trace, TraceOrigin, TraceShape, TraceStats, replay};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(about = "Hit ratio of a real edge on generated image-CDN traces, next to libCacheSim's policies")]
struct Cli {
    /// Zipf exponents of the traces (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.7,1.0")]
    alphas: Vec<f64>,
    /// Shares of requests to one-hit wonders (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.2,0.5")]
    one_hit_shares: Vec<f64>,
    /// Cache sizes as fractions of each trace's footprint (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.1")]
    fractions: Vec<f64>,
    /// Requests per trace.
    #[arg(long, default_value_t = 200_000)]
    requests: usize,
    /// Objects in the catalogue (one-hit wonders come on top).
    #[arg(long, default_value_t = 20_000)]
    catalogue: usize,
    /// Median object size, in KB.
    #[arg(long, default_value_t = 40.0)]
    median_kb: f64,
    /// Seed of the traces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replay this trace file (`id,size` lines) instead of generating the grid.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// The edges to replay through, for each size: `memory` (a memory tier of the size),
    /// `hybrid` (a disk tier of the size, memory a fifth of it).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "memory")]
    caches: Vec<CacheKind>,
    /// libCacheSim policies to simulate (comma-separated names of its Python classes).
    #[arg(long, default_value = "Sieve,S3FIFO,WTinyLFU,ARC,TwoQ,LRU")]
    policies: String,
    /// More settings for the edges' `cache:` mapping, e.g. `eviction: s3fifo`.
    #[arg(long)]
    cache_extra: Option<String>,
    /// Where the traces and `results.csv` go.
    #[arg(long, default_value = "target/trace-bench")]
    out: PathBuf,
}

/// The largest object a generated trace holds; the origin serves up to this.
const LARGEST_OBJECT: u32 = 1_000_000;

/// One hit-ratio measurement.
struct Row {
    trace: String,
    fraction: f64,
    cache: String,
    request_hit_ratio: f64,
    byte_hit_ratio: f64,
}

/// The edge's cache for one replay, of a given size.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CacheKind {
    /// A memory tier of the size.
    Memory,
    /// A disk tier of the size, memory a fifth of it.
    Hybrid,
}

impl CacheKind {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "fresco memory",
            Self::Hybrid => "fresco mem+disk",
        }
    }

    /// Bytes of its memory tier for a cache of `size`.
    fn memory_bytes(self, size: u64) -> u64 {
        match self {
            Self::Memory => size,
            Self::Hybrid => size / 5,
        }
    }

    /// Its `cache:` settings for a cache of `size`.
    fn yaml(self, size: u64) -> String {
        let memory = self.memory_bytes(size);
        match self {
            Self::Memory => format!("memory: {memory}"),
            Self::Hybrid => {
                let block = (size / 64).next_power_of_two().max(2 << 20);
                format!("memory: {memory}, disk: {size}, block: {block}, dir: '{{dir}}'")
            }
        }
    }
}

/// What one replay through an edge saw.
struct Replay {
    counts: HitCounts,
    origin_requests: u64,
    /// The edge's `/metrics` at the end.
    scrape: Scrape,
}

async fn replay_through_edge(trace: &Trace, origin: &TraceOrigin, cache: &str, label: &str) -> anyhow::Result<Replay> {
    let edge = LoneEdge::start_with_cache(&origin.url, cache, "", None);
    let bar = ProgressBar::new(trace.requests.len() as u64).with_style(
        ProgressStyle::with_template("  {msg:32} {bar:30} {pos}/{len} {per_sec} {eta}").expect("a valid template"),
    );
    bar.set_message(label.to_string());
    let origin_before = origin.requests();
    let counts = replay(&edge.url, trace, |n| bar.set_position(n as u64)).await?;
    bar.finish_and_clear();
    Ok(Replay {
        counts,
        origin_requests: origin.requests() - origin_before,
        scrape: Scrape::of(&edge.admin).await,
    })
}

/// libCacheSim's hit ratios for `path` at each of `sizes`, as (policy, size, request, byte).
fn simulate(path: &Path, sizes: &[u64], policies: &str) -> anyhow::Result<Vec<(String, u64, f64, f64)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("trace_sim.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(path)
        .args(sizes.iter().map(u64::to_string))
        .args(["--policies", policies])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("`{line}`"))?;
            let field = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in `{line}`"));
            Ok((
                v["policy"].as_str().unwrap_or("?").to_string(),
                field("cache_bytes")? as u64,
                field("request_hit_ratio")?,
                field("byte_hit_ratio")?,
            ))
        })
        .collect()
}

fn describe(name: &str, stats: &TraceStats) -> String {
    format!(
        "{name}: {} requests, {} objects, footprint {:.2} GB, {:.1} % of requests to one-hit wonders",
        stats.requests,
        stats.objects,
        stats.footprint as f64 / 1e9,
        stats.one_hit_share * 100.0
    )
}

async fn measure(cli: &Cli, name: &str, path: &Path, trace: &Trace, origin: &TraceOrigin) -> anyhow::Result<Vec<Row>> {
    let stats = trace.stats();
    eprintln!("==> {}", describe(name, &stats));
    let sizes: Vec<u64> = cli
        .fractions
        .iter()
        .map(|f| (stats.footprint as f64 * f) as u64)
        .collect();
    let mut rows = Vec::new();
    for (&fraction, &size) in cli.fractions.iter().zip(&sizes) {
        for &cache in &cli.caches {
            let label = format!("{} at {:.0} %", cache.name(), fraction * 100.0);
            let started = Instant::now();
            let yaml = match &cli.cache_extra {
                Some(extra) => format!("{}, {extra}", cache.yaml(size)),
                None => cache.yaml(size),
            };
            let seen = replay_through_edge(trace, origin, &yaml, &label).await?;
            let dangling = seen
                .scrape
                .value("fresco_store_dangling_entries_total", &[])
                .unwrap_or(0.0);
            let memory = seen
                .scrape
                .value("fresco_store_bytes", &[("tier", "memory")])
                .unwrap_or(0.0);
            eprintln!(
                "    {label}: {:.4} / {:.4} (requests / bytes) in {:.0} s; origin requests {}, \
                 memory tier {:.1} MB of {:.1} MB, entries found without their body {dangling}",
                seen.counts.request_hit_ratio(),
                seen.counts.byte_hit_ratio(),
                started.elapsed().as_secs_f64(),
                seen.origin_requests,
                memory / 1e6,
                cache.memory_bytes(size) as f64 / 1e6,
            );
            rows.push(Row {
                trace: name.to_string(),
                fraction,
                cache: cache.name().to_string(),
                request_hit_ratio: seen.counts.request_hit_ratio(),
                byte_hit_ratio: seen.counts.byte_hit_ratio(),
            });
        }
    }
    eprintln!("    libCacheSim ({}) on the same trace and sizes…", cli.policies);
    for (policy, size, request_hit_ratio, byte_hit_ratio) in simulate(path, &sizes, &cli.policies)? {
        let fraction = cli.fractions[sizes.iter().position(|s| *s == size).unwrap_or(0)];
        rows.push(Row {
            trace: name.to_string(),
            fraction,
            cache: format!("sim {policy}"),
            request_hit_ratio,
            byte_hit_ratio,
        });
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    let mut rows: Vec<&Row> = rows.iter().collect();
    // Stable: within a trace and size, the edges first, then the policies as simulated.
    rows.sort_by(|a, b| a.trace.cmp(&b.trace).then(a.fraction.total_cmp(&b.fraction)));
    println!(
        "{:<24} {:>6} {:<18} {:>9} {:>9}",
        "trace", "cache", "policy", "req HR", "byte HR"
    );
    let mut last_group = None;
    for row in &rows {
        let group = (row.trace.as_str(), (row.fraction * 1e6) as u64);
        if last_group.is_some_and(|g| g != group) {
            println!();
        }
        last_group = Some(group);
        let best_sim = rows
            .iter()
            .filter(|r| (r.trace.as_str(), (r.fraction * 1e6) as u64) == group && r.cache.starts_with("sim "))
            .map(|r| r.request_hit_ratio)
            .fold(0.0, f64::max);
        let against = if row.cache.starts_with("fresco") && best_sim > 0.0 {
            format!(
                "  ({:+.1} points against the best simulated)",
                (row.request_hit_ratio - best_sim) * 100.0
            )
        } else {
            String::new()
        };
        println!(
            "{:<24} {:>5.0}% {:<18} {:>9.4} {:>9.4}{against}",
            row.trace,
            row.fraction * 100.0,
            row.cache,
            row.request_hit_ratio,
            row.byte_hit_ratio
        );
    }
}

fn write_csv(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    let mut text = String::from("trace,fraction,cache,request_hit_ratio,byte_hit_ratio\n");
    for r in rows {
        text += &format!(
            "{},{},{},{:.6},{:.6}\n",
            r.trace, r.fraction, r.cache, r.request_hit_ratio, r.byte_hit_ratio
        );
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let origin = TraceOrigin::start(LARGEST_OBJECT as usize).await?;
    let mut rows = Vec::new();
    if let Some(path) = &cli.trace {
        let trace = Trace::read_csv(path)?;
        if let Some(r) = trace.requests.iter().find(|r| r.size > LARGEST_OBJECT) {
            bail!(
                "object {} is {} bytes; the replay origin serves up to {LARGEST_OBJECT}",
                r.id,
                r.size
            );
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        rows.extend(measure(&cli, &name, path, &trace, &origin).await?);
    } else {
        for &alpha in &cli.alphas {
            for &one_hit_share in &cli.one_hit_shares {
                let shape = TraceShape {
                    alpha,
                    one_hit_share,
                    catalogue: cli.catalogue,
                    requests: cli.requests,
                    median_bytes: cli.median_kb * 1_000.0,
                    size_sigma: 1.0,
                    size_bounds: (1_000, LARGEST_OBJECT),
                    seed: cli.seed,
                };
                let name = format!("zipf{alpha}-onehit{one_hit_share}");
                let path = cli.out.join(format!("{name}.csv"));
                let trace = Trace::generate(&shape)?;
                trace.write_csv(&path)?;
                rows.extend(measure(&cli, &name, &path, &trace, &origin).await?);
            }
        }
    }
    print_table(&rows);
    let csv = cli.out.join("results.csv");
    write_csv(&rows, &csv)?;
    eprintln!("==> wrote {}", csv.display());
    Ok(())
}
