//! The versioned records the cache holds, in memory and on disk.
//!
//! Bodies are stored once, by content: an [`EntryRecord`] (one per cache key) holds a
//! response's metadata and the blake3 digest of its body; a [`BodyRecord`] (one per distinct
//! body, keyed by [`body_key`] of that digest) holds the bytes, compressed with brotli when
//! that pays (see [`crate::compression`]). Two URLs with the same bytes share one body.
//!
//! Layout of format version 2 (all integers big-endian):
//!
//! ```text
//! u8  version (= 2)
//! u8  kind: b'E' (entry) or b'B' (body)
//! entry: u32 internal meta length | internal meta (pingora's MessagePack `InternalMeta`)
//!        u32 header length        | response header (pingora-header-serde, zstd)
//!        [u8; 32] body digest (blake3 of the body as served, before any compression)
//!        u64 body length as served
//! body:  [u8; 32] digest | u8 encoding (0 identity, 1 brotli) | u64 length as served
//!        u64 stored length | stored bytes
//! ```
//!
//! Format version 1 (before deduplication) held a whole response: internal meta, header and
//! body inline, with the same length prefixes (u64 for the body). It is still read, as a
//! [`Record::Whole`]. Decoding dispatches on the version byte, so a build that writes a newer
//! version keeps reading every older one; `tests/fixtures/` holds records of each version.

use std::io::{Read, Write};

use bytes::Bytes;
use foyer::Code;
use pingora_cache::CacheMeta;
use pingora_http::ResponseHeader;

/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 2;

/// Headers of an image response are a few hundred bytes; anything near this bound is corrupt.
const MAX_META_LEN: u32 = 1 << 20;

/// The blake3 digest of a body as served.
pub type Digest = [u8; 32];

/// The digest of `body`.
pub fn digest_of(body: &[u8]) -> Digest {
    *blake3::hash(body).as_bytes()
}

/// The cache key a body is stored under: derived from its digest in a domain of its own, so it
/// cannot meet the keys of entries (pingora's key hashes).
pub fn body_key(digest: &Digest) -> u128 {
    let key = blake3::Hasher::new_derive_key("fresco store body key 2026-11")
        .update(digest)
        .finalize();
    u128::from_be_bytes(key.as_bytes()[..16].try_into().expect("16 bytes"))
}

/// Why a stored record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The version byte names a format this build does not know.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The kind byte names no record kind.
    #[error("unknown record kind {0:#04x}")]
    UnknownKind(u8),
    /// The encoding byte names no encoding.
    #[error("unknown body encoding {0}")]
    UnknownEncoding(u8),
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

/// A response's metadata, parsed and serialized.
///
/// The parsed [`CacheMeta`] lives next to its serialized form so that a memory hit neither
/// decompresses nor re-parses the headers; only records read back from disk are parsed.
pub struct StoredMeta {
    meta: CacheMeta,
    internal: Bytes,
    header: Bytes,
}

impl StoredMeta {
    /// Serializes `meta`.
    pub fn new(meta: &CacheMeta) -> pingora_error::Result<Self> {
        let (internal, header) = meta.serialize()?;
        Ok(Self {
            meta: with_hit_headroom(meta),
            internal: internal.into(),
            header: header.into(),
        })
    }

    /// A fresh copy of the metadata, without parsing.
    pub fn meta(&self) -> CacheMeta {
        copy_meta(&self.meta)
    }

    /// When the response was first stored (kept across revalidations).
    pub fn created(&self) -> std::time::SystemTime {
        self.meta.created()
    }

