//! A test origin on a real socket, whose behaviour is chosen by the path's first segment and
//! which counts what it is asked.
//!
//! | path | behaviour |
//! |---|---|
//! | `/img/…` | 20 KB body derived from the path, `public, max-age=300`, ETag, honours `If-None-Match` |
//! | `/immutable/…` | as `/img/` with `Cache-Control: immutable` |
//! | `/short/…` | as `/img/` with `max-age=1` |
//! | `/shortimmutable/…` | as `/img/` with `max-age=1, immutable`: immutable, but soon stale |
//! | `/slow/…` | as `/img/` after 300 ms |
//! | `/sluggish/…` | as `/img/` after 2.5 s: longer than an edge waits for a shield to answer |
//! | `/private/…` | `Cache-Control: private` |
//! | `/cookie/…` | sets a cookie |
//! | `/hang/…` | never answers within a test's time |
//! | `/broken/…` | after 300 ms, announces the 20 KB body but dies after 5 KB of it |
//! | `/mut/<name>` | a mutable object at a version the test sets ([`TestOrigin::set_version`]): `X-Version`, ETag and body follow it; `Surrogate-Key: obj-<name> all-mut` |
//! | `/slowmut/<name>` | as `/mut/` after 600 ms (the version is read when the request arrives) |
//! | `/siemut/<name>` | as `/mut/` with `stale-if-error=3600`: the origin allows stale copies when it fails |
//! | `/status/<code>` | that status with an empty body and no caching headers |
//! | `/vary/<header>/…` | `Vary: <header>`, cacheable; the body names the request's value of it, and an `Origin` is echoed in `Access-Control-Allow-Origin` |
//! | `/varystar/…` | as `/img/` with `Vary: *` |
//!
//! Like many real origins it also answers differently to what a cache should not pass on: a
//! request with `X-Forwarded-Host`, `X-Original-URL` or `X-HTTP-Method-Override`, a `utm_source`
//! query parameter, or a body on a GET or HEAD gets [`POISONED`] (200, cacheable for 5 minutes); a request target
//! over 8 KiB gets 414. Each is counted in [`Seen::poisoned`].
//!
//! While [`TestOrigin::set_failing`] is on, every request is answered 503 (and counted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the origin saw for one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// All requests.
    pub requests: usize,
    /// Requests carrying `If-None-Match`.
    pub conditional: usize,
    /// Answers to requests carrying what a cache should have dropped (see the module doc).
    pub poisoned: usize,
    /// 304 answers.
    pub not_modified: usize,
    /// Request bodies received whole (methods other than GET and HEAD).
    pub bodies: usize,
    /// The bytes of those bodies.
    pub body_bytes: usize,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<HashMap<String, Seen>>,
    versions: Mutex<HashMap<String, u64>>,
    failing: std::sync::atomic::AtomicBool,
}

/// The body of the answer to a request that carried what a cache should have dropped.
pub const POISONED: &[u8] = b"poisoned: the origin answered to an unkeyed input";

/// Whether a request carries what a cache must not pass on unkeyed (see the module doc).
fn carries_unkeyed_input(req: &Request) -> bool {
    let h = req.headers();
    [
        "x-forwarded-host",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
    ]
    .iter()
    .any(|name| h.contains_key(*name))
        || req
            .uri()
            .query()
            .is_some_and(|q| q.split(['&', ';']).any(|p| p.starts_with("utm_source=")))
        || (matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD)
            && (h.get(header::CONTENT_LENGTH).is_some_and(|v| v != "0") || h.contains_key(header::TRANSFER_ENCODING)))
}

/// The body of version `version` of `path`.
pub fn versioned_body(path: &str, version: u64) -> Vec<u8> {
    body_of(&format!("{path}#v{version}"))
}

/// A running test origin.
pub struct TestOrigin {
    /// Its base URL.
    pub url: String,
    shared: Arc<Shared>,
}

/// The body the origin sends for `path`: 20 KB, distinct per path.
pub fn body_of(path: &str) -> Vec<u8> {
    let mut body = vec![0u8; 20 * 1024];
    blake3::Hasher::new()
        .update(path.as_bytes())
        .finalize_xof()
        .fill(&mut body);
    body
}

