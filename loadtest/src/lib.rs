//! What fresco's benchmarks share: a closed-loop pool of request workers ([`pool`]),
//! restarting a devcluster node with other cache sizes ([`node_sizes`]), image-CDN request
//! traces ([`trace`]), running k6 scenarios ([`k6`]), latency percentiles ([`latencies`]) and
//! where results go ([`output`]).

pub mod k6;
pub mod latencies;
pub mod node_sizes;
pub mod output;
pub mod pool;
pub mod trace;
