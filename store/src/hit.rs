//! Reading a complete, stored object.

use std::any::Any;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::{HandleHit, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_error::{ErrorType, Result};

/// Serves a whole body that is already in memory, with seeking for `Range` requests.
pub(crate) struct CompleteHit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

impl CompleteHit {
    pub(crate) fn new(body: Bytes) -> Self {
        let end = body.len();
        Self {
            body,
            start: 0,
            end,
            done: false,
        }
    }
}

#[async_trait]
impl HandleHit for CompleteHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(self: Box<Self>, _: &'static (dyn Storage + Sync), _: &CacheKey, _: &SpanHandle) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let end = end.unwrap_or(self.body.len());
        if start > end || end > self.body.len() {
            return Err(pingora_error::Error::explain(
                ErrorType::InternalError,
                format!("seek {start}..{end} outside body of {} bytes", self.body.len()),
            ));
        }
        self.start = start;
        self.end = end;
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
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
    use super::*;

    #[tokio::test]
    async fn seek_serves_the_requested_range_once() {
        let mut hit = CompleteHit::new(Bytes::from_static(b"0123456789"));
        hit.seek(2, Some(5)).unwrap();
        assert_eq!(hit.read_body().await.unwrap().unwrap().as_ref(), b"234");
        assert!(hit.read_body().await.unwrap().is_none());
        assert!(hit.seek(5, Some(11)).is_err());
    }
}
