//! Starting, watching and stopping the cluster's processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::state::{ClusterInfo, EtcdInfo, NodeInfo, Ports, ReplicaInfo, StateDir};
use crate::tls::ClusterTls;

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of edges.
    pub edges: usize,
    /// Number of shields.
    pub shields: usize,
    /// An existing origin; `None` starts the demo origin.
    pub origin: Option<String>,
    /// Where configs, caches, logs, ports and `cluster.json` live.
    pub state_dir: PathBuf,
    /// Edges' request deadline; shields get nine tenths of it, so their 504 arrives first.
    pub deadline_ms: u64,
    /// Where `fresco-edge`, `fresco-shield` and `purge-api` are.
    pub bin_dir: PathBuf,
    /// Lease length L of purge-api.
    pub lease_ms: u64,
    /// The address every process listens on (loopback by default).
    pub listen_ip: std::net::IpAddr,
    /// Edges: on how many shields each key is kept (`routing.replicas`).
    pub replicas: usize,
    /// Serve HTTPS on the edges, purge-api and the demo origin, with a local CA
    /// ([`crate::tls`]). Shields stay on plain HTTP: they are the cluster's inside.
    pub tls: bool,
    /// Where purge-api keeps its state.
    pub control_plane: ControlPlane,
    /// With [`ControlPlane::Etcd`]: use these members' client URLs instead of starting three.
    pub etcd_endpoints: Vec<String>,
    /// With `etcd_endpoints`: how purge-api reaches them (`control_plane.etcd` lines beside
    /// `endpoints`: `ca_file`, `user`).
    pub etcd_access: EtcdAccess,
}

/// How purge-api authenticates to, and verifies, an etcd cluster devcluster did not start.
#[derive(Clone, Debug, Default)]
pub struct EtcdAccess {
    /// The CA etcd's server certificates are verified against (the endpoints are `https://`).
    pub ca_file: Option<PathBuf>,
    /// An etcd user and the file holding its password.
    pub user: Option<(String, PathBuf)>,
}

impl EtcdAccess {
    /// The lines of `control_plane.etcd` beside `endpoints`.
    fn config_lines(&self) -> String {
        let mut lines = String::new();
        if let Some(ca) = &self.ca_file {
            lines.push_str(&format!("    ca_file: {}\n", ca.display()));
        }
        if let Some((name, password_file)) = &self.user {
            lines.push_str(&format!(
                "    user: {{name: {name}, password_file: {}}}\n",
                password_file.display()
            ));
        }
        lines
    }
}

/// `--control-plane`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlPlane {
    /// One purge-api with its log in a redb file.
    Embedded,
    /// Three etcd members and two purge-api replicas over them.
    Etcd,
}

/// purge-api replicas over etcd: enough to lose one.
const ETCD_REPLICAS: usize = 2;

struct Process {
    id: String,
    child: Child,
}

/// Kills the child with SIGTERM when devcluster itself dies, even by `kill -9`.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked exits; devcluster runs on one thread
/// (a current-thread runtime) so that is the process's lifetime.
#[expect(unsafe_code, reason = "prctl between fork and exec is async-signal-safe")]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn spawn(id: &str, program: &Path, args: &[&str], state: &StateDir) -> anyhow::Result<Process> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.log(id))
        .with_context(|| format!("opening the log of {id}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {id} ({})", program.display()))?;
    Ok(Process { id: id.into(), child })
}

/// What every node's configuration shares.
struct Common<'a> {
    origin: &'a str,
    purge_apis: &'a [ReplicaInfo],
    /// The key node credentials derive from (purge-api's `node_keys`).
    node_key: &'a str,
    replicas: usize,
    tls: Option<&'a ClusterTls>,
}

/// The `tls:` section of a node: edges serve HTTPS; every node trusts the cluster's CA.
fn tls_section(role: &str, tls: Option<&ClusterTls>) -> String {
    let Some(tls) = tls else { return String::new() };
    let serve = match role {
        "edge" => tls.serving_lines(),
        _ => String::new(),
    };
    format!("tls:\n{serve}  ca_file: {}\n", tls.ca.display())
}

