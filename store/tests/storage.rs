//! The store through pingora's `Storage` interface, on a real disk directory.

mod through_storage;

use bytes::Bytes;
use fresco_store::{Admission, CompleteHit, FoyerStorage, StoreConfig};
use pingora_cache::storage::{PurgeTarget, PurgeType, Storage};
use pingora_cache::trace::Span;
use through_storage::{body, get, key, meta, purge_then_restart, put, put_typed};

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
    purge_then_restart(dir.path(), "a quiet disk").await;
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

#[tokio::test]
async fn eighty_urls_over_twenty_bodies_store_twenty_bodies_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(64 << 20)
        .with_disk(dir.path(), 64 << 20)
        .with_block_bytes(1 << 20);
    const LEN: usize = 20_000;
    {
        let store = FoyerStorage::open(config.clone()).await.unwrap().leak();
        for i in 0..80u8 {
            put(store, &format!("/img/{i}.png"), body(i % 20, LEN)).await;
        }
        assert_eq!(store.dedup_hits(), 60, "sixty bodies were already stored");
        let bytes = store.bytes();
        assert_eq!(bytes.memory_logical, 80 * LEN as i64, "what the entries serve");
        assert_eq!(bytes.memory_stored, 20 * LEN as i64, "twenty bodies held in memory");
        assert_eq!(bytes.disk_stored, 20 * LEN as i64, "twenty bodies written to disk");
        for i in 0..80u8 {
            assert_eq!(get(store, &format!("/img/{i}.png")).await, Some(body(i % 20, LEN)));
        }
        store.close().await;
    }
    let store = FoyerStorage::open(config).await.unwrap().leak();
    for i in (0..80u8).rev() {
        assert_eq!(
            get(store, &format!("/img/{i}.png")).await,
            Some(body(i % 20, LEN)),
            "every URL comes back from disk with its own bytes"
        );
    }
    assert_eq!(store.integrity_failures(), 0);
    store.close().await;
}

#[tokio::test]
async fn svg_is_stored_compressed_and_served_whole_or_as_stored() {
    let store = FoyerStorage::open(StoreConfig::new(8 << 20)).await.unwrap().leak();
    let svg: String = (0..300)
        .map(|i| format!("<circle cx=\"{i}\" cy=\"{}\" r=\"4\" fill=\"#e9c46a\"/>", i % 40))
        .collect();
    let svg = Bytes::from(format!("<svg xmlns=\"http://www.w3.org/2000/svg\">{svg}</svg>"));
    put_typed(store, "/logo.svg", "image/svg+xml", svg.clone()).await;
    let bytes = store.bytes();
    assert_eq!(bytes.memory_logical, svg.len() as i64);
    assert!(
        bytes.memory_stored * 10 < bytes.memory_logical * 9,
        "stored compressed: {bytes:?}"
    );
    assert_eq!(
        get(store, "/logo.svg").await,
        Some(svg.clone()),
        "decompressed for whoever asks"
    );

    let span = Span::inactive().handle();
    let (_, mut hit) = store.lookup(&key("/logo.svg"), &span).await.unwrap().unwrap();
    let complete = hit.as_any_mut().downcast_mut::<CompleteHit>().expect("a stored hit");
    assert_eq!(complete.content_encoding(), Some("br"));
    let sent = complete.send_encoded().unwrap();
    let stored = hit.read_body().await.unwrap().unwrap();
    assert_eq!(stored.len(), sent);
    assert_eq!(fresco_store::compression::decompress(&stored).unwrap(), svg);

    // A JPEG is never recompressed, however compressible its bytes.
    put_typed(store, "/flat.jpg", "image/jpeg", Bytes::from(vec![b'a'; 50_000])).await;
    let (_, mut hit) = store.lookup(&key("/flat.jpg"), &span).await.unwrap().unwrap();
    let complete = hit.as_any_mut().downcast_mut::<CompleteHit>().unwrap();
    assert_eq!(complete.content_encoding(), None);
}

#[tokio::test]
async fn a_corrupted_disk_record_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(8 << 20)
        .with_disk(dir.path(), 64 << 20)
        .with_block_bytes(1 << 20);
    let original = body(9, 40_000);
    {
        let store = FoyerStorage::open(config.clone()).await.unwrap().leak();
        put(store, "/victim.png", original.clone()).await;
        store.close().await;
    }
    // Flip one byte in the middle of the body, wherever foyer put it.
    let needle = &original[20_000..20_064];
    let mut flipped = 0;
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 10] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1, "the body is on disk exactly once");
    let store = FoyerStorage::open(config).await.unwrap().leak();
    assert_eq!(get(store, "/victim.png").await, None, "a corrupted body is a miss");
    assert_eq!(store.integrity_failures(), 1, "and is counted");
    // The damaged record was dropped: the next fill stores and serves the body again.
    put(store, "/victim.png", original.clone()).await;
    assert_eq!(get(store, "/victim.png").await, Some(original));
    store.close().await;
}

