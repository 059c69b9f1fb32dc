//! Phase 3: a warm restart. A Zipf request trace is replayed against the edge for a while,
//! the edge is killed with `-9` and started again, and the same trace is replayed from its
//! start: the hit ratio of the minute after against the minute before, and how long the edge
//! took to be ready and to serve its first hit.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Zipf};

use fresco_loadtest::latencies::Latencies;
use fresco_loadtest::pool::{Until, get, run_pool};

/// A request trace: indices into a corpus, Zipf-distributed over a random ranking of it (so
/// popularity does not follow the corpus's order).
pub struct ZipfTrace {
    /// The corpus index of each request, in order.
    pub requests: Vec<usize>,
    /// The corpus index of the most popular URL.
    pub hottest: usize,
}

/// `len` requests over `urls` URLs with Zipf exponent `exponent`, fixed by `seed`.
pub fn zipf_trace(urls: usize, exponent: f64, seed: u64, len: usize) -> ZipfTrace {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_rank: Vec<usize> = (0..urls).collect();
    by_rank.shuffle(&mut rng);
    let popularity = Zipf::new(urls as f64, exponent).expect("a Zipf exponent of at least 0 over some URLs");
    // Ranks run from 1.
    let requests = (0..len)
        .map(|_| by_rank[popularity.sample(&mut rng) as usize - 1])
        .collect();
    ZipfTrace {
        requests,
        hottest: by_rank[0],
    }
}

/// One second of a replay.
#[derive(Clone, Default)]
pub struct Second {
    /// Requests answered 200.
    pub answered: usize,
    /// Of those, hits.
    pub hits: usize,
    /// Requests that failed (the edge down or not listening yet).
    pub errors: usize,
    /// Latencies of the answered requests.
    pub latencies_ms: Vec<f64>,
    /// The answered requests that were not hits: path and `X-Cache`.
    pub not_hits: Vec<(String, String)>,
}

/// Replays `trace` from its start against `base` + `paths[trace[i]]` on `concurrency` workers
/// for `duration`, counting by second since `start`.
pub async fn replay(
    http: &reqwest::Client,
    base: &str,
    paths: Arc<Vec<String>>,
    trace: Arc<Vec<usize>>,
    concurrency: usize,
    start: Instant,
    duration: Duration,
) -> Vec<Second> {
    let seconds = Arc::new(Mutex::new(vec![Second::default(); duration.as_secs() as usize + 1]));
    let job = {
        let (http, base, seconds) = (http.clone(), base.to_string(), seconds.clone());
        move |i: usize| {
            let path = paths[trace[i % trace.len()]].clone();
            let (http, seconds, base) = (http.clone(), seconds.clone(), base.clone());
            async move {
                let outcome = get(&http, &format!("{base}{path}")).await;
                let at = (start.elapsed().as_secs() as usize).min(duration.as_secs() as usize);
                {
                    let mut seconds = seconds.lock().unwrap();
                    let second = &mut seconds[at];
                    if outcome.ok {
                        second.answered += 1;
                        second.hits += usize::from(outcome.hit);
                        second.latencies_ms.push(outcome.latency_ms);
                        if !outcome.hit {
                            second.not_hits.push((path, outcome.x_cache));
                        }
                    } else {
                        second.errors += 1;
                    }
                }
                if !outcome.ok {
                    // The edge is down or starting: do not spin on refused connections.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    };
    run_pool(concurrency, Until::Deadline(start + duration), job).await;
    let mut seconds = std::mem::take(&mut *seconds.lock().unwrap());
    seconds.truncate(duration.as_secs() as usize);
    seconds
}

/// The answered requests of a replay that were not hits, counted by `X-Cache`, and the
/// first few of them (second, path, `X-Cache`) to look into.
pub fn not_hits(seconds: &[Second]) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
    let mut by_status = std::collections::BTreeMap::new();
    let mut first = Vec::new();
    for (at, second) in seconds.iter().enumerate() {
        for (path, x_cache) in &second.not_hits {
            *by_status.entry(x_cache.clone()).or_insert(0) += 1;
            if first.len() < 10 {
                first.push(format!("{at} s: {path} {x_cache}"));
            }
        }
    }
    (by_status, first)
}

/// Totals of a replay: (answered, hits, errors).
pub fn totals(seconds: &[Second]) -> (usize, usize, usize) {
    seconds
        .iter()
        .fold((0, 0, 0), |(a, h, e), s| (a + s.answered, h + s.hits, e + s.errors))
}

/// How a restarted edge came back, in seconds since its process was started.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// `/readyz` answered 200 (caught up with the purge log and leased).
    pub ready_s: f64,
    /// A GET of the trace's most requested URL was a HIT.
    pub first_hit_s: f64,
}

/// Polls `readyz` and `hit_url` from `spawned` on, every 2 ms, until both have answered.
pub async fn time_recovery(readyz: &str, hit_url: &str, spawned: Instant) -> Recovery {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let ready = async {
        loop {
            if let Ok(resp) = http.get(readyz).send().await
                && resp.status() == 200
            {
                return spawned.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let first_hit = async {
        while !get(&http, hit_url).await.hit {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        spawned.elapsed().as_secs_f64()
    };
    let (ready_s, first_hit_s) =
        tokio::time::timeout(Duration::from_secs(120), async { tokio::join!(ready, first_hit) })
            .await
            .expect("the restarted edge is ready and hits within 2 minutes");
    Recovery { ready_s, first_hit_s }
}

/// Writes `phase,second,answered,hits,errors,hit_ratio,p50_ms,p99_ms`; the seconds before the
/// kill are negative (−N … −1), those after the restart start at 0.
pub fn write_csv(path: &str, before: &[Second], after: &[Second]) {
    let mut csv = fresco_loadtest::output::create(path);
    writeln!(csv, "phase,second,answered,hits,errors,hit_ratio,p50_ms,p99_ms").unwrap();
    let rows = before
        .iter()
        .enumerate()
        .map(|(i, s)| ("before", i as i64 - before.len() as i64, s))
        .chain(after.iter().enumerate().map(|(i, s)| ("after", i as i64, s)));
    for (phase, second, s) in rows {
        let latencies: Latencies = s.latencies_ms.iter().collect();
        let ratio = if s.answered > 0 {
            s.hits as f64 / s.answered as f64
        } else {
            0.0
        };
        writeln!(
            csv,
            "{phase},{second},{},{},{},{ratio:.4},{:.3},{:.3}",
            s.answered,
            s.hits,
            s.errors,
            latencies.quantile_ms(0.5),
            latencies.quantile_ms(0.99)
        )
        .unwrap();
    }
}
