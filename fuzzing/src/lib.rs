//! fresco's fuzz targets. Each takes arbitrary bytes, feeds them to one parser of untrusted
//! input, and panics if the parser breaks a promise: a panic of its own, or an answer that
//! contradicts what the rest of fresco relies on (stated on each target).
//!
//! `fuzz/` (cargo-fuzz, nightly) runs them coverage-guided: `make fuzz`. The corpus test of this
//! crate runs every committed input (`fuzz/corpus/<target>/`, and the crashes kept as
//! regressions in `fuzz/regressions/<target>/`) on stable, in `make test`.

pub mod cache_key;
pub mod feed_subscription;
pub mod purge_request;
pub mod record;
pub mod signature;
pub mod sse;

/// A target: its name (the folder of its corpus) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 6] = [
    ("cache_key", cache_key::run),
    ("record", record::run),
    ("signature", signature::run),
    ("purge_request", purge_request::run),
    ("sse", sse::run),
    ("feed_subscription", feed_subscription::run),
];