#[tokio::test]
async fn an_entry_whose_body_was_evicted_is_a_miss_never_another_body() {
    // 1 MiB of memory: a shared body is pushed out by others; its entries stay smaller.
    let store = FoyerStorage::open(StoreConfig::new(1 << 20)).await.unwrap().leak();
    let shared = body(1, 100 << 10);
    put(store, "/a.png", shared.clone()).await;
    put(store, "/b.png", shared.clone()).await;
    for i in 10..40u8 {
        put(store, &format!("/other/{i}.png"), body(i, 100 << 10)).await;
    }
    for path in ["/a.png", "/b.png"] {
        match get(store, path).await {
            None => {}
            Some(found) => assert_eq!(found, shared, "{path} is its own body or a miss"),
        }
    }
    assert!(store.bytes().memory_stored <= 1 << 20, "{:?}", store.bytes());
}

// A full memory tier admits a new key on its second fill ([`fresco_store::Admission`]).

const OBJECT: usize = 100 << 10;

/// Fills a 1 MiB memory tier with twelve objects of 100 KiB.
async fn fill_memory(store: &'static FoyerStorage) {
    for i in 0..12u8 {
        put(store, &format!("/resident/{i}.jpg"), body(i, OBJECT)).await;
    }
}

#[tokio::test]
async fn with_room_in_memory_a_first_fill_is_kept() {
    let store = FoyerStorage::open(StoreConfig::new(1 << 20)).await.unwrap().leak();
    put(store, "/new.jpg", body(50, OBJECT)).await;
    assert_eq!(get(store, "/new.jpg").await, Some(body(50, OBJECT)));
}

#[tokio::test]
async fn a_full_memory_only_store_keeps_a_new_key_from_its_second_fill_on() {
    let store = FoyerStorage::open(StoreConfig::new(1 << 20)).await.unwrap().leak();
    fill_memory(store).await;
    put(store, "/once.jpg", body(50, OBJECT)).await;
    assert_eq!(get(store, "/once.jpg").await, None, "a first fill displaces nothing");
    put(store, "/once.jpg", body(50, OBJECT)).await;
    assert_eq!(
        get(store, "/once.jpg").await,
        Some(body(50, OBJECT)),
        "the second fill of a key is admitted"
    );
}

#[tokio::test]
async fn under_admission_all_a_full_memory_keeps_every_fill() {
    let config = StoreConfig::new(1 << 20).with_admission(Admission::All);
    let store = FoyerStorage::open(config).await.unwrap().leak();
    fill_memory(store).await;
    put(store, "/once.jpg", body(50, OBJECT)).await;
    assert_eq!(get(store, "/once.jpg").await, Some(body(50, OBJECT)));
}

#[tokio::test]
async fn a_full_memory_sends_a_first_fill_to_disk_only_and_it_is_hit_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(1 << 20)
        .with_disk(dir.path(), 64 << 20)
        .with_block_bytes(1 << 20);
    let store = FoyerStorage::open(config).await.unwrap().leak();
    fill_memory(store).await;
    let before = store.bytes();
    put(store, "/once.jpg", body(50, OBJECT)).await;
    let after = store.bytes();
    assert_eq!(after.memory_logical, before.memory_logical, "nothing entered memory");
    assert_eq!(
        after.disk_logical - before.disk_logical,
        OBJECT as i64,
        "it was written to disk"
    );
    // The disk writer is asynchronous: the object reads back once it has been written.
    let mut found = None;
    for _ in 0..100 {
        found = get(store, "/once.jpg").await;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(found, Some(body(50, OBJECT)), "a disk hit");
    store.close().await;
}

#[tokio::test]
async fn may_hold_is_true_for_what_is_stored_or_being_filled_and_false_after_a_purge() {
    let store = FoyerStorage::open(StoreConfig::new(8 << 20)).await.unwrap().leak();
    let span = Span::inactive().handle();
    assert!(!store.may_hold(&key("/a.jpg")), "nothing stored yet");
    put(store, "/a.jpg", body(1, 1000)).await;
    assert!(store.may_hold(&key("/a.jpg")));
    let compact = key("/a.jpg").to_compact();
    store
        .purge(PurgeTarget::Active(&compact), PurgeType::Invalidation, &span)
        .await
        .unwrap();
    assert!(!store.may_hold(&key("/a.jpg")), "purged");
    let mut miss = store.get_miss_handler(&key("/b.jpg"), &meta(), &span).await.unwrap();
    miss.write_body(Bytes::from_static(b"half"), false).await.unwrap();
    assert!(store.may_hold(&key("/b.jpg")), "a fill in progress");
}
