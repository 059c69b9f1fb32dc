//! Running a node: command line, configuration, store, pingora server, shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Parser;
use fresco_store::FoyerStorage;
use pingora_core::listeners::{DEFAULT_L4_READ_BUFFER_SIZE, L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{BackgroundService, background_service};
use pingora_core::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::{FreshnessSection, NodeConfig};
use crate::connections::ConnectionGate;
use crate::drain::{DrainOnTerminate, RequestsInFlight};
use crate::feed::{FeedHub, prefill};
use crate::freshness::Freshness;
use crate::freshness::subscriber::{self, SubscriberConfig};
use crate::proxy::{CacheProxy, Role};
use crate::routing::ShieldRouter;

/// The command line of `fresco-edge` and `fresco-shield`.
#[derive(Parser, Debug)]
pub struct NodeArgs {
    /// The node's YAML configuration file (see conf/ and the README's configuration reference).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// Check the configuration and exit: 0 when valid, 2 with the offending field otherwise.
    #[arg(long)]
    pub check: bool,
}

/// Reports the node ready once every service runs. Unready again is the drain's doing, at
/// SIGTERM ([`crate::drain`]); a SIGINT ends the process at once. The store is closed later,
/// in [`run`], once the services' runtimes are gone: pingora drops every task of theirs when it
/// shuts them down, so a close awaited in a service would be cut short and lose the disk
/// writes still queued.
struct Readiness {
    ready: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for Readiness {
    async fn start(&self, _shutdown: ShutdownWatch) {
        self.ready.store(true, Ordering::Release);
        tracing::info!("node ready");
    }
}

/// Follows the purge log on a thread of its own, so that purges are applied and leases renewed
/// however busy the proxy's threads are. The feed's history is refilled there too.
fn start_subscriber(
    fresh: Arc<Freshness>,
    feed: Option<Arc<FeedHub>>,
    section: &FreshnessSection,
    config: &NodeConfig,
    role: Role,
) {
    let subscriber = SubscriberConfig {
        purge_api: section.purge_api.clone(),
        credential: section.credential.clone(),
        node: config.node_id.clone(),
        role: match role {
            Role::Edge => fresco_protocol::Role::Edge,
            Role::Shield => fresco_protocol::Role::Shield,
        },
        address: config.listen.to_string(),
        admin: Some(config.admin_listen.to_string()),
        ca_file: config.tls.ca_file.clone(),
    };
    let (purge_api, credential) = (section.purge_api.clone(), section.credential.clone());
    let http = config.http_client();
    crate::background::spawn_thread("fresco-purges", move || async move {
        if let Some(feed) = feed {
            tokio::spawn(prefill::run(feed, http, purge_api, credential));
        }
        subscriber::run(fresh, subscriber).await
    });
}

/// The longest a starting node waits to catch up with the purge log before it listens.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// Waits until the node holds a lease — it has applied every purge up to the log's head,
/// including those made while it was down — before it opens its listeners, so that a warm
/// restart serves its disk cache as hits at once instead of revalidating every mutable object
/// while fenced. After [`CATCH_UP_WAIT`] (purge-api unreachable) it starts fenced: still
/// safe, every mutable hit is confirmed upstream first.
fn catch_up_before_serving(fresh: &Freshness) {
    let started = Instant::now();
    while !fresh.is_leased() && started.elapsed() < CATCH_UP_WAIT {
        std::thread::sleep(Duration::from_millis(2));
    }
    if fresh.is_leased() {
        tracing::info!(
            applied = fresh.applied(),
            took_ms = started.elapsed().as_millis() as u64,
            "caught up with the purge log"
        );
    } else {
        tracing::warn!(
            applied = fresh.applied(),
            "no purge lease within {CATCH_UP_WAIT:?}: serving fenced (mutable hits are confirmed upstream)"
        );
    }
}

/// Raises the soft limit of open files to the hard limit: every feed client holds a
/// connection, and the usual soft limit of 1024 would refuse the thousand-and-first.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open files limit"),
    }
}

