//! What a 304 changes in a stored response (RFC 9111 §4.3.4): every field it carries replaces
//! the stored one, except those that describe the stored body or this hop.
//!
//! pingora merges only `Cache-Control`, `Expires`, `ETag`, `Cache-Tag` and `CDN-Cache-Control`;
//! the proxy keeps the 304's fields here and applies the rest before the merged response is
//! judged and stored again.

use http::{HeaderName, HeaderValue};
use pingora_http::ResponseHeader;

/// Fields a 304 does not change: the stored body's framing and coding, this hop's, the nodes'
/// own (`crate::internal_headers`, which the proxy sets on every store), `Vary` (pingora keeps
/// the stored variance; a new `Vary` would make every lookup miss) and `Set-Cookie` (one
/// client's cookie must not be stored for all).
fn kept_from_the_stored_response(name: &str) -> bool {
    matches!(
        name,
        "content-length" | "content-encoding" | "content-range" | "x-cache" | "vary" | "set-cookie" | "set-cookie2"
    ) || crate::hop_by_hop::is_connection_field(name)
        || name.starts_with("x-fresco-")
}

/// The fields of a 304 that update the stored response.
#[derive(Debug, Default)]
pub struct NotModified(Vec<(HeaderName, HeaderValue)>);

impl NotModified {
    /// The update `resp` brings, if it is a 304.
    pub fn of(resp: &ResponseHeader) -> Option<Self> {
        if resp.status != http::StatusCode::NOT_MODIFIED {
            return None;
        }
        let fields = resp
            .headers
            .iter()
            .filter(|(name, _)| !kept_from_the_stored_response(name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Some(Self(fields))
    }

    /// Replaces `stored`'s fields with the 304's (every line of a field the 304 repeats).
    pub fn apply(&self, stored: &mut ResponseHeader) -> pingora_error::Result<()> {
        let mut replaced: Vec<&HeaderName> = Vec::new();
        for (name, value) in &self.0 {
            if replaced.contains(&name) {
                stored.append_header(name.clone(), value.clone())?;
            } else {
                stored.insert_header(name.clone(), value.clone())?;
                replaced.push(name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        for (name, value) in fields {
            resp.append_header(name.to_string(), *value).unwrap();
        }
        resp
    }

    #[test]
    fn a_304_replaces_the_stored_fields_but_not_the_bodys_or_the_hops() {
        let mut stored = header(
            200,
            &[
                ("test-header", "old"),
                ("content-foo", "old"),
                ("content-length", "36"),
                ("x-fresco-fill-seq", "7"),
                ("link", "</a>"),
                ("link", "</b>"),
            ],
        );
        let update = NotModified::of(&header(
            304,
            &[
                ("test-header", "new"),
                ("content-foo", "new"),
                ("content-length", "0"),
                ("x-fresco-fill-seq", "1"),
                ("link", "</c>"),
                ("link", "</d>"),
                ("connection", "close"),
                ("set-cookie", "session=someone-elses"),
                ("vary", "accept-language"),
            ],
        ))
        .unwrap();
        update.apply(&mut stored).unwrap();
        assert_eq!(stored.headers["test-header"], "new");
        assert_eq!(stored.headers["content-foo"], "new");
        assert_eq!(stored.headers["content-length"], "36");
        assert_eq!(stored.headers["x-fresco-fill-seq"], "7");
        let links: Vec<_> = stored.headers.get_all("link").iter().collect();
        assert_eq!(links, ["</c>", "</d>"]);
        assert!(!stored.headers.contains_key("connection"));
        assert!(
            !stored.headers.contains_key("set-cookie"),
            "a 304's cookie is not stored"
        );
        assert!(!stored.headers.contains_key("vary"));
        assert!(NotModified::of(&header(200, &[("test-header", "x")])).is_none());
    }
}
