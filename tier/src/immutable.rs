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
/// parameter, or a file name carrying a content hash: a part of its own after the name
/// (`logo.3f9a2c1d.png`, `logo-3f9a2c1d.png`), of 8 or more hex digits, letters and digits
/// both. Identifiers are not versions: a file named by a UUID or a ULID (user uploads often
/// are) can change under its name, and so can one named by a number.
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
    if contains_uuid(stem) {
        return false;
    }
    stem.split(['.', '-', '_']).skip(1).any(|part| {
        part.len() >= 8
            && part.len() != ULID_LEN
            && part.bytes().all(|b| b.is_ascii_hexdigit())
            && part.bytes().any(|b| b.is_ascii_digit())
            && part.bytes().any(|b| b.is_ascii_alphabetic())
    })
}

/// A ULID's length (26 Crockford base32 characters): a part this long is an identifier even
/// when all its characters happen to be hex digits.
const ULID_LEN: usize = 26;

/// Whether `text` holds a UUID (`8-4-4-4-12` hex digits) anywhere.
fn contains_uuid(text: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(35)).any(|start| {
        let mut at = start;
        GROUPS.iter().enumerate().all(|(i, &len)| {
            let group = bytes.get(at..at + len);
            let ok = group.is_some_and(|g| g.iter().all(u8::is_ascii_hexdigit))
                && (i == GROUPS.len() - 1 || bytes.get(at + len) == Some(&b'-'));
            at += len + 1;
            ok
        })
    })
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

    #[test]
    fn uuids_ulids_and_numbers_are_names_not_versions() {
        for url in [
            "/test/d1cff481-70c6-46d6-9c92-fe0c128068e3",
            "/uploads/d1cff481-70c6-46d6-9c92-fe0c128068e3.jpg",
            "/uploads/photo_D1CFF481-70C6-46D6-9C92-FE0C128068E3.webp",
            "/uploads/01ARZ3NDEKTSV4RRFFQ69G5FAV.png",
            "/uploads/photo-01ARZ3NDEKTSV4RRFFQ69G5FAV.png",
            "/uploads/photo-0123456789abcdef0123456789.png",
            "/img/photo-12345678.jpg",
            "/img/report-20261201.png",
        ] {
            assert!(!versioned_url(url), "{url}");
        }
        for url in [
            "/img/hero.5d41402abc4b2a76b9719d911017c592.jpg",
            "/img/hero-e3b0c442.avif",
            "/assets/app_9f86d081884c7d65.css",
        ] {
            assert!(versioned_url(url), "{url}");
        }
    }
}
