//! A node's YAML configuration (`conf/edge.yaml`, `conf/shield.yaml`).
//!
//! Every error names the field it is about, as a dotted path (`cache.memory`,
//! `sites[0].origin`), so that a node refuses to start with a message an operator can act on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fresco_store::{Admission, EvictionPolicy, StoreConfig};
use serde::Deserialize;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, starting with the field's dotted path.
        message: String,
    },
    /// A field has a value that parses but cannot work.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The dotted path of the field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The query parameter live.js adds to an image URL to get past a browser's cache on a page of
/// another origin (docs/live.md). Every site leaves it out of its cache keys, so the variant is
/// the object the edge already holds.
pub const LIVE_JS_QUERY_PARAMETER: &str = "fresco";

/// A size in bytes, written as an integer or with a unit: `512KiB`, `256MiB`, `2GiB`, `1GB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"256MiB"`, `"1.5GiB"`, `"1000"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size like 256MiB"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` (use KiB, MiB, GiB, TiB, KB, MB, GB)"
                ));
            }
        };
        Ok(Self((number * scale as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The whole configuration of an edge or a shield.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, sent as `X-Fresco-Node`.
    pub node_id: String,
    /// Where clients (or edges) connect.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin_listen: SocketAddr,
    /// Worker threads of the proxy. Default: 2.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Whether an idle proxy thread takes tasks from a busy one. Default: false: each new
    /// connection is placed on one thread at random and stays there, which saved 5–30 % of the
    /// CPU a warm 30 KB hit costs (docs/benchmarks.md); the price (not measured) is that a
    /// CPU-heavy task (a TLS handshake, compressing an SVG on a miss) delays the other
    /// connections of its thread.
    #[serde(default)]
    pub work_stealing: bool,
    /// Longest time a request may take before it is answered with 504. Default: 5000.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// On SIGTERM, the longest the node waits for its requests in flight to finish (unready
    /// meanwhile) before it stops (`tier::drain`). Default: 10000.
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
    /// The cache store.
    pub cache: CacheSection,
    /// Edge only: shields known from the start. With a `freshness` section (and
    /// `routing.discover`), the shields purge-api lists join them at runtime. None at all: misses
    /// go to the site's origin directly.
    #[serde(default)]
    pub shields: Vec<ShieldEntry>,
    /// Edge only: how misses are spread over the shields (`tier::routing`).
    #[serde(default)]
    pub routing: RoutingSection,
    /// The sites served; the first one is the default for unknown hosts.
    pub sites: Vec<SiteConfig>,
    /// The purge API this node follows. Without it the node has no leases and no purges: a
    /// plain cache without the freshness guarantee.
    #[serde(default)]
    pub freshness: Option<FreshnessSection>,
    /// Per-connection write buffer of the proxy listener, for writes under 24 KiB (a larger body
    /// leaves with what the buffer holds in one `writev`: fresco-write-buffer). Default: 64KiB.
    #[serde(default = "default_write_buffer")]
    pub write_buffer: ByteSize,
    /// Largest request body passed to the origin (methods other than GET and HEAD); a larger
    /// one is refused with 413. Default: 16MiB.
    #[serde(default = "default_max_request_body")]
    pub max_request_body: ByteSize,
    /// Log format: `text` or `json`. Default: text.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Load shedding: fetches per upstream. Default: see [`SheddingSection`].
    #[serde(default)]
    pub shedding: SheddingSection,
    /// Send clients the headers nodes tell each other (`X-Fresco-Fill-Seq`,
    /// `X-Fresco-Origin-Cache-Control`); for debugging only: they tell how far purges have got
    /// and what the origin asked. Default: false.
    #[serde(default)]
    pub debug_headers: bool,
    /// Edge only: the change feed (`/_fresco/events`). It needs the `freshness` section.
    #[serde(default)]
    pub feed: FeedSection,
    /// TLS: the listener's certificate, and whom to trust upstream. Default: plain HTTP, and
    /// the system's roots for `https://` origins and purge-api.
    #[serde(default)]
    pub tls: TlsSection,
    /// Client connections: caps and deadlines (`crate::connections`).
    #[serde(default)]
    pub connections: ConnectionsSection,
}

/// The `connections:` section (`crate::connections`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsSection {
    /// Most connections open from one client address; more get 503. Default: 1024.
    pub max_per_client: u32,
    /// Most client connections open in all; more get 503. Kept below the open-files limit,
    /// with a quarter of it for upstreams and the store. Default: 100000.
    pub max_total: usize,
    /// Longest time from a new connection to the end of its first request header. Default:
    /// 10000.
    pub header_timeout_ms: u64,
    /// Longest time a kept-alive connection may wait for its next request. Default: 30000.
    pub idle_timeout_ms: u64,
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        Self {
            max_per_client: 1024,
            max_total: 100_000,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
        }
    }
}

