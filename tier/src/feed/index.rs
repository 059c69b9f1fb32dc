//! What the edge remembers of the URLs it cached: their surrogate keys and ETag.
//!
//! A purge by tag names no URL; to tell the followers of `/img/a.jpg` that a purge of tag
//! `product-7` changed it, the edge must know that `/img/a.jpg` carried that tag. It learns it
//! when it stores a response (misses and revalidations, never on hits) and when a client
//! follows a URL it has cached. Bounded in URLs and in bytes (an origin choosing long URLs and
//! many tags cannot make it grow without end): the oldest remembered URL is forgotten first,
//! and a URL keeps at most [`MAX_TAGS_PER_URL`] tags.

use std::collections::{HashMap, HashSet, VecDeque};

/// Most tags remembered of one URL; an origin that sends more has the rest ignored here (its
/// tag purges still apply to the cached object, whose stored header has them all).
pub const MAX_TAGS_PER_URL: usize = 64;

/// Bytes one remembered item costs besides its text (allocations, table slots).
const ITEM_OVERHEAD: usize = 48;

/// What is known of one cached URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlFacts {
    /// Its surrogate keys (`Surrogate-Key`, `Cache-Tag`).
    pub tags: Vec<String>,
    /// The ETag of the copy cached.
    pub etag: Option<String>,
}

/// Primary key → facts, and tag → primary keys.
pub struct UrlIndex {
    capacity: usize,
    max_bytes: usize,
    /// What the remembered URLs cost, as [`cost`] counts it.
    bytes: usize,
    /// Facts and the generation at which they were learned.
    by_url: HashMap<String, (u64, UrlFacts)>,
    by_tag: HashMap<String, HashSet<String>>,
    /// Learning order, for forgetting the oldest; an entry whose generation is not the URL's
    /// current one was replaced since and is skipped.
    order: VecDeque<(u64, String)>,
    generation: u64,
}

impl UrlIndex {
    /// An index of at most `capacity` URLs taking at most about `max_bytes`.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            by_url: HashMap::new(),
            by_tag: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
        }
    }

    /// Records what a stored response of `primary` said.
    pub fn learn(&mut self, primary: &str, mut facts: UrlFacts) {
        facts.tags.truncate(MAX_TAGS_PER_URL);
        if self.by_url.get(primary).is_some_and(|(_, known)| *known == facts) {
            return;
        }
        self.forget(primary);
        self.bytes += cost(primary, &facts);
        for tag in &facts.tags {
            self.by_tag.entry(tag.clone()).or_default().insert(primary.to_string());
        }
        self.generation += 1;
        self.by_url.insert(primary.to_string(), (self.generation, facts));
        self.order.push_back((self.generation, primary.to_string()));
        while self.by_url.len() > self.capacity || self.bytes > self.max_bytes {
            let Some((generation, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.by_url.get(&oldest).is_some_and(|(g, _)| *g == generation) {
                self.forget(&oldest);
            }
        }
        // Replaced entries pile up in `order`; drop them when they outnumber the live ones.
        if self.order.len() > 2 * self.capacity {
            let live = &self.by_url;
            self.order
                .retain(|(generation, key)| live.get(key).is_some_and(|(g, _)| g == generation));
        }
    }

    fn forget(&mut self, primary: &str) {
        let Some((_, old)) = self.by_url.remove(primary) else {
            return;
        };
        self.bytes -= cost(primary, &old);
        for tag in old.tags {
            if let Some(urls) = self.by_tag.get_mut(&tag) {
                urls.remove(primary);
                if urls.is_empty() {
                    self.by_tag.remove(&tag);
                }
            }
        }
    }

    /// Whether `primary` is known.
    pub fn knows(&self, primary: &str) -> bool {
        self.by_url.contains_key(primary)
    }

    /// The facts of `primary`.
    pub fn facts(&self, primary: &str) -> Option<&UrlFacts> {
        self.by_url.get(primary).map(|(_, facts)| facts)
    }

    /// The URLs known to carry `tag`, at most `limit` of them.
    pub fn tagged(&self, tag: &str, limit: usize) -> impl Iterator<Item = &str> {
        self.by_tag
            .get(tag)
            .into_iter()
            .flat_map(|urls| urls.iter().map(String::as_str))
            .take(limit)
    }

    /// About how many bytes the remembered URLs take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of URLs remembered.
    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }
}

/// What remembering `primary` with `facts` costs: its key in the URL table and the order, a
/// copy in each of its tags' sets, and the facts themselves.
fn cost(primary: &str, facts: &UrlFacts) -> usize {
    let tags: usize = facts
        .tags
        .iter()
        .map(|t| 2 * t.len() + primary.len() + 2 * ITEM_OVERHEAD)
        .sum();
    2 * primary.len() + tags + facts.etag.as_ref().map_or(0, String::len) + 3 * ITEM_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(tags: &[&str]) -> UrlFacts {
        UrlFacts {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            etag: Some("\"e\"".into()),
        }
    }

    #[test]
    fn tags_follow_the_latest_response_and_the_oldest_url_is_forgotten() {
        let mut index = UrlIndex::new(2, usize::MAX);
        index.learn("s\n/a", facts(&["red", "big"]));
        index.learn("s\n/b", facts(&["red"]));
        assert_eq!(index.tagged("red", 10).count(), 2);
        index.learn("s\n/a", facts(&["blue"]));
        assert_eq!(index.tagged("red", 10).collect::<Vec<_>>(), ["s\n/b"]);
        assert_eq!(index.tagged("big", 10).count(), 0, "a tag the URL lost is dropped");
        index.learn("s\n/c", facts(&[]));
        assert_eq!(index.len(), 2);
        assert!(!index.knows("s\n/b"), "the least recently learned URL went first");
        assert!(index.knows("s\n/a") && index.knows("s\n/c"));
    }

    #[test]
    fn long_urls_and_many_tags_stay_within_the_byte_bound() {
        let max_bytes = 8 << 20;
        let mut index = UrlIndex::new(100_000, max_bytes);
        let tags: Vec<String> = (0..1000).map(|i| format!("tag-{i:0>200}")).collect();
        for i in 0..2000 {
            let url = format!("s\n/{i}/{}", "x".repeat(8000));
            index.learn(
                &url,
                UrlFacts {
                    tags: tags.clone(),
                    etag: None,
                },
            );
            assert!(index.bytes() <= max_bytes, "{} bytes after {i} URLs", index.bytes());
        }
        assert!(index.len() >= 10, "it still remembers the newest URLs: {}", index.len());
        let newest = format!("s\n/1999/{}", "x".repeat(8000));
        assert_eq!(index.facts(&newest).unwrap().tags.len(), MAX_TAGS_PER_URL);
        assert!(index.tagged(&tags[0], 10).next().is_some());
        assert!(
            index.tagged(&tags[MAX_TAGS_PER_URL], 10).next().is_none(),
            "tags past the cap are not remembered"
        );
        for i in 0..2000 {
            index.forget(&format!("s\n/{i}/{}", "x".repeat(8000)));
        }
        assert_eq!((index.bytes(), index.len()), (0, 0), "forgetting returns every byte");
    }
}
