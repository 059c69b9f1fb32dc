//! `devcluster --control-plane etcd`: a 3-member etcd cluster (the Debian `etcd-server`
//! package's `etcd`) for purge-api's replicas.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::state::{EtcdInfo, Ports, StateDir};

/// How many members: the smallest cluster that survives the loss of one.
pub const MEMBERS: usize = 3;

/// How long the members get to elect a leader.
const START_LIMIT: Duration = Duration::from_secs(30);

/// One member about to start.
pub struct Member {
    /// `etcd-1`, …
    pub name: String,
    /// Where clients reach it.
    pub client_url: String,
    peer_url: String,
}

/// The members' names and addresses (kept across restarts in `ports.json`).
pub fn members(ports: &mut Ports) -> anyhow::Result<Vec<Member>> {
    (1..=MEMBERS)
        .map(|i| {
            let name = format!("etcd-{i}");
            Ok(Member {
                client_url: format!("http://{}", ports.addr(&name)?),
                peer_url: format!("http://{}", ports.addr(&format!("{name}-peer"))?),
                name,
            })
        })
        .collect()
}

/// The arguments `etcd` runs member `member` with. A data dir from an earlier run rejoins its
/// cluster; a new one starts it. Election and heartbeat are tighter than etcd's defaults
/// (1000/100 ms), as on a LAN, so that a leader's loss is noticed well within a lease.
pub fn args(member: &Member, all: &[Member], state: &StateDir) -> Vec<String> {
    let data_dir = state.etcd_data(&member.name);
    let initial_state = if data_dir.join("member").exists() {
        "existing"
    } else {
        "new"
    };
    let cluster: Vec<String> = all.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
    [
        ("--name", member.name.clone()),
        ("--data-dir", data_dir.display().to_string()),
        ("--listen-client-urls", member.client_url.clone()),
        ("--advertise-client-urls", member.client_url.clone()),
        ("--listen-peer-urls", member.peer_url.clone()),
        ("--initial-advertise-peer-urls", member.peer_url.clone()),
        ("--initial-cluster", cluster.join(",")),
        ("--initial-cluster-state", initial_state.into()),
        ("--initial-cluster-token", "fresco-devcluster".into()),
        ("--heartbeat-interval", "50".into()),
        ("--election-timeout", "500".into()),
        // fresco reads the log by key, never old revisions: keep a little history only.
        ("--auto-compaction-mode", "revision".into()),
        ("--auto-compaction-retention", "10000".into()),
        ("--log-level", "warn".into()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}

/// Waits until every member reports itself healthy (a leader was elected).
pub async fn wait_healthy(members: &[EtcdInfo]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
    for member in members {
        loop {
            let health = http.get(format!("{}/health", member.client_url)).send().await;
            let healthy = match health {
                Ok(r) => r.text().await.is_ok_and(|t| t.contains("\"health\":\"true\"")),
                Err(_) => false,
            };
            if healthy {
                break;
            }
            if started.elapsed() > START_LIMIT {
                bail!("{} not healthy within {START_LIMIT:?}", member.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(started.elapsed())
}

/// The `etcd` binary, or what to install.
pub fn binary() -> anyhow::Result<std::path::PathBuf> {
    which("etcd")
        .context("--control-plane etcd needs etcd: apt-get install etcd-server (scripts/setup.sh test installs it)")
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| p.is_file())
}
