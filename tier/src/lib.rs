//! What fresco's edge and shield share: the cache policy and proxy, configuration, metrics,
//! the admin endpoints and the node's process setup.

pub mod admin;
pub mod background;
pub mod cache_key;
pub mod config;
pub mod connections;
pub mod content_coding;
pub mod drain;
pub mod errors;
pub mod expiry;
pub mod feed;
pub mod freshness;
pub mod hop_by_hop;
pub mod immutable;
pub mod internal_headers;
pub mod lifetime;
pub mod methods;
pub mod metrics;
pub mod node;
pub mod poisoning;
pub mod proxy;
pub mod revalidation;
pub mod routing;
pub mod shedding;
pub mod tls;
pub mod variance;
