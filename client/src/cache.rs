//! The client's local cache: a memory tier bounded in bytes (least recently used goes first)
//! and an optional directory on disk that outlives the process.
//!
//! Disk entries are one file per URL, named by the blake3 hash of the URL, written to a
//! temporary file and renamed so that a reader never sees half a file. A file that cannot be
//! read or does not check out (wrong magic, wrong length, body hash mismatch, another URL) is a
//! miss and is removed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// A cached response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The body.
    pub body: Bytes,
    /// The `ETag`, used to revalidate.
    pub etag: Option<String>,
    /// The `Content-Type`.
    pub content_type: Option<String>,
    /// The edge said `Cache-Control: immutable`: served without asking.
    pub immutable: bool,
    /// The surrogate keys (`Surrogate-Key` / `Cache-Tag`), so that a tag change can find it.
    pub tags: Vec<String>,
}

impl Entry {
    fn weight(&self, url: &str) -> usize {
        // The fixed part stands for the map slots and headers: it keeps many empty bodies from
        // passing as free.
        self.body.len() + url.len() + 128
    }
}

/// The header of a disk file, before the body.
#[derive(Serialize, Deserialize)]
struct DiskMeta {
    url: String,
    etag: Option<String>,
    content_type: Option<String>,
    immutable: bool,
    tags: Vec<String>,
    len: u64,
    blake3: String,
}

const MAGIC: &[u8; 8] = b"FRESCO1\n";

/// A bounded least-recently-used map of entries.
struct Memory {
    entries: HashMap<String, (Arc<Entry>, u64)>,
    by_use: BTreeMap<u64, String>,
    tick: u64,
    bytes: usize,
    capacity: usize,
}

impl Memory {
    fn get(&mut self, url: &str) -> Option<Arc<Entry>> {
        let (entry, used) = self.entries.get_mut(url)?;
        self.by_use.remove(used);
        self.tick += 1;
        *used = self.tick;
        self.by_use.insert(self.tick, url.to_string());
        Some(entry.clone())
    }

    fn insert(&mut self, url: &str, entry: Arc<Entry>) {
        self.remove(url);
        let weight = entry.weight(url);
        if weight > self.capacity {
            return;
        }
        while self.bytes + weight > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.bytes -= old.weight(&oldest);
            }
        }
        self.tick += 1;
        self.by_use.insert(self.tick, url.to_string());
        self.entries.insert(url.to_string(), (entry, self.tick));
        self.bytes += weight;
    }

    fn remove(&mut self, url: &str) {
        if let Some((old, used)) = self.entries.remove(url) {
            self.by_use.remove(&used);
            self.bytes -= old.weight(url);
        }
    }
}

/// The local cache (memory, and disk when a directory is given). Cheap to share: clone the
/// `Arc` it lives in.
pub struct LocalCache {
    memory: Mutex<Memory>,
    dir: Option<PathBuf>,
}

impl LocalCache {
    /// A cache of at most `memory_bytes` in memory, and files in `dir` when given (created if
    /// missing).
    pub fn new(memory_bytes: usize, dir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            memory: Mutex::new(Memory {
                entries: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
                bytes: 0,
                capacity: memory_bytes,
            }),
            dir,
        })
    }

    /// The entry of `url`, from memory or else from disk (then kept in memory too).
    pub async fn get(&self, url: &str) -> Option<Arc<Entry>> {
        if let Some(entry) = self.memory.lock().get(url) {
            return Some(entry);
        }
        let path = self.path_of(url)?;
        let owned = url.to_string();
        let entry = tokio::task::spawn_blocking(move || read_file(&path, &owned))
            .await
            .ok()
            .flatten()?;
        let entry = Arc::new(entry);
        self.memory.lock().insert(url, entry.clone());
        Some(entry)
    }

    /// Whether `url` is in memory or on disk (without checking the file).
    pub fn contains(&self, url: &str) -> bool {
        self.memory.lock().entries.contains_key(url) || self.path_of(url).is_some_and(|p| p.exists())
    }

    /// Stores `entry` for `url`. A disk write that fails leaves the entry in memory only: the
    /// cache is an optimisation, not a store of record.
    pub async fn put(&self, url: &str, entry: Entry) {
        let entry = Arc::new(entry);
        self.memory.lock().insert(url, entry.clone());
        if let Some(path) = self.path_of(url) {
            let owned = url.to_string();
            let _ = tokio::task::spawn_blocking(move || write_file(&path, &owned, &entry)).await;
        }
    }

    /// Forgets `url`.
    pub async fn remove(&self, url: &str) {
        self.memory.lock().remove(url);
        if let Some(path) = self.path_of(url) {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
        }
    }

    /// Forgets every entry carrying one of `tags`, in memory and on disk.
    pub async fn remove_tagged(&self, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        {
            let mut memory = self.memory.lock();
            let tagged: Vec<String> = memory
                .entries
                .iter()
                .filter(|(_, (e, _))| e.tags.iter().any(|t| tags.contains(t)))
                .map(|(url, _)| url.clone())
                .collect();
            for url in tagged {
                memory.remove(&url);
            }
        }
        if let Some(dir) = self.dir.clone() {
            let tags = tags.to_vec();
            let _ = tokio::task::spawn_blocking(move || remove_tagged_files(&dir, &tags)).await;
        }
    }

    fn path_of(&self, url: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(blake3::hash(url.as_bytes()).to_hex().as_str()))
    }
}