/// The configuration of node `id` (`edge-N` or `shield-N`), listening on `(proxy, admin)`.
fn node_config(
    role: &str,
    id: &str,
    (listen, admin): (SocketAddr, SocketAddr),
    deadline_ms: u64,
    common: &Common,
    shields: &[NodeInfo],
    state: &StateDir,
) -> String {
    // The shields running now; those that join later come from purge-api's member list.
    let shields: Vec<String> = shields
        .iter()
        .map(|s| {
            format!(
                "{{id: {}, address: {}, admin: {}}}",
                s.id,
                s.url.trim_start_matches("http://"),
                s.admin.trim_start_matches("http://")
            )
        })
        .collect();
    let origin = common.origin;
    format!(
        "# written by devcluster; edit freely, it is rewritten on the next devcluster start\n\
         node_id: {id}\n\
         listen: {listen}\n\
         admin_listen: {admin}\n\
         threads: 2\n\
         deadline_ms: {deadline_ms}\n\
         cache:\n  memory: 64MiB\n  disk: 256MiB\n  dir: {cache}\n  block: 4MiB\n\
         shields: [{shields}]\n\
         routing: {{ replicas: {replicas} }}\n\
         freshness:\n  purge_api: [{purge_api}]\n  credential: {credential}\n  state_dir: {fresh}\n\
         sites:\n  - name: default\n    origin: {origin}\n    ignore_query: [utm_source, utm_medium, utm_campaign]\n\
         {tls}",
        tls = tls_section(role, common.tls),
        cache = state.cache(id).display(),
        shields = shields.join(", "),
        replicas = common.replicas,
        purge_api = common
            .purge_apis
            .iter()
            .map(|r| r.url.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        credential = fresco_protocol::credential::derive(common.node_key.as_bytes(), id),
        fresh = state.freshness(id).display(),
    )
}

async fn wait_ready(
    process: &mut Process,
    url: &str,
    state: &StateDir,
    tls: Option<&ClusterTls>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let client = tls
        .map_or_else(reqwest::Client::builder, ClusterTls::client)
        .timeout(Duration::from_secs(1))
        .build()?;
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = process.child.try_wait()? {
            let log = std::fs::read_to_string(state.log(&process.id)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            bail!(
                "{} exited ({status}) before it was ready; last log lines:\n{}",
                process.id,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{} did not become ready within 60 s (see {})",
        process.id,
        state.log(&process.id).display()
    )
}

/// How long a stopping process may take: longer than a node's default drain (`drain_ms`,
/// 10 s), so that a node stopped with requests in flight still closes its store cleanly.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Stops every process: SIGTERM, then SIGKILL after [`STOP_LIMIT`].
async fn stop_all(processes: &mut [Process]) {
    for p in processes.iter() {
        if let Some(pid) = p.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_LIMIT;
    for p in processes.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, p.child.wait()).await.is_err() {
            eprintln!("{} did not stop within {STOP_LIMIT:?}; killing it", p.id);
            let _ = p.child.kill().await;
        }
    }
}

/// Writes `cluster.json` whole (through a rename, so readers never see half of it).
fn write_cluster_json(state: &StateDir, info: &ClusterInfo) -> anyhow::Result<()> {
    let path = state.cluster_json();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// A running cluster as devcluster holds it: what `cluster.json` says and the processes.
pub struct Running {
    options: ClusterOptions,
    tls: Option<ClusterTls>,
    state: StateDir,
    ports: Ports,
    processes: Vec<Process>,
    info: ClusterInfo,
}

/// Starts the cluster, prints `READY <cluster.json>`, and runs until SIGINT or SIGTERM,
/// adding and removing nodes as `devcluster join` and `leave` ask (see [`crate::control`]).
pub async fn run(options: ClusterOptions) -> anyhow::Result<()> {
    let state = StateDir::create(&options.state_dir)?;
    let mut ports = Ports::load(state.root(), options.listen_ip);
    let mut processes: Vec<Process> = Vec::new();
    let tls = match options.tls {
        true => Some(ClusterTls::prepare(&state, options.listen_ip)?),
        false => None,
    };
    let result = start(&options, &state, &mut ports, &mut processes, tls.as_ref()).await;
    ports.save(state.root())?;
    let info = match result {
        Ok(info) => info,
        Err(e) => {
            stop_all(&mut processes).await;
            return Err(e);
        }
    };
    write_cluster_json(&state, &info)?;
    let control = crate::control::listen(&state)?;
    print_welcome(&info, options.origin.is_none(), &options.state_dir);
    println!("READY {}", state.cluster_json().display());
    let mut running = Running {
        options,
        tls,
        state,
        ports,
        processes,
        info,
    };

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { eprintln!("SIGTERM: stopping the cluster"); break }
            _ = sigint.recv() => { eprintln!("SIGINT: stopping the cluster"); break }
            request = control.accept() => {
                if let Ok((stream, _)) = request {
                    crate::control::serve(stream, &mut running).await;
                }
            }
        }
    }
    stop_all(&mut running.processes).await;
    let _ = std::fs::remove_file(running.state.cluster_json());
    let _ = std::fs::remove_file(running.state.control_socket());
    eprintln!("cluster stopped");
    Ok(())
}

impl Running {
    /// Starts one more node of `role` (`edge` or `shield`) and adds it to `cluster.json`.
    pub async fn join(&mut self, role: &str) -> anyhow::Result<NodeInfo> {
        let r = self;
        let nodes = match role {
            "edge" => &r.info.edges,
            "shield" => &r.info.shields,
            other => bail!("role `{other}` is neither edge nor shield"),
        };
        let next = nodes
            .iter()
            .filter_map(|n| n.id.rsplit_once('-')?.1.parse::<usize>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("{role}-{next}");
        let common = Common {
            origin: &r.info.origin,
            purge_apis: &r.info.purge_apis,
            node_key: &r.state.secret("node-key")?,
            replicas: r.options.replicas,
            tls: r.tls.as_ref(),
        };
        let shields = r.info.shields.clone();
        let (node, process) = start_node(&r.options, &r.state, &mut r.ports, &common, role, &id, &shields).await?;
        r.ports.save(r.state.root())?;
        r.processes.push(process);
        match role {
            "edge" => r.info.edges.push(node.clone()),
            _ => r.info.shields.push(node.clone()),
        }
        write_cluster_json(&r.state, &r.info)?;
        Ok(node)
    }

    /// Stops node `id` gracefully (SIGTERM: it drains) and removes it from `cluster.json`.
    pub async fn leave(&mut self, id: &str) -> anyhow::Result<()> {
        let r = self;
        let Some(at) = r
            .processes
            .iter()
            .position(|p| p.id == id && (id.starts_with("edge-") || id.starts_with("shield-")))
        else {
            bail!("no running edge or shield `{id}`");
        };
        let mut process = r.processes.remove(at);
        stop_all(std::slice::from_mut(&mut process)).await;
        r.info.edges.retain(|n| n.id != id);
        r.info.shields.retain(|n| n.id != id);
        write_cluster_json(&r.state, &r.info)?;
        eprintln!("{id} left the cluster");
        Ok(())
    }

    /// Where `cluster.json` is.
    pub fn cluster_json(&self) -> PathBuf {
        self.state.cluster_json()
    }
}

async fn start(
    options: &ClusterOptions,
    state: &StateDir,
    ports: &mut Ports,
    processes: &mut Vec<Process>,
    tls: Option<&ClusterTls>,
) -> anyhow::Result<ClusterInfo> {
    let token = state.secret("purge-token")?;
    let node_key = state.secret("node-key")?;
    let webhook_secret = state.secret("webhook")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let purge_tls = tls.map_or_else(String::new, |tls| format!("tls:\n{}", tls.serving_lines()));
    let shared = format!(
        "tokens: [{token}]\nnode_keys: [{node_key}]\nwebhook_secrets: [{webhook_secret}]\nlease_ms: {lease}\n{purge_tls}",
        lease = options.lease_ms,
    );
    let (etcd, replicas) = match options.control_plane {
        ControlPlane::Embedded => (
            Vec::new(),
            vec![format!("data_dir: {}\n", state.purge_api_data().display())],
        ),
        ControlPlane::Etcd => {
            let etcd = match options.etcd_endpoints.as_slice() {
                [] => start_etcd(state, ports, processes).await?,
                given => given
                    .iter()
                    .enumerate()
                    .map(|(i, url)| EtcdInfo {
                        name: format!("etcd-{}", i + 1),
                        client_url: url.trim_end_matches('/').to_string(),
                        peer_url: String::new(),
                        pid: 0,
                    })
                    .collect(),
            };
            let endpoints: Vec<&str> = etcd.iter().map(|m| m.client_url.as_str()).collect();
            let section = format!(
                "control_plane:\n  etcd:\n    endpoints: [{}]\n{}",
                endpoints.join(", "),
                options.etcd_access.config_lines()
            );
            (etcd, vec![section; ETCD_REPLICAS])
        }
    };
    let mut purge_apis = Vec::new();
    for (i, backend) in replicas.iter().enumerate() {
        // The first keeps the name (and port) a single purge-api has.
        let name = match i {
            0 => "purge-api".to_string(),
            _ => format!("purge-api-{}", i + 1),
        };
        let addr = ports.addr(&name)?;
        let url = format!("{scheme}://{addr}");
        let config = state.config(&name);
        std::fs::write(
            &config,
            format!("# written by devcluster\nlisten: {addr}\n{backend}{shared}"),
        )?;
        let mut process = spawn(
            &name,
            &options.bin_dir.join("purge-api"),
            &["-c", &config.display().to_string()],
            state,
        )?;
        let took = wait_ready(&mut process, &format!("{url}/readyz"), state, tls).await?;
        eprintln!("{name:<10} {url}  ready in {took:.1?}");
        purge_apis.push(ReplicaInfo {
            url,
            pid: process.child.id().unwrap_or_default(),
        });
        processes.push(process);
    }
    let purge_api = purge_apis[0].url.clone();
    let purge_api_pid = purge_apis[0].pid;
    // The demo origin comes after purge-api: it sends purge webhooks there when an image changes.
    let origin = match &options.origin {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let addr = ports.addr("origin")?;
            let me = std::env::current_exe()?;
            let dir = state.origin_files().display().to_string();
            let secret_file = state.secret_file("webhook").display().to_string();
            let listen = addr.to_string();
            let mut args: Vec<String> = [
                "demo-origin",
                "--listen",
                &listen,
                "--dir",
                &dir,
                "--purge-api",
                &purge_api,
                "--webhook-secret-file",
                &secret_file,
            ]
            .map(String::from)
            .to_vec();
            if let Some(tls) = tls {
                for (flag, path) in [
                    ("--tls-cert", &tls.server.cert),
                    ("--tls-key", &tls.server.key),
                    ("--ca", &tls.ca),
                ] {
                    args.extend([flag.to_string(), path.display().to_string()]);
                }
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut process = spawn("origin", &me, &args, state)?;
            let origin = format!("{scheme}://{addr}");
            let took = wait_ready(&mut process, &format!("{origin}/healthz"), state, tls).await?;
            eprintln!("origin     {origin}  ready in {took:.1?}");
            processes.push(process);
            origin
        }
    };
    let common = Common {
        origin: &origin,
        purge_apis: &purge_apis,
        node_key: &node_key,
        replicas: options.replicas,
        tls,
    };
    let mut info = ClusterInfo {
        origin: origin.clone(),
        purge_api: purge_api.clone(),
        purge_token: token.clone(),
        webhook_secret: webhook_secret.clone(),
        purge_api_pid,
        purge_apis: purge_apis.clone(),
        etcd,
        edges: Vec::new(),
        shields: Vec::new(),
        ca: tls.map(|tls| tls.ca.clone()),
    };
    for (role, count) in [("shield", options.shields), ("edge", options.edges)] {
        for i in 1..=count {
            let id = format!("{role}-{i}");
            let shields = info.shields.clone();
            let (node, process) = start_node(options, state, ports, &common, role, &id, &shields).await?;
            processes.push(process);
            match role {
                "shield" => info.shields.push(node),
                _ => info.edges.push(node),
            }
        }
    }
    Ok(info)
}

/// Starts the etcd members together (each needs the others for a quorum); returns once all
/// are healthy.
async fn start_etcd(
    state: &StateDir,
    ports: &mut Ports,
    processes: &mut Vec<Process>,
) -> anyhow::Result<Vec<EtcdInfo>> {
    let binary = crate::etcd::binary()?;
    let members = crate::etcd::members(ports)?;
    let mut started = Vec::new();
    for member in &members {
        let args = crate::etcd::args(member, &members, &state.etcd_data(&member.name));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = spawn(&member.name, &binary, &args, state)?;
        started.push(EtcdInfo {
            pid: process.child.id().unwrap_or_default(),
            ..member.clone()
        });
        processes.push(process);
    }
    let took = crate::etcd::wait_healthy(&started).await?;
    for member in &started {
        eprintln!("{:<10} {}  healthy in {took:.1?}", member.name, member.client_url);
    }
    Ok(started)
}

/// Writes the configuration of node `id` and starts it; returns once it answers `/readyz`.
/// An edge is configured with `shields` (the running ones); a shield with none.
async fn start_node(
    options: &ClusterOptions,
    state: &StateDir,
    ports: &mut Ports,
    common: &Common<'_>,
    role: &str,
    id: &str,
    shields: &[NodeInfo],
) -> anyhow::Result<(NodeInfo, Process)> {
    let listen = ports.addr(id)?;
    let admin = ports.addr(&format!("{id}-admin"))?;
    let (deadline, shields, binary) = match role {
        "shield" => (options.deadline_ms * 9 / 10, &[][..], "fresco-shield"),
        _ => (options.deadline_ms, shields, "fresco-edge"),
    };
    let config = state.config(id);
    std::fs::write(
        &config,
        node_config(role, id, (listen, admin), deadline, common, shields, state),
    )?;
    let program = options.bin_dir.join(binary);
    let mut process = spawn(id, &program, &["-c", &config.display().to_string()], state)?;
    let took = wait_ready(&mut process, &format!("http://{admin}/readyz"), state, None).await?;
    let scheme = if role == "edge" && common.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("{id:<10} {scheme}://{listen}  admin http://{admin}  ready in {took:.1?}");
    let node = NodeInfo {
        id: id.to_string(),
        url: format!("{scheme}://{listen}"),
        admin: format!("http://{admin}"),
        pid: process.child.id().unwrap_or_default(),
        config,
    };
    Ok((node, process))
}

fn print_welcome(info: &ClusterInfo, demo_origin: bool, state_dir: &Path) {
    let Some(edge) = info.edges.first() else { return };
    eprintln!();
    eprintln!("fresco is running. Open {}/img/sunset.jpg", edge.url);
    let cacert = info
        .ca
        .as_ref()
        .map_or_else(String::new, |ca| format!("--cacert {} ", ca.display()));
    eprintln!(
        "  try:     curl -sI {cacert}{}/img/sunset.jpg | grep -i x-cache   (MISS, then HIT)",
        edge.url
    );
    if let Some(ca) = &info.ca {
        eprintln!(
            "  tls:     the cluster's CA is {} (trust it, or pass it as above)",
            ca.display()
        );
    }
    eprintln!("  metrics: {}/metrics", edge.admin);
    eprintln!(
        "  purge:   curl -s {cacert}-X POST {}/v1/purge -H 'Authorization: Bearer {}' -d '{{\"urls\":[\"/img/sunset.jpg\"]}}'",
        info.purge_api, info.purge_token
    );
    if demo_origin {
        eprintln!("  live:    open {}/gallery.html, then change an image:", edge.url);
        eprintln!(
            "           target/release/devcluster change-image sunset.jpg --state-dir {}",
            state_dir.display()
        );
    }
    eprintln!(
        "  grow:    target/release/devcluster join --state-dir {} --role shield   (or edge; `leave NODE_ID` stops one)",
        state_dir.display()
    );
    eprintln!("  stop:    Ctrl-C");
    eprintln!();
}
