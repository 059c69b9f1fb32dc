//! The end-to-end test harness: a controllable origin on a real socket, and real clusters
//! started through `devcluster` (the same binaries a user runs).
//!
//! The binaries are taken from `FRESCO_BIN_DIR`, or `target/release` of this workspace
//! (`make test` builds them first).

pub mod browser;
pub mod corpus;
pub mod cut_proxy;
pub mod etcd;
pub mod feed;
pub mod load;
pub mod metrics;
pub mod netns;
pub mod origin;
pub mod purge_history;
pub mod ring;
pub mod ssh;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub use fresco_devcluster::state::{ClusterInfo, NodeInfo};
pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Where fresco's binaries are.
pub fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("FRESCO_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release")));
    for bin in ["devcluster", "fresco-edge", "fresco-shield"] {
        assert!(
            dir.join(bin).exists(),
            "{} is missing: run `make test` (or `cargo build --release --bins`) first",
            dir.join(bin).display()
        );
    }
    dir
}

/// How to start a test cluster.
pub struct ClusterBuilder {
    edges: usize,
    shields: usize,
    origin: Option<String>,
    deadline_ms: u64,
    lease_ms: u64,
    listen_ip: Option<std::net::Ipv4Addr>,
    replicas: usize,
    state: Option<Arc<tempfile::TempDir>>,
    tls: bool,
    etcd: Option<String>,
    more_args: Vec<String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            edges: 2,
            shields: 1,
            origin: None,
            deadline_ms: 5000,
            lease_ms: 2000,
            listen_ip: None,
            replicas: 1,
            state: None,
            tls: false,
            // `FRESCO_CONTROL_PLANE=etcd` runs every cluster's purge-api over etcd: the
            // freshness suite runs against both backends (`make test`).
            etcd: (std::env::var("FRESCO_CONTROL_PLANE").as_deref() == Ok("etcd")).then(String::new),
            more_args: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    /// Uses `url` as the origin.
    pub fn origin(mut self, url: impl Into<String>) -> Self {
        self.origin = Some(url.into());
        self
    }

    /// Sets the edges' deadline.
    pub fn deadline_ms(mut self, ms: u64) -> Self {
        self.deadline_ms = ms;
        self
    }

    /// Sets the number of edges and shields.
    pub fn size(mut self, edges: usize, shields: usize) -> Self {
        self.edges = edges;
        self.shields = shields;
        self
    }

    /// Sets purge-api's lease length.
    pub fn lease_ms(mut self, ms: u64) -> Self {
        self.lease_ms = ms;
        self
    }

    /// Makes every process listen on `ip` (an address of a test host's link) instead of
    /// loopback.
    pub fn listen_ip(mut self, ip: std::net::Ipv4Addr) -> Self {
        self.listen_ip = Some(ip);
        self
    }

    /// Sets the edges' `routing.replicas`.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// `devcluster --tls`: edges, purge-api and the demo origin serve HTTPS with certificates
    /// of a local CA (`info.ca`); [`Cluster::http`] trusts it.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// `devcluster --control-plane etcd`: 3 etcd members and 2 purge-api replicas
    /// (`info.etcd`, `info.purge_apis`).
    pub fn etcd(mut self) -> Self {
        self.etcd = Some(String::new());
        self
    }

    /// `devcluster --control-plane etcd --etcd-endpoints URLS`: 2 purge-api replicas over an
    /// etcd cluster the test started ([`etcd::EtcdCluster::endpoints`]).
    pub fn etcd_at(mut self, endpoints: String) -> Self {
        self.etcd = Some(endpoints);
        self
    }

