//! Where an edge's miss goes: the shield ring, shield health and failover (docs/routing.md).
//!
//! - [`ring`]: rendezvous hashing of the cache key over the shields; a key's home, replicas
//!   and failover order.
//! - [`health`]: what the edge knows of each shield (active `/readyz` probes, passive failures).
//! - [`membership`]: the configured shields plus those purge-api lists, learnt at runtime.
//!
//! The proxy asks [`ShieldRouter::pick`] on every upstream attempt and reports what went wrong
//! with [`ShieldRouter::failed`]; everything else runs on the router's own thread.

pub mod health;
pub mod membership;
pub mod ring;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus::{IntCounterVec, IntGaugeVec, register_int_counter_vec, register_int_gauge_vec};
use std::sync::LazyLock;

use crate::config::{FreshnessSection, NodeConfig, RoutingSection, ShieldEntry};
use health::now_ms;
use membership::{MemberList, Membership};
pub use ring::{Ring, Shield, hash64};

/// Why an attempt at a shield failed, as [`ShieldRouter::failed`] is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused or reset: the shield is down.
    Unreachable,
    /// No answer within `shield_timeout_ms`.
    TimedOut,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The shield is alive, only slow (its origin is): ask it again. The request joins the
    /// fetch already running there, so the origin is still asked once.
    SameShield,
    /// The shield is out for a while: the key's next shield, or the origin after the last.
    NextShield,
}

struct RouterMetrics {
    shields: IntGaugeVec,
    retries: IntCounterVec,
}

static ROUTER_METRICS: LazyLock<RouterMetrics> = LazyLock::new(|| {
    RouterMetrics {
    shields: register_int_gauge_vec!(
        "fresco_shields",
        "Shields on this edge's ring, by state (ready, unready, down)",
        &["state"]
    )
    .expect("metric registers once"),
    retries: register_int_counter_vec!(
        "fresco_shield_retries_total",
        "Shield attempts that failed and were tried again, by reason (slow: same shield; hung, unreachable: next shield)",
        &["reason"]
    )
    .expect("metric registers once"),
}
});

/// The edge's view of the shield tier.
pub struct ShieldRouter {
    config: RoutingSection,
    ring: RwLock<Arc<Ring>>,
    membership: Mutex<Membership>,
    discovery: Option<FreshnessSection>,
    /// What an `https://` purge-api is verified against.
    ca_file: Option<std::path::PathBuf>,
    /// Spreads a key's misses over its replicas.
    spread: AtomicU64,
}

impl ShieldRouter {
    /// The router of an edge: its configured shields now, discovered ones once
    /// [`ShieldRouter::start`] runs.
    pub fn new(config: &NodeConfig) -> Arc<Self> {
        let membership = Membership::new(config.shields.clone());
        let router = Arc::new(Self {
            config: config.routing.clone(),
            ring: RwLock::new(Arc::new(Ring::default())),
            discovery: config.freshness.clone().filter(|_| config.routing.discover),
            ca_file: config.tls.ca_file.clone(),
            membership: Mutex::new(membership),
            spread: AtomicU64::new(0),
        });
        router.rebuild();
        router
    }

