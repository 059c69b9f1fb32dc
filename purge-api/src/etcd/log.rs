//! [`PurgeLog`] in etcd: any replica appends, every replica reads.
//!
//! An append is one transaction that writes the records and the new head, on the condition
//! that the head is still the one they were numbered after (its mod revision): two replicas
//! appending at once cannot both win, the loser renumbers and tries again, so sequence numbers
//! stay consecutive across replicas and etcd leader changes.
//!
//! Every node following a replica reads the same new records; a record never changes once
//! written, so each replica keeps the newest in memory ([`Recent`]): those it appended and
//! those its watch of the log brings (with the head that follows them, in the same event
//! batch), and reads etcd only for older ones, once per batch for all its followers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, Txn, TxnOp};
use fresco_protocol::PurgeRecord;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use super::follow::{Follower, follow_watching};
use super::{Etcd, Keys, padded, parse_seq, prefix_end};
use crate::log::{LogBounds, LogError, PurgeLog, decode, encode, number_after, storage};

/// Records per transaction: etcd refuses more than 128 operations in one (`--max-txn-ops`).
const RECORDS_PER_TXN: usize = 100;
/// Bytes of records per transaction: etcd refuses requests over 1.5 MiB
/// (`--max-request-bytes`).
const BYTES_PER_TXN: usize = 1024 * 1024;
/// Records per read: an answer must stay under the client's 4 MiB message limit, and a record
/// is at most a purge body (64 KiB) and its key.
const RECORDS_PER_READ: usize = 48;
/// Renumberings an append tries before it gives up (only other replicas' appends cause them).
const APPEND_ATTEMPTS: usize = 64;

/// Records kept in memory.
const RECENT_RECORDS: usize = 4096;

/// The newest records, as appended here or read from etcd.
#[derive(Default)]
struct Recent {
    records: BTreeMap<u64, PurgeRecord>,
}

impl Recent {
    fn insert(&mut self, records: &[PurgeRecord]) {
        for record in records {
            self.records.insert(record.seq, record.clone());
        }
        while self.records.len() > RECENT_RECORDS {
            self.records.pop_first();
        }
    }

    /// Up to `max` consecutive records from `from`, if `from` is here.
    fn run_from(&self, from: u64, max: usize) -> Vec<PurgeRecord> {
        self.records
            .range(from..)
            .zip(from..)
            .take_while(|((seq, _), expected)| *seq == expected)
            .take(max)
            .map(|((_, record), _)| record.clone())
            .collect()
    }
}

/// The purge log in etcd.
pub struct EtcdLog {
    etcd: Etcd,
    keys: Keys,
    state: Arc<LogState>,
    /// One read of etcd at a time: followers woken by the same append wait for the first.
    reading: tokio::sync::Mutex<()>,
    /// When etcd last answered a reachability check, and whether it did: one check serves
    /// every follower for [`REACHABILITY_VALID`].
    reachable: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// How long one reachability check stands for.
const REACHABILITY_VALID: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Known {
    bounds: LogBounds,
    /// The mod revision of the head key when it said `bounds.head`.
    head_revision: i64,
}

struct LogState {
    known: Mutex<Known>,
    heads: watch::Sender<u64>,
    recent: Mutex<Recent>,
}

impl LogState {
    /// Takes news of the bounds; old news (a lower revision) changes nothing.
    fn learn(&self, head: Option<(u64, i64)>, first: Option<u64>) {
        let mut known = self.known.lock();
        if let Some((head, revision)) = head
            && revision > known.head_revision
        {
            if head < known.bounds.head {
                tracing::error!(
                    was = known.bounds.head,
                    now = head,
                    "etcd's purge log went back (restored from a backup?): restart every purge-api replica"
                );
            }
            known.bounds.head = known.bounds.head.max(head);
            known.head_revision = revision;
        }
        if let Some(first) = first {
            known.bounds.first = known.bounds.first.max(first);
        }
        let head = known.bounds.head;
        drop(known);
        self.heads.send_if_modified(|h| {
            let moved = *h < head;
            *h = (*h).max(head);
            moved
        });
    }

