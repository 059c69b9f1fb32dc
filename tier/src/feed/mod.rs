//! The change feed an edge serves at `/_fresco/events` (contract: docs/feed.md).
//!
//! - [`FeedHub`] is told of every purge the edge applies ([`PurgeObserver`]), after the purge
//!   is visible to hits; it keeps a bounded history of them, prepared for matching
//!   ([`purge::PreparedPurge`]), and wakes every connection.
//! - Each connection ([`serve`]) follows a [`subscription::Subscription`] and keeps a
//!   *cursor*: the last sequence it has matched. Woken, it reads the history past its cursor;
//!   if the history no longer reaches back that far it sends `reset`. A connection holds no
//!   queue of its own, so its memory is bounded whatever the purge rate, and a slow reader costs
//!   nothing but its socket.
//! - A client with no event id yet may give its age instead (`age_ms`): its cursor is put
//!   before the first purge accepted since then ([`FeedHub::position_before_age`]).
//! - [`index::UrlIndex`] remembers the tags of cached URLs, so a tag purge can name them.
//! - [`prefill`] refills the history from purge-api's log after a restart, so clients that
//!   reconnect to a restarted edge resume instead of being reset.

pub mod index;
pub mod live_js;
pub mod prefill;
pub mod purge;
pub mod serve;
pub mod sse;
pub mod subscription;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fresco_protocol::PurgeRecord;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::config::FeedSection;
use crate::freshness::{Freshness, PurgeObserver};
use crate::metrics::METRICS;
use index::{UrlFacts, UrlIndex};
use purge::PreparedPurge;

/// The purges a feed can replay: every sequence in `(base, base + records.len()]`.
struct History {
    base: u64,
    /// When the purge at `base` was accepted, if known (nothing before sequence 1: zero).
    base_at_ms: Option<u64>,
    records: VecDeque<Arc<PreparedPurge>>,
    weight: usize,
}

impl History {
    fn head(&self) -> u64 {
        self.base + self.records.len() as u64
    }

    /// Forgets everything up to `base`, whose time is unknown.
    fn restart_at(&mut self, base: u64) {
        self.base = base;
        self.base_at_ms = (base == 0).then_some(0);
        self.records.clear();
        self.weight = 0;
    }
}

/// How much earlier than a client's stated load time purges are still replayed to it: the
/// time a purge takes to reach the edge, the request's own travel and clock differences
/// between purge-api and the edge. A purge replayed needlessly costs the client one refetch.
const AGE_MARGIN_MS: u64 = 1000;

/// What a connection reads past its cursor.
pub enum Catchup {
    /// The purges after the cursor, in order (possibly none).
    Purges(Vec<Arc<PreparedPurge>>),
    /// The history starts after the cursor: the connection must reset to `head`.
    Reset {
        /// Where the connection continues from.
        head: u64,
    },
}

/// The edge's side of every feed connection.
pub struct FeedHub {
    limits: FeedSection,
    node_id: String,
    fresh: Arc<Freshness>,
    history: RwLock<History>,
    /// The history's head; every connection waits on it.
    head: watch::Sender<u64>,
    index: Mutex<UrlIndex>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Whether the history has been refilled after a start (or given up on).
    prefilled: watch::Sender<bool>,
    /// What the node had applied when the hub began: where a refill must end.
    started_at: u64,
    closing: watch::Sender<bool>,
}

/// A feed connection admitted under the limits; gives its place back when dropped.
pub struct Admission {
    hub: Arc<FeedHub>,
    client: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut per_client = self.hub.per_client.lock();
        if let Some(open) = per_client.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                per_client.remove(&self.client);
            }
        }
        METRICS.feed_connections.dec();
    }
}

impl FeedHub {
    /// A hub for an edge whose purges `fresh` applies; registers itself as its observer.
    pub fn new(limits: FeedSection, node_id: String, fresh: Arc<Freshness>) -> Arc<Self> {
        let applied = fresh.applied();
        let hub = Arc::new(Self {
            index: Mutex::new(UrlIndex::new(
                limits.remembered_urls,
                limits.remembered_bytes.0 as usize,
            )),
            limits,
            node_id,
            history: RwLock::new(History {
                base: applied,
                base_at_ms: (applied == 0).then_some(0),
                records: VecDeque::new(),
                weight: 0,
            }),
            head: watch::Sender::new(applied),
            fresh: fresh.clone(),
            per_client: Mutex::new(HashMap::new()),
            prefilled: watch::Sender::new(applied == 0),
            started_at: applied,
            closing: watch::Sender::new(false),
        });
        fresh.observe(hub.clone());
        hub
    }

    /// The limits in force.
    pub fn limits(&self) -> &FeedSection {
        &self.limits
    }

    /// This edge's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's freshness state (for resolving URLs to keys).
    pub fn freshness(&self) -> &Freshness {
        &self.fresh
    }

