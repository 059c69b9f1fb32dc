//! [`Membership`] in etcd: every replica keeps the same table, followed from etcd, and decides
//! as [`Table`] says; etcd's transactions make the decisions of different replicas agree.
//!
//! - A renewal is written on the condition that the node's record and `answered` are what it
//!   was decided on: a grant cannot overlook a purge another replica has just answered.
//! - A purge is answered (`answered` raised) on the condition that no member's record changed
//!   after the revision the view was complete at: a grant made meanwhile by another replica
//!   sends the answer back to wait for that node.
//! - A lease this replica learns of from etcd is taken as granted when it learnt it, which is
//!   after it was granted; its holder's own count started before. A replica that starts (or
//!   reads the table again) takes every lease that may be held as granted then.
//! - Acks are facts a node states: taken at once here, written to etcd in batches for the
//!   others. A lost batch only delays completion elsewhere until the node's next renewal,
//!   which carries what it has applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse};
use fresco_protocol::{LeaseRequest, LeaseResponse};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};

use super::follow::{Follower, follow};
use super::{Keys, padded, parse_seq, prefix_end, timed};
use crate::members::{FORGOTTEN_AFTER, MemberRecord, MemberView, Membership, MembershipError, PurgeStatus, Table};

/// How long a node's registration outlives its last renewal.
const REGISTRATION_TTL_SECS: i64 = FORGOTTEN_AFTER.as_secs() as i64;
/// A registration is renewed (a new etcd lease) once it is this old.
const REGISTRATION_RENEW_AFTER: Duration = Duration::from_secs(20);
/// Attempts of a renewal whose record another replica changed meanwhile.
const RENEW_ATTEMPTS: usize = 8;
/// Acks per transaction (etcd's limit is 128 operations).
const ACKS_PER_TXN: usize = 100;

/// This replica's view of the table, as of `revision` of the members' range.
#[derive(Default)]
struct View {
    table: Table,
    /// Every change to `members/` up to this revision is in `table`.
    revision: i64,
    /// The mod revision of each member's record.
    record_revisions: HashMap<String, i64>,
    /// The mod revision of `answered` (0: never written).
    answered_revision: i64,
    /// Acks read from etcd, kept for members whose record arrives after them.
    acks: HashMap<String, u64>,
}

struct Shared {
    view: Mutex<View>,
    changed: watch::Sender<u64>,
    lease_bound: Duration,
}

impl Shared {
    fn changed(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn put_record(&self, view: &mut View, node: &str, record: MemberRecord, revision: i64) {
        let now = Instant::now();
        view.table.apply_record(node, record, now, self.lease_bound);
        if let Some(applied) = view.acks.get(node).copied() {
            view.table.raise_applied(node, applied, now);
        }
        view.record_revisions.insert(node.to_string(), revision);
    }
}

fn node_of<'a>(key: &'a [u8], prefix: &str) -> Option<&'a str> {
    std::str::from_utf8(key.get(prefix.len()..)?).ok()
}

struct MembersFollower {
    shared: Arc<Shared>,
    prefix: String,
}

impl MembersFollower {
    fn put_kv(&self, view: &mut View, kv: &KeyValue) {
        let Some(node) = node_of(kv.key(), &self.prefix) else {
            return;
        };
        match serde_json::from_slice::<MemberRecord>(kv.value()) {
            Ok(record) => self.shared.put_record(view, node, record, kv.mod_revision()),
            Err(e) => tracing::error!(node, error = %e, "a member record in etcd does not decode"),
        }
    }
}

impl Follower for MembersFollower {
    fn snapshot(&mut self, kvs: &[KeyValue], revision: i64) {
        let mut view = self.shared.view.lock();
        view.table.members.clear();
        view.record_revisions.clear();
        for kv in kvs {
            self.put_kv(&mut view, kv);
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
            // Its registration ran out: a minute without a renewal, far beyond any lease.
            view.table.members.remove(node);
            view.record_revisions.remove(node);
        }
        view.revision = view.revision.max(revision);
        drop(view);
        self.shared.changed();
    }
}

