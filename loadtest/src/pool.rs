//! Requests through a node, and a pool of workers that sends many.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What one GET got.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The node answered 200 with a whole body.
    pub ok: bool,
    /// `X-Cache: HIT`.
    pub hit: bool,
    /// The `X-Cache` header, empty when absent or when nothing was answered.
    pub x_cache: String,
    /// From sending to the last byte of the body.
    pub latency_ms: f64,
}

/// GETs `url` and reads the whole body.
pub async fn get(http: &reqwest::Client, url: &str) -> Outcome {
    let started = Instant::now();
    let (ok, x_cache) = match http.get(url).send().await {
        Ok(resp) => {
            let x_cache = resp
                .headers()
                .get("x-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (resp.status() == 200 && resp.bytes().await.is_ok(), x_cache)
        }
        Err(_) => (false, String::new()),
    };
    Outcome {
        ok,
        hit: ok && x_cache == "HIT",
        x_cache,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// When a pool of workers stops taking jobs.
#[derive(Clone, Copy)]
pub enum Until {
    /// After jobs `0..n`.
    Jobs(usize),
    /// At this instant (jobs are numbered on without end).
    Deadline(Instant),
}

/// Runs `job(0)`, `job(1)`, … on `concurrency` workers, each taking the next number when its
/// last job is done (a closed loop: the node's speed sets the rate).
pub async fn run_pool<F, Fut>(concurrency: usize, until: Until, job: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, job) = (next.clone(), job.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let more = match until {
                    Until::Jobs(n) => i < n,
                    Until::Deadline(at) => Instant::now() < at,
                };
                if !more {
                    break;
                }
                job(i).await;
            }
        });
    }
    workers.join_all().await;
}
