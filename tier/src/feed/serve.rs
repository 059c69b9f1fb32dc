//! One feed connection on the edge's proxy listener: parse, admit, replay, then follow.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fresco_store::FoyerStorage;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::index::UrlFacts;
use super::subscription::{MAX_BODY_BYTES, Refusal, Subscription, SubscriptionRequest, parse_event_id};
use super::{Catchup, FeedHub, sse};
use crate::cache_key::cache_key;
use crate::errors::send_json_error_with;
use crate::metrics::METRICS;
use crate::proxy::surrogate_keys;

/// How long a reconnecting client waits for the history to be refilled after a restart.
const PREFILL_WAIT: Duration = Duration::from_secs(2);
/// A client that does not take an event within this long is dropped; it resumes by id.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `GET`/`POST /_fresco/events` on `session` until the client leaves or the edge stops.
pub async fn serve_events(hub: &Arc<FeedHub>, store: &'static FoyerStorage, session: &mut Session) -> Result<()> {
    let request = match read_request(session).await {
        Ok(request) => request,
        Err(refusal) => return refuse(hub, session, refusal).await,
    };
    let (last_event_id, age_ms) = (request.last_event_id, request.age_ms);
    let subscription = match request.resolve(hub.freshness(), hub.limits().max_subscriptions) {
        Ok(subscription) => subscription,
        Err(refusal) => return refuse(hub, session, refusal).await,
    };
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let _admission = match hub.admit(client) {
        Ok(admission) => admission,
        Err(refusal) => return refuse(hub, session, refusal).await,
    };
    learn_cached_tags(hub, store, &subscription).await;
    if last_event_id.is_some() || age_ms.is_some() {
        hub.wait_prefilled(PREFILL_WAIT).await;
    }

    let mut header = ResponseHeader::build(200, Some(6))?;
    header.insert_header("content-type", "text/event-stream")?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("access-control-allow-origin", "*")?;
    header.insert_header("transfer-encoding", "chunked")?;
    header.insert_header("x-fresco-node", hub.node_id())?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(header), false).await?;

    // Subscribed before the history is read, so that nothing appended after it is missed.
    let mut heads = hub.watch_head();
    heads.borrow_and_update();
    let mut closing = hub.watch_closing();
    let mut out = sse::RETRY.to_vec();
    let resume_from = last_event_id.or_else(|| age_ms.map(|age| hub.position_before_age(age)));
    let mut cursor = match resume_from {
        None => hub.head(),
        Some(id) => catch_up(hub, &subscription, id, &mut out),
    };
    sse::hello(&mut out, cursor, hub.node_id());
    if !send(session, out).await {
        return Ok(());
    }

    let heartbeat = Duration::from_secs(hub.limits().heartbeat_secs);
    loop {
        let wake = tokio::select! {
            moved = heads.changed() => if moved.is_ok() { Wake::Purges } else { Wake::Closing },
            _ = tokio::time::sleep(heartbeat) => Wake::Heartbeat,
            _ = closing.wait_for(|c| *c) => Wake::Closing,
            // The client closed the connection (or sent bytes it should not have).
            _ = session.as_downstream_mut().read_body_or_idle(true) => Wake::ClientGone,
        };
        let mut out = Vec::new();
        match wake {
            // A feed ends when its client leaves: that is no error, and there is no one to tell.
            Wake::ClientGone => return Ok(()),
            Wake::Closing => break,
            Wake::Heartbeat => sse::keepalive(&mut out, cursor),
            Wake::Purges => cursor = catch_up(hub, &subscription, cursor, &mut out),
        }
        if !out.is_empty() && !send(session, out).await {
            return Ok(());
        }
    }
    // The edge is stopping: end the stream cleanly; the client reconnects elsewhere by id.
    if let Err(e) = session.write_response_body(None, true).await {
        tracing::debug!(error = %e, "feed client gone before the end of its stream");
    }
    Ok(())
}

enum Wake {
    Purges,
    Heartbeat,
    Closing,
    ClientGone,
}

