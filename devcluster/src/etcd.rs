//! `devcluster --control-plane etcd`: a 3-member etcd cluster (the Debian `etcd-server`
//! package's `etcd`) for purge-api's replicas.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::state::{EtcdInfo, Ports};

/// How many members: the smallest cluster that survives the loss of one.
pub const MEMBERS: usize = 3;

/// How long the members get to elect a leader.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The members' names and addresses on `ports` (kept across restarts in `ports.json`).
pub fn members(ports: &mut Ports) -> anyhow::Result<Vec<EtcdInfo>> {
    (1..=MEMBERS)
        .map(|i| {
            let name = format!("etcd-{i}");
            Ok(EtcdInfo {
                client_url: format!("http://{}", ports.addr(&name)?),
                peer_url: format!("http://{}", ports.addr(&format!("{name}-peer"))?),
                name,
                pid: 0,
            })
        })
        .collect()
}

/// The arguments `etcd` runs `member` of `all` with, its data in `data_dir`. A data dir from
/// an earlier run rejoins its cluster; a new one starts it. Election and heartbeat are tighter
/// than etcd's defaults (1000/100 ms), as suits one machine or a LAN, so that a leader's loss
/// is over well within the budget of an etcd call (`control_plane.etcd.timeout_ms`).
pub fn args(member: &EtcdInfo, all: &[EtcdInfo], data_dir: &Path) -> Vec<String> {
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
        ("--heartbeat-interval", "25".into()),
        ("--election-timeout", "250".into()),
        // fresco reads the log by key, never old revisions: keep a little history only.
        ("--auto-compaction-mode", "revision".into()),
        ("--auto-compaction-retention", "10000".into()),
        ("--log-level", "warn".into()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    // A member cut off and back does not depose a leader with its higher term (etcd 3.5's
    // default; 3.4, Debian's, has it off). A boolean: one argument.
    .chain(["--pre-vote=true".to_string()])
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
