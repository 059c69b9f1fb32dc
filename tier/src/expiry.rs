//! How long what a node stores stays fresh when the origin does not say, and when a stale copy
//! may still go out.
//!
//! - Heuristic freshness (RFC 9111 §4.2.2) for responses without Cache-Control or Expires:
//!   `cache.default_ttl_secs` for the heuristically cacheable successes and redirects, and the
//!   shorter `cache.negative_ttl_secs` for 404 and 410 (negative caching: an image uploaded
//!   after a miss appears soon even if no purge names it). No other error is stored unless the
//!   origin says so: a 405, 414 or 501 is what a hostile request gets, not what the URL is.
//! - Stale-if-error (RFC 5861): an immutable object (see [`crate::immutable`]) may be served
//!   stale for `cache.stale_if_error_secs` while its upstream fails; a mutable one only as long
//!   as the origin's own `stale-if-error` allows, and never once a purge or a lost lease has
//!   put it in doubt ([`stale_allowed`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use pingora_cache::{CacheMeta, CacheMetaDefaults};
use pingora_error::{Error, ErrorSource};

use crate::config::CacheSection;

/// pingora takes plain `fn`s and a static for the defaults, so the configured values live here.
static HEURISTIC_TTL_SECS: AtomicU64 = AtomicU64::new(60);
static NEGATIVE_TTL_SECS: AtomicU64 = AtomicU64::new(10);

fn heuristic_fresh(status: StatusCode) -> Option<Duration> {
    let ttl = match status.as_u16() {
        // RFC 9110 §15.1's heuristically cacheable successes and redirects.
        200 | 203 | 204 | 206 | 300 | 301 | 308 => &HEURISTIC_TTL_SECS,
        404 | 410 => &NEGATIVE_TTL_SECS,
        _ => return None,
    };
    Some(Duration::from_secs(ttl.load(Ordering::Relaxed)))
}

/// The defaults every stored response gets: no serving stale unless the origin says so in
/// Cache-Control (immutable objects get theirs in [`grant_stale_if_error`]).
pub static META_DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(heuristic_fresh, 0, 0);

/// Takes the configured lifetimes (once, when a node starts).
pub fn configure(cache: &CacheSection) {
    HEURISTIC_TTL_SECS.store(cache.default_ttl_secs, Ordering::Relaxed);
    NEGATIVE_TTL_SECS.store(cache.negative_ttl_secs, Ordering::Relaxed);
}

/// Lets an immutable object about to be stored be served stale for `secs` while its upstream
/// fails (or longer, if the origin asked for more).
pub fn grant_stale_if_error(meta: &mut CacheMeta, secs: u32) {
    let secs = secs.max(meta.stale_if_error_sec());
    meta.update_freshness(meta.fresh_until(), meta.stale_while_revalidate_sec(), secs);
}

/// Whether a stale copy may be served instead of `error`: only for upstream failures (never
/// to answer stale while revalidating, which a purge forbids), and never when `in_doubt` (a
/// soft purge covers the copy, or it is being confirmed because of a lost lease or a purge the
/// upstream may not have applied).
pub fn stale_allowed(error: Option<&Error>, in_doubt: bool) -> bool {
    !in_doubt && error.is_some_and(|e| e.esource() == &ErrorSource::Upstream)
}

#[cfg(test)]
mod tests {
    use pingora_error::ErrorType;

    use super::*;

    #[test]
    fn only_404_and_410_among_errors_are_stored_by_heuristic_and_briefly() {
        assert_eq!(heuristic_fresh(StatusCode::OK), Some(Duration::from_secs(60)));
        assert_eq!(heuristic_fresh(StatusCode::NOT_FOUND), Some(Duration::from_secs(10)));
        assert_eq!(heuristic_fresh(StatusCode::GONE), Some(Duration::from_secs(10)));
        for status in [400, 403, 405, 414, 500, 501, 502, 503] {
            assert_eq!(heuristic_fresh(StatusCode::from_u16(status).unwrap()), None, "{status}");
        }
    }

    #[test]
    fn stale_goes_out_only_for_upstream_errors_on_copies_not_in_doubt() {
        let upstream = Error::create(ErrorType::HTTPStatus(503), ErrorSource::Upstream, None, None);
        let downstream = Error::create(ErrorType::WriteError, ErrorSource::Downstream, None, None);
        assert!(stale_allowed(Some(&upstream), false));
        assert!(!stale_allowed(Some(&upstream), true));
        assert!(!stale_allowed(Some(&downstream), false));
        assert!(!stale_allowed(None, false), "not while revalidating");
    }
}