fn read_meta(bytes: &[u8]) -> Option<(DiskMeta, usize)> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let meta: DiskMeta = serde_json::from_slice(rest.get(4..4 + len)?).ok()?;
    Some((meta, MAGIC.len() + 4 + len))
}

fn read_file(path: &Path, url: &str) -> Option<Entry> {
    let bytes = std::fs::read(path).ok()?;
    let checked = read_meta(&bytes).and_then(|(meta, start)| {
        let body = &bytes[start..];
        let good =
            meta.url == url && body.len() as u64 == meta.len && blake3::hash(body).to_hex().as_str() == meta.blake3;
        good.then(|| Entry {
            body: Bytes::copy_from_slice(body),
            etag: meta.etag,
            content_type: meta.content_type,
            immutable: meta.immutable,
            tags: meta.tags,
        })
    });
    if checked.is_none() {
        let _ = std::fs::remove_file(path);
    }
    checked
}

fn write_file(path: &Path, url: &str, entry: &Entry) -> std::io::Result<()> {
    let meta = DiskMeta {
        url: url.to_string(),
        etag: entry.etag.clone(),
        content_type: entry.content_type.clone(),
        immutable: entry.immutable,
        tags: entry.tags.clone(),
        len: entry.body.len() as u64,
        blake3: blake3::hash(&entry.body).to_hex().to_string(),
    };
    let meta = serde_json::to_vec(&meta)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // A unique temporary name: two processes sharing the directory may write the same URL.
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        blake3::hash(format!("{url}{:?}", std::time::Instant::now()).as_bytes()).to_hex()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&(meta.len() as u32).to_le_bytes())?;
        file.write_all(&meta)?;
        file.write_all(&entry.body)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn remove_tagged_files(dir: &Path, tags: &[String]) {
    use std::io::Read;
    let Ok(files) = std::fs::read_dir(dir) else {
        return;
    };
    for file in files.flatten() {
        // Only the header is needed: read a bounded prefix, not the body.
        let mut head = Vec::new();
        let read = std::fs::File::open(file.path()).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
        if read.is_err() {
            continue;
        }
        if let Some((meta, _)) = read_meta(&head)
            && meta.tags.iter().any(|t| tags.contains(t))
        {
            let _ = std::fs::remove_file(file.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &[u8], tags: &[&str]) -> Entry {
        Entry {
            body: Bytes::copy_from_slice(body),
            etag: Some("\"e\"".into()),
            content_type: Some("image/png".into()),
            immutable: false,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn memory_is_bounded_and_drops_the_least_recently_used() {
        let cache = LocalCache::new(3 * (1000 + 2 + 128), None).unwrap();
        for url in ["/a", "/b", "/c"] {
            cache.put(url, entry(&[1; 1000], &[])).await;
        }
        assert!(cache.get("/a").await.is_some());
        cache.put("/d", entry(&[1; 1000], &[])).await;
        assert!(cache.get("/b").await.is_none(), "b was the least recently used");
        for url in ["/a", "/c", "/d"] {
            assert!(cache.get(url).await.is_some(), "{url}");
        }
        cache.put("/huge", entry(&[1; 10_000], &[])).await;
        assert!(cache.get("/huge").await.is_none(), "bigger than the bound");
    }

    #[tokio::test]
    async fn disk_entries_survive_a_new_cache_and_corrupt_files_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(1 << 20, Some(dir.path().into())).unwrap();
        cache.put("/a", entry(b"alpha", &["t1"])).await;
        cache.put("/b", entry(b"beta", &["t2"])).await;
        drop(cache);
        let cache = LocalCache::new(1 << 20, Some(dir.path().into())).unwrap();
        assert_eq!(cache.get("/a").await.unwrap().body, &b"alpha"[..]);
        // Flip a body byte of /b on disk.
        let path = dir.path().join(blake3::hash(b"/b").to_hex().as_str());
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(cache.get("/b").await.is_none());
        assert!(!path.exists(), "a corrupt file is removed");
        std::fs::write(dir.path().join(blake3::hash(b"/c").to_hex().as_str()), b"junk").unwrap();
        assert!(cache.get("/c").await.is_none());
    }

    #[tokio::test]
    async fn tagged_entries_are_removed_from_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(1 << 20, Some(dir.path().into())).unwrap();
        cache.put("/a", entry(b"alpha", &["t1", "t2"])).await;
        cache.put("/b", entry(b"beta", &["t3"])).await;
        cache.remove_tagged(&["t2".into()]).await;
        assert!(!cache.contains("/a"));
        assert!(cache.contains("/b"));
        cache.remove("/b").await;
        assert!(!cache.contains("/b"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
