//! What of a client's request may reach upstream: the defences against web cache poisoning and
//! request smuggling.
//!
//! A cache is poisoned when something the cache key does not hold changes what the origin
//! answers, and that answer is stored under the key for everyone. So the rule is the one of
//! RFC 9111 §4 read strictly: **upstream gets exactly what is keyed**.
//! - The request target sent upstream is the key's ([`crate::cache_key::normalized_target`]):
//!   dot segments resolved, escapes normalized, ignored parameters (`ignore_query`, `fresco`)
//!   left out. A `..` or an oversized unkeyed parameter cannot make the origin answer a 404 or
//!   a 414 that is then stored under the clean URL.
//! - Headers that make origins answer differently but are not keyed ([`UNKEYED_HEADERS`]) are
//!   dropped; an edge sets its own `X-Forwarded-For` (the client's address), a shield keeps the
//!   edge's.
//! - A `GET` or `HEAD` with a body ("fat GET": frameworks read parameters from it) is refused,
//!   as are ambiguous framings (`Content-Length` with `Transfer-Encoding`, two
//!   `Content-Length`s) that a front and a back server may read differently.

use http::header;
use pingora_http::RequestHeader;

/// Request headers dropped before a request goes upstream: each makes common origins or
/// frameworks answer differently (another host in absolute links or redirects, another method,
/// another path), and none is part of the cache key.
pub const UNKEYED_HEADERS: [&str; 9] = [
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-host",
    "forwarded",
    "x-http-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// The longest request target (path and query) a node takes. Longer ones get 414: origins
/// and logs choke on them, and a URL index or a purge rule should not have to hold one.
pub const MAX_TARGET_BYTES: usize = 8192;

/// Whether a request's target is over [`MAX_TARGET_BYTES`].
pub fn target_too_long(req: &RequestHeader) -> bool {
    req.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_TARGET_BYTES
}

/// Why a request is refused with 400 before anything is looked up or fetched, if it is.
pub fn refused_framing(req: &RequestHeader) -> Option<&'static str> {
    let lengths = req.headers.get_all(header::CONTENT_LENGTH).iter().count();
    let chunked = req.headers.contains_key(header::TRANSFER_ENCODING);
    if lengths > 1 {
        return Some("two Content-Length headers: the request's framing is ambiguous");
    }
    if lengths == 1 && chunked {
        return Some("Content-Length and Transfer-Encoding together: the request's framing is ambiguous");
    }
    let cached = matches!(req.method, http::Method::GET | http::Method::HEAD);
    let has_body = chunked
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if cached && has_body {
        return Some("a GET or HEAD request must not have a body");
    }
    None
}

/// Makes `req` what goes upstream: the keyed `target`, without [`UNKEYED_HEADERS`], and with
/// `forwarded_for` (an edge's client address) as its only `X-Forwarded-For`.
pub fn prepare_upstream(
    req: &mut RequestHeader,
    target: &str,
    forwarded_for: Option<&str>,
) -> pingora_error::Result<()> {
    if req.uri.path_and_query().map(|pq| pq.as_str()) != Some(target) {
        let uri = target.parse::<http::Uri>().map_err(|e| {
            pingora_error::Error::because(
                pingora_error::ErrorType::InvalidHTTPHeader,
                "normalized request target",
                e,
            )
        })?;
        req.set_uri(uri);
    }
    for name in UNKEYED_HEADERS {
        req.remove_header(name);
    }
    if let Some(client) = forwarded_for {
        req.insert_header("x-forwarded-for", client)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/x/../img/a.jpg?utm_source=evil", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn ambiguous_framings_and_bodies_are_refused() {
        assert!(refused_framing(&get(&[])).is_none());
        assert!(refused_framing(&get(&[("content-length", "0")])).is_none());
        assert!(refused_framing(&get(&[("content-length", "5"), ("transfer-encoding", "chunked")])).is_some());
        assert!(refused_framing(&get(&[("content-length", "0"), ("content-length", "5")])).is_some());
        assert!(refused_framing(&get(&[("content-length", "12")])).is_some());
        assert!(refused_framing(&get(&[("transfer-encoding", "chunked")])).is_some());
    }

    #[test]
    fn upstream_gets_the_keyed_target_and_no_unkeyed_header() {
        let mut req = get(&[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-for", "6.6.6.6"),
            ("accept", "image/webp"),
        ]);
        prepare_upstream(&mut req, "/img/a.jpg", Some("192.0.2.7")).unwrap();
        assert_eq!(req.uri.path_and_query().unwrap().as_str(), "/img/a.jpg");
        assert!(!req.headers.contains_key("x-forwarded-host"));
        assert_eq!(req.headers["x-forwarded-for"], "192.0.2.7");
        assert_eq!(req.headers["accept"], "image/webp", "what is keyed (by Vary) stays");
    }
}
