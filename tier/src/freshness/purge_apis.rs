//! The purge-api replicas a node follows: one at a time, the next when it fails.
//!
//! Any replica serves the same log and counts the same leases and acks (purge-api's etcd
//! control plane), so a node moves on without losing its place: it asks the next one for the
//! log from the sequence after the last it applied.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Deserializer};

/// `freshness.purge_api`: one base URL, or a list of replicas' base URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeApiUrls(pub Vec<String>);

impl<'de> Deserialize<'de> for PurgeApiUrls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(Self(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(url) => vec![url],
            OneOrMany::Many(urls) => urls,
        }))
    }
}

/// The replicas, and which one is in use.
#[derive(Debug)]
pub struct PurgeApis {
    urls: Vec<String>,
    current: AtomicUsize,
}

/// One replica, as handed out: say [`PurgeApis::failed`] with it when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica(usize);

impl PurgeApis {
    /// Follows `urls` in order, starting with the first. At least one is needed.
    pub fn new(urls: &PurgeApiUrls) -> Self {
        assert!(!urls.0.is_empty(), "freshness.purge_api names no replica");
        Self {
            urls: urls.0.iter().map(|u| u.trim_end_matches('/').to_string()).collect(),
            current: AtomicUsize::new(0),
        }
    }

    /// The replica in use and the URL of `path` on it.
    pub fn url(&self, path: &str) -> (Replica, String) {
        let (replica, base) = self.base();
        (replica, format!("{base}{path}"))
    }

    /// The base URL of the replica in use.
    pub fn base(&self) -> (Replica, &str) {
        let at = self.current.load(Ordering::Acquire) % self.urls.len();
        (Replica(at), &self.urls[at])
    }

    /// The base URLs of every replica but `replica`.
    pub fn others(&self, replica: Replica) -> impl Iterator<Item = &str> {
        self.urls
            .iter()
            .enumerate()
            .filter(move |(at, _)| *at != replica.0)
            .map(|(_, url)| url.as_str())
    }

    /// `replica` failed: the next one is used from now on (once, however many callers saw
    /// the same failure).
    pub fn failed(&self, replica: Replica) {
        let next = (replica.0 + 1) % self.urls.len();
        if self
            .current
            .compare_exchange(replica.0, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && self.urls.len() > 1
        {
            tracing::warn!(failed = %self.urls[replica.0], next = %self.urls[next], "moving to the next purge-api replica");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_moves_every_caller_to_the_next_replica_once() {
        let urls: PurgeApiUrls = serde_yaml::from_str("[http://a:1/, http://b:2]").unwrap();
        let apis = PurgeApis::new(&urls);
        let (first, url) = apis.url("/v1/lease");
        assert_eq!(url, "http://a:1/v1/lease");
        apis.failed(first);
        apis.failed(first);
        assert_eq!(apis.base().1, "http://b:2", "two reports of one failure move once");
        apis.failed(apis.base().0);
        assert_eq!(apis.base().1, "http://a:1", "after the last, the first again");
        let one: PurgeApiUrls = serde_yaml::from_str("http://a:1").unwrap();
        assert_eq!(one.0, vec!["http://a:1".to_string()]);
    }
}