/// The ETag the origin sends for `path`.
pub fn etag_of(path: &str) -> String {
    format!("\"{}\"", &blake3::hash(path.as_bytes()).to_hex()[..16])
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let (req, body) = {
        let (parts, body) = req.into_parts();
        let received = match parts.method {
            axum::http::Method::GET | axum::http::Method::HEAD => None,
            _ => match axum::body::to_bytes(body, usize::MAX).await {
                Ok(bytes) => Some(bytes.len()),
                // Cut short: as a real upload handler, answer nothing useful.
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            },
        };
        (Request::from_parts(parts, axum::body::Body::empty()), received)
    };
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    let poisoned = carries_unkeyed_input(&req);
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let etag = etag_of(&path);
    let not_modified = if_none_match
        .as_deref()
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    {
        let mut seen = shared.seen.lock().unwrap();
        let s = seen.entry(path.clone()).or_default();
        s.requests += 1;
        s.conditional += usize::from(if_none_match.is_some());
        s.not_modified += usize::from(not_modified);
        s.poisoned += usize::from(poisoned);
        s.bodies += usize::from(body.is_some());
        s.body_bytes += body.unwrap_or(0);
    }
    if shared.failing.load(std::sync::atomic::Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if uri_len > 8192 {
        return StatusCode::URI_TOO_LONG.into_response();
    }
    if poisoned {
        let h = [(header::CACHE_CONTROL, "public, max-age=300")];
        return (h, POISONED).into_response();
    }
    let kind = path.split('/').nth(1).unwrap_or("");
    if kind == "vary" {
        let name = path.split('/').nth(2).unwrap_or("cookie").to_string();
        let value = req
            .headers()
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut response = format!("{name}={value}").into_response();
        let h = response.headers_mut();
        h.insert(header::VARY, HeaderValue::from_str(&name).unwrap());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        }
        return response;
    }
    if kind == "varystar" {
        let mut response = body_of(&path).into_response();
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("*"));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        return response;
    }
    if kind == "status" {
        let code = path.rsplit('/').next().and_then(|c| c.parse().ok()).unwrap_or(500);
        return StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    if kind == "broken" {
        return broken_response(&path).await;
    }
    if kind == "mut" || kind == "slowmut" || kind == "siemut" {
        let version = shared.versions.lock().unwrap().get(&path).copied().unwrap_or(1);
        if kind == "slowmut" {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let cache_control = if kind == "siemut" {
            "public, max-age=300, stale-if-error=3600"
        } else {
            "public, max-age=300"
        };
        return mutable_response(&path, version, if_none_match.as_deref(), cache_control);
    }
    let cache_control = match kind {
        "img" | "slow" | "sluggish" => "public, max-age=300",
        "immutable" => "public, max-age=31536000, immutable",
        "short" => "public, max-age=1",
        "shortimmutable" => "public, max-age=1, immutable",
        "private" => "private, max-age=300",
        "cookie" => "public, max-age=300",
        "hang" => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            "no-store"
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match kind {
        "slow" => tokio::time::sleep(Duration::from_millis(300)).await,
        "sluggish" => tokio::time::sleep(Duration::from_millis(2500)).await,
        _ => {}
    }
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "image/jpeg")], body_of(&path)).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if kind == "cookie" {
        h.insert(header::SET_COOKIE, HeaderValue::from_static("session=abc; Path=/"));
    }
    response
}

/// A cacheable response whose body stops short: the connection is cut after 5 KB of a
/// declared 20 KB, as when an origin crashes mid-response.
async fn broken_response(path: &str) -> Response {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = axum::body::Bytes::from(body_of(path)[..5 * 1024].to_vec());
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> =
        vec![Ok(first), Err(std::io::Error::other("origin died mid-body"))];
    let mut response = axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(20 * 1024));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

fn mutable_response(path: &str, version: u64, if_none_match: Option<&str>, cache_control: &'static str) -> Response {
    let etag = format!("\"v{version}\"");
    let mut response = if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "image/png")], versioned_body(path, version)).into_response()
    };
    let name = path.rsplit('/').next().unwrap_or("");
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    h.insert("x-version", HeaderValue::from(version));
    h.insert(
        "surrogate-key",
        HeaderValue::from_str(&format!("obj-{name} all-mut")).unwrap(),
    );
    response
}

impl TestOrigin {
    /// Makes `/mut/…` or `/slowmut/…` `path` serve `version` from now on.
    pub fn set_version(&self, path: &str, version: u64) {
        self.shared.versions.lock().unwrap().insert(path.to_string(), version);
    }

    /// Makes every request fail with 503 (`true`) or be answered again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the origin on a free loopback port, in the calling tokio runtime.
    pub async fn start() -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST).await
    }

    /// Starts the origin on a free port of `ip` (an address of this machine).
    pub async fn start_on(ip: std::net::Ipv4Addr) -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, shared }
    }

    /// As [`TestOrigin::start`], but for its first `held` the origin accepts no connection
    /// and its accept queue is full, so the kernel drops every SYN sent to it (as it does
    /// to an origin swamped by a burst) and a client gets through only by resending one.
    pub async fn start_refusing_syns_for(held: Duration) -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // A backlog of 0 queues one connection; the second waits in SYN retries and is dropped.
        let mut fillers = Vec::new();
        while fillers.len() < 2 {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await
            {
                fillers.push(stream);
            } else {
                break;
            }
        }
        tokio::spawn(async move {
            tokio::time::sleep(held).await;
            drop(fillers);
            axum::serve(listener, app).await
        });
        Self {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// What the origin saw for `path`.
    pub fn seen(&self, path: &str) -> Seen {
        self.shared.seen.lock().unwrap().get(path).copied().unwrap_or_default()
    }

    /// Requests the origin got, for every path.
    pub fn requests_total(&self) -> usize {
        self.shared.seen.lock().unwrap().values().map(|s| s.requests).sum()
    }
}
