//! The store's own Prometheus series (foyer adds its `foyer_*` series to the same registry).
//!
//! Labelled series are resolved once here: `with_label_values` hashes and locks, and lookups
//! sit on every request.

use once_cell::sync::Lazy;
use prometheus::{
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, register_int_counter, register_int_counter_vec,
    register_int_gauge_vec,
};

pub(crate) struct Lookups {
    pub memory: IntCounter,
    pub disk: IntCounter,
    pub fill: IntCounter,
    pub miss: IntCounter,
}

pub(crate) struct Fills {
    pub complete: IntCounter,
    pub failed: IntCounter,
    pub superseded: IntCounter,
}

pub(crate) struct Errors {
    pub lookup: IntCounter,
    pub clear: IntCounter,
}

pub(crate) struct StoreMetrics {
    pub lookups: Lookups,
    pub memory_bytes: IntGauge,
    pub disk_bytes: IntGauge,
    pub memory_only: IntCounter,
    pub fills: Fills,
    pub errors: Errors,
    pub purged: IntCounter,
}

fn counters(name: &str, help: &str, label: &str) -> IntCounterVec {
    register_int_counter_vec!(name, help, &[label]).expect("metric registers once")
}

pub(crate) static METRICS: Lazy<StoreMetrics> = Lazy::new(|| {
    let lookups = counters(
        "fresco_store_lookups_total",
        "Store lookups by where the object was found: memory, disk, fill (being written) or miss",
        "result",
    );
    let fills = counters(
        "fresco_store_fills_total",
        "Body writes by outcome: complete, failed (writer dropped or errored), superseded",
        "outcome",
    );
    let errors = counters(
        "fresco_store_errors_total",
        "Store operations that failed, by operation",
        "op",
    );
    let bytes: IntGaugeVec = register_int_gauge_vec!(
        "fresco_store_bytes",
        "Bytes held by the store, by tier (memory: weighed entries; disk: allocated on the file system)",
        &["tier"]
    )
    .expect("metric registers once");
    StoreMetrics {
        lookups: Lookups {
            memory: lookups.with_label_values(&["memory"]),
            disk: lookups.with_label_values(&["disk"]),
            fill: lookups.with_label_values(&["fill"]),
            miss: lookups.with_label_values(&["miss"]),
        },
        memory_bytes: bytes.with_label_values(&["memory"]),
        disk_bytes: bytes.with_label_values(&["disk"]),
        memory_only: register_int_counter!(
            "fresco_store_memory_only_total",
            "Objects too large for a disk block, kept in memory only"
        )
        .expect("metric registers once"),
        fills: Fills {
            complete: fills.with_label_values(&["complete"]),
            failed: fills.with_label_values(&["failed"]),
            superseded: fills.with_label_values(&["superseded"]),
        },
        errors: Errors {
            lookup: errors.with_label_values(&["lookup"]),
            clear: errors.with_label_values(&["clear"]),
        },
        purged: register_int_counter!("fresco_store_purged_total", "Objects removed by purge")
            .expect("metric registers once"),
    }
});
