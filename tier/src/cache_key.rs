//! Cache keys: site + normalized path + sorted query.
//!
//! Two URLs that any origin must treat alike get one key: `%7E` and `~`, `/a/./b` and `/a/b`,
//! `?b=2&a=1` and `?a=1&b=2`. Query parameters a site lists in `ignore_query` (tracking
//! tags) are left out. Anything else is kept as sent: paths are case-sensitive.

use pingora_cache::CacheKey;

/// Builds the primary key text for `site` and a request target (`/path?query`): the site, a
/// newline, and [`normalized_target`].
pub fn primary_key(site: &str, target: &str, ignore_query: &[String]) -> String {
    let target = normalized_target(target, ignore_query);
    let mut key = String::with_capacity(site.len() + target.len() + 1);
    key.push_str(site);
    // Sites are single words, so a newline frames the parts unambiguously.
    key.push('\n');
    key.push_str(&target);
    key
}

/// The request target a key stands for: the normalized path, then the query's parameters with
/// escapes normalized, sorted, and without those in `ignore_query`. It is also what goes
/// upstream (`crate::poisoning`), so that nothing unkeyed in the URL reaches the origin.
pub fn normalized_target(target: &str, ignore_query: &[String]) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut out = normalize_path(path);
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(normalize_escapes)
        // Named after normalizing, so that `%75tm_source` is `utm_source`.
        .filter(|p| {
            let name = p.split_once('=').map_or(p.as_str(), |(n, _)| n);
            !ignore_query.iter().any(|ignored| ignored == name)
        })
        .collect();
    if !params.is_empty() {
        params.sort();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// The key text a path prefix purge matches: every primary key that starts with it.
pub fn prefix_key(site: &str, prefix: &str) -> String {
    let path = prefix.split_once('?').map_or(prefix, |(p, _)| p);
    let mut normalized = normalize_path(path);
    // `normalize_path` turns "" into "/"; a prefix keeps its own trailing shape.
    if !path.ends_with('/') && normalized.ends_with('/') && normalized.len() > 1 {
        normalized.pop();
    }
    format!("{site}\n{normalized}")
}

/// The pingora cache key of a primary key text.
pub fn cache_key(primary: String) -> CacheKey {
    CacheKey::new(primary, "")
}

/// Decodes escapes of unreserved characters and upper-cases the rest (RFC 3986 §6.2.2). A `%`
/// that starts no escape becomes `%25`: left alone, it could make one with what a decoded escape
/// puts after it (`%5%37` would be `%57`, and `W` when normalized again), and the key of what
/// goes upstream would not be the key of what was asked (found by `make fuzz`).
fn normalize_escapes(text: &str) -> String {
    // Works on bytes: a `%` may be followed by any UTF-8 text, which must not be sliced.
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        match escaped {
            Some(hex) => {
                let value = u8::from_str_radix(std::str::from_utf8(hex).expect("hex digits are ASCII"), 16)
                    .expect("two hex digits");
                if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                    out.push(value);
                } else {
                    out.push(b'%');
                    out.extend(hex.iter().map(u8::to_ascii_uppercase));
                }
                i += 3;
            }
            None if bytes[i] == b'%' => {
                out.extend_from_slice(b"%25");
                i += 1;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// Normalizes escapes and removes `.` and `..` segments (RFC 3986 §5.2.4).
fn normalize_path(path: &str) -> String {
    let path = normalize_escapes(path);
    if !path.contains("/.") {
        return if path.is_empty() { "/".into() } else { path };
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.ends_with("/.") || path.ends_with("/..");
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_urls_share_a_key() {
        let ignore = vec!["utm_source".to_string()];
        let a = primary_key("shop", "/img/%7Ea/./b.jpg?w=100&h=50&utm_source=x", &ignore);
        let b = primary_key("shop", "/img/~a/b.jpg?h=50&w=100", &ignore);
        assert_eq!(a, b);
        assert_eq!(a, "shop\n/img/~a/b.jpg?h=50&w=100");
    }

    #[test]
    fn the_target_sent_upstream_is_the_keyed_one() {
        let ignore = vec!["utm_source".to_string(), "fresco".to_string()];
        let key = primary_key("shop", "/x/%2e%2e/img/a.jpg?w=1&%75tm_source=evil&fresco=9", &ignore);
        assert_eq!(key, "shop\n/img/a.jpg?w=1");
        assert_eq!(normalized_target("/a/./b?", &ignore), "/a/b");
    }

    #[test]
    fn different_urls_and_sites_differ() {
        assert_ne!(primary_key("a", "/x.jpg", &[]), primary_key("b", "/x.jpg", &[]));
        assert_ne!(primary_key("a", "/X.jpg", &[]), primary_key("a", "/x.jpg", &[]));
        assert_ne!(primary_key("a", "/x.jpg?v=1", &[]), primary_key("a", "/x.jpg?v=2", &[]));
        assert_eq!(primary_key("a", "/a/../x%2f", &[]), "a\n/x%2F");
    }

    #[test]
    fn non_ascii_after_a_percent_sign_is_kept_not_sliced() {
        assert_eq!(primary_key("a", "/%aé/%é%41", &[]), "a\n/%25aé/%25éA");
        assert_eq!(prefix_key("a", "/%é"), "a\n/%25é");
    }

    #[test]
    fn a_stray_percent_sign_cannot_become_an_escape_on_a_second_pass() {
        let once = normalized_target("/x/%5%37e.jpg?q=%5%37", &[]);
        assert_eq!(once, "/x/%2557e.jpg?q=%2557");
        assert_eq!(normalized_target(&once, &[]), once);
        assert_eq!(
            primary_key("a", &once, &[]),
            primary_key("a", "/x/%5%37e.jpg?q=%5%37", &[])
        );
    }

    #[test]
    fn prefixes_match_the_keys_below_them() {
        let prefix = prefix_key("shop", "/img/%7Ecats");
        assert!(primary_key("shop", "/img/~cats/1.jpg?w=1", &[]).starts_with(&prefix));
        assert!(primary_key("shop", "/img/~catsup.jpg", &[]).starts_with(&prefix));
        assert!(!primary_key("shop", "/img/dogs.jpg", &[]).starts_with(&prefix));
        assert!(!primary_key("other", "/img/~cats/1.jpg", &[]).starts_with(&prefix));
        assert_eq!(prefix_key("shop", "/img/"), "shop\n/img/");
    }
}
