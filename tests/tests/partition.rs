//! A real partition: an edge in a network namespace of its own, cut off from purge-api by a
//! blackhole route, while the origin stays reachable.

use std::time::Duration;

use fresco_e2e::netns::TestHost;
use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::{NodeProcess, bin_dir, header, is_ready};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_cut_off_from_purge_api_stops_serving_mutable_objects_within_its_lease() {
    let Some(host) = TestHost::create(1) else { return };
    let lease = Duration::from_millis(1000);
    let origin = TestOrigin::start_on(host.machine_ip()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = "partition-test-token-0123";
    let node_key = "partition-test-node-key-0123";
    let credential = fresco_protocol::credential::derive(node_key.as_bytes(), "edge-cut");

    let purge_port = std::net::TcpListener::bind((host.services_ip(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let purge_api = format!("http://{}:{purge_port}", host.services_ip());
    let purge_conf = dir.path().join("purge-api.yaml");
    std::fs::write(
        &purge_conf,
        format!(
            "listen: {}:{purge_port}\ndata_dir: {}\ntokens: [{token}]\nnode_keys: [{node_key}]\nlease_ms: {}\n",
            host.services_ip(),
            dir.path().join("log").display(),
            lease.as_millis()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin_dir().join("purge-api"));
    cmd.arg("-c").arg(&purge_conf);
    let _purge_api = NodeProcess::spawn_ready(cmd, &format!("{purge_api}/readyz"));

    let edge = format!("http://{}:18081", host.ip());
    let edge_conf = dir.path().join("edge.yaml");
    std::fs::write(
        &edge_conf,
        format!(
            "node_id: edge-cut\nlisten: {ip}:18081\nadmin_listen: {ip}:19081\n\
             cache: {{ memory: 64MiB }}\n\
             freshness: {{ purge_api: '{purge_api}', credential: {credential}, state_dir: '{state}' }}\n\
             sites: [{{ name: default, origin: '{origin}' }}]\n",
            ip = host.ip(),
            state = dir.path().join("fresh").display(),
            origin = origin.url,
        ),
    )
    .unwrap();
    let mut cmd = host.command(&bin_dir().join("fresco-edge"));
    cmd.arg("-c").arg(&edge_conf);
    let admin_ready = format!("http://{}:19081/readyz", host.ip());
    let _edge = NodeProcess::spawn_ready(cmd, &admin_ready);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mutable, immutable) = ("/mut/cut.png", "/immutable/logo.png");
    for _ in 0..2 {
        for path in [mutable, immutable] {
            http.get(format!("{edge}{path}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        }
    }
    let warm = http.get(format!("{edge}{mutable}")).send().await.unwrap();
    assert_eq!(header(&warm, "x-cache"), "HIT");

    host.cut_off_services();
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert!(!is_ready(&admin_ready), "a fenced edge does not report ready");

    // The object changes at the origin; the edge cannot hear of any purge.
    origin.set_version(mutable, 2);
    let fenced = http.get(format!("{edge}{mutable}")).send().await.unwrap();
    assert_eq!(fenced.status(), 200);
    assert_eq!(
        header(&fenced, "x-version"),
        "2",
        "a fenced edge does not serve its cached copy unconfirmed"
    );
    assert_eq!(fenced.bytes().await.unwrap().as_ref(), versioned_body(mutable, 2));
    assert!(origin.seen(mutable).conditional >= 1, "it revalidated with the origin");

    let before = origin.seen(immutable).requests;
    let still = http.get(format!("{edge}{immutable}")).send().await.unwrap();
    assert_eq!(still.status(), 200);
    assert_eq!(
        header(&still, "x-cache"),
        "HIT",
        "immutable objects are served without a lease"
    );
    assert_eq!(origin.seen(immutable).requests, before);

    // purge-api does not wait for the cut-off edge beyond its lease.
    let answer: serde_json::Value = http
        .post(format!("{purge_api}/v1/purge"))
        .bearer_auth(token)
        .json(&json!({"urls": [mutable]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["lease_expired"], json!(["edge-cut"]), "{answer}");
}