/// Runs a node of `role` with the command line of this process until a signal stops it
/// (SIGTERM: after draining the requests in flight, see [`crate::drain`]; SIGINT: at once),
/// then closes the store so that every fill already served is on disk for the next start.
pub fn run(role: Role, args: NodeArgs) -> ExitCode {
    let config = match NodeConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fresco-{}: invalid configuration: {e}", role.name());
            return ExitCode::from(2);
        }
    };
    if role == Role::Shield && config.server_tls().is_some() {
        // Edges speak plain HTTP to shields (the `tls` module's documentation).
        eprintln!(
            "fresco-shield: invalid configuration: {}: field `tls.cert_file`: shields serve edges over plain HTTP; only tls.ca_file applies",
            args.config.display()
        );
        return ExitCode::from(2);
    }
    if args.check {
        println!("{}: configuration ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    fresco_telemetry::init_logging(&config.log_format);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let store_config = config
        .store_config()
        .with_metrics_registry(prometheus::default_registry().clone());
    let store = match runtime.block_on(FoyerStorage::open(store_config)) {
        Ok(store) => store.leak(),
        Err(e) => {
            eprintln!("fresco-{}: {e}", role.name());
            return ExitCode::from(1);
        }
    };
    let freshness = match &config.freshness {
        None => None,
        Some(section) => match Freshness::open(&section.state_dir, &config.sites, store) {
            Ok(fresh) => Some(Arc::new(fresh.with_max_rules(section.max_rules))),
            Err(e) => {
                eprintln!("fresco-{}: {e}", role.name());
                return ExitCode::from(1);
            }
        },
    };
    // The feed exists on edges that follow purges; it must observe them from the first one.
    let feed = match (&freshness, role) {
        (Some(fresh), Role::Edge) => Some(FeedHub::new(config.feed.clone(), config.node_id.clone(), fresh.clone())),
        _ => None,
    };
    if let (Some(fresh), Some(section)) = (&freshness, &config.freshness) {
        start_subscriber(fresh.clone(), feed.clone(), section, &config, role);
    }
    // An edge learns its shields before it listens, or its first misses would all go to the
    // origin.
    let router = (role == Role::Edge).then(|| {
        let router = ShieldRouter::new(&config);
        router.start(CATCH_UP_WAIT);
        router
    });
    if let Some(fresh) = &freshness {
        catch_up_before_serving(fresh);
    }
    raise_open_files_limit();
    let requests = RequestsInFlight::leaked();
    let proxy = match CacheProxy::new(role, &config, store, freshness.clone(), feed.clone(), router, requests) {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("fresco-{}: {e}", role.name());
            return ExitCode::from(1);
        }
    };

    let conf = ServerConf {
        threads: config.threads,
        work_stealing: config.work_stealing,
        // What `https://` origins are verified against; without it, the system's roots.
        ca_file: config.tls.ca_file.as_ref().map(|p| p.display().to_string()),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(3),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let ready = Arc::new(AtomicBool::new(false));
    let connections = proxy.connections();
    tracing::info!(
        max_total = connections.max_total(),
        max_per_client = config.connections.max_per_client,
        "client connection limits"
    );
    let gate = ConnectionGate::new(pingora_proxy::http_proxy(&server.configuration, proxy), connections);
    let mut proxy_service = Service::new("fresco proxy".into(), gate);
    // The header and a small body gather in the write buffer and leave in one send; a body of
    // 24 KiB or more leaves with the header in one writev (fresco-write-buffer,
    // docs/benchmarks.md).
    let mut listener = ListenerConfig::tcp(config.listen.to_string()).l4_buffer(L4BufferSettings::new(
        DEFAULT_L4_READ_BUFFER_SIZE,
        config.write_buffer.0 as usize,
    ));
    if let Some(files) = config.server_tls() {
        match crate::tls::listener_settings(&files, config.tls.http2) {
            Ok(settings) => listener = listener.tls(settings),
            Err(e) => {
                eprintln!("fresco-{}: tls: {e}", role.name());
                return ExitCode::from(2);
            }
        }
    }
    proxy_service.add_listener(listener);
    let mut admin = Service::new("fresco admin".into(), AdminApp::new(store, ready.clone(), freshness));
    admin.add_tcp(&config.admin_listen.to_string());
    admin.threads = Some(1);
    server.add_service(proxy_service);
    server.add_service(admin);
    let signals = DrainOnTerminate {
        ready: ready.clone(),
        feed,
        requests,
        limit: config.drain_limit(),
    };
    server.add_service(background_service("readiness", Readiness { ready }));

    tracing::info!(
        role = role.name(),
        node = %config.node_id,
        listen = %config.listen,
        admin = %config.admin_listen,
        memory = config.cache.memory.0,
        disk = config.cache.disk.0,
        "starting"
    );
    // `run` returns once every service runtime has exited, so no fill can start after this;
    // the store's own runtime flushes what is queued.
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    tracing::info!("services stopped: closing the cache store");
    runtime.block_on(store.close());
    tracing::info!("cache store closed");
    ExitCode::SUCCESS
}