    /// Passes more flags to devcluster (`--etcd-ca FILE`, …).
    pub fn devcluster_args(mut self, args: &[&str]) -> Self {
        self.more_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Reuses the state dir of a stopped cluster (its ports, ids and caches).
    pub fn state_of_dir(mut self, state: Arc<tempfile::TempDir>) -> Self {
        self.state = Some(state);
        self
    }

    /// Starts `devcluster` and waits for its `READY` line.
    pub fn start(self) -> Cluster {
        let state = self
            .state
            .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("a temp dir")));
        let mut cmd = Command::new(bin_dir().join("devcluster"));
        cmd.arg("--state-dir")
            .arg(state.path())
            .args([
                "--edges",
                &self.edges.to_string(),
                "--shields",
                &self.shields.to_string(),
            ])
            .args(["--deadline-ms", &self.deadline_ms.to_string()])
            .args(["--lease-ms", &self.lease_ms.to_string()])
            .args(["--replicas", &self.replicas.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(origin) = &self.origin {
            cmd.args(["--origin", origin]);
        }
        if let Some(ip) = self.listen_ip {
            cmd.args(["--listen-ip", &ip.to_string()]);
        }
        if self.tls {
            cmd.arg("--tls");
        }
        cmd.args(&self.more_args);
        if let Some(endpoints) = &self.etcd {
            cmd.args(["--control-plane", "etcd"]);
            if !endpoints.is_empty() {
                cmd.args(["--etcd-endpoints", endpoints]);
            }
        }
        let mut child = cmd.spawn().expect("devcluster starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(path) = line.strip_prefix("READY ") {
                    let _ = tx.send(PathBuf::from(path));
                }
            }
        });
        let path = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(path) => path,
            Err(_) => {
                let _ = child.kill();
                panic!("devcluster did not print READY within 60 s");
            }
        };
        let info = ClusterInfo::load(&path).expect("cluster.json parses");
        Cluster { child, info, state }
    }
}

/// A running cluster; dropping it stops every process (SIGTERM to devcluster).
pub struct Cluster {
    child: Child,
    /// What `cluster.json` says.
    pub info: ClusterInfo,
    state: Arc<tempfile::TempDir>,
}

impl Cluster {
    /// A cluster of two edges and one shield.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Stops the cluster (SIGTERM to devcluster) and waits for it to exit.
    pub fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.terminate();
        self.state.clone()
    }

    fn terminate(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }

    /// A client like [`client`] that trusts the cluster's CA when it has one (`--tls`).
    pub fn http(&self) -> reqwest::Client {
        fresco_tls::trusting(self.info.ca.as_deref())
            .expect("the cluster's CA")
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client")
    }

    /// The URL of `path` on edge `i` (0-based).
    pub fn edge_url(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.info.edges[i].url)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Sends `signal` to a node's process.
pub fn signal_node(node: &NodeInfo, signal: Signal) {
    kill(Pid::from_raw(node.pid as i32), signal).expect("the node process exists");
}

/// Sends `signal` (SIGKILL or SIGTERM) to a node's process and waits until it has exited, so
/// that a node started next on the same configuration finds its ports and disk cache free
/// (a node stops listening before it has flushed its store).
pub fn stop_node(node: &NodeInfo, signal: Signal) {
    signal_node(node, signal);
    wait_for_exit(node, Duration::from_secs(30));
}

/// Waits until a node's process has exited; panics after `limit`.
pub fn wait_for_exit(node: &NodeInfo, limit: Duration) {
    wait_for_pid_exit(node.pid, &node.id, limit);
}

/// `kill -9` of process `pid` (called `what` in a panic), then waits until it is dead (a
/// zombie until its parent reaps it), so that its ports are free.
pub fn kill_process(pid: u32, what: &str) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("the process exists");
    wait_for_pid_exit(pid, what, Duration::from_secs(10));
}