/// The `tls:` section (`crate::tls`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// The listener's certificate chain, PEM, leaf first. With `key_file`, `listen` serves
    /// HTTPS only.
    pub cert_file: Option<PathBuf>,
    /// The listener's private key, PEM.
    pub key_file: Option<PathBuf>,
    /// Offer HTTP/2 to clients (ALPN `h2`, then `http/1.1`). Default: true.
    #[serde(default = "yes")]
    pub http2: bool,
    /// The CA certificates, PEM, that `https://` origins, shields and purge-api are verified
    /// against instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// The `shedding:` section: how many fetches a node sends one upstream (`crate::shedding`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SheddingSection {
    /// Most fetches in flight to one shield or origin. Default: 256.
    pub upstream_concurrency: usize,
    /// Most further misses waiting for a slot at one upstream; more are answered 503. Default: 256.
    pub upstream_queue: usize,
    /// The `Retry-After` of a shed miss, in seconds. Default: 1.
    pub retry_after_secs: u64,
}

impl Default for SheddingSection {
    fn default() -> Self {
        Self {
            upstream_concurrency: 256,
            upstream_queue: 256,
            retry_after_secs: 1,
        }
    }
}

/// The `feed:` section: limits of the change feed an edge serves (docs/feed.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSection {
    /// Most URLs plus tags one feed connection may follow. Default: 256.
    pub max_subscriptions: usize,
    /// Most feed connections open from one client address. Default: 64.
    pub max_connections_per_client: usize,
    /// Most feed connections open on this edge. Default: 20000.
    pub max_connections: usize,
    /// Purges kept to replay to clients that reconnect with `Last-Event-ID`. Default: 4096.
    pub history: usize,
    /// Seconds between keepalives on an idle feed. Default: 15.
    pub heartbeat_secs: u64,
    /// URLs whose surrogate keys the edge remembers, to tell tag purges to URL followers.
    /// Default: 100000.
    pub remembered_urls: usize,
    /// Most memory those URLs may take (URLs, tags, ETags). Default: 64MiB.
    pub remembered_bytes: ByteSize,
}

impl Default for FeedSection {
    fn default() -> Self {
        Self {
            max_subscriptions: 256,
            max_connections_per_client: 64,
            max_connections: 20_000,
            history: 4096,
            heartbeat_secs: 15,
            remembered_urls: 100_000,
            remembered_bytes: ByteSize(64 << 20),
        }
    }
}

/// One shield of an edge's `shields:` list: `{id, address, admin}`, or a bare `ip:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShieldEntry {
    /// The shield's node id: what the ring hashes, so it must be the same on every edge.
    /// A bare address is its own id.
    pub id: String,
    /// Its proxy address.
    pub address: SocketAddr,
    /// Its admin address, probed at `/readyz`. Without one the shield gets passive checks only
    /// (a connection that fails or times out takes it out for a while).
    pub admin: Option<SocketAddr>,
}

