//! [`CacheProxy`]: the pingora `ProxyHttp` both tiers run.
//!
//! Edge and shield differ only in where a miss goes ([`Role`]): a shield asks the site's
//! origin; an edge asks the key's shield on the ring ([`crate::routing`]), and the origin when
//! no shield can be used (or none is known). Everything else, cache policy included, is shared.

use std::any::Any;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fresco_store::FoyerStorage;
use pingora_cache::CacheKey;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::storage::{PurgeTarget, PurgeType, Storage};
use pingora_cache::{CacheMeta, CacheOptionOverrides, CachePhase, NoCacheReason, RespCacheable};
use pingora_cache::{ForcedFreshness, HitHandler};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{HMap, RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::cache_key::{cache_key, normalized_target, primary_key};
use crate::config::{BrowserCache, NodeConfig, parse_origin};
use crate::connections::{ConnectionTable, OnConnection, RequestOnConnection, open_files_limit};
use crate::content_coding::HitCoding;
use crate::drain::{InFlight, RequestsInFlight};
use crate::errors::{FailureKind, send_json_error, send_json_error_with};
use crate::expiry::{self, META_DEFAULTS, grant_stale_if_error, stale_allowed};
use crate::feed::FeedHub;
use crate::feed::index::UrlFacts;
use crate::feed::live_js::serve_live_js;
use crate::feed::serve::serve_events;
use crate::freshness::Freshness;
use crate::freshness::rules::Verdict;
use crate::hop_by_hop;
use crate::immutable::{marked_immutable, versioned_url};
use crate::internal_headers::{
    APPLIED_HEADER, FILL_SEQ, FILL_SEQ_HEADER, MIN_SEQ_HEADER, ORIGIN_CACHE_CONTROL_HEADER, ORIGIN_DATE_HEADER,
    X_CACHE, X_FRESCO_NODE, hide_from_clients,
};
use crate::lifetime;
use crate::methods::{self, BodyLimit};
use crate::metrics::METRICS;
use crate::poisoning::{MAX_TARGET_BYTES, prepare_upstream, refused_framing, target_too_long};
use crate::revalidation::NotModified;
use crate::routing::{Failure, Retry, Shield, ShieldRouter, hash64};
use crate::shedding::{Admission, UpstreamLimits};
use crate::variance::{VariantLimit, Vary, vary};

/// Longest connect to a shield before the next one is tried.
const SHIELD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Which tier a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Client-facing: misses go to a shield.
    Edge,
    /// Origin-facing: misses go to the origin.
    Shield,
}

impl Role {
    /// The role's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Edge => "edge",
            Self::Shield => "shield",
        }
    }
}

/// A site as the proxy uses it: names resolved, origin resolved.
pub struct Site {
    name: String,
    hosts: Vec<String>,
    origin: SocketAddr,
    origin_authority: String,
    /// The name an `https://` origin's certificate must carry; `None` for `http://`.
    origin_tls: Option<String>,
    ignore_query: Vec<String>,
    vary_accept: bool,
    versioned_urls: bool,
    browser_cache: BrowserCache,
}

/// Where the current upstream attempt of a request goes.
#[derive(Clone, Debug, Default)]
enum Upstream {
    /// Not gone upstream (yet).
    #[default]
    None,
    /// A shield, picked on the ring.
    Shield(Arc<Shield>),
    /// The site's origin.
    Origin,
}

impl Upstream {
    fn is_shield(&self) -> bool {
        matches!(self, Self::Shield(_))
    }
}

