//! purge-api: accepts authenticated purges, orders them in a durable log, streams the log to
//! every edge and shield, tracks their leases and acks, and answers a purge once no node can
//! serve the purged objects any more. The protocol on the wire is `fresco-protocol`'s.

pub mod auth;
pub mod config;
pub mod control_plane;
pub mod etcd;
pub mod http;
pub mod log;
pub mod members;
pub mod metrics;
pub mod replay;
pub mod request;
