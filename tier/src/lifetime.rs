//! Whether a response may be stored, how long it stays fresh and how old it already is
//! (RFC 9111 §3 and §4.2, RFC 9213).
//!
//! - **The CDN's own directives first** (RFC 9213): the first valid one of
//!   `Fresco-CDN-Cache-Control`, `CDN-Cache-Control` (both Structured Field dictionaries,
//!   checked strictly: one bad member or a quoted `max-age` voids the field) and
//!   `Surrogate-Control` decides, and then `Cache-Control` and `Expires` are ignored by
//!   fresco's caching (browsers still get them). An edge takes `Fresco-CDN-Cache-Control` and
//!   `Surrogate-Control` off what clients get, as they were for fresco alone; `CDN-Cache-Control`
//!   targets every CDN, one downstream of fresco too, so it passes on (as Cloudflare does).
//! - **Lifetime**: `s-maxage`, else `max-age`; a directive that is present but not a valid
//!   delta-seconds (`max-age=-1`, `max-age='60'`) makes the response stale rather than
//!   leaving it to the heuristic. Else `Expires` minus `Date` (the origin's own clock on both
//!   sides, so a skewed origin clock does not matter); a second `Expires` line or a bad date
//!   is in the past. Else the heuristic of [`crate::expiry`].
//! - **Age**: the upstream's `Age` (its first value; one that is not all digits is ignored)
//!   counts against the lifetime, and the stored object is dated back by it, so the `Age` a hit
//!   sends carries the shield's and the origin's time too. `Date` is not used to estimate age
//!   (RFC 9111's apparent age): an origin clock that is slow would make everything stale.

use std::time::{Duration, SystemTime};

use http::header;
use httpdate::HttpDate;
use pingora_cache::cache_control::{CacheControl, DirectiveKey, InterpretCacheControl};
use pingora_cache::filters::calculate_serve_stale_durations;
use pingora_cache::{CacheMeta, CacheMetaDefaults, NoCacheReason, RespCacheable};
use pingora_http::ResponseHeader;

/// The targeted field for fresco alone (RFC 9213 §2.1).
const FRESCO_CDN_CACHE_CONTROL: &str = "fresco-cdn-cache-control";
/// The older targeted field (Edge Architecture), for the surrogate in front of an origin.
const SURROGATE_CONTROL: &str = "surrogate-control";

/// The targeted fields fresco obeys, most specific first (RFC 9213 §2.1).
pub const TARGETED_FIELDS: [&str; 3] = [FRESCO_CDN_CACHE_CONTROL, "cdn-cache-control", SURROGATE_CONTROL];

/// The caching directives in force for a stored response: the first targeted field with a
/// directive, else `Cache-Control`.
pub struct Directives {
    control: Option<CacheControl>,
    /// A targeted field decides, so `Expires` does not count either.
    targeted: bool,
}

impl Directives {
    /// The directives of `resp`.
    pub fn of(resp: &ResponseHeader) -> Self {
        for name in TARGETED_FIELDS {
            let structured = name != SURROGATE_CONTROL;
            if structured && !valid_dictionary(&resp.headers, name) {
                continue;
            }
            if let Some(control) = CacheControl::from_resp_headers_named(name, resp)
                && !control.directives.is_empty()
            {
                return Self {
                    control: Some(control),
                    targeted: true,
                };
            }
        }
        Self {
            control: CacheControl::from_resp_headers(resp),
            targeted: false,
        }
    }

    /// The `Cache-Control` (or targeted field) in force, if any.
    pub fn control(&self) -> Option<&CacheControl> {
        self.control.as_ref()
    }

    /// The lifetime the directives give (`None`: they give none).
    fn explicit_lifetime(&self) -> Option<Duration> {
        let control = self.control.as_ref()?;
        if control.no_cache() {
            return Some(Duration::ZERO);
        }
        for key in [DirectiveKey::SMaxAge, DirectiveKey::MaxAge] {
            if control.has_directive(&key) {
                let seconds = match key {
                    DirectiveKey::SMaxAge => control.s_maxage(),
                    _ => control.max_age(),
                };
                return Some(match seconds {
                    Ok(Some(seconds)) if valid_delta_seconds(control, &key) => Duration::from_secs(seconds.into()),
                    _ => Duration::ZERO,
                });
            }
        }
        None
    }
}

/// Whether every line of `name` is a Structured Field dictionary (RFC 8941 §3.2) whose
/// delta-seconds directives are integers, as RFC 9213 §2.1 asks of `CDN-Cache-Control`.
fn valid_dictionary(headers: &http::HeaderMap, name: &str) -> bool {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek().is_some() && lines.all(|line| line.to_str().is_ok_and(valid_dictionary_line))
}