    /// The response's `Content-Type`, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.meta.headers().get(http::header::CONTENT_TYPE)?.to_str().ok()
    }

    /// Whether the response already has a content coding (then it is stored as it came).
    pub fn is_content_encoded(&self) -> bool {
        self.meta
            .headers()
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() != b"identity")
    }

    fn duplicate(&self) -> Self {
        Self {
            meta: copy_meta(&self.meta),
            internal: self.internal.clone(),
            header: self.header.clone(),
        }
    }

    /// Memory the metadata takes: the parsed header costs roughly its serialized size again.
    fn weight(&self) -> usize {
        self.internal.len() + 2 * self.header.len() + 128
    }

    fn encoded_len(&self) -> usize {
        4 + self.internal.len() + 4 + self.header.len()
    }

    fn encode_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&(self.internal.len() as u32).to_be_bytes())?;
        w.write_all(&self.internal)?;
        w.write_all(&(self.header.len() as u32).to_be_bytes())?;
        w.write_all(&self.header)
    }

    fn decode_from(r: &mut impl Read) -> Result<Self, FormatError> {
        let internal = read_field(r, "meta_internal", MAX_META_LEN as u64, 4)?;
        let header = read_field(r, "meta_header", MAX_META_LEN as u64, 4)?;
        let meta = CacheMeta::deserialize(&internal, &header).map_err(|e| FormatError::Meta(e.to_string()))?;
        Ok(Self {
            meta: with_hit_headroom(&meta),
            internal,
            header,
        })
    }
}

/// One complete HTTP response as a fill produces it: metadata and body.
pub struct StoredObject {
    meta: StoredMeta,
    body: Bytes,
}

impl StoredObject {
    /// Builds an object from a response's metadata and body.
    pub fn new(meta: &CacheMeta, body: Bytes) -> pingora_error::Result<Self> {
        Ok(Self {
            meta: StoredMeta::new(meta)?,
            body,
        })
    }

    /// The same metadata (already serialized) over `body`: a fill's object once its body is in.
    pub fn with_body(&self, body: Bytes) -> Self {
        Self {
            meta: self.meta.duplicate(),
            body,
        }
    }

    /// A fresh copy of the metadata, without parsing.
    pub fn meta(&self) -> CacheMeta {
        self.meta.meta()
    }

    /// The metadata, as stored.
    pub fn stored_meta(&self) -> &StoredMeta {
        &self.meta
    }

    /// The response body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Splits the object into the entry and body records it is stored as. `encode` gets the
    /// body's digest and turns the body into its stored form, or says `None` when a body with
    /// that digest is stored already (then only the entry is new).
    pub fn into_records(
        self,
        encode: impl FnOnce(&StoredMeta, &Digest, Bytes) -> Option<(Encoding, Bytes)>,
    ) -> (EntryRecord, Option<BodyRecord>) {
        let digest = digest_of(&self.body);
        let logical_len = self.body.len() as u64;
        let body = encode(&self.meta, &digest, self.body).map(|(encoding, data)| BodyRecord {
            digest,
            encoding,
            logical_len,
            data,
        });
        (EntryRecord::new(self.meta, digest, logical_len), body)
    }

    fn decode_v1(r: &mut impl Read) -> Result<Self, FormatError> {
        let meta = StoredMeta::decode_from(r)?;
        let body = read_field(r, "body", u32::MAX as u64, 8)?;
        Ok(Self { meta, body })
    }
}

/// How a body's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// As served.
    Identity,
    /// Brotli-compressed (`Content-Encoding: br`).
    Brotli,
}

impl Encoding {
    fn code(self) -> u8 {
        match self {
            Self::Identity => 0,
            Self::Brotli => 1,
        }
    }

    fn from_code(code: u8) -> Result<Self, FormatError> {
        match code {
            0 => Ok(Self::Identity),
            1 => Ok(Self::Brotli),
            other => Err(FormatError::UnknownEncoding(other)),
        }
    }
}

/// A cache key's response: its metadata and which body it has.
pub struct EntryRecord {
    meta: StoredMeta,
    digest: Digest,
    logical_len: u64,
    /// Derived from `digest` once, when the record is made or read, rather than on every hit
    /// (not stored).
    body_key: u128,
}

impl EntryRecord {
    fn new(meta: StoredMeta, digest: Digest, logical_len: u64) -> Self {
        Self {
            meta,
            digest,
            logical_len,
            body_key: body_key(&digest),
        }
    }