/// Waits until process `pid` (called `what` in the panic) has exited; panics after `limit`.
pub fn wait_for_pid_exit(pid: u32, what: &str, limit: Duration) {
    let started = std::time::Instant::now();
    while process_is_running(pid) {
        assert!(started.elapsed() < limit, "{what} did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether process `pid` exists and has not exited (devcluster reaps its children only when it
/// stops, so a dead node stays a zombie until then).
fn process_is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

impl Cluster {
    /// Sends `n` GETs for `path` at once, alternating over the edges, and collects each
    /// outcome: status and whole body, or the error (a cut connection fails the body read).
    pub async fn concurrent_gets(
        &self,
        path: &str,
        n: usize,
    ) -> Vec<reqwest::Result<(reqwest::StatusCode, bytes::Bytes)>> {
        let http = client();
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..n {
            let (http, url) = (http.clone(), self.edge_url(i % self.info.edges.len(), path));
            requests.spawn(async move {
                let resp = http.get(url).send().await?;
                let status = resp.status();
                Ok((status, resp.bytes().await?))
            });
        }
        requests.join_all().await
    }
}

/// The answer of purge-api: status and JSON body.
pub struct PurgeAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
}

impl PurgeAnswer {
    /// The nodes that acked the purge (`acked`).
    pub fn acked(&self) -> Vec<String> {
        self.body["acked"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

impl Cluster {
    /// `POST /v1/purge` with the cluster's bearer token.
    pub async fn purge(&self, body: serde_json::Value) -> PurgeAnswer {
        self.purge_at(&self.info.purge_api, body).await
    }

    /// `POST /v1/purge` to the purge-api at `purge_api` (one replica of `info.purge_apis`).
    pub async fn purge_at(&self, purge_api: &str, body: serde_json::Value) -> PurgeAnswer {
        let resp = self
            .http()
            .post(format!("{purge_api}/v1/purge"))
            .bearer_auth(&self.info.purge_token)
            .json(&body)
            .send()
            .await
            .expect("purge-api answers");
        let status = resp.status().as_u16();
        PurgeAnswer {
            status,
            body: resp.json().await.unwrap_or_default(),
        }
    }

    /// The log's head, from `GET /v1/members`.
    pub async fn log_head(&self) -> u64 {
        let members = self.members_at(&self.info.purge_api).await;
        members["head"].as_u64().expect("head is a number")
    }

    /// `GET /v1/members` of the purge-api at `purge_api` (one replica of `info.purge_apis`).
    pub async fn members_at(&self, purge_api: &str) -> serde_json::Value {
        self.http()
            .get(format!("{purge_api}/v1/members"))
            .bearer_auth(&self.info.purge_token)
            .send()
            .await
            .expect("purge-api answers")
            .json()
            .await
            .expect("members is JSON")
    }

    /// Starts purge-api again (after a kill) on its own data and port, as devcluster did.
    pub fn restart_purge_api(&self) -> NodeProcess {
        let mut cmd = Command::new(bin_dir().join("purge-api"));
        cmd.arg("-c").arg(self.state.path().join("conf").join("purge-api.yaml"));
        NodeProcess::spawn_ready(cmd, &format!("{}/readyz", self.info.purge_api))
    }

    /// Starts a killed node again, as devcluster did, and waits until it is ready (caught up
    /// with the purge log and leased). The new process is not stopped with the cluster: the
    /// caller kills it (see [`NodeProcess`]).
    pub fn restart_node(&self, node: &NodeInfo) -> NodeProcess {
        let process = self.spawn_node(node);
        let ready = format!("{}/readyz", node.admin);
        let started = std::time::Instant::now();
        while !answers_200(&ready) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not become ready",
                node.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    /// Starts a stopped node again on its configuration file (which the caller may have
    /// edited), without waiting for it: for callers that time its recovery themselves.
    pub fn spawn_node(&self, node: &NodeInfo) -> NodeProcess {
        let binary = if node.id.starts_with("edge") {
            "fresco-edge"
        } else {
            "fresco-shield"
        };
        let child = Command::new(bin_dir().join(binary))
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the node starts");
        NodeProcess(child)
    }

    /// `devcluster join --role ROLE` on this cluster: starts one more edge or shield, waits for
    /// its `READY` and reloads `cluster.json` into [`Cluster::info`]; returns the new node.
    pub fn join(&mut self, role: &str) -> NodeInfo {
        self.membership(&["join", "--role", role]);
        let known: Vec<String> = self
            .info
            .edges
            .iter()
            .chain(&self.info.shields)
            .map(|n| n.id.clone())
            .collect();
        self.info = ClusterInfo::load(&self.state.path().join("cluster.json")).expect("cluster.json parses");
        self.info
            .edges
            .iter()
            .chain(&self.info.shields)
            .find(|n| !known.contains(&n.id))
            .cloned()
            .expect("cluster.json lists the node that joined")
    }

    /// `devcluster leave NODE_ID` on this cluster: stops the node gracefully and reloads
    /// `cluster.json`.
    pub fn leave(&mut self, id: &str) {
        self.membership(&["leave", id]);
        self.info = ClusterInfo::load(&self.state.path().join("cluster.json")).expect("cluster.json parses");
    }

    fn membership(&self, args: &[&str]) {
        let out = Command::new(bin_dir().join("devcluster"))
            .args(&args[..1])
            .arg("--state-dir")
            .arg(self.state.path())
            .args(&args[1..])
            .output()
            .expect("devcluster runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().any(|l| l.starts_with("READY ")),
            "devcluster {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The state dir the cluster runs in (configurations in `conf/`, caches in `cache/`).
    pub fn state_dir(&self) -> &std::path::Path {
        self.state.path()
    }

    /// The key this cluster's node credentials derive from (purge-api's `node_keys`).
    pub fn node_key(&self) -> String {
        let path = self.state_dir().join("node-key.secret");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// The credential `node` presents to purge-api, as devcluster wrote it in its config.
    pub fn node_credential(&self, node: &str) -> String {
        fresco_protocol::credential::derive(self.node_key().as_bytes(), node)
    }
}

/// A loopback port free now (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    fresco_devcluster::state::free_port([127, 0, 0, 1].into()).expect("a free port")
}

/// An edge on its own: no shields, no purge-api, straight to `origin`, with `extra` YAML lines
/// added to its configuration (`cache:` is given; put cache settings in `cache_extra`).
pub struct LoneEdge {
    /// Its base URL.
    pub url: String,
    /// Its admin base URL (`/metrics`).
    pub admin: String,
    _process: NodeProcess,
    _dir: tempfile::TempDir,
}

impl LoneEdge {
    /// Starts it and waits until it is ready.
    pub fn start(origin: &str, cache_extra: &str, extra: &str) -> Self {
        Self::start_with_open_files(origin, cache_extra, extra, None)
    }

    /// As [`LoneEdge::start`], with the process's open-files limit (soft and hard) set to
    /// `open_files` (`prlimit`), when given.
    pub fn start_with_open_files(origin: &str, cache_extra: &str, extra: &str, open_files: Option<u64>) -> Self {
        Self::start_with_cache(origin, &format!("memory: 64MiB{cache_extra}"), extra, open_files)
    }

    /// As [`LoneEdge::start_with_open_files`], with the whole `cache:` mapping given
    /// (`memory: 100000000, disk: 1GiB, dir: /x`); a `{dir}` in it names a directory of the
    /// edge's own.
    pub fn start_with_cache(origin: &str, cache: &str, extra: &str, open_files: Option<u64>) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cache = cache.replace("{dir}", &dir.path().join("cache").display().to_string());
        let (port, admin) = (free_port(), free_port());
        let config = dir.path().join("edge.yaml");
        std::fs::write(
            &config,
            format!(
                "node_id: lone-edge\nlisten: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\n\
                 cache: {{ {cache} }}\n{extra}\n\
                 sites: [{{ name: default, origin: '{origin}' }}]\n"
            ),
        )
        .expect("the config is written");
        let edge = bin_dir().join("fresco-edge");
        let mut cmd = match open_files {
            Some(limit) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={limit}:{limit}")).arg("--").arg(edge);
                cmd
            }
            None => Command::new(edge),
        };
        cmd.arg("-c").arg(&config);
        let process = NodeProcess::spawn_ready(cmd, &format!("http://127.0.0.1:{admin}/readyz"));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            _process: process,
            _dir: dir,
        }
    }
}

/// Whether a plain `GET` of `url` answers 200 (see [`answers_200`]).
pub fn is_ready(url: &str) -> bool {
    answers_200(url)
}

/// Whether a plain `GET` of `url` (`http://host:port/path`) answers 200, without an async
/// runtime (node restarts happen inside async tests).
fn answers_200(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// A process started by a test; killed when dropped.
pub struct NodeProcess(Child);

impl NodeProcess {
    /// Spawns `cmd` and waits until `ready_url` answers 200; if the process exits first, fails
    /// with what it printed. A restarted process keeps its port, which an outgoing connection
    /// of another test may hold for a moment: "address in use" is retried a few times.
    pub fn spawn_ready(mut cmd: Command, ready_url: &str) -> Self {
        for _ in 0..5 {
            let log = tempfile::NamedTempFile::new().expect("a temp file");
            let child = cmd
                .stdout(Stdio::null())
                .stderr(log.reopen().expect("the temp file reopens"))
                .spawn()
                .expect("the process starts");
            let mut process = NodeProcess(child);
            let started = std::time::Instant::now();
            loop {
                if answers_200(ready_url) {
                    return process;
                }
                if let Ok(Some(status)) = process.0.try_wait() {
                    let said = std::fs::read_to_string(log.path()).unwrap_or_default();
                    assert!(
                        said.contains("Address already in use") || said.contains("address in use"),
                        "{ready_url}: the process exited ({status}) before it was ready:\n{said}"
                    );
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{ready_url} never answered 200"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{ready_url}: its port stayed in use")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP client that neither pools connections across tests nor follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

/// GETs `url` and asserts a 200 with a body.
pub async fn get_ok(url: &str) {
    let resp = client().get(url).send().await.expect("the edge answers");
    assert_eq!(resp.status(), 200, "{url}");
    assert!(!resp.bytes().await.unwrap().is_empty());
}

/// The `X-Cache` header of a response.
pub fn x_cache(resp: &reqwest::Response) -> String {
    header(resp, "x-cache")
}

/// A header of a response as text, empty when absent.
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}
