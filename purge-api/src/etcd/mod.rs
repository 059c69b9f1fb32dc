//! The control plane on etcd: the purge log ([`EtcdLog`]), leases, acks and the member list
//! ([`EtcdMembership`]) and webhook replay protection ([`EtcdReplayGuard`]), shared by every
//! purge-api replica that names the same endpoints and prefix (docs/freshness.md, "Replicas").
//!
//! Keys, under `prefix` (default `/fresco`):
//! - `log/meta/head`, `log/meta/first`: the log's bounds, 20-digit decimals;
//! - `log/records/<seq, 20 digits>`: one purge, as [`crate::log`] encodes it;
//! - `members/<node>`: a [`crate::members::MemberRecord`] (JSON), on an etcd lease of the node's
//!   own, so a node not heard from for a minute leaves the list;
//! - `acks/<node>`: the highest sequence the node has acknowledged;
//! - `answered`: the highest purge reported complete;
//! - `replay/<signature>`: webhook signatures already taken, on a lease that outlives the window.
//!
//! Every decision that another replica could contradict is a transaction that compares the
//! revisions it was made on: an append compares the head's, a grant the member's and
//! `answered`'s, a completion every member's.

mod connection;
mod follow;
mod log;
mod members;
mod replay;
mod view;

use etcd_client::{GetOptions, GetResponse, LeaseGrantResponse, Txn, TxnResponse};

pub use self::connection::{Etcd, connect};
pub use self::log::EtcdLog;
pub use self::members::EtcdMembership;
pub use self::replay::EtcdReplayGuard;
use crate::metrics::METRICS;

impl Etcd {
    /// A transaction.
    pub(crate) async fn txn(&self, operation: &'static str, txn: Txn) -> Result<TxnResponse, etcd_client::Error> {
        self.retried(operation, |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }

    /// A linearizable read.
    pub(crate) async fn get(
        &self,
        operation: &'static str,
        key: String,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, etcd_client::Error> {
        self.retried(operation, |mut client| {
            let (key, options) = (key.clone(), options.clone());
            async move { client.get(key, options).await }
        })
        .await
    }

    /// A new etcd lease of `ttl` seconds.
    pub(crate) async fn lease_grant(&self, ttl: i64) -> Result<LeaseGrantResponse, etcd_client::Error> {
        self.retried("lease_grant", |mut client| async move {
            client.lease_grant(ttl, None).await
        })
        .await
    }
}

/// The keys of one control plane.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    pub(crate) fn log(&self) -> String {
        self.key("log/")
    }
    pub(crate) fn log_meta(&self) -> String {
        self.key("log/meta/")
    }
    pub(crate) fn head(&self) -> String {
        self.key("log/meta/head")
    }
    pub(crate) fn first(&self) -> String {
        self.key("log/meta/first")
    }
    pub(crate) fn records(&self) -> String {
        self.key("log/records/")
    }
    pub(crate) fn record(&self, seq: u64) -> String {
        format!("{}{}", self.records(), padded(seq))
    }
    pub(crate) fn members(&self) -> String {
        self.key("members/")
    }
    pub(crate) fn member(&self, node: &str) -> String {
        format!("{}{node}", self.members())
    }
    pub(crate) fn acks(&self) -> String {
        self.key("acks/")
    }
    pub(crate) fn ack(&self, node: &str) -> String {
        format!("{}{node}", self.acks())
    }
    pub(crate) fn answered(&self) -> String {
        self.key("answered")
    }
    pub(crate) fn replay(&self, signature: &str) -> String {
        self.key(&format!("replay/{signature}"))
    }
}

/// The end of the range of keys starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A sequence number as stored: 20 decimal digits, so that keys sort as numbers do.
pub(crate) fn padded(seq: u64) -> String {
    format!("{seq:020}")
}

/// A stored sequence number.
pub(crate) fn parse_seq(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Counts an etcd call's outcome and latency for `/metrics`.
pub(crate) async fn timed<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    let started = std::time::Instant::now();
    let result = call.await;
    METRICS
        .etcd_seconds
        .with_label_values(&[operation])
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        METRICS.etcd_errors.with_label_values(&[operation]).inc();
        tracing::debug!(operation, error = %e, "etcd call failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_their_sequence_numbers_and_ranges_end_after_their_prefix() {
        let keys = Keys::new("/fresco/");
        assert_eq!(keys.record(2), "/fresco/log/records/00000000000000000002");
        assert!(keys.record(9) < keys.record(10));
        assert_eq!(prefix_end("/fresco/members/"), b"/fresco/members0".to_vec());
        assert!(keys.member("zz").as_bytes() < prefix_end(&keys.members()).as_slice());
        assert_eq!(parse_seq(padded(u64::MAX).as_bytes()), Some(u64::MAX));
    }
}
