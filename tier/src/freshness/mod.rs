//! The freshness protocol on the node side (DESIGN.md, "Freshness").
//!
//! - [`Freshness`] is the state the proxy consults on every hit: the purges applied (as
//!   [`rules::PurgeRules`]), the last applied sequence, and the lease.
//! - [`subscriber`] keeps it current: it streams the purge log from purge-api, applies and
//!   persists each purge before acknowledging it, and renews the lease.
//!
//! The rules and the applied sequence are persisted ([`journal`], one `fdatasync` a batch)
//! before an ack, so a node that crashes and restarts knows every purge it acknowledged, and
//! catches up on the rest before it holds a lease again.

pub mod journal;
mod legacy_redb;
pub mod log_stream;
pub mod prefix_trie;
pub mod purge_apis;
pub mod rules;
pub mod subscriber;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fresco_protocol::{PurgeRecord, Target};
use fresco_store::FoyerStorage;
use journal::{JournalState, RuleJournal};
use parking_lot::{Mutex, RwLock};
use pingora_cache::storage::{PurgeTarget, PurgeType, Storage};
use pingora_cache::trace::Span;

use crate::cache_key::{cache_key, prefix_key, primary_key};
use crate::config::SiteConfig;
use rules::{PurgeRules, Rule, RuleKind, Verdict};

/// Rules a node holds by default before it compacts the oldest (about 150 bytes each).
pub const DEFAULT_MAX_RULES: usize = 200_000;

/// Told of every purge a node applies; the change feed is one.
///
/// Contract: [`applied`](Self::applied) is called after the purges are visible to hits and
/// persisted, in sequence order, each sequence once; [`reset`](Self::reset) after a reset took
/// effect. Both are called on the purge thread and must not block it for long.
pub trait PurgeObserver: Send + Sync {
    /// Purges with sequences above the previous call's, in order.
    fn applied(&self, records: &[&PurgeRecord]);
    /// The node dropped everything and continues from sequence `next`.
    fn reset(&self, next: u64);
}

/// A failure of the node's freshness state.
#[derive(Debug, thiserror::Error)]
#[error("freshness state: {0}")]
pub struct FreshnessError(String);

fn state_error<E: std::fmt::Display>(e: E) -> FreshnessError {
    FreshnessError(e.to_string())
}

struct SiteKeys {
    name: String,
    hosts: Vec<String>,
    ignore_query: Vec<String>,
}

/// A node's view of the purge log and its lease.
pub struct Freshness {
    applied: AtomicU64,
    /// Objects fetched from before this sequence are unusable: the node reset there.
    floor: AtomicU64,
    /// Rules older than this were compacted away: an object fetched from before it is
    /// revalidated before it is served (see [`Freshness::compact`]).
    compacted_below: AtomicU64,
    /// Rules held at most before the oldest are compacted.
    max_rules: usize,
    /// Nanoseconds after `base` until which the lease holds; 0 before the first grant.
    lease_until: AtomicU64,
    base: Instant,
    rules: RwLock<PurgeRules>,
    /// Only the purge thread writes it; the lock is never contended.
    journal: Mutex<RuleJournal>,
    sites: Vec<SiteKeys>,
    store: &'static FoyerStorage,
    observer: OnceLock<Arc<dyn PurgeObserver>>,
}

impl Freshness {
    /// Opens the persisted state in `dir` (rules and applied sequence).
    pub fn open(dir: &Path, sites: &[SiteConfig], store: &'static FoyerStorage) -> Result<Self, FreshnessError> {
        std::fs::create_dir_all(dir).map_err(state_error)?;
        let (journal, state) = match legacy_redb::migrate(dir).map_err(state_error)? {
            Some(journal) => journal,
            None => RuleJournal::open(dir).map_err(state_error)?,
        };
        let mut rules = PurgeRules::default();
        for (kind, key, rule) in &state.rules {
            rules.merge(*kind, key, *rule);
        }
        let JournalState {
            applied,
            floor,
            compacted_below,
            ..
        } = state;
        Ok(Self {
            applied: AtomicU64::new(applied),
            floor: AtomicU64::new(floor),
            compacted_below: AtomicU64::new(compacted_below),
            max_rules: DEFAULT_MAX_RULES,
            lease_until: AtomicU64::new(0),
            base: Instant::now(),
            rules: RwLock::new(rules),
            journal: Mutex::new(journal),
            sites: sites
                .iter()
                .map(|s| SiteKeys {
                    name: s.name.clone(),
                    hosts: s.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    ignore_query: s.ignore_query.clone(),
                })
                .collect(),
            store,
            observer: OnceLock::new(),
        })
    }

