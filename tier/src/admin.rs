//! A node's admin endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use fresco_store::FoyerStorage;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::freshness::Freshness;

/// Serves the admin endpoints of a node.
///
/// - `/metrics`: Prometheus text format, fresco's series and foyer's.
/// - `/healthz`: 200 while the process runs.
/// - `/readyz`: 200 once the node serves traffic and, when it follows a purge API, holds a
///   lease (has caught up with the purge log); 503 otherwise and while shutting down. A fenced
///   node still answers requests, but only immutable objects from its cache.
pub struct AdminApp {
    store: &'static FoyerStorage,
    ready: Arc<AtomicBool>,
    freshness: Option<Arc<Freshness>>,
}

impl AdminApp {
    /// An admin app reporting on `store`, ready when `ready` is set (and leased, with
    /// `freshness`).
    pub fn new(store: &'static FoyerStorage, ready: Arc<AtomicBool>, freshness: Option<Arc<Freshness>>) -> Self {
        Self {
            store,
            ready,
            freshness,
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.freshness.as_ref().is_none_or(|f| f.is_leased())
    }
}

fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => {
                self.store.refresh_gauges();
                match fresco_telemetry::metrics_text() {
                    Ok((content_type, body)) => text(StatusCode::OK, &content_type, body),
                    Err(e) => {
                        let body = serde_json::json!({ "error": e }).to_string();
                        text(StatusCode::INTERNAL_SERVER_ERROR, "application/json", body.into())
                    }
                }
            }
            "/healthz" => text(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.is_ready() => text(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", b"not ready\n".to_vec()),
            other => {
                let body = serde_json::json!({ "error": format!("no admin endpoint {other}; try /metrics, /healthz, /readyz") });
                text(StatusCode::NOT_FOUND, "application/json", body.to_string().into())
            }
        }
    }
}
