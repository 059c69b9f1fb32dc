//! purge-api as replicas over a 3-member etcd cluster (`devcluster --control-plane etcd`):
//! one log, one lease table and one member list, whichever replica is asked. Faults, each
//! while purges and reads run and checked as a history (`fresco_e2e::purge_history`): a
//! replica killed with `kill -9`; an etcd member killed, then the leader; a member partitioned
//! into a network namespace; two of three members down (no quorum), then back; and a replica
//! cut off from etcd while its nodes follow it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fresco_e2e::cut_proxy::CutProxy;
use fresco_e2e::etcd::{EtcdCluster, EtcdTls, Placement};
use fresco_e2e::metrics::Scrape;
use fresco_e2e::netns::TestHost;
use fresco_e2e::origin::TestOrigin;
use fresco_e2e::purge_history::{self, Fault};
use fresco_e2e::{Cluster, NodeProcess, header, is_ready, kill_process};
use serde_json::json;

const LEASE: Duration = Duration::from_millis(1000);
/// The issue's bound on a purge answer through these faults: L + 1 s.
const ANSWER_BOUND: Duration = Duration::from_millis(2000);
const RUN: Duration = Duration::from_secs(6);
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn etcd_cluster(origin: &TestOrigin) -> Cluster {
    Cluster::builder()
        .origin(&origin.url)
        .lease_ms(LEASE.as_millis() as u64)
        .etcd()
        .start()
}

/// A fresco cluster over an etcd cluster the test controls.
fn cluster_over(etcd: &EtcdCluster, origin: &TestOrigin) -> Arc<Cluster> {
    Arc::new(
        Cluster::builder()
            .origin(&origin.url)
            .lease_ms(LEASE.as_millis() as u64)
            .etcd_at(etcd.endpoints())
            .start(),
    )
}

/// Three etcd members on loopback.
fn three_members_here() -> EtcdCluster {
    EtcdCluster::start(&[
        Placement::Here(LOOPBACK),
        Placement::Here(LOOPBACK),
        Placement::Here(LOOPBACK),
    ])
}

/// Purges sent to the replicas in turn.
fn alternating(cluster: &Cluster) -> impl Fn(usize) -> String + use<> {
    let replicas: Vec<String> = cluster.info.purge_apis.iter().map(|r| r.url.clone()).collect();
    move |round| replicas[round % replicas.len()].clone()
}