    fn learn_kvs(&self, keys: &Keys, kvs: &[KeyValue]) {
        for kv in kvs {
            let value = parse_seq(kv.value());
            if kv.key() == keys.head().as_bytes() {
                self.learn(value.map(|v| (v, kv.mod_revision())), None);
            } else if kv.key() == keys.first().as_bytes() {
                self.learn(None, value);
            }
        }
    }
}

/// Follows the log's bounds (read, then watched) and its new records (watched).
struct LogFollower {
    keys: Keys,
    state: Arc<LogState>,
}

impl Follower for LogFollower {
    fn snapshot(&mut self, kvs: &[KeyValue], _revision: i64) {
        self.state.learn_kvs(&self.keys, kvs);
    }
    fn put(&mut self, kv: &KeyValue) {
        match record_of(&self.keys, kv) {
            // An append writes its records before its head: they are here when the head
            // wakes the followers.
            Some(Ok(record)) => self.state.recent.lock().insert(&[record]),
            Some(Err(e)) => tracing::warn!(error = %e, "etcd: a record that does not decode"),
            None => self.state.learn_kvs(&self.keys, std::slice::from_ref(kv)),
        }
    }
    fn delete(&mut self, _key: &[u8], _revision: i64) {}
}

/// The record that `kv` holds, if it is one of the log's records.
fn record_of(keys: &Keys, kv: &KeyValue) -> Option<Result<PurgeRecord, LogError>> {
    let seq = kv.key().strip_prefix(keys.records().as_bytes())?;
    Some(
        parse_seq(seq)
            .ok_or_else(|| storage("etcd: a record key is not a sequence number"))
            .and_then(|seq| decode(seq, kv.value())),
    )
}

fn etcd(e: etcd_client::Error) -> LogError {
    storage(format!("etcd: {e}"))
}

impl EtcdLog {
    /// Opens the log under `keys` and follows its bounds; returns once they are read.
    pub(crate) async fn open(etcd: Etcd, keys: Keys) -> Result<Self, LogError> {
        let state = Arc::new(LogState {
            known: Mutex::new(Known {
                bounds: LogBounds { first: 1, head: 0 },
                head_revision: 0,
            }),
            heads: watch::channel(0).0,
            recent: Mutex::default(),
        });
        let (ready, read) = oneshot::channel();
        let follower = LogFollower {
            keys: keys.clone(),
            state: state.clone(),
        };
        tokio::spawn(follow_watching(
            etcd.client(),
            keys.log_meta(),
            keys.log(),
            follower,
            Some(ready),
        ));
        read.await.map_err(storage)?;
        Ok(Self {
            etcd,
            keys,
            state,
            reading: tokio::sync::Mutex::new(()),
            reachable: tokio::sync::Mutex::new(None),
        })
    }

    /// Appends one transaction's worth of records.
    async fn append_chunk(&self, records: &[PurgeRecord]) -> Result<Vec<PurgeRecord>, LogError> {
        for _ in 0..APPEND_ATTEMPTS {
            let (head, revision) = {
                let known = self.state.known.lock();
                (known.bounds.head, known.head_revision)
            };
            let numbered = number_after(head, records.to_vec());
            let last = numbered.last().map_or(head, |r| r.seq);
            // The head last: a watcher sees the records first (events keep the txn's order).
            let mut writes: Vec<_> = numbered
                .iter()
                .map(|r| TxnOp::put(self.keys.record(r.seq), encode(r), None))
                .collect();
            writes.push(TxnOp::put(self.keys.head(), padded(last), None));
            let txn = Txn::new()
                .when([Compare::mod_revision(self.keys.head(), CompareOp::Equal, revision)])
                .and_then(writes)
                .or_else([TxnOp::get(self.keys.head(), None)]);
            let answer = self.etcd.txn("append", txn).await.map_err(etcd)?;
            if answer.succeeded() {
                let revision = answer.header().map_or(0, |h| h.revision());
                self.state.recent.lock().insert(&numbered);
                self.state.learn(Some((last, revision)), None);
                return Ok(numbered);
            }
            // Another replica appended first: renumber after its head.
            for response in answer.op_responses() {
                if let etcd_client::TxnOpResponse::Get(get) = response {
                    self.state.learn_kvs(&self.keys, get.kvs());
                }
            }
        }
        Err(storage("etcd: the head kept moving; append not written"))
    }

