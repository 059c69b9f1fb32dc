//! The purge log: consecutive sequence numbers, written durably before anything else happens.
//!
//! [`PurgeLog`] is the interface (a replicated backend, etcd, is the plan for several purge-api
//! replicas); [`RedbLog`] keeps it in one fsync'd redb file. [`GroupCommit`] batches the appends
//! of concurrent requests into one transaction, so throughput is not bounded by fsync latency.

use std::path::Path;
use std::sync::mpsc;

use fresco_protocol::PurgeRecord;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, watch};

/// The on-disk format of a record: a version byte, then JSON.
const RECORD_VERSION: u8 = 1;
const PURGES: TableDefinition<u64, &[u8]> = TableDefinition::new("purges");

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

fn storage<E: std::fmt::Display>(e: E) -> LogError {
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

/// A durable, sequence-numbered purge log.
///
/// Contract: `append` returns only once the records are durable, numbered consecutively after
/// the previous head; a sequence number is never reused, even after `truncate_before`.
pub trait PurgeLog: Send + Sync + 'static {
    /// Appends records (their `seq` is ignored and assigned here) and returns them numbered.
    fn append(&self, records: Vec<PurgeRecord>) -> Result<Vec<PurgeRecord>, LogError>;
    /// Up to `max` records from `from` on, in order.
    fn read_from(&self, from: u64, max: usize) -> Result<Vec<PurgeRecord>, LogError>;
    /// What the log holds.
    fn bounds(&self) -> LogBounds;
    /// Drops records before `seq` (retention).
    fn truncate_before(&self, seq: u64) -> Result<(), LogError>;
}

/// [`PurgeLog`] in a redb file; every commit is fsync'd.
pub struct RedbLog {
    db: Database,
    bounds: Mutex<LogBounds>,
}

impl RedbLog {
    /// Opens or creates the log in `dir/purge-log.redb`.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let db = Database::create(dir.join("purge-log.redb")).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(PURGES).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let bounds = {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(PURGES).map_err(storage)?;
            let first = table.first().map_err(storage)?.map(|(k, _)| k.value());
            let head = table.last().map_err(storage)?.map(|(k, _)| k.value());
            let meta_head = read_meta_head(&db)?;
            let head = head.unwrap_or(0).max(meta_head);
            LogBounds {
                first: first.unwrap_or(head + 1),
                head,
            }
        };
        Ok(Self {
            db,
            bounds: Mutex::new(bounds),
        })
    }
}

/// The head survives a truncation of every record, so sequence numbers are never reused.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn read_meta_head(db: &Database) -> Result<u64, LogError> {
    let txn = db.begin_read().map_err(storage)?;
    match txn.open_table(META) {
        Ok(table) => Ok(table.get("head").map_err(storage)?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(storage(e)),
    }
}

fn encode(record: &PurgeRecord) -> Vec<u8> {
    let mut bytes = vec![RECORD_VERSION];
    serde_json::to_writer(&mut bytes, record).expect("a record serializes");
    bytes
}

fn decode(seq: u64, bytes: &[u8]) -> Result<PurgeRecord, LogError> {
    let corrupt = |reason: String| LogError::Corrupt { seq, reason };
    match bytes.split_first() {
        Some((1, json)) => serde_json::from_slice(json).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

impl PurgeLog for RedbLog {
    fn append(&self, records: Vec<PurgeRecord>) -> Result<Vec<PurgeRecord>, LogError> {
        let mut bounds = self.bounds.lock();
        let mut next = bounds.head + 1;
        let numbered: Vec<PurgeRecord> = records
            .into_iter()
            .map(|mut r| {
                r.seq = next;
                next += 1;
                r
            })
            .collect();
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(PURGES).map_err(storage)?;
            for record in &numbered {
                table.insert(record.seq, encode(record).as_slice()).map_err(storage)?;
            }
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.insert("head", next - 1).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        if bounds.head < bounds.first {
            bounds.first = numbered.first().map_or(bounds.first, |r| r.seq);
        }
        bounds.head = next - 1;
        Ok(numbered)
    }

    fn read_from(&self, from: u64, max: usize) -> Result<Vec<PurgeRecord>, LogError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(PURGES).map_err(storage)?;
        table
            .range(from..)
            .map_err(storage)?
            .take(max)
            .map(|entry| {
                let (k, v) = entry.map_err(storage)?;
                decode(k.value(), v.value())
            })
            .collect()
    }

    fn bounds(&self) -> LogBounds {
        *self.bounds.lock()
    }

    fn truncate_before(&self, seq: u64) -> Result<(), LogError> {
        let mut bounds = self.bounds.lock();
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(PURGES).map_err(storage)?;
            table.retain_in(..seq, |_, _| false).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        bounds.first = bounds.first.max(seq.min(bounds.head + 1));
        Ok(())
    }
}

type AppendReply = oneshot::Sender<Result<PurgeRecord, String>>;

/// Batches concurrent appends into one durable write; publishes the head after each batch.
pub struct GroupCommit {
    queue: mpsc::Sender<(PurgeRecord, AppendReply)>,
    head: watch::Receiver<u64>,
}

impl GroupCommit {
    /// Starts the writer thread over `log`.
    pub fn start(log: std::sync::Arc<dyn PurgeLog>) -> Self {
        let (queue, pending) = mpsc::channel::<(PurgeRecord, AppendReply)>();
        let (head_tx, head) = watch::channel(log.bounds().head);
        std::thread::Builder::new()
            .name("purge-log-writer".into())
            .spawn(move || {
                while let Ok(first) = pending.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 1024 {
                        match pending.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    let (records, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    match log.append(records) {
                        Ok(numbered) => {
                            head_tx.send_replace(log.bounds().head);
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
            })
            .expect("spawning the log writer");
        Self { queue, head }
    }

    /// Appends one record durably; returns it with its sequence number.
    pub async fn append(&self, record: PurgeRecord) -> Result<PurgeRecord, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((record, reply))
            .map_err(|_| "the log writer stopped".to_string())?;
        answer.await.map_err(|_| "the log writer stopped".to_string())?
    }

    /// The head after each durable batch.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> PurgeRecord {
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
    fn appends_are_numbered_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = RedbLog::open(dir.path()).unwrap();
            assert_eq!(log.bounds(), LogBounds { first: 1, head: 0 });
            let out = log.append(vec![record("/a"), record("/b")]).unwrap();
            assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        }
        let log = RedbLog::open(dir.path()).unwrap();
        assert_eq!(log.bounds(), LogBounds { first: 1, head: 2 });
        let all = log.read_from(1, 10).unwrap();
        assert_eq!(all[1].urls[0].path, "/b");
        assert_eq!(log.append(vec![record("/c")]).unwrap()[0].seq, 3);
    }

    #[test]
    fn truncation_keeps_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(dir.path()).unwrap();
        log.append(vec![record("/a"), record("/b"), record("/c")]).unwrap();
        log.truncate_before(4).unwrap();
        assert_eq!(log.bounds(), LogBounds { first: 4, head: 3 });
        drop(log);
        let log = RedbLog::open(dir.path()).unwrap();
        assert_eq!(
            log.bounds(),
            LogBounds { first: 4, head: 3 },
            "no reuse after a restart"
        );
        assert_eq!(log.append(vec![record("/d")]).unwrap()[0].seq, 4);
        assert!(log.read_from(1, 10).unwrap().iter().all(|r| r.seq == 4));
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
