//! The store's own Prometheus series (foyer adds its `foyer_*` series to the same registry).

use once_cell::sync::Lazy;
use prometheus::{
    IntCounter, IntCounterVec, IntGaugeVec, register_int_counter, register_int_counter_vec, register_int_gauge_vec,
};

pub(crate) struct StoreMetrics {
    pub lookups: IntCounterVec,
    pub bytes: IntGaugeVec,
    pub memory_only: IntCounter,
    pub fills: IntCounterVec,
    pub errors: IntCounterVec,
    pub purged: IntCounter,
}

pub(crate) static METRICS: Lazy<StoreMetrics> = Lazy::new(|| StoreMetrics {
    lookups: register_int_counter_vec!(
        "fresco_store_lookups_total",
        "Store lookups by where the object was found: memory, disk, fill (being written) or miss",
        &["result"]
    )
    .unwrap(),
    bytes: register_int_gauge_vec!(
        "fresco_store_bytes",
        "Bytes held by the store, by tier (memory: weighed usage; disk: capacity in use)",
        &["tier"]
    )
    .unwrap(),
    memory_only: register_int_counter!(
        "fresco_store_memory_only_total",
        "Objects too large for a disk block, kept in memory only"
    )
    .unwrap(),
    fills: register_int_counter_vec!(
        "fresco_store_fills_total",
        "Body writes by outcome: complete, failed (writer dropped or errored), superseded",
        &["outcome"]
    )
    .unwrap(),
    errors: register_int_counter_vec!(
        "fresco_store_errors_total",
        "Store operations that failed, by operation",
        &["op"]
    )
    .unwrap(),
    purged: register_int_counter!("fresco_store_purged_total", "Objects removed by purge").unwrap(),
});
