//! Fills in progress: a body being written from upstream while readers stream it.
//!
//! pingora releases the cache lock as soon as a miss handler exists when the storage supports
//! streaming partial writes, so concurrent requests for the same key read the body while it
//! arrives instead of waiting for the whole of it. The trap (pingora issue #932): a reader
//! must learn that the writer *failed*; mistaking a dropped writer for a clean end of body
//! would hand out a truncated image as complete. Here a fill ends in exactly one of two
//! states, `Complete` or `Failed`, and a reader only reports end-of-body on `Complete`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pingora_cache::CacheMeta;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::{HandleHit, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_error::{ErrorType, Result};
use tokio::sync::watch;

use crate::format::StoredObject;

/// Where a fill stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FillStatus {
    /// The writer is still receiving the body.
    Writing,
    /// The whole body arrived and was stored.
    Complete,
    /// The writer gave up (upstream error, cancelled request, too large): readers must fail.
    Failed,
}

struct FillBody {
    chunks: Vec<Bytes>,
    len: usize,
    status: FillStatus,
}

/// One object being written. Shared by its writer and any number of readers.
pub(crate) struct Fill {
    id: u64,
    tag: [u8; 8],
    meta: StoredObject,
    body: Mutex<FillBody>,
    changed: watch::Sender<()>,
}

impl Fill {
    pub(crate) fn new(meta: StoredObject) -> Arc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Arc::new(Self {
            id,
            tag: id.to_be_bytes(),
            meta,
            body: Mutex::new(FillBody {
                chunks: Vec::new(),
                len: 0,
                status: FillStatus::Writing,
            }),
            changed: watch::channel(()).0,
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn tag(&self) -> &[u8] {
        &self.tag
    }

    pub(crate) fn meta(&self) -> CacheMeta {
        self.meta.meta()
    }

    pub(crate) fn stored_meta(&self) -> &StoredObject {
        &self.meta
    }

    /// Appends a chunk; returns the body length so far.
    pub(crate) fn push(&self, chunk: Bytes) -> usize {
        let len = {
            let mut body = self.body.lock();
            debug_assert_eq!(body.status, FillStatus::Writing);
            body.len += chunk.len();
            if !chunk.is_empty() {
                body.chunks.push(chunk);
            }
            body.len
        };
        self.changed.send_replace(());
        len
    }

    /// The complete body, in one contiguous buffer.
    pub(crate) fn assembled_body(&self) -> Bytes {
        let body = self.body.lock();
        match body.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut buf = BytesMut::with_capacity(body.len);
                for chunk in many {
                    buf.extend_from_slice(chunk);
                }
                buf.freeze()
            }
        }
    }

    /// Moves the fill to its final state once; later calls are ignored.
    pub(crate) fn settle(&self, status: FillStatus) {
        {
            let mut body = self.body.lock();
            if body.status != FillStatus::Writing {
                return;
            }
            body.status = status;
        }
        self.changed.send_replace(());
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> FillStatus {
        self.body.lock().status
    }
}

/// The fills in progress, by key hash. At most one per key: the cache lock admits one writer,
/// and a second writer (after a lock timeout) replaces the first, whose readers keep theirs.
#[derive(Default)]
pub(crate) struct FillTable {
    fills: Mutex<HashMap<u128, Arc<Fill>>>,
    /// The table's size, read without the lock: a warm cache has no fills, and every hit
    /// looks here first.
    len: AtomicUsize,
}

impl FillTable {
    pub(crate) fn get(&self, key: u128) -> Option<Arc<Fill>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.fills.lock().get(&key).cloned()
    }

    pub(crate) fn insert(&self, key: u128, fill: Arc<Fill>) {
        let mut fills = self.fills.lock();
        fills.insert(key, fill);
        self.len.store(fills.len(), Ordering::Release);
    }

    /// Removes the fill for `key` only if it is still the one with `id`.
    pub(crate) fn remove_if(&self, key: u128, id: u64) {
        let mut fills = self.fills.lock();
        if fills.get(&key).is_some_and(|f| f.id == id) {
            fills.remove(&key);
            self.len.store(fills.len(), Ordering::Release);
        }
    }

