//! [`FoyerStorage`]: pingora-cache's `Storage` on foyer's `HybridCache`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCacheEntry, HybridCachePolicy, HybridCacheProperties, Location, RecoverMode, Spawner,
};
use parking_lot::Mutex;
use pingora_cache::key::{CacheHashKey, CacheKey};
use pingora_cache::storage::{HandleMiss, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheMeta, HitHandler};
use pingora_error::{ErrorType, Result};

use crate::admission::{Admission, Doorkeeper};
use crate::compression::{compress_if_worth_it, compressible_class};
use crate::config::StoreConfig;
use crate::fill::{Fill, FillReader, FillStatus, FillTable};
use crate::format::{Encoding, Record, StoredMeta, StoredObject, body_key};
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
///   variance), so every variant is its own entry. An entry names its body by digest; bodies
///   are stored once under a key derived from the digest, so identical bodies under any number
///   of keys take the space of one (in memory and on disk). A body no entry needs is never read
///   again and leaves by eviction like any cold record; an entry whose body is gone is a miss.
/// - Compressible bodies (SVG, BMP, TIFF, ICO, text) are stored brotli-compressed when that
///   saves 10%; hits decompress them unless the caller takes the stored bytes
///   ([`CompleteHit::send_encoded`]).
/// - A body read from disk is checked against its digest; a mismatch is dropped, counted in
///   `fresco_store_integrity_failures_total`, and read as a miss — never served.
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
    cache: HybridCache<u128, Record>,
    /// Serializes writes to foyer (see [`FoyerStorage::put_record`]).
    disk_order: Mutex<()>,
    /// Set by [`FoyerStorage::close`]: background checks stop.
    closed: std::sync::atomic::AtomicBool,
    accounting: Arc<Accounting>,
    fills: FillTable,
    fences: PurgeFences,
    /// Present under [`Admission::SecondRequest`].
    doorkeeper: Option<Doorkeeper>,
    config: StoreConfig,
}

/// Where a stored object goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Memory, and disk when there is one (and the object fits a block).
    Memory,
    /// Disk only: a full memory tier did not admit it.
    DiskOnly,
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

/// Bytes held by one store, by tier: bodies as served by its entries (logical) and what its
/// bodies occupy (stored). Exact for memory; for disk, what this process wrote less the
/// removals it knows of (foyer reclaims disk blocks without telling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreBytes {
    /// Memory tier, as served.
    pub memory_logical: i64,
    /// Memory tier, as stored.
    pub memory_stored: i64,
    /// Disk tier, as served.
    pub disk_logical: i64,
    /// Disk tier, as stored.
    pub disk_stored: i64,
}

#[derive(Default)]
struct Accounting {
    memory_logical: AtomicI64,
    memory_stored: AtomicI64,
    disk_logical: AtomicI64,
    disk_stored: AtomicI64,
    dedup_hits: AtomicU64,
    integrity_failures: AtomicU64,
}

impl Accounting {
    fn entered_memory(&self, record: &Record) {
        self.memory_logical
            .fetch_add(record.logical_bytes() as i64, Ordering::Relaxed);
        self.memory_stored
            .fetch_add(record.stored_bytes() as i64, Ordering::Relaxed);
    }

    fn written_to_disk(&self, record: &Record) {
        self.disk_logical
            .fetch_add(record.logical_bytes() as i64, Ordering::Relaxed);
        self.disk_stored
            .fetch_add(record.stored_bytes() as i64, Ordering::Relaxed);
    }

    fn integrity_failure(&self) {
        self.integrity_failures.fetch_add(1, Ordering::Relaxed);
        METRICS.integrity_failures.inc();
    }
}

/// Keeps the memory tier's byte counts: records enter through [`FoyerStorage`] (inserts and
/// promotions from disk) and leave through foyer (evictions, replacements, removals).
struct MemoryAccounting(Arc<Accounting>);

impl EventListener for MemoryAccounting {
    type Key = u128;
    type Value = Record;

