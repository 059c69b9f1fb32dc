//! fresco's cache store: pingora-cache's [`Storage`](pingora_cache::storage::Storage) on
//! foyer's hybrid RAM+SSD cache.
//!
//! - [`FoyerStorage`] is the storage; [`StoreConfig`] says how to build one.
//! - [`Record`] is the versioned record format shared by both tiers: entries point at bodies
//!   stored once by digest ([`format`](crate::Record)), compressed when that pays
//!   ([`compression`]).
//! - A full memory tier admits a new object on its second fill ([`Admission`]).
//! - Fills in progress are streamed to concurrent readers, and a failed fill is an error for
//!   them, never a short body.

mod admission;
pub mod compression;
mod config;
mod fill;
mod format;
mod hit;
mod metrics;
mod storage;

pub use admission::Admission;
pub use config::{EvictionPolicy, StoreConfig};
pub use format::{
    BodyRecord, Digest, Encoding, EntryRecord, FORMAT_VERSION, FormatError, Record, StoredMeta, StoredObject, body_key,
    digest_of,
};
pub use hit::CompleteHit;
pub use storage::{FoyerStorage, OpenError, StoreBytes};