/// Per-request state.
pub struct RequestCtx {
    site: usize,
    started: Instant,
    upstream: Upstream,
    /// Attempts at the current shield so far (asking a slow shield again counts).
    shield_attempts: u32,
    /// Shields that failed this request: the next attempt skips them.
    tried: Vec<Arc<Shield>>,
    /// A slow (not hung) shield to ask again: the retry joins its fetch.
    ask_again: Option<Arc<Shield>>,
    /// The purges applied when the request began: what a fill made by it is fresh against.
    fill_seq: u64,
    /// The upstream's `X-Fresco-Applied`, when it sent one.
    upstream_applied: Option<u64>,
    /// This request revalidates a hit because the node has no lease.
    fenced: bool,
    /// The hit is being revalidated because it may be purged (a soft purge, a lost lease, an
    /// edge ahead of this shield): no stale copy of it may go out.
    in_doubt: bool,
    /// Shield: the purge sequence the asking edge had applied (`X-Fresco-Min-Seq`).
    min_seq: u64,
    /// How a hit's body is coded and sent.
    coding: HitCoding,
    /// Counts this request for a graceful stop (none for a change feed).
    in_flight: Option<InFlight>,
    /// The connection this request came on is busy until this is dropped.
    on_connection: Option<RequestOnConnection>,
    /// This request's slot at its upstream (`crate::shedding`).
    admission: Option<Admission>,
    /// The upstream was saturated: the miss is answered 503 with `Retry-After`.
    shed: bool,
    /// A method other than GET or HEAD: passed upstream, not cached (`crate::methods`).
    passed: bool,
    /// How much of a passed request's body has gone upstream.
    body: BodyLimit,
    /// The upstream answered a revalidation with a 304: the fields it updates.
    not_modified: Option<NotModified>,
}

/// The caching reverse proxy of an edge or a shield.
pub struct CacheProxy {
    role: Role,
    freshness: Option<Arc<Freshness>>,
    node_id: String,
    sites: Vec<Site>,
    /// How long immutable objects may be served stale while their upstream fails.
    stale_if_error_secs: u32,
    /// Edge: send clients the node-only headers too (`crate::internal_headers`).
    debug_headers: bool,
    /// Edge: where misses go.
    router: Option<Arc<ShieldRouter>>,
    /// How many variants of a URL may be stored.
    variants: VariantLimit,
    /// How many fetches each upstream gets.
    upstream_limits: UpstreamLimits,
    /// `Retry-After` of a shed miss.
    retry_after: String,
    /// Largest body of a passed request.
    max_request_body: u64,
    deadline: Duration,
    store: &'static FoyerStorage,
    lock: &'static CacheKeyLockImpl,
    /// Edge with freshness: the change feed.
    feed: Option<Arc<FeedHub>>,
    requests: RequestsInFlight,
    /// Client connections, told when their requests start and end (`crate::connections`).
    connections: &'static ConnectionTable,
}

