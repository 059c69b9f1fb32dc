//! Many idle client connections (issue 10, item 4): an edge holding up to 12,000 connections
//! that send nothing, then a flood of misses to a slow origin, keeps serving hits at their usual
//! latency. (The issue asks for 20,000; this machine gives a process at most 20,000
//! descriptors, the test's own client sockets included, and the edge keeps a quarter of its
//! own for upstreams and its store, so 12,000 is what fits on both sides. Where the limit is
//! lower the test holds as many as the edge accepts beside the flood, and says how many.)

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use fresco_e2e::metrics::Scrape;
use fresco_e2e::origin::TestOrigin;
use fresco_e2e::{LoneEdge, client, x_cache};
use tokio::net::TcpSocket;

const MOST_IDLE: usize = 12_000;
const MISSES: usize = 300;

async fn hit_latencies(http: &reqwest::Client, url: &str, n: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(x_cache(&resp), "HIT");
        resp.bytes().await.unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    took
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_keep_their_latency_beside_thousands_of_idle_connections_and_a_flood_of_misses() {
    // The test's own sockets: as many descriptors as the process may have.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 16_384,
        "this test needs an open-files hard limit of 16384, not {hard}"
    );
    // The edge inherits this limit and accepts at most three quarters of it
    // (`ConnectionTable`); the flood, the hits' connection and a margin must fit beside.
    let edge_accepts = hard as usize - hard as usize / 4;
    let idle_count = MOST_IDLE.min(edge_accepts - MISSES - 64);
    eprintln!("open-files limit {hard}: the edge accepts {edge_accepts}, {idle_count} held idle");
    let origin = TestOrigin::start().await;
    // Idle connections are held for a minute here, not the default 10 s, so that they all
    // stay open for the whole test.
    let edge = LoneEdge::start(&origin.url, "", "connections: { header_timeout_ms: 60000 }");
    let addr: SocketAddr = edge.url.trim_start_matches("http://").parse().unwrap();
    let http = client();
    let hot = format!("{}/img/hot.jpg", edge.url);
    http.get(&hot).send().await.unwrap().bytes().await.unwrap();
    let before = hit_latencies(&http, &hot, 50).await;

    // From 24 client addresses, 500 each: under the per-client cap of 1024.
    let started = Instant::now();
    let mut idle = Vec::with_capacity(idle_count);
    for i in 0..idle_count {
        let socket = TcpSocket::new_v4().unwrap();
        let from: IpAddr = format!("127.0.1.{}", 1 + i % 24).parse().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        idle.push(socket.connect(addr).await.expect("the edge accepts"));
    }
    eprintln!("{idle_count} idle connections open in {:?}", started.elapsed());
    // A connect completes before the edge accepts it; when the burst overflowed the accept
    // queue, the kernel hands the rest over as the client's ACKs are resent, seconds later.
    let waited = Instant::now();
    loop {
        let open = Scrape::of(&edge.admin)
            .await
            .value_or_zero("fresco_connections_open", &[]);
        if open >= idle_count as f64 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "the edge holds them all: {open}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let flood: Vec<_> = (0..MISSES)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{}/slow/{i}.jpg", edge.url));
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let during = hit_latencies(&http, &hot, 50).await;
    let mut served = 0;
    let mut failures = Vec::new();
    for miss in flood {
        match miss.await.expect("the miss task ran") {
            Ok(200 | 503) => served += 1,
            other => failures.push(format!("{other:?}")),
        }
    }
    eprintln!(
        "hits: before p50 {:?} p99 {:?}; beside {idle_count} idle connections and {MISSES} slow misses p50 {:?} p99 {:?}",
        quantile(&before, 0.5),
        quantile(&before, 0.99),
        quantile(&during, 0.5),
        quantile(&during, 0.99),
    );
    assert_eq!(
        served,
        MISSES,
        "every miss was answered (200, or 503 when shed); the others: {failures:?}; refused: {}",
        Scrape::of(&edge.admin)
            .await
            .value_or_zero("fresco_connections_refused_total", &[])
    );
    assert!(
        quantile(&during, 0.9) < Duration::from_millis(250),
        "hits' p90 was {:?}",
        quantile(&during, 0.9)
    );
    let still_open = idle
        .iter()
        .filter(|s| matches!(s.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    assert_eq!(still_open, idle_count, "no idle connection was dropped to make room");
}
