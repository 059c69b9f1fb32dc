//! `purge-api`: fresco's purge API server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Parser;
use fresco_purge_api::auth::{Authenticator, Credentials};
use fresco_purge_api::config::PurgeApiConfig;
use fresco_purge_api::control_plane::ControlPlane;
use fresco_purge_api::http::{App, router};
use fresco_purge_api::log::GroupCommit;

/// fresco purge API: accepts purges (bearer token or signed origin webhook), writes them to a
/// durable log, streams the log to every edge and shield, and answers once every node holding a
/// lease has applied the purge (or its lease has surely expired).
#[derive(Parser)]
#[command(name = "purge-api", version)]
struct Cli {
    /// YAML configuration file (see conf/purge-api.yaml). Required except for `credential`
    /// with FRESCO_NODE_KEY set.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the credential a node presents (its `freshness.credential`), derived from the
    /// first of the configuration's `node_keys`, or without `--config` from the environment
    /// variable FRESCO_NODE_KEY (kept off the command line, where `ps` would show it).
    Credential {
        /// The node's id (`node_id` in its configuration).
        #[arg(long, value_name = "ID")]
        node: String,
    },
}

fn print_credential(config: Option<&std::path::Path>, node: &str) -> ExitCode {
    let valid = !node.is_empty() && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        eprintln!("purge-api: --node: a node id uses only letters, digits, - and _");
        return ExitCode::from(2);
    }
    let key = match config {
        Some(path) => PurgeApiConfig::load(path).map(|c| c.node_keys[0].clone()),
        None => std::env::var("FRESCO_NODE_KEY")
            .ok()
            .filter(|k| k.len() >= 16)
            .ok_or_else(|| "give --config FILE, or FRESCO_NODE_KEY of 16 characters or more".to_string()),
    };
    match key {
        Ok(key) => {
            println!("{}", fresco_protocol::credential::derive(key.as_bytes(), node));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("purge-api: {e}");
            ExitCode::from(2)
        }
    }
}

/// The most purges the etcd control plane keeps.
const ETCD_MOST_RETAINED: u64 = 20_000;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Credential { node }) = &cli.command {
        return print_credential(cli.config.as_deref(), node);
    }
    let Some(config_path) = cli.config else {
        eprintln!("purge-api: --config FILE is required (see --help)");
        return ExitCode::from(2);
    };
    let config = match PurgeApiConfig::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("purge-api: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("{}: configuration ok", config_path.display());
        return ExitCode::SUCCESS;
    }
    fresco_telemetry::init_logging(&config.log_format);
    let control_plane = match ControlPlane::open(&config).await {
        Ok(plane) => plane,
        Err(e) => {
            eprintln!("purge-api: {e}");
            return ExitCode::from(1);
        }
    };
    let ControlPlane {
        log,
        members,
        replay,
        backend,
    } = control_plane;
    let bounds = log.bounds();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let app = Arc::new(App {
        stopping,
        writer: GroupCommit::start(log.clone()),
        members,
        auth: Authenticator::new(
            Credentials {
                tokens: config.tokens.clone(),
                node_keys: config.node_keys.clone(),
                revoked_nodes: config.revoked_nodes.clone(),
                webhook_secrets: config.webhook_secrets.clone(),
            },
            replay,
        ),
        // A holder that neither acks nor renews is surely expired after one bound; one that
        // renews without progress loses its lease at its second renewal.
        max_wait: config.lease_bound() * 2 + config.lease(),
        log: log.clone(),
    });
    let retention = match backend {
        // etcd keeps its whole key space in memory and refuses writes beyond its quota
        // (2 GiB by default): at most 64 KiB a purge, this many stay well within it.
        "etcd" if config.retention_entries > ETCD_MOST_RETAINED => {
            tracing::warn!(
                retention_entries = config.retention_entries,
                kept = ETCD_MOST_RETAINED,
                "etcd keeps fewer purges than retention_entries asks"
            );
            ETCD_MOST_RETAINED
        }
        _ => config.retention_entries,
    };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let bounds = log.bounds();
            if bounds.head > retention
                && bounds.first <= bounds.head - retention
                && let Err(e) = log.truncate_before(bounds.head - retention + 1).await
            {
                tracing::error!(error = %e, "truncating the purge log");
            }
        }
    });
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("purge-api: listening on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    tracing::info!(listen = %config.listen, backend, head = bounds.head, first = bounds.first, lease_ms = config.lease_ms, "purge-api ready");
    let shutdown = async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("purge-api stopping");
        let _ = stop.send(true);
    };
    let served = match &config.tls {
        Some(tls) => {
            let tls = match tls.server_files().server_config(&[b"http/1.1"]) {
                Ok(tls) => tls,
                Err(e) => {
                    eprintln!("purge-api: tls: {e}");
                    return ExitCode::from(2);
                }
            };
            let listener = match fresco_tls::TlsListener::new(listener, tls) {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("purge-api: listening on {}: {e}", config.listen);
                    return ExitCode::from(1);
                }
            };
            axum::serve(listener, router(app))
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            // Log lines and acks are small writes that must not wait for Nagle's algorithm.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "setting TCP_NODELAY");
                }
            });
            axum::serve(listener, router(app))
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    if let Err(e) = served {
        eprintln!("purge-api: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