    /// Removes every fill; their writers store nothing.
    pub(crate) fn clear(&self) {
        let mut fills = self.fills.lock();
        fills.clear();
        self.len.store(0, Ordering::Release);
    }

    /// Removes whatever fill `key` has; its writer keeps writing but stores nothing
    /// visible to new readers until it finishes.
    pub(crate) fn remove(&self, key: u128) -> Option<Arc<Fill>> {
        let mut fills = self.fills.lock();
        let removed = fills.remove(&key);
        self.len.store(fills.len(), Ordering::Release);
        removed
    }
}

/// A reader of a fill in progress.
pub(crate) struct FillReader {
    fill: Arc<Fill>,
    next_chunk: usize,
    changed: watch::Receiver<()>,
}

impl FillReader {
    pub(crate) fn new(fill: Arc<Fill>) -> Self {
        let changed = fill.changed.subscribe();
        Self {
            fill,
            next_chunk: 0,
            changed,
        }
    }
}

#[async_trait]
impl HandleHit for FillReader {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            // Mark the current version seen *before* looking, so a push between the look and
            // the wait still wakes us.
            self.changed.borrow_and_update();
            {
                let body = self.fill.body.lock();
                if let Some(chunk) = body.chunks.get(self.next_chunk) {
                    self.next_chunk += 1;
                    return Ok(Some(chunk.clone()));
                }
                match body.status {
                    FillStatus::Complete => return Ok(None),
                    FillStatus::Failed => {
                        return Err(pingora_error::Error::explain(
                            ErrorType::InternalError,
                            "the fill this response was streaming from failed upstream",
                        ));
                    }
                    FillStatus::Writing => {}
                }
            }
            if self.changed.changed().await.is_err() {
                // Unreachable while `self.fill` holds the sender, but never wait forever.
                return Err(pingora_error::Error::explain(ErrorType::InternalError, "fill vanished"));
            }
        }
    }

    async fn finish(self: Box<Self>, _: &'static (dyn Storage + Sync), _: &CacheKey, _: &SpanHandle) -> Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use pingora_http::ResponseHeader;

    use super::*;

    fn fill() -> Arc<Fill> {
        let header = ResponseHeader::build(200, None).unwrap();
        let now = SystemTime::now();
        let meta = CacheMeta::new(now + Duration::from_secs(10), now, 0, 0, header);
        Fill::new(StoredObject::new(&meta, Bytes::new()).unwrap())
    }

    #[tokio::test]
    async fn reader_streams_chunks_then_clean_end() {
        let fill = fill();
        let mut reader = FillReader::new(fill.clone());
        fill.push(Bytes::from_static(b"ab"));
        assert_eq!(reader.read_body().await.unwrap().unwrap().as_ref(), b"ab");
        let waiting = tokio::spawn(async move {
            let next = reader.read_body().await.unwrap();
            (next, reader.read_body().await.unwrap())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        fill.push(Bytes::from_static(b"cd"));
        fill.settle(FillStatus::Complete);
        let (next, end) = waiting.await.unwrap();
        assert_eq!(next.unwrap().as_ref(), b"cd");
        assert!(end.is_none());
        assert_eq!(fill.assembled_body().as_ref(), b"abcd");
    }

    #[tokio::test]
    async fn reader_of_a_failed_fill_gets_an_error_not_eof() {
        let fill = fill();
        let mut reader = FillReader::new(fill.clone());
        fill.push(Bytes::from_static(b"partial"));
        let waiting = tokio::spawn(async move {
            assert_eq!(reader.read_body().await.unwrap().unwrap().as_ref(), b"partial");
            reader.read_body().await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        fill.settle(FillStatus::Failed);
        assert!(
            waiting.await.unwrap().is_err(),
            "a failed fill must not look like a complete body"
        );
        // Settling is final.
        fill.settle(FillStatus::Complete);
        assert_eq!(fill.status(), FillStatus::Failed);
    }
}