fn valid_dictionary_line(line: &str) -> bool {
    const SECONDS: [&str; 4] = ["max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"];
    line.split(',').all(|member| {
        let mut parts = member.trim_matches([' ', '\t']).split(';');
        let item = parts.next().unwrap_or("");
        let (key, value) = item.split_once('=').map_or((item, None), |(k, v)| (k, Some(v)));
        let integer = |v: &str| {
            let digits = v.strip_prefix('-').unwrap_or(v);
            (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        };
        let bare_item = |v: &str| {
            integer(v)
                || v == "?0"
                || v == "?1"
                || (v.len() >= 2 && v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '*')
                    && v.bytes().all(|b| b.is_ascii_graphic() && !b"\"(),;=[]{}".contains(&b)))
        };
        sf_key(key)
            && match value {
                None => true,
                Some(v) if SECONDS.contains(&key) => integer(v),
                Some(v) => bare_item(v),
            }
            && parts.all(|param| {
                let (k, v) = param
                    .trim_start()
                    .split_once('=')
                    .map_or((param.trim_start(), None), |(k, v)| (k, Some(v)));
                sf_key(k) && v.is_none_or(bare_item)
            })
    })
}

/// An RFC 8941 key: a lowercase letter or `*`, then lowercase letters, digits, `_-.*`.
fn sf_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase() || c == '*')
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
}

/// pingora accepts a quoted number; RFC 9111 §1.2.2 asks for digits, so `'60'` is refused
/// (a double-quoted one stays accepted, as RFC 9111 §5.2 allows the quoted-string form).
fn valid_delta_seconds(control: &CacheControl, key: &DirectiveKey) -> bool {
    control
        .directives
        .get(key)
        .and_then(|value| value.as_ref())
        .is_some_and(|value| {
            let raw = value.parse_as_bytes();
            let digits = raw
                .strip_prefix(b"\"")
                .and_then(|r| r.strip_suffix(b"\""))
                .unwrap_or(raw);
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        })
}

/// The upstream's `Age` in seconds: the first value of the first line, all digits, or none.
pub fn age_value(resp: &ResponseHeader) -> Option<u64> {
    let first = resp.headers.get(header::AGE)?.to_str().ok()?;
    let value = first.split(',').next()?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too large to count is as good as forever.
    Some(value.parse().unwrap_or(u64::MAX))
}

/// The lifetime `Expires` gives, measured from `Date` (or from now, without one); a second
/// `Expires` line or a bad date is in the past (RFC 9111 §5.3).
fn expires_lifetime(resp: &ResponseHeader, now: SystemTime) -> Option<Duration> {
    let mut lines = resp.headers.get_all(header::EXPIRES).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return Some(Duration::ZERO);
    }
    let date = |value: &http::HeaderValue| {
        value
            .to_str()
            .ok()?
            .trim()
            .parse::<HttpDate>()
            .ok()
            .map(SystemTime::from)
    };
    let Some(expires) = date(first) else {
        return Some(Duration::ZERO);
    };
    let since = resp.headers.get(header::DATE).and_then(date).unwrap_or(now);
    Some(expires.duration_since(since).unwrap_or(Duration::ZERO))
}

