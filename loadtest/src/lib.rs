//! What fresco's benchmarks share: a closed-loop pool of request workers ([`pool`]),
//! restarting a devcluster node with other cache sizes ([`node_sizes`]), image-CDN request
//! traces ([`trace`]) and latency percentiles ([`latencies`]).

pub mod latencies;
pub mod node_sizes;
pub mod pool;
pub mod trace;
