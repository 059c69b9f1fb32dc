//! The versioned record a cache entry is stored as, in memory and on disk.
//!
//! Layout of format version 1 (all integers big-endian):
//!
//! ```text
//! u8  version (= 1)
//! u32 internal meta length | internal meta (pingora's MessagePack `InternalMeta`)
//! u32 header length        | response header (pingora-header-serde, zstd)
//! u64 body length          | body
//! ```
//!
//! Decoding dispatches on the version byte, so a build that writes a newer version keeps
//! reading every older one. `tests/fixtures/` holds a record of each version ever written.

use std::io::{Read, Write};

use bytes::Bytes;
use foyer::Code;
use pingora_cache::CacheMeta;

/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 1;

/// Headers of an image response are a few hundred bytes; anything near this bound is corrupt.
const MAX_META_LEN: u32 = 1 << 20;

/// One cached HTTP response: its metadata and its complete body.
///
/// The parsed [`CacheMeta`] lives next to its serialized form so that a memory hit neither
/// decompresses nor re-parses the headers; only records read back from disk are parsed.
pub struct StoredObject {
    meta: CacheMeta,
    meta_internal: Bytes,
    meta_header: Bytes,
    body: Bytes,
}

/// Why a stored record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The version byte names a format this build does not know.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// A length field is beyond any sane value.
    #[error("record field {field} has implausible length {len}")]
    BadLength {
        /// Which field.
        field: &'static str,
        /// Its claimed length.
        len: u64,
    },
    /// pingora could not parse the stored metadata.
    #[error("stored metadata does not parse: {0}")]
    Meta(String),
    /// The record ended early.
    #[error("record truncated: {0}")]
    Io(#[from] std::io::Error),
}

impl StoredObject {
    /// Builds a record from a response's metadata and body.
    pub fn new(meta: &CacheMeta, body: Bytes) -> pingora_error::Result<Self> {
        let (internal, header) = meta.serialize()?;
        Ok(Self {
            meta: copy_meta(meta),
            meta_internal: internal.into(),
            meta_header: header.into(),
            body,
        })
    }

    /// The same metadata (already serialized) over `body`: a fill's record once its body is in.
    pub fn with_body(&self, body: Bytes) -> Self {
        Self {
            meta: copy_meta(&self.meta),
            meta_internal: self.meta_internal.clone(),
            meta_header: self.meta_header.clone(),
            body,
        }
    }

    /// The same body under new metadata (after a revalidation).
    pub fn with_meta(&self, meta: &CacheMeta) -> pingora_error::Result<Self> {
        Self::new(meta, self.body.clone())
    }

    /// A fresh copy of the metadata, without parsing.
    pub fn meta(&self) -> CacheMeta {
        copy_meta(&self.meta)
    }

    /// When the response was first stored (kept across revalidations).
    pub fn meta_created(&self) -> std::time::SystemTime {
        self.meta.created()
    }

    /// The response body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Bytes this record occupies in memory, which is what the memory tier is weighed in.
    pub fn weight(&self) -> usize {
        // The parsed header costs roughly its serialized size again.
        self.body.len() + self.meta_internal.len() + 2 * self.meta_header.len() + 128
    }

    /// Encodes the record in the current format version.
    pub fn encode_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&[FORMAT_VERSION])?;
        w.write_all(&(self.meta_internal.len() as u32).to_be_bytes())?;
        w.write_all(&self.meta_internal)?;
        w.write_all(&(self.meta_header.len() as u32).to_be_bytes())?;
        w.write_all(&self.meta_header)?;
        w.write_all(&(self.body.len() as u64).to_be_bytes())?;
        w.write_all(&self.body)
    }

    /// Decodes a record of any known format version.
    pub fn decode_from(r: &mut impl Read) -> Result<Self, FormatError> {
        let mut version = [0u8; 1];
        r.read_exact(&mut version)?;
        match version[0] {
            1 => Self::decode_v1(r),
            v => Err(FormatError::UnknownVersion(v)),
        }
    }

    fn decode_v1(r: &mut impl Read) -> Result<Self, FormatError> {
        let meta_internal = read_field(r, "meta_internal", MAX_META_LEN as u64, 4)?;
        let meta_header = read_field(r, "meta_header", MAX_META_LEN as u64, 4)?;
        let body = read_field(r, "body", u32::MAX as u64, 8)?;
        let meta =
            CacheMeta::deserialize(&meta_internal, &meta_header).map_err(|e| FormatError::Meta(e.to_string()))?;
        Ok(Self {
            meta,
            meta_internal,
            meta_header,
            body,
        })
    }

    fn encoded_len(&self) -> usize {
        1 + 4 + self.meta_internal.len() + 4 + self.meta_header.len() + 8 + self.body.len()
    }
}

