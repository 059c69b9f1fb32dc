//! The freshness guarantee end to end: purge-api, shields and edges as real processes, faults
//! injected with real signals.

use std::time::{Duration, Instant};

use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::{Cluster, Signal, client, header, kill_process, signal_node, wait_for_pid_exit};
use serde_json::json;

/// The version an edge serves for `path` (and that its body is that version's).
async fn version_at(cluster: &Cluster, edge: usize, path: &str) -> u64 {
    let resp = client().get(cluster.edge_url(edge, path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path} on edge {edge}");
    let version: u64 = header(&resp, "x-version").parse().unwrap();
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        versioned_body(path, version),
        "body matches version"
    );
    version
}

async fn warm_everywhere(cluster: &Cluster, path: &str, version: u64) {
    for edge in 0..cluster.info.edges.len() {
        for _ in 0..2 {
            assert_eq!(version_at(cluster, edge, path).await, version);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_tag_prefix_and_soft_purges_are_seen_on_every_edge_right_after_the_answer() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let cases = [
        ("/mut/by-url.png", json!({"urls": ["/mut/by-url.png"]})),
        ("/mut/by-tag.png", json!({"tags": ["obj-by-tag.png"]})),
        ("/mut/by-prefix.png", json!({"prefixes": ["/mut/by-pre"]})),
        ("/mut/soft.png", json!({"urls": ["/mut/soft.png"], "soft": true})),
    ];
    for (path, purge) in cases {
        warm_everywhere(&cluster, path, 1).await;
        origin.set_version(path, 2);
        let answer = cluster.purge(purge.clone()).await;
        assert_eq!(answer.status, 200, "{purge}: {}", answer.body);
        assert_eq!(
            answer.body["acked"].as_array().unwrap().len(),
            3,
            "every node acked: {}",
            answer.body
        );
        for edge in 0..cluster.info.edges.len() {
            assert_eq!(version_at(&cluster, edge, path).await, 2, "{purge} on edge {edge}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_without_valid_credentials_are_refused() {
    let cluster = Cluster::builder().start();
    let url = format!("{}/v1/purge", cluster.info.purge_api);
    let body = br#"{"urls":["/img/a.jpg"]}"#.to_vec();
    let http = client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secret = cluster.info.webhook_secret.as_bytes();
    let good_signature = fresco_protocol::signature::sign(secret, now, &body);
    let attempts: Vec<(&str, Option<(&str, String)>)> = vec![
        ("no credentials", None),
        (
            "wrong token",
            Some(("authorization", "Bearer not-the-token-at-all".into())),
        ),
        (
            "bad signature",
            Some((
                "x-fresco-signature",
                fresco_protocol::signature::sign(b"wrong-secret-wrong", now, &body),
            )),
        ),
        (
            "stale timestamp",
            Some((
                "x-fresco-signature",
                fresco_protocol::signature::sign(secret, now - 400, &body),
            )),
        ),
    ];
    let head = cluster.log_head().await;
    for (what, credential) in attempts {
        let mut request = http.post(&url).body(body.clone());
        if let Some((name, value)) = credential {
            request = request.header(name, value);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        let error: serde_json::Value = resp.json().await.unwrap();
        assert!(error["error"].is_string(), "{what}: {error}");
    }
    assert_eq!(cluster.log_head().await, head, "nothing was logged");
    let signed = http
        .post(&url)
        .header("x-fresco-signature", &good_signature)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200, "a signed webhook is accepted");
    let replayed = http
        .post(&url)
        .header("x-fresco-signature", &good_signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401, "a replayed webhook is refused");
    assert_eq!(cluster.log_head().await, head + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_purges_are_refused_and_log_nothing() {
    let cluster = Cluster::builder().start();
    let url = format!("{}/v1/purge", cluster.info.purge_api);
    let http = client();
    let many: Vec<String> = (0..1001).map(|i| format!("/img/{i}.jpg")).collect();
    let cases: Vec<(String, u16)> = vec![
        ("{not json".into(), 400),
        (r#"{"urls":["/a.jpg"],"colour":"blue"}"#.into(), 400),
        ("{}".into(), 400),
        (json!({ "urls": many }).to_string(), 400),
        (r#"{"urls":["a.jpg"]}"#.into(), 400),
        (format!(r#"{{"tags":["{}"]}}"#, "x".repeat(70_000)), 413),
    ];
    let head = cluster.log_head().await;
    for (body, status) in cases {
        let resp = http
            .post(&url)
            .bearer_auth(&cluster.info.purge_token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{}", &body[..body.len().min(60)]);
        let error: serde_json::Value = resp.json().await.unwrap();
        assert!(error["error"].is_string(), "{error}");
    }
    assert_eq!(cluster.log_head().await, head, "nothing was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_edge_is_waited_for_at_most_its_lease_and_never_serves_the_old_bytes() {
    let origin = TestOrigin::start().await;
    let lease = Duration::from_millis(1000);
    let cluster = Cluster::builder()
        .origin(&origin.url)
        .lease_ms(lease.as_millis() as u64)
        .start();
    let path = "/mut/frozen.png";
    warm_everywhere(&cluster, path, 1).await;
    let frozen = &cluster.info.edges[1];
    signal_node(frozen, Signal::SIGSTOP);
    origin.set_version(path, 2);
    let started = Instant::now();
    let answer = cluster.purge(json!({"urls": [path]})).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["lease_expired"], json!([frozen.id]), "{}", answer.body);
    // L·(1+ρ)+margin after the frozen edge's last renewal, which was at most L/3 before.
    assert!(took < lease * 2, "answered after {took:?}");
    assert_eq!(version_at(&cluster, 0, path).await, 2);
    signal_node(frozen, Signal::SIGCONT);
    for _ in 0..20 {
        assert_eq!(
            version_at(&cluster, 1, path).await,
            2,
            "the thawed edge serves the new bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_during_purges_catches_up_before_serving() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let paths = ["/mut/k1.png", "/mut/k2.png", "/mut/k3.png"];
    for path in paths {
        warm_everywhere(&cluster, path, 1).await;
    }
    let victim = cluster.info.edges[0].clone();
    signal_node(&victim, Signal::SIGKILL);
    for path in paths {
        origin.set_version(path, 2);
        let answer = cluster.purge(json!({"urls": [path]})).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    // Restarted on its disk cache (which still holds version 1 of each).
    let _restarted = cluster.restart_node(&victim);
    for path in paths {
        assert_eq!(version_at(&cluster, 0, path).await, 2, "{path} after the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_in_flight_when_the_purge_lands_is_never_served_afterwards() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/slowmut/race.png";
    let url = cluster.edge_url(0, path);
    // Version 1 is read by the origin now and arrives 600 ms later.
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { client().get(url).send().await.unwrap().bytes().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    origin.set_version(path, 2);
    let answer = cluster.purge(json!({"urls": [path]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Started after the answer: version 2, although version 1 is still being filled.
    for edge in 0..2 {
        assert_eq!(version_at(&cluster, edge, path).await, 2);
    }
    let old = in_flight.await.unwrap();
    assert_eq!(
        old.as_ref(),
        versioned_body(path, 1),
        "the request older than the purge may get v1"
    );
    for edge in 0..2 {
        assert_eq!(version_at(&cluster, edge, path).await, 2, "v1 was not stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_api_killed_and_restarted_loses_nothing_it_answered() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/mut/survivor.png";
    warm_everywhere(&cluster, path, 1).await;
    origin.set_version(path, 2);
    let answer = cluster.purge(json!({"urls": [path], "tags": ["kept"]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seq = answer.body["seq"].as_u64().unwrap();

    kill_process(cluster.info.purge_api_pid, "purge-api");
    let _purge_api = cluster.restart_purge_api();
    let status: serde_json::Value = client()
        .get(format!("{}/v1/purge/{seq}", cluster.info.purge_api))
        .bearer_auth(&cluster.info.purge_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["purge"]["tags"],
        json!(["kept"]),
        "the answered purge is still logged: {status}"
    );
    // Nodes reconnect and the log goes on from where it was.
    origin.set_version(path, 3);
    let next = cluster.purge(json!({"urls": [path]})).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["seq"].as_u64(), Some(seq + 1), "sequence numbers go on");
    for edge in 0..2 {
        assert_eq!(version_at(&cluster, edge, path).await, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_api_stopped_with_sigterm_stops_at_once_while_nodes_follow_its_log() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    // Every node holds a log stream open; a graceful stop must not wait for them to hang up.
    let pid = cluster.info.purge_api_pid;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    wait_for_pid_exit(pid, "purge-api after SIGTERM", Duration::from_secs(5));
    // It comes back on its data, and the nodes follow it again.
    let _purge_api = cluster.restart_purge_api();
    let path = "/mut/after-stop.png";
    warm_everywhere(&cluster, path, 1).await;
    origin.set_version(path, 2);
    let answer = cluster.purge(json!({"urls": [path]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for edge in 0..2 {
        assert_eq!(version_at(&cluster, edge, path).await, 2);
    }
}
