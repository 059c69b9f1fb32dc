//! Keeps a view of one key range current: a read, then a watch from just after it; after a
//! broken watch, a fresh read. Nothing is missed and nothing is seen twice out of order.
//!
//! The watch may cover more than the read ([`follow_watching`]): keys too many to read at
//! once whose news alone matters (the log's records).

use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use tokio::sync::oneshot;

use super::{prefix_end, timed};

/// What a view does with the range's contents.
pub(crate) trait Follower: Send + 'static {
    /// Every key of the range at `revision`: the view is rebuilt from it.
    fn snapshot(&mut self, kvs: &[KeyValue], revision: i64);
    /// A key was written (at `kv.mod_revision()`).
    fn put(&mut self, kv: &KeyValue);
    /// A key was deleted at `revision`.
    fn delete(&mut self, key: &[u8], revision: i64);
}

/// Follows the keys under `prefix` for ever; `ready` is told after the first snapshot.
pub(crate) async fn follow<F: Follower>(
    client: Client,
    prefix: String,
    follower: F,
    ready: Option<oneshot::Sender<()>>,
) {
    follow_watching(client, prefix.clone(), prefix, follower, ready).await
}

/// As [`follow`], the snapshot of the keys under `read`, the watch of those under `watched`
/// (which must include `read`): a key of `watched` outside `read` is known from its first
/// write after the snapshot.
pub(crate) async fn follow_watching<F: Follower>(
    mut client: Client,
    read: String,
    watched: String,
    mut follower: F,
    mut ready: Option<oneshot::Sender<()>>,
) {
    debug_assert!(read.starts_with(&watched));
    loop {
        if let Err(e) = follow_once(&mut client, &read, &watched, &mut follower, &mut ready).await {
            tracing::warn!(prefix = read, error = %e, "etcd watch broke; reading the range again");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn follow_once<F: Follower>(
    client: &mut Client,
    read: &str,
    watched: &str,
    follower: &mut F,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<(), etcd_client::Error> {
    let range = GetOptions::new().with_range(prefix_end(read));
    let snapshot = timed("range", client.get(read, Some(range))).await?;
    let revision = snapshot.header().map_or(0, |h| h.revision());
    follower.snapshot(snapshot.kvs(), revision);
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    let options = WatchOptions::new()
        .with_range(prefix_end(watched))
        .with_start_revision(revision + 1)
        .with_progress_notify();
    let mut stream = timed("watch", client.watch(watched, Some(options))).await?;
    while let Some(response) = stream.message().await? {
        if response.canceled() {
            return Err(etcd_client::Error::WatchError(format!(
                "watch canceled: {}",
                response.cancel_reason()
            )));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => follower.put(kv),
                // The response's own revision may be ahead of events still to come.
                EventType::Delete => follower.delete(kv.key(), kv.mod_revision()),
            }
        }
    }
    Err(etcd_client::Error::WatchError("watch stream ended".into()))
}
