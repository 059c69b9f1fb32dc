//! The store through pingora's `Storage` interface, on a real disk directory.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fresco_store::{FoyerStorage, StoreConfig};
use pingora_cache::CacheMeta;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::{PurgeTarget, PurgeType, Storage};
use pingora_cache::trace::Span;
use pingora_http::ResponseHeader;

fn meta() -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).unwrap();
    header.insert_header("content-type", "image/png").unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(600), now, 0, 0, header)
}

fn key(path: &str) -> CacheKey {
    CacheKey::new(path.to_string(), "")
}

async fn put(store: &'static FoyerStorage, path: &str, body: Bytes) {
    let span = Span::inactive().handle();
    let mut miss = store.get_miss_handler(&key(path), &meta(), &span).await.unwrap();
    miss.write_body(body, true).await.unwrap();
    miss.finish().await.unwrap();
}

async fn get(store: &'static FoyerStorage, path: &str) -> Option<Bytes> {
    let span = Span::inactive().handle();
    let (_, mut hit) = store.lookup(&key(path), &span).await.unwrap()?;
    let mut body = Vec::new();
    while let Some(chunk) = hit.read_body().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    Some(body.into())
}

fn body(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

#[tokio::test]
async fn memory_tier_is_weighed_in_bytes() {
    // 1 MiB of memory and twenty 100 KiB objects: a count-weighed cache would keep all twenty.
    let store = FoyerStorage::open(StoreConfig::new(1 << 20)).await.unwrap().leak();
    for i in 0..20u8 {
        put(store, &format!("/img/{i}.jpg"), body(i, 100 << 10)).await;
    }
    let mut kept = 0;
    for i in 0..20u8 {
        if let Some(b) = get(store, &format!("/img/{i}.jpg")).await {
            assert_eq!(b, body(i, 100 << 10), "a kept object is intact");
            kept += 1;
        }
    }
    assert!(
        (1..=10).contains(&kept),
        "kept {kept} of 20 objects of 100 KiB in 1 MiB"
    );
}

#[tokio::test]
async fn purge_survives_restart_and_the_rest_stays_warm() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(8 << 20)
        .with_disk(dir.path(), 64 << 20)
        .with_block_bytes(1 << 20);
    {
        let store = FoyerStorage::open(config.clone()).await.unwrap().leak();
        put(store, "/a.jpg", body(1, 50_000)).await;
        put(store, "/b.jpg", body(2, 50_000)).await;
        let span = Span::inactive().handle();
        let compact = key("/a.jpg").to_compact();
        store
            .purge(PurgeTarget::Active(&compact), PurgeType::Invalidation, &span)
            .await
            .unwrap();
        assert!(get(store, "/a.jpg").await.is_none());
        store.close().await;
    }
    let store = FoyerStorage::open(config).await.unwrap().leak();
    assert!(
        get(store, "/a.jpg").await.is_none(),
        "a purged object must not come back after restart"
    );
    assert_eq!(
        get(store, "/b.jpg").await,
        Some(body(2, 50_000)),
        "the rest is recovered from disk"
    );
    store.close().await;
}

#[tokio::test]
async fn object_larger_than_a_disk_block_is_served_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(16 << 20)
        .with_disk(dir.path(), 64 << 20)
        .with_block_bytes(256 << 10);
    let store = FoyerStorage::open(config.clone()).await.unwrap().leak();
    let big = body(7, 600 << 10);
    put(store, "/big.tiff", big.clone()).await;
    assert_eq!(get(store, "/big.tiff").await, Some(big), "served whole from memory");
    store.close().await;
}

#[tokio::test]
async fn readers_of_a_failed_write_get_an_error_and_nothing_is_stored() {
    let store = FoyerStorage::open(StoreConfig::new(8 << 20)).await.unwrap().leak();
    let span = Span::inactive().handle();
    let mut miss = store.get_miss_handler(&key("/x.jpg"), &meta(), &span).await.unwrap();
    miss.write_body(Bytes::from_static(b"first half"), false).await.unwrap();
    let (_, mut reader) = store
        .lookup(&key("/x.jpg"), &span)
        .await
        .unwrap()
        .expect("fill is visible");
    assert_eq!(reader.read_body().await.unwrap().unwrap().as_ref(), b"first half");
    drop(miss); // the upstream connection died
    assert!(
        reader.read_body().await.is_err(),
        "a truncated body must not end cleanly"
    );
    assert!(get(store, "/x.jpg").await.is_none(), "a failed write stores nothing");
}

#[tokio::test]
async fn purge_during_a_fill_keeps_the_fill_out_of_the_cache() {
    let store = FoyerStorage::open(StoreConfig::new(8 << 20)).await.unwrap().leak();
    let span = Span::inactive().handle();
    let mut miss = store.get_miss_handler(&key("/y.jpg"), &meta(), &span).await.unwrap();
    miss.write_body(Bytes::from_static(b"old bytes"), false).await.unwrap();
    let compact = key("/y.jpg").to_compact();
    store
        .purge(PurgeTarget::Active(&compact), PurgeType::Invalidation, &span)
        .await
        .unwrap();
    miss.write_body(Bytes::new(), true).await.unwrap();
    miss.finish().await.unwrap();
    assert!(
        get(store, "/y.jpg").await.is_none(),
        "the fill that was purged must not be stored"
    );
}