/// Whether `resp` may be stored, and if so its [`CacheMeta`]: fresh for its lifetime less its
/// age, and as old as its upstream said when it arrived. `authorized`: the request carried
/// `Authorization`.
pub fn cacheable(resp: ResponseHeader, authorized: bool, defaults: &CacheMetaDefaults) -> RespCacheable {
    let now = SystemTime::now();
    let directives = Directives::of(&resp);
    let control = directives.control();
    if authorized && !control.is_some_and(|c| c.allow_caching_authorized_req()) {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    if control.is_some_and(|c| c.is_cacheable() == pingora_cache::cache_control::Cacheable::No) {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let lifetime = directives
        .explicit_lifetime()
        .or_else(|| (!directives.targeted).then(|| expires_lifetime(&resp, now)).flatten())
        .or_else(|| defaults.fresh_sec(resp.status))
        .or_else(|| control.is_some_and(|c| c.public()).then_some(Duration::ZERO));
    let Some(lifetime) = lifetime else {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    };
    // Its age is counted from before it arrived, never before 1970. `created` stays the
    // arrival (the store's purge fences compare it); pingora's epoch override is the age's
    // reference, for the `Age` hits send.
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let age = Duration::from_secs(age_value(&resp).unwrap_or(0)).min(since_epoch);
    let born = now - age;
    let fresh_until = match lifetime > age {
        true => born + lifetime,
        // Stale from the start: stored, to be revalidated on its first use.
        false => now - Duration::from_secs(1).min(since_epoch),
    };
    let (stale_while_revalidate, stale_if_error) = calculate_serve_stale_durations(control, defaults);
    let mut resp = resp;
    if let Some(control) = control {
        control.strip_private_headers(&mut resp);
    }
    let mut meta = CacheMeta::new(fresh_until, now, stale_while_revalidate, stale_if_error, resp);
    if !age.is_zero() {
        meta.set_epoch_override(born);
    }
    RespCacheable::Cacheable(meta)
}

/// Whether the directives in force forbid serving `resp` stale (RFC 9111 §5.2.2.2,
/// §5.2.2.8, §5.2.2.10): `must-revalidate`, `proxy-revalidate`, `no-cache` and `s-maxage`.
/// Then not even an immutable object is served stale while its upstream fails.
pub fn forbids_stale(resp: &ResponseHeader) -> bool {
    Directives::of(resp).control().is_some_and(|c| {
        c.must_revalidate() || c.proxy_revalidate() || c.no_cache() || c.has_directive(&DirectiveKey::SMaxAge)
    })
}

/// The fields meant for fresco alone, parsed once (they are looked for on every hit).
static FRESCO_ONLY_FIELDS: [http::HeaderName; 2] = [
    http::HeaderName::from_static(FRESCO_CDN_CACHE_CONTROL),
    http::HeaderName::from_static(SURROGATE_CONTROL),
];

/// Takes the fields meant for fresco alone off a response an edge sends to a client.
pub fn hide_targeted_fields(resp: &mut ResponseHeader) {
    crate::internal_headers::remove_present(resp, &FRESCO_ONLY_FIELDS);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(status: http::StatusCode) -> Option<Duration> {
        (status == http::StatusCode::OK).then_some(Duration::from_secs(60))
    }
    static DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(fresh, 0, 0);

    fn response(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (name, value) in headers {
            resp.append_header(name.to_string(), *value).unwrap();
        }
        resp
    }

    /// (seconds fresh from now, age in seconds), or `None` when not stored.
    fn judged(headers: &[(&str, &str)]) -> Option<(i64, u64)> {
        match cacheable(response(headers), false, &DEFAULTS) {
            RespCacheable::Cacheable(meta) => {
                let now = SystemTime::now();
                let fresh = match meta.fresh_until().duration_since(now) {
                    Ok(left) => left.as_secs_f64().round() as i64,
                    Err(past) => -(past.duration().as_secs_f64().round() as i64),
                };
                Some((fresh, meta.age().as_secs()))
            }
            RespCacheable::Uncacheable(_) => None,
        }
    }

    fn http_date(from_now: i64) -> String {
        let at = match from_now >= 0 {
            true => SystemTime::now() + Duration::from_secs(from_now as u64),
            false => SystemTime::now() - Duration::from_secs(from_now.unsigned_abs()),
        };
        httpdate::fmt_http_date(at)
    }

    #[test]
    fn the_upstreams_age_counts_against_max_age_and_dates_the_object_back() {
        assert_eq!(
            judged(&[("cache-control", "max-age=3600"), ("age", "600")]),
            Some((3000, 600))
        );
        let (fresh, _) = judged(&[("cache-control", "max-age=3600"), ("age", "7200")]).unwrap();
        assert!(fresh <= 0, "older than its lifetime is stale: {fresh}");
    }

    #[test]
    fn age_is_its_first_value_and_only_digits_count() {
        assert_eq!(age_value(&response(&[("age", "7200, 0")])), Some(7200));
        assert_eq!(age_value(&response(&[("age", "7200"), ("age", "0")])), Some(7200));
        assert_eq!(age_value(&response(&[("age", "2147483648")])), Some(2147483648));
        assert_eq!(
            age_value(&response(&[("age", "99999999999999999999999")])),
            Some(u64::MAX)
        );
        for ignored in ["abc", "-7200", "7200.0", ""] {
            assert_eq!(age_value(&response(&[("age", ignored)])), None, "{ignored:?}");
        }
        let (fresh, _) = judged(&[("cache-control", "max-age=3600"), ("age", "2147483648")]).unwrap();
        assert!(fresh <= 0);
    }

    #[test]
    fn an_invalid_max_age_is_stale_not_heuristic() {
        for value in [
            "max-age=-3600",
            "max-age='3600'",
            "max-age=abc",
            "s-maxage=-1, max-age=3600",
        ] {
            let (fresh, _) = judged(&[("cache-control", value)]).unwrap();
            assert!(fresh <= 0, "{value}: {fresh}");
        }
        assert_eq!(
            judged(&[("cache-control", "max-age=\"3600\"")]).map(|j| j.0),
            Some(3600)
        );
        assert_eq!(judged(&[]).map(|j| j.0), Some(60), "no directive: the heuristic");
    }

    #[test]
    fn expires_counts_from_the_origins_date() {
        let (fresh, _) = judged(&[("expires", &http_date(300)), ("date", &http_date(400))]).unwrap();
        assert!(fresh <= 0, "an Expires before its Date is stale");
        let (fresh, _) = judged(&[("expires", &http_date(3600 - 100)), ("date", &http_date(-100))]).unwrap();
        assert!((3599..=3601).contains(&fresh), "{fresh}");
        let (fresh, _) = judged(&[("expires", &http_date(20)), ("date", &http_date(10)), ("age", "15")]).unwrap();
        assert!(fresh <= 0, "age over Expires minus Date: {fresh}");
        let two = [("expires", http_date(3600)), ("expires", http_date(3601))];
        let (fresh, _) = judged(&[("expires", &two[0].1), ("expires", &two[1].1)]).unwrap();
        assert!(fresh <= 0, "two Expires lines");
        let (fresh, _) = judged(&[("expires", "0")]).unwrap();
        assert!(fresh <= 0, "a bad date");
    }

    #[test]
    fn a_targeted_field_overrides_cache_control_and_expires() {
        assert_eq!(
            judged(&[("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")]).map(|j| j.0),
            Some(600)
        );
        assert_eq!(
            judged(&[("cache-control", "max-age=600"), ("cdn-cache-control", "no-store")]),
            None
        );
        assert_eq!(
            judged(&[("cache-control", "max-age=600"), ("cdn-cache-control", "private")]),
            None
        );
        let (fresh, _) = judged(&[("cache-control", "max-age=600"), ("cdn-cache-control", "max-age=0")]).unwrap();
        assert!(fresh <= 0);
        let (fresh, _) = judged(&[("expires", &http_date(600)), ("cdn-cache-control", "no-cache")]).unwrap();
        assert!(fresh <= 0);
        assert_eq!(
            judged(&[
                ("cdn-cache-control", "max-age=60"),
                ("fresco-cdn-cache-control", "max-age=900")
            ])
            .map(|j| j.0),
            Some(900),
            "the most specific field wins"
        );
        assert_eq!(
            judged(&[("cache-control", "max-age=60"), ("surrogate-control", "max-age=300")]).map(|j| j.0),
            Some(300)
        );
        assert_eq!(
            judged(&[("cache-control", "max-age=60"), ("cdn-cache-control", ",,")]).map(|j| j.0),
            Some(60),
            "a targeted field with no directive is ignored"
        );
    }

    #[test]
    fn revalidation_directives_forbid_stale() {
        for forbidding in [
            "max-age=60, must-revalidate",
            "proxy-revalidate",
            "no-cache",
            "s-maxage=60",
        ] {
            assert!(
                forbids_stale(&response(&[("cache-control", forbidding)])),
                "{forbidding}"
            );
        }
        assert!(!forbids_stale(&response(&[("cache-control", "max-age=60, immutable")])));
        assert!(forbids_stale(&response(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "must-revalidate")
        ])));
    }

    #[test]
    fn edges_hide_the_fields_meant_for_fresco_alone() {
        let mut resp = response(&[
            ("fresco-cdn-cache-control", "max-age=600"),
            ("surrogate-control", "max-age=600"),
            ("cdn-cache-control", "max-age=60"),
            ("cache-control", "max-age=5"),
        ]);
        hide_targeted_fields(&mut resp);
        assert!(!resp.headers.contains_key("fresco-cdn-cache-control"));
        assert!(!resp.headers.contains_key("surrogate-control"));
        assert_eq!(resp.headers["cdn-cache-control"], "max-age=60", "for CDNs downstream");
        assert_eq!(resp.headers["cache-control"], "max-age=5");
    }

    #[test]
    fn a_cdn_cache_control_that_is_no_structured_dictionary_is_ignored() {
        for bad in ["max-age=10000, &&&&&", "max-age=\"10000\"", "Max-Age=10", "max-age=1.5"] {
            assert_eq!(
                judged(&[("cdn-cache-control", bad), ("cache-control", "no-store")]),
                None,
                "{bad:?} is ignored, so Cache-Control's no-store holds"
            );
        }
        for good in [
            "max-age=600",
            "max-age=600, private=?0",
            "no-cache;x=1, max-age=600",
            "max-age=600, foo=\"bar\"",
        ] {
            assert!(valid_dictionary_line(good), "{good:?}");
        }
    }
}
