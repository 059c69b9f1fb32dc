//! `devcluster`: runs a local fresco cluster (demo origin, shields, edges) as real processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fresco_devcluster::cluster::{ClusterOptions, ControlPlane, EtcdAccess, run};
use fresco_devcluster::control::{self, Request};
use fresco_devcluster::demo_origin::{self, Webhook};
use fresco_devcluster::state::ClusterInfo;

/// Runs a local fresco cluster: purge-api, a demo origin (unless --origin), M shields and N edges, each a
/// real process on a loopback port. Prints `READY <state-dir>/cluster.json` when all are ready;
/// Ctrl-C (SIGINT) or SIGTERM stops them all.
#[derive(Parser)]
#[command(name = "devcluster", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Tool>,
    /// Number of edges.
    #[arg(long, default_value_t = 2)]
    edges: usize,
    /// Number of shields.
    #[arg(long, default_value_t = 1)]
    shields: usize,
    /// Use this origin (http://host:port) instead of starting the demo origin.
    #[arg(long, value_name = "URL")]
    origin: Option<String>,
    /// Directory for configs, caches, logs and cluster.json; reusing it reuses ids, ports and caches.
    #[arg(long, value_name = "DIR", default_value = "state")]
    state_dir: PathBuf,
    /// Request deadline of the edges in milliseconds (shields get 90% of it).
    #[arg(long, default_value_t = 5000)]
    deadline_ms: u64,
    /// Lease length of purge-api in milliseconds: a node cut off from purge-api stops serving
    /// mutable objects from cache within this time.
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    /// Directory holding fresco-edge, fresco-shield and purge-api (default: next to this binary).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// The address every process listens on: loopback, or an address of this machine that
    /// other hosts (network namespaces, for nodes added with ansible) reach it on.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    listen_ip: std::net::IpAddr,
    /// On how many shields each key is kept (the edges' `routing.replicas`).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Serve HTTPS on the edges, purge-api and the demo origin with certificates of a local CA
    /// made in DIR/tls/; `cluster.json` names it as `ca`. Shields stay on HTTP.
    #[arg(long)]
    tls: bool,
    /// Where purge-api keeps the purge log, leases and members: `embedded` (one purge-api, a
    /// redb file) or `etcd` (3 etcd members and 2 purge-api replicas; `cluster.json` lists
    /// them as `etcd` and `purge_apis`).
    #[arg(long, value_enum, default_value = "embedded")]
    control_plane: ControlPlane,
    /// With `--control-plane etcd`: use the etcd cluster at these client URLs (comma-separated)
    /// instead of starting one.
    #[arg(long, value_name = "URLS", value_delimiter = ',', requires = "control_plane")]
    etcd_endpoints: Vec<String>,
    /// With `--etcd-endpoints https://…`: the CA that etcd's certificates are verified against.
    #[arg(long, value_name = "FILE", requires = "etcd_endpoints")]
    etcd_ca: Option<PathBuf>,
    /// With `--etcd-endpoints`: the etcd user purge-api authenticates as.
    #[arg(long, value_name = "NAME", requires_all = ["etcd_endpoints", "etcd_password_file"])]
    etcd_user: Option<String>,
    /// The file holding `--etcd-user`'s password.
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Tool {
    /// Run only the demo origin (devcluster starts it this way).
    DemoOrigin {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory of the images it serves (seeded with the samples).
        #[arg(long, default_value = "state/origin")]
        dir: PathBuf,
        /// purge-api's base URL: a changed image is purged there with a signed webhook.
        #[arg(long, value_name = "URL", requires = "webhook_secret_file")]
        purge_api: Option<String>,
        /// File holding the webhook secret shared with purge-api.
        #[arg(long, value_name = "FILE", requires = "purge_api")]
        webhook_secret_file: Option<PathBuf>,
        /// Serve HTTPS with this certificate chain (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The key of `--tls-cert` (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Verify an `https://` purge-api against the CA certificates in FILE (PEM).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Save a new version of a demo image (visibly different) and purge it, as an origin
    /// would: prints purge-api's answer. The cluster must be running with the demo origin.
    ChangeImage {
        /// The image's file name, e.g. `sunset.jpg`.
        name: String,
        /// The running cluster's state directory.
        #[arg(long, value_name = "DIR", default_value = "state")]
        state_dir: PathBuf,
    },
    /// Start one more edge or shield in the running cluster of DIR; prints
    /// `READY DIR/cluster.json` once it serves and is listed there. Edges learn a new shield
    /// from purge-api within a second.
    Join {
        /// The running cluster's state directory.
        #[arg(long, value_name = "DIR", default_value = "state")]
        state_dir: PathBuf,
        /// What to start.
        #[arg(long, value_parser = ["edge", "shield"])]
        role: String,
    },
    /// Stop one node of the running cluster of DIR gracefully (SIGTERM: it drains, and a
    /// shield's keys move to their next shield) and remove it from cluster.json.
    Leave {
        /// The running cluster's state directory.
        #[arg(long, value_name = "DIR", default_value = "state")]
        state_dir: PathBuf,
        /// The node's id, e.g. `edge-3`.
        node_id: String,
    },
}

/// `devcluster join` and `leave`: asks the running devcluster, prints what it did.
async fn change_membership(state_dir: &std::path::Path, request: Request) -> anyhow::Result<()> {
    let answer = control::ask(state_dir, &request).await?;
    if let Some(node) = answer.node {
        eprintln!("{} joined: {}  admin {}", node.id, node.url, node.admin);
    }
    println!(
        "READY {}",
        std::path::absolute(state_dir.join("cluster.json"))?.display()
    );
    Ok(())
}

/// `devcluster change-image`: asks the demo origin to change `name` and prints the purge answer.
async fn change_image(name: &str, state_dir: &std::path::Path) -> anyhow::Result<()> {
    let path = state_dir.join("cluster.json");
    let info = ClusterInfo::load(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e} (is the cluster running?)", path.display()))?;
    let resp = fresco_tls::trusting(info.ca.as_deref())?
        .build()?
        .post(format!("{}/_demo/change/{name}", info.origin))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    println!("{}", body.trim_end());
    anyhow::ensure!(status.is_success(), "the origin answered {status}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Tool::DemoOrigin {
            listen,
            dir,
            purge_api,
            webhook_secret_file,
            tls_cert,
            tls_key,
            ca,
        }) => {
            let webhook = match (purge_api, webhook_secret_file) {
                (Some(purge_api), Some(file)) => match std::fs::read_to_string(&file) {
                    Ok(secret) => Some(Webhook {
                        purge_api: purge_api.trim_end_matches('/').to_string(),
                        secret: secret.trim().to_string(),
                    }),
                    Err(e) => {
                        eprintln!("devcluster: reading {}: {e}", file.display());
                        return ExitCode::FAILURE;
                    }
                },
                _ => None,
            };
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| fresco_tls::ServerFiles { cert, key });
            match fresco_tls::trusting(ca.as_deref()) {
                Ok(http) => demo_origin::serve(listen, dir, webhook, tls, http).await,
                Err(e) => Err(e.into()),
            }
        }
        Some(Tool::ChangeImage { name, state_dir }) => change_image(&name, &state_dir).await,
        Some(Tool::Join { state_dir, role }) => change_membership(&state_dir, Request::Join(role)).await,
        Some(Tool::Leave { state_dir, node_id }) => change_membership(&state_dir, Request::Leave(node_id)).await,
        None => {
            let bin_dir = cli.bin_dir.unwrap_or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("."))
            });
            run(ClusterOptions {
                edges: cli.edges,
                shields: cli.shields,
                origin: cli.origin,
                state_dir: cli.state_dir,
                deadline_ms: cli.deadline_ms,
                bin_dir,
                lease_ms: cli.lease_ms,
                listen_ip: cli.listen_ip,
                replicas: cli.replicas,
                tls: cli.tls,
                control_plane: cli.control_plane,
                etcd_endpoints: cli.etcd_endpoints,
                etcd_access: EtcdAccess {
                    ca_file: cli.etcd_ca,
                    user: cli.etcd_user.zip(cli.etcd_password_file),
                },
            })
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devcluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}
