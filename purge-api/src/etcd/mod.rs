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

mod follow;
mod log;
mod members;
mod replay;
mod view;

use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, GetResponse, LeaseGrantResponse, TlsOptions, Txn, TxnResponse,
};

pub use self::log::EtcdLog;
pub use self::members::EtcdMembership;
pub use self::replay::EtcdReplayGuard;
use crate::config::EtcdConfig;
use crate::metrics::METRICS;

/// Connects to the etcd cluster of `config` (the client balances over its endpoints and moves
/// on from one that fails).
pub async fn connect(config: &EtcdConfig) -> Result<Etcd, String> {
    let budget = Duration::from_millis(config.timeout_ms);
    // A call may go to a member that has just died or been cut off, and hang until it
    // notices (its election timeout): a quarter of the budget leaves time to try others.
    let per_call = budget / 4;
    let mut options = ConnectOptions::new()
        .with_connect_timeout(per_call)
        .with_timeout(per_call)
        // etcd refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        // A member cut off from the leader answers nothing rather than old data.
        .with_require_leader(true);
    if let Some(user) = &config.user {
        let password = std::fs::read_to_string(&user.password_file)
            .map_err(|e| format!("control_plane.etcd.user.password_file: {e}"))?;
        options = options.with_user(&user.name, password.trim_end());
    }
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("control_plane.etcd.ca_file: {e}"))?;
        options = options.with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(pem)));
    }
    let client = Client::connect(&config.endpoints, Some(options))
        .await
        .map_err(|e| format!("connecting to etcd {:?}: {e}", config.endpoints))?;
    Ok(Etcd { client, budget })
}

/// A connection to etcd whose calls are tried again, within a budget, while etcd cannot answer
/// (a member down, a leader being elected). Beyond the budget the caller gets the error.
///
/// Tried again means possibly done twice: every write fresco makes is either a transaction
/// whose comparisons fail the second time (and say what happened) or idempotent.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    budget: Duration,
}

/// Pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

fn worth_retrying(e: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match e {
        Error::GRpcStatus(status) => !matches!(
            status.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::NotFound
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::FailedPrecondition
                | tonic::Code::OutOfRange
        ),
        Error::TransportError(_) | Error::IoError(_) => true,
        _ => false,
    }
}

impl Etcd {
    /// The client, for watches (which retry on their own).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    async fn retried<T, F>(&self, operation: &'static str, call: impl Fn(Client) -> F) -> Result<T, etcd_client::Error>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.budget;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = match tokio::time::timeout(left, timed(operation, call(self.client.clone()))).await {
                Ok(result) => result,
                Err(_) => Err(etcd_client::Error::GRpcStatus(tonic::Status::deadline_exceeded(
                    format!("no answer within {:?}", self.budget),
                ))),
            };
            match result {
                Err(e) if worth_retrying(&e) && tokio::time::Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                result => return result,
            }
        }
    }

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
