//! [`Client`]: requests to a list of edges with failover, answered from the local cache when
//! it is still good.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::cache::{Entry, LocalCache};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The builder was given no edge, or an edge that is not an `http(s)://host:port` URL.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The disk cache directory could not be created.
    #[error("cache directory {0}: {1}")]
    CacheDir(PathBuf, std::io::Error),
    /// No edge answered (every one refused, timed out or failed with a 5xx, whose last answer
    /// is then returned as a [`Response`] instead).
    #[error("no edge answered {path}: {last}")]
    Unavailable {
        /// The requested path.
        path: String,
        /// What the last edge tried did.
        last: String,
    },
    /// The feed refused the subscription for good (a 4xx other than 429).
    #[error("the feed refused the subscription: {status} {body}")]
    Refused {
        /// The status.
        status: u16,
        /// The body (JSON `{"error": …}`).
        body: String,
    },
}

/// Where a [`Response`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The edge sent the body.
    Network,
    /// The local copy, after the edge confirmed it with a 304.
    Revalidated,
    /// The local copy without asking (it was `immutable`).
    Local,
}

/// The answer to [`Client::get`].
#[derive(Clone, Debug)]
pub struct Response {
    /// The status (200 when served from the local cache, even after a 304).
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
    /// The `ETag`.
    pub etag: Option<String>,
    /// The `Content-Type`.
    pub content_type: Option<String>,
    /// Where the body came from.
    pub source: Source,
    /// The edge that answered (`None` when served without asking).
    pub edge: Option<String>,
}

impl Response {
    /// Whether the body is the local copy.
    pub fn from_cache(&self) -> bool {
        self.source != Source::Network
    }
}

/// How a [`Client`] behaves; built by [`ClientBuilder`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Edge base URLs, in order of preference.
    pub edges: Vec<String>,
    /// Directory of the disk cache; `None` keeps entries in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Bound of the memory cache in bytes.
    pub memory_cache_bytes: usize,
    /// Time to establish a connection to an edge.
    pub connect_timeout: Duration,
    /// Time for a whole `get` on one edge before trying the next.
    pub request_timeout: Duration,
    /// Silence on the feed after which the connection is taken for dead (3 heartbeats and some).
    pub feed_read_timeout: Duration,
    /// First delay between failed feed connections; it doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between failed feed connections.
    pub backoff_max: Duration,
    /// The CA certificates (PEM) that `https://` edges are verified against instead of the
    /// system's roots: devcluster's `ca` in `cluster.json`, for instance.
    pub ca_file: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            edges: Vec::new(),
            cache_dir: None,
            memory_cache_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            feed_read_timeout: Duration::from_secs(40),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            ca_file: None,
        }
    }
}

