//! What the edge remembers of the URLs it cached: their surrogate keys and ETag.
//!
//! A purge by tag names no URL; to tell the followers of `/img/a.jpg` that a purge of tag
//! `product-7` changed it, the edge must know that `/img/a.jpg` carried that tag. It learns it
//! when it stores a response (misses and revalidations, never on hits) and when a client
//! follows a URL it has cached. Bounded: the oldest remembered URL is forgotten first.

use std::collections::{HashMap, HashSet, VecDeque};

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
    /// Facts and the generation at which they were learned.
    by_url: HashMap<String, (u64, UrlFacts)>,
    by_tag: HashMap<String, HashSet<String>>,
    /// Learning order, for forgetting the oldest; an entry whose generation is not the URL's
    /// current one was replaced since and is skipped.
    order: VecDeque<(u64, String)>,
    generation: u64,
}

impl UrlIndex {
    /// An index of at most `capacity` URLs.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            by_url: HashMap::new(),
            by_tag: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
        }
    }

    /// Records what a stored response of `primary` said.
    pub fn learn(&mut self, primary: &str, facts: UrlFacts) {
        if self.by_url.get(primary).is_some_and(|(_, known)| *known == facts) {
            return;
        }
        self.forget(primary);
        for tag in &facts.tags {
            self.by_tag.entry(tag.clone()).or_default().insert(primary.to_string());
        }
        self.generation += 1;
        self.by_url.insert(primary.to_string(), (self.generation, facts));
        self.order.push_back((self.generation, primary.to_string()));
        while self.by_url.len() > self.capacity {
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

    /// Number of URLs remembered.
    pub fn len(&self) -> usize {
        self.by_url.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_url.is_empty()
    }
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
        let mut index = UrlIndex::new(2);
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
}