    /// What the node had applied when the hub began.
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    /// The last sequence every connection can be brought up to.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that changes whenever the head moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// A receiver that turns true when the edge stops.
    pub fn watch_closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every feed connection (the edge is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Admits a connection from `client`, or says why not (429 or 503).
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admission, subscription::Refusal> {
        if *self.closing.borrow() {
            METRICS.feed_rejected("stopping");
            return Err(subscription::Refusal::new(
                503,
                "this edge is stopping; try another edge",
            ));
        }
        let mut per_client = self.per_client.lock();
        // The gauge is the count of open feeds (one hub per process; it moves under this lock).
        if METRICS.feed_connections.get() as usize >= self.limits.max_connections {
            METRICS.feed_rejected("edge_full");
            return Err(subscription::Refusal::new(
                503,
                format!(
                    "this edge serves its limit of {} feeds; try another edge",
                    self.limits.max_connections
                ),
            ));
        }
        let open = per_client.entry(client).or_default();
        if *open >= self.limits.max_connections_per_client {
            METRICS.feed_rejected("client_full");
            return Err(subscription::Refusal::new(
                429,
                format!(
                    "{client} has {} feeds open, the most one client may; close one (one feed can follow {} URLs)",
                    *open, self.limits.max_subscriptions
                ),
            ));
        }
        *open += 1;
        METRICS.feed_connections.inc();
        Ok(Admission {
            hub: self.clone(),
            client,
        })
    }

    /// What a connection whose cursor is at `cursor` has missed.
    pub fn catch_up(&self, cursor: u64) -> Catchup {
        let history = self.history.read();
        if cursor < history.base {
            return Catchup::Reset { head: history.head() };
        }
        let skip = (cursor - history.base) as usize;
        Catchup::Purges(history.records.iter().skip(skip).cloned().collect())
    }

    /// The cursor of a client that loaded what it follows `age_ms` ago and has seen no event:
    /// just before the first purge accepted since then (less [`AGE_MARGIN_MS`]), so that
    /// catching up replays every purge its copies may predate. When the history does not
    /// reach back that far, a cursor behind it, so that the client is reset.
    pub fn position_before_age(&self, age_ms: u64) -> u64 {
        let since = unix_now_ms().saturating_sub(age_ms.saturating_add(AGE_MARGIN_MS));
        let history = self.history.read();
        match history.records.iter().rev().find(|purge| purge.at_ms < since) {
            Some(before) => before.seq,
            None if history.base_at_ms.is_some_and(|at| at < since) => history.base,
            None => history.base.saturating_sub(1),
        }
    }

    /// Waits (at most `limit`) until the history has been refilled after a start.
    pub async fn wait_prefilled(&self, limit: Duration) {
        let mut prefilled = self.prefilled.subscribe();
        let _ = tokio::time::timeout(limit, prefilled.wait_for(|done| *done)).await;
    }

    /// Puts purges read back from the log in front of the history: `records` must end right
    /// where the history begins. Marks the refill done either way.
    pub fn prefill(&self, records: &[PurgeRecord]) {
        {
            let index = self.index.lock();
            let mut history = self.history.write();
            let contiguous = records.last().is_some_and(|r| r.seq == history.base)
                && records.windows(2).all(|w| w[1].seq == w[0].seq + 1);
            if contiguous {
                history.base_at_ms = records.last().map(|r| r.at_ms);
                for (i, record) in records.iter().enumerate().rev() {
                    let purge = Arc::new(PreparedPurge::new(record, &self.fresh, &index));
                    if history.weight + purge.weight() > self.weight_limit()
                        || history.records.len() >= self.limits.history
                    {
                        break;
                    }
                    history.weight += purge.weight();
                    history.base -= 1;
                    history.base_at_ms = match i {
                        0 => (history.base == 0).then_some(0),
                        _ => Some(records[i - 1].at_ms),
                    };
                    history.records.push_front(purge);
                }
            }
        }
        self.prefilled.send_replace(true);
    }

    /// Records what a stored response said about a URL.
    pub fn learn(&self, primary: &str, facts: UrlFacts) {
        self.index.lock().learn(primary, facts);
    }

    /// Whether the tags of `primary` are known.
    pub fn knows(&self, primary: &str) -> bool {
        self.index.lock().knows(primary)
    }

    fn weight_limit(&self) -> usize {
        // A history of the configured length of purges of a few dozen keys each.
        self.limits.history * 64
    }
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PurgeObserver for FeedHub {
    fn applied(&self, records: &[&PurgeRecord]) {
        let prepared: Vec<Arc<PreparedPurge>> = {
            let index = self.index.lock();
            records
                .iter()
                .map(|r| Arc::new(PreparedPurge::new(r, &self.fresh, &index)))
                .collect()
        };
        let head = {
            let mut history = self.history.write();
            for purge in prepared {
                if purge.seq != history.head() + 1 {
                    // Not the next one (the log was rebuilt): what came before cannot be
                    // replayed against it.
                    history.restart_at(purge.seq - 1);
                }
                history.weight += purge.weight();
                history.records.push_back(purge);
                while history.records.len() > self.limits.history
                    || (history.weight > self.weight_limit() && history.records.len() > 1)
                {
                    let Some(oldest) = history.records.pop_front() else {
                        break;
                    };
                    history.weight -= oldest.weight();
                    history.base += 1;
                    history.base_at_ms = Some(oldest.at_ms);
                }
            }
            history.head()
        };
        self.head.send_replace(head);
    }

    fn reset(&self, next: u64) {
        self.history.write().restart_at(next.saturating_sub(1));
        // Every connection's cursor is now behind the history (or level with it): the ones
        // behind are reset, as the node was.
        self.head.send_replace(next.saturating_sub(1));
    }
}
