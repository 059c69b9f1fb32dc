//! fresco's cache store: pingora-cache's [`Storage`](pingora_cache::storage::Storage) on
//! foyer's hybrid RAM+SSD cache.
//!
//! - [`FoyerStorage`] is the storage; [`StoreConfig`] says how to build one.
//! - [`StoredObject`] is the versioned record format shared by both tiers.
//! - Fills in progress are streamed to concurrent readers, and a failed fill is an error for
//!   them, never a short body.

mod config;
mod fill;
mod format;
mod hit;
mod metrics;
mod storage;

pub use config::{EvictionPolicy, StoreConfig};
pub use format::{FORMAT_VERSION, FormatError, StoredObject};
pub use storage::{FoyerStorage, OpenError};
