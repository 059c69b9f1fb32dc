//! Methods other than GET and HEAD (RFC 9110 §9.3, RFC 9111 §4.4).
//!
//! They are passed upstream (edge → shield → origin) and never cached; their bodies stream
//! through, up to `max_request_body`. A successful response (2xx, 3xx) to an unsafe method
//! invalidates what this node stores of the request's target and of its `Location` and
//! `Content-Location` when they name the same host: the next GET of them is a miss.
//!
//! Only the nodes on the request's path invalidate. A cluster-wide purge is the origin's to
//! ask for, through the purge API: an unauthenticated `POST` that any client can send must not
//! empty every edge of a URL. Even so, where the origin answers such a `POST` with 2xx or 3xx
//! (a static file server, a catch-all route), a client can evict that URL from one edge and its
//! shield, each time at the cost of one refetch; invalidating by marking stale (a revalidation,
//! usually a 304) rather than by removal is not built yet.

use http::{Method, header};
use pingora_http::{RequestHeader, ResponseHeader};

/// Whether responses to `method` are looked up and stored: GET and HEAD only.
pub fn is_cached(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Counts a passed request's body against its limit.
#[derive(Debug, Default)]
pub struct BodyLimit {
    seen: u64,
}

impl BodyLimit {
    /// Whether the declared `Content-Length` of `req` is over `limit` (refuse before reading).
    pub fn declared_over(req: &RequestHeader, limit: u64) -> bool {
        req.headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .is_some_and(|length| length > limit)
    }

    /// Adds a chunk of `len` bytes; false once the body is over `limit` (a chunked body that
    /// declared nothing).
    pub fn take(&mut self, len: usize, limit: u64) -> bool {
        self.seen = self.seen.saturating_add(len as u64);
        self.seen <= limit
    }
}

/// The targets (path and query) a response to `req` invalidates in this node: none unless the
/// method is unsafe and the status 2xx or 3xx; else the request's own target, and `Location`
/// and `Content-Location` when they are relative or name the request's host.
pub fn invalidated_targets(req: &RequestHeader, resp: &ResponseHeader) -> Vec<String> {
    let status = resp.status.as_u16();
    if req.method.is_safe() || !(200..400).contains(&status) {
        return Vec::new();
    }
    let own = req.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string();
    let host = request_host(req);
    let mut targets = vec![own];
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(value) = resp.headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(target) = same_host_target(value, host.as_deref(), req.uri.path())
            && !targets.contains(&target)
        {
            targets.push(target);
        }
    }
    targets
}

/// The request's host, without a port, lowercased.
pub(crate) fn request_host(req: &RequestHeader) -> Option<String> {
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())?;
    let without_port = host.rsplit_once(':').map_or(host, |(h, _)| h);
    Some(without_port.to_ascii_lowercase())
}

/// The path and query `reference` names on the request's `host`, if it names one there:
/// absolute (`http://host/x`), absolute-path (`/x`) or relative to `base_path` (`x`).
fn same_host_target(reference: &str, host: Option<&str>, base_path: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.is_empty() || reference.starts_with("//") {
        return None;
    }
    if reference.starts_with('/') {
        return Some(reference.to_string());
    }
    if let Ok(uri) = reference.parse::<http::Uri>()
        && uri.scheme().is_some()
        && let Some(authority) = uri.authority()
    {
        let same = host.is_some_and(|h| authority.host().eq_ignore_ascii_case(h));
        return same.then(|| uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string());
    }
    if reference.contains(':') && !reference.contains('/') {
        return None;
    }
    if reference.starts_with('?') {
        return Some(format!("{base_path}{reference}"));
    }
    if reference.split('/').any(|segment| segment == "." || segment == "..") {
        // Dot segments are not resolved here: better no invalidation than the wrong one.
        return None;
    }
    let directory = base_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    Some(format!("{directory}/{reference}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str) -> RequestHeader {
        let mut req = RequestHeader::build(method, target.as_bytes(), None).unwrap();
        req.insert_header("host", "img.example:8080").unwrap();
        req
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        for (name, value) in headers {
            resp.insert_header(name.to_string(), *value).unwrap();
        }
        resp
    }

    #[test]
    fn only_get_and_head_are_cached() {
        assert!(is_cached(&Method::GET) && is_cached(&Method::HEAD));
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::PATCH,
        ] {
            assert!(!is_cached(&method), "{method}");
        }
    }

    #[test]
    fn a_successful_unsafe_method_invalidates_its_target_and_same_host_locations() {
        let resp = response(
            201,
            &[
                ("location", "http://IMG.example/img/new.jpg"),
                ("content-location", "/img/a.jpg?v=2"),
            ],
        );
        assert_eq!(
            invalidated_targets(&request("POST", "/img/a.jpg"), &resp),
            ["/img/a.jpg", "/img/new.jpg", "/img/a.jpg?v=2"]
        );
        let query = response(201, &[("location", "?v=2"), ("content-location", "../x.jpg")]);
        assert_eq!(
            invalidated_targets(&request("PUT", "/img/a.jpg"), &query),
            ["/img/a.jpg", "/img/a.jpg?v=2"]
        );
        let relative = response(303, &[("location", "b.jpg")]);
        assert_eq!(
            invalidated_targets(&request("DELETE", "/img/a.jpg"), &relative),
            ["/img/a.jpg", "/img/b.jpg"]
        );
    }

    #[test]
    fn other_hosts_safe_methods_and_failures_invalidate_nothing_more() {
        let elsewhere = response(
            200,
            &[
                ("location", "https://other.example/img/a.jpg"),
                ("content-location", "//other.example/x"),
            ],
        );
        assert_eq!(
            invalidated_targets(&request("PUT", "/img/a.jpg"), &elsewhere),
            ["/img/a.jpg"]
        );
        assert!(invalidated_targets(&request("OPTIONS", "/img/a.jpg"), &response(200, &[])).is_empty());
        assert!(invalidated_targets(&request("POST", "/img/a.jpg"), &response(405, &[])).is_empty());
        assert!(invalidated_targets(&request("POST", "/img/a.jpg"), &response(500, &[])).is_empty());
    }

    #[test]
    fn bodies_are_held_to_the_limit() {
        let mut req = request("POST", "/upload");
        req.insert_header("content-length", "11").unwrap();
        assert!(BodyLimit::declared_over(&req, 10));
        assert!(!BodyLimit::declared_over(&req, 11));
        let mut body = BodyLimit::default();
        assert!(body.take(6, 10));
        assert!(body.take(4, 10));
        assert!(!body.take(1, 10));
    }
}