struct AcksFollower {
    shared: Arc<Shared>,
    prefix: String,
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

struct AnsweredFollower {
    shared: Arc<Shared>,
}

impl Follower for AnsweredFollower {
    fn snapshot(&mut self, kvs: &[KeyValue], _revision: i64) {
        for kv in kvs {
            self.put(kv);
        }
    }

    fn put(&mut self, kv: &KeyValue) {
        let mut view = self.shared.view.lock();
        if kv.mod_revision() > view.answered_revision {
            view.answered_revision = kv.mod_revision();
            if let Some(answered) = parse_seq(kv.value()) {
                view.table.answered_max = view.table.answered_max.max(answered);
            }
        }
        drop(view);
        self.shared.changed();
    }

    fn delete(&mut self, _key: &[u8], _revision: i64) {}
}

/// The membership table in etcd.
pub struct EtcdMembership {
    client: Client,
    keys: Keys,
    lease: Duration,
    shared: Arc<Shared>,
    /// Each node's etcd lease (its registration), with when it was granted.
    registrations: Mutex<HashMap<String, (i64, Instant)>>,
    /// Acks not yet written, the highest per node.
    pending_acks: Arc<Mutex<HashMap<String, u64>>>,
    acks_waiting: Arc<Notify>,
}

fn unavailable(e: etcd_client::Error) -> MembershipError {
    MembershipError::Unavailable(format!("etcd: {e}"))
}

impl EtcdMembership {
    /// Follows the table under `keys`; returns once this replica has read all of it.
    pub(crate) async fn open(client: Client, keys: Keys, lease: Duration, lease_bound: Duration) -> Self {
        let shared = Arc::new(Shared {
            view: Mutex::new(View::default()),
            changed: watch::channel(0).0,
            lease_bound,
        });
        let (members_ready, members_read) = oneshot::channel();
        let (acks_ready, acks_read) = oneshot::channel();
        let (answered_ready, answered_read) = oneshot::channel();
        tokio::spawn(follow(
            client.clone(),
            keys.members(),
            MembersFollower {
                shared: shared.clone(),
                prefix: keys.members(),
            },
            Some(members_ready),
        ));
        tokio::spawn(follow(
            client.clone(),
            keys.acks(),
            AcksFollower {
                shared: shared.clone(),
                prefix: keys.acks(),
            },
            Some(acks_ready),
        ));
        tokio::spawn(follow(
            client.clone(),
            keys.answered(),
            AnsweredFollower { shared: shared.clone() },
            Some(answered_ready),
        ));
        let _ = tokio::join!(members_read, acks_read, answered_read);
        let membership = Self {
            client,
            keys,
            lease,
            shared,
            registrations: Mutex::new(HashMap::new()),
            pending_acks: Arc::default(),
            acks_waiting: Arc::default(),
        };
        membership.start_ack_writer();
        membership
    }

    /// Writes acks in batches, one transaction at a time, so each replica's writes of a node's
    /// ack only ever rise.
    fn start_ack_writer(&self) {
        let (pending, waiting) = (self.pending_acks.clone(), self.acks_waiting.clone());
        let (mut client, keys) = (self.client.clone(), self.keys.clone());
        tokio::spawn(async move {
            loop {
                waiting.notified().await;
                let batch: Vec<(String, u64)> = pending.lock().drain().collect();
                for chunk in batch.chunks(ACKS_PER_TXN) {
                    let writes: Vec<TxnOp> = chunk
                        .iter()
                        .map(|(node, applied)| TxnOp::put(keys.ack(node), padded(*applied), None))
                        .collect();
                    if let Err(e) = timed("ack", client.txn(Txn::new().and_then(writes))).await {
                        // The nodes' next renewals carry what they applied.
                        tracing::warn!(error = %e, "writing acks to etcd failed");
                    }
                }
            }
        });
    }

