//! [`Client::watch`]: the change feed (`/_fresco/events`, see `docs/feed.md`) as a stream that
//! survives edge failures and keeps the local cache current.
//!
//! Exactly once, in order, across edges: every edge applies the same purge log, so a change has
//! the same sequence number everywhere. The watcher remembers the position it is sure of and
//! resumes there on the next edge with `Last-Event-ID`; what is replayed twice is dropped.
//!
//! The position it resumes from is one below the last change it saw, not that change's id:
//! the changes of one purge share an id, and a connection cut in the middle of them would
//! otherwise lose the rest. Any later message (a keepalive, a higher id) proves the group
//! complete. The changes replayed from that purge that were already delivered are recognised
//! by their URL and tags.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::client::{Client, Error, with_causes};
use crate::sse::{SseItem, SseParser};

/// A query string longer than this goes in a POST body instead: proxies and servers commonly
/// refuse request lines of 8 KiB.
const MAX_QUERY_BYTES: usize = 6000;

/// One change: a purge that touched a followed URL or tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The purge's sequence number (the same on every edge).
    pub seq: u64,
    /// The URL as it was given to [`Client::watch`]; `None` for a purged tag whose URLs the
    /// edge did not know.
    pub url: Option<String>,
    /// The ETag of the copy the purge replaced, when the edge knew it.
    #[serde(default)]
    pub etag: Option<String>,
    /// The purged tags that matched (empty for a purge by URL or prefix).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A soft purge: the object is stale rather than deleted.
    #[serde(default)]
    pub soft: bool,
}

/// The edge could not replay from the watcher's position: everything followed may have
/// changed and must be fetched again. The watcher already dropped it from the local cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// The position to continue from.
    pub seq: u64,
    /// Why (`history`, …).
    #[serde(default)]
    pub reason: String,
}

/// What a [`Watch`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A connection to an edge is established and caught up.
    Connected {
        /// The edge's base URL.
        edge: String,
        /// The node id the edge gave.
        node: String,
        /// The edge's position (the `hello` id).
        seq: u64,
    },
    /// A connection attempt failed or an established feed broke; the next edge is tried.
    /// Informational: nothing is lost.
    Disconnected {
        /// The edge's base URL.
        edge: String,
        /// What happened.
        reason: String,
    },
    /// A change of something followed.
    Change(Change),
    /// Everything followed must be refetched.
    Reset(Reset),
}

/// A stream of [`WatchEvent`]s; see [`Client::watch`]. Dropping it closes the feed.
pub struct Watch {
    events: mpsc::Receiver<Result<WatchEvent, Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl futures_util::Stream for Watch {
    type Item = Result<WatchEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Follows `urls` (paths as given to [`Client::get`]) and surrogate-key `tags`.
    ///
    /// The stream yields [`WatchEvent::Connected`] on each (re)connection, then every change
    /// once, in sequence order, whatever edge delivers it, from the first purge accepted
    /// after this call (and possibly one accepted up to a second before it: the edge's margin
    /// for clocks). A change drops its URL (or, for a tag change without URL, the entries
    /// carrying the tag) from the local cache before it is yielded, so a `get` made on
    /// receiving it asks the edge. A broken connection (error, end,
    /// or silence longer than [`feed_read_timeout`](crate::ClientBuilder::feed_read_timeout))
    /// moves to the next edge, after a backoff when failures repeat. The stream ends only with
    /// an error an edge gives for good (a 4xx other than 429: a bad URL, too many
    /// subscriptions). Must be called within a tokio runtime.
    pub fn watch<U, T>(&self, urls: U, tags: T) -> Watch
    where
        U: IntoIterator,
        U::Item: Into<String>,
        T: IntoIterator,
        T::Item: Into<String>,
    {
        let (tx, events) = mpsc::channel(256);
        let watcher = Watcher {
            client: self.clone(),
            urls: urls.into_iter().map(Into::into).collect(),
            tags: tags.into_iter().map(Into::into).collect(),
            tx,
            position: None,
            started: Instant::now(),
            delivered: 0,
            delivered_at_seq: HashSet::new(),
            reset_at: 0,
        };
        Watch {
            events,
            task: tokio::spawn(watcher.run()),
        }
    }
}

/// How one connection ended.
enum Ended {
    /// Try the next edge, after at least this long.
    Retry(Duration, String),
    /// The edge answered and then the stream broke (it had said hello).
    Broken(String),
    /// Stop: the consumer is gone, or the subscription is refused.
    Stop,
}

struct Watcher {
    client: Client,
    urls: Vec<String>,
    tags: Vec<String>,
    tx: mpsc::Sender<Result<WatchEvent, Error>>,
    /// The id up to which every change has been received: sent as `Last-Event-ID`.
    position: Option<u64>,
    /// When [`Client::watch`] was called: until the first edge says hello, the watch asks
    /// for the purges since then (`age_ms`), so none is lost while edges are tried.
    started: Instant,
    /// The highest sequence delivered.
    delivered: u64,
    /// What was delivered at `delivered` (one purge may report several URLs).
    delivered_at_seq: HashSet<(Option<String>, Vec<String>)>,
    /// The last reset's id: changes up to it are covered by the reset.
    reset_at: u64,
}

impl Watcher {
    async fn run(mut self) {
        let config = self.client.config().clone();
        let edges = config.edges.clone();
        let mut index = edges
            .iter()
            .position(|e| e == self.client.preferred_edge())
            .unwrap_or(0);
        let mut failures: u32 = 0;
        loop {
            let edge = &edges[index % edges.len()];
            let (wait, reason) = match self.connection(edge).await {
                Ended::Stop => return,
                Ended::Broken(reason) => {
                    failures = 1;
                    (Duration::ZERO, reason)
                }
                Ended::Retry(at_least, reason) => {
                    failures = failures.saturating_add(1);
                    (at_least, reason)
                }
            };
            let disconnected = WatchEvent::Disconnected {
                edge: edge.clone(),
                reason,
            };
            if self.send(disconnected).await.is_err() {
                return;
            }
            let backoff = config
                .backoff_min
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(config.backoff_max);
            tokio::time::sleep(backoff.max(wait)).await;
            index += 1;
        }
    }

