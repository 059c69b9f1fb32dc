//! A replica's view of the membership table in etcd, kept current by three followers
//! (`members/`, `acks/`, `answered`), and what a completion is decided on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::KeyValue;
use fresco_protocol::Role;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::follow::Follower;
use super::parse_seq;
use crate::members::{MemberRecord, Table};

/// This replica's view of the table.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) table: Table,
    /// Every change to `members/` up to this revision is in `table`.
    pub(crate) revision: i64,
    /// The mod revision of each member's record as last seen (absent: no key).
    pub(crate) record_revisions: HashMap<String, i64>,
    /// The mod revision of `answered`.
    pub(crate) answered_revision: i64,
    /// Acks read from etcd, kept for members whose record arrives after them.
    acks: HashMap<String, u64>,
}

/// What a completion was decided on, taken under the same lock as the decision: the answer
/// holds only if none of it changed meanwhile.
pub(crate) struct DecidedOn {
    /// The view's revision of `members/`: no member may have been created after it.
    pub(crate) revision: i64,
    /// Members that have not applied the purge (their leases expired): each must still be as
    /// seen, or a grant may have been made to it meanwhile. `None`: too many to compare one by
    /// one, so no member may have changed at all.
    pub(crate) lagging: Option<Vec<(String, i64)>>,
}

/// Most members compared one by one in a completion (etcd allows 128 comparisons).
const MOST_LAGGING_COMPARED: usize = 100;

impl View {
    /// The view's decision on purge `seq`: complete (with what it was decided on), or the
    /// time that may change by itself.
    pub(crate) fn decide(
        &self,
        seq: u64,
        now: Instant,
        unknown_until: Option<Instant>,
    ) -> Result<DecidedOn, Option<Instant>> {
        if let Some(pending) = self.table.pending_until(seq, now, unknown_until) {
            return Err(Some(pending));
        }
        let lagging: Vec<(String, i64)> = self
            .table
            .members
            .iter()
            .filter(|(_, m)| m.record.applied < seq)
            .map(|(id, _)| (id.clone(), self.record_revisions.get(id).copied().unwrap_or(0)))
            .collect();
        Ok(DecidedOn {
            revision: self.revision,
            lagging: (lagging.len() <= MOST_LAGGING_COMPARED).then_some(lagging),
        })
    }

    /// The highest purge, `seq` or later, that the view may answer with `seq`: what every
    /// lease holder has applied. Answering it answers every purge before it in one write.
    pub(crate) fn answerable_through(&self, seq: u64, now: Instant) -> u64 {
        self.table
            .members
            .values()
            .filter(|m| m.lease_until.is_some_and(|until| until > now))
            .map(|m| m.record.applied)
            .min()
            .map_or(seq, |applied| applied.max(seq))
    }

    /// Takes news of `answered` at `revision`.
    pub(crate) fn learn_answered(&mut self, answered: u64, revision: i64) {
        if revision > self.answered_revision {
            self.answered_revision = revision;
        }
        self.table.answered_max = self.table.answered_max.max(answered);
    }
}

/// The view, shared by the followers and the handlers.
pub(crate) struct Shared {
    pub(crate) view: Mutex<View>,
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) lease_bound: Duration,
}

impl Shared {
    pub(crate) fn new(lease_bound: Duration) -> Self {
        Self {
            view: Mutex::new(View::default()),
            changed: watch::channel(0).0,
            lease_bound,
        }
    }

    pub(crate) fn changed(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Takes `record` of `node`, written at `revision`, into the view.
    pub(crate) fn put_record(&self, view: &mut View, node: &str, record: MemberRecord, revision: i64) {
        let now = Instant::now();
        view.table.apply_record(node, record, now, self.lease_bound);
        if let Some(applied) = view.acks.get(node).copied() {
            view.table.raise_applied(node, applied, now);
        }
        view.record_revisions.insert(node.to_string(), revision);
    }

    /// `node`'s record is gone (its registration ran out, a minute or more without renewal):
    /// it leaves the table, unless this replica still counts a lease of its.
    pub(crate) fn forget(&self, view: &mut View, node: &str) {
        view.record_revisions.remove(node);
        let now = Instant::now();
        if view
            .table
            .members
            .get(node)
            .is_some_and(|m| m.lease_until.is_none_or(|u| u <= now))
        {
            view.table.members.remove(node);
        }
    }
}

fn node_of<'a>(key: &'a [u8], prefix: &str) -> Option<&'a str> {
    std::str::from_utf8(key.get(prefix.len()..)?).ok()
}

