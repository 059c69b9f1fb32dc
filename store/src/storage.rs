//! [`FoyerStorage`]: pingora-cache's `Storage` on foyer's `HybridCache`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder, HybridCacheEntry,
    HybridCachePolicy, HybridCacheProperties, Location, RecoverMode, Spawner,
};
use parking_lot::Mutex;
use pingora_cache::key::{CacheHashKey, CacheKey};
use pingora_cache::storage::{HandleMiss, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheMeta, HitHandler};
use pingora_error::{ErrorType, Result};

use crate::config::StoreConfig;
use crate::fill::{Fill, FillReader, FillStatus, FillTable};
use crate::format::StoredObject;
use crate::hit::CompleteHit;
use crate::metrics::METRICS;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The disk directory could not be created or used.
    #[error("cache directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// foyer refused the configuration or failed to recover the disk tier.
    #[error("opening the cache: {0}")]
    Foyer(#[from] foyer::Error),
    /// The store's background runtime could not start.
    #[error("starting the store runtime: {0}")]
    Runtime(std::io::Error),
}

/// A pingora cache `Storage` over foyer's hybrid RAM+SSD cache.
///
/// Contracts:
/// - Entries are keyed by the 128-bit combined hash of the pingora [`CacheKey`] (primary plus
///   variance), so every variant is its own entry.
/// - The memory tier is weighed in bytes; every completed object is also written to the disk
///   tier at insertion (so a `kill -9` loses nothing already stored), except objects larger
///   than a disk block, which are kept in memory only and counted in
///   `fresco_store_memory_only_total`.
/// - A purge removes the entry from both tiers and from the fill table; the tombstone log keeps
///   it removed across restarts.
/// - Readers of a fill in progress get an error, never a clean end of body, when its writer
///   fails (see [`crate::fill`]).
/// - Call [`FoyerStorage::close`] before exit so that queued disk writes are flushed.
pub struct FoyerStorage {
    cache: HybridCache<u128, StoredObject>,
    fills: FillTable,
    fences: PurgeFences,
    config: StoreConfig,
}

/// Purges not yet known to be on disk.
///
/// foyer's `remove` does not reach an entry still queued for the disk writer: until that
/// flush ends, a load serves it again (documented in foyer-storage's `store.rs` tests). So each
/// purge leaves a fence, its time, until the writer has caught up, and a lookup drops any
/// entry created before the fence of its key.
#[derive(Default)]
struct PurgeFences {
    count: AtomicUsize,
    fences: Mutex<HashMap<u128, SystemTime>>,
}

impl PurgeFences {
    fn raise(&self, hash: u128) -> SystemTime {
        let at = SystemTime::now();
        if self.fences.lock().insert(hash, at).is_none() {
            self.count.fetch_add(1, Ordering::Release);
        }
        at
    }

    fn lower(&self, hash: u128, at: SystemTime) {
        let mut fences = self.fences.lock();
        if fences.get(&hash) == Some(&at) {
            fences.remove(&hash);
            self.count.fetch_sub(1, Ordering::Release);
        }
    }

    /// Whether an entry created at `created` was purged after it was created.
    fn blocks(&self, hash: u128, created: SystemTime) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.fences.lock().get(&hash).is_some_and(|at| created <= *at)
    }
}

/// Bytes the files under `dir` occupy on the file system (blocks written, not apparent size).
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

fn key_hash(key: &impl CacheHashKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}

/// Where a lookup found its object.
enum Tier {
    Memory,
    Disk,
}

