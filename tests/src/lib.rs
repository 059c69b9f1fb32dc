//! The end-to-end test harness: a controllable origin on a real socket, and real clusters
//! started through `devcluster` (the same binaries a user runs).
//!
//! The binaries are taken from `FRESCO_BIN_DIR`, or `target/release` of this workspace
//! (`make test` builds them first).

pub mod origin;

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
    state: Option<Arc<tempfile::TempDir>>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            edges: 2,
            shields: 1,
            origin: None,
            deadline_ms: 5000,
            state: None,
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
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(origin) = &self.origin {
            cmd.args(["--origin", origin]);
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

/// An HTTP client that neither pools connections across tests nor follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
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
