//! The series an operator alarms on, in the process-wide Prometheus registry.
//!
//! Every labelled child is resolved once: `with_label_values` hashes and locks, and these are
//! touched on every request.

use prometheus::{
    Histogram, IntCounter, IntCounterVec, IntGauge, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge,
};
use std::sync::LazyLock;

use crate::errors::FailureKind;

/// Cache results, as in `X-Cache`.
pub const CACHE_LABELS: [&str; 5] = ["HIT", "MISS", "REVALIDATED", "STALE", "BYPASS"];
/// Status classes.
pub const STATUS_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "none"];

/// A node's request metrics.
pub struct TierMetrics {
    requests: Vec<Vec<IntCounter>>,
    latency: Vec<Histogram>,
    /// Fetches sent to an origin.
    pub origin_fetches: IntCounter,
    /// Fetches sent to a shield.
    pub shield_fetches: IntCounter,
    /// Requests that waited on another request's fetch of the same object instead of fetching.
    pub collapsed: IntCounter,
    errors: Vec<IntCounter>,
    /// Shields skipped because they could not be reached.
    pub shield_failovers: IntCounter,
    /// Misses answered 503 because their upstream was saturated (`crate::shedding`).
    pub shed: IntCounter,
    /// Last purge sequence applied.
    pub purge_applied: IntGauge,
    /// Purges the log's head is ahead of this node (at the last heartbeat).
    pub purge_lag: IntGauge,
    /// 1 while the node holds a lease, 0 while fenced.
    pub lease_held: IntGauge,
    /// Hits of mutable objects revalidated because the node was fenced.
    pub fenced_revalidations: IntCounter,
    /// Stored objects found purged (hard) or stale (soft) by a rule at lookup.
    pub purged_hits: IntCounter,
    /// Targets invalidated in this node by a successful unsafe method (`crate::methods`).
    pub invalidations: IntCounter,
    /// Times the purge log stream broke.
    pub purge_stream_errors: IntCounter,
    /// Resets: the node was behind the log's retention and dropped its cache.
    pub purge_resets: IntCounter,
    /// Change feed connections open.
    pub feed_connections: IntGauge,
    /// `change` events sent on feeds.
    pub feed_events: IntCounter,
    /// `reset` events sent: a client could not be caught up from the history.
    pub feed_resets: IntCounter,
    feed_rejected: IntCounterVec,
    /// Purge rules dropped by compaction (`crate::freshness`).
    pub purge_rules_compacted: IntCounter,
    /// Client connections open.
    pub connections_open: IntGauge,
    connections_refused: IntCounterVec,
    connections_timed_out: IntCounterVec,
}

impl TierMetrics {
    /// Counts one answered request.
    pub fn request(&self, cache: &str, status: u16, seconds: f64) {
        let cache = CACHE_LABELS
            .iter()
            .position(|l| *l == cache)
            .unwrap_or(CACHE_LABELS.len() - 1);
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            500..=599 => 3,
            _ => 4,
        };
        self.requests[cache][class].inc();
        self.latency[cache].observe(seconds);
    }

    /// Counts a feed request refused, by `reason` (`bad_request`, `client_full`, `edge_full`,
    /// `stopping`).
    pub fn feed_rejected(&self, reason: &str) {
        self.feed_rejected.with_label_values(&[reason]).inc();
    }

    /// Counts a client connection refused for `reason` (`client_full`, `node_full`).
    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }

    /// Counts a client connection closed by a deadline (`header`, `idle`).
    pub fn connection_timed_out(&self, phase: &str) {
        self.connections_timed_out.with_label_values(&[phase]).inc();
    }

    /// Counts one error response of `kind`.
    pub fn error(&self, kind: FailureKind) {
        self.errors[kind as usize].inc();
    }
}

fn gauge(name: &str, help: &str) -> IntGauge {
    register_int_gauge!(name, help).expect("metric registers once")
}

fn counter(name: &str, help: &str) -> IntCounter {
    register_int_counter!(name, help).expect("metric registers once")
}

fn register(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register_int_counter_vec!(name, help, labels).expect("metric registers once")
}