    /// The ring as it is now.
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.read().clone()
    }

    /// Whether this edge has shields at all (none: misses go to the origin).
    pub fn has_shields(&self) -> bool {
        !self.ring.read().is_empty() || self.discovery.is_some()
    }

    /// The most a shield may take to start answering.
    pub fn shield_timeout(&self) -> Duration {
        Duration::from_millis(self.config.shield_timeout_ms)
    }

    /// The shield for the next attempt at a key, or `None` for the origin. `tried` are the
    /// shields that failed this request already.
    ///
    /// In order: one of the key's first `replicas` shields that is usable (spread over them);
    /// else the next usable shield on the ring; else, when no shield is ready at all (a
    /// purge-api outage leaves every shield fenced and unready), the first one not known to be
    /// down, so the shields still shelter the origin.
    pub fn pick(&self, key_hash: u64, tried: &[Arc<Shield>]) -> Option<Arc<Shield>> {
        let ring = self.ring();
        let now = now_ms();
        let ranked = ring.ranked(key_hash);
        let untried = |s: &&&Arc<Shield>| !tried.iter().any(|t| t.id == s.id);
        let replicas: Vec<&Arc<Shield>> = ranked
            .iter()
            .take(self.config.replicas)
            .filter(untried)
            .filter(|s| s.health.usable(now))
            .copied()
            .collect();
        let chosen = match replicas.len() {
            0 => ranked
                .iter()
                .skip(self.config.replicas)
                .filter(untried)
                .find(|s| s.health.usable(now))
                .or_else(|| ranked.iter().filter(untried).find(|s| !s.health.passively_down(now)))
                .copied(),
            1 => Some(replicas[0]),
            n => Some(replicas[self.spread.fetch_add(1, Ordering::Relaxed) as usize % n]),
        };
        chosen.cloned()
    }

    /// Reports a failed attempt at `shield`, the `attempt`th at it for this request (from 1);
    /// says what to try next.
    ///
    /// A timeout from a shield whose probes still answer 200 is a slow origin behind a live
    /// shield: it is asked again, up to [`SLOW_RETRIES`] times, since the retry joins the fetch
    /// running there. A frozen shield fails a probe within 1.5 `health_interval_ms`, less than
    /// `shield_timeout_ms`, so by the time an attempt times out it no longer counts as ready.
    pub fn failed(&self, shield: &Shield, failure: Failure, attempt: u32) -> Retry {
        let metrics = &ROUTER_METRICS;
        if failure == Failure::TimedOut && shield.admin.is_some() && shield.health.ready() && attempt <= SLOW_RETRIES {
            metrics.retries.with_label_values(&["slow"]).inc();
            return Retry::SameShield;
        }
        shield
            .health
            .mark_down(Duration::from_millis(self.config.passive_down_ms));
        let reason = match failure {
            Failure::TimedOut => "hung",
            Failure::Unreachable => "unreachable",
        };
        metrics.retries.with_label_values(&[reason]).inc();
        tracing::warn!(shield = %shield.id, reason, "shield out of the ring for {} ms", self.config.passive_down_ms);
        Retry::NextShield
    }

    /// Starts the router's thread (probes, and discovery with `freshness`) and waits until the
    /// first discovery answered, for at most `wait`, so a starting edge knows its shields.
    pub fn start(self: &Arc<Self>, wait: Duration) {
        let (first, first_done) = std::sync::mpsc::channel();
        let router = self.clone();
        crate::background::spawn_thread("fresco-routing", move || router.run(first));
        let _ = first_done.recv_timeout(wait);
    }

    async fn run(self: Arc<Self>, first: std::sync::mpsc::Sender<()>) {
        let http = crate::tls::trusted_client(self.ca_file.as_deref())
            .connect_timeout(Duration::from_millis(250))
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client");
        let interval = Duration::from_millis(self.config.health_interval_ms);
        if self.discovery.is_some() {
            self.discover(&http).await;
        }
        let _ = first.send(());
        let mut next_discovery = Instant::now() + DISCOVERY_PERIOD;
        loop {
            let started = tokio::time::Instant::now();
            self.probe_all(&http, interval).await;
            if self.discovery.is_some() && Instant::now() >= next_discovery {
                self.discover(&http).await;
                next_discovery = Instant::now() + DISCOVERY_PERIOD;
            }
            tokio::time::sleep_until(started + interval).await;
        }
    }

    /// Probes every shield with an admin address at once, each for at most half of `interval`,
    /// so a shield that froze fails a probe within 1.5 intervals (less than `shield_timeout_ms`,
    /// which the configuration checks).
    async fn probe_all(&self, http: &reqwest::Client, interval: Duration) {
        let ring = self.ring();
        let mut probes = tokio::task::JoinSet::new();
        for shield in ring.shields().iter().filter(|s| s.admin.is_some()) {
            let (http, shield) = (http.clone(), shield.clone());
            probes.spawn(async move {
                let url = format!("http://{}/readyz", shield.admin.expect("filtered on admin"));
                let answer = http.get(url).timeout(interval / 2).send().await;
                let status = answer.ok().map(|r| r.status().as_u16());
                if status != Some(200) && shield.health.ready() {
                    tracing::info!(shield = %shield.id, ?status, "shield not ready: its keys go to their next shield");
                } else if status == Some(200) && !shield.health.ready() {
                    tracing::info!(shield = %shield.id, "shield ready again");
                }
                shield.health.record_probe(status);
            });
        }
        probes.join_all().await;
        let now = now_ms();
        let count = |f: &dyn Fn(&Shield) -> bool| ring.shields().iter().filter(|s| f(s)).count() as i64;
        let gauge = &ROUTER_METRICS.shields;
        gauge
            .with_label_values(&["ready"])
            .set(count(&|s| s.health.usable(now)));
        gauge
            .with_label_values(&["unready"])
            .set(count(&|s| !s.health.ready() && !s.health.passively_down(now)));
        gauge
            .with_label_values(&["down"])
            .set(count(&|s| s.health.passively_down(now)));
    }

    /// Asks purge-api (each replica in turn, until one answers: they list the same members)
    /// for its members and rebuilds the ring if the shields changed.
    async fn discover(&self, http: &reqwest::Client) {
        let Some(freshness) = &self.discovery else { return };
        for purge_api in &freshness.purge_api.0 {
            match member_list(http, purge_api, &freshness.credential).await {
                Ok(list) => {
                    self.membership.lock().update(&list, Instant::now());
                    self.rebuild();
                    return;
                }
                Err(e) => tracing::debug!(purge_api, error = %e, "no member list; the ring stays as it is"),
            }
        }
    }

    /// Replaces the ring if the membership's shields differ from it, keeping the health of
    /// every shield that stays.
    fn rebuild(&self) {
        let wanted: Vec<ShieldEntry> = self.membership.lock().shields();
        let current = self.ring();
        let same = |s: &Shield, e: &ShieldEntry| s.id == e.id && s.address == e.address && s.admin == e.admin;
        if wanted.len() == current.shields().len()
            && wanted.iter().all(|e| current.shields().iter().any(|s| same(s, e)))
        {
            return;
        }
        let kept: BTreeMap<&str, &Arc<Shield>> = current.shields().iter().map(|s| (s.id.as_str(), s)).collect();
        let shields: Vec<Arc<Shield>> = wanted
            .iter()
            .map(|e| match kept.get(e.id.as_str()) {
                Some(s) if same(s, e) => (*s).clone(),
                _ => Arc::new(Shield::new(&e.id, e.address, e.admin)),
            })
            .collect();
        let ids: Vec<&str> = shields.iter().map(|s| s.id.as_str()).collect();
        tracing::info!(shields = ?ids, "shield ring changed");
        *self.ring.write() = Arc::new(Ring::new(shields));
    }
}

/// How many times a request asks a slow (live, probed and ready) shield again.
pub const SLOW_RETRIES: u32 = 3;

/// How often purge-api's member list is read.
const DISCOVERY_PERIOD: Duration = Duration::from_secs(1);

/// `GET /v1/members` of one purge-api.
async fn member_list(http: &reqwest::Client, purge_api: &str, credential: &str) -> Result<MemberList, String> {
    let answer = http
        .get(format!("{}/v1/members", purge_api.trim_end_matches('/')))
        .bearer_auth(credential)
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("purge-api answered {}", answer.status()));
    }
    answer.json::<MemberList>().await.map_err(|e| e.to_string())
}
