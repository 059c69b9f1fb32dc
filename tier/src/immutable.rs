//! Which objects are immutable: they never change under their URL, so a node serves them
//! without a lease (purges still apply to them, for takedowns).

use pingora_http::HMap;

/// Whether the origin marked the response `Cache-Control: immutable`.
pub fn marked_immutable(headers: &HMap) -> bool {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("immutable")))
}

/// Whether a request target is a versioned URL: a `/v/<version>/` segment, a `v=` query
/// parameter, or a file name carrying a hex content hash of 8 or more digits
/// (`logo.3f9a2c1d.png`, `logo-3f9a2c1d.png`).
pub fn versioned_url(target: &str) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if query.split('&').any(|p| p.starts_with("v=") && p.len() > 2) {
        return true;
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.windows(3).any(|w| w[0] == "v" && !w[1].is_empty()) {
        return true;
    }
    let file = segments.last().copied().unwrap_or("");
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    stem.split(['.', '-', '_'])
        .skip(1)
        .any(|part| part.len() >= 8 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_urls_are_recognised() {
        for url in [
            "/v/42/a.jpg",
            "/img/a.jpg?v=3",
            "/img/logo.3f9a2c1d.png",
            "/img/logo-3f9a2c1dee.png",
        ] {
            assert!(versioned_url(url), "{url}");
        }
        for url in [
            "/img/a.jpg",
            "/v/a.jpg",
            "/img/a.jpg?view=1",
            "/img/cafe.png",
            "/img/logo.3f9a.png",
        ] {
            assert!(!versioned_url(url), "{url}");
        }
    }
}
