//! The ansible rollout for real: `ansible-playbook add-edge.yml` over ssh against a host of its
//! own (a network namespace running sshd), into a running cluster. The new edge is served by the
//! cluster's shields and follows its purges; a second run changes nothing; the roles lint clean.

use std::path::{Path, PathBuf};
use std::process::Command;

use fresco_e2e::netns::TestHost;
use fresco_e2e::origin::{TestOrigin, versioned_body};
use fresco_e2e::ssh::SshHost;
use fresco_e2e::{Cluster, bin_dir, client, get_ok, x_cache};
use serde_json::json;

fn ansible_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../ansible"))
}

/// An inventory with the one new edge, and the cluster's purge-api and shields as its vars.
fn inventory(dir: &Path, host: &TestHost, ssh: &SshHost, cluster: &Cluster, origin: &str) -> PathBuf {
    let info = &cluster.info;
    let strip = |url: &str| url.trim_start_matches("http://").to_string();
    let shields: Vec<serde_json::Value> = info
        .shields
        .iter()
        .map(|s| json!({ "id": s.id, "address": strip(&s.url), "admin": strip(&s.admin) }))
        .collect();
    let inventory = json!({
        "all": {
            "children": { "new_edges": { "hosts": { "edge-ns": { "ansible_host": host.ip().to_string() } } } },
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": ssh.key,
                "ansible_ssh_common_args": format!("-o UserKnownHostsFile={}", ssh.known_hosts.display()),
                "ansible_python_interpreter": "/usr/bin/python3",
                "fresco_prefix": dir.join("hosts/edge-ns"),
                "fresco_binary_dir": bin_dir(),
                "fresco_purge_api": info.purge_api,
                "fresco_node_keys": [cluster.node_key()],
                "fresco_shields": shields,
                "fresco_sites": [{ "name": "default", "origin": origin }],
                "fresco_cache_memory": "64MiB",
                "fresco_cache_disk": "256MiB",
                "fresco_ready_timeout": 30,
            }
        }
    });
    // JSON is YAML.
    let path = dir.join("inventory.yml");
    std::fs::write(&path, inventory.to_string()).unwrap();
    path
}

/// Runs `add-edge.yml`; returns the recap counts of the host (`ok`, `changed`, `failed`, …).
fn add_edge(inventory: &Path, prefix: &Path) -> std::collections::BTreeMap<String, u64> {
    let out = Command::new("ansible-playbook")
        .current_dir(ansible_dir())
        .env("ANSIBLE_CONFIG", ansible_dir().join("ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .arg("-i")
        .arg(inventory)
        .arg("add-edge.yml")
        .output()
        .expect("ansible-playbook runs (ansible-core: `make test` installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(prefix.join("log/edge-ns.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "ansible-playbook failed:\n{stdout}\n{}\nnode log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recap = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("edge-ns") && l.contains("changed="))
        .unwrap_or_else(|| panic!("no recap line for edge-ns:\n{stdout}"));
    recap
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_edge_rolls_a_new_edge_into_the_running_cluster_and_a_second_run_changes_nothing() {
    let Some(host) = TestHost::create(9) else { return };
    let origin = TestOrigin::start_on(host.machine_ip()).await;
    let cluster = Cluster::builder()
        .origin(&origin.url)
        .size(1, 2)
        .listen_ip(host.machine_ip())
        .start();
    let dir = tempfile::tempdir().unwrap();
    let ssh = SshHost::start(&host, dir.path());
    let inventory = inventory(dir.path(), &host, &ssh, &cluster, &origin.url);
    let prefix = dir.path().join("hosts/edge-ns");

    let (inv, pre) = (inventory.clone(), prefix.clone());
    let first = tokio::task::spawn_blocking(move || add_edge(&inv, &pre)).await.unwrap();
    assert!(first["changed"] > 0, "the first run installed something: {first:?}");
    assert_eq!(first["failed"], 0);

    // The new edge serves what the cluster's shields hold, without asking the origin.
    let edge = format!("http://{}:8081", host.ip());
    let path = "/img/rolled-out.jpg";
    get_ok(&cluster.edge_url(0, path)).await;
    let http = client();
    let resp = http.get(format!("{edge}{path}")).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), x_cache(&resp)), (200, "MISS".to_string()));
    assert_eq!(origin.seen(path).requests, 1, "the new edge was served by a shield");
    let again = http.get(format!("{edge}{path}")).send().await.unwrap();
    assert_eq!(x_cache(&again), "HIT");

    // It follows purges: purge-api waits for its ack, and it serves the new version after.
    let mutable = "/mut/rolled-out.png";
    origin.set_version(mutable, 1);
    let v1 = http.get(format!("{edge}{mutable}")).send().await.unwrap();
    assert_eq!(v1.bytes().await.unwrap().as_ref(), versioned_body(mutable, 1));
    origin.set_version(mutable, 2);
    let purge = cluster.purge(json!({ "urls": [mutable] })).await;
    assert_eq!(purge.status, 200, "{}", purge.body);
    let acked = purge.acked();
    assert!(
        acked.iter().any(|a| a == "edge-ns"),
        "the rolled-out edge acked the purge: {acked:?}"
    );
    let v2 = http.get(format!("{edge}{mutable}")).send().await.unwrap();
    assert_eq!(v2.bytes().await.unwrap().as_ref(), versioned_body(mutable, 2));

    let second = tokio::task::spawn_blocking(move || add_edge(&inventory, &prefix))
        .await
        .unwrap();
    assert_eq!(second["changed"], 0, "a second run changes nothing: {second:?}");
    assert_eq!(second["failed"], 0);
    let still = http.get(format!("{edge}{path}")).send().await.unwrap();
    assert_eq!(
        x_cache(&still),
        "HIT",
        "the edge was not restarted (its memory cache kept)"
    );
    // The rolled-out edge follows purge-api's log stream, which would hold purge-api's stop.
    host.kill_processes();
}

#[test]
fn the_roles_and_playbooks_lint_clean() {
    let out = Command::new("ansible-lint")
        .current_dir(ansible_dir())
        .env("ANSIBLE_CONFIG", ansible_dir().join("ansible.cfg"))
        .env("NO_COLOR", "1")
        .output()
        .expect("ansible-lint runs (`make test` installs it)");
    assert!(
        out.status.success(),
        "ansible-lint:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
