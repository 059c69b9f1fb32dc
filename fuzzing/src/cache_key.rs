//! Cache-key normalisation (`fresco_tier::cache_key`).
//!
//! Promises: normalising is idempotent, and the key of what goes upstream is the key of what
//! the client asked (`crate::poisoning` sends the normalized target, and a shield keys what it
//! receives: were the two keys to differ, an edge and its shield would disagree on what a
//! response is stored under). The normalized target of a request still parses as a URI, since
//! it is sent upstream as one.

use fresco_tier::cache_key::{normalized_target, prefix_key, primary_key};

/// Byte 0 picks which parameters the site ignores; the rest is a request target as sent, of
/// which a node keys what `http` parses (pingora's `RequestHeader::uri`): its path and query.
pub fn run(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(rest) else { return };
    let Some(target) = uri.path_and_query().map(|pq| pq.as_str()) else {
        return;
    };
    let ignore: Vec<String> = match choice % 3 {
        0 => vec![],
        1 => vec!["utm_source".into(), "fresco".into()],
        _ => vec!["a".into(), "".into()],
    };
    let normalized = normalized_target(target, &ignore);
    assert_eq!(
        normalized_target(&normalized, &ignore),
        normalized,
        "normalising {target:?} twice changes it"
    );
    assert_eq!(
        primary_key("s", &normalized, &ignore),
        primary_key("s", target, &ignore),
        "what goes upstream for {target:?} has another key"
    );
    assert!(
        !target.starts_with('/') || normalized.parse::<http::Uri>().is_ok(),
        "{target:?} normalizes to {normalized:?}, which is no URI"
    );
    let _ = prefix_key("s", target);
}