    /// The etcd lease that keeps `node` registered.
    async fn registration(&self, node: &str) -> Result<i64, MembershipError> {
        if let Some((id, granted)) = self.registrations.lock().get(node).copied()
            && granted.elapsed() < REGISTRATION_RENEW_AFTER
        {
            return Ok(id);
        }
        let granted = Instant::now();
        let answer = timed(
            "lease_grant",
            self.client.clone().lease_grant(REGISTRATION_TTL_SECS, None),
        )
        .await
        .map_err(unavailable)?;
        self.registrations
            .lock()
            .insert(node.to_string(), (answer.id(), granted));
        Ok(answer.id())
    }

    /// Whether purge `seq`, complete in the view as of `revision`, may be answered: raises
    /// `answered` unless a member's record changed after `revision`. True also when another
    /// replica answered it (or a later one) first.
    async fn confirm(&self, seq: u64) -> Result<bool, MembershipError> {
        let (revision, answered_revision, answered) = {
            let view = self.shared.view.lock();
            (view.revision, view.answered_revision, view.table.answered_max)
        };
        if answered >= seq {
            return Ok(true);
        }
        let members = self.keys.members();
        let txn = Txn::new()
            .when([
                Compare::mod_revision(members.clone(), CompareOp::Less, revision + 1).with_range(prefix_end(&members)),
                Compare::mod_revision(self.keys.answered(), CompareOp::Equal, answered_revision),
            ])
            .and_then([TxnOp::put(self.keys.answered(), padded(seq), None)])
            .or_else([TxnOp::get(self.keys.answered(), None)]);
        let answer = timed("answer", self.client.clone().txn(txn))
            .await
            .map_err(unavailable)?;
        let mut view = self.shared.view.lock();
        if answer.succeeded() {
            let revision = answer.header().map_or(0, |h| h.revision());
            view.answered_revision = view.answered_revision.max(revision);
            view.table.answered_max = view.table.answered_max.max(seq);
            return Ok(true);
        }
        for response in answer.op_responses() {
            if let TxnOpResponse::Get(get) = response
                && let Some(kv) = get.kvs().first()
                && kv.mod_revision() > view.answered_revision
            {
                view.answered_revision = kv.mod_revision();
                let answered = parse_seq(kv.value()).unwrap_or(0);
                view.table.answered_max = view.table.answered_max.max(answered);
            }
        }
        Ok(view.table.answered_max >= seq)
    }

    /// Reads the node's record and `answered` again after a renewal lost a race.
    async fn reread(&self, node: &str) -> Result<(), MembershipError> {
        let mut client = self.client.clone();
        let record = timed("range", client.get(self.keys.member(node), None))
            .await
            .map_err(unavailable)?;
        let answered = timed("range", client.get(self.keys.answered(), None))
            .await
            .map_err(unavailable)?;
        let mut view = self.shared.view.lock();
        for kv in record.kvs() {
            if let Ok(record) = serde_json::from_slice::<MemberRecord>(kv.value()) {
                self.shared.put_record(&mut view, node, record, kv.mod_revision());
            }
        }
        for kv in answered.kvs() {
            if kv.mod_revision() > view.answered_revision {
                view.answered_revision = kv.mod_revision();
                let value = parse_seq(kv.value()).unwrap_or(0);
                view.table.answered_max = view.table.answered_max.max(value);
            }
        }
        Ok(())
    }

