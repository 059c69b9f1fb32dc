//! Bodies the store keeps compressed (brotli, see `fresco_store::compression`), sent as they
//! are to clients that accept `br` and decompressed for the others.
//!
//! The stored header describes the body as served (no `Content-Encoding`, the origin's
//! `Content-Length` and strong `ETag`); a response that sends the stored bytes gets
//! `Content-Encoding: br`, their length, and the ETag made weak: the compressed bytes are
//! another representation of the same content, and a weak validator still matches the stored
//! strong one in `If-None-Match` (weak comparison, RFC 9110 §13.1.2). Either way the response
//! says `Vary: Accept-Encoding`. (A miss is relayed as the origin sent it: the body is only
//! compressed once it is stored.)
//!
//! Upstream fetches ask for `identity`, so what a node stores never depends on the client that
//! happened to miss, and compression stays a property of the store.

use fresco_store::CompleteHit;
use pingora_cache::HitHandler;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

/// How a hit's body leaves: the coding it is stored in, and whether it is sent that way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitCoding {
    /// The stored body's content coding, when it is compressed.
    pub stored: Option<&'static str>,
    /// The stored bytes' length, when they are sent as they are.
    pub sent_encoded: Option<usize>,
}

impl HitCoding {
    /// Decides for a hit: the stored bytes go out as they are when the client accepts their
    /// coding and wants the whole body (a `Range` is served from the decompressed bytes).
    pub fn choose(hit: &mut HitHandler, req: &RequestHeader) -> Self {
        let Some(complete) = hit.as_any_mut().downcast_mut::<CompleteHit>() else {
            return Self::default();
        };
        let Some(coding) = complete.content_encoding() else {
            return Self::default();
        };
        let sent_encoded = (accepts(req, coding) && !req.headers.contains_key(http::header::RANGE))
            .then(|| complete.send_encoded())
            .flatten();
        Self {
            stored: Some(coding),
            sent_encoded,
        }
    }

    /// Describes the body a cache-served response carries.
    pub fn describe(&self, resp: &mut ResponseHeader) -> Result<()> {
        let Some(coding) = self.stored else { return Ok(()) };
        add_vary_accept_encoding(resp)?;
        let Some(len) = self.sent_encoded else { return Ok(()) };
        resp.insert_header(http::header::CONTENT_ENCODING, coding)?;
        if resp.status != http::StatusCode::NOT_MODIFIED {
            resp.insert_header(http::header::CONTENT_LENGTH, len)?;
        }
        if let Some(etag) = resp.headers.get(http::header::ETAG)
            && !etag.as_bytes().starts_with(b"W/")
        {
            let weak = [b"W/", etag.as_bytes()].concat();
            resp.insert_header(http::header::ETAG, weak)?;
        }
        Ok(())
    }
}

/// Whether the request's `Accept-Encoding` accepts `coding` (listed, or `*`, without `q=0`).
pub fn accepts(req: &RequestHeader, coding: &str) -> bool {
    req.headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case(coding) || name == "*") && !refused
        })
}

fn add_vary_accept_encoding(resp: &mut ResponseHeader) -> Result<()> {
    let vary: Vec<String> = resp
        .headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    if vary
        .iter()
        .flat_map(|v| v.split(','))
        .any(|f| f.trim().eq_ignore_ascii_case("accept-encoding") || f.trim() == "*")
    {
        return Ok(());
    }
    let mut fields: Vec<&str> = vary.iter().map(String::as_str).collect();
    fields.push("Accept-Encoding");
    resp.insert_header(http::header::VARY, fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(accept_encoding: &str) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/a.svg", None).unwrap();
        req.insert_header("accept-encoding", accept_encoding).unwrap();
        req
    }

    #[test]
    fn accept_encoding_lists_q_values_and_wildcards() {
        assert!(accepts(&request("gzip, deflate, br, zstd"), "br"));
        assert!(accepts(&request("BR;q=0.5"), "br"));
        assert!(accepts(&request("*"), "br"));
        assert!(!accepts(&request("gzip"), "br"));
        assert!(!accepts(&request("br;q=0, gzip"), "br"));
        assert!(!accepts(&RequestHeader::build("GET", b"/", None).unwrap(), "br"));
    }

    #[test]
    fn a_response_sending_the_stored_bytes_says_so_and_weakens_its_etag() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("etag", "\"abc\"").unwrap();
        resp.insert_header("content-length", "1000").unwrap();
        resp.insert_header("vary", "Accept").unwrap();
        HitCoding {
            stored: Some("br"),
            sent_encoded: Some(300),
        }
        .describe(&mut resp)
        .unwrap();
        assert_eq!(resp.headers["content-encoding"], "br");
        assert_eq!(resp.headers["content-length"], "300");
        assert_eq!(resp.headers["etag"], "W/\"abc\"");
        assert_eq!(resp.headers["vary"], "Accept, Accept-Encoding");

        let mut plain = ResponseHeader::build(200, None).unwrap();
        plain.insert_header("etag", "\"abc\"").unwrap();
        HitCoding {
            stored: Some("br"),
            sent_encoded: None,
        }
        .describe(&mut plain)
        .unwrap();
        assert!(plain.headers.get("content-encoding").is_none());
        assert_eq!(plain.headers["etag"], "\"abc\"");
        assert_eq!(plain.headers["vary"], "Accept-Encoding");
    }
}