/// Appends the events of every purge after `cursor` (or a `reset`); returns the new cursor.
fn catch_up(hub: &FeedHub, subscription: &Subscription, cursor: u64, out: &mut Vec<u8>) -> u64 {
    match hub.catch_up(cursor) {
        Catchup::Purges(purges) => {
            let mut at = cursor;
            for purge in purges {
                METRICS
                    .feed_events
                    .inc_by(subscription.write_events(&purge, out) as u64);
                at = purge.seq;
            }
            at.max(cursor)
        }
        Catchup::Reset { head } => {
            METRICS.feed_resets.inc();
            sse::reset(out, head, "history");
            head
        }
    }
}

/// Writes events; `false` when the client is gone or stopped reading (the feed then ends
/// quietly: the client resumes by id, possibly on another edge).
async fn send(session: &mut Session, out: Vec<u8>) -> bool {
    match tokio::time::timeout(
        WRITE_TIMEOUT,
        session.write_response_body(Some(Bytes::from(out)), false),
    )
    .await
    {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "feed client gone");
            false
        }
        Err(_) => {
            tracing::debug!("feed client stopped reading for {WRITE_TIMEOUT:?}: dropped");
            false
        }
    }
}

async fn refuse(hub: &FeedHub, session: &mut Session, refusal: Refusal) -> Result<()> {
    // Refusals of admission (429, 503) were counted by `FeedHub::admit`.
    if !matches!(refusal.status, 429 | 503) {
        METRICS.feed_rejected("bad_request");
    }
    let extra: &[(&str, &str)] = match refusal.status {
        429 | 503 => &[("retry-after", "5")],
        405 => &[("allow", "GET, POST")],
        _ => &[],
    };
    send_json_error_with(session, refusal.status, &refusal.message, hub.node_id(), extra).await
}

/// The subscription asked for: the query of a `GET`, the body of a `POST`, and the
/// `Last-Event-ID` header.
async fn read_request(session: &mut Session) -> Result<SubscriptionRequest, Refusal> {
    let req = session.req_header();
    let header_id = req
        .headers
        .get("last-event-id")
        .map(|v| v.to_str().map_err(|_| Refusal::new(400, "Last-Event-ID is not text")))
        .transpose()?
        .map(parse_event_id)
        .transpose()?;
    let is_json = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut request = match req.method {
        http::Method::GET => SubscriptionRequest::from_form(req.uri.query().unwrap_or("").as_bytes())?,
        http::Method::POST => {
            let mut body = Vec::new();
            while let Some(chunk) = session
                .read_request_body()
                .await
                .map_err(|e| Refusal::new(400, format!("reading the body: {e}")))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY_BYTES {
                    return Err(Refusal::new(413, format!("the body is over {MAX_BODY_BYTES} bytes")));
                }
            }
            if is_json {
                SubscriptionRequest::from_json(&body)?
            } else {
                SubscriptionRequest::from_form(&body)?
            }
        }
        ref other => {
            return Err(Refusal::new(
                405,
                format!("method {other} not allowed: the feed takes GET or POST"),
            ));
        }
    };
    if header_id.is_some() {
        request.last_event_id = header_id;
    }
    Ok(request)
}

/// Learns the tags of followed URLs the edge has cached but not seen fetched (after a restart
/// the disk cache is warm while the index is empty), so tag purges reach their followers.
async fn learn_cached_tags(hub: &FeedHub, store: &'static FoyerStorage, subscription: &Subscription) {
    for primary in subscription.primaries() {
        if hub.knows(primary) {
            continue;
        }
        let key = cache_key(primary.to_string());
        if let Some(meta) = store.stored_meta(&key).await {
            let headers = meta.headers();
            hub.learn(
                primary,
                UrlFacts {
                    tags: surrogate_keys(headers).map(str::to_string).collect(),
                    etag: headers
                        .get(http::header::ETAG)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                },
            );
        }
    }
}