impl CacheProxy {
    /// Builds the proxy of a node. Fails if an origin name does not resolve. With `freshness`,
    /// hits are checked against the purges applied and served without revalidation only
    /// under a lease.
    pub fn new(
        role: Role,
        config: &NodeConfig,
        store: &'static FoyerStorage,
        freshness: Option<Arc<Freshness>>,
        feed: Option<Arc<FeedHub>>,
        router: Option<Arc<ShieldRouter>>,
        requests: RequestsInFlight,
    ) -> std::io::Result<Self> {
        expiry::configure(&config.cache);
        let sites = config
            .sites
            .iter()
            .map(|s| {
                let url = parse_origin(&s.origin).map_err(std::io::Error::other)?;
                let origin = url.authority.to_socket_addrs()?.next().ok_or_else(|| {
                    std::io::Error::other(format!("origin {} of site {} does not resolve", url.authority, s.name))
                })?;
                Ok(Site {
                    name: s.name.clone(),
                    hosts: s.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    origin,
                    origin_tls: url.tls.then(|| url.host.clone()),
                    origin_authority: url.authority,
                    ignore_query: s.ignore_query.clone(),
                    vary_accept: s.vary_accept,
                    versioned_urls: s.versioned_urls,
                    browser_cache: s.browser_cache,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let lock: Box<CacheKeyLockImpl> = CacheLock::new_boxed(config.deadline());
        Ok(Self {
            role,
            freshness,
            node_id: config.node_id.clone(),
            stale_if_error_secs: config.cache.stale_if_error_secs,
            debug_headers: config.debug_headers,
            sites,
            router: router.filter(|r| role == Role::Edge && r.has_shields()),
            variants: VariantLimit::new(config.cache.max_variants, 100_000),
            upstream_limits: UpstreamLimits::new(&config.shedding),
            retry_after: config.shedding.retry_after_secs.to_string(),
            max_request_body: config.max_request_body.0,
            deadline: config.deadline(),
            store,
            lock: Box::leak(lock),
            feed: if role == Role::Edge { feed } else { None },
            requests,
            connections: Box::leak(Box::new(ConnectionTable::new(
                &config.connections,
                open_files_limit(),
                config.shedding.retry_after_secs,
            ))),
        })
    }

    /// The client connections of this proxy, for the [`crate::connections::ConnectionGate`]
    /// in front of it.
    pub fn connections(&self) -> &'static ConnectionTable {
        self.connections
    }

    /// Whether an object never changes under its URL (`crate::immutable`): the origin marked
    /// it, or its site has versioned URLs and this is one.
    fn is_immutable(&self, session: &Session, headers: &HMap, ctx: &RequestCtx) -> bool {
        let target = session.req_header().uri.path_and_query().map_or("/", |pq| pq.as_str());
        marked_immutable(headers) || (self.sites[ctx.site].versioned_urls && versioned_url(target))
    }

    /// Drops what this node stores of `target` on `site` (its variants go with it: they are
    /// found only through it).
    async fn invalidate(&self, site: usize, target: &str) {
        let site = &self.sites[site];
        let key = cache_key(primary_key(&site.name, target, &site.ignore_query)).to_compact();
        let span = pingora_cache::trace::Span::inactive().handle();
        let _ = self
            .store
            .purge(PurgeTarget::Active(&key), PurgeType::Invalidation, &span)
            .await;
        METRICS.invalidations.inc();
    }

    fn site_for(&self, req: &RequestHeader) -> usize {
        let host = crate::methods::request_host(req).unwrap_or_default();
        self.sites
            .iter()
            .position(|s| s.name == host || s.hosts.contains(&host))
            .unwrap_or(0)
    }

    /// What browsers are told about caching a response, when it is not left as the origin
    /// said: a mutable image is revalidated on every use (`no-cache`, with its ETag), so the
    /// bytes a page loads after a purge are new; a versioned or `immutable` one is kept a year.
    /// Private and `no-store` responses, and errors, keep the origin's word.
    fn browser_cache_control(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &RequestCtx,
    ) -> Option<&'static str> {
        let browser_cache = self.sites[ctx.site].browser_cache;
        if ctx.passed
            || self.role != Role::Edge
            || browser_cache != BrowserCache::Revalidate
            || resp.status.as_u16() >= 400
        {
            return None;
        }
        let origin = resp
            .headers
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if origin.contains("private") || origin.contains("no-store") {
            return None;
        }
        let site = &self.sites[ctx.site];
        let target = session.req_header().uri.path_and_query().map_or("/", |pq| pq.as_str());
        if marked_immutable(&resp.headers) || (site.versioned_urls && versioned_url(target)) {
            Some("public, max-age=31536000, immutable")
        } else {
            Some("no-cache")
        }
    }

    /// Answers what the edge serves itself under `/_fresco/`: the change feed and `live.js`.
    async fn serve_own(&self, session: &mut Session) -> Result<()> {
        let path = session.req_header().uri.path();
        match (path, &self.feed) {
            ("/_fresco/events", Some(feed)) => serve_events(feed, self.store, session).await,
            ("/_fresco/live.js", _) => serve_live_js(session, &self.node_id).await,
            ("/_fresco/events", None) => {
                let message = "this edge has no change feed: it follows no purge-api (no `freshness` section)";
                send_json_error(session, 404, message, &self.node_id).await
            }
            _ => {
                let message = "unknown /_fresco/ path: the edge serves /_fresco/events and /_fresco/live.js";
                send_json_error(session, 404, message, &self.node_id).await
            }
        }
    }

    fn remaining(&self, ctx: &RequestCtx) -> Result<Duration> {
        self.deadline
            .checked_sub(ctx.started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Error::explain(ErrorType::ReadTimedout, "request deadline passed before going upstream"))
    }
}

/// The `X-Cache` value for where a response came from.
pub fn cache_label(phase: CachePhase) -> &'static str {
    match phase {
        CachePhase::Hit => "HIT",
        CachePhase::Miss | CachePhase::Expired => "MISS",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
        CachePhase::Stale | CachePhase::StaleUpdating => "STALE",
        _ => "BYPASS",
    }
}

/// Whether a request's `Cache-Control` has `only-if-cached`.
fn only_if_cached(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"))
}

/// What the ring hashes for a request: the primary cache key, so a key's variants share a
/// shield (the path for a request the cache was never enabled for).
fn routing_key(session: &Session) -> u64 {
    if session.cache.enabled() {
        hash64(session.cache.cache_key().primary_key())
    } else {
        hash64(session.req_header().uri.path().as_bytes())
    }
}

/// A header's value as a number.
fn header_u64(headers: &HMap, name: impl http::header::AsHeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

static SURROGATE_KEY: http::HeaderName = http::HeaderName::from_static("surrogate-key");
static CACHE_TAG: http::HeaderName = http::HeaderName::from_static("cache-tag");

/// The surrogate keys of a response: `Surrogate-Key` (space-separated) and `Cache-Tag`
/// (comma-separated).
pub fn surrogate_keys(headers: &HMap) -> impl Iterator<Item = &str> {
    let spaced = headers
        .get_all(&SURROGATE_KEY)
        .into_iter()
        .filter_map(|v| v.to_str().ok());
    let commas = headers.get_all(&CACHE_TAG).into_iter().filter_map(|v| v.to_str().ok());
    spaced
        .flat_map(|v| v.split(' '))
        .chain(commas.flat_map(|v| v.split(',')))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[async_trait]
impl ProxyHttp for CacheProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            site: 0,
            started: Instant::now(),
            upstream: Upstream::None,
            shield_attempts: 0,
            tried: Vec::new(),
            ask_again: None,
            fill_seq: 0,
            upstream_applied: None,
            fenced: false,
            in_doubt: false,
            min_seq: 0,
            coding: HitCoding::default(),
            in_flight: Some(self.requests.enter()),
            on_connection: None,
            admission: None,
            shed: false,
            passed: false,
            body: BodyLimit::default(),
            not_modified: None,
        }
    }