impl<'de> Deserialize<'de> for ShieldEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            id: String,
            address: SocketAddr,
            #[serde(default)]
            admin: Option<SocketAddr>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bare(SocketAddr),
            Full(Full),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a shield is `ip:port` or `{id, address: ip:port, admin: ip:port}`")
        })? {
            Raw::Bare(address) => Ok(Self {
                id: address.to_string(),
                address,
                admin: None,
            }),
            Raw::Full(f) => Ok(Self {
                id: f.id,
                address: f.address,
                admin: f.admin,
            }),
        }
    }
}

/// The `routing:` section of an edge: the shield ring (docs/routing.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSection {
    /// On how many shields each key is stored: its first `replicas` shields on the ring, over
    /// which this edge spreads the key's misses. Default: 1.
    pub replicas: usize,
    /// The longest an edge waits for a shield to start answering before it tries again: the
    /// same shield if it still answers its health probe (the origin is slow; the retry joins
    /// the fetch already running there), the next one on the ring if not (it hangs).
    /// Default: 1000.
    pub shield_timeout_ms: u64,
    /// How often each shield's `/readyz` is probed. Default: 500.
    pub health_interval_ms: u64,
    /// How long a shield that refused a connection or hung stays out of the ring. Default: 2000.
    pub passive_down_ms: u64,
    /// Learn shields at runtime from purge-api's member list (needs `freshness`). Default: true.
    pub discover: bool,
}

impl Default for RoutingSection {
    fn default() -> Self {
        Self {
            replicas: 1,
            shield_timeout_ms: 1000,
            health_interval_ms: 500,
            passive_down_ms: 2000,
            discover: true,
        }
    }
}

/// What an edge tells browsers about caching an image (`sites[].browser_cache`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrowserCache {
    /// Mutable images: `Cache-Control: no-cache` with the ETag, so a browser revalidates and a
    /// purge reaches it; versioned or `immutable` images: a year and `immutable`.
    #[default]
    Revalidate,
    /// Pass the origin's `Cache-Control` on unchanged.
    Origin,
}

/// The `cache:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Memory tier size.
    pub memory: ByteSize,
    /// Disk tier size; 0 for no disk tier. Default: 0.
    #[serde(default = "zero_bytes")]
    pub disk: ByteSize,
    /// Disk tier directory (needed when `disk` is not 0).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Disk block size; bounds the largest object kept on disk. Default: 16MiB.
    #[serde(default = "default_block")]
    pub block: ByteSize,
    /// Memory eviction policy: s3fifo, sieve, lfu, lru, fifo. Default: s3fifo.
    #[serde(default = "default_eviction")]
    pub eviction: String,
    /// Which fills a full memory tier admits: `second-request` (a key's first fill goes to
    /// disk only, or is not kept without a disk) or `all`. Default: second-request.
    #[serde(default = "default_admission")]
    pub admission: String,
    /// Freshness given to cacheable responses without Cache-Control or Expires. Default: 60.
    #[serde(default = "default_heuristic_ttl")]
    pub default_ttl_secs: u64,
    /// Most variants (by the origin's `Vary`) stored of one URL; more are served, not stored.
    /// Default: 16.
    #[serde(default = "default_max_variants")]
    pub max_variants: usize,
    /// Freshness given to 404 and 410 answers without Cache-Control or Expires (negative
    /// caching). Default: 10.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl_secs: u64,
    /// How long an immutable object may be served stale while its upstream fails. Mutable
    /// objects get only what the origin's `stale-if-error` says, and never after a purge.
    /// Default: 86400.
    #[serde(default = "default_stale_if_error")]
    pub stale_if_error_secs: u32,
}

/// The `freshness:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessSection {
    /// purge-api's base URL, `http://host:port`, or a list of its replicas' (etcd control
    /// plane): the node follows the first and moves to the next when one fails.
    pub purge_api: crate::freshness::purge_apis::PurgeApiUrls,
    /// This node's credential for purge-api's node protocol, `<node id>.<hex>`
    /// (`purge-api credential --node ID` prints it). Not a purge token: those cannot reach the
    /// node protocol.
    pub credential: String,
    /// Where the applied purges are kept across restarts.
    pub state_dir: PathBuf,
    /// Most purge rules held; beyond, the oldest are compacted and what was fetched before
    /// them is revalidated once (`crate::freshness`). Default: 200000.
    #[serde(default = "default_max_rules")]
    pub max_rules: usize,
}

