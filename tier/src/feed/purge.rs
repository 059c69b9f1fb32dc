//! A purge as the feed matches it against subscriptions: prepared once when the edge applies
//! it, then read by every connection.

use std::collections::{HashMap, HashSet};

use fresco_protocol::PurgeRecord;

use super::index::UrlIndex;
use crate::freshness::Freshness;

/// Most URLs one purged tag reports (from what the edge remembers).
pub const MAX_URLS_PER_TAG: usize = 1000;

/// One applied purge, with the keys it covers worked out.
pub struct PreparedPurge {
    /// Its sequence number.
    pub seq: u64,
    /// When purge-api accepted it, Unix milliseconds.
    pub at_ms: u64,
    /// A soft purge.
    pub soft: bool,
    /// Primary keys of the purged URLs.
    pub urls: HashSet<String>,
    /// Key prefixes of the purged prefixes.
    pub prefixes: Vec<String>,
    /// Purged tags.
    pub tags: Vec<String>,
    /// Remembered URLs that carry a purged tag, with those tags.
    pub tagged: HashMap<String, Vec<String>>,
    /// The ETags of the copies the purge replaced, by primary key, where remembered.
    pub etags: HashMap<String, String>,
}

impl PreparedPurge {
    /// Works out what `record` covers, with what the edge remembers of its URLs.
    pub fn new(record: &PurgeRecord, fresh: &Freshness, index: &UrlIndex) -> Self {
        let urls: HashSet<String> = record.urls.iter().map(|u| fresh.url_key(u)).collect();
        let mut tagged: HashMap<String, Vec<String>> = HashMap::new();
        let sites: Vec<String> = fresh.tag_sites(record).map(|site| format!("{site}\n")).collect();
        let on_scoped_site = |url: &str| sites.is_empty() || sites.iter().any(|s| url.starts_with(s.as_str()));
        for tag in &record.tags {
            for url in index.tagged(tag, MAX_URLS_PER_TAG).filter(|url| on_scoped_site(url)) {
                tagged.entry(url.to_string()).or_default().push(tag.clone());
            }
        }
        let etags = urls
            .iter()
            .chain(tagged.keys())
            .filter_map(|key| Some((key.clone(), index.facts(key)?.etag.clone()?)))
            .collect();
        Self {
            seq: record.seq,
            at_ms: record.at_ms,
            soft: record.soft,
            urls,
            prefixes: record.prefixes.iter().map(|p| fresh.prefix_key(p)).collect(),
            tags: record.tags.clone(),
            tagged,
            etags,
        }
    }

    /// The purged tags `primary` is known to carry (empty if none).
    pub fn tags_of(&self, primary: &str) -> &[String] {
        self.tagged.get(primary).map_or(&[], Vec::as_slice)
    }

    /// Whether the purge covers the URL with key `primary`.
    pub fn covers(&self, primary: &str) -> bool {
        self.urls.contains(primary)
            || self.tagged.contains_key(primary)
            || self.prefixes.iter().any(|p| primary.starts_with(p.as_str()))
    }

    /// The approximate size, for bounding the history.
    pub fn weight(&self) -> usize {
        1 + self.urls.len() + self.prefixes.len() + self.tags.len() + self.tagged.len()
    }
}
