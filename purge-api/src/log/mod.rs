//! The purge log: consecutive sequence numbers, written durably before anything else happens.
//!
//! [`PurgeLog`] is the interface, with two backends: [`RedbLog`] keeps it in one fsync'd redb
//! file (one purge-api, the default), [`crate::etcd::EtcdLog`] in an etcd cluster (several
//! purge-api replicas). [`GroupCommit`] batches the appends of concurrent requests into one
//! write, so throughput is not bounded by the latency of a durable write.

mod redb;

use std::sync::Arc;

use fresco_protocol::PurgeRecord;
use tokio::sync::{mpsc, oneshot, watch};

pub use self::redb::RedbLog;

/// The on-disk format of a record: a version byte, then JSON. Both backends store it.
const RECORD_VERSION: u8 = 1;

/// A log failure.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The storage engine failed.
    #[error("purge log storage: {0}")]
    Storage(String),
    /// A stored record does not decode.
    #[error("purge log record {seq} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        seq: u64,
        /// Why.
        reason: String,
    },
}

pub(crate) fn storage<E: std::fmt::Display>(e: E) -> LogError {
    LogError::Storage(e.to_string())
}

/// The sequence numbers a log holds: `first..=head`, empty when `head < first`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogBounds {
    /// The oldest retained sequence.
    pub first: u64,
    /// The newest sequence; 0 before the first purge.
    pub head: u64,
}

/// A durable, sequence-numbered purge log, shared by every purge-api that uses it.
///
/// Contract: `append` returns only once the records are durable, numbered consecutively after
/// the previous head, whichever process appended that; a sequence number is never reused, even
/// after `truncate_before`.
#[async_trait::async_trait]
pub trait PurgeLog: Send + Sync + 'static {
    /// Appends records (their `seq` is ignored and assigned here) and returns them numbered.
    async fn append(&self, records: Vec<PurgeRecord>) -> Result<Vec<PurgeRecord>, LogError>;
    /// Up to `max` records from `from` on, in order.
    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<PurgeRecord>, LogError>;
    /// What the log held when this process last heard: behind a replicated log's appends by
    /// other processes for as long as their news takes to arrive.
    fn bounds(&self) -> LogBounds;
    /// What the log holds now. The default is [`PurgeLog::bounds`], right for a log that only
    /// this process writes; a replicated log reads it.
    async fn current_bounds(&self) -> Result<LogBounds, LogError> {
        Ok(self.bounds())
    }
    /// The head, changing after every append by any process.
    fn heads(&self) -> watch::Receiver<u64>;
    /// Whether the log can be reached now, for followers that have everything and hear
    /// nothing: a replica cut off from a replicated log must let them go to another. The
    /// default, for a log of this process's own, is always.
    async fn check_reachable(&self) -> Result<(), LogError> {
        Ok(())
    }
    /// Drops records before `seq` (retention).
    async fn truncate_before(&self, seq: u64) -> Result<(), LogError>;
}

pub(crate) fn encode(record: &PurgeRecord) -> Vec<u8> {
    let mut bytes = vec![RECORD_VERSION];
    serde_json::to_writer(&mut bytes, record).expect("a record serializes");
    bytes
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<PurgeRecord, LogError> {
    let corrupt = |reason: String| LogError::Corrupt { seq, reason };
    match bytes.split_first() {
        Some((&RECORD_VERSION, json)) => serde_json::from_slice(json).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Numbers `records` consecutively after `head`.
pub(crate) fn number_after(head: u64, records: Vec<PurgeRecord>) -> Vec<PurgeRecord> {
    records
        .into_iter()
        .zip(head + 1..)
        .map(|(mut r, seq)| {
            r.seq = seq;
            r
        })
        .collect()
}

type AppendReply = oneshot::Sender<Result<PurgeRecord, String>>;

/// The most records one batch holds.
const MAX_BATCH: usize = 1024;

/// Batches concurrent appends into one durable write.
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<(PurgeRecord, AppendReply)>,
}

impl GroupCommit {
    /// Starts the writer task over `log`.
    pub fn start(log: Arc<dyn PurgeLog>) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<(PurgeRecord, AppendReply)>();
        tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match pending.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                match log.append(records).await {
                    Ok(numbered) => {
                        for (record, reply) in numbered.into_iter().zip(replies) {
                            let _ = reply.send(Ok(record));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "appending to the purge log failed");
                        for reply in replies {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Appends one record durably; returns it with its sequence number.
    pub async fn append(&self, record: PurgeRecord) -> Result<PurgeRecord, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((record, reply))
            .map_err(|_| "the log writer stopped".to_string())?;
        answer.await.map_err(|_| "the log writer stopped".to_string())?
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(path: &str) -> PurgeRecord {
        PurgeRecord {
            seq: 0,
            at_ms: 1,
            urls: vec![fresco_protocol::Target {
                host: String::new(),
                path: path.into(),
            }],
            tags: vec![],
            prefixes: vec![],
            tag_hosts: vec![],
            soft: false,
        }
    }

    #[test]
    fn unknown_record_versions_are_reported_as_corrupt() {
        assert!(matches!(
            decode(7, &[9, b'{', b'}']),
            Err(LogError::Corrupt { seq: 7, .. })
        ));
        assert_eq!(decode(1, &encode(&record("/x"))).unwrap().urls[0].path, "/x");
    }
}
