//! purge-api as replicas over a 3-member etcd cluster (`devcluster --control-plane etcd`):
//! one log, one lease table and one member list, whichever replica is asked; a replica killed
//! with `kill -9` while purges and reads run loses no answered purge and serves no stale read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::{Cluster, header, wait_for_pid_exit};
use serde_json::json;

const LEASE: Duration = Duration::from_millis(1000);

async fn etcd_cluster(origin: &TestOrigin) -> Cluster {
    Cluster::builder()
        .origin(&origin.url)
        .lease_ms(LEASE.as_millis() as u64)
        .etcd()
        .start()
}

async fn member_ids(cluster: &Cluster, purge_api: &str) -> Vec<String> {
    let members: serde_json::Value = cluster
        .http()
        .get(format!("{purge_api}/v1/members"))
        .bearer_auth(&cluster.info.purge_token)
        .send()
        .await
        .expect("purge-api answers")
        .json()
        .await
        .expect("members is JSON");
    let mut ids: Vec<String> = members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_appends_to_one_log_and_counts_every_nodes_acks() {
    let origin = TestOrigin::start().await;
    let cluster = etcd_cluster(&origin).await;
    assert_eq!(cluster.info.etcd.len(), 3, "three etcd members");
    let replicas: Vec<String> = cluster.info.purge_apis.iter().map(|r| r.url.clone()).collect();
    assert_eq!(replicas.len(), 2, "two purge-api replicas");
    let nodes = ["edge-1", "edge-2", "shield-1"];
    for replica in &replicas {
        assert_eq!(member_ids(&cluster, replica).await, nodes, "{replica} lists every node");
    }
    // Nodes follow the first replica; a purge answered by the second must still wait for
    // their acks, which reach it only through etcd.
    let mut seqs = Vec::new();
    for round in 0..6u64 {
        let path = "/mut/replicas.png";
        origin.set_version(path, round + 2);
        let replica = &replicas[round as usize % 2];
        let answer = cluster.purge_at(replica, json!({ "urls": [path] })).await;
        assert_eq!(answer.status, 200, "{replica}: {}", answer.body);
        let mut acked = answer.acked();
        acked.sort();
        assert_eq!(acked, nodes, "{replica} counted every node's ack: {}", answer.body);
        seqs.push(answer.body["seq"].as_u64().unwrap());
        for edge in 0..cluster.info.edges.len() {
            let resp = cluster.http().get(cluster.edge_url(edge, path)).send().await.unwrap();
            assert_eq!(
                header(&resp, "x-version"),
                (round + 2).to_string(),
                "edge {edge}, round {round}"
            );
        }
    }
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + 6).collect::<Vec<_>>(),
        "sequence numbers from both replicas are consecutive"
    );
}

struct Read {
    started: Instant,
    version: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_purges_and_reads_loses_nothing_it_answered() {
    let origin = Arc::new(TestOrigin::start().await);
    let cluster = Arc::new(etcd_cluster(&origin).await);
    let path = "/mut/failover.png";
    let reads = Arc::new(Mutex::new(Vec::<Read>::new()));
    let run = Duration::from_secs(6);
    let started = Instant::now();
    let mut readers = Vec::new();
    for reader in 0..2usize {
        let (cluster, reads) = (cluster.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap();
            while started.elapsed() < run {
                let begun = Instant::now();
                let Ok(resp) = http.get(cluster.edge_url(reader, path)).send().await else {
                    continue;
                };
                if resp.status() != 200 {
                    continue;
                }
                let version: u64 = header(&resp, "x-version").parse().unwrap();
                let body = resp.bytes().await.unwrap();
                assert_eq!(body.as_ref(), versioned_body(path, version));
                reads.lock().unwrap().push(Read {
                    started: begun,
                    version,
                });
            }
        }));
    }
    // Purges go to the second replica throughout; the nodes follow the first, which is
    // killed at a third of the run, so they move over while purges are being answered.
    let survivor = cluster.info.purge_apis[1].url.clone();
    let victim = cluster.info.purge_apis[0].pid;
    let mut answered = Vec::new();
    let mut version = 1u64;
    let mut killed_at = None;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < run {
        if killed_at.is_none() && started.elapsed() > run / 3 {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(victim as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            wait_for_pid_exit(victim, "purge-api", Duration::from_secs(5));
            killed_at = Some(Instant::now());
        }
        version += 1;
        origin.set_version(path, version);
        let sent = Instant::now();
        let answer = cluster.purge_at(&survivor, json!({ "urls": [path] })).await;
        assert_eq!(answer.status, 200, "purge of v{version}: {}", answer.body);
        let took = sent.elapsed();
        slowest = slowest.max(took);
        assert!(
            took <= LEASE + Duration::from_secs(1),
            "purge of v{version} took {took:?}, over L + 1 s"
        );
        answered.push((version, Instant::now()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(killed_at.is_some());
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    let stale: Vec<String> = reads
        .iter()
        .filter_map(|read| {
            let newest = answered
                .iter()
                .filter(|(_, at)| *at < read.started)
                .map(|(v, _)| *v)
                .max()?;
            (read.version < newest).then(|| format!("read v{} after v{newest} was answered", read.version))
        })
        .collect();
    eprintln!(
        "failover: {} reads, {} purges answered by the survivor (slowest {slowest:?}), {} stale",
        reads.len(),
        answered.len(),
        stale.len()
    );
    assert!(reads.len() >= 200, "only {} reads", reads.len());
    assert!(stale.is_empty(), "stale reads:\n{}", stale.join("\n"));
    // The survivor still lists every node: they moved over to it.
    assert_eq!(member_ids(&cluster, &survivor).await, ["edge-1", "edge-2", "shield-1"]);
}
