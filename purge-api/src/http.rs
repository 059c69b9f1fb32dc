//! purge-api's HTTP interface (DESIGN.md, "Purge").

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fresco_protocol::{AckRequest, LeaseRequest, LogLine};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Authenticator, Denied};
use crate::log::{GroupCommit, PurgeLog};
use crate::members::{AckRoute, Membership, MembershipError};
use crate::metrics::METRICS;
use crate::request::{MAX_BODY_BYTES, PurgeRequest};

/// Everything the handlers share.
pub struct App {
    /// The durable log.
    pub log: Arc<dyn PurgeLog>,
    /// Its writer.
    pub writer: GroupCommit,
    /// Leases and acks.
    pub members: Box<dyn Membership>,
    /// Credentials.
    pub auth: Authenticator,
    /// Longest a `wait: true` purge waits (beyond it, a lease holder is surely expired).
    pub max_wait: Duration,
    /// Turns true when purge-api stops: every log stream then ends, so that the graceful stop
    /// does not wait for nodes that follow the log for ever (they reconnect with backoff).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn denied(why: Denied) -> Response {
    match why {
        Denied::Unauthorized(message) => {
            METRICS.rejected.with_label_values(&["unauthorized"]).inc();
            error(StatusCode::UNAUTHORIZED, message)
        }
        Denied::Forbidden(message) => forbidden(message),
        Denied::Unavailable(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

fn forbidden(message: String) -> Response {
    METRICS.rejected.with_label_values(&["forbidden"]).inc();
    error(StatusCode::FORBIDDEN, message)
}

/// The node a node-protocol request speaks for, which must be the one its credential is for.
/// The refusal of a request that speaks for `named` with the credential of `node`, if they
/// differ.
fn speaking_for_another(node: &str, named: &str) -> Option<Response> {
    (node != named).then(|| forbidden(format!("the credential of {node} cannot speak for {named}")))
}

fn invalid(message: String) -> Response {
    METRICS.rejected.with_label_values(&["invalid"]).inc();
    error(StatusCode::BAD_REQUEST, message)
}

async fn read_body(request: Request, limit: usize) -> Result<(HeaderMap, Bytes), Response> {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok((parts.headers, bytes)),
        Err(_) => {
            METRICS.rejected.with_label_values(&["too_large"]).inc();
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {limit} bytes")))
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn purge(State(app): State<Arc<App>>, request: Request) -> Response {
    let started = Instant::now();
    let (headers, body) = match read_body(request, MAX_BODY_BYTES).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let scope = match app.auth.purge(&headers, &body).await {
        Ok(scope) => scope,
        Err(why) => return denied(why),
    };
    let request = match PurgeRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => return invalid(e),
    };
    if let Err(e) = request.check_scope(&scope) {
        return forbidden(e);
    }
    let record = match request.to_record(now_ms(), &scope) {
        Ok(r) => r,
        Err(e) => return invalid(e),
    };
    let record = match app.writer.append(record).await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    METRICS.append_seconds.observe(started.elapsed().as_secs_f64());
    for kind in request.kinds() {
        METRICS.purges.with_label_values(&[kind]).inc();
    }
    let seq = record.seq;
    if !request.wait {
        return (StatusCode::ACCEPTED, axum::Json(json!({ "seq": seq }))).into_response();
    }
    let status = app.members.wait_complete(seq, app.max_wait).await;
    if !status.complete {
        // Cannot happen while leases work as specified; say so rather than claim completion.
        return error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("purge {seq} logged but not yet applied everywhere"),
        );
    }
    METRICS.ack_seconds.observe(started.elapsed().as_secs_f64());
    let body = json!({
        "seq": seq,
        "acked": status.acked,
        "lease_expired": status.lease_expired,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn purge_status(State(app): State<Arc<App>>, headers: HeaderMap, Path(seq): Path<String>) -> Response {
    if let Err(why) = app.auth.operator(&headers) {
        return denied(why);
    }
    let Ok(seq) = seq.parse::<u64>() else {
        return invalid(format!("`{seq}` is not a sequence number"));
    };
    let bounds = match app.log.current_bounds().await {
        Ok(bounds) => bounds,
        Err(e) => return unavailable(e),
    };
    if seq == 0 || seq > bounds.head {
        return error(
            StatusCode::NOT_FOUND,
            format!("no purge {seq}; the log's head is {}", bounds.head),
        );
    }
    let record = if seq >= bounds.first {
        app.log
            .read_from(seq, 1)
            .await
            .ok()
            .and_then(|mut r| r.pop())
            .filter(|r| r.seq == seq)
    } else {
        None
    };
    let status = app.members.status(seq).await;
    let mut body = serde_json::to_value(&status).unwrap_or_default();
    body["purge"] = serde_json::to_value(record).unwrap_or_default();
    axum::Json(body).into_response()
}

async fn members(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(why) = app.auth.caller(&headers) {
        return denied(why);
    }
    let bounds = app.log.bounds();
    axum::Json(json!({ "head": bounds.head, "members": app.members.list() })).into_response()
}

async fn lease(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    // Credentials first: who cannot lease learns nothing of what a valid request looks like.
    let node = match app.auth.node(&headers) {
        Ok(node) => node,
        Err(why) => return denied(why),
    };
    let request = match serde_json::from_slice::<LeaseRequest>(&body) {
        Ok(request) => request,
        Err(e) => return invalid(format!("invalid lease request: {e}")),
    };
    if let Some(refusal) = speaking_for_another(&node, &request.node) {
        return refusal;
    }
    let head = match head_for(&app, request.applied).await {
        Ok(head) => head,
        Err(response) => return response,
    };
    match app.members.renew(&request, head).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => membership_error(e),
    }
}

/// The log's head against which a node's claim to have applied `applied` is checked: the one
/// last heard of, unless the claim is beyond it, when another replica may have appended since.
async fn head_for(app: &App, applied: u64) -> Result<u64, Response> {
    let head = app.log.bounds().head;
    if applied <= head {
        return Ok(head);
    }
    app.log.current_bounds().await.map(|b| b.head).map_err(unavailable)
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, format!("purge log unavailable: {e}"))
}

fn membership_error(e: MembershipError) -> Response {
    match e {
        MembershipError::Refused(message) => error(StatusCode::CONFLICT, message),
        MembershipError::Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn ack(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let node = match app.auth.node(&headers) {
        Ok(node) => node,
        Err(why) => return denied(why),
    };
    let ack = match serde_json::from_slice::<AckRequest>(&body) {
        Ok(ack) => ack,
        Err(e) => return invalid(format!("invalid ack: {e}")),
    };
    if let Some(refusal) = speaking_for_another(&node, &ack.node) {
        return refusal;
    }
    let (applied, head, route) = match ack.copy {
        // A copy may come before this replica hears of the purge it acks: what it says up to
        // the head known here is as true, and it costs no read of the log.
        true => {
            let head = app.log.bounds().head;
            (ack.applied.min(head), head, AckRoute::Copy)
        }
        false => match head_for(&app, ack.applied).await {
            Ok(head) => (ack.applied, head, AckRoute::Followed),
            Err(response) => return response,
        },
    };
    match app.members.ack(&ack.node, applied, head, route).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => membership_error(e),
    }
}

fn encode_line(line: &LogLine) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).expect("a log line serializes");
    bytes.push(b'\n');
    bytes
}

#[derive(Deserialize)]
struct LogQuery {
    from: u64,
}

/// Counts a log stream in `fresco_purge_log_streams` for as long as it lives.
struct StreamCount;

impl StreamCount {
    fn open() -> Self {
        METRICS.log_streams.inc();
        Self
    }
}

impl Drop for StreamCount {
    fn drop(&mut self) {
        METRICS.log_streams.dec();
    }
}

/// `GET /v1/log?from=N`: newline-delimited [`LogLine`]s from N on, then live, with a heartbeat
/// every second. A `from` older than the log's retention starts with a `reset` line.
async fn log_stream(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<LogQuery>) -> Response {
    if let Err(why) = app.auth.node(&headers) {
        return denied(why);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let mut head = app.log.heads();
    let mut stopping = app.stopping.clone();
    tokio::spawn(async move {
        let _streaming = StreamCount::open();
        let line = |l: &LogLine| Ok(Bytes::from(encode_line(l)));
        let mut next = q.from.max(1);
        let bounds = match app.log.current_bounds().await {
            Ok(bounds) => bounds,
            Err(e) => {
                tracing::warn!(error = %e, "the purge log is out of reach; a subscriber is cut off");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        };
        // Behind the retention, or ahead of the head (this log lost what the node applied):
        // either way the node cannot know what it missed, so it starts over.
        if next < bounds.first || next > bounds.head + 1 {
            next = if next < bounds.first {
                bounds.first
            } else {
                bounds.head + 1
            };
            if tx.send(line(&LogLine::Reset { next })).await.is_err() {
                return;
            }
        }
        loop {
            head.borrow_and_update();
            let records = match app.log.read_from(next, 512).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "reading the purge log for a subscriber");
                    // Cut, not ended: the node then moves on to another replica.
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            if *stopping.borrow() {
                return;
            }
            if records.is_empty() {
                let beat = tokio::select! {
                    beat = tokio::time::timeout(Duration::from_secs(1), head.changed()) => beat,
                    _ = stopping.changed() => return,
                };
                if beat.is_err() {
                    if let Err(e) = app.log.check_reachable().await {
                        // Cut, so that the node moves on to a replica that can reach the log.
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                    let heartbeat = LogLine::Heartbeat {
                        head: app.log.bounds().head,
                    };
                    if tx.send(line(&heartbeat)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            let mut chunk = Vec::new();
            if records[0].seq > next {
                // Retention dropped records between two reads of this stream.
                chunk.extend_from_slice(&encode_line(&LogLine::Reset { next: records[0].seq }));
            }
            for record in records {
                next = record.seq + 1;
                chunk.extend_from_slice(&encode_line(&LogLine::Purge(record)));
            }
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let head = app.log.bounds().head;
    let (leased, lagging) = app.members.counts(head);
    METRICS.head.set(head as i64);
    METRICS.leased.set(leased as i64);
    METRICS.lagging.set(lagging as i64);
    match fresco_telemetry::metrics_text() {
        Ok((content_type, body)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn fallback() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; see the README's purge API section",
    )
}

/// The routes of purge-api.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/purge", post(purge))
        .route("/v1/purge/{seq}", get(purge_status))
        .route("/v1/members", get(members))
        .route("/v1/lease", post(lease))
        .route("/v1/ack", post(ack))
        .route("/v1/log", get(log_stream))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .fallback(fallback)
        .with_state(app)
}
