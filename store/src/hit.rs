//! Reading a complete, stored object.

use std::any::Any;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::{HandleHit, Storage};
use pingora_cache::trace::SpanHandle;
use pingora_error::{ErrorType, Result};

use crate::format::Encoding;

/// Serves a whole stored body, with seeking for `Range` requests.
///
/// A body stored compressed is decompressed when read, unless the proxy asks for the stored
/// bytes as they are ([`CompleteHit::send_encoded`]) for a client that accepts them.
pub struct CompleteHit {
    /// The body as served (decompressed on first use for a compressed one).
    body: Bytes,
    /// The stored bytes and their coding, while still compressed.
    encoded: Option<(Encoding, Bytes)>,
    send_encoded: bool,
    start: usize,
    end: usize,
    done: bool,
}

impl CompleteHit {
    pub(crate) fn new(encoding: Encoding, data: Bytes, logical_len: usize) -> Self {
        let (body, encoded) = match encoding {
            Encoding::Identity => (data, None),
            encoding => (Bytes::new(), Some((encoding, data))),
        };
        Self {
            body,
            encoded,
            send_encoded: false,
            start: 0,
            end: logical_len,
            done: false,
        }
    }

    /// The `Content-Encoding` of the stored bytes, when they are compressed.
    pub fn content_encoding(&self) -> Option<&'static str> {
        match self.encoded {
            Some((Encoding::Brotli, _)) => Some("br"),
            _ => None,
        }
    }

    /// Sends the stored (compressed) bytes as they are, whole; returns their length. The
    /// caller sets `Content-Encoding` and `Content-Length` to match and does not seek.
    pub fn send_encoded(&mut self) -> Option<usize> {
        let (_, data) = self.encoded.as_ref()?;
        self.send_encoded = true;
        Some(data.len())
    }

    fn decoded(&mut self) -> Result<&Bytes> {
        if let Some((_, data)) = self.encoded.take() {
            match crate::compression::decompress(&data) {
                Ok(body) => self.body = body,
                Err(e) => {
                    return Err(pingora_error::Error::explain(
                        ErrorType::InternalError,
                        format!("stored body does not decompress: {e}"),
                    ));
                }
            }
        }
        Ok(&self.body)
    }
}

#[async_trait]
impl HandleHit for CompleteHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        if self.send_encoded
            && let Some((_, data)) = &self.encoded
        {
            return Ok(Some(data.clone()));
        }
        let (start, end) = (self.start, self.end);
        Ok(Some(self.decoded()?.slice(start..end)))
    }

    async fn finish(self: Box<Self>, _: &'static (dyn Storage + Sync), _: &CacheKey, _: &SpanHandle) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        self.send_encoded = false;
        let len = self.decoded()?.len();
        let end = end.unwrap_or(len);
        if start > end || end > len {
            return Err(pingora_error::Error::explain(
                ErrorType::InternalError,
                format!("seek {start}..{end} outside body of {len} bytes"),
            ));
        }
        self.start = start;
        self.end = end;
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.end
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
        let mut hit = CompleteHit::new(Encoding::Identity, Bytes::from_static(b"0123456789"), 10);
        hit.seek(2, Some(5)).unwrap();
        assert_eq!(hit.read_body().await.unwrap().unwrap().as_ref(), b"234");
        assert!(hit.read_body().await.unwrap().is_none());
        assert!(hit.seek(5, Some(11)).is_err());
    }

    #[tokio::test]
    async fn a_compressed_body_is_served_decompressed_unless_asked_for_as_stored() {
        let body = "<svg>".repeat(200);
        let packed = crate::compression::compress_if_worth_it(body.as_bytes()).unwrap();
        let mut plain = CompleteHit::new(Encoding::Brotli, packed.clone(), body.len());
        assert_eq!(plain.read_body().await.unwrap().unwrap().as_ref(), body.as_bytes());
        let mut ranged = CompleteHit::new(Encoding::Brotli, packed.clone(), body.len());
        ranged.seek(5, Some(10)).unwrap();
        assert_eq!(ranged.read_body().await.unwrap().unwrap().as_ref(), b"<svg>");
        let mut as_stored = CompleteHit::new(Encoding::Brotli, packed.clone(), body.len());
        assert_eq!(as_stored.content_encoding(), Some("br"));
        assert_eq!(as_stored.send_encoded(), Some(packed.len()));
        assert_eq!(as_stored.read_body().await.unwrap().unwrap(), packed);
    }
}
