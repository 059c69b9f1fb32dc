//! What fresco's benchmarks share: a closed-loop pool of request workers ([`pool`]) and
//! restarting a devcluster node with other cache sizes ([`node_sizes`]).

pub mod node_sizes;
pub mod pool;