    fn on_leave(&self, _reason: Event, _key: &u128, value: &Record) {
        self.0
            .memory_logical
            .fetch_sub(value.logical_bytes() as i64, Ordering::Relaxed);
        self.0
            .memory_stored
            .fetch_sub(value.stored_bytes() as i64, Ordering::Relaxed);
    }
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
        let started = std::time::Instant::now();
        let accounting = Arc::new(Accounting::default());
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
            .with_flush_on_close(true)
            .with_event_listener(Arc::new(MemoryAccounting(accounting.clone())));
        if let Some(registry) = &config.metrics_registry {
            builder = builder.with_metrics_registry(Box::new(
                mixtrics::registry::prometheus::PrometheusMetricsRegistry::new(registry.clone()),
            ));
        }
        let builder = builder
            .memory(config.memory_bytes)
            .with_shards(config.memory_shards())
            .with_eviction_config(config.eviction.foyer_config())
            .with_weighter(|_key: &u128, value: &Record| value.weight())
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
                    // One flusher buffer must hold the largest record; and when a burst of fills
                    // outruns the disk, foyer drops the writes its buffers cannot take
                    // (`foyer_storage_inner_op_total{op="buffer_overflow"}`), so the pool is
                    // sized for bursts, not for one block.
                    .with_buffer_pool_size(config.disk_write_buffer_bytes())
                    .with_submit_queue_size_threshold(2 * config.disk_write_buffer_bytes())
                    .with_flushers(2)
                    .with_tombstone_log(true);
                builder
                    .with_engine_config(engine)
                    .with_recover_mode(RecoverMode::Quiet)
                    .build()
                    .await?
            }
        };
        METRICS.recovery_seconds.set(started.elapsed().as_secs_f64());
        Ok(Self {
            cache,
            disk_order: Mutex::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
            accounting,
            fills: FillTable::default(),
            fences: PurgeFences::default(),
            doorkeeper: (config.admission == Admission::SecondRequest)
                .then(|| Doorkeeper::for_memory(config.memory_bytes)),
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
        self.closed.store(true, Ordering::Release);
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

    /// Whether the store may hold `key`: in memory, in the disk index, or as a fill in
    /// progress. False means a purge of it would find nothing, except a record still on its
    /// way to disk (foyer does not guarantee to report those), which only a caller that keeps
    /// such a record from being served by other means may skip: the freshness rules do.
    pub fn may_hold(&self, key: &CacheKey) -> bool {
        let hash = key_hash(key);
        self.fills.get(hash).is_some() || self.cache.contains(&hash)
    }

    /// Bytes held, by tier, as served and as stored.
    pub fn bytes(&self) -> StoreBytes {
        let a = &self.accounting;
        StoreBytes {
            memory_logical: a.memory_logical.load(Ordering::Relaxed),
            memory_stored: a.memory_stored.load(Ordering::Relaxed),
            disk_logical: a.disk_logical.load(Ordering::Relaxed),
            disk_stored: a.disk_stored.load(Ordering::Relaxed),
        }
    }

    /// Bodies not stored because an identical one already was.
    pub fn dedup_hits(&self) -> u64 {
        self.accounting.dedup_hits.load(Ordering::Relaxed)
    }

    /// Records read from disk that failed their digest or checksum (dropped, never served).
    pub fn integrity_failures(&self) -> u64 {
        self.accounting.integrity_failures.load(Ordering::Relaxed)
    }

    /// Updates the byte gauges; call before exporting metrics.
    pub fn refresh_gauges(&self) {
        let bytes = self.bytes();
        METRICS.memory.logical.set(bytes.memory_logical);
        METRICS.memory.stored.set(bytes.memory_stored);
        METRICS.disk.logical.set(bytes.disk_logical);
        METRICS.disk.stored.set(bytes.disk_stored);
        METRICS.memory_bytes.set(self.cache.memory().usage() as i64);
        if let Some(dir) = &self.config.disk_dir {
            METRICS.disk_bytes.set(allocated_bytes(dir) as i64);
        }
    }

    /// The record under `key`, memory first, with the tier it came from. Unreadable records are
    /// dropped and read as misses.
    async fn load_record(&self, key: u128) -> Option<(HybridCacheEntry<u128, Record>, Tier)> {
        // Memory first, synchronously: foyer's hybrid `get` allocates a fetch context per call.
        if let Some(entry) = self.cache.memory().get(&key) {
            return Some((entry, Tier::Memory));
        }
        match self.cache.get(&key).await {
            Ok(Some(entry)) => {
                // foyer keeps what it read from disk in memory.
                self.accounting.entered_memory(entry.value());
                Some((entry, Tier::Disk))
            }
            Ok(None) => None,
            Err(e) => {
                // foyer checks a checksum of every record it reads back: a flipped bit on disk
                // lands here, before the digest check below would see it.
                METRICS.errors.lookup.inc();
                self.accounting.integrity_failure();
                tracing::warn!(error = %e, "unreadable cache record treated as a miss");
                self.drop_record(&key);
                None
            }
        }
    }

    /// The entry (or format-1 whole record) of `hash`, unless a purge fence covers it; a
    /// fenced one is dropped.
    async fn load_unfenced_entry(&self, hash: u128) -> Option<(HybridCacheEntry<u128, Record>, Tier)> {
        let (entry, tier) = self.load_record(hash).await?;
        let created = entry.value().created()?;
        if self.fences.blocks(hash, created) {
            self.drop_record(&hash);
            return None;
        }
        Some((entry, tier))
    }

    /// The stored response header of `key`, without reading its body or counting a lookup:
    /// for callers that learn about a cached object rather than serve it (the change feed
    /// learning the tags of a warm disk cache). A fill in progress is not looked at.
    pub async fn stored_meta(&self, key: &CacheKey) -> Option<CacheMeta> {
        let (entry, _) = self.load_unfenced_entry(key_hash(key)).await?;
        record_meta(entry.value())
    }

    /// The stored response of `hash`: its entry (or format-1 whole record) and, for an entry,
    /// its body. An entry behind a purge fence, or whose body is gone or fails its digest, is
    /// dropped and read as a miss.
    async fn load(&self, hash: u128) -> Option<(Found, Tier)> {
        let (entry, tier) = self.load_unfenced_entry(hash).await?;
        let Record::Entry(record) = entry.value() else {
            return Some((Found { entry, body: None }, tier));
        };
        let key = record.body_key();
        // The hot path: the body in memory, trusted as it is.
        let body = match self.cache.memory().get(&key) {
            Some(body) if matches!(body.value(), Record::Body(b) if b.digest() == record.digest()) => Some(body),
            _ => self.load_body_from_disk(key, record.digest()).await,
        };
        let Some(body) = body else {
            self.drop_record(&hash);
            return None;
        };
        Some((
            Found {
                entry,
                body: Some(body),
            },
            tier,
        ))
    }

    /// A body not in memory, read from disk and checked against its digest. A body that does
    /// not read back (foyer's checksum) or fails its digest is dropped and counted as an
    /// integrity failure; one that is simply gone (evicted) as a dangling entry.
    async fn load_body_from_disk(
        &self,
        key: u128,
        digest: &crate::format::Digest,
    ) -> Option<HybridCacheEntry<u128, Record>> {
        // Held in the index but not loadable means foyer's checksum failed. (A body evicted
        // between the two looks is counted too; the window is a lookup's length.)
        let indexed = self.cache.contains(&key);
        let loaded = self.load_record(key).await;
        let intact = loaded.filter(|(body, tier)| match body.value() {
            Record::Body(b) if b.digest() == digest => matches!(tier, Tier::Memory) || b.is_intact(),
            _ => false,
        });
        if let Some((body, _)) = intact {
            return Some(body);
        }
        if indexed {
            self.accounting.integrity_failure();
            tracing::warn!(key = %format!("{key:032x}"), "a body on disk did not read back intact: dropped");
        } else {
            METRICS.dangling.inc();
        }
        self.drop_record(&key);
        None
    }

    /// Stores a completed fill where the admission rule puts it: nowhere when a memory-only
    /// store's full memory does not admit it.
    fn insert_fill(&self, hash: u128, obj: StoredObject) {
        let placement = self.placement_of_fill(hash, obj.body().len());
        match placement {
            Some(Placement::Memory) => METRICS.admissions.memory.inc(),
            Some(Placement::DiskOnly) => METRICS.admissions.disk_only.inc(),
            None => METRICS.admissions.not_kept.inc(),
        }
        if let Some(placement) = placement {
            self.insert_at(hash, obj, placement);
        }
    }

    /// Where the admission rule puts a fill of `hash` with a body of `body_len` bytes.
    fn placement_of_fill(&self, hash: u128, body_len: usize) -> Option<Placement> {
        let Some(doorkeeper) = &self.doorkeeper else {
            return Some(Placement::Memory);
        };
        let filled_before = doorkeeper.remember(hash);
        let memory = self.cache.memory();
        if filled_before || memory.usage() + body_len <= memory.capacity() {
            Some(Placement::Memory)
        } else if self.config.disk_dir.is_some() && !self.is_memory_only(body_len) {
            Some(Placement::DiskOnly)
        } else {
            None
        }
    }

    /// Stores a complete response in memory (and on disk): see [`Self::insert_at`].
    fn insert(&self, hash: u128, obj: StoredObject) {
        self.insert_at(hash, obj, Placement::Memory);
    }

    /// Stores a complete response: its body once (deduplicated by digest, compressed when that
    /// pays), then its entry.
    fn insert_at(&self, hash: u128, obj: StoredObject, placement: Placement) {
        let body_len = obj.body().len();
        if self.is_memory_only(body_len) {
            METRICS.memory_only.inc();
        }
        let (entry, body) = obj.into_records(|meta, digest, body| {
            if self.cache.contains(&body_key(digest)) {
                METRICS.dedup_hits.inc();
                self.accounting.dedup_hits.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(encode_body(meta, body))
        });
        if let Some(body) = body {
            self.store_record(body_key(body.digest()), Record::Body(body), body_len, placement);
        }
        self.store_record(hash, Record::Entry(entry), body_len, placement);
    }

    /// Whether a response whose body is `body_len` long is kept in memory only: larger than a
    /// disk block holds (its entry stays with it, so both leave together).
    fn is_memory_only(&self, body_len: usize) -> bool {
        self.config.disk_dir.is_some() && body_len > self.config.max_disk_object_bytes()
    }

    /// Stores a record of a response whose body is `body_len` long, counting its bytes.
    fn store_record(&self, key: u128, record: Record, body_len: usize, placement: Placement) {
        let memory_only = self.is_memory_only(body_len);
        self.accounting.entered_memory(&record);
        let properties = if memory_only {
            HybridCacheProperties::default().with_location(Location::InMem)
        } else {
            if self.config.disk_dir.is_some() {
                self.accounting.written_to_disk(&record);
            }
            match placement {
                Placement::Memory => HybridCacheProperties::default(),
                Placement::DiskOnly => {
                    // It passes through the memory tier as a phantom, which foyer reports
                    // leaving twice: as it passes (a removal) and when its handle drops (an
                    // eviction; foyer-memory 0.22, raw.rs). Counted in twice, it nets to nothing.
                    self.accounting.entered_memory(&record);
                    HybridCacheProperties::default().with_location(Location::OnDisk)
                }
            }
        };
        self.put_record(key, record, properties);
    }

    /// Inserts a record. Every write to foyer goes through here or [`Self::drop_record`], one
    /// at a time: foyer numbers a disk write and hands it to its writer in two steps, and its
    /// recovery stops reading a block at the first record numbered lower than the one before —
    /// so two threads writing at once could make a restart silently lose the rest of a block
    /// (`objects_filled_concurrently_all_come_back_after_a_restart` lost up to 89% without).
    fn put_record(&self, key: u128, record: Record, properties: HybridCacheProperties) {
        let _in_order = self.disk_order.lock();
        self.cache.insert_with_properties(key, record, properties);
    }

    /// Removes a record (see [`Self::put_record`] for why one at a time: removals write
    /// numbered tombstones).
    fn drop_record(&self, key: &u128) {
        let _in_order = self.disk_order.lock();
        self.cache.remove(key);
    }
}

/// The stored form of a new body: compressed when its type compresses and that saves 10%.
fn encode_body(meta: &StoredMeta, body: Bytes) -> (Encoding, Bytes) {
    let class = match meta.content_type().and_then(compressible_class) {
        Some(class) if !meta.is_content_encoded() => class,
        _ => return (Encoding::Identity, body),
    };
    let served = body.len();
    let (encoding, stored) = match compress_if_worth_it(&body) {
        Some(packed) => (Encoding::Brotli, packed),
        None => (Encoding::Identity, body),
    };
    METRICS.compressed(class, served, stored.len());
    (encoding, stored)
}

/// The response header an entry or whole record holds (a body record holds none).
fn record_meta(record: &Record) -> Option<CacheMeta> {
    match record {
        Record::Entry(entry) => Some(entry.stored_meta().meta()),
        Record::Whole(obj) => Some(obj.meta()),
        Record::Body(_) => None,
    }
}

/// A stored response as a lookup finds it.
struct Found {
    entry: HybridCacheEntry<u128, Record>,
    /// The body of an entry record (a whole record holds its own).
    body: Option<HybridCacheEntry<u128, Record>>,
}

impl Found {
    fn meta(&self) -> CacheMeta {
        record_meta(self.entry.value()).expect("a found response is an entry or a whole record")
    }

    fn hit(&self) -> CompleteHit {
        match (self.entry.value(), self.body.as_ref().map(|b| b.value())) {
            (Record::Entry(_), Some(Record::Body(body))) => {
                CompleteHit::new(body.encoding(), body.data().clone(), body.logical_len() as usize)
            }
            (Record::Whole(obj), _) => CompleteHit::new(Encoding::Identity, obj.body().clone(), obj.body().len()),
            _ => unreachable!("an entry is found with its body"),
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
        let Some((found, tier)) = self.load(hash).await else {
            METRICS.lookups.miss.inc();
            return Ok(None);
        };
        match tier {
            Tier::Memory => METRICS.lookups.memory.inc(),
            Tier::Disk => METRICS.lookups.disk.inc(),
        }
        Ok(Some((found.meta(), Box::new(found.hit()))))
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
        if let Some(entry) = self.cache.memory().get(&hash)
            && self.config.disk_dir.is_some()
        {
            // What the disk counts can still learn of the removal.
            let logical = entry.value().logical_bytes() as i64;
            self.accounting.disk_logical.fetch_sub(logical, Ordering::Relaxed);
        }
        let had_fill = self.fills.remove(hash).is_some();
        let stored = self.cache.contains(&hash);
        let fence = self.fences.raise(hash);
        self.drop_record(&hash);
        let storage = self.cache.storage().clone();
        self.cache.storage().spawner().spawn(async move {
            // foyer's remove misses a record still on its way to disk, and the record can land
            // after it; once the writer has caught up, remove whatever of the purged record
            // is still there, until nothing is. Only then may lookups go without the fence.
            // foyer's `wait` can return before such a record is visible again, so the fence
            // holds until three checks in a row, 50 ms apart, find nothing of it (at most 2 s).
            let mut clean = 0;
            for _ in 0..40 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                if self.closed.load(Ordering::Acquire) {
                    break;
                }
                storage.wait().await;
                match self.load_record(hash).await {
                    Some((entry, _)) if entry.value().created().is_some_and(|created| created <= fence) => {
                        self.drop_record(&hash);
                        clean = 0;
                    }
                    _ => clean += 1,
                }
                if clean >= 3 {
                    break;
                }
            }
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
        let Some((found, _)) = self.load(hash).await else {
            return Ok(false);
        };
        match found.entry.value() {
            Record::Entry(entry) => {
                let updated = Record::Entry(entry.with_meta(meta)?);
                self.store_record(hash, updated, entry.logical_len() as usize, Placement::Memory);
            }
            // A format-1 record is rewritten in the current format, body deduplicated.
            Record::Whole(obj) => self.insert(hash, StoredObject::new(meta, obj.body().clone())?),
            Record::Body(_) => return Ok(false),
        }
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
            self.storage.insert_fill(self.hash, obj);
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