    fn status_now(&self, seq: u64) -> PurgeStatus {
        self.shared.view.lock().table.status(seq, Instant::now(), None)
    }
}

#[async_trait::async_trait]
impl Membership for EtcdMembership {
    async fn renew(&self, request: &LeaseRequest, head: u64) -> Result<LeaseResponse, MembershipError> {
        // The lease runs from no earlier than now on the node's count.
        let received = Instant::now();
        let mut registration = self.registration(&request.node).await?;
        let key = self.keys.member(&request.node);
        for _ in 0..RENEW_ATTEMPTS {
            let (record, response, record_revision, answered_revision) = {
                let view = self.shared.view.lock();
                let (record, response) = view.table.plan_renewal(request, head, self.lease, received);
                let record_revision = view.record_revisions.get(&request.node).copied().unwrap_or(0);
                (record, response, record_revision, view.answered_revision)
            };
            let value = serde_json::to_vec(&record).expect("a member record serializes");
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(key.clone(), CompareOp::Equal, record_revision),
                    Compare::mod_revision(self.keys.answered(), CompareOp::Equal, answered_revision),
                ])
                .and_then([TxnOp::put(
                    key.clone(),
                    value,
                    Some(PutOptions::new().with_lease(registration)),
                )]);
            match timed("renew", self.client.clone().txn(txn)).await {
                Ok(answer) if answer.succeeded() => {
                    let revision = answer.header().map_or(0, |h| h.revision());
                    let mut view = self.shared.view.lock();
                    let known = view.record_revisions.get(&request.node).copied().unwrap_or(0);
                    if revision > known {
                        // Taken at the time the request came in, not when the write returned.
                        view.table
                            .apply_record(&request.node, record, received, self.shared.lease_bound);
                        view.record_revisions.insert(request.node.clone(), revision);
                    }
                    drop(view);
                    self.shared.changed();
                    return Ok(response);
                }
                Ok(_) => self.reread(&request.node).await?,
                Err(e) if e.to_string().contains("lease not found") => {
                    self.registrations.lock().remove(&request.node);
                    registration = self.registration(&request.node).await?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(MembershipError::Unavailable(format!(
            "{}'s record kept changing; try again",
            request.node
        )))
    }

    async fn ack(&self, node: &str, applied: u64, head: u64) -> Result<(), MembershipError> {
        if applied > head {
            return Err(MembershipError::Refused(format!(
                "{node} cannot have applied {applied}: the log's head is {head}"
            )));
        }
        let known = self
            .shared
            .view
            .lock()
            .table
            .raise_applied(node, applied, Instant::now());
        if !known {
            return Err(MembershipError::Refused(format!(
                "unknown node {node}: request a lease first"
            )));
        }
        let mut pending = self.pending_acks.lock();
        let entry = pending.entry(node.to_string()).or_default();
        *entry = (*entry).max(applied);
        drop(pending);
        self.acks_waiting.notify_one();
        self.shared.changed();
        Ok(())
    }

    async fn status(&self, seq: u64) -> PurgeStatus {
        let mut status = self.status_now(seq);
        if status.complete {
            status.complete = self.confirm(seq).await.unwrap_or(false);
        }
        status
    }

    async fn wait_complete(&self, seq: u64, limit: Duration) -> PurgeStatus {
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.shared.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let pending = self.shared.view.lock().table.pending_until(seq, Instant::now(), None);
            let wake = match pending {
                None => match self.confirm(seq).await {
                    Ok(true) => {
                        let mut status = self.status_now(seq);
                        status.complete = true;
                        return status;
                    }
                    // A record changed after the view: its news is on the way.
                    Ok(false) => tokio::time::Instant::now() + Duration::from_millis(20),
                    Err(e) => {
                        tracing::warn!(seq, error = %e, "a purge cannot be answered while etcd is out of reach");
                        tokio::time::Instant::now() + Duration::from_millis(100)
                    }
                },
                Some(expiry) => tokio::time::Instant::from_std(expiry),
            };
            if tokio::time::Instant::now() >= deadline {
                let mut status = self.status_now(seq);
                status.complete = false;
                return status;
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(wake.min(deadline)) => {}
            }
        }
    }

    fn list(&self) -> Vec<MemberView> {
        self.shared.view.lock().table.list(Instant::now())
    }

    fn counts(&self, head: u64) -> (usize, usize) {
        self.shared.view.lock().table.counts(head, Instant::now())
    }
}
