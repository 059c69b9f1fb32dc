//! Storing and reading objects through pingora's `Storage` interface, as the proxy does; shared
//! by the store's integration tests.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fresco_store::FoyerStorage;
use pingora_cache::CacheMeta;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::Storage;
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