fn default_max_rules() -> usize {
    crate::freshness::DEFAULT_MAX_RULES
}

/// One site: a host name and the origin behind it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The site's name, used in cache keys; also matched against the request's Host.
    pub name: String,
    /// Further host names of this site.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The origin, `http://host:port`.
    pub origin: String,
    /// Query parameters left out of the cache key (tracking parameters and the like).
    #[serde(default)]
    pub ignore_query: Vec<String>,
    /// When the origin sends `Vary: Accept`, key variants by the image format class the client
    /// accepts (AVIF, WebP, other) instead of the exact `Accept` value: for origins that
    /// negotiate image formats only. Default: false.
    #[serde(default)]
    pub vary_accept: bool,
    /// Treat versioned URLs as immutable (served without a lease): a `/v/<version>/` path
    /// segment, a `v=` query parameter, or a file name with a hex content hash
    /// (`logo.3f9a2c1d.png`). `Cache-Control: immutable` from the origin always counts.
    /// Default: true.
    #[serde(default = "yes")]
    pub versioned_urls: bool,
    /// Edge only: what browsers are told about caching (`revalidate` or `origin`).
    /// Default: revalidate.
    #[serde(default)]
    pub browser_cache: BrowserCache,
}

fn yes() -> bool {
    true
}

fn default_threads() -> usize {
    2
}
fn default_deadline_ms() -> u64 {
    5000
}
fn default_drain_ms() -> u64 {
    10_000
}
fn default_write_buffer() -> ByteSize {
    ByteSize(64 << 10)
}
fn default_max_request_body() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_log_format() -> String {
    "text".into()
}
fn zero_bytes() -> ByteSize {
    ByteSize(0)
}
fn default_block() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_eviction() -> String {
    EvictionPolicy::default().name().into()
}
fn default_admission() -> String {
    Admission::default().name().into()
}
fn default_heuristic_ttl() -> u64 {
    60
}
fn default_negative_ttl() -> u64 {
    10
}
fn default_stale_if_error() -> u32 {
    86_400
}
fn default_max_variants() -> usize {
    16
}