/// Builds a [`Client`].
#[derive(Clone, Debug, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    /// A builder with the defaults of [`ClientConfig`] and no edge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an edge (`http://127.0.0.1:8080`), after those already added.
    pub fn edge(mut self, url: impl Into<String>) -> Self {
        self.config.edges.push(url.into().trim_end_matches('/').to_string());
        self
    }

    /// Adds edges, in order of preference.
    pub fn edges<I: IntoIterator<Item = S>, S: Into<String>>(self, urls: I) -> Self {
        urls.into_iter().fold(self, |b, url| b.edge(url))
    }

    /// Keeps cached responses in `dir` as well (they outlive the process).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.cache_dir = Some(dir.into());
        self
    }

    /// Bounds the memory cache (bytes; 0 keeps nothing in memory).
    pub fn memory_cache_bytes(mut self, bytes: usize) -> Self {
        self.config.memory_cache_bytes = bytes;
        self
    }

    /// Sets the connection timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets the time a `get` may take on one edge.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Sets the silence after which a feed connection is abandoned for the next edge.
    pub fn feed_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.feed_read_timeout = timeout;
        self
    }

    /// Sets the reconnection backoff of the feed (first delay, longest delay).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff_min = min;
        self.config.backoff_max = max.max(min);
        self
    }

    /// Verifies `https://` edges against the CA certificates in `path` (PEM) only.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ca_file = Some(path.into());
        self
    }

    /// Builds the client; fails without edges, on an edge that is not an HTTP URL, on a CA
    /// file that holds no certificate, or when the cache directory cannot be created.
    pub fn build(self) -> Result<Client, Error> {
        let config = self.config;
        if config.edges.is_empty() {
            return Err(Error::Config("no edge given".into()));
        }
        for edge in &config.edges {
            let parsed = reqwest::Url::parse(edge).map_err(|e| Error::Config(format!("edge {edge}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(Error::Config(format!("edge {edge}: not an http(s) URL")));
            }
        }
        let cache = LocalCache::new(config.memory_cache_bytes, config.cache_dir.clone())
            .map_err(|e| Error::CacheDir(config.cache_dir.clone().unwrap_or_default(), e))?;
        // No overall timeout on the client: the feed stays open for hours. `get` sets its own.
        let http = fresco_tls::trusting(config.ca_file.as_deref())
            .map_err(|e| Error::Config(format!("ca file {e}")))?
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                cache,
                preferred: AtomicUsize::new(0),
                config,
            }),
        })
    }
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) cache: LocalCache,
    /// The edge that answered last: tried first next time.
    preferred: AtomicUsize,
    pub(crate) config: ClientConfig,
}

