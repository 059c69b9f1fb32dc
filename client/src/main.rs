//! `fresco-client`: fetch images from fresco's edges and follow their changes from a shell.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Parser, Subcommand};
use fresco_client::{Client, WatchEvent};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// Bodies at least this large get a progress bar.
const PROGRESS_FROM_BYTES: u64 = 1 << 20;

/// Fetch images from fresco's edges (failing over between them, with a local cache) and follow
/// their changes on the edges' change feed.
#[derive(Parser)]
#[command(name = "fresco-client", version)]
struct Cli {
    /// An edge's base URL (`http://127.0.0.1:8080`); repeat in order of preference.
    #[arg(long = "edge", value_name = "URL", global = true)]
    edges: Vec<String>,
    /// Take the edges from devcluster's `cluster.json` (its `edges[].url`), after any `--edge`.
    #[arg(long, value_name = "FILE", global = true)]
    cluster: Option<PathBuf>,
    /// Verify `https://` edges against the CA certificates in FILE (PEM) instead of the
    /// system's roots. With `--cluster`, its `ca` is used when this is not given.
    #[arg(long, value_name = "FILE", global = true)]
    ca: Option<PathBuf>,
    /// Keep the local cache in this directory too, so that it outlives the command.
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Bound of the in-memory cache, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, global = true)]
    memory_cache: usize,
    /// Time a request may take on one edge before the next is tried, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, global = true)]
    timeout_ms: u64,
    /// Silence on the change feed after which the next edge is tried, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 40_000, global = true)]
    feed_timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch PATH and write its body to standard output or a file. A local copy is
    /// revalidated with `If-None-Match` (`--cache-dir` keeps it between runs).
    Get {
        /// The path to fetch (`/img/a.jpg`), joined to each edge's base URL.
        path: String,
        /// Write the body to FILE instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Follow URLs and tags: print one JSON line per change on standard output, status on
    /// standard error, until interrupted.
    #[command(group(ArgGroup::new("follow").required(true).multiple(true).args(["urls", "tags"])))]
    Watch {
        /// A path to follow (`/img/a.jpg`); repeat for more.
        #[arg(long = "url", value_name = "PATH")]
        urls: Vec<String>,
        /// A surrogate key to follow (`Surrogate-Key` / `Cache-Tag`); repeat for more.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fresco-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut edges = cli.edges.clone();
    let mut ca = cli.ca.clone();
    if let Some(path) = &cli.cluster {
        let cluster = read_cluster(path)?;
        edges.extend(cluster.edges);
        ca = ca.or(cluster.ca);
    }
    if edges.is_empty() {
        bail!("no edge: give --edge URL or --cluster state/cluster.json");
    }
    let mut builder = Client::builder()
        .edges(edges)
        .memory_cache_bytes(cli.memory_cache)
        .request_timeout(Duration::from_millis(cli.timeout_ms))
        .feed_read_timeout(Duration::from_millis(cli.feed_timeout_ms));
    if let Some(dir) = &cli.cache_dir {
        builder = builder.cache_dir(dir);
    }
    if let Some(ca) = ca {
        builder = builder.ca_file(ca);
    }
    let client = builder.build()?;
    match cli.command {
        Command::Get { path, output } => get(&client, &path, output.as_deref()).await,
        Command::Watch { urls, tags } => watch(&client, urls, tags).await,
    }
}

/// What `fresco-client` takes from devcluster's `cluster.json`.
struct ClusterFile {
    edges: Vec<String>,
    /// The CA of a `devcluster --tls` cluster.
    ca: Option<PathBuf>,
}

fn read_cluster(path: &Path) -> anyhow::Result<ClusterFile> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let info: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let edges: Vec<String> = info["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .filter_map(|e| e["url"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if edges.is_empty() {
        bail!("{} lists no edges[].url", path.display());
    }
    Ok(ClusterFile {
        edges,
        ca: info["ca"].as_str().map(PathBuf::from),
    })
}

async fn get(client: &Client, path: &str, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut bar: Option<ProgressBar> = None;
    let mut progress = |received: u64, total: Option<u64>| {
        let large = total.unwrap_or(received) >= PROGRESS_FROM_BYTES;
        if bar.is_none() && large {
            let new = match total {
                Some(total) => ProgressBar::new(total).with_style(
                    ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                        .expect("a valid template"),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}").expect("a valid template"),
                ),
            };
            bar = Some(new);
        }
        if let Some(bar) = &bar {
            bar.set_position(received);
        }
    };
    let result = client.get_with_progress(path, &mut progress).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let response = result?;
    let from = response.edge.as_deref().unwrap_or("the local cache");
    if !response.status.is_success() {
        let body = String::from_utf8_lossy(&response.body[..response.body.len().min(500)]).into_owned();
        bail!("GET {path}: {} from {from}: {}", response.status, body.trim());
    }
    eprintln!(
        "{} {} bytes {} from {from} ({:?})",
        response.status,
        response.body.len(),
        response.content_type.as_deref().unwrap_or("-"),
        response.source
    );
    match output {
        Some(file) => std::fs::write(file, &response.body).with_context(|| format!("writing {}", file.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&response.body).context("writing to standard output")?;
            stdout.flush().context("writing to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch(client: &Client, urls: Vec<String>, tags: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut events = client.watch(urls, tags);
    let mut stdout = std::io::stdout();
    while let Some(event) = events.next().await {
        let line = match event? {
            WatchEvent::Connected { edge, node, seq } => {
                eprintln!("connected to {edge} ({node}) at seq {seq}");
                continue;
            }
            WatchEvent::Disconnected { edge, reason } => {
                eprintln!("lost {edge}: {reason}; trying the next edge");
                continue;
            }
            WatchEvent::Change(change) => {
                serde_json::json!({"event": "change", "seq": change.seq, "url": change.url,
                    "etag": change.etag, "tags": change.tags, "soft": change.soft})
            }
            WatchEvent::Reset(reset) => {
                serde_json::json!({"event": "reset", "seq": reset.seq, "reason": reset.reason})
            }
        };
        // Flushed per line: a pipe reader acts on each change as it happens.
        writeln!(stdout, "{line}").context("writing to standard output")?;
        stdout.flush().context("writing to standard output")?;
    }
    Ok(ExitCode::SUCCESS)
}