    /// Up to `max` records from `from`, read from etcd.
    async fn read_etcd(&self, from: u64, max: usize) -> Result<Vec<PurgeRecord>, LogError> {
        let options = GetOptions::new()
            .with_range(prefix_end(&self.keys.records()))
            .with_limit(max.min(RECORDS_PER_READ) as i64);
        let answer = self
            .etcd
            .get("read", self.keys.record(from), Some(options))
            .await
            .map_err(etcd)?;
        answer.kvs().iter().filter_map(|kv| record_of(&self.keys, kv)).collect()
    }
}

#[async_trait::async_trait]
impl PurgeLog for EtcdLog {
    async fn append(&self, records: Vec<PurgeRecord>) -> Result<Vec<PurgeRecord>, LogError> {
        let mut numbered = Vec::with_capacity(records.len());
        let (mut chunk, mut bytes) = (Vec::new(), 0);
        for record in records {
            let size = encode(&record).len();
            if !chunk.is_empty() && (chunk.len() == RECORDS_PER_TXN || bytes + size > BYTES_PER_TXN) {
                numbered.extend(self.append_chunk(&std::mem::take(&mut chunk)).await?);
                bytes = 0;
            }
            chunk.push(record);
            bytes += size;
        }
        if !chunk.is_empty() {
            numbered.extend(self.append_chunk(&chunk).await?);
        }
        Ok(numbered)
    }

    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<PurgeRecord>, LogError> {
        let cached = self.state.recent.lock().run_from(from, max);
        if !cached.is_empty() {
            return Ok(cached);
        }
        // Nothing beyond the head heard of: a follower that has everything asks again when
        // the head moves, so etcd is not asked after every batch by every follower.
        if from > self.bounds().head {
            return Ok(Vec::new());
        }
        let _reading = self.reading.lock().await;
        let cached = self.state.recent.lock().run_from(from, max);
        if !cached.is_empty() {
            return Ok(cached);
        }
        let records = self.read_etcd(from, max).await?;
        // Only what follows what is kept: an old read (a node far behind) would evict the
        // records every other node is about to read.
        let mut recent = self.state.recent.lock();
        if recent.records.last_key_value().is_none_or(|(last, _)| from <= last + 1) {
            recent.insert(&records);
        }
        drop(recent);
        Ok(records)
    }

    fn bounds(&self) -> LogBounds {
        self.state.known.lock().bounds
    }

    async fn current_bounds(&self) -> Result<LogBounds, LogError> {
        let options = GetOptions::new().with_range(prefix_end(&self.keys.log_meta()));
        let answer = self
            .etcd
            .get("range", self.keys.log_meta(), Some(options))
            .await
            .map_err(etcd)?;
        self.state.learn_kvs(&self.keys, answer.kvs());
        Ok(self.bounds())
    }

    fn heads(&self) -> watch::Receiver<u64> {
        self.state.heads.subscribe()
    }

    async fn check_reachable(&self) -> Result<(), LogError> {
        let mut checked = self.reachable.lock().await;
        if let Some((at, result)) = checked.as_ref()
            && at.elapsed() < REACHABILITY_VALID
        {
            return result.clone().map_err(storage);
        }
        let result = self.current_bounds().await.map(|_| ()).map_err(|e| e.to_string());
        *checked = Some((Instant::now(), result.clone()));
        result.map_err(storage)
    }

    async fn truncate_before(&self, seq: u64) -> Result<(), LogError> {
        let bounds = self.bounds();
        let first = bounds.first.max(seq.min(bounds.head + 1));
        let txn = Txn::new().and_then([
            TxnOp::delete(
                self.keys.record(0),
                Some(DeleteOptions::new().with_range(self.keys.record(seq))),
            ),
            TxnOp::put(self.keys.first(), padded(first), None),
        ]);
        self.etcd.txn("truncate", txn).await.map_err(etcd)?;
        self.state.learn(None, Some(first));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::record;

    #[test]
    fn the_recent_records_serve_only_consecutive_runs_and_keep_the_newest() {
        let mut recent = Recent::default();
        let numbered = |seqs: std::ops::RangeInclusive<u64>| {
            seqs.map(|seq| PurgeRecord { seq, ..record("/a") }).collect::<Vec<_>>()
        };
        recent.insert(&numbered(1..=3));
        recent.insert(&numbered(5..=6));
        let seqs = |records: Vec<PurgeRecord>| records.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(recent.run_from(2, 10)), vec![2, 3], "4 is not here: the run stops");
        assert_eq!(seqs(recent.run_from(4, 10)), Vec::<u64>::new());
        assert_eq!(seqs(recent.run_from(5, 1)), vec![5]);
        recent.insert(&numbered(7..=(RECENT_RECORDS as u64 + 10)));
        assert_eq!(recent.records.len(), RECENT_RECORDS);
        assert!(recent.run_from(1, 1).is_empty(), "the oldest went first");
    }
}