    /// The cache key of its body record ([`body_key`] of its digest).
    pub fn body_key(&self) -> u128 {
        self.body_key
    }

    /// The metadata.
    pub fn stored_meta(&self) -> &StoredMeta {
        &self.meta
    }

    /// The digest of the body.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The body's length as served.
    pub fn logical_len(&self) -> u64 {
        self.logical_len
    }

    /// The same body under new metadata (after a revalidation).
    pub fn with_meta(&self, meta: &CacheMeta) -> pingora_error::Result<Self> {
        Ok(Self {
            meta: StoredMeta::new(meta)?,
            ..*self
        })
    }
}

/// A body, shared by every entry whose body has its digest.
pub struct BodyRecord {
    digest: Digest,
    encoding: Encoding,
    logical_len: u64,
    data: Bytes,
}

impl BodyRecord {
    /// The digest of the body as served.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// How the bytes are stored.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The bytes as stored.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The body's length as served.
    pub fn logical_len(&self) -> u64 {
        self.logical_len
    }

    /// Whether the bytes are those the digest was taken of (after decompression).
    pub fn is_intact(&self) -> bool {
        match self.encoding {
            Encoding::Identity => digest_of(&self.data) == self.digest,
            Encoding::Brotli => crate::compression::decompress(&self.data)
                .is_ok_and(|body| body.len() as u64 == self.logical_len && digest_of(&body) == self.digest),
        }
    }
}

/// What the cache holds under one key.
pub enum Record {
    /// A response, pointing at its body.
    Entry(EntryRecord),
    /// A body.
    Body(BodyRecord),
    /// A whole response with its body inline: a format-1 record written before deduplication.
    Whole(StoredObject),
}

impl Record {
    /// Bytes this record occupies in memory, which is what the memory tier is weighed in.
    pub fn weight(&self) -> usize {
        match self {
            Self::Entry(entry) => entry.meta.weight() + 48,
            Self::Body(body) => body.data.len() + 64,
            Self::Whole(obj) => obj.meta.weight() + obj.body.len(),
        }
    }

    /// Bytes of response bodies this record stands for, as served (entries and whole records).
    pub fn logical_bytes(&self) -> u64 {
        match self {
            Self::Entry(entry) => entry.logical_len,
            Self::Body(_) => 0,
            Self::Whole(obj) => obj.body.len() as u64,
        }
    }

    /// Bytes of bodies this record holds (bodies and whole records).
    pub fn stored_bytes(&self) -> u64 {
        match self {
            Self::Entry(_) => 0,
            Self::Body(body) => body.data.len() as u64,
            Self::Whole(obj) => obj.body.len() as u64,
        }
    }

    /// When the response was first stored; bodies have no time of their own.
    pub fn created(&self) -> Option<std::time::SystemTime> {
        match self {
            Self::Entry(entry) => Some(entry.meta.created()),
            Self::Whole(obj) => Some(obj.meta.created()),
            Self::Body(_) => None,
        }
    }