/// The metrics of this process.
pub static METRICS: LazyLock<TierMetrics> = LazyLock::new(|| {
    let requests = register(
        "fresco_requests_total",
        "Requests answered, by cache result and status class",
        &["cache", "status"],
    );
    let latency = register_histogram_vec!(
        "fresco_request_duration_seconds",
        "Time from request to the end of the response, by cache result",
        &["cache"],
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
        ]
    )
    .expect("metric registers once");
    let fetches = register(
        "fresco_upstream_fetches_total",
        "Requests sent upstream (misses, revalidations, uncacheable), by upstream kind",
        &["upstream"],
    );
    let errors = register(
        "fresco_errors_total",
        "Error responses generated by this node, by kind (upstream_timeout, upstream_unreachable, client, internal)",
        &["kind"],
    );
    TierMetrics {
        requests: CACHE_LABELS
            .iter()
            .map(|c| {
                STATUS_CLASSES
                    .iter()
                    .map(|s| requests.with_label_values(&[c, s]))
                    .collect()
            })
            .collect(),
        latency: CACHE_LABELS.iter().map(|c| latency.with_label_values(&[c])).collect(),
        origin_fetches: fetches.with_label_values(&["origin"]),
        shield_fetches: fetches.with_label_values(&["shield"]),
        collapsed: register_int_counter!(
            "fresco_collapsed_requests_total",
            "Requests that waited for a concurrent fetch of the same object instead of fetching it"
        )
        .expect("metric registers once"),
        errors: FailureKind::ALL
            .iter()
            .map(|k| errors.with_label_values(&[k.label()]))
            .collect(),
        shed: counter(
            "fresco_shed_total",
            "Misses answered 503 with Retry-After because their shield or origin had all its fetch slots and queue taken",
        ),
        shield_failovers: register_int_counter!(
            "fresco_shield_failovers_total",
            "Connections to a shield that failed, after which the next shield (or the origin) was tried"
        )
        .expect("metric registers once"),
        purge_applied: gauge("fresco_purge_applied_seq", "Last purge sequence applied by this node"),
        purge_lag: gauge(
            "fresco_purge_lag",
            "How many purges the log's head is ahead of this node",
        ),
        lease_held: gauge(
            "fresco_lease_held",
            "1 while this node holds a lease, 0 while it is fenced",
        ),
        fenced_revalidations: counter(
            "fresco_fenced_revalidations_total",
            "Hits of mutable objects revalidated upstream because the node had no lease",
        ),
        purged_hits: counter(
            "fresco_purged_hits_total",
            "Stored objects found covered by a newer purge at lookup (fetched or revalidated instead)",
        ),
        invalidations: counter(
            "fresco_invalidations_total",
            "Targets invalidated in this node by a successful POST, PUT, DELETE or other unsafe method",
        ),
        purge_stream_errors: counter("fresco_purge_stream_errors_total", "Times the purge log stream broke"),
        purge_resets: counter(
            "fresco_purge_resets_total",
            "Times this node was behind the log's retention and dropped its whole cache",
        ),
        feed_connections: gauge("fresco_feed_connections", "Change feed connections open on this edge"),
        feed_events: counter("fresco_feed_events_total", "Change events sent on feeds"),
        feed_resets: counter(
            "fresco_feed_resets_total",
            "Reset events sent: a feed client was behind the replay history",
        ),
        feed_rejected: register(
            "fresco_feed_rejected_total",
            "Feed requests refused, by reason (bad_request, client_full, edge_full, stopping)",
            &["reason"],
        ),
        connections_open: gauge("fresco_connections_open", "Client connections open"),
        purge_rules_compacted: counter(
            "fresco_purge_rules_compacted_total",
            "Purge rules dropped by compaction; what was fetched before them is revalidated",
        ),
        connections_refused: register(
            "fresco_connections_refused_total",
            "Client connections refused with 503, by reason (client_full, node_full)",
            &["reason"],
        ),
        connections_timed_out: register(
            "fresco_connections_timed_out_total",
            "Client connections closed for waiting too long, by phase (header: no first request; idle: no next one)",
            &["phase"],
        ),
    }
});