impl NodeConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let mut config = Self::parse_as_written(text, path)?;
        for site in &mut config.sites {
            if !site.ignore_query.iter().any(|p| p == LIVE_JS_QUERY_PARAMETER) {
                site.ignore_query.push(LIVE_JS_QUERY_PARAMETER.to_string());
            }
        }
        Ok(config)
    }

    fn parse_as_written(text: &str, path: &str) -> Result<Self, ConfigError> {
        // serde_yaml alone reports the innermost *mapping* (`cache`); the path tracker names
        // the field itself (`cache.memory`).
        let config: Self = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner().to_string();
            ConfigError::Parse {
                path: path.into(),
                message: if field == "." {
                    inner
                } else {
                    format!("field `{field}`: {inner}")
                },
            }
        })?;
        config.validate().map_err(|(field, message)| ConfigError::Invalid {
            path: path.into(),
            field,
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if self.node_id.is_empty()
            || !self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return fail("node_id", "must be non-empty and use only letters, digits, - and _");
        }
        if self.threads == 0 {
            return fail("threads", "must be at least 1");
        }
        if self.deadline_ms < 100 {
            return fail("deadline_ms", "must be at least 100");
        }
        if self.drain_ms > 600_000 {
            return fail("drain_ms", "must be at most 600000 (ten minutes)");
        }
        if self.cache.memory.0 < (1 << 20) {
            return fail("cache.memory", "must be at least 1MiB");
        }
        if self.cache.disk.0 > 0 && self.cache.dir.is_none() {
            return fail("cache.dir", "is required when cache.disk is not 0");
        }
        if self.cache.disk.0 > 0 && self.cache.disk.0 < 4 * self.cache.block.0 {
            return fail("cache.disk", "must hold at least 4 blocks (see cache.block)");
        }
        let connections = &self.connections;
        for (field, value) in [
            ("connections.max_per_client", connections.max_per_client as u64),
            ("connections.max_total", connections.max_total as u64),
            ("connections.header_timeout_ms", connections.header_timeout_ms),
            ("connections.idle_timeout_ms", connections.idle_timeout_ms),
        ] {
            if value == 0 {
                return fail(field, "must be at least 1");
            }
        }
        if self.shedding.upstream_concurrency == 0 {
            return fail("shedding.upstream_concurrency", "must be at least 1");
        }
        if self.cache.max_variants == 0 {
            return fail("cache.max_variants", "must be at least 1");
        }
        if self.cache.block.0 < (64 << 10) {
            return fail("cache.block", "must be at least 64KiB");
        }
        if EvictionPolicy::from_name(&self.cache.eviction).is_none() {
            return fail("cache.eviction", "must be one of s3fifo, sieve, lfu, lru, fifo");
        }
        if Admission::from_name(&self.cache.admission).is_none() {
            return fail("cache.admission", "must be second-request or all");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return fail("log_format", "must be text or json");
        }
        if self.sites.is_empty() {
            return fail("sites", "must list at least one site");
        }
        let routing = &self.routing;
        if routing.replicas == 0 {
            return fail("routing.replicas", "must be at least 1");
        }
        if routing.shield_timeout_ms < 50 {
            return fail("routing.shield_timeout_ms", "must be at least 50");
        }
        if routing.health_interval_ms < 10 {
            return fail("routing.health_interval_ms", "must be at least 10");
        }
        if routing.health_interval_ms * 3 / 2 >= routing.shield_timeout_ms {
            // A frozen shield must fail a probe before a request waiting on it times out, or
            // the request takes it for a slow one and asks it again.
            return fail(
                "routing.health_interval_ms",
                "must be less than two thirds of routing.shield_timeout_ms",
            );
        }
        for (i, shield) in self.shields.iter().enumerate() {
            if shield.id.is_empty() {
                return fail(&format!("shields[{i}].id"), "must not be empty");
            }
            if self.shields[..i].iter().any(|s| s.id == shield.id) {
                return fail(&format!("shields[{i}].id"), "is listed twice");
            }
        }
        let feed = &self.feed;
        for (field, value) in [
            ("feed.max_subscriptions", feed.max_subscriptions),
            ("feed.max_connections_per_client", feed.max_connections_per_client),
            ("feed.max_connections", feed.max_connections),
            ("feed.history", feed.history),
            ("feed.heartbeat_secs", feed.heartbeat_secs as usize),
        ] {
            if value == 0 {
                return fail(field, "must be at least 1");
            }
        }
        if let Some(f) = &self.freshness {
            if f.purge_api.0.is_empty() {
                return fail("freshness.purge_api", "names no purge-api");
            }
            if let Some(message) = f.purge_api.0.iter().find_map(|url| parse_origin(url).err()) {
                return fail("freshness.purge_api", &message);
            }
            if f.credential.split_once('.').map(|(node, _)| node) != Some(self.node_id.as_str()) {
                return fail(
                    "freshness.credential",
                    "must be this node's credential, `<node_id>.<hex>` (purge-api credential --node ID)",
                );
            }
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => {
                let files = fresco_tls::ServerFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                if let Err(e) = files.check() {
                    let field = if e.path == *key {
                        "tls.key_file"
                    } else {
                        "tls.cert_file"
                    };
                    return fail(field, &e.to_string());
                }
            }
            (Some(_), None) => return fail("tls.key_file", "is required with tls.cert_file"),
            (None, Some(_)) => return fail("tls.cert_file", "is required with tls.key_file"),
            (None, None) => {}
        }
        if let Some(ca) = &self.tls.ca_file
            && let Err(e) = fresco_tls::trusting(Some(ca))
        {
            return fail("tls.ca_file", &e.to_string());
        }
        for (i, site) in self.sites.iter().enumerate() {
            if site.name.is_empty() || site.name.contains(['\n', ' ']) {
                return fail(&format!("sites[{i}].name"), "must be a non-empty word");
            }
            if let Err(message) = parse_origin(&site.origin) {
                return fail(&format!("sites[{i}].origin"), &message);
            }
        }
        Ok(())
    }

    /// The store configuration of this node.
    pub fn store_config(&self) -> StoreConfig {
        let mut store = StoreConfig::new(self.cache.memory.0 as usize)
            .with_block_bytes(self.cache.block.0 as usize)
            .with_eviction(EvictionPolicy::from_name(&self.cache.eviction).unwrap_or_default())
            .with_admission(Admission::from_name(&self.cache.admission).unwrap_or_default());
        if let (Some(dir), true) = (&self.cache.dir, self.cache.disk.0 > 0) {
            store = store.with_disk(dir, self.cache.disk.0 as usize);
        }
        store
    }

    /// The request deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The longest graceful stop.
    pub fn drain_limit(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    /// The listener's certificate and key, when it serves HTTPS.
    pub fn server_tls(&self) -> Option<fresco_tls::ServerFiles> {
        Some(fresco_tls::ServerFiles {
            cert: self.tls.cert_file.clone()?,
            key: self.tls.key_file.clone()?,
        })
    }

    /// An HTTP client builder for purge-api and the shields' admin endpoints: it trusts
    /// `tls.ca_file` when there is one (checked when the configuration was loaded).
    pub fn http_client(&self) -> reqwest::ClientBuilder {
        crate::tls::trusted_client(self.tls.ca_file.as_deref())
    }
}