    /// Encodes the record in the current format version (a whole record is written as it was
    /// read, in format 1, which only happens when the store itself is being written again).
    pub fn encode_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        match self {
            Self::Entry(entry) => {
                w.write_all(&[FORMAT_VERSION, b'E'])?;
                entry.meta.encode_to(w)?;
                w.write_all(&entry.digest)?;
                w.write_all(&entry.logical_len.to_be_bytes())
            }
            Self::Body(body) => {
                w.write_all(&[FORMAT_VERSION, b'B'])?;
                w.write_all(&body.digest)?;
                w.write_all(&[body.encoding.code()])?;
                w.write_all(&body.logical_len.to_be_bytes())?;
                w.write_all(&(body.data.len() as u64).to_be_bytes())?;
                w.write_all(&body.data)
            }
            Self::Whole(obj) => {
                w.write_all(&[1])?;
                obj.meta.encode_to(w)?;
                w.write_all(&(obj.body.len() as u64).to_be_bytes())?;
                w.write_all(&obj.body)
            }
        }
    }

    /// Decodes a record of any known format version.
    pub fn decode_from(r: &mut impl Read) -> Result<Self, FormatError> {
        let mut version = [0u8; 1];
        r.read_exact(&mut version)?;
        match version[0] {
            1 => Ok(Self::Whole(StoredObject::decode_v1(r)?)),
            2 => Self::decode_v2(r),
            v => Err(FormatError::UnknownVersion(v)),
        }
    }

    fn decode_v2(r: &mut impl Read) -> Result<Self, FormatError> {
        let mut kind = [0u8; 1];
        r.read_exact(&mut kind)?;
        match kind[0] {
            b'E' => {
                let meta = StoredMeta::decode_from(r)?;
                let digest = read_digest(r)?;
                let logical_len = read_u64(r)?;
                Ok(Self::Entry(EntryRecord::new(meta, digest, logical_len)))
            }
            b'B' => {
                let digest = read_digest(r)?;
                let mut encoding = [0u8; 1];
                r.read_exact(&mut encoding)?;
                let encoding = Encoding::from_code(encoding[0])?;
                let logical_len = read_u64(r)?;
                let data = read_field(r, "body", u32::MAX as u64, 8)?;
                Ok(Self::Body(BodyRecord {
                    digest,
                    encoding,
                    logical_len,
                    data,
                }))
            }
            other => Err(FormatError::UnknownKind(other)),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Entry(entry) => 2 + entry.meta.encoded_len() + 32 + 8,
            Self::Body(body) => 2 + 32 + 1 + 8 + 8 + body.data.len(),
            Self::Whole(obj) => 1 + obj.meta.encoded_len() + 8 + obj.body.len(),
        }
    }
}

fn read_digest(r: &mut impl Read) -> Result<Digest, FormatError> {
    let mut digest = [0u8; 32];
    r.read_exact(&mut digest)?;
    Ok(digest)
}

fn read_u64(r: &mut impl Read) -> Result<u64, FormatError> {
    let mut buf = [0u8; 8];
    r.read_exact(&mut buf)?;
    Ok(u64::from_be_bytes(buf))
}

fn read_field(r: &mut impl Read, field: &'static str, max: u64, width: usize) -> Result<Bytes, FormatError> {
    let mut len_buf = [0u8; 8];
    r.read_exact(&mut len_buf[8 - width..])?;
    let len = u64::from_be_bytes(len_buf);
    if len > max {
        return Err(FormatError::BadLength { field, len });
    }
    // Read, not allocated up front: a damaged length must cost what the record holds, not the
    // gigabytes it claims (found by `make fuzz`).
    let mut buf = Vec::new();
    r.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(buf.into())
}

/// Fields a hit adds to its copy of the stored header: `Age`, `Date`, `Content-Length` or
/// `Accept-Ranges`, and its coding's.
const HIT_HEADROOM: usize = 6;

/// A copy of `meta` whose header has room for a hit's fields. Every hit works on a clone,
/// which keeps the original's hash table size; a table sized to fit (as a header read back
/// from disk is) is grown, every header hashed again, on every hit: 2.0k instructions a hit
/// (callgrind), about 2 %.
fn with_hit_headroom(meta: &CacheMeta) -> CacheMeta {
    match roomy_copy(meta.response_header()) {
        Ok(header) => copy_meta_with(meta, header),
        Err(_) => copy_meta(meta),
    }
}

