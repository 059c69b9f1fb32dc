//! What a store is built from.

use std::path::PathBuf;

use crate::admission::Admission;

/// The memory tier's eviction policy (foyer's, weighed in bytes).
///
/// Default: [`EvictionPolicy::S3Fifo`]. On generated image-CDN traces with one-hit wonders
/// (a quarter to a half of the requests), behind the default [`Admission::SecondRequest`], it
/// had the best request and byte hit ratios of foyer's policies, level with or above the best
/// policy libCacheSim simulates in 6 of 8 cells (`docs/benchmarks.md`, `make bench-trace`). On pure
/// Zipf traces admitting every fill, SIEVE did best (`cargo run --release -p fresco-store
/// --example policy_sim`). A hit costs either one an atomic update, no list move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// S3-FIFO: a small probationary FIFO, a main FIFO and a ghost queue.
    #[default]
    S3Fifo,
    /// Window TinyLFU: admission by a count-min sketch of frequency.
    Lfu,
    /// Least recently used.
    Lru,
    /// SIEVE: one FIFO queue with a visited bit and a moving hand.
    Sieve,
    /// Plain FIFO.
    Fifo,
}

impl EvictionPolicy {
    /// All policies, for measurement.
    pub const ALL: [EvictionPolicy; 5] = [Self::S3Fifo, Self::Lfu, Self::Lru, Self::Sieve, Self::Fifo];

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Self::S3Fifo => "s3fifo",
            Self::Lfu => "lfu",
            Self::Lru => "lru",
            Self::Sieve => "sieve",
            Self::Fifo => "fifo",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// foyer's configuration for this policy.
    pub fn foyer_config(self) -> foyer::EvictionConfig {
        match self {
            Self::S3Fifo => foyer::S3FifoConfig::default().into(),
            Self::Lfu => foyer::LfuConfig::default().into(),
            Self::Lru => foyer::LruConfig::default().into(),
            Self::Sieve => foyer::SieveConfig {}.into(),
            Self::Fifo => foyer::FifoConfig::default().into(),
        }
    }
}

/// Configuration of a [`crate::FoyerStorage`]. Build one with [`StoreConfig::new`] and the
/// `with_*` methods.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory of the disk tier; `None` keeps the store in memory only.
    pub disk_dir: Option<PathBuf>,
    /// Capacity of the memory tier in bytes.
    pub memory_bytes: usize,
    /// Capacity of the disk tier in bytes.
    pub disk_bytes: usize,
    /// Size of a disk block; bounds the largest object the disk tier can hold.
    pub block_bytes: usize,
    /// Memory eviction policy.
    pub eviction: EvictionPolicy,
    /// Which fills a full memory tier admits.
    pub admission: Admission,
    /// Name prefix of foyer's metrics.
    pub name: String,
    /// Where foyer registers its metrics; `None` leaves them out (a registry takes each name
    /// once, so only one store per process can use the default registry).
    pub metrics_registry: Option<prometheus::Registry>,
}

impl StoreConfig {
    /// A memory-only store of `memory_bytes`. Default disk: none; block: 16 MiB; eviction:
    /// S3-FIFO; admission: on the second request once memory is full.
    pub fn new(memory_bytes: usize) -> Self {
        Self {
            disk_dir: None,
            memory_bytes,
            disk_bytes: 0,
            block_bytes: 16 << 20,
            eviction: EvictionPolicy::default(),
            admission: Admission::default(),
            name: "fresco".into(),
            metrics_registry: None,
        }
    }

    /// Adds a disk tier of `bytes` in `dir`.
    pub fn with_disk(mut self, dir: impl Into<PathBuf>, bytes: usize) -> Self {
        self.disk_dir = Some(dir.into());
        self.disk_bytes = bytes;
        self
    }

    /// Sets the disk block size. Default: 16 MiB.
    pub fn with_block_bytes(mut self, bytes: usize) -> Self {
        self.block_bytes = bytes;
        self
    }

    /// Registers foyer's metrics in `registry`. Default: none.
    pub fn with_metrics_registry(mut self, registry: prometheus::Registry) -> Self {
        self.metrics_registry = Some(registry);
        self
    }

    /// Sets the admission rule. Default: [`Admission::SecondRequest`].
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Sets the eviction policy. Default: S3-FIFO.
    pub fn with_eviction(mut self, eviction: EvictionPolicy) -> Self {
        self.eviction = eviction;
        self
    }

    /// The largest record the disk tier accepts. foyer drops larger ones silently, so the
    /// store keeps them in memory only instead. A margin of 64 KiB covers the record's own
    /// header and foyer's entry header.
    pub fn max_disk_object_bytes(&self) -> usize {
        if self.disk_dir.is_none() {
            return 0;
        }
        self.block_bytes.saturating_sub(64 << 10)
    }

    /// Memory for disk writes in flight: two blocks, and at least 64 MiB (a thirty-second of the
    /// disk at most) so that a burst of fills is written rather than dropped.
    pub fn disk_write_buffer_bytes(&self) -> usize {
        let burst = (64usize << 20).min(self.disk_bytes / 32);
        (2 * self.block_bytes).max(burst)
    }

    /// Shards of the memory tier. Each shard evicts on its own within an equal share of the
    /// capacity, so small caches get few shards: a shard must hold several of the largest
    /// objects.
    pub fn memory_shards(&self) -> usize {
        (self.memory_bytes / (32 << 20)).clamp(1, 16)
    }

    /// The largest object cached at all: a quarter of a memory shard, so a single object
    /// cannot flush a shard's working set.
    pub fn max_object_bytes(&self) -> usize {
        self.memory_bytes / self.memory_shards() / 4
    }
}