impl FoyerStorage {
    /// Opens (or recovers) a store.
    pub async fn open(config: StoreConfig) -> std::result::Result<Self, OpenError> {
        // foyer's flushers and reclaimers run on their own runtime so that they outlive any
        // runtime of the caller's (pingora builds one per service).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fresco-store")
            .enable_all()
            .build()
            .map_err(OpenError::Runtime)?;
        let mut builder = HybridCacheBuilder::new()
            .with_name(config.name.clone())
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true);
        if let Some(registry) = &config.metrics_registry {
            builder = builder.with_metrics_registry(Box::new(
                mixtrics::registry::prometheus::PrometheusMetricsRegistry::new(registry.clone()),
            ));
        }
        let builder = builder
            .memory(config.memory_bytes)
            .with_shards(config.memory_shards())
            .with_eviction_config(config.eviction.foyer_config())
            .with_weighter(|_key: &u128, value: &StoredObject| value.weight())
            .storage()
            .with_spawner(Spawner::from(runtime));
        let cache = match &config.disk_dir {
            None => builder.build().await?,
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir {
                    dir: dir.display().to_string(),
                    source,
                })?;
                let device = FsDeviceBuilder::new(dir).with_capacity(config.disk_bytes).build()?;
                let engine = BlockEngineConfig::new(device)
                    .with_block_size(config.block_bytes)
                    // One flusher buffer must hold the largest record.
                    .with_buffer_pool_size(2 * config.block_bytes)
                    .with_flushers(2)
                    .with_tombstone_log(true);
                builder
                    .with_engine_config(engine)
                    .with_recover_mode(RecoverMode::Quiet)
                    .build()
                    .await?
            }
        };
        Ok(Self {
            cache,
            fills: FillTable::default(),
            fences: PurgeFences::default(),
            config,
        })
    }

    /// Leaks the store: pingora's `Storage` methods take `&'static self`.
    pub fn leak(self) -> &'static Self {
        Box::leak(Box::new(self))
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Flushes queued disk writes and stops foyer's background work.
    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::error!(error = %e, "closing the cache store");
        }
    }

    /// Drops every object, in memory and on disk, and every fill in progress.
    pub async fn clear(&self) {
        self.fills.clear();
        if let Err(e) = self.cache.clear().await {
            METRICS.errors.clear.inc();
            tracing::error!(error = %e, "clearing the cache store");
        }
    }

    /// Updates the byte gauges; call before exporting metrics.
    pub fn refresh_gauges(&self) {
        METRICS.memory_bytes.set(self.cache.memory().usage() as i64);
        if let Some(dir) = &self.config.disk_dir {
            METRICS.disk_bytes.set(allocated_bytes(dir) as i64);
        }
    }

    /// The stored entry of `hash`, memory first, with the tier it came from. Unreadable
    /// records and entries behind a purge fence are dropped and read as misses.
    async fn load(&self, hash: u128) -> Option<(HybridCacheEntry<u128, StoredObject>, Tier)> {
        // Memory first, synchronously: foyer's hybrid `get` allocates a fetch context per call.
        let found = match self.cache.memory().get(&hash) {
            Some(entry) => Some((entry, Tier::Memory)),
            None => match self.cache.get(&hash).await {
                Ok(entry) => entry.map(|e| (e, Tier::Disk)),
                Err(e) => {
                    METRICS.errors.lookup.inc();
                    tracing::warn!(error = %e, "unreadable cache record treated as a miss");
                    self.cache.remove(&hash);
                    None
                }
            },
        };
        match found {
            Some((entry, _)) if self.fences.blocks(hash, entry.value().meta_created()) => {
                self.cache.remove(&hash);
                None
            }
            found => found,
        }
    }

    fn insert(&self, hash: u128, obj: StoredObject) {
        if obj.body().len() > self.config.max_disk_object_bytes() && self.config.disk_dir.is_some() {
            METRICS.memory_only.inc();
            self.cache.insert_with_properties(
                hash,
                obj,
                HybridCacheProperties::default().with_location(Location::InMem),
            );
        } else {
            self.cache.insert(hash, obj);
        }
    }
}