async fn member_ids(cluster: &Cluster, purge_api: &str) -> Vec<String> {
    let members = cluster.members_at(purge_api).await;
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

    // A signed webhook taken by one replica is a replay at the other.
    let body = br#"{"urls":["/mut/replicas.png"]}"#.to_vec();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signature = fresco_protocol::signature::sign(cluster.info.webhook_secret.as_bytes(), now, &body);
    let mut statuses = Vec::new();
    for replica in &replicas {
        let resp = cluster
            .http()
            .post(format!("{replica}/v1/purge"))
            .header("x-fresco-signature", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 401],
        "the second replica refuses the replayed signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_purges_and_reads_loses_nothing_it_answered() {
    let origin = Arc::new(TestOrigin::start().await);
    let cluster = Arc::new(etcd_cluster(&origin).await);
    // Purges go to the second replica throughout; the nodes follow the first, which is
    // killed at a third of the run, so they move over while purges are being answered.
    let survivor = cluster.info.purge_apis[1].url.clone();
    let victim = cluster.info.purge_apis[0].pid;
    let kill: Fault = Box::new(move || kill_process(victim, "purge-api"));
    let history = purge_history::run(
        cluster.clone(),
        origin,
        "/mut/failover.png",
        RUN,
        move |_| survivor.clone(),
        vec![(RUN / 3, kill)],
    )
    .await;
    history.assert_held(ANSWER_BOUND);
    // The survivor still lists every node: they moved over to it.
    assert_eq!(
        member_ids(&cluster, &cluster.info.purge_apis[1].url).await,
        ["edge-1", "edge-2", "shield-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_member_killed_and_then_the_leader_lose_no_purge_and_serve_nothing_stale() {
    let etcd = three_members_here();
    let origin = Arc::new(TestOrigin::start().await);
    let cluster = cluster_over(&etcd, &origin);
    let etcd = Arc::new(Mutex::new(etcd));
    let follower = {
        let leader = etcd.lock().unwrap().leader().expect("a leader");
        (leader + 1) % 3
    };
    let faults: Vec<(Duration, Fault)> = vec![
        (RUN / 5, {
            let etcd = etcd.clone();
            Box::new(move || etcd.lock().unwrap().kill(follower))
        }),
        (RUN * 2 / 5, {
            let etcd = etcd.clone();
            Box::new(move || etcd.lock().unwrap().restart(follower))
        }),
        (RUN * 3 / 5, {
            let etcd = etcd.clone();
            Box::new(move || {
                let mut etcd = etcd.lock().unwrap();
                let leader = etcd.leader().expect("a leader before the kill");
                eprintln!("killing the etcd leader, etcd-{}", leader + 1);
                etcd.kill(leader);
            })
        }),
    ];
    let history = purge_history::run(
        cluster.clone(),
        origin,
        "/mut/etcd-kill.png",
        RUN,
        alternating(&cluster),
        faults,
    )
    .await;
    history.assert_held(ANSWER_BOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_member_partitioned_away_leaves_the_majority_answering() {
    // Two members on this machine, on the address the test host can be cut off from; the
    // third inside the test host.
    let Some(host) = TestHost::create(3).map(Arc::new) else {
        return;
    };
    let here = Placement::Here(IpAddr::V4(host.services_ip()));
    let etcd = EtcdCluster::start(&[
        here,
        Placement::Here(IpAddr::V4(host.services_ip())),
        Placement::In(&host),
    ]);
    let origin = Arc::new(TestOrigin::start().await);
    let cluster = cluster_over(&etcd, &origin);
    let cut: Fault = {
        let host = host.clone();
        Box::new(move || host.cut_off_services())
    };
    let history = purge_history::run(
        cluster.clone(),
        origin,
        "/mut/etcd-partition.png",
        RUN,
        alternating(&cluster),
        vec![(RUN / 3, cut)],
    )
    .await;
    history.assert_held(ANSWER_BOUND);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcds_quorum_purges_are_refused_nodes_fence_and_all_recovers_by_itself() {
    let mut etcd = three_members_here();
    let origin = TestOrigin::start().await;
    let cluster = cluster_over(&etcd, &origin);
    let path = "/mut/quorum.png";
    let edge_admin = format!("{}/readyz", cluster.info.edges[0].admin);
    for _ in 0..2 {
        cluster.http().get(cluster.edge_url(0, path)).send().await.unwrap();
    }
    let warm = cluster.http().get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(header(&warm, "x-cache"), "HIT");

    etcd.kill(0);
    etcd.kill(1);
    for replica in &cluster.info.purge_apis {
        for _ in 0..3 {
            let sent = Instant::now();
            let answer = cluster.purge_at(&replica.url, json!({ "urls": [path] })).await;
            let took = sent.elapsed();
            assert_eq!(answer.status, 503, "{}: {}", replica.url, answer.body);
            assert!(took < Duration::from_secs(1), "refused after {took:?}");
        }
    }
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    assert!(!is_ready(&edge_admin), "an edge without a lease is fenced");
    origin.set_version(path, 2);
    let fenced = cluster.http().get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(
        header(&fenced, "x-version"),
        "2",
        "a fenced edge serves a mutable object only after revalidating it"
    );
    assert!(origin.seen(path).conditional >= 1, "it revalidated with the origin");

    etcd.restart(0);
    etcd.restart(1);
    let back = Instant::now();
    let answer = loop {
        let answer = cluster.purge(json!({ "urls": [path] })).await;
        if answer.status == 200 || back.elapsed() > Duration::from_secs(15) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer.status, 200, "purges are answered again: {}", answer.body);
    eprintln!("quorum back: purges answered again after {:?}", back.elapsed());
    let ready_again = Instant::now();
    while !is_ready(&edge_admin) {
        assert!(
            ready_again.elapsed() < Duration::from_secs(10),
            "the edge holds a lease again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    origin.set_version(path, 3);
    let answer = cluster.purge(json!({ "urls": [path] })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let fresh = cluster.http().get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(header(&fresh, "x-version"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_api_reaches_etcd_over_tls_as_an_etcd_user_and_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = fresco_devcluster::state::StateDir::create(dir.path()).unwrap();
    let tls = fresco_devcluster::tls::ClusterTls::prepare(&state, LOOPBACK).unwrap();
    let etcd_tls = EtcdTls {
        ca: tls.ca.clone(),
        server: tls.server.clone(),
    };
    let etcd = EtcdCluster::start_with(
        &[
            Placement::Here(LOOPBACK),
            Placement::Here(LOOPBACK),
            Placement::Here(LOOPBACK),
        ],
        Some(&etcd_tls),
    );
    assert!(etcd.endpoints().starts_with("https://"));
    etcd.enable_auth("root-password-0123");
    let password = dir.path().join("etcd-password");
    std::fs::write(&password, "root-password-0123\n").unwrap();
    let origin = TestOrigin::start().await;
    let (ca, password_file) = (tls.ca.display().to_string(), password.display().to_string());
    let cluster = Cluster::builder()
        .origin(&origin.url)
        .lease_ms(LEASE.as_millis() as u64)
        .etcd_at(etcd.endpoints())
        .devcluster_args(&[
            "--etcd-ca",
            &ca,
            "--etcd-user",
            "root",
            "--etcd-password-file",
            &password_file,
        ])
        .start();
    let path = "/mut/secured.png";
    origin.set_version(path, 2);
    let answer = cluster.purge(json!({ "urls": [path] })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.acked().len(), 3, "{}", answer.body);
    let resp = cluster.http().get(cluster.edge_url(0, path)).send().await.unwrap();
    assert_eq!(header(&resp, "x-version"), "2");

    // The same replica with a wrong password does not start, and says why.
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let config = dir.path().join("wrong.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ntokens: [token-token-token-1]\nnode_keys: [node-key-node-key-node]\n\
             control_plane:\n  etcd:\n    endpoints: [{endpoints}]\n    ca_file: {ca}\n    user: {{name: root, password_file: {wrong}}}\n",
            port = fresco_e2e::free_port(),
            endpoints = etcd.endpoints(),
            wrong = wrong.display(),
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(fresco_e2e::bin_dir().join("purge-api"))
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("etcd"), "the error names etcd: {stderr}");
    eprintln!("wrong password: {}", stderr.trim());
}

async fn log_streams(replica: &str) -> f64 {
    Scrape::of(replica).await.value_or_zero("fresco_purge_log_streams", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_etcd_answers_nothing_and_its_nodes_move_to_another() {
    let etcd = three_members_here();
    let origin = Arc::new(TestOrigin::start().await);
    let cluster = cluster_over(&etcd, &origin);
    let (first, second) = (cluster.info.purge_apis[0].clone(), cluster.info.purge_apis[1].clone());

    // The second replica reaches etcd through relays the test can cut: started again on them.
    let mut relays = Vec::new();
    for url in etcd.endpoints().split(',') {
        let target = url.trim_start_matches("http://").parse().expect("an etcd address");
        relays.push(CutProxy::start(target).await);
    }
    kill_process(second.pid, "purge-api-2");
    let config = cluster.state_dir().join("conf").join("purge-api-2.yaml");
    let relayed: String = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .map(|line| match line.trim_start().starts_with("endpoints:") {
            true => format!(
                "    endpoints: [{}]\n",
                relays.iter().map(CutProxy::url).collect::<Vec<_>>().join(", ")
            ),
            false => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&config, relayed).unwrap();
    let mut cmd = std::process::Command::new(fresco_e2e::bin_dir().join("purge-api"));
    cmd.arg("-c").arg(&config);
    let _second_again = NodeProcess::spawn_ready(cmd, &format!("{}/readyz", second.url));
    // The nodes follow the first replica; killed, they move to the second, and stay there
    // when it is back.
    kill_process(first.pid, "purge-api");
    let _first_again = cluster.restart_purge_api();
    let nodes = (cluster.info.edges.len() + cluster.info.shields.len()) as f64;
    let moved = Instant::now();
    while log_streams(&second.url).await < nodes {
        assert!(
            moved.elapsed() < Duration::from_secs(10),
            "the nodes did not move to the second replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Cut off while purges (to the first) and reads run: its nodes move back to the first,
    // and no purge is answered late or read stale.
    let cut: Fault = Box::new(move || relays.iter().for_each(CutProxy::cut));
    let history = purge_history::run(
        cluster.clone(),
        origin,
        "/mut/replica-cut.png",
        RUN,
        {
            let first = first.url.clone();
            move |_| first.clone()
        },
        vec![(RUN / 3, cut)],
    )
    .await;
    history.assert_held(ANSWER_BOUND);
    assert_eq!(
        log_streams(&second.url).await,
        0.0,
        "nodes still follow the replica cut off"
    );
    assert_eq!(
        log_streams(&first.url).await,
        nodes,
        "every node follows the first replica"
    );
    // The replica cut off answers nothing, and says why, within its budget.
    let sent = Instant::now();
    let answer = cluster
        .purge_at(&second.url, json!({ "urls": ["/mut/replica-cut.png"] }))
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body["error"].as_str().unwrap_or_default().contains("etcd"),
        "{}",
        answer.body
    );
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        sent.elapsed()
    );
}
