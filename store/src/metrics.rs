//! The store's own Prometheus series (foyer adds its `foyer_*` series to the same registry).
//!
//! Labelled series are resolved once here: `with_label_values` hashes and locks, and lookups
//! sit on every request.

use prometheus::{
    Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, register_gauge, register_int_counter,
    register_int_counter_vec, register_int_gauge_vec,
};
use std::sync::LazyLock;

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

/// Where completed fills were put (see [`crate::Admission`]).
pub(crate) struct Admissions {
    pub memory: IntCounter,
    pub disk_only: IntCounter,
    pub not_kept: IntCounter,
}

pub(crate) struct Errors {
    pub lookup: IntCounter,
    pub clear: IntCounter,
}

/// Bytes of one tier: bodies as served by the entries held, and what bodies occupy.
pub(crate) struct TierBytes {
    pub logical: IntGauge,
    pub stored: IntGauge,
}

pub(crate) struct StoreMetrics {
    pub lookups: Lookups,
    pub memory: TierBytes,
    pub disk: TierBytes,
    pub dedup_hits: IntCounter,
    pub integrity_failures: IntCounter,
    pub dangling: IntCounter,
    compression_in: IntCounterVec,
    compression_out: IntCounterVec,
    pub recovery_seconds: Gauge,
    pub memory_bytes: IntGauge,
    pub disk_bytes: IntGauge,
    pub memory_only: IntCounter,
    pub fills: Fills,
    pub admissions: Admissions,
    pub errors: Errors,
    pub purged: IntCounter,
}

impl StoreMetrics {
    /// Counts a stored body of a compressible `class`: its size as served and as stored.
    pub fn compressed(&self, class: &str, served: usize, stored: usize) {
        self.compression_in.with_label_values(&[class]).inc_by(served as u64);
        self.compression_out.with_label_values(&[class]).inc_by(stored as u64);
    }
}

fn counters(name: &str, help: &str, label: &str) -> IntCounterVec {
    register_int_counter_vec!(name, help, &[label]).expect("metric registers once")
}

pub(crate) static METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| {
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
    let admissions = counters(
        "fresco_store_admissions_total",
        "Completed fills by where they were put: memory (and disk), disk_only (a full memory \
         tier's first fill of a key), not_kept (the same in a memory-only store)",
        "placement",
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
    let logical: IntGaugeVec = register_int_gauge_vec!(
        "fresco_store_logical_bytes",
        "Bytes of the bodies of the entries held, as served (before deduplication and compression), by tier; \
         disk: written by this process, less removals it knows of",
        &["tier"]
    )
    .expect("metric registers once");
    let stored: IntGaugeVec = register_int_gauge_vec!(
        "fresco_store_stored_bytes",
        "Bytes those bodies occupy after deduplication and compression, by tier; \
         disk: written by this process, less removals it knows of",
        &["tier"]
    )
    .expect("metric registers once");
    StoreMetrics {
        memory: TierBytes {
            logical: logical.with_label_values(&["memory"]),
            stored: stored.with_label_values(&["memory"]),
        },
        disk: TierBytes {
            logical: logical.with_label_values(&["disk"]),
            stored: stored.with_label_values(&["disk"]),
        },
        dedup_hits: register_int_counter!(
            "fresco_store_dedup_hits_total",
            "Bodies not stored because an identical body already was"
        )
        .expect("metric registers once"),
        integrity_failures: register_int_counter!(
            "fresco_store_integrity_failures_total",
            "Bodies read from disk whose digest did not match: dropped, never served"
        )
        .expect("metric registers once"),
        dangling: register_int_counter!(
            "fresco_store_dangling_entries_total",
            "Entries found without their body (evicted or dropped): read as misses"
        )
        .expect("metric registers once"),
        compression_in: counters(
            "fresco_store_compression_input_bytes_total",
            "Bodies of compressible types stored, bytes as served, by type",
            "type",
        ),
        compression_out: counters(
            "fresco_store_compression_output_bytes_total",
            "Bodies of compressible types stored, bytes as stored (compressed when it saved 10%), by type",
            "type",
        ),
        recovery_seconds: register_gauge!(
            "fresco_store_recovery_seconds",
            "Time the store took to open, recovering the disk tier"
        )
        .expect("metric registers once"),
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
        admissions: Admissions {
            memory: admissions.with_label_values(&["memory"]),
            disk_only: admissions.with_label_values(&["disk_only"]),
            not_kept: admissions.with_label_values(&["not_kept"]),
        },
        errors: Errors {
            lookup: errors.with_label_values(&["lookup"]),
            clear: errors.with_label_values(&["clear"]),
        },
        purged: register_int_counter!("fresco_store_purged_total", "Objects removed by purge")
            .expect("metric registers once"),
    }
});
