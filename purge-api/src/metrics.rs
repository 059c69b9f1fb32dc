//! purge-api's Prometheus series.

use prometheus::{
    Histogram, HistogramVec, IntCounterVec, IntGauge, register_histogram, register_histogram_vec,
    register_int_counter_vec, register_int_gauge,
};
use std::sync::LazyLock;

/// purge-api's metrics.
pub struct PurgeMetrics {
    /// Accepted purges by kind (url, tag, prefix).
    pub purges: IntCounterVec,
    /// Refused requests by reason (unauthorized, invalid, too_large).
    pub rejected: IntCounterVec,
    /// Time to write a purge durably.
    pub append_seconds: Histogram,
    /// Time from append to complete (every lease holder applied it or surely expired).
    pub ack_seconds: Histogram,
    /// The log's head.
    pub head: IntGauge,
    /// Nodes holding a lease.
    pub leased: IntGauge,
    /// Nodes behind the head.
    pub lagging: IntGauge,
    /// Nodes streaming the log from this replica now (with replicas: which one they follow).
    pub log_streams: IntGauge,
    /// etcd calls by operation (etcd control plane only).
    pub etcd_seconds: HistogramVec,
    /// Failed etcd calls by operation: an operator alarms on these.
    pub etcd_errors: IntCounterVec,
}

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The metrics of this process.
pub static METRICS: LazyLock<PurgeMetrics> = LazyLock::new(|| PurgeMetrics {
    purges: register_int_counter_vec!("fresco_purges_total", "Purges accepted, by kind", &["kind"]).unwrap(),
    rejected: register_int_counter_vec!(
        "fresco_purge_rejected_total",
        "Purge API requests refused, by reason",
        &["reason"]
    )
    .unwrap(),
    append_seconds: register_histogram!(
        "fresco_purge_append_seconds",
        "Time to append a purge to the log durably",
        BUCKETS.to_vec()
    )
    .unwrap(),
    ack_seconds: register_histogram!(
        "fresco_purge_ack_seconds",
        "Time from append until every lease holder applied the purge (or surely lost its lease)",
        BUCKETS.to_vec()
    )
    .unwrap(),
    head: register_int_gauge!("fresco_purge_log_head", "Sequence number of the newest purge").unwrap(),
    leased: register_int_gauge!("fresco_purge_leased_nodes", "Nodes holding a lease").unwrap(),
    lagging: register_int_gauge!("fresco_purge_lagging_nodes", "Nodes that have not applied the head").unwrap(),
    log_streams: register_int_gauge!(
        "fresco_purge_log_streams",
        "Nodes streaming the purge log from this process"
    )
    .unwrap(),
    etcd_seconds: register_histogram_vec!(
        "fresco_etcd_request_seconds",
        "Latency of etcd calls, by operation",
        &["operation"],
        BUCKETS.to_vec()
    )
    .unwrap(),
    etcd_errors: register_int_counter_vec!(
        "fresco_etcd_errors_total",
        "etcd calls that failed, by operation",
        &["operation"]
    )
    .unwrap(),
});
