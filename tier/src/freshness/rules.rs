//! The purges a node has applied, as rules checked on every hit.
//!
//! A purge does not have to find the objects it covers: each stored object records the purge
//! sequence its fetch started at (`X-Fresco-Fill-Seq`), and a hit is served only if no purge
//! newer than that covers it — by URL (every variant: the rule is on the primary key), by tag
//! or by prefix. This also closes the stale-refill race: a fetch that started before purge N has
//! a fill sequence below N, so whatever it stores is never served after N is applied.

use std::collections::HashMap;

use super::prefix_trie::PrefixTrie;

/// The newest hard and soft purge covering something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Newest hard purge (delete).
    pub hard: u64,
    /// Newest soft purge (revalidate before serving).
    pub soft: u64,
}

impl Rule {
    /// Takes purge `seq` into account.
    pub fn raise(&mut self, seq: u64, soft: bool) {
        let slot = if soft { &mut self.soft } else { &mut self.hard };
        *slot = (*slot).max(seq);
    }

    /// The newest purge of either kind.
    pub fn newest(self) -> u64 {
        self.hard.max(self.soft)
    }

    /// The newer purge of each kind of the two.
    pub fn max(self, other: Rule) -> Rule {
        Rule {
            hard: self.hard.max(other.hard),
            soft: self.soft.max(other.soft),
        }
    }
}

/// What to do with a stored object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No newer purge covers it.
    Fresh,
    /// A newer hard purge covers it: a miss.
    Purged,
    /// A newer soft purge covers it: revalidate before serving.
    Stale,
}

/// What a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// A primary key (site, normalized path and query).
    Url,
    /// A surrogate key.
    Tag,
    /// A surrogate key on one site only, `site\ntag` (from a site-scoped webhook).
    SiteTag,
    /// A primary key prefix.
    Prefix,
}

impl RuleKind {
    /// The tag used when rules are persisted.
    pub fn code(self) -> u8 {
        match self {
            Self::Url => b'u',
            Self::Tag => b't',
            Self::SiteTag => b's',
            Self::Prefix => b'p',
        }
    }

    /// The kind of a persisted tag.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            b'u' => Some(Self::Url),
            b't' => Some(Self::Tag),
            b's' => Some(Self::SiteTag),
            b'p' => Some(Self::Prefix),
            _ => None,
        }
    }
}

/// Every purge rule a node holds.
#[derive(Default)]
pub struct PurgeRules {
    urls: HashMap<String, Rule>,
    tags: HashMap<String, Rule>,
    /// Site-scoped tag rules, by site, then tag: a hit looks them up without building a key.
    site_tags: HashMap<String, HashMap<String, Rule>>,
    prefixes: PrefixTrie,
}