/// Where an origin (or purge-api) is, from its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginUrl {
    /// `host:port`: what is resolved and sent as `Host`.
    pub authority: String,
    /// The host alone: what a TLS origin's certificate must name (SNI).
    pub host: String,
    /// `https://`.
    pub tls: bool,
}

/// Parses an origin URL, `http://host[:port]` or `https://host[:port]`.
pub fn parse_origin(origin: &str) -> Result<OriginUrl, String> {
    let uri: http::Uri = origin.parse().map_err(|e| format!("`{origin}` is not a URL: {e}"))?;
    let (tls, default_port) = match uri.scheme_str() {
        Some("http") => (false, 80),
        Some("https") => (true, 443),
        Some(other) => return Err(format!("scheme `{other}` is not supported; use http:// or https://")),
        None => return Err(format!("`{origin}` needs a scheme, like http://{origin}")),
    };
    let host = uri.host().ok_or_else(|| format!("`{origin}` has no host"))?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!("`{origin}` must not have a path"));
    }
    Ok(OriginUrl {
        authority: format!("{host}:{}", uri.port_u16().unwrap_or(default_port)),
        host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
node_id: edge-1
listen: 127.0.0.1:8081
admin_listen: 127.0.0.1:9081
cache: { memory: 64MiB, disk: 1GiB, dir: /tmp/x }
shields: [127.0.0.1:8090, {id: shield-2, address: 127.0.0.1:8091, admin: 127.0.0.1:9091}]
sites:
  - name: default
    origin: http://127.0.0.1:8080
";

    #[test]
    fn accepts_a_good_file_with_defaults() {
        let c = NodeConfig::parse(GOOD, "edge.yaml").unwrap();
        assert_eq!(c.cache.memory, ByteSize(64 << 20));
        assert_eq!(c.cache.disk, ByteSize(1 << 30));
        assert_eq!(c.deadline_ms, 5000);
        assert_eq!(c.drain_ms, 10_000);
        assert_eq!(c.cache.eviction, "s3fifo");
        assert_eq!(c.cache.admission, "second-request");
        assert_eq!(
            c.sites[0].ignore_query,
            ["fresco"],
            "live.js's parameter is never part of a key"
        );
        assert_eq!(c.sites[0].browser_cache, BrowserCache::Revalidate);
        assert_eq!(c.feed.max_subscriptions, 256);
        assert_eq!(c.routing.replicas, 1);
        assert!(!c.work_stealing, "connections stay on their thread unless asked");
        assert_eq!(c.shields[0].id, "127.0.0.1:8090", "a bare address is its own id");
        assert_eq!(c.shields[1].admin, Some("127.0.0.1:9091".parse().unwrap()));
    }

    fn error_of(text: &str) -> String {
        NodeConfig::parse(text, "edge.yaml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let e = error_of(&GOOD.replace("memory: 64MiB", "memory: 64 apples"));
        assert!(e.contains("cache.memory") || e.contains("cache"), "{e}");
        assert!(e.contains("apples"), "{e}");
        let e = error_of(&GOOD.replace("http://127.0.0.1:8080", "ftp://x"));
        assert!(e.contains("sites[0].origin"), "{e}");
        let e = error_of(&GOOD.replace("listen: 127.0.0.1:8081", "listen: nowhere"));
        assert!(e.contains("listen"), "{e}");
        let e = error_of(&GOOD.replace("node_id: edge-1", "node_id: edge-1\ncolour: blue"));
        assert!(e.contains("colour"), "{e}");
        let e = error_of(&GOOD.replace(", dir: /tmp/x", ", dir: /tmp/x, admission: sometimes"));
        assert!(e.contains("cache.admission"), "{e}");
        let e = error_of(&GOOD.replace(", dir: /tmp/x", ""));
        assert!(e.contains("cache.dir"), "{e}");
        let e = error_of(&GOOD.replace("node_id: edge-1", "node_id: edge-1\ndrain_ms: 3600000"));
        assert!(e.contains("drain_ms"), "{e}");
        let e = error_of(&GOOD.replace("node_id: edge-1", "node_id: edge-1\nrouting: {replicas: 0}"));
        assert!(e.contains("routing.replicas"), "{e}");
        let e = error_of(&GOOD.replace("127.0.0.1:8090,", "nowhere,"));
        assert!(e.contains("shields[0]") && e.contains("ip:port"), "{e}");
        let e = error_of(&GOOD.replace("127.0.0.1:8090,", "{id: shield-2, address: 127.0.0.1:1},"));
        assert!(e.contains("shields[1].id") && e.contains("twice"), "{e}");
    }

    #[test]
    fn tls_errors_name_the_field_and_the_file() {
        let with = |tls: &str| GOOD.replace("node_id: edge-1", &format!("node_id: edge-1\ntls: {tls}"));
        let e = error_of(&with(
            "{cert_file: /nonexistent/edge.crt, key_file: /nonexistent/edge.key}",
        ));
        assert!(
            e.contains("tls.cert_file") && e.contains("/nonexistent/edge.crt"),
            "{e}"
        );
        let e = error_of(&with("{cert_file: /nonexistent/edge.crt}"));
        assert!(e.contains("tls.key_file") && e.contains("required"), "{e}");
        let e = error_of(&with("{ca_file: /nonexistent/ca.crt}"));
        assert!(e.contains("tls.ca_file"), "{e}");
        let e = error_of(&GOOD.replace("http://127.0.0.1:8080", "https://origin.example:8443/images"));
        assert!(e.contains("sites[0].origin") && e.contains("path"), "{e}");
        let origin = parse_origin("https://origin.example").unwrap();
        assert_eq!(
            (origin.authority.as_str(), origin.host.as_str(), origin.tls),
            ("origin.example:443", "origin.example", true)
        );
    }

    #[test]
    fn the_example_configurations_are_valid() {
        for (name, text) in [
            ("conf/edge.yaml", include_str!("../../conf/edge.yaml")),
            ("conf/shield.yaml", include_str!("../../conf/shield.yaml")),
        ] {
            NodeConfig::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("1.5KiB").unwrap(), ByteSize(1536));
        assert_eq!(ByteSize::parse("2GB").unwrap(), ByteSize(2_000_000_000));
        assert!(ByteSize::parse("12 parsecs").is_err());
    }
}
