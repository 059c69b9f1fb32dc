//! Vary (RFC 9111 §4.1): a stored response is only served to requests that match it on every
//! header its `Vary` names.
//!
//! - Each named header's value becomes part of the variant key, trimmed, several field lines
//!   joined with `, `; a header the request lacks is a value of its own (the empty one).
//! - Normalized where that is safe: `Accept` by image format class (AVIF, WebP, other) on sites
//!   with `vary_accept: true`, whose origin negotiates image formats only (elsewhere the value
//!   as sent); `Accept-Encoding` not at all, because fresco always fetches `identity` and codes
//!   a hit itself (`content_coding.rs`).
//! - `Vary: *` is never stored.
//! - At most [`VariantLimit`]'s `cap` variants of one URL are stored; a response that would be
//!   one more is served but not stored, so a client sending a new `Cookie` on every request
//!   cannot push a URL's other variants (or other URLs) out of the cache.

use std::collections::HashMap;

use parking_lot::Mutex;
use pingora_cache::VarianceBuilder;
use pingora_cache::key::HashBinary;
use pingora_http::{HMap, RequestHeader};

/// What a response's `Vary` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Vary {
    /// No `Vary` (or only on what fresco handles itself): one object for every request.
    None,
    /// `Vary: *`: never stored.
    Everything,
    /// The variant of this request.
    Variant(HashBinary),
}

/// Coarse classes of what image formats a client accepts.
pub fn accept_class(req: &RequestHeader) -> &'static str {
    let accept = req
        .headers
        .get(http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    if accept.contains("image/avif") {
        "avif"
    } else if accept.contains("image/webp") {
        "webp"
    } else {
        "other"
    }
}

/// The variant of `req` for a stored (or arriving) response with `headers`; `accept_by_class`
/// normalizes `Accept` to [`accept_class`].
pub fn vary(headers: &HMap, req: &RequestHeader, accept_by_class: bool) -> Vary {
    let mut variance = VarianceBuilder::new();
    let names = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty());
    for name in names {
        match name.as_str() {
            "*" => return Vary::Everything,
            "accept-encoding" => {}
            "accept" if accept_by_class => variance.add_owned_name_value(name, accept_class(req).as_bytes().to_vec()),
            _ => {
                let value: Vec<&str> = req
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::trim)
                    .collect();
                variance.add_owned_name_value(name, value.join(", ").into_bytes());
            }
        }
    }
    variance.finalize().map_or(Vary::None, Vary::Variant)
}

/// Counts the variants stored per URL, to refuse more than `cap`.
///
/// Bounded by `max_urls`: when it would follow more URLs it forgets them all and starts over,
/// which at worst lets a URL have `cap` more variants, never fewer.
pub struct VariantLimit {
    cap: usize,
    max_urls: usize,
    seen: Mutex<HashMap<HashBinary, Vec<HashBinary>>>,
}

impl VariantLimit {
    /// At most `cap` variants of a URL, following at most `max_urls` URLs.
    pub fn new(cap: usize, max_urls: usize) -> Self {
        Self {
            cap,
            max_urls,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether variant `variant` of the URL with primary hash `url` may be stored: it is one
    /// already counted, or there is room for one more.
    pub fn admit(&self, url: HashBinary, variant: HashBinary) -> bool {
        let mut seen = self.seen.lock();
        if !seen.contains_key(&url) && seen.len() >= self.max_urls {
            seen.clear();
        }
        let variants = seen.entry(url).or_default();
        if variants.contains(&variant) {
            return true;
        }
        if variants.len() >= self.cap {
            return false;
        }
        variants.push(variant);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/a.jpg", None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn resp_vary(value: &str) -> HMap {
        let mut h = HMap::new();
        h.insert(http::header::VARY, value.parse().unwrap());
        h
    }

    #[test]
    fn each_named_header_makes_its_own_variant() {
        let h = resp_vary("Cookie, Origin");
        let alice = vary(
            &h,
            &req(&[("cookie", "user=alice"), ("origin", "https://a.example")]),
            false,
        );
        let bob = vary(
            &h,
            &req(&[("cookie", "user=bob"), ("origin", "https://a.example")]),
            false,
        );
        let alice_b = vary(
            &h,
            &req(&[("cookie", "user=alice"), ("origin", "https://b.example")]),
            false,
        );
        let alice_again = vary(
            &h,
            &req(&[("cookie", " user=alice "), ("origin", "https://a.example")]),
            false,
        );
        assert_ne!(alice, bob);
        assert_ne!(alice, alice_b);
        assert_eq!(alice, alice_again, "whitespace around a value is not a variant");
        assert_ne!(vary(&h, &req(&[]), false), alice, "no cookie is a variant of its own");
    }

    #[test]
    fn accept_by_class_accept_encoding_not_at_all_and_star_never() {
        let h = resp_vary("Accept");
        let (avif, avif2) = (
            req(&[("accept", "image/avif,image/webp,*/*")]),
            req(&[("accept", "image/avif,*/*;q=0.8")]),
        );
        let jpeg = req(&[("accept", "image/jpeg")]);
        assert_eq!(vary(&h, &avif, true), vary(&h, &avif2, true));
        assert_ne!(vary(&h, &avif, true), vary(&h, &jpeg, true));
        assert_ne!(
            vary(&h, &avif, false),
            vary(&h, &avif2, false),
            "as sent, unless the site says classes"
        );
        assert_eq!(
            vary(&resp_vary("Accept-Encoding"), &req(&[("accept-encoding", "br")]), true),
            Vary::None
        );
        assert_eq!(vary(&resp_vary("Origin, *"), &req(&[]), false), Vary::Everything);
        assert_eq!(vary(&HMap::new(), &req(&[("cookie", "x")]), false), Vary::None);
    }

    #[test]
    fn a_url_gets_at_most_cap_variants() {
        let limit = VariantLimit::new(2, 10);
        let (url, other) = ([1u8; 16], [2u8; 16]);
        assert!(limit.admit(url, [10; 16]));
        assert!(limit.admit(url, [11; 16]));
        assert!(limit.admit(url, [10; 16]), "a counted variant is stored again");
        assert!(!limit.admit(url, [12; 16]), "a third is not stored");
        assert!(limit.admit(other, [12; 16]), "other URLs have their own room");
    }
}