/// A record that does not decode (a newer purge-api's, or damaged) is a node this replica
/// cannot judge: it counts as holding a lease and having applied nothing, so purges wait for
/// it until its lease would surely have expired.
fn undecodable() -> MemberRecord {
    MemberRecord {
        role: Role::Edge,
        address: "(undecodable record)".into(),
        admin: None,
        applied: 0,
        shown_head: 0,
        granted: true,
        may_hold_lease: true,
        grants: 0,
    }
}

/// Follows `members/`.
pub(crate) struct MembersFollower {
    pub(crate) shared: Arc<Shared>,
    pub(crate) prefix: String,
}

impl MembersFollower {
    fn put_kv(&self, view: &mut View, kv: &KeyValue) {
        let Some(node) = node_of(kv.key(), &self.prefix) else {
            return;
        };
        let record = serde_json::from_slice::<MemberRecord>(kv.value()).unwrap_or_else(|e| {
            tracing::error!(node, error = %e, "a member record in etcd does not decode; counted as a lease holder");
            undecodable()
        });
        self.shared.put_record(view, node, record, kv.mod_revision());
    }
}

impl Follower for MembersFollower {
    fn snapshot(&mut self, kvs: &[KeyValue], revision: i64) {
        let mut view = self.shared.view.lock();
        let mut present = std::collections::HashSet::new();
        for kv in kvs {
            let Some(node) = node_of(kv.key(), &self.prefix) else {
                continue;
            };
            present.insert(node.to_string());
            // A record this view already holds as it is keeps its lease times.
            if view.record_revisions.get(node) != Some(&kv.mod_revision()) {
                self.put_kv(&mut view, kv);
            }
        }
        let gone: Vec<String> = view
            .table
            .members
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for node in gone {
            self.shared.forget(&mut view, &node);
        }
        view.revision = view.revision.max(revision);
        drop(view);
        self.shared.changed();
    }

    fn put(&mut self, kv: &KeyValue) {
        let mut view = self.shared.view.lock();
        self.put_kv(&mut view, kv);
        // Changes arrive in revision order: every one before this is in the view.
        view.revision = view.revision.max(kv.mod_revision());
        drop(view);
        self.shared.changed();
    }

    fn delete(&mut self, key: &[u8], revision: i64) {
        let mut view = self.shared.view.lock();
        if let Some(node) = node_of(key, &self.prefix) {
            self.shared.forget(&mut view, node);
        }
        view.revision = view.revision.max(revision);
        drop(view);
        self.shared.changed();
    }
}

/// Follows `acks/`.
pub(crate) struct AcksFollower {
    pub(crate) shared: Arc<Shared>,
    pub(crate) prefix: String,
}

impl Follower for AcksFollower {
    fn snapshot(&mut self, kvs: &[KeyValue], _revision: i64) {
        for kv in kvs {
            self.put(kv);
        }
    }

    fn put(&mut self, kv: &KeyValue) {
        let (Some(node), Some(applied)) = (node_of(kv.key(), &self.prefix), parse_seq(kv.value())) else {
            return;
        };
        let mut view = self.shared.view.lock();
        let known = view.acks.entry(node.to_string()).or_default();
        *known = (*known).max(applied);
        view.table.raise_applied(node, applied, Instant::now());
        drop(view);
        self.shared.changed();
    }

    fn delete(&mut self, _key: &[u8], _revision: i64) {}
}

/// Follows `answered`.
pub(crate) struct AnsweredFollower {
    pub(crate) shared: Arc<Shared>,
}

impl Follower for AnsweredFollower {
    fn snapshot(&mut self, kvs: &[KeyValue], _revision: i64) {
        for kv in kvs {
            self.put(kv);
        }
    }

    fn put(&mut self, kv: &KeyValue) {
        let answered = parse_seq(kv.value()).unwrap_or(0);
        self.shared.view.lock().learn_answered(answered, kv.mod_revision());
        self.shared.changed();
    }

    fn delete(&mut self, _key: &[u8], _revision: i64) {}
}
