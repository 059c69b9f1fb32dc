//! Keeps a node's [`Freshness`] current: the log stream, acks and lease renewals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fresco_protocol::{AckRequest, LeaseRequest, LeaseResponse, LogLine, PurgeRecord, Role};
use tokio::sync::Notify;

use super::Freshness;
use super::log_stream::LogStream;
use super::purge_apis::{PurgeApiUrls, PurgeApis};
use crate::metrics::METRICS;

/// Where a node finds purge-api and who it is there.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// purge-api's replicas.
    pub purge_api: PurgeApiUrls,
    /// This node's credential for purge-api.
    pub credential: String,
    /// This node's id.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// The address it serves on.
    pub address: String,
    /// The address of its admin endpoints.
    pub admin: Option<String>,
    /// The CA certificates an `https://` purge-api is verified against (default: the system's).
    pub ca_file: Option<std::path::PathBuf>,
}

struct Subscriber {
    fresh: Arc<Freshness>,
    config: SubscriberConfig,
    apis: PurgeApis,
    http: reqwest::Client,
    /// Wakes the lease loop early (after catching up while fenced).
    renew_now: Notify,
}

/// Runs the subscriber until the process ends: one task streams and applies the log, one
/// renews the lease every third of its length.
pub async fn run(fresh: Arc<Freshness>, config: SubscriberConfig) {
    let http = crate::tls::trusted_client(config.ca_file.as_deref())
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client");
    let sub = Arc::new(Subscriber {
        fresh,
        apis: PurgeApis::new(&config.purge_api),
        config,
        http,
        renew_now: Notify::new(),
    });
    let leases = tokio::spawn(sub.clone().lease_loop());
    sub.stream_loop().await;
    leases.abort();
}

impl Subscriber {
    async fn stream_loop(self: &Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.stream_once().await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(error = %e, "purge log stream broke; reconnecting");
                    METRICS.purge_stream_errors.inc();
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Streams the log from the next unapplied sequence until the stream ends or fails.
    async fn stream_once(self: &Arc<Self>) -> Result<(), String> {
        let from = self.fresh.applied() + 1;
        let (replica, purge_api) = self.apis.base();
        let opened = LogStream::open(&self.http, purge_api, &self.config.credential, from).await;
        let mut stream = opened.inspect_err(|_| self.apis.failed(replica))?;
        // A heartbeat comes every second; silence for three means the stream is dead.
        while let Some(lines) = stream
            .next_lines(Duration::from_secs(3))
            .await
            .inspect_err(|_| self.apis.failed(replica))?
        {
            if self.apis.base().0 != replica {
                // The lease loop or an ack found this replica failing: follow the one in use.
                return Ok(());
            }
            let mut batch: Vec<PurgeRecord> = Vec::new();
            for line in lines {
                match line {
                    LogLine::Purge(record) => batch.push(record),
                    LogLine::Reset { next } => {
                        self.apply(&std::mem::take(&mut batch)).await?;
                        tracing::warn!(next, "behind the purge log's retention: dropping every cached object");
                        self.fresh.reset(next).await.map_err(|e| e.to_string())?;
                        METRICS.purge_resets.inc();
                    }
                    LogLine::Heartbeat { head } => {
                        METRICS.purge_lag.set(head.saturating_sub(self.fresh.applied()) as i64)
                    }
                }
            }
            self.apply(&batch).await?;
        }
        Ok(())
    }

    async fn apply(self: &Arc<Self>, batch: &[PurgeRecord]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        self.fresh.apply(batch).await.map_err(|e| e.to_string())?;
        let applied = self.fresh.applied();
        METRICS.purge_applied.set(applied as i64);
        let ack = AckRequest {
            node: self.config.node.clone(),
            applied,
            copy: false,
        };
        // The ack goes out on its own task so that the next batch is applied meanwhile; acks
        // may then arrive out of order, which is harmless: purge-api keeps the highest.
        let (replica, url) = self.apis.url("/v1/ack");
        // Every other replica gets a copy: a purge answered by one of them would otherwise
        // wait for this ack to come through etcd (a write and a watch). Nothing waits for a
        // copy, and one that fails changes nothing.
        for base in self.apis.others(replica) {
            let copy = self.post_ack(
                format!("{base}/v1/ack"),
                &AckRequest {
                    copy: true,
                    ..ack.clone()
                },
            );
            tokio::spawn(async move {
                if let Err(e) = copy.await {
                    tracing::debug!(error = %e, "a copy of an ack was not delivered");
                }
            });
        }
        let sent = self.post_ack(url, &ack);
        let sub = self.clone();
        tokio::spawn(async move {
            let sent = sent.await;
            match sent {
                Ok(r) if r.status().as_u16() == 409 => sub.renew_now.notify_one(),
                Ok(r) if r.status().is_server_error() => sub.apis.failed(replica),
                Ok(_) => {}
                Err(e) => {
                    sub.apis.failed(replica);
                    tracing::debug!(error = %e, "ack failed; the next lease renewal reports progress")
                }
            }
        });
        if !self.fresh.is_leased() {
            self.renew_now.notify_one();
        }
        Ok(())
    }

    fn post_ack(
        &self,
        url: String,
        ack: &AckRequest,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        self.http
            .post(url)
            .bearer_auth(&self.config.credential)
            // A replica that hangs must not pile up acks waiting for it.
            .timeout(Duration::from_secs(1))
            .json(ack)
            .send()
    }

    async fn lease_loop(self: Arc<Self>) {
        loop {
            let sent = tokio::time::Instant::now();
            let lease = self.renew().await;
            METRICS.lease_held.set(i64::from(self.fresh.is_leased()));
            // Every L/3 from when the last renewal was *sent*, however long its answer took.
            let period = lease.map_or(Duration::from_millis(200), |l| Duration::from_millis(l.lease_ms / 3));
            tokio::select! {
                _ = tokio::time::sleep_until(sent + period) => {}
                _ = self.renew_now.notified() => {}
            }
        }
    }

    async fn renew(&self) -> Option<LeaseResponse> {
        let request = LeaseRequest {
            node: self.config.node.clone(),
            role: self.config.role,
            address: self.config.address.clone(),
            admin: self.config.admin.clone(),
            applied: self.fresh.applied(),
        };
        // The lease runs from when the request was sent, never from when the answer came.
        let sent = Instant::now();
        let (replica, url) = self.apis.url("/v1/lease");
        let answered = self
            .http
            .post(url)
            .bearer_auth(&self.config.credential)
            .timeout(Duration::from_secs(1))
            .json(&request)
            .send()
            .await;
        let answered = match answered {
            Ok(answered) if answered.status().is_success() => answered,
            // A refusal (a revoked credential, a node the cluster does not know) is the
            // cluster's answer, the same from every replica: it is said, not run from.
            Ok(refused) if refused.status().is_client_error() => {
                tracing::warn!(status = %refused.status(), "purge-api refused the lease renewal");
                return None;
            }
            // A replica that cannot answer (down, or cut off from etcd) is left for the next.
            _ => {
                self.apis.failed(replica);
                return None;
            }
        };
        let answer = answered.json::<LeaseResponse>().await.ok()?;
        if answer.granted {
            self.fresh.grant(sent, Duration::from_millis(answer.lease_ms));
        } else {
            tracing::debug!(reason = ?answer.reason, "lease not granted");
        }
        Some(answer)
    }
}
