//! The headers fresco's nodes tell each other, and which of them browsers never see.
//!
//! The fill sequence and the origin's Cache-Control are stored with each object so that hits
//! need no lookups; an edge takes them off what it sends to clients (they tell an attacker how
//! far purges have got and what the origin asked), unless `debug_headers: true`. Between an edge
//! and a shield they are the protocol and stay.

use http::HeaderName;
use pingora_http::ResponseHeader;

/// The stored header that says from which purge sequence on an object was fetched.
pub const FILL_SEQ_HEADER: &str = "x-fresco-fill-seq";
/// The header a shield answers with: the purge sequence its answer is fresh against.
pub const APPLIED_HEADER: &str = "x-fresco-applied";
/// The origin's `Cache-Control`, stored beside the browsers' one an edge sends (and decides
/// revalidations by).
pub const ORIGIN_CACHE_CONTROL_HEADER: &str = "x-fresco-origin-cache-control";
/// The header an edge asks a shield with: the purge sequence the answer must be fresh against.
pub const MIN_SEQ_HEADER: &str = "x-fresco-min-seq";
/// The `Date` of a shield's answer as the shield stored it: pingora writes the current time
/// into `Date` on every response it sends, and the edge needs the origin's `Date` to measure
/// `Expires` from (`crate::lifetime`). The edge puts it back and drops this header.
pub const ORIGIN_DATE_HEADER: &str = "x-fresco-origin-date";

/// [`FILL_SEQ_HEADER`], parsed once. Looked up by `&str`, a name is parsed (checked and
/// lowercased) on every call, about 500 instructions (callgrind), several times on every hit.
pub const FILL_SEQ: HeaderName = HeaderName::from_static(FILL_SEQ_HEADER);
/// `X-Cache` (`HIT`, `MISS`, …), parsed once.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// `X-Fresco-Node`: the node that answered, parsed once.
pub static X_FRESCO_NODE: HeaderName = HeaderName::from_static("x-fresco-node");

/// Headers stored with an object that only nodes read.
static STORED_FOR_NODES: [HeaderName; 2] = [FILL_SEQ, HeaderName::from_static(ORIGIN_CACHE_CONTROL_HEADER)];

/// Takes the node-only headers off a response going to a client.
pub fn hide_from_clients(resp: &mut ResponseHeader) {
    remove_present(resp, &STORED_FOR_NODES);
}

/// Removes those of `names` that `resp` has (a name absent costs one lookup, not the two of
/// pingora's `remove_header`, which keeps a second map of the names' case).
pub fn remove_present(resp: &mut ResponseHeader, names: &[HeaderName]) {
    for name in names {
        if resp.headers.contains_key(name) {
            resp.remove_header(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_only_headers_are_taken_off_and_the_rest_kept() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header(FILL_SEQ_HEADER, "7").unwrap();
        resp.insert_header(ORIGIN_CACHE_CONTROL_HEADER, "max-age=60").unwrap();
        resp.insert_header("cache-control", "public, max-age=60").unwrap();
        hide_from_clients(&mut resp);
        assert!(!resp.headers.contains_key(FILL_SEQ_HEADER));
        assert!(!resp.headers.contains_key(ORIGIN_CACHE_CONTROL_HEADER));
        assert_eq!(resp.headers["cache-control"], "public, max-age=60");
    }
}
