//! Steady load on a cluster while a test breaks it: a few workers each sending one request at a
//! time, for a bounded time, counting what failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub requests: u64,
    /// Requests that got no 200 with a whole body, each with what went wrong.
    pub failures: Vec<String>,
    /// The slowest request.
    pub slowest: Duration,
}

impl LoadReport {
    /// Failed requests as a share of all.
    pub fn error_ratio(&self) -> f64 {
        self.failures.len() as f64 / self.requests.max(1) as f64
    }

    /// Prints the report and asserts that the load ran (over 300 requests) and that at most
    /// `ratio` of its requests failed, naming the first failures when more did.
    pub fn assert_at_most(&self, ratio: f64) {
        eprintln!(
            "load: {} requests, {} failed, slowest {:?}",
            self.requests,
            self.failures.len(),
            self.slowest
        );
        assert!(self.requests > 300, "the load ran: {self:?}");
        assert!(
            self.error_ratio() <= ratio,
            "{} of {} requests failed: {:?}",
            self.failures.len(),
            self.requests,
            &self.failures[..self.failures.len().min(5)]
        );
    }
}

/// A load that runs until [`Load::finish`] (or `limit`, whichever is first).
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: tokio::task::JoinSet<(u64, Vec<String>, Duration)>,
}

impl Load {
    /// Starts `workers` workers; worker `w`'s `n`th request is for `url(w, n)`.
    pub fn start(workers: usize, limit: Duration, url: impl Fn(usize, u64) -> String + Send + Sync + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = Arc::new(url);
        let counter = Arc::new(AtomicU64::new(0));
        let mut set = tokio::task::JoinSet::new();
        for w in 0..workers {
            let (stop, url, counter) = (stop.clone(), url.clone(), counter.clone());
            set.spawn(async move {
                let http = crate::client();
                let started = Instant::now();
                let (mut sent, mut failures, mut slowest) = (0u64, Vec::new(), Duration::ZERO);
                while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let target = url(w, n);
                    let t = Instant::now();
                    let outcome = match http.get(&target).send().await {
                        Ok(r) if r.status() == 200 => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    slowest = slowest.max(t.elapsed());
                    sent += 1;
                    if let Err(e) = outcome {
                        failures.push(format!("{target}: {e}"));
                    }
                }
                (sent, failures, slowest)
            });
        }
        Self { stop, workers: set }
    }

    /// Misses flowing through both edges to the shields: each request is a new key.
    pub fn misses(cluster: &crate::Cluster, tag: &'static str) -> Self {
        let edges: Vec<String> = cluster.info.edges.iter().map(|e| e.url.clone()).collect();
        Self::start(6, Duration::from_secs(30), move |w, n| {
            format!("{}/img/{tag}-{n}.jpg", edges[w % edges.len()])
        })
    }

    /// Stops the load and reports.
    pub async fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        while let Some(Ok((sent, failures, slowest))) = self.workers.join_next().await {
            report.requests += sent;
            report.failures.extend(failures);
            report.slowest = report.slowest.max(slowest);
        }
        report
    }
}
