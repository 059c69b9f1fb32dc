//! Who may speak for whom at purge-api, from outside: a purge token cannot reach the node
//! protocol (the attack: `POST /v1/ack {"node":"edge-1","applied":2^64-1}` with a purge token
//! made purge-api count edge-1 as having applied every future purge), a node's credential
//! speaks only for its own node and never beyond the log's head (a copy of an ack included), and an origin's webhook secret
//! scoped to its site purges only that site.

use fresco_e2e::{Cluster, NodeProcess, bin_dir, client, free_port};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = request.send().await.expect("purge-api answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or_default())
}

fn applied_of(members: &Value, node: &str) -> u64 {
    members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == node)
        .and_then(|m| m["applied"].as_u64())
        .unwrap_or_else(|| panic!("{node} is not in {members}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_token_cannot_speak_for_a_node_and_a_node_speaks_only_for_itself() {
    let cluster = Cluster::builder().size(1, 1).start();
    let api = &cluster.info.purge_api;
    let http = client();
    let token = &cluster.info.purge_token;
    let edge = cluster.node_credential("edge-1");
    assert_eq!(cluster.purge(json!({"urls": ["/img/a.jpg"]})).await.status, 200);

    // A purge token on the node protocol: refused, whatever it asks.
    for (what, request) in [
        (
            "ack",
            http.post(format!("{api}/v1/ack"))
                .json(&json!({"node": "edge-1", "applied": u64::MAX})),
        ),
        (
            "lease",
            http.post(format!("{api}/v1/lease"))
                .json(&json!({"node": "edge-1", "role": "edge", "address": "127.0.0.1:1", "applied": u64::MAX})),
        ),
        ("log", http.get(format!("{api}/v1/log?from=1"))),
    ] {
        let (status, body) = send(request.bearer_auth(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a purge token: {body}");
        assert!(body["error"].as_str().unwrap().contains("node protocol"), "{body}");
    }

    // A node's credential: not for another node, not beyond the head, not for purging.
    let (status, _) = send(
        http.post(format!("{api}/v1/ack"))
            .bearer_auth(&edge)
            .json(&json!({"node": "shield-1", "applied": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "edge-1 acking as shield-1");
    let (status, body) = send(
        http.post(format!("{api}/v1/ack"))
            .bearer_auth(&edge)
            .json(&json!({"node": "edge-1", "applied": u64::MAX})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "an ack beyond the head: {body}");
    assert!(body["error"].as_str().unwrap().contains("head"), "{body}");
    // A copy of an ack (sent to the replicas a node does not follow): its own node only, and
    // counted no further than the head (checked below).
    let (status, _) = send(
        http.post(format!("{api}/v1/ack"))
            .bearer_auth(&edge)
            .json(&json!({"node": "shield-1", "applied": 1, "copy": true})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "edge-1 sending a copy as shield-1");
    let (status, body) = send(
        http.post(format!("{api}/v1/ack"))
            .bearer_auth(&edge)
            .json(&json!({"node": "edge-1", "applied": u64::MAX, "copy": true})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a copy beyond the head is counted up to it: {body}"
    );
    let (status, _) = send(
        http.post(format!("{api}/v1/purge"))
            .bearer_auth(&edge)
            .json(&json!({"urls": ["/img/a.jpg"]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a node credential purging");
    let (status, _) = send(http.get(format!("{api}/v1/purge/1")).bearer_auth(&edge)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a node credential reading purges");
    let forged = fresco_protocol::credential::derive(b"not-the-cluster-node-key", "edge-1");
    let (status, _) = send(http.get(format!("{api}/v1/members")).bearer_auth(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a credential from another key");

    // Both may read the members; none of the attempts above moved edge-1 past the head.
    let (status, members) = send(http.get(format!("{api}/v1/members")).bearer_auth(&edge)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, by_operator) = send(http.get(format!("{api}/v1/members")).bearer_auth(token)).await;
    let head = by_operator["head"].as_u64().unwrap();
    assert!(applied_of(&members, "edge-1") <= head, "{members}");

    // And a purge is still answered only once edge-1 has really applied it.
    let answer = cluster.purge(json!({"urls": ["/img/b.jpg"]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.acked().contains(&"edge-1".to_string()), "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_secret_scoped_to_a_site_purges_only_that_site() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("purge-api.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\ntokens: [scoped-test-operator-token]\n\
             node_keys: [scoped-test-node-key-0123]\n\
             webhook_secrets: [{{secret: shop-webhook-secret-0123, hosts: [shop.example]}}]\n",
            dir.path().join("log").display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin_dir().join("purge-api"));
    cmd.arg("-c").arg(&config);
    let _purge_api = NodeProcess::spawn_ready(cmd, &format!("{api}/readyz"));
    let http = client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = |body: Value| {
        let body = serde_json::to_vec(&body).unwrap();
        let signature = fresco_protocol::signature::sign(b"shop-webhook-secret-0123", now, &body);
        http.post(format!("{api}/v1/purge"))
            .header(fresco_protocol::signature::HEADER, signature)
            .header("content-type", "application/json")
            .body(body)
    };
    for body in [
        json!({"urls": ["https://blog.example/a.jpg"], "wait": false}),
        json!({"urls": ["/a.jpg"], "wait": false}),
        json!({"prefixes": ["https://shop.example/img/", "/"], "wait": false}),
    ] {
        let (status, answer) = send(signed(body.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("shop.example"), "{answer}");
    }
    let (status, answer) = send(signed(
        json!({"urls": ["https://shop.example/a.jpg"], "tags": ["sale"], "wait": false}),
    ))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let seq = answer["seq"].as_u64().unwrap();
    assert_eq!(seq, 1, "nothing out of scope reached the log");
    let (_, purge) = send(
        http.get(format!("{api}/v1/purge/{seq}"))
            .bearer_auth("scoped-test-operator-token"),
    )
    .await;
    assert_eq!(
        purge["purge"]["tag_hosts"],
        json!(["shop.example"]),
        "its tags reach only shop.example's site: {purge}"
    );
}
