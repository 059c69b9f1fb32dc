//! `POST /v1/purge` bodies: parsing and validation. Nothing reaches the log unless all of a
//! request is valid.

use fresco_protocol::{PurgeRecord, Target};

use crate::auth::PurgeScope;
use serde::Deserialize;

/// Largest accepted body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most URLs + tags + prefixes in one purge.
pub const MAX_ENTRIES: usize = 1000;

/// The body of `POST /v1/purge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    soft: bool,
    /// Answer only once every node has applied the purge (default) or right away with 202.
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

impl PurgeRequest {
    /// Parses a body; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| format!("invalid purge body: {e}"))
    }

    /// Whether a purge allowed `scope` may purge all of this; the error names what it may not.
    pub fn check_scope(&self, scope: &PurgeScope) -> Result<(), String> {
        let PurgeScope::Hosts(hosts) = scope else {
            return Ok(());
        };
        for text in self.urls.iter().chain(&self.prefixes) {
            // Unparseable targets are left to `to_record`, which says what is wrong with them.
            let Ok(target) = Target::parse(text, "url") else {
                continue;
            };
            if !hosts.contains(&target.host) {
                return Err(format!(
                    "this webhook secret purges only absolute URLs on {}; `{text}` is not one",
                    hosts.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// What the log stores, with tags limited to `scope`; fails on the first invalid entry.
    pub fn to_record(&self, at_ms: u64, scope: &PurgeScope) -> Result<PurgeRecord, String> {
        let count = self.urls.len() + self.tags.len() + self.prefixes.len();
        if count == 0 {
            return Err("empty purge: give at least one of urls, tags, prefixes".into());
        }
        if count > MAX_ENTRIES {
            return Err(format!("{count} entries in one purge; at most {MAX_ENTRIES}"));
        }
        for tag in &self.tags {
            if tag.is_empty() || tag.len() > 256 || tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("tag `{tag}` must be 1 to 256 characters without spaces"));
            }
        }
        Ok(PurgeRecord {
            seq: 0,
            at_ms,
            urls: self
                .urls
                .iter()
                .map(|u| Target::parse(u, "url"))
                .collect::<Result<_, _>>()?,
            tags: self.tags.clone(),
            prefixes: self
                .prefixes
                .iter()
                .map(|p| Target::parse(p, "prefix"))
                .collect::<Result<_, _>>()?,
            tag_hosts: match scope {
                PurgeScope::Hosts(hosts) if !self.tags.is_empty() => hosts.clone(),
                _ => Vec::new(),
            },
            soft: self.soft,
        })
    }

    /// The kinds this purge has, for metrics.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> {
        [
            (!self.urls.is_empty()).then_some("url"),
            (!self.tags.is_empty()).then_some("tag"),
            (!self.prefixes.is_empty()).then_some("prefix"),
        ]
        .into_iter()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> Result<PurgeRecord, String> {
        PurgeRequest::parse(body.as_bytes())?.to_record(0, &PurgeScope::Any)
    }

    #[test]
    fn a_scoped_purge_reaches_only_its_hosts() {
        let shop = PurgeScope::Hosts(vec!["shop.example".into()]);
        let allowed = PurgeRequest::parse(
            br#"{"urls":["https://shop.example/a.jpg"],"prefixes":["http://SHOP.example/img/"],"tags":["t"]}"#,
        )
        .unwrap();
        allowed.check_scope(&shop).unwrap();
        assert_eq!(allowed.to_record(0, &shop).unwrap().tag_hosts, vec!["shop.example"]);
        assert!(allowed.to_record(0, &PurgeScope::Any).unwrap().tag_hosts.is_empty());
        for body in [
            r#"{"urls":["/a.jpg"]}"#,
            r#"{"urls":["https://other.example/a.jpg"]}"#,
            r#"{"prefixes":["/"]}"#,
        ] {
            let err = PurgeRequest::parse(body.as_bytes())
                .unwrap()
                .check_scope(&shop)
                .unwrap_err();
            assert!(err.contains("only absolute URLs on shop.example"), "{body}: {err}");
        }
    }

    #[test]
    fn paths_and_absolute_urls_become_targets() {
        let r = record(r#"{"urls":["/img/a.jpg","https://Shop.example:443/b.png?w=1"],"prefixes":["/img/"]}"#).unwrap();
        assert_eq!(
            r.urls[0],
            Target {
                host: "".into(),
                path: "/img/a.jpg".into()
            }
        );
        assert_eq!(
            r.urls[1],
            Target {
                host: "shop.example".into(),
                path: "/b.png?w=1".into()
            }
        );
        assert_eq!(r.prefixes[0].path, "/img/");
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        for (body, needle) in [
            ("{", "invalid purge body"),
            (r#"{"urls":["/a"],"colour":1}"#, "unknown field"),
            ("{}", "empty purge"),
            (r#"{"urls":["a.jpg"]}"#, "neither a path"),
            (r#"{"urls":["ftp://x/a"]}"#, "neither a path"),
            (r#"{"urls":["//x/a"]}"#, "ambiguous"),
            (r#"{"tags":["two words"]}"#, "without spaces"),
        ] {
            let err = record(body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
        let many: Vec<String> = (0..1001).map(|i| format!("\"/{i}\"")).collect();
        let err = record(&format!("{{\"urls\":[{}]}}", many.join(","))).unwrap_err();
        assert!(err.contains("at most 1000"), "{err}");
    }
}