    /// Holds at most `max_rules` rules: beyond, the oldest are compacted ([`Freshness::compact`]).
    pub fn with_max_rules(mut self, max_rules: usize) -> Self {
        self.max_rules = max_rules.max(2);
        self
    }

    /// Tells `observer` of every purge applied from now on. Only the first observer counts.
    pub fn observe(&self, observer: Arc<dyn PurgeObserver>) {
        let _ = self.observer.set(observer);
    }

    /// The primary key a purged (or followed) URL names: its site's, normalized.
    pub fn url_key(&self, url: &Target) -> String {
        let site = self.site_of(&url.host);
        primary_key(&site.name, &url.path, &site.ignore_query)
    }

    /// The key text a purged path prefix matches the primary keys of.
    pub fn prefix_key(&self, prefix: &Target) -> String {
        prefix_key(&self.site_of(&prefix.host).name, &prefix.path)
    }

    /// The last purge applied, with every one before it.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Whether the node holds a lease now (measured from when the renewal was sent).
    pub fn is_leased(&self) -> bool {
        let until = self.lease_until.load(Ordering::Acquire);
        until != 0 && (self.base.elapsed().as_nanos() as u64) < until
    }

    /// Extends the lease to `sent + lease`.
    pub fn grant(&self, sent: Instant, lease: Duration) {
        let until = match sent.checked_duration_since(self.base) {
            Some(after_base) => after_base + lease,
            None => lease.saturating_sub(self.base - sent),
        };
        if !until.is_zero() {
            self.lease_until.fetch_max(until.as_nanos() as u64, Ordering::AcqRel);
        }
    }

