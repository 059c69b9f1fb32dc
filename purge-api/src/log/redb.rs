//! [`PurgeLog`] in one redb file, for a single purge-api.

use std::path::Path;
use std::sync::Arc;

use fresco_protocol::PurgeRecord;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use super::{LogBounds, LogError, PurgeLog, decode, encode, number_after, storage};

const PURGES: TableDefinition<u64, &[u8]> = TableDefinition::new("purges");

/// [`PurgeLog`] in a redb file; every commit is fsync'd.
pub struct RedbLog {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    bounds: Mutex<LogBounds>,
    heads: watch::Sender<u64>,
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
            inner: Arc::new(Inner {
                db,
                bounds: Mutex::new(bounds),
                heads: watch::channel(bounds.head).0,
            }),
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

impl Inner {
    fn append(&self, records: Vec<PurgeRecord>) -> Result<Vec<PurgeRecord>, LogError> {
        let mut bounds = self.bounds.lock();
        let numbered = number_after(bounds.head, records);
        let Some(last) = numbered.last().map(|r| r.seq) else {
            return Ok(numbered);
        };
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(PURGES).map_err(storage)?;
            for record in &numbered {
                table.insert(record.seq, encode(record).as_slice()).map_err(storage)?;
            }
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.insert("head", last).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        if bounds.head < bounds.first {
            bounds.first = numbered[0].seq;
        }
        bounds.head = last;
        self.heads.send_replace(last);
        Ok(numbered)
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

/// Runs a write on the blocking pool: a commit waits for fsync.
async fn blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    write: impl FnOnce(&Inner) -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || write(&inner))
        .await
        .map_err(storage)?
}

#[async_trait::async_trait]
impl PurgeLog for RedbLog {
    async fn append(&self, records: Vec<PurgeRecord>) -> Result<Vec<PurgeRecord>, LogError> {
        blocking(&self.inner, move |inner| inner.append(records)).await
    }

    async fn read_from(&self, from: u64, max: usize) -> Result<Vec<PurgeRecord>, LogError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
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
        *self.inner.bounds.lock()
    }

    fn heads(&self) -> watch::Receiver<u64> {
        self.inner.heads.subscribe()
    }

    async fn truncate_before(&self, seq: u64) -> Result<(), LogError> {
        blocking(&self.inner, move |inner| inner.truncate_before(seq)).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::record;
    use super::*;

    #[tokio::test]
    async fn appends_are_numbered_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = RedbLog::open(dir.path()).unwrap();
            assert_eq!(log.bounds(), LogBounds { first: 1, head: 0 });
            let out = log.append(vec![record("/a"), record("/b")]).await.unwrap();
            assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
            assert_eq!(*log.heads().borrow(), 2);
        }
        let log = RedbLog::open(dir.path()).unwrap();
        assert_eq!(log.bounds(), LogBounds { first: 1, head: 2 });
        let all = log.read_from(1, 10).await.unwrap();
        assert_eq!(all[1].urls[0].path, "/b");
        assert_eq!(log.append(vec![record("/c")]).await.unwrap()[0].seq, 3);
    }

    #[tokio::test]
    async fn truncation_keeps_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(dir.path()).unwrap();
        log.append(vec![record("/a"), record("/b"), record("/c")])
            .await
            .unwrap();
        log.truncate_before(4).await.unwrap();
        assert_eq!(log.bounds(), LogBounds { first: 4, head: 3 });
        drop(log);
        let log = RedbLog::open(dir.path()).unwrap();
        assert_eq!(
            log.bounds(),
            LogBounds { first: 4, head: 3 },
            "no reuse after a restart"
        );
        assert_eq!(log.append(vec![record("/d")]).await.unwrap()[0].seq, 4);
        assert!(log.read_from(1, 10).await.unwrap().iter().all(|r| r.seq == 4));
    }
}