/// `stored` field by field into a header with room for [`HIT_HEADROOM`] more: the same fields
/// in the same order, each name as the origin spelt it.
fn roomy_copy(stored: &ResponseHeader) -> pingora_error::Result<ResponseHeader> {
    let room = Some(stored.headers.len() + HIT_HEADROOM);
    let mut header = match stored.has_case() {
        true => ResponseHeader::build(stored.status, room)?,
        false => ResponseHeader::build_no_case(stored.status, room)?,
    };
    header.set_version(stored.version);
    let reason = stored.get_reason_phrase();
    if reason != stored.status.canonical_reason() {
        header.set_reason_phrase(reason)?;
    }
    if stored.has_case() {
        for (name, value) in stored.case_header_iter() {
            header.append_header(name.clone(), value.clone())?;
        }
    } else {
        for (name, value) in &stored.headers {
            header.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(header)
}

/// `CacheMeta` is not `Clone`; this rebuilds an equivalent one from its parts.
fn copy_meta(meta: &CacheMeta) -> CacheMeta {
    copy_meta_with(meta, meta.response_header_copy())
}

/// `meta` with `header` in place of its own.
///
/// `epoch_override` pins the age reference so that `Age` and freshness come out the same as
/// for the original, whose `updated` time the public constructor cannot set.
fn copy_meta_with(meta: &CacheMeta, header: ResponseHeader) -> CacheMeta {
    let mut copy = CacheMeta::new(
        meta.fresh_until(),
        meta.created(),
        meta.stale_while_revalidate_sec(),
        meta.stale_if_error_sec(),
        header,
    );
    copy.set_epoch_override(meta.epoch());
    if let Some(variance) = meta.variance() {
        copy.set_variance(variance);
    }
    copy
}

impl Code for Record {
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

    use super::*;

    const BODY: &[u8] = b"\xff\xd8\xff\xe0 not really a jpeg";

    fn sample() -> StoredObject {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("content-type", "image/jpeg").unwrap();
        header.insert_header("etag", "\"v1\"").unwrap();
        header.insert_header("cache-control", "max-age=60").unwrap();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let meta = CacheMeta::new(created + Duration::from_secs(60), created, 0, 0, header);
        StoredObject::new(&meta, Bytes::from_static(BODY)).unwrap()
    }

    fn records() -> (Record, Record) {
        let (entry, body) = sample().into_records(|_, _, body| Some((Encoding::Identity, body)));
        (Record::Entry(entry), Record::Body(body.expect("a new body")))
    }

    fn encode(record: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        record.encode_to(&mut buf).unwrap();
        assert_eq!(buf.len(), record.encoded_len());
        buf
    }

    #[test]
    fn a_header_read_back_keeps_its_names_case_and_order_and_room_for_a_hits_fields() {
        let mut header = ResponseHeader::build(200, None).unwrap();
        for (name, value) in [("Content-Type", "image/jpeg"), ("ETag", "\"v1\""), ("X-Custom", "a")] {
            header.append_header(name.to_string(), value).unwrap();
        }
        header.append_header("X-Custom".to_string(), "b").unwrap();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let meta = CacheMeta::new(created + Duration::from_secs(60), created, 0, 0, header);
        let (entry, _) = StoredObject::new(&meta, Bytes::from_static(BODY))
            .unwrap()
            .into_records(|_, _, body| Some((Encoding::Identity, body)));
        let Record::Entry(read) = Record::decode_from(&mut encode(&Record::Entry(entry)).as_slice()).unwrap() else {
            panic!("an entry decodes as an entry")
        };
        // What a hit works on: pingora's copy of the stored header.
        let hit = read.stored_meta().meta().response_header_copy();
        let names: Vec<String> = hit
            .case_header_iter()
            .map(|(name, _)| String::from_utf8_lossy(name.as_slice()).into())
            .collect();
        assert_eq!(names, ["Content-Type", "ETag", "X-Custom", "X-Custom"]);
        let values: Vec<_> = hit.headers.get_all("x-custom").iter().collect();
        assert_eq!(values, ["a", "b"]);
        assert!(
            hit.headers.capacity() >= hit.headers.len() + HIT_HEADROOM,
            "{} fields, room for {}",
            hit.headers.len(),
            hit.headers.capacity()
        );
    }

    #[test]
    fn round_trip_keeps_meta_digest_and_body() {
        let (entry, body) = records();
        let Record::Entry(entry) = Record::decode_from(&mut encode(&entry).as_slice()).unwrap() else {
            panic!("an entry decodes as an entry")
        };
        assert_eq!(entry.stored_meta().meta().fresh_sec(), 60);
        assert_eq!(entry.stored_meta().meta().headers().get("etag").unwrap(), "\"v1\"");
        assert_eq!(entry.digest(), &digest_of(BODY));
        assert_eq!(entry.logical_len(), BODY.len() as u64);
        let Record::Body(body) = Record::decode_from(&mut encode(&body).as_slice()).unwrap() else {
            panic!("a body decodes as a body")
        };
        assert_eq!(body.data().as_ref(), BODY);
        assert!(body.is_intact());
    }

    #[test]
    fn a_flipped_byte_is_caught_by_the_digest() {
        let (_, body) = records();
        let mut bytes = encode(&body);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let Record::Body(body) = Record::decode_from(&mut bytes.as_slice()).unwrap() else {
            panic!("still a body record")
        };
        assert!(!body.is_intact());
    }

    #[test]
    fn a_damaged_length_is_an_error_that_allocates_only_what_is_there() {
        let (_, body) = records();
        let mut bytes = encode(&body);
        // The body's length field (after version, kind, digest, encoding and logical length).
        let at = 2 + 32 + 1 + 8;
        bytes[at..at + 8].copy_from_slice(&(u32::MAX as u64 - 1).to_be_bytes());
        match Record::decode_from(&mut bytes.as_slice()) {
            Err(FormatError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("{:?}", other.map(|_| "a record")),
        }
    }

    /// Records of every format version ever written, committed when that version was current.
    /// Every later decoder must still read them. `FRESCO_WRITE_FIXTURES=1` rewrites the current
    /// version's fixtures (never an older one's).
    #[test]
    fn decodes_committed_fixtures_of_every_version() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let (entry, body) = records();
        if std::env::var_os("FRESCO_WRITE_FIXTURES").is_some() {
            std::fs::write(format!("{dir}/entry-v2.bin"), encode(&entry)).unwrap();
            std::fs::write(format!("{dir}/body-v2.bin"), encode(&body)).unwrap();
        }
        let read = |name: &str| std::fs::read(format!("{dir}/{name}")).expect("fixture is committed");

        let v1 = read("object-v1.bin");
        assert_eq!(v1[0], 1, "a version 1 record");
        let Record::Whole(obj) = Record::decode_from(&mut v1.as_slice()).unwrap() else {
            panic!("version 1 is a whole response")
        };
        assert_eq!(obj.body().as_ref(), BODY);
        assert_eq!(obj.meta().headers().get("content-type").unwrap(), "image/jpeg");
        assert_eq!(obj.meta().fresh_sec(), 60);

        let v2 = read("entry-v2.bin");
        assert_eq!(v2[..2], [2, b'E'], "a version 2 entry");
        let Record::Entry(entry) = Record::decode_from(&mut v2.as_slice()).unwrap() else {
            panic!("an entry")
        };
        assert_eq!(entry.stored_meta().meta().fresh_sec(), 60);
        assert_eq!(entry.digest(), &digest_of(BODY));
        let v2 = read("body-v2.bin");
        assert_eq!(v2[..2], [2, b'B'], "a version 2 body");
        let Record::Body(body) = Record::decode_from(&mut v2.as_slice()).unwrap() else {
            panic!("a body")
        };
        assert_eq!((body.data().as_ref(), body.encoding()), (BODY, Encoding::Identity));
        assert_eq!(body_key(body.digest()), body_key(&digest_of(BODY)));
    }

    #[test]
    fn rejects_unknown_versions_kinds_and_truncation() {
        let (entry, _) = records();
        let buf = encode(&entry);
        let mut future = buf.clone();
        future[0] = 99;
        assert!(matches!(
            Record::decode_from(&mut future.as_slice()),
            Err(FormatError::UnknownVersion(99))
        ));
        let mut strange = buf.clone();
        strange[1] = b'Z';
        assert!(matches!(
            Record::decode_from(&mut strange.as_slice()),
            Err(FormatError::UnknownKind(b'Z'))
        ));
        let truncated = &buf[..buf.len() - 3];
        assert!(matches!(
            Record::decode_from(&mut &truncated[..]),
            Err(FormatError::Io(_))
        ));
    }
}