    /// The verdict for a stored object (see [`rules`]).
    pub fn verdict<'a>(&self, primary: &str, tags: impl Iterator<Item = &'a str>, fill_seq: u64) -> Verdict {
        if fill_seq < self.floor.load(Ordering::Acquire) {
            return Verdict::Purged;
        }
        let rules = self.rules.read();
        let verdict = match rules.is_empty() {
            true => Verdict::Fresh,
            false => rules.verdict(primary, tags, fill_seq),
        };
        if verdict == Verdict::Fresh && fill_seq < self.compacted_below.load(Ordering::Acquire) {
            // A compacted rule may have covered it: only its upstream can say.
            return Verdict::Stale;
        }
        verdict
    }

    /// Below which sequence rules were compacted away (0: never).
    pub fn compacted_below(&self) -> u64 {
        self.compacted_below.load(Ordering::Acquire)
    }

    /// Drops the oldest rules once more than `max_rules` are held, keeping the newest half.
    ///
    /// A rule is needed only while an object fetched before its purge may be stored. The node
    /// cannot list what its store holds, so instead every object fetched before the
    /// compaction point is from then on revalidated before it is served, like a soft purge of
    /// everything that old, and never served stale when its upstream fails: a rule dropped
    /// can no longer serve old bytes. A revalidation stamps the object with the current
    /// sequence, so each old object costs one conditional request, and the objects read
    /// often are the ones fetched recently. The point is persisted before the rules go.
    fn compact(&self) -> Result<(), FreshnessError> {
        // Only `apply`, on the purge thread, changes the rules: the copy made under the read
        // lock is still current when it is put in place, and hits are not held up meanwhile.
        let started = Instant::now();
        let (point, kept, dropped) = {
            let rules = self.rules.read();
            let Some(point) = rules.compaction_point(self.max_rules / 2) else {
                return Ok(());
            };
            let (kept, dropped) = rules.compacted(point);
            (point, kept, dropped)
        };
        self.journal
            .lock()
            .rewrite(&JournalState {
                compacted_below: point.max(self.compacted_below()),
                ..self.journal_state(kept.entries())
            })
            .map_err(state_error)?;
        // Raised before the rules go: in between, both keep old objects from being served.
        self.compacted_below.fetch_max(point, Ordering::AcqRel);
        let kept_count = kept.len();
        *self.rules.write() = kept;
        tracing::info!(
            below = point,
            dropped = dropped.len(),
            kept = kept_count,
            took_ms = started.elapsed().as_millis() as u64,
            "purge rules compacted"
        );
        crate::metrics::METRICS
            .purge_rules_compacted
            .inc_by(dropped.len() as u64);
        Ok(())
    }

    /// `rules` with the sequences as they stand: what a rewritten journal holds.
    fn journal_state(&self, rules: Vec<(RuleKind, String, Rule)>) -> JournalState {
        JournalState {
            applied: self.applied(),
            floor: self.floor.load(Ordering::Acquire),
            compacted_below: self.compacted_below(),
            rules,
        }
    }

    /// Number of rules held.
    pub fn rule_count(&self) -> usize {
        self.rules.read().len()
    }

    /// The site of a purge target's host (empty or unknown: the default site, as for requests).
    fn site_of(&self, host: &str) -> &SiteKeys {
        self.sites
            .iter()
            .find(|s| !host.is_empty() && (s.name == host || s.hosts.iter().any(|h| h == host)))
            .unwrap_or(&self.sites[0])
    }

    /// The sites a record's tags are limited to (none: every site).
    pub fn tag_sites<'a>(&'a self, record: &'a PurgeRecord) -> impl Iterator<Item = &'a str> + 'a {
        let mut sites: Vec<&str> = record
            .tag_hosts
            .iter()
            .map(|host| self.site_of(host).name.as_str())
            .collect();
        sites.sort_unstable();
        sites.dedup();
        sites.into_iter()
    }

    /// Applies purges in order, persists them, then deletes what URL purges name. Records at
    /// or below `applied` are skipped (delivery is at least once).
    pub async fn apply(&self, records: &[PurgeRecord]) -> Result<(), FreshnessError> {
        let applied = self.applied();
        let fresh: Vec<&PurgeRecord> = records.iter().filter(|r| r.seq > applied).collect();
        let Some(last) = fresh.last().map(|r| r.seq) else {
            return Ok(());
        };
        let mut deletes = Vec::new();
        let mut changes: Vec<(RuleKind, String, Rule)> = Vec::new();
        for record in &fresh {
            let mut change = |kind, key| {
                let mut rule = Rule::default();
                rule.raise(record.seq, record.soft);
                changes.push((kind, key, rule));
            };
            for url in &record.urls {
                let key = self.url_key(url);
                if !record.soft {
                    deletes.push(key.clone());
                }
                change(RuleKind::Url, key);
            }
            for tag in &record.tags {
                if record.tag_hosts.is_empty() {
                    change(RuleKind::Tag, tag.clone());
                }
                for site in self.tag_sites(record) {
                    change(RuleKind::SiteTag, format!("{site}\n{tag}"));
                }
            }
            for prefix in &record.prefixes {
                change(RuleKind::Prefix, self.prefix_key(prefix));
            }
        }
        let journaled: Vec<journal::JournaledRule> = changes
            .iter()
            .map(|(kind, key, rule)| (*kind, key.as_str(), *rule))
            .collect();
        self.journal.lock().append(last, &journaled).map_err(state_error)?;
        {
            // Visible before `applied` moves on, so a fill that counts as fresh against the new
            // sequence is always judged by these rules.
            let mut rules = self.rules.write();
            for (kind, key, rule) in &changes {
                rules.merge(*kind, key, *rule);
            }
        }
        self.applied.store(last, Ordering::Release);
        if self.rule_count() > self.max_rules {
            self.compact()?;
        } else if self.journal.lock().needs_rewrite() {
            let state = self.journal_state(self.rules.read().entries());
            self.journal.lock().rewrite(&state).map_err(state_error)?;
        }
        if let Some(observer) = self.observer.get() {
            observer.applied(&fresh);
        }
        // The rules already keep these from being served; deleting frees the space now. A key
        // the store does not hold is skipped: most nodes hold few of the URLs purged, and a
        // purge of an absent key still costs the store a tombstone write and a fence check.
        let span = Span::inactive().handle();
        for key in deletes {
            let key = cache_key(key);
            if !self.store.may_hold(&key) {
                continue;
            }
            let compact = key.to_compact();
            let _ = self
                .store
                .purge(PurgeTarget::Active(&compact), PurgeType::Invalidation, &span)
                .await;
        }
        Ok(())
    }

    /// The log could not replay from where this node was: drop every cached object (memory
    /// and disk) and every rule, and continue from `next`.
    pub async fn reset(&self, next: u64) -> Result<(), FreshnessError> {
        self.store.clear().await;
        // A fill that started before the reset may still complete after it; nothing fetched
        // from before it is usable.
        let before_next = next.saturating_sub(1);
        let state = JournalState {
            applied: before_next,
            floor: before_next,
            ..self.journal_state(Vec::new())
        };
        self.journal.lock().rewrite(&state).map_err(state_error)?;
        self.floor.store(before_next, Ordering::Release);
        *self.rules.write() = PurgeRules::default();
        self.applied.store(before_next, Ordering::Release);
        if let Some(observer) = self.observer.get() {
            observer.reset(next);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fresco_store::StoreConfig;

    use super::*;

    fn sites() -> Vec<SiteConfig> {
        serde_yaml::from_str("[{ name: shop, hosts: [shop.example], origin: 'http://127.0.0.1:1' }]").unwrap()
    }

    #[tokio::test]
    async fn a_tag_purge_scoped_to_a_host_covers_only_that_site_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = FoyerStorage::open(StoreConfig::new(8 << 20)).await.unwrap().leak();
        let sites: Vec<SiteConfig> = serde_yaml::from_str(
            "[{ name: blog, origin: 'http://127.0.0.1:1' }, \
              { name: shop, hosts: [shop.example], origin: 'http://127.0.0.1:1' }]",
        )
        .unwrap();
        let scoped = PurgeRecord {
            urls: vec![],
            tag_hosts: vec!["shop.example".into()],
            ..record(1, "/", "sale")
        };
        {
            let fresh = Freshness::open(dir.path(), &sites, store).unwrap();
            fresh.apply(&[scoped]).await.unwrap();
        }
        let fresh = Freshness::open(dir.path(), &sites, store).unwrap();
        assert_eq!(fresh.verdict("shop\n/a.jpg", ["sale"].into_iter(), 0), Verdict::Purged);
        assert_eq!(
            fresh.verdict("blog\n/a.jpg", ["sale"].into_iter(), 0),
            Verdict::Fresh,
            "the same tag on another site is not the scoped secret's to purge"
        );
    }

    fn record(seq: u64, url: &str, tag: &str) -> PurgeRecord {
        PurgeRecord {
            seq,
            at_ms: 0,
            urls: vec![Target {
                host: String::new(),
                path: url.into(),
            }],
            tags: vec![tag.into()],
            prefixes: vec![],
            tag_hosts: vec![],
            soft: false,
        }
    }

    #[tokio::test]
    async fn applied_purges_survive_a_restart_and_a_reset_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = FoyerStorage::open(StoreConfig::new(8 << 20)).await.unwrap().leak();
        {
            let fresh = Freshness::open(dir.path(), &sites(), store).unwrap();
            fresh
                .apply(&[record(1, "/a.jpg?b=2&a=1", "t1"), record(2, "/b.jpg", "t2")])
                .await
                .unwrap();
            fresh.apply(&[record(2, "/b.jpg", "t2")]).await.unwrap(); // delivered twice: harmless
            assert_eq!(fresh.applied(), 2);
        }
        let fresh = Freshness::open(dir.path(), &sites(), store).unwrap();
        assert_eq!(fresh.applied(), 2, "the applied sequence is persisted");
        // The URL rule is on the normalized primary key of the site.
        assert_eq!(
            fresh.verdict("shop\n/a.jpg?a=1&b=2", std::iter::empty(), 0),
            Verdict::Purged
        );
        assert_eq!(fresh.verdict("shop\n/c.jpg", ["t2"].into_iter(), 1), Verdict::Purged);
        assert_eq!(fresh.verdict("shop\n/c.jpg", ["t2"].into_iter(), 2), Verdict::Fresh);
        fresh.reset(100).await.unwrap();
        assert_eq!(fresh.applied(), 99);
        assert_eq!(fresh.rule_count(), 0);
        drop(fresh);
        let fresh = Freshness::open(dir.path(), &sites(), store).unwrap();
        assert_eq!((fresh.applied(), fresh.rule_count()), (99, 0), "the reset is persisted");
        assert_eq!(
            fresh.verdict("shop\n/z.jpg", std::iter::empty(), 98),
            Verdict::Purged,
            "older than the reset"
        );
        assert_eq!(fresh.verdict("shop\n/z.jpg", std::iter::empty(), 99), Verdict::Fresh);
    }

    #[test]
    fn a_lease_runs_from_when_the_renewal_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime
            .block_on(FoyerStorage::open(StoreConfig::new(8 << 20)))
            .unwrap()
            .leak();
        let fresh = Freshness::open(dir.path(), &sites(), store).unwrap();
        assert!(!fresh.is_leased(), "no lease before the first grant");
        fresh.grant(
            Instant::now() - Duration::from_millis(1500),
            Duration::from_millis(1000),
        );
        assert!(
            !fresh.is_leased(),
            "a grant for a renewal sent 1.5 s ago of a 1 s lease has expired"
        );
        fresh.grant(Instant::now(), Duration::from_secs(5));
        assert!(fresh.is_leased());
    }

    #[tokio::test]
    async fn beyond_max_rules_the_oldest_are_compacted_and_what_predates_them_is_revalidated() {
        let dir = tempfile::tempdir().unwrap();
        let store = FoyerStorage::open(StoreConfig::new(8 << 20)).await.unwrap().leak();
        let no_tag = |seq: u64, url: &str| PurgeRecord {
            tags: vec![],
            ..record(seq, url, "")
        };
        {
            let fresh = Freshness::open(dir.path(), &sites(), store).unwrap().with_max_rules(10);
            let purges: Vec<PurgeRecord> = (1..=10).map(|seq| no_tag(seq, &format!("/p/{seq}.jpg"))).collect();
            fresh.apply(&purges).await.unwrap();
            assert_eq!(
                (fresh.rule_count(), fresh.compacted_below()),
                (10, 0),
                "at the cap: nothing yet"
            );
            assert_eq!(fresh.verdict("shop\n/other.jpg", [].into_iter(), 0), Verdict::Fresh);

            fresh.apply(&[no_tag(11, "/p/11.jpg")]).await.unwrap();
            assert_eq!(fresh.rule_count(), 5, "the newest half is kept");
            assert_eq!(fresh.compacted_below(), 7);
            // Fetched before the point: revalidated, whether a dropped rule covered it or not.
            assert_eq!(fresh.verdict("shop\n/p/3.jpg", [].into_iter(), 2), Verdict::Stale);
            assert_eq!(fresh.verdict("shop\n/other.jpg", [].into_iter(), 6), Verdict::Stale);
            // A kept rule still says what it said; fills from the point on are judged by rules.
            assert_eq!(fresh.verdict("shop\n/p/9.jpg", [].into_iter(), 2), Verdict::Purged);
            assert_eq!(fresh.verdict("shop\n/p/9.jpg", [].into_iter(), 8), Verdict::Purged);
            assert_eq!(fresh.verdict("shop\n/other.jpg", [].into_iter(), 7), Verdict::Fresh);
        }
        let fresh = Freshness::open(dir.path(), &sites(), store).unwrap();
        assert_eq!(
            (fresh.rule_count(), fresh.compacted_below(), fresh.applied()),
            (5, 7, 11),
            "the compaction is persisted"
        );
        assert_eq!(fresh.verdict("shop\n/other.jpg", [].into_iter(), 6), Verdict::Stale);
    }
}
