//! Storing and reading objects through pingora's `Storage` interface, as the proxy does; shared
//! by the store's integration tests.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fresco_store::{FoyerStorage, StoreConfig};
use pingora_cache::CacheMeta;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::{PurgeTarget, PurgeType, Storage};
use pingora_cache::trace::Span;
use pingora_http::ResponseHeader;

/// Metadata of a PNG fresh for ten minutes.
pub fn meta() -> CacheMeta {
    meta_of("image/png")
}

/// Metadata of a response of `content_type`, fresh for ten minutes.
pub fn meta_of(content_type: &str) -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).unwrap();
    header.insert_header("content-type", content_type).unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(600), now, 0, 0, header)
}

/// The cache key of `path`.
pub fn key(path: &str) -> CacheKey {
    CacheKey::new(path.to_string(), "")
}

/// Stores `body` under `path` as a PNG, as a completed fill.
pub async fn put(store: &'static FoyerStorage, path: &str, body: Bytes) {
    put_typed(store, path, "image/png", body).await;
}

/// Stores `body` under `path` with `content_type`, as a completed fill.
pub async fn put_typed(store: &'static FoyerStorage, path: &str, content_type: &str, body: Bytes) {
    let span = Span::inactive().handle();
    let mut miss = store
        .get_miss_handler(&key(path), &meta_of(content_type), &span)
        .await
        .unwrap();
    miss.write_body(body, true).await.unwrap();
    miss.finish().await.unwrap();
}

/// The whole body stored under `path`, if any.
pub async fn get(store: &'static FoyerStorage, path: &str) -> Option<Bytes> {
    let span = Span::inactive().handle();
    let (_, mut hit) = store.lookup(&key(path), &span).await.unwrap()?;
    let mut body = Vec::new();
    while let Some(chunk) = hit.read_body().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    Some(body.into())
}

/// A body of `len` bytes that differs with `seed`.
pub fn body(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

/// On a new store with its disk in `dir`: stores `/a.jpg` and `/b.jpg`, purges `/a.jpg`, and
/// checks that it is gone, then again after a clean restart, while `/b.jpg` comes back from
/// disk. `run` names the run in failure messages.
pub async fn purge_then_restart(dir: &Path, run: &str) {
    let config = StoreConfig::new(8 << 20)
        .with_disk(dir, 64 << 20)
        .with_block_bytes(1 << 20);
    let store = FoyerStorage::open(config.clone()).await.unwrap().leak();
    put(store, "/a.jpg", body(1, 50_000)).await;
    put(store, "/b.jpg", body(2, 50_000)).await;
    let span = Span::inactive().handle();
    let compact = key("/a.jpg").to_compact();
    store
        .purge(PurgeTarget::Active(&compact), PurgeType::Invalidation, &span)
        .await
        .unwrap();
    assert_eq!(get(store, "/a.jpg").await, None, "{run}: served after its purge");
    store.close().await;
    let store = FoyerStorage::open(config).await.unwrap().leak();
    assert_eq!(get(store, "/a.jpg").await, None, "{run}: back after a restart");
    assert_eq!(
        get(store, "/b.jpg").await,
        Some(body(2, 50_000)),
        "{run}: the rest is recovered from disk"
    );
    store.close().await;
}
