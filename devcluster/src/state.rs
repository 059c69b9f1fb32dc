//! What a cluster keeps in its state dir: port assignments, node configs, `cluster.json`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `cluster.json`: where everything is. Tests and tools read this file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The origin's base URL.
    pub origin: String,
    /// purge-api's base URL.
    pub purge_api: String,
    /// A bearer token purge-api accepts.
    pub purge_token: String,
    /// The secret origins sign webhooks with (`X-Fresco-Signature`).
    pub webhook_secret: String,
    /// purge-api's process id (the first replica's).
    pub purge_api_pid: u32,
    /// Every purge-api replica (one with the embedded control plane).
    #[serde(default)]
    pub purge_apis: Vec<ReplicaInfo>,
    /// `--control-plane etcd`: the etcd members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd: Vec<EtcdInfo>,
    /// The edges, in id order.
    pub edges: Vec<NodeInfo>,
    /// The shields, in id order.
    pub shields: Vec<NodeInfo>,
    /// `devcluster --tls`: the CA certificate (PEM) that the `https://` URLs above are
    /// verified against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// One purge-api replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Its base URL.
    pub url: String,
    /// Its process id.
    pub pid: u32,
}

/// One etcd member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EtcdInfo {
    /// `etcd-1`, …
    pub name: String,
    /// Where clients reach it.
    pub client_url: String,
    /// Where the other members reach it (empty for a member devcluster did not start).
    #[serde(default)]
    pub peer_url: String,
    /// Its process id (0: not started by devcluster).
    pub pid: u32,
}

/// One node of the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `edge-1`, `shield-1`, …
    pub id: String,
    /// Base URL of its proxy listener.
    pub url: String,
    /// Base URL of its admin listener.
    pub admin: String,
    /// Its process id.
    pub pid: u32,
    /// Its configuration file; `fresco-edge -c <config>` restarts it as it was.
    pub config: PathBuf,
}

impl ClusterInfo {
    /// Reads `cluster.json`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }
}

/// The ports of each named process on one address, kept in `DIR/ports.json` so that a restart
/// reuses them.
#[derive(Serialize, Deserialize)]
pub struct Ports {
    by_name: BTreeMap<String, u16>,
    #[serde(skip, default = "loopback")]
    ip: IpAddr,
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

impl Ports {
    /// Loads `DIR/ports.json`, or starts empty; every address is on `ip`.
    pub fn load(dir: &Path, ip: IpAddr) -> Self {
        let by_name = std::fs::read(dir.join("ports.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Ports>(&b).ok())
            .map(|p| p.by_name)
            .unwrap_or_default();
        Self { by_name, ip }
    }

    /// Saves `DIR/ports.json`.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("ports.json"), serde_json::to_vec_pretty(self)?)
    }

    /// The address of `name`, assigning a free port the first time.
    pub fn addr(&mut self, name: &str) -> std::io::Result<SocketAddr> {
        if let Some(port) = self.by_name.get(name) {
            return Ok(SocketAddr::new(self.ip, *port));
        }
        let port = free_port(self.ip)?;
        self.by_name.insert(name.to_string(), port);
        Ok(SocketAddr::new(self.ip, port))
    }
}

/// A port nothing listens on at `ip` now, outside the kernel's range of ephemeral ports.
///
/// A port the kernel hands out for `bind(0)` is one it also hands out to outgoing
/// connections: one of them can take it before the node binds it, and pingora then waits for
/// the port instead of failing, so the node never becomes ready. Ports below the range are
/// only ever taken by listeners. A port that binds now is also free to another devcluster (or
/// test) starting at the same time, until one of their nodes binds it; then the second node
/// waits for the port, and whoever connects to it reaches the first cluster's node. So each
/// port handed out is also claimed ([`claim`]) for as long as a node may take to bind it.
pub fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10_000;
    if ephemeral_from > LOWEST + 1000 {
        let random = RandomState::new();
        for attempt in 0u32..200 {
            let port = LOWEST + (random.hash_one(attempt) % u64::from(ephemeral_from - LOWEST)) as u16;
            if TcpListener::bind((ip, port)).is_ok() && claim(ip, port) {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// How long a port handed out by [`free_port`] stays claimed: longer than any node takes to
/// start and bind it, after which the bind probe alone keeps it from being handed out again.
const PORT_CLAIM: Duration = Duration::from_secs(120);

/// Claims `port` on `ip` for [`PORT_CLAIM`] for this machine's devclusters, with a file
/// created exclusively in the system's temporary directory; false if someone else holds it.
/// A claim that cannot be recorded (no writable temporary directory) is granted.
fn claim(ip: IpAddr, port: u16) -> bool {
    let dir = std::env::temp_dir().join("fresco-devcluster-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let file = dir.join(format!("{ip}-{port}"));
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&file);
    match create() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let age = std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok());
            // An expired claim goes; of two that remove it at once, one creates it anew.
            age.is_some_and(|age| age > PORT_CLAIM) && std::fs::remove_file(&file).is_ok() && create().is_ok()
        }
        Err(_) => true,
    }
}

/// Paths inside a state dir.
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Uses (and creates) `root`.
    pub fn create(root: &Path) -> std::io::Result<Self> {
        for sub in ["conf", "cache", "logs"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Self {
            root: std::path::absolute(root)?,
        })
    }

    /// The state dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Configuration file of a node.
    pub fn config(&self, id: &str) -> PathBuf {
        self.root.join("conf").join(format!("{id}.yaml"))
    }

    /// Cache directory of a node.
    pub fn cache(&self, id: &str) -> PathBuf {
        self.root.join("cache").join(id)
    }

    /// Log file of a process.
    pub fn log(&self, id: &str) -> PathBuf {
        self.root.join("logs").join(format!("{id}.log"))
    }

    /// Files the demo origin serves.
    pub fn origin_files(&self) -> PathBuf {
        self.root.join("origin")
    }

    /// `cluster.json`.
    pub fn cluster_json(&self) -> PathBuf {
        self.root.join("cluster.json")
    }

    /// The socket a running devcluster takes `join` and `leave` requests on.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// purge-api's data directory (its log).
    pub fn purge_api_data(&self) -> PathBuf {
        self.root.join("purge-api")
    }

    /// An etcd member's data directory.
    pub fn etcd_data(&self, name: &str) -> PathBuf {
        self.root.join("etcd").join(name)
    }

    /// A node's freshness state (applied purges).
    pub fn freshness(&self, id: &str) -> PathBuf {
        self.root.join("freshness").join(id)
    }

    /// The file of a secret (see [`StateDir::secret`]).
    pub fn secret_file(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.secret"))
    }

    /// A secret kept in the state dir (created on first use), so restarts keep credentials.
    pub fn secret(&self, name: &str) -> std::io::Result<String> {
        let path = self.secret_file(name);
        if let Ok(existing) = std::fs::read_to_string(&path) {
            return Ok(existing.trim().to_string());
        }
        let mut bytes = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&path, &secret)?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_handed_out_once_while_its_claim_lasts() {
        // Without the claim, 600 draws from the ~22,000 ports below the ephemeral range repeat
        // one with a probability above 99.9 %, as two devclusters starting at once would.
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..600 {
            let port = free_port(ip).unwrap();
            assert!(seen.insert(port), "port {port} handed out twice");
        }
        let port = *seen.iter().next().unwrap();
        assert!(!claim(ip, port), "a claimed port cannot be claimed again");
    }
}
