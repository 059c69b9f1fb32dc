//! A history checker for the freshness guarantee: readers on every edge record when each read
//! started and ended and which version it returned; a writer changes objects at the origin and
//! purges them; an edge is frozen and another killed and restarted meanwhile. The test fails on
//! any read that started after a purge's 200 and returned an older version.
//!
//! `FRESCO_HISTORY_SECS` sets how long it runs (default 8).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::{Cluster, Signal, header, signal_node};
use serde_json::json;

struct Read {
    path: usize,
    started: Instant,
    version: u64,
}

struct Purge {
    path: usize,
    version: u64,
    answered: Instant,
}

const PATHS: [&str; 3] = ["/mut/h0.png", "/mut/h1.png", "/mut/h2.png"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_that_starts_after_a_purge_answer_returns_an_older_version() {
    let seconds: u64 = std::env::var("FRESCO_HISTORY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let run = Duration::from_secs(seconds);
    let lease = Duration::from_millis(1000);
    let origin = Arc::new(TestOrigin::start().await);
    let cluster = Arc::new(
        Cluster::builder()
            .origin(&origin.url)
            .lease_ms(lease.as_millis() as u64)
            .start(),
    );
    let reads = Arc::new(Mutex::new(Vec::<Read>::new()));
    let failures = Arc::new(Mutex::new(0usize));
    let started = Instant::now();

    let mut readers = Vec::new();
    for reader in 0..4usize {
        let (cluster, reads, failures) = (cluster.clone(), reads.clone(), failures.clone());
        readers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap();
            let mut i = reader;
            while started.elapsed() < run {
                let (path, edge) = (i % PATHS.len(), (i / PATHS.len()) % cluster.info.edges.len());
                i += 1;
                let begun = Instant::now();
                let Ok(resp) = http.get(cluster.edge_url(edge, PATHS[path])).send().await else {
                    *failures.lock().unwrap() += 1;
                    continue;
                };
                if resp.status() != 200 {
                    *failures.lock().unwrap() += 1;
                    continue;
                }
                let version: u64 = header(&resp, "x-version").parse().unwrap();
                let Ok(body) = resp.bytes().await else {
                    *failures.lock().unwrap() += 1;
                    continue;
                };
                assert_eq!(
                    body.as_ref(),
                    versioned_body(PATHS[path], version),
                    "body and version agree"
                );
                reads.lock().unwrap().push(Read {
                    path,
                    started: begun,
                    version,
                });
            }
        }));
    }

    let writer = tokio::spawn({
        let (cluster, origin) = (cluster.clone(), origin.clone());
        async move {
            let mut purges = Vec::new();
            let mut versions = [1u64; PATHS.len()];
            let mut round = 0usize;
            while started.elapsed() < run {
                let path = round % PATHS.len();
                round += 1;
                versions[path] += 1;
                origin.set_version(PATHS[path], versions[path]);
                // URL purges also delete eagerly; tag and prefix purges rely on the rules alone.
                let name = PATHS[path].rsplit('/').next().unwrap();
                let purge = match round % 3 {
                    0 => json!({ "urls": [PATHS[path]] }),
                    1 => json!({ "tags": [format!("obj-{name}")] }),
                    _ => json!({ "prefixes": [PATHS[path]] }),
                };
                let answer = cluster.purge(purge).await;
                assert_eq!(answer.status, 200, "{}", answer.body);
                purges.push(Purge {
                    path,
                    version: versions[path],
                    answered: Instant::now(),
                });
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            purges
        }
    });

    // Faults: freeze edge-2 for 1.5 leases at a third of the run; kill edge-1 at two thirds
    // and start it again on its warm disk cache.
    tokio::time::sleep(run / 3).await;
    signal_node(&cluster.info.edges[1], Signal::SIGSTOP);
    tokio::time::sleep(lease * 3 / 2).await;
    signal_node(&cluster.info.edges[1], Signal::SIGCONT);
    tokio::time::sleep((run / 3).saturating_sub(lease * 3 / 2)).await;
    let victim = cluster.info.edges[0].clone();
    signal_node(&victim, Signal::SIGKILL);
    let restarter = cluster.clone();
    let restarted = tokio::task::spawn_blocking(move || restarter.restart_node(&victim))
        .await
        .unwrap();

    let purges = writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
    drop(restarted);
    let reads = reads.lock().unwrap();
    let mut violations = Vec::new();
    for read in reads.iter() {
        let newest_answered = purges
            .iter()
            .filter(|p| p.path == read.path && p.answered < read.started)
            .map(|p| p.version)
            .max()
            .unwrap_or(1);
        if read.version < newest_answered {
            violations.push(format!(
                "{} read v{} at +{:?}, after v{newest_answered} was purged",
                PATHS[read.path],
                read.version,
                read.started - started
            ));
        }
    }
    eprintln!(
        "history: {} reads, {} failed (frozen or killed edge), {} purges, {} violations",
        reads.len(),
        failures.lock().unwrap(),
        purges.len(),
        violations.len()
    );
    assert!(
        reads.len() >= 1000,
        "only {} reads: too few to mean anything",
        reads.len()
    );
    assert!(
        violations.is_empty(),
        "stale reads after a purge answer:\n{}",
        violations.join("\n")
    );
}
