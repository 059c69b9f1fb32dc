//! `feed-bench`: one edge holding many idle change-feed connections — the memory each costs
//! the edge, and how long one purge takes to reach all of them.
//!
//! Connections come from many loopback addresses (127.0.1.x), as clients behind different
//! addresses would, each below the edge's per-client limit. Prints a table and writes
//! `target/bench/feed-fanout.csv` (one line per connection and purge: arrival after the purge
//! was sent) for `loadtest/plot_feed.py`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Parser;
use fresco_e2e::Cluster;
use fresco_e2e::origin::TestOrigin;
use fresco_loadtest::latencies::Latencies;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;

/// Opens many idle feeds on one edge, then times purges reaching all of them.
#[derive(Parser)]
#[command(name = "feed-bench", version)]
struct Cli {
    /// Feed connections to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connections per client address (the edge allows 64 by default).
    #[arg(long, default_value_t = 50)]
    per_address: usize,
    /// Purges timed, one after the other.
    #[arg(long, default_value_t = 10)]
    purges: usize,
    /// Where to write the per-arrival CSV.
    #[arg(long, default_value = "target/bench/feed-fanout.csv")]
    csv: String,
}

const FOLLOWED: &str = "/mut/fanout.png";

/// The edge process's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the edge runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS is in kB")
        * 1024
}

/// Holds one feed open: sends the request, waits for `hello`, then reports the arrival of
/// every `change` event as (connection, event id, instant).
async fn hold_feed(
    index: usize,
    source: Ipv4Addr,
    edge: SocketAddr,
    connected: mpsc::UnboundedSender<()>,
    arrivals: mpsc::UnboundedSender<(usize, u64, Instant)>,
) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = socket.connect(edge).await?;
    stream
        .write_all(format!("GET /_fresco/events?url={FOLLOWED} HTTP/1.1\r\nHost: {edge}\r\n\r\n").as_bytes())
        .await?;
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let mut said_hello = false;
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if !said_hello && text.contains("event: hello") {
            said_hello = true;
            let _ = connected.send(());
        }
        let mut rest = text.as_str();
        while let Some(at) = rest.find("event: change\nid: ") {
            rest = &rest[at + 18..];
            let id: u64 = rest.split('\n').next().unwrap_or("").parse().unwrap_or(0);
            let _ = arrivals.send((index, id, now));
        }
        // Keep only an unfinished tail.
        let keep = text.rfind("\n\n").map_or(0, |end| end + 2);
        buffer.drain(..keep.min(buffer.len()));
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // This process holds every client socket.
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let origin = TestOrigin::start().await;
    eprintln!("==> starting purge-api, 1 shield and 1 edge");
    let cluster = Cluster::builder().origin(&origin.url).size(1, 1).start();
    let edge_info = cluster.info.edges[0].clone();
    let edge: SocketAddr = edge_info.url.trim_start_matches("http://").parse().expect("an address");
    // A first purge and a warm hit, so that what the edge allocates once is in the baseline.
    cluster.purge(json!({ "urls": ["/mut/warm-up.png"] })).await;
    let _ = reqwest::get(cluster.edge_url(0, FOLLOWED)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_bytes(edge_info.pid);

    eprintln!(
        "==> opening {} feeds ({} per address)",
        cli.connections, cli.per_address
    );
    let (connected_tx, mut connected) = mpsc::unbounded_channel();
    let (arrival_tx, mut arrivals) = mpsc::unbounded_channel();
    let opened = Instant::now();
    for i in 0..cli.connections {
        let address = i / cli.per_address;
        let source = Ipv4Addr::new(127, 0, 1 + (address / 250) as u8, 1 + (address % 250) as u8);
        let (connected_tx, arrival_tx) = (connected_tx.clone(), arrival_tx.clone());
        tokio::spawn(async move {
            if let Err(e) = hold_feed(i, source, edge, connected_tx, arrival_tx).await {
                eprintln!("feed {i} from {source}: {e}");
            }
        });
        if i % 500 == 499 {
            // Let the accept queue drain instead of overflowing it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for done in 1..=cli.connections {
        tokio::time::timeout(Duration::from_secs(60), connected.recv())
            .await
            .expect("every feed says hello within 60 s");
        if done % 1000 == 0 || done == cli.connections {
            eprint!(
                "\r    {done}/{} feeds open after {:.1?}",
                cli.connections,
                opened.elapsed()
            );
        }
    }
    eprintln!();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_bytes(edge_info.pid);
    let per_connection = (rss_after.saturating_sub(rss_before)) as f64 / cli.connections as f64;

    let mut csv = fresco_loadtest::output::create(&cli.csv);
    writeln!(csv, "purge,seq,connection,arrival_ms").unwrap();
    let mut fanouts = Vec::new();
    let mut answers = Vec::new();
    let mut all_arrivals = Vec::new();
    for round in 0..cli.purges {
        let sent = Instant::now();
        let answer = cluster.purge(json!({ "urls": [FOLLOWED] })).await;
        answers.push(sent.elapsed().as_secs_f64() * 1000.0);
        let seq = answer.body["seq"].as_u64().expect("the purge is answered");
        let mut got = 0;
        let mut last = 0.0f64;
        while got < cli.connections {
            let (connection, id, at) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await
                .expect("every feed hears of the purge within 30 s")
                .expect("feeds are held");
            if id != seq {
                continue;
            }
            got += 1;
            let ms = at.duration_since(sent).as_secs_f64() * 1000.0;
            last = last.max(ms);
            all_arrivals.push(ms);
            writeln!(csv, "{round},{seq},{connection},{ms:.3}").unwrap();
        }
        fanouts.push(last);
        eprintln!(
            "    purge {}/{}: answered in {:.1} ms, at all {} feeds after {last:.1} ms",
            round + 1,
            cli.purges,
            answers[round],
            cli.connections
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (arrivals, fanouts, answers): (Latencies, Latencies, Latencies) = (
        all_arrivals.iter().collect(),
        fanouts.iter().collect(),
        answers.iter().collect(),
    );
    println!();
    println!("feeds held by one edge       {}", cli.connections);
    println!(
        "edge RSS                     {:.1} MiB before, {:.1} MiB with the feeds open",
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    println!("memory per feed connection   {:.1} KiB", per_connection / 1024.0);
    println!("purge answer                 p50 {:.1} ms", answers.quantile_ms(0.5));
    println!(
        "event arrival after purge    p50 {:.1} ms, p99 {:.1} ms",
        arrivals.quantile_ms(0.5),
        arrivals.quantile_ms(0.99)
    );
    println!(
        "fan-out to all feeds         p50 {:.1} ms, max {:.1} ms over {} purges",
        fanouts.quantile_ms(0.5),
        fanouts.max_ms(),
        cli.purges
    );
    println!("wrote {}", cli.csv);
    drop(connected_tx);
    drop(arrival_tx);
}