    /// Carries the connection's activity to its next request (HTTP/1 keep-alive), so that
    /// request does not look its connection up again (`crate::connections`).
    fn persist_connection_context(&self, _: &Session, ctx: &RequestCtx) -> Option<Box<dyn Any + Send + Sync>> {
        ctx.on_connection
            .as_ref()
            .map(|request| Box::new(request.connection()) as Box<dyn Any + Send + Sync>)
    }

    fn on_connection_reuse(&self, _: &mut Session, ctx: &mut RequestCtx, previous: Box<dyn Any + Send + Sync>) {
        if let Ok(connection) = previous.downcast::<OnConnection>() {
            ctx.on_connection = Some(connection.request_started());
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if ctx.on_connection.is_none() {
            ctx.on_connection = self.connections.request_started(session);
        }
        if self.role == Role::Edge && session.req_header().uri.path().starts_with("/_fresco/") {
            // A feed lasts until its client leaves: a stop ends it rather than waiting for it.
            ctx.in_flight = None;
            self.serve_own(session).await?;
            return Ok(true);
        }
        let req = session.req_header();
        ctx.passed = !methods::is_cached(&req.method);
        if ctx.passed && BodyLimit::declared_over(req, self.max_request_body) {
            METRICS.error(FailureKind::Client);
            let message = format!("the request body is over {} bytes", self.max_request_body);
            send_json_error(session, 413, &message, &self.node_id).await?;
            return Ok(true);
        }
        if let Some(reason) = refused_framing(req) {
            METRICS.error(FailureKind::Client);
            send_json_error(session, 400, reason, &self.node_id).await?;
            return Ok(true);
        }
        if target_too_long(req) {
            METRICS.error(FailureKind::Client);
            let message = format!("the request target is over {MAX_TARGET_BYTES} bytes");
            send_json_error(session, 414, &message, &self.node_id).await?;
            return Ok(true);
        }
        ctx.site = self.site_for(req);
        if let Some(fresh) = &self.freshness {
            ctx.fill_seq = fresh.applied();
            if self.role == Role::Shield {
                ctx.min_seq = header_u64(&session.req_header().headers, MIN_SEQ_HEADER).unwrap_or(0);
            }
        }
        Ok(false)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        if ctx.passed {
            return Ok(());
        }
        let mut overrides = CacheOptionOverrides::default();
        // Waiters give up before the deadline so they still have time to fetch themselves.
        overrides.wait_timeout = Some(self.deadline * 3 / 4);
        session
            .cache
            .enable(self.store, None, None, Some(self.lock), Some(overrides));
        session
            .cache
            .set_max_file_size_bytes(self.store.config().max_object_bytes());
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        let site = &self.sites[ctx.site];
        let target = session.req_header().uri.path_and_query().map_or("/", |pq| pq.as_str());
        Ok(cache_key(primary_key(&site.name, target, &site.ignore_query)))
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        hit: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>>
    where
        Self::CTX: Send + Sync,
    {
        ctx.coding = HitCoding::choose(hit, session.req_header());
        let Some(fresh) = &self.freshness else { return Ok(None) };
        let headers = meta.headers();
        let fill_seq = header_u64(headers, &FILL_SEQ).unwrap_or(0);
        // The key's primary part is the primary key text (see `cache_key`), so it need not be
        // kept on the side for every request.
        let primary = std::str::from_utf8(session.cache.cache_key().primary_key()).unwrap_or("");
        match fresh.verdict(primary, surrogate_keys(headers), fill_seq) {
            Verdict::Purged => {
                METRICS.purged_hits.inc();
                return Ok(Some(ForcedFreshness::ForceMiss));
            }
            Verdict::Stale => {
                METRICS.purged_hits.inc();
                ctx.in_doubt = true;
                return Ok(Some(ForcedFreshness::ForceExpired));
            }
            Verdict::Fresh => {}
        }
        if ctx.min_seq > ctx.fill_seq {
            // The asking edge has applied purges this shield has not: only the origin can say
            // whether this copy is still current.
            ctx.in_doubt = true;
            return Ok(Some(ForcedFreshness::ForceExpired));
        }
        if fresh.is_leased() {
            return Ok(None);
        }
        if self.is_immutable(session, headers, ctx) {
            return Ok(None);
        }
        // Fenced: a purge may have been missed, so the cached bytes go out only if an upstream
        // confirms them (conditional GET); if none answers, 503, never the cached bytes.
        ctx.fenced = true;
        ctx.in_doubt = true;
        METRICS.fenced_revalidations.inc();
        Ok(Some(ForcedFreshness::ForceExpired))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        if resp.headers.contains_key(http::header::SET_COOKIE) {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom("set-cookie")));
        }
        // pingora merged only a few of a 304's fields into the stored header.
        let updated;
        let resp = match ctx.not_modified.take() {
            Some(update) => {
                let mut merged = resp.clone();
                update.apply(&mut merged)?;
                updated = merged;
                &updated
            }
            None => resp,
        };
        // A 304 merged into a stored header brings back the browsers' Cache-Control this node
        // stored; the decision is the origin's, kept beside it.
        let restored;
        let resp = match resp.headers.get(ORIGIN_CACHE_CONTROL_HEADER) {
            Some(origin)
                if self
                    .browser_cache_control(session, resp, ctx)
                    .is_some_and(|b| resp.headers.get(http::header::CACHE_CONTROL).is_some_and(|cc| cc == b)) =>
            {
                let mut original = resp.clone();
                original.insert_header(http::header::CACHE_CONTROL, origin.clone())?;
                restored = original;
                &restored
            }
            _ => resp,
        };
        let auth = session.req_header().headers.contains_key(http::header::AUTHORIZATION);
        let mut cacheable = lifetime::cacheable(resp.clone(), auth, &META_DEFAULTS);
        if matches!(cacheable, RespCacheable::Cacheable(_)) {
            // Only a response that would be stored takes one of its URL's variant places.
            match vary(&resp.headers, session.req_header(), self.sites[ctx.site].vary_accept) {
                Vary::Everything => return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom("vary: *"))),
                Vary::Variant(variant) if !self.variants.admit(session.cache.cache_key().primary_bin(), variant) => {
                    return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom("too many variants")));
                }
                Vary::Variant(_) | Vary::None => {}
            }
        }
        if let RespCacheable::Cacheable(meta) = &mut cacheable
            && self.is_immutable(session, &resp.headers, ctx)
            && !lifetime::forbids_stale(resp)
        {
            grant_stale_if_error(meta, self.stale_if_error_secs);
        }
        if let RespCacheable::Cacheable(meta) = &mut cacheable
            && let Some(browser) = self.browser_cache_control(session, resp, ctx)
        {
            // Stored as browsers get it, so that hits insert no header.
            let stored = meta.response_header_mut();
            if let Some(origin) = resp.headers.get(http::header::CACHE_CONTROL) {
                stored.insert_header(ORIGIN_CACHE_CONTROL_HEADER, origin.clone())?;
            }
            stored.insert_header(http::header::CACHE_CONTROL, browser)?;
        }
        if self.freshness.is_some()
            && let RespCacheable::Cacheable(meta) = &mut cacheable
        {
            // A shield behind this node's purges may have answered from a copy this node
            // already knows is purged: serve it (the request may be older than the purge's
            // answer), but do not keep it.
            if ctx.upstream.is_shield() && ctx.upstream_applied.unwrap_or(0) < ctx.fill_seq {
                return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(
                    "shield behind this node's purges",
                )));
            }
            // Set here rather than on the upstream response so that a 304's merged header
            // gets it too: the revalidated object is fresh from this request's start on.
            meta.response_header_mut()
                .insert_header(FILL_SEQ_HEADER, ctx.fill_seq)?;
            if let Some(feed) = &self.feed {
                let primary = std::str::from_utf8(session.cache.cache_key().primary_key()).unwrap_or("");
                feed.learn(
                    primary,
                    UrlFacts {
                        tags: surrogate_keys(&resp.headers).map(str::to_string).collect(),
                        etag: resp
                            .headers
                            .get(http::header::ETAG)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                    },
                );
            }
        }
        Ok(cacheable)
    }

    fn cache_vary_filter(&self, meta: &CacheMeta, ctx: &mut RequestCtx, req: &RequestHeader) -> Option<HashBinary> {
        match vary(meta.headers(), req, self.sites[ctx.site].vary_accept) {
            Vary::Variant(variant) => Some(variant),
            Vary::None | Vary::Everything => None,
        }
    }

    async fn proxy_upstream_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<bool>
    where
        Self::CTX: Send + Sync,
    {
        // RFC 9111 §5.2.1.7: a client that asks for a stored response only gets a 504 rather
        // than a fetch. Operators use it to see which shield holds a key.
        if only_if_cached(session.req_header()) {
            let message = "not in this node's cache (the request said only-if-cached)";
            send_json_error(session, 504, message, &self.node_id).await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let remaining = self.remaining(ctx)?;
        // pingora sends a retried request's buffered body through `request_body_filter` again.
        ctx.body = BodyLimit::default();
        let shield = match (ctx.ask_again.take(), &self.router) {
            (Some(again), _) => Some(again),
            (None, Some(router)) => {
                ctx.shield_attempts = 0;
                router.pick(routing_key(session), &ctx.tried)
            }
            (None, None) => None,
        };
        ctx.shield_attempts += 1;
        let (addr, tls, answer_within) = match &shield {
            Some(shield) => {
                METRICS.shield_fetches.inc();
                // A passed request has no fetch to join when asked again: it waits its deadline.
                let timeout = match ctx.passed {
                    true => remaining,
                    false => self.router.as_ref().map_or(remaining, |r| r.shield_timeout()),
                };
                (shield.address, None, remaining.min(timeout))
            }
            None => {
                METRICS.origin_fetches.inc();
                let site = &self.sites[ctx.site];
                (site.origin, site.origin_tls.as_deref(), remaining)
            }
        };
        // A shield that does not connect within a second is passed over for the next one. An
        // origin has no next one, and a single dropped SYN is resent only after a second, so
        // its connect may take the whole deadline.
        let connect_within = match &shield {
            Some(_) => remaining.min(SHIELD_CONNECT_TIMEOUT),
            None => remaining,
        };
        ctx.upstream = shield.map_or(Upstream::Origin, Upstream::Shield);
        // A retry gives back the slot of its previous upstream before it queues for the next.
        ctx.admission = None;
        match self.upstream_limits.admit(addr, remaining).await {
            Some(admission) => ctx.admission = Some(admission),
            None => {
                ctx.shed = true;
                METRICS.shed.inc();
                return Err(Error::explain(ErrorType::HTTPStatus(503), "upstream saturated"));
            }
        }
        // pingora verifies a TLS origin's certificate and name by default, against
        // `tls.ca_file` or the system's roots.
        let mut peer = HttpPeer::new(addr, tls.is_some(), tls.unwrap_or_default().to_string());
        peer.options.connection_timeout = Some(connect_within);
        peer.options.total_connection_timeout = Some(remaining);
        peer.options.read_timeout = Some(answer_within);
        peer.options.write_timeout = Some(answer_within);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(&self, _: &mut Session, _: &HttpPeer, ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
        if let (Upstream::Shield(shield), Some(router)) = (&ctx.upstream, &self.router) {
            // Down: the key's next shield, and after the last one the origin itself.
            router.failed(shield, Failure::Unreachable, ctx.shield_attempts);
            ctx.tried.push(shield.clone());
            METRICS.shield_failovers.inc();
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let (Upstream::Shield(shield), Some(router)) = (&ctx.upstream, &self.router) else {
            // pingora's default: an idempotent request sent on a reused connection is sent again.
            if session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated() {
                e.retry.decide_reuse(client_reused);
            } else {
                e.set_retry(false);
            }
            return e;
        };
        if session.response_written().is_some() {
            // Part of the answer is out: nothing can be tried again.
            e.set_retry(false);
            return e;
        }
        if ctx.passed {
            // A POST may have done its work before the shield went quiet: it is neither sent
            // again nor held against the shield (a client's slow upload must not push a
            // healthy shield out of the ring).
            e.set_retry(false);
            return e;
        }
        let failure = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::TimedOut,
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError if client_reused => {
                // A pooled connection the shield had closed: nothing is wrong with the shield.
                ctx.ask_again = Some(shield.clone());
                e.set_retry(true);
                return e;
            }
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => Failure::Unreachable,
            _ => {
                e.set_retry(false);
                return e;
            }
        };
        match router.failed(shield, failure, ctx.shield_attempts) {
            Retry::SameShield => ctx.ask_again = Some(shield.clone()),
            Retry::NextShield => {
                ctx.tried.push(shield.clone());
                METRICS.shield_failovers.inc();
            }
        }
        e.set_retry(true);
        e
    }

    async fn request_body_filter(
        &self,
        _: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        let len = body.as_ref().map_or(0, |b| b.len());
        if !ctx.body.take(len, self.max_request_body) {
            METRICS.error(FailureKind::Client);
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body over max_request_body",
            ));
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        // Exactly what is keyed goes upstream (`crate::poisoning`). An edge's client address is
        // its X-Forwarded-For; a shield's client is an edge, whose header it keeps.
        let site = &self.sites[ctx.site];
        let asked = session.req_header().uri.path_and_query().map_or("/", |pq| pq.as_str());
        let target = normalized_target(asked, &site.ignore_query);
        let client = match self.role {
            Role::Edge => session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string()),
            Role::Shield => None,
        };
        prepare_upstream(req, &target, client.as_deref())?;
        // What is stored must not depend on the client that missed; the store compresses.
        req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        if matches!(ctx.upstream, Upstream::Origin) {
            req.insert_header(http::header::HOST, &self.sites[ctx.site].origin_authority)?;
        } else if self.freshness.is_some() {
            req.insert_header(MIN_SEQ_HEADER, ctx.fill_seq)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        // The shield's per-hop headers give way to this node's. What is stored is what a hit
        // sends, so hits need no header inserts (each costs allocations in pingora-http);
        // `response_filter` corrects `X-Cache` on every other path.
        hop_by_hop::remove_connection_listed(resp);
        if let Some(date) = resp.remove_header(ORIGIN_DATE_HEADER) {
            resp.insert_header(http::header::DATE, date)?;
        }
        ctx.not_modified = NotModified::of(resp);
        resp.insert_header("x-cache", "HIT")?;
        resp.insert_header("x-fresco-node", &self.node_id)?;
        ctx.upstream_applied = header_u64(&resp.headers, APPLIED_HEADER);
        if ctx.upstream_applied.is_some() {
            resp.remove_header(APPLIED_HEADER);
        }
        let answered_from_content = resp.status.is_success() || resp.status == http::StatusCode::NOT_MODIFIED;
        if self.freshness.is_some()
            && ctx.upstream.is_shield()
            && answered_from_content
            && ctx.upstream_applied.unwrap_or(0) < ctx.fill_seq
        {
            // A shield that follows the protocol goes to the origin when it is behind; this
            // one did not, and its copy may be one this node knows is purged.
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "shield answered from behind this node's purges",
            ));
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        if ctx.passed {
            for target in methods::invalidated_targets(session.req_header(), resp) {
                self.invalidate(ctx.site, &target).await;
            }
        }
        let label = cache_label(session.cache.phase());
        let stored_as_hit = label == "HIT"
            && resp.headers.get(&X_CACHE).is_some_and(|v| v == "HIT")
            && resp
                .headers
                .get(&X_FRESCO_NODE)
                .is_some_and(|v| v == self.node_id.as_str());
        if ctx.coding.stored.is_some()
            && matches!(
                session.cache.phase(),
                CachePhase::Hit
                    | CachePhase::Revalidated
                    | CachePhase::RevalidatedNoCache(_)
                    | CachePhase::Stale
                    | CachePhase::StaleUpdating
            )
        {
            ctx.coding.describe(resp)?;
        }
        if !stored_as_hit {
            resp.insert_header("x-cache", label)?;
            resp.insert_header("x-fresco-node", &self.node_id)?;
            // A hit's stored header already carries it (see `response_cache_filter`).
            if let Some(cache_control) = self.browser_cache_control(session, resp, ctx) {
                resp.insert_header(http::header::CACHE_CONTROL, cache_control)?;
            }
        }
        if self.role == Role::Shield && self.freshness.is_some() {
            // What came from the origin during this request is current whatever the edge applied.
            let fresh_against = if session.cache.upstream_used() {
                ctx.fill_seq.max(ctx.min_seq)
            } else {
                ctx.fill_seq
            };
            resp.insert_header(APPLIED_HEADER, fresh_against)?;
        }
        if self.role == Role::Shield
            && let Some(date) = resp.headers.get(http::header::DATE)
        {
            resp.insert_header(ORIGIN_DATE_HEADER, date.clone())?;
        }
        if self.role == Role::Edge {
            lifetime::hide_targeted_fields(resp);
            if !self.debug_headers {
                hide_from_clients(resp);
            }
        }
        Ok(())
    }

    fn should_serve_stale(&self, _: &mut Session, ctx: &mut RequestCtx, error: Option<&Error>) -> bool {
        stale_allowed(error, ctx.in_doubt)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        if ctx.shed {
            let message = "the upstream is saturated; retry after Retry-After seconds";
            let retry_after = [("retry-after", self.retry_after.as_str())];
            if let Err(e) = send_json_error_with(session, 503, message, &self.node_id, &retry_after).await {
                tracing::debug!(error = %e, "could not send the error response");
            }
            return FailToProxy {
                error_code: 503,
                can_reuse_downstream: false,
            };
        }
        let (kind, mut status) = FailureKind::of(e);
        let mut message = kind.message();
        if ctx.fenced && kind != FailureKind::Client {
            status = 503;
            message = "this node lost its purge lease and no upstream could confirm the cached copy";
        }
        METRICS.error(kind);
        let already_answered = session.response_written().is_some();
        let client_gone = kind == FailureKind::Client
            && matches!(
                e.etype(),
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
            );
        if !already_answered
            && !client_gone
            && let Err(write_error) = send_json_error(session, status, message, &self.node_id).await
        {
            tracing::debug!(error = %write_error, "could not send the error response");
        }
        tracing::warn!(status, kind = kind.label(), error = %e, "request failed");
        FailToProxy {
            error_code: if client_gone { 0 } else { status },
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        METRICS.request(
            cache_label(session.cache.phase()),
            status,
            ctx.started.elapsed().as_secs_f64(),
        );
        if session.cache.enabled() && session.cache.lock_duration().is_some() {
            METRICS.collapsed.inc();
        }
    }
}
