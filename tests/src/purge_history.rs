//! Purges and reads under faults, checked as a history: a writer changes one object at the
//! origin and purges it, readers on every edge record when each read started and what version
//! it returned, and faults happen meanwhile at set times. Afterwards: was every purge answered
//! 200, how slowly, and did any read that started after a purge's answer return an older
//! version?

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::origin::{TestOrigin, versioned_body};
use crate::{Cluster, header};

/// A fault, run on a thread of its own at its time.
pub type Fault = Box<dyn FnOnce() + Send>;

/// What a run saw.
#[derive(Debug)]
pub struct History {
    /// Reads that returned a version.
    pub reads: usize,
    /// Purges answered 200.
    pub answered: usize,
    /// Purges answered otherwise, with their status and body.
    pub refused: Vec<String>,
    /// The slowest answer of a purge.
    pub slowest: Duration,
    /// Reads that returned a version older than one already answered as purged.
    pub stale: Vec<String>,
}

struct Read {
    started: Instant,
    version: u64,
}

/// Runs for `run`: purges of `path` sent to `purge_api(round)`, reads on every edge, and each
/// fault at its offset from the start.
pub async fn run(
    cluster: Arc<Cluster>,
    origin: Arc<TestOrigin>,
    path: &'static str,
    run: Duration,
    purge_api: impl Fn(usize) -> String,
    faults: Vec<(Duration, Fault)>,
) -> History {
    let started = Instant::now();
    let reads = Arc::new(Mutex::new(Vec::<Read>::new()));
    let mut readers = Vec::new();
    for edge in 0..cluster.info.edges.len() {
        let (cluster, reads) = (cluster.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("an HTTP client");
            while started.elapsed() < run {
                let begun = Instant::now();
                let Ok(resp) = http.get(cluster.edge_url(edge, path)).send().await else {
                    continue;
                };
                if resp.status() != 200 {
                    continue;
                }
                let version: u64 = header(&resp, "x-version").parse().expect("x-version");
                let Ok(body) = resp.bytes().await else { continue };
                assert_eq!(body.as_ref(), versioned_body(path, version), "body and version agree");
                reads.lock().unwrap().push(Read {
                    started: begun,
                    version,
                });
            }
        }));
    }
    let faults: Vec<_> = faults
        .into_iter()
        .map(|(at, fault)| {
            std::thread::spawn(move || {
                std::thread::sleep(at.saturating_sub(started.elapsed()));
                fault();
            })
        })
        .collect();
    let (mut answered, mut refused, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
    let mut version = 1u64;
    let mut round = 0;
    while started.elapsed() < run {
        version += 1;
        origin.set_version(path, version);
        let sent = Instant::now();
        let answer = cluster.purge_at(&purge_api(round), json!({ "urls": [path] })).await;
        round += 1;
        slowest = slowest.max(sent.elapsed());
        match answer.status {
            200 => answered.push((version, Instant::now())),
            status => refused.push(format!("v{version}: {status} {}", answer.body)),
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for reader in readers {
        reader.await.expect("a reader");
    }
    for fault in faults {
        fault.join().expect("a fault");
    }
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    let stale = reads
        .iter()
        .filter_map(|read| {
            let newest = answered
                .iter()
                .filter(|(_, at)| *at < read.started)
                .map(|(v, _)| *v)
                .max()?;
            (read.version < newest).then(|| {
                format!(
                    "read v{} at +{:?}, after v{newest} was answered",
                    read.version,
                    read.started - started
                )
            })
        })
        .collect();
    History {
        reads: reads.len(),
        answered: answered.len(),
        refused,
        slowest,
        stale,
    }
}

impl History {
    /// Asserts what the freshness guarantee and the bound promise: every purge
    /// answered 200 within `bound`, no stale read, and enough of both to mean something.
    pub fn assert_held(&self, bound: Duration) {
        eprintln!(
            "history: {} reads, {} purges answered (slowest {:?}), {} refused, {} stale",
            self.reads,
            self.answered,
            self.slowest,
            self.refused.len(),
            self.stale.len()
        );
        assert!(self.reads >= 200, "only {} reads", self.reads);
        assert!(self.answered >= 20, "only {} purges answered", self.answered);
        assert!(self.stale.is_empty(), "stale reads:\n{}", self.stale.join("\n"));
        assert!(self.refused.is_empty(), "purges refused:\n{}", self.refused.join("\n"));
        assert!(self.slowest <= bound, "a purge took {:?}, over {bound:?}", self.slowest);
    }
}