#[async_trait]
impl Storage for FoyerStorage {
    async fn lookup(&'static self, key: &CacheKey, _trace: &SpanHandle) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key_hash(key);
        // A fill in progress is newer than whatever is stored (it replaces a stale entry).
        if let Some(fill) = self.fills.get(hash) {
            METRICS.lookups.fill.inc();
            return Ok(Some((fill.meta(), Box::new(FillReader::new(fill)))));
        }
        let Some((entry, tier)) = self.load(hash).await else {
            METRICS.lookups.miss.inc();
            return Ok(None);
        };
        match tier {
            Tier::Memory => METRICS.lookups.memory.inc(),
            Tier::Disk => METRICS.lookups.disk.inc(),
        }
        let obj = entry.value();
        Ok(Some((obj.meta(), Box::new(CompleteHit::new(obj.body().clone())))))
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        // The writer's own reader: it must get exactly its own fill, never another one.
        match self.fills.get(key_hash(key)) {
            Some(fill) if fill.tag() == tag => Ok(Some((fill.meta(), Box::new(FillReader::new(fill))))),
            _ => Ok(None),
        }
    }

    async fn get_miss_handler(&'static self, key: &CacheKey, meta: &CacheMeta, _: &SpanHandle) -> Result<MissHandler> {
        let hash = key_hash(key);
        let fill = Fill::new(StoredObject::new(meta, Bytes::new())?);
        if let Some(previous) = self.fills.get(hash) {
            // A writer whose lock timed out; its readers finish from it, new ones come here.
            METRICS.fills.superseded.inc();
            drop(previous);
        }
        self.fills.insert(hash, fill.clone());
        Ok(Box::new(FillWriter {
            storage: self,
            hash,
            fill,
            finished: false,
        }))
    }

    async fn purge(&'static self, target: PurgeTarget<'_>, _: PurgeType, _: &SpanHandle) -> Result<PurgeOutcome> {
        let hash = key_hash(target.key());
        let had_fill = self.fills.remove(hash).is_some();
        let stored = self.cache.contains(&hash);
        let fence = self.fences.raise(hash);
        self.cache.remove(&hash);
        let storage = self.cache.storage().clone();
        self.cache.storage().spawner().spawn(async move {
            storage.wait().await;
            self.fences.lower(hash, fence);
        });
        if had_fill || stored {
            METRICS.purged.inc();
            Ok(PurgeOutcome::Purged(None))
        } else {
            Ok(PurgeOutcome::NotFound)
        }
    }

    async fn update_meta(&'static self, key: &CacheKey, meta: &CacheMeta, _: &SpanHandle) -> Result<bool> {
        let hash = key_hash(key);
        let Some((entry, _)) = self.load(hash).await else {
            return Ok(false);
        };
        self.insert(hash, entry.value().with_meta(meta)?);
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Writes one response body; on `finish` the object becomes a stored entry.
struct FillWriter {
    storage: &'static FoyerStorage,
    hash: u128,
    fill: Arc<Fill>,
    finished: bool,
}

#[async_trait]
impl HandleMiss for FillWriter {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        let len = self.fill.push(data);
        if len > self.storage.config.max_object_bytes() {
            return Err(pingora_error::Error::explain(
                ErrorType::InternalError,
                format!("body exceeds the largest cacheable object ({len} bytes)"),
            ));
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let body = self.fill.assembled_body();
        let size = body.len();
        // The metadata was serialized when the fill began; only the body is new.
        let obj = self.fill.stored_meta().with_body(body);
        // Only a fill still registered is stored: a purge that removed it while it was being
        // written must not be undone by its completion.
        if self
            .storage
            .fills
            .get(self.hash)
            .is_some_and(|f| f.id() == self.fill.id())
        {
            self.storage.insert(self.hash, obj);
        }
        self.storage.fills.remove_if(self.hash, self.fill.id());
        self.fill.settle(FillStatus::Complete);
        self.finished = true;
        METRICS.fills.complete.inc();
        Ok(MissFinishType::Created(size))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(self.fill.tag())
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.storage.fills.remove_if(self.hash, self.fill.id());
            self.fill.settle(FillStatus::Failed);
            METRICS.fills.failed.inc();
        }
    }
}
