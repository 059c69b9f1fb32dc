//! An etcd cluster a test starts itself (the `etcd` of Debian's `etcd-server`), with each
//! member on an address of its own, on this machine or inside a [`TestHost`], so that members
//! can be killed, started again on their data, or partitioned for real. A cluster of fresco
//! nodes uses it through `devcluster --control-plane etcd --etcd-endpoints …`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fresco_devcluster::etcd::args;
use fresco_devcluster::state::EtcdInfo;
use fresco_tls::ServerFiles;

use crate::netns::TestHost;

/// Where one member runs: an address of this machine, or inside a test host.
pub enum Placement<'a> {
    /// On this machine, listening on this address.
    Here(IpAddr),
    /// Inside the test host, on its address.
    In(&'a TestHost),
}

struct Member {
    info: EtcdInfo,
    data_dir: PathBuf,
    netns: Option<String>,
    child: Option<Child>,
    /// Serve clients over TLS with these files.
    tls: Option<ServerFiles>,
}

/// TLS for etcd's clients: the CA they verify against and the members' certificate.
pub struct EtcdTls {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The members' certificate and key.
    pub server: ServerFiles,
}

/// A running etcd cluster; dropping it kills every member.
pub struct EtcdCluster {
    members: Vec<Member>,
    /// The CA its members' certificates chain to, when they serve TLS.
    ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Member {
    fn spawn(&mut self, all: &[EtcdInfo]) {
        let binary = std::path::Path::new("/usr/bin/etcd");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.args(args(&self.info, all, &self.data_dir));
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file").arg(&tls.cert).arg("--key-file").arg(&tls.key);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("etcd starts (apt-get install etcd-server)");
        self.info.pid = child.id();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl EtcdCluster {
    /// Starts one member per placement and waits until every one is healthy.
    pub fn start(placements: &[Placement]) -> Self {
        Self::start_with(placements, None)
    }

    /// As [`EtcdCluster::start`], the members serving their clients over TLS with `tls`.
    pub fn start_with(placements: &[Placement], tls: Option<&EtcdTls>) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        // In memory where there is a tmpfs: on this VM's disk an fsync stalls a leader for
        // most of a second when the tests run side by side, and the election that follows
        // outlasts a purge's budget. Memory survives a member's `kill -9` as a disk does; a
        // machine crash, never tested here, is what it would not survive.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm"),
            false => tempfile::tempdir(),
        }
        .expect("a temp dir");
        let ip_of = |p: &Placement| match p {
            Placement::Here(ip) => *ip,
            Placement::In(host) => IpAddr::V4(host.ip()),
        };
        let infos: Vec<EtcdInfo> = placements
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let ip = ip_of(p);
                // Inside a test host any port is free; here, one must be found.
                let here = match p {
                    Placement::Here(ip) => *ip,
                    Placement::In(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                };
                let port = |_| fresco_devcluster::state::free_port(here).expect("a free port");
                EtcdInfo {
                    name: format!("etcd-{}", i + 1),
                    client_url: format!("{scheme}://{ip}:{}", port(ip)),
                    peer_url: format!("http://{ip}:{}", port(ip)),
                    pid: 0,
                }
            })
            .collect();
        let mut members: Vec<Member> = infos
            .iter()
            .zip(placements)
            .map(|(info, placement)| Member {
                data_dir: dir.path().join(&info.name),
                info: info.clone(),
                netns: match placement {
                    Placement::Here(_) => None,
                    Placement::In(host) => Some(host.name().to_string()),
                },
                child: None,
                tls: tls.map(|t| t.server.clone()),
            })
            .collect();
        let ca = tls.map(|t| t.ca.clone());
        for member in &mut members {
            member.spawn(&infos);
        }
        let cluster = Self { members, ca, _dir: dir };
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i, Duration::from_secs(30));
        }
        cluster
    }

    /// The members' client URLs, comma-separated, for `--etcd-endpoints`.
    pub fn endpoints(&self) -> String {
        let urls: Vec<&str> = self.members.iter().map(|m| m.info.client_url.as_str()).collect();
        urls.join(",")
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data; returns once it is healthy.
    pub fn restart(&mut self, i: usize) {
        let all: Vec<EtcdInfo> = self.members.iter().map(|m| m.info.clone()).collect();
        self.members[i].spawn(&all);
        self.wait_healthy(i, Duration::from_secs(30));
    }

    /// curl, trusting the members' CA.
    fn curl(&self) -> Command {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-m", "1"]);
        if let Some(ca) = &self.ca {
            curl.arg("--cacert").arg(ca);
        }
        curl
    }

    /// Turns etcd's authentication on, with user `root` (role `root`) and `password`.
    pub fn enable_auth(&self, password: &str) {
        let url = &self.members[0].info.client_url;
        for (path, body) in [
            ("role/add", r#"{"name":"root"}"#.to_string()),
            ("user/add", format!(r#"{{"name":"root","password":"{password}"}}"#)),
            ("user/grant", r#"{"user":"root","role":"root"}"#.to_string()),
            ("enable", "{}".to_string()),
        ] {
            let out = self
                .curl()
                .args(["-X", "POST", "-d", &body])
                .arg(format!("{url}/v3/auth/{path}"))
                .output()
                .expect("curl runs");
            let answer = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && !answer.contains("\"error\""),
                "etcd auth/{path}: {answer}"
            );
        }
    }

    /// Waits until member `i` answers `/health` with a leader.
    pub fn wait_healthy(&self, i: usize, limit: Duration) {
        let url = format!("{}/health", self.members[i].info.client_url);
        let started = Instant::now();
        while started.elapsed() < limit {
            let healthy = self
                .curl()
                .arg(&url)
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("\"health\":\"true\""));
            if healthy {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} not healthy within {limit:?}", self.members[i].info.name);
    }

    /// Which member leads now, as the members that answer say.
    pub fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for member in &self.members {
            let status = self
                .curl()
                .args(["-X", "POST", "-d", "{}"])
                .arg(format!("{}/v3/maintenance/status", member.info.client_url))
                .output()
                .ok()
                .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok());
            let id = status
                .as_ref()
                .and_then(|s| s["header"]["member_id"].as_str().map(str::to_string));
            if let Some(said) = status.as_ref().and_then(|s| s["leader"].as_str()) {
                leader = Some(said.to_string());
            }
            ids.push(id);
        }
        let leader = leader?;
        ids.iter().position(|id| id.as_deref() == Some(leader.as_str()))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }
}
