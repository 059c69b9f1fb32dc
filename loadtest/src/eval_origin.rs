//! `eval-origin`: the origin `make eval` puts behind fresco and the peers.
//!
//! It serves two kinds of object:
//! - `/t/{id}-{size}.jpg`, the objects of a trace ([`fresco_loadtest::trace::TraceObjects`]):
//!   `size` bytes, a year's `max-age`, after `--latency-ms` (an origin is far away).
//! - `/live/{name}`, images that change: the body begins `fresco-eval {name} v{version}\n`, so a
//!   reader knows which version it got. `POST /_eval/live/{name}` writes a new version and
//!   answers `{"version": N}`; the caller then sends the purge webhook, as an origin would.
//!
//! And it keeps what k6's virtual users cannot share among themselves: `POST
//! /_eval/answered/{name}/{version}` records that purge-api answered the purge of that version,
//! `GET /_eval/answered/{name}` gives the highest recorded (0 before any), so a reader that asked
//! before its read knows the oldest version it may see. `GET /_eval/fetches?path=P` counts the
//! fetches of one path (a thundering herd must cost one), and `GET /metrics` gives
//! `eval_origin_requests_total` and `eval_origin_bytes_total` for the origin-load plots.
//! Versions start from the clock, so an origin killed and started again never goes back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use fresco_loadtest::trace::TraceObjects;
use serde_json::json;

/// The origin `make eval` runs fresco and the peers against.
#[derive(Parser)]
#[command(name = "eval-origin", version)]
struct Cli {
    /// Address to listen on (port 0: a free one); the URL is printed as `LISTENING http://…`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How long each object fetch waits before it is answered.
    #[arg(long, default_value_t = 10)]
    latency_ms: u64,
    /// Largest trace object served, in bytes (larger: 404).
    #[arg(long, default_value_t = 4 << 20)]
    largest: usize,
    /// Size of a `/live/` image body, in bytes.
    #[arg(long, default_value_t = 16 << 10)]
    live_bytes: usize,
}

struct Origin {
    objects: TraceObjects,
    latency: Duration,
    live_bytes: usize,
    next_version: AtomicU64,
    /// Per live image: (current version, highest answered version).
    live: Mutex<HashMap<String, (u64, u64)>>,
    fetches: Mutex<HashMap<String, u64>>,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Origin {
    fn served(&self, path: &str, body_len: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(body_len as u64, Ordering::Relaxed);
        *self.fetches.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn object(State(origin): State<Arc<Origin>>, req: Request) -> Response {
    tokio::time::sleep(origin.latency).await;
    let path = req.uri().path();
    let Some(response) = origin.objects.response(path) else {
        return error(StatusCode::NOT_FOUND, "no such object");
    };
    let len = axum::body::HttpBody::size_hint(response.body()).exact().unwrap_or(0);
    origin.served(path, len as usize);
    response
}

async fn live(State(origin): State<Arc<Origin>>, Path(name): Path<String>) -> Response {
    tokio::time::sleep(origin.latency).await;
    let version = {
        let mut live = origin.live.lock().unwrap();
        let next = &origin.next_version;
        live.entry(name.clone())
            .or_insert_with(|| (next.fetch_add(1, Ordering::Relaxed), 0))
            .0
    };
    let mut body = format!("fresco-eval {name} v{version}\n").into_bytes();
    body.resize(origin.live_bytes.max(body.len()), b'.');
    origin.served(&format!("/live/{name}"), body.len());
    let mut response = ([(header::CONTENT_TYPE, "image/jpeg")], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, etag);
    }
    response
}

async fn change(State(origin): State<Arc<Origin>>, Path(name): Path<String>) -> Json<serde_json::Value> {
    let version = origin.next_version.fetch_add(1, Ordering::Relaxed);
    origin.live.lock().unwrap().entry(name).or_default().0 = version;
    Json(json!({ "version": version }))
}

async fn record_answered(State(origin): State<Arc<Origin>>, Path((name, version)): Path<(String, u64)>) -> StatusCode {
    let mut live = origin.live.lock().unwrap();
    let entry = live.entry(name).or_default();
    entry.1 = entry.1.max(version);
    StatusCode::NO_CONTENT
}

async fn answered(State(origin): State<Arc<Origin>>, Path(name): Path<String>) -> Json<serde_json::Value> {
    let version = origin.live.lock().unwrap().get(&name).map_or(0, |entry| entry.1);
    Json(json!({ "version": version }))
}

#[derive(serde::Deserialize)]
struct FetchesQuery {
    path: String,
}

async fn fetches(State(origin): State<Arc<Origin>>, Query(query): Query<FetchesQuery>) -> Json<serde_json::Value> {
    let count = origin.fetches.lock().unwrap().get(&query.path).copied().unwrap_or(0);
    Json(json!({ "path": query.path, "fetches": count }))
}

async fn metrics(State(origin): State<Arc<Origin>>) -> String {
    format!(
        "# TYPE eval_origin_requests_total counter\neval_origin_requests_total {}\n\
         # TYPE eval_origin_bytes_total counter\neval_origin_bytes_total {}\n",
        origin.requests.load(Ordering::Relaxed),
        origin.bytes.load(Ordering::Relaxed)
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let clock_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let origin = Arc::new(Origin {
        objects: TraceObjects::new(cli.largest),
        latency: Duration::from_millis(cli.latency_ms),
        live_bytes: cli.live_bytes,
        next_version: AtomicU64::new(clock_ms),
        live: Mutex::default(),
        fetches: Mutex::default(),
        requests: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/live/{name}", get(live))
        .route("/_eval/live/{name}", post(change))
        .route("/_eval/answered/{name}", get(answered))
        .route("/_eval/answered/{name}/{version}", post(record_answered))
        .route("/_eval/fetches", get(fetches))
        .route("/metrics", get(metrics))
        .fallback(object)
        .with_state(origin);
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!("LISTENING http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