/// A client of fresco's edges. Cloning it is cheap and shares the cache and connections.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// Progress of a body download: bytes received, and the `Content-Length` when announced.
pub type Progress<'a> = &'a mut (dyn FnMut(u64, Option<u64>) + Send);

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The edge tried first by the next request.
    pub fn preferred_edge(&self) -> &str {
        &self.inner.config.edges[self.inner.preferred.load(Ordering::Relaxed) % self.inner.config.edges.len()]
    }

    /// Whether `path` has a local copy.
    pub fn is_cached(&self, path: &str) -> bool {
        self.inner.cache.contains(path)
    }

    /// Forgets the local copy of `path`.
    pub async fn forget(&self, path: &str) {
        self.inner.cache.remove(path).await;
    }

    /// `GET path` (`/img/a.jpg`, joined to each edge's base URL); see [`Client::get_with_progress`].
    pub async fn get(&self, path: &str) -> Result<Response, Error> {
        self.get_with_progress(path, &mut |_, _| {}).await
    }

    /// `GET path`, reporting the body's progress to `progress`.
    ///
    /// A local copy marked `immutable` is returned without a request; another local copy with
    /// an ETag is revalidated with `If-None-Match` (a 304 serves it, a 200 replaces it). The
    /// edges are tried from the one that answered last, each once: a connection error, a
    /// timeout, a body cut short or a 5xx moves to the next; any other status is the answer.
    /// When every edge failed with a 5xx, the last one is returned; when none answered at all,
    /// [`Error::Unavailable`].
    pub async fn get_with_progress(&self, path: &str, progress: Progress<'_>) -> Result<Response, Error> {
        let local = self.inner.cache.get(path).await;
        if let Some(entry) = local.as_ref().filter(|e| e.immutable) {
            return Ok(response_of(entry, Source::Local, None));
        }
        let edges = &self.inner.config.edges;
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let mut last_failure = String::from("no edge tried");
        let mut last_5xx = None;
        for i in 0..edges.len() {
            let index = (start + i) % edges.len();
            let edge = &edges[index];
            match self.fetch_once(edge, path, local.as_deref(), progress).await {
                Ok(fetched) if fetched.status.is_server_error() => {
                    last_failure = format!("{edge}: {}", fetched.status);
                    last_5xx = Some((fetched, edge));
                }
                Ok(fetched) => {
                    self.inner.preferred.store(index, Ordering::Relaxed);
                    return Ok(self.settle(path, edge, local, fetched).await);
                }
                Err(e) => last_failure = format!("{edge}: {}", with_causes(&e)),
            }
        }
        match last_5xx {
            Some((fetched, edge)) => Ok(Response {
                status: fetched.status,
                etag: header_string(&fetched.headers, header::ETAG),
                content_type: header_string(&fetched.headers, header::CONTENT_TYPE),
                body: fetched.body,
                source: Source::Network,
                edge: Some(edge.clone()),
            }),
            None => Err(Error::Unavailable {
                path: path.to_string(),
                last: last_failure,
            }),
        }
    }

    async fn fetch_once(
        &self,
        edge: &str,
        path: &str,
        local: Option<&Entry>,
        progress: Progress<'_>,
    ) -> Result<Fetched, reqwest::Error> {
        let mut request = self
            .inner
            .http
            .get(format!("{edge}{}{path}", if path.starts_with('/') { "" } else { "/" }))
            .timeout(self.inner.config.request_timeout);
        if let Some(etag) = local.and_then(|e| e.etag.as_deref()) {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let mut response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let total = response.content_length();
        let mut body = BytesMut::with_capacity(total.unwrap_or(0).min(64 << 20) as usize);
        progress(0, total);
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            progress(body.len() as u64, total);
        }
        Ok(Fetched {
            status,
            headers,
            body: body.freeze(),
        })
    }

    /// Turns an edge's answer into the caller's, updating the local cache.
    async fn settle(&self, path: &str, edge: &str, local: Option<Arc<Entry>>, fetched: Fetched) -> Response {
        let cache = &self.inner.cache;
        let cache_control = header_string(&fetched.headers, header::CACHE_CONTROL).unwrap_or_default();
        let directives: Vec<String> = cache_control
            .split(',')
            .map(|d| d.trim().to_ascii_lowercase())
            .collect();
        let has = |name: &str| directives.iter().any(|d| d == name);
        let etag = header_string(&fetched.headers, header::ETAG);
        if fetched.status == StatusCode::NOT_MODIFIED
            && let Some(local) = local
        {
            // A 304 may carry fresher metadata; the body stays ours.
            let refreshed = Entry {
                etag: etag.or_else(|| local.etag.clone()),
                immutable: has("immutable"),
                ..(*local).clone()
            };
            let response = response_of(&refreshed, Source::Revalidated, Some(edge.to_string()));
            cache.put(path, refreshed).await;
            return response;
        }
        let response = Response {
            status: fetched.status,
            etag: etag.clone(),
            content_type: header_string(&fetched.headers, header::CONTENT_TYPE),
            body: fetched.body,
            source: Source::Network,
            edge: Some(edge.to_string()),
        };
        if fetched.status == StatusCode::OK {
            let storable = !has("no-store") && (etag.is_some() || has("immutable"));
            if storable {
                let tags = ["surrogate-key", "cache-tag"]
                    .iter()
                    .filter_map(|name| fetched.headers.get(*name)?.to_str().ok())
                    .flat_map(|v| v.split([' ', ',']))
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect();
                let entry = Entry {
                    body: response.body.clone(),
                    etag,
                    content_type: response.content_type.clone(),
                    immutable: has("immutable"),
                    tags,
                };
                cache.put(path, entry).await;
            } else {
                cache.remove(path).await;
            }
        } else if matches!(fetched.status.as_u16(), 404 | 410) {
            cache.remove(path).await;
        }
        response
    }
}

struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

fn response_of(entry: &Entry, source: Source, edge: Option<String>) -> Response {
    Response {
        status: StatusCode::OK,
        body: entry.body.clone(),
        etag: entry.etag.clone(),
        content_type: entry.content_type.clone(),
        source,
        edge,
    }
}

/// An error with its causes: reqwest's own message ("error sending request") hides the useful
/// part ("Connection refused").
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}