fn read_field(r: &mut impl Read, field: &'static str, max: u64, width: usize) -> Result<Bytes, FormatError> {
    let mut len_buf = [0u8; 8];
    r.read_exact(&mut len_buf[8 - width..])?;
    let len = u64::from_be_bytes(len_buf);
    if len > max {
        return Err(FormatError::BadLength { field, len });
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(buf.into())
}

/// `CacheMeta` is not `Clone`; this rebuilds an equivalent one from its parts.
///
/// `epoch_override` pins the age reference so that `Age` and freshness come out the same as
/// for the original, whose `updated` time the public constructor cannot set.
fn copy_meta(meta: &CacheMeta) -> CacheMeta {
    let mut copy = CacheMeta::new(
        meta.fresh_until(),
        meta.created(),
        meta.stale_while_revalidate_sec(),
        meta.stale_if_error_sec(),
        meta.response_header_copy(),
    );
    copy.set_epoch_override(meta.epoch());
    if let Some(variance) = meta.variance() {
        copy.set_variance(variance);
    }
    copy
}

impl Code for StoredObject {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        self.encode_to(writer).map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        Self::decode_from(reader).map_err(|e| match e {
            FormatError::Io(io) => foyer::Error::io_error(io),
            other => foyer::Error::io_error(std::io::Error::new(std::io::ErrorKind::InvalidData, other)),
        })
    }

    fn estimated_size(&self) -> usize {
        self.encoded_len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use pingora_cache::CacheMeta;
    use pingora_http::ResponseHeader;

    use super::*;

    fn sample() -> StoredObject {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("content-type", "image/jpeg").unwrap();
        header.insert_header("etag", "\"v1\"").unwrap();
        header.insert_header("cache-control", "max-age=60").unwrap();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let meta = CacheMeta::new(created + Duration::from_secs(60), created, 0, 0, header);
        StoredObject::new(&meta, Bytes::from_static(b"\xff\xd8\xff\xe0 not really a jpeg")).unwrap()
    }

    #[test]
    fn round_trip_keeps_meta_and_body() {
        let obj = sample();
        let mut buf = Vec::new();
        obj.encode_to(&mut buf).unwrap();
        assert_eq!(buf.len(), obj.encoded_len());
        let back = StoredObject::decode_from(&mut buf.as_slice()).unwrap();
        assert_eq!(back.body(), obj.body());
        assert_eq!(back.meta().fresh_until(), obj.meta().fresh_until());
        assert_eq!(back.meta().headers().get("etag").unwrap(), "\"v1\"");
    }

    /// A record written by format version 1, committed when v1 was current. Every later
    /// version of the decoder must still read it.
    #[test]
    fn decodes_committed_v1_fixture() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/object-v1.bin");
        if std::env::var_os("FRESCO_WRITE_FIXTURES").is_some() {
            let mut buf = Vec::new();
            sample().encode_to(&mut buf).unwrap();
            std::fs::write(path, buf).unwrap();
        }
        let bytes = std::fs::read(path).expect("fixture is committed");
        assert_eq!(bytes[0], 1, "fixture is a version 1 record");
        let obj = StoredObject::decode_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(obj.body().as_ref(), b"\xff\xd8\xff\xe0 not really a jpeg");
        let meta = obj.meta();
        assert_eq!(meta.headers().get("content-type").unwrap(), "image/jpeg");
        assert_eq!(meta.fresh_sec(), 60);
    }

    #[test]
    fn rejects_unknown_version_and_truncation() {
        let mut buf = Vec::new();
        sample().encode_to(&mut buf).unwrap();
        let mut future = buf.clone();
        future[0] = 99;
        assert!(matches!(
            StoredObject::decode_from(&mut future.as_slice()),
            Err(FormatError::UnknownVersion(99))
        ));
        let truncated = &buf[..buf.len() - 3];
        assert!(matches!(
            StoredObject::decode_from(&mut &truncated[..]),
            Err(FormatError::Io(_))
        ));
    }
}