    async fn connection(&mut self, edge: &str) -> Ended {
        let read_timeout = self.client.config().feed_read_timeout;
        let http = self.client.inner.http.clone();
        let age_ms = self.started.elapsed().as_millis().to_string();
        let mut pairs: Vec<(&str, &str)> = self.urls.iter().map(|u| ("url", u.as_str())).collect();
        pairs.extend(self.tags.iter().map(|t| ("tag", t.as_str())));
        if self.position.is_none() {
            pairs.push(("age_ms", &age_ms));
        }
        let mut url = match reqwest::Url::parse(&format!("{edge}/_fresco/events")) {
            Ok(url) => url,
            Err(e) => return Ended::Retry(Duration::ZERO, e.to_string()),
        };
        url.query_pairs_mut().extend_pairs(&pairs);
        let mut request = if url.query().map_or(0, str::len) > MAX_QUERY_BYTES {
            url.set_query(None);
            http.post(url).form(&pairs)
        } else {
            http.get(url)
        };
        request = request.header(header::ACCEPT, "text/event-stream");
        if let Some(position) = self.position {
            request = request.header("last-event-id", position.to_string());
        }
        // The answer's head must come as fast as any byte of the stream.
        let mut response = match tokio::time::timeout(read_timeout, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Ended::Retry(Duration::ZERO, with_causes(&e)),
            Err(_) => return Ended::Retry(Duration::ZERO, "no answer in time".into()),
        };
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                .map_or(Duration::ZERO, |s: u64| Duration::from_secs(s.min(60)));
            return Ended::Retry(after, "429 Too Many Requests".into());
        }
        if status.is_client_error() {
            let body = response.text().await.unwrap_or_default();
            let _ = self
                .tx
                .send(Err(Error::Refused {
                    status: status.as_u16(),
                    body,
                }))
                .await;
            return Ended::Stop;
        }
        if status != StatusCode::OK {
            return Ended::Retry(Duration::ZERO, format!("answered {status}"));
        }
        let mut parser = SseParser::new();
        let mut said_hello = false;
        let reason = loop {
            let chunk = match tokio::time::timeout(read_timeout, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break "the edge ended the stream".to_string(),
                Ok(Err(e)) => break with_causes(&e),
                Err(_) => break format!("nothing received for {read_timeout:?}"),
            };
            for item in parser.feed(&chunk) {
                match self.handle(edge, item, &mut said_hello).await {
                    Ok(()) => {}
                    Err(()) => return Ended::Stop,
                }
            }
        };
        if said_hello {
            Ended::Broken(reason)
        } else {
            Ended::Retry(Duration::ZERO, reason)
        }
    }

    /// Acts on one feed item; `Err` when the consumer is gone.
    async fn handle(&mut self, edge: &str, item: SseItem, said_hello: &mut bool) -> Result<(), ()> {
        let message = match item {
            SseItem::Id(id) => {
                if let Ok(id) = id.parse() {
                    self.advance(id);
                }
                return Ok(());
            }
            SseItem::Retry(_) => return Ok(()),
            SseItem::Message(message) => message,
        };
        let id: Option<u64> = message.id.parse().ok();
        match message.event.as_str() {
            "hello" => {
                #[derive(Deserialize)]
                struct Hello {
                    seq: u64,
                    #[serde(default)]
                    node: String,
                }
                let Ok(hello) = serde_json::from_str::<Hello>(&message.data) else {
                    return Ok(());
                };
                *said_hello = true;
                self.advance(id.unwrap_or(hello.seq));
                self.send(WatchEvent::Connected {
                    edge: edge.to_string(),
                    node: hello.node,
                    seq: hello.seq,
                })
                .await
            }
            "change" => {
                let Ok(change) = serde_json::from_str::<Change>(&message.data) else {
                    return Ok(());
                };
                // Everything before this purge is complete; this purge may not be yet.
                self.advance(change.seq.saturating_sub(1));
                if change.seq < self.delivered || change.seq <= self.reset_at {
                    return Ok(());
                }
                if change.seq > self.delivered {
                    self.delivered = change.seq;
                    self.delivered_at_seq.clear();
                }
                if !self.delivered_at_seq.insert((change.url.clone(), change.tags.clone())) {
                    return Ok(());
                }
                let cache = &self.client.inner.cache;
                if let Some(url) = &change.url {
                    cache.remove(url).await;
                } else {
                    cache.remove_tagged(&change.tags).await;
                }
                self.send(WatchEvent::Change(change)).await
            }
            "reset" => {
                let Ok(reset) = serde_json::from_str::<Reset>(&message.data) else {
                    return Ok(());
                };
                self.advance(reset.seq);
                self.reset_at = self.reset_at.max(reset.seq);
                let cache = &self.client.inner.cache;
                for url in &self.urls {
                    cache.remove(url).await;
                }
                cache.remove_tagged(&self.tags).await;
                self.send(WatchEvent::Reset(reset)).await
            }
            _ => Ok(()),
        }
    }

    fn advance(&mut self, id: u64) {
        self.position = Some(self.position.map_or(id, |p| p.max(id)));
    }

    async fn send(&self, event: WatchEvent) -> Result<(), ()> {
        self.tx.send(Ok(event)).await.map_err(|_| ())
    }
}