impl PurgeRules {
    /// Whether no purge has been applied.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.tags.is_empty() && self.site_tags.is_empty() && self.prefixes.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.urls.len()
            + self.tags.len()
            + self.site_tags.values().map(HashMap::len).sum::<usize>()
            + self.prefixes.len()
    }

    /// Records purge `seq` of `key`; returns the rule as it now stands (to persist it).
    pub fn add(&mut self, kind: RuleKind, key: &str, seq: u64, soft: bool) -> Rule {
        let rule = match kind {
            RuleKind::Url => self.urls.entry(key.to_string()).or_default(),
            RuleKind::Tag => self.tags.entry(key.to_string()).or_default(),
            RuleKind::SiteTag => {
                let (site, tag) = key.split_once('\n').unwrap_or(("", key));
                self.site_tags
                    .entry(site.to_string())
                    .or_default()
                    .entry(tag.to_string())
                    .or_default()
            }
            RuleKind::Prefix => self.prefixes.entry(key),
        };
        rule.raise(seq, soft);
        *rule
    }

    /// The rule of `key` as it stands (default: none).
    pub fn get(&self, kind: RuleKind, key: &str) -> Rule {
        match kind {
            RuleKind::Url => self.urls.get(key).copied(),
            RuleKind::Tag => self.tags.get(key).copied(),
            RuleKind::SiteTag => {
                let (site, tag) = key.split_once('\n').unwrap_or(("", key));
                self.site_tags.get(site).and_then(|tags| tags.get(tag)).copied()
            }
            RuleKind::Prefix => self.prefixes.get(key),
        }
        .unwrap_or_default()
    }

    /// Takes in a rule (persisted, or of a batch being applied): each kind keeps its newer purge.
    pub fn merge(&mut self, kind: RuleKind, key: &str, rule: Rule) {
        if rule.hard > 0 {
            self.add(kind, key, rule.hard, false);
        }
        if rule.soft > 0 {
            self.add(kind, key, rule.soft, true);
        }
    }

    /// Every rule with its kind and key (as [`PurgeRules::add`] takes them).
    pub fn entries(&self) -> Vec<(RuleKind, String, Rule)> {
        let mut entries = Vec::with_capacity(self.len());
        entries.extend(self.urls.iter().map(|(k, r)| (RuleKind::Url, k.clone(), *r)));
        entries.extend(self.tags.iter().map(|(k, r)| (RuleKind::Tag, k.clone(), *r)));
        for (site, tags) in &self.site_tags {
            entries.extend(
                tags.iter()
                    .map(|(tag, r)| (RuleKind::SiteTag, format!("{site}\n{tag}"), *r)),
            );
        }
        entries.extend(
            self.prefixes
                .entries()
                .into_iter()
                .map(|(k, r)| (RuleKind::Prefix, k, r)),
        );
        entries
    }

    /// Where to compact so that about `keep` rules remain: the newest sequence of the
    /// `keep`-th newest rule. Every rule whose newest purge is older goes; none newer does.
    /// `None` when there are no more than `keep` rules.
    pub fn compaction_point(&self, keep: usize) -> Option<u64> {
        let total = self.len();
        if total <= keep {
            return None;
        }
        let mut newest: Vec<u64> = self.entries().iter().map(|(_, _, r)| r.newest()).collect();
        let cut = total - keep.max(1);
        let (_, point, _) = newest.select_nth_unstable(cut);
        Some(*point)
    }

    /// The rules whose newest purge is at or after `point`, and the kinds and keys of the
    /// others.
    pub fn compacted(&self, point: u64) -> (PurgeRules, Vec<(RuleKind, String)>) {
        let mut kept = PurgeRules::default();
        let mut dropped = Vec::new();
        for (kind, key, rule) in self.entries() {
            if rule.newest() >= point {
                kept.merge(kind, &key, rule);
            } else {
                dropped.push((kind, key));
            }
        }
        (kept, dropped)
    }

    /// The verdict for an object with primary key `primary`, surrogate keys `tags`, fetched
    /// from sequence `fill_seq` on.
    pub fn verdict<'a>(&self, primary: &str, tags: impl Iterator<Item = &'a str>, fill_seq: u64) -> Verdict {
        let mut rule = self.urls.get(primary).copied().unwrap_or_default();
        let site = primary.split_once('\n').map_or(primary, |(site, _)| site);
        let site_tags = self.site_tags.get(site);
        if !self.tags.is_empty() || site_tags.is_some() {
            for tag in tags {
                if let Some(r) = self.tags.get(tag) {
                    rule = rule.max(*r);
                }
                if let Some(r) = site_tags.and_then(|t| t.get(tag)) {
                    rule = rule.max(*r);
                }
            }
        }
        if !self.prefixes.is_empty() {
            rule = rule.max(self.prefixes.covering(primary));
        }
        if fill_seq < rule.hard {
            Verdict::Purged
        } else if fill_seq < rule.soft {
            Verdict::Stale
        } else {
            Verdict::Fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_covers_fills_started_before_it_only() {
        let mut rules = PurgeRules::default();
        rules.add(RuleKind::Url, "s\n/a.jpg", 5, false);
        assert_eq!(rules.verdict("s\n/a.jpg", [].into_iter(), 4), Verdict::Purged);
        assert_eq!(rules.verdict("s\n/a.jpg", [].into_iter(), 5), Verdict::Fresh);
        assert_eq!(rules.verdict("s\n/b.jpg", [].into_iter(), 0), Verdict::Fresh);
    }

    #[test]
    fn tags_prefixes_and_soft_purges() {
        let mut rules = PurgeRules::default();
        rules.add(RuleKind::Tag, "product-7", 3, false);
        rules.add(RuleKind::Prefix, "s\n/img/", 6, true);
        assert_eq!(
            rules.verdict("s\n/x.jpg", ["a", "product-7"].into_iter(), 2),
            Verdict::Purged
        );
        assert_eq!(rules.verdict("s\n/img/a.jpg", [].into_iter(), 5), Verdict::Stale);
        assert_eq!(rules.verdict("s\n/img/a.jpg", [].into_iter(), 6), Verdict::Fresh);
        // A later soft purge does not weaken an earlier hard one.
        rules.add(RuleKind::Tag, "product-7", 9, true);
        assert_eq!(
            rules.verdict("s\n/x.jpg", ["product-7"].into_iter(), 2),
            Verdict::Purged
        );
        assert_eq!(rules.verdict("s\n/x.jpg", ["product-7"].into_iter(), 4), Verdict::Stale);
    }

    #[test]
    fn a_site_scoped_tag_purge_covers_that_site_only() {
        let mut rules = PurgeRules::default();
        rules.add(RuleKind::SiteTag, "shop\nsale", 4, false);
        assert_eq!(rules.verdict("shop\n/a.jpg", ["sale"].into_iter(), 3), Verdict::Purged);
        assert_eq!(rules.verdict("blog\n/a.jpg", ["sale"].into_iter(), 3), Verdict::Fresh);
        assert_eq!(rules.get(RuleKind::SiteTag, "shop\nsale").hard, 4);
        assert_eq!(rules.len(), 1);
    }

    #[test]
    fn compaction_keeps_the_newest_rules_of_every_kind() {
        let mut rules = PurgeRules::default();
        rules.add(RuleKind::Url, "s\n/a.jpg", 1, false);
        rules.add(RuleKind::Tag, "old", 2, false);
        rules.add(RuleKind::Prefix, "s\n/old/", 3, true);
        rules.add(RuleKind::Url, "s\n/b.jpg", 4, false);
        rules.add(RuleKind::SiteTag, "s\nsale", 5, false);
        rules.add(RuleKind::Prefix, "s\n/new/", 6, false);
        // An old hard purge renewed by a newer soft one counts as new.
        rules.add(RuleKind::Url, "s\n/a.jpg", 7, true);
        assert_eq!(rules.compaction_point(10), None);
        let point = rules.compaction_point(4).unwrap();
        assert_eq!(point, 4);
        let (kept, mut dropped) = rules.compacted(point);
        dropped.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            dropped,
            [
                (RuleKind::Tag, "old".to_string()),
                (RuleKind::Prefix, "s\n/old/".to_string())
            ]
        );
        assert_eq!(kept.len(), 4);
        assert_eq!(kept.get(RuleKind::Url, "s\n/a.jpg"), Rule { hard: 1, soft: 7 });
        assert_eq!(kept.get(RuleKind::SiteTag, "s\nsale").hard, 5);
        assert_eq!(kept.verdict("s\n/new/x.jpg", [].into_iter(), 5), Verdict::Purged);
        assert_eq!(
            kept.verdict("s\n/old/x.jpg", [].into_iter(), 0),
            Verdict::Fresh,
            "dropped"
        );
    }
}
