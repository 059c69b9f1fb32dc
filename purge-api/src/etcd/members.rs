//! [`Membership`] in etcd: every replica keeps the same table, followed from etcd
//! ([`super::view`]), and decides as [`crate::members::Table`] says; etcd's transactions make
//! the decisions of different replicas agree.
//!
//! - A grant is written on the condition that the node's record is the one it was decided on
//!   and that `answered` is not beyond what the node has applied: a grant cannot overlook a
//!   purge another replica has just answered.
//! - A purge is answered (`answered` raised) on the condition that no member was created after
//!   the view it was decided on, and that every member that has not applied it (its lease ran
//!   out) is still as seen: a grant made meanwhile to one of them sends the answer back to
//!   wait for that node.
//! - A lease this replica learns of from etcd is taken as granted when it learnt it, which is
//!   after it was granted; its holder's own count started before. A replica that starts takes
//!   every lease that may be held as granted then, and answers nothing for one lease bound
//!   (leases etcd cannot show, such as those of a cluster restored from a backup).
//! - Acks are facts a node states: taken at once here, written to etcd in batches for the
//!   others. A lost batch only delays completion elsewhere until the node's next renewal,
//!   which carries what it has applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use fresco_protocol::{LeaseRequest, LeaseResponse};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::follow::follow;
use super::view::{AcksFollower, AnsweredFollower, DecidedOn, MembersFollower, Shared};
use super::{Etcd, Keys, padded, parse_seq, prefix_end};
use crate::members::{AckRoute, FORGOTTEN_AFTER, MemberRecord, MemberView, Membership, MembershipError, PurgeStatus};

/// A registration is renewed (a new etcd lease) once it is this old.
const REGISTRATION_RENEW_AFTER: Duration = Duration::from_secs(20);
/// Attempts of a renewal whose record another replica changed meanwhile.
const RENEW_ATTEMPTS: usize = 8;
/// Acks per transaction (etcd's limit is 128 operations).
const ACKS_PER_TXN: usize = 100;
/// How long the ack writer gathers acks before it writes them.
const ACK_GATHERING: Duration = Duration::from_millis(1);

/// The membership table in etcd.
pub struct EtcdMembership {
    etcd: Etcd,
    keys: Keys,
    lease: Duration,
    shared: Arc<Shared>,
    /// Until then no purge completes: leases granted before this replica started, which etcd
    /// may not show, may still be held.
    leases_unknown_until: Instant,
    /// How long a registration outlives its last renewal: beyond the member list's minute and
    /// any lease granted with it.
    registration_ttl_secs: i64,
    /// Each node's etcd lease (its registration), with when it was granted.
    registrations: Mutex<HashMap<String, (i64, Instant)>>,
    /// Acks not yet written, the highest per node.
    pending_acks: Arc<Mutex<HashMap<String, u64>>>,
    acks_waiting: Arc<Notify>,
    /// One answer written at a time: the purges waiting meanwhile are mostly answered by it.
    answering: tokio::sync::Mutex<()>,
    /// The log's head: no answer goes beyond it.
    heads: tokio::sync::watch::Receiver<u64>,
}

fn unavailable(e: etcd_client::Error) -> MembershipError {
    MembershipError::Unavailable(format!("etcd: {e}"))
}

fn lease_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::NotFound)
}

impl EtcdMembership {
    /// Follows the table under `keys`; returns once this replica has read all of it.
    pub(crate) async fn open(
        etcd: Etcd,
        keys: Keys,
        lease: Duration,
        lease_bound: Duration,
        heads: tokio::sync::watch::Receiver<u64>,
    ) -> Result<Self, String> {
        // `answered` exists from the start, so that a grant can compare its value.
        let create = Txn::new()
            .when([Compare::create_revision(keys.answered(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(keys.answered(), padded(0), None)]);
        etcd.txn("answer", create).await.map_err(|e| format!("etcd: {e}"))?;
        let shared = Arc::new(Shared::new(lease_bound));
        let (members_ready, members_read) = oneshot::channel();
        let (acks_ready, acks_read) = oneshot::channel();
        let (answered_ready, answered_read) = oneshot::channel();
        let members = MembersFollower {
            shared: shared.clone(),
            prefix: keys.members(),
        };
        tokio::spawn(follow(etcd.client(), keys.members(), members, Some(members_ready)));
        let acks = AcksFollower {
            shared: shared.clone(),
            prefix: keys.acks(),
        };
        tokio::spawn(follow(etcd.client(), keys.acks(), acks, Some(acks_ready)));
        let answered = AnsweredFollower { shared: shared.clone() };
        tokio::spawn(follow(etcd.client(), keys.answered(), answered, Some(answered_ready)));
        let _ = tokio::join!(members_read, acks_read, answered_read);
        let membership = Self {
            etcd,
            keys,
            lease,
            shared,
            leases_unknown_until: Instant::now() + lease_bound,
            registration_ttl_secs: (FORGOTTEN_AFTER + REGISTRATION_RENEW_AFTER + lease_bound)
                .as_secs()
                .saturating_add(1) as i64,
            registrations: Mutex::new(HashMap::new()),
            pending_acks: Arc::default(),
            acks_waiting: Arc::default(),
            answering: tokio::sync::Mutex::new(()),
            heads,
        };
        membership.start_ack_writer();
        Ok(membership)
    }

    /// Writes acks in batches, one transaction at a time, so each replica's writes of a node's
    /// ack only ever rise.
    fn start_ack_writer(&self) {
        let (pending, waiting) = (self.pending_acks.clone(), self.acks_waiting.clone());
        let (etcd, keys) = (self.etcd.clone(), self.keys.clone());
        tokio::spawn(async move {
            loop {
                waiting.notified().await;
                // Every node acks each purge within a few milliseconds of the others: gathering
                // them makes one write of what would be one per node.
                tokio::time::sleep(ACK_GATHERING).await;
                let batch: Vec<(String, u64)> = pending.lock().drain().collect();
                for chunk in batch.chunks(ACKS_PER_TXN) {
                    let writes: Vec<TxnOp> = chunk
                        .iter()
                        .map(|(node, applied)| TxnOp::put(keys.ack(node), padded(*applied), None))
                        .collect();
                    if let Err(e) = etcd.txn("ack", Txn::new().and_then(writes)).await {
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
        let answer = self
            .etcd
            .lease_grant(self.registration_ttl_secs)
            .await
            .map_err(unavailable)?;
        self.registrations
            .lock()
            .insert(node.to_string(), (answer.id(), granted));
        Ok(answer.id())
    }

    /// Whether purge `seq`, complete in the view as `decided` says, may be answered: raises
    /// `answered` unless what it was decided on changed. True also when another replica
    /// answered it (or a later one) first.
    async fn confirm(&self, seq: u64, decided: DecidedOn) -> Result<bool, MembershipError> {
        let members = self.keys.members();
        let mut compares = Vec::new();
        match decided.lagging {
            Some(lagging) => {
                compares.push(
                    Compare::create_revision(members.clone(), CompareOp::Less, decided.revision + 1)
                        .with_range(prefix_end(&members)),
                );
                compares.extend(lagging.into_iter().map(|(node, revision)| {
                    Compare::mod_revision(self.keys.member(&node), CompareOp::Equal, revision)
                }));
            }
            None => compares.push(
                Compare::mod_revision(members.clone(), CompareOp::Less, decided.revision + 1)
                    .with_range(prefix_end(&members)),
            ),
        }
        compares.push(Compare::value(self.keys.answered(), CompareOp::Less, padded(seq)));
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::put(self.keys.answered(), padded(seq), None)])
            .or_else([TxnOp::get(self.keys.answered(), None)]);
        let answer = self.etcd.txn("answer", txn).await.map_err(unavailable)?;
        let mut view = self.shared.view.lock();
        if answer.succeeded() {
            let revision = answer.header().map_or(0, |h| h.revision());
            view.learn_answered(seq, revision);
            return Ok(true);
        }
        for response in answer.op_responses() {
            if let TxnOpResponse::Get(get) = response
                && let Some(kv) = get.kvs().first()
            {
                view.learn_answered(parse_seq(kv.value()).unwrap_or(0), kv.mod_revision());
            }
        }
        Ok(view.table.answered_max >= seq)
    }

    /// Reads the node's record again after a renewal lost a race.
    async fn reread(&self, node: &str) -> Result<(), MembershipError> {
        let record = self
            .etcd
            .get("range", self.keys.member(node), None)
            .await
            .map_err(unavailable)?;
        let mut view = self.shared.view.lock();
        match record.kvs().first() {
            Some(kv) => match serde_json::from_slice::<MemberRecord>(kv.value()) {
                Ok(record) => self.shared.put_record(&mut view, node, record, kv.mod_revision()),
                Err(e) => return Err(MembershipError::Unavailable(format!("{node}'s record: {e}"))),
            },
            None => self.shared.forget(&mut view, node),
        }
        Ok(())
    }

    fn status_now(&self, seq: u64) -> PurgeStatus {
        self.shared
            .view
            .lock()
            .table
            .status(seq, Instant::now(), Some(self.leases_unknown_until))
    }

    /// The view's decision on `seq`, confirmed in etcd when it is complete: `Ok` when it may
    /// be answered, else when to look again. What is confirmed is the highest purge every
    /// lease holder has applied, so one write answers every purge waiting up to it.
    async fn complete(&self, seq: u64, deadline: tokio::time::Instant) -> Result<(), tokio::time::Instant> {
        let answered = || self.shared.view.lock().table.answered_max >= seq;
        if answered() {
            return Ok(());
        }
        // While etcd is out of reach each answer takes the whole budget: a waiter queues only
        // until its own deadline.
        let Ok(_answering) = tokio::time::timeout_at(deadline, self.answering.lock()).await else {
            return Err(deadline);
        };
        if answered() {
            return Ok(());
        }
        let head = *self.heads.borrow();
        let decided = {
            let view = self.shared.view.lock();
            let now = Instant::now();
            match view.decide(seq, now, Some(self.leases_unknown_until)) {
                Ok(_) => {
                    let through = view.answerable_through(seq, now).min(head.max(seq));
                    view.decide(through, now, Some(self.leases_unknown_until))
                        .map(|decided| (through, decided))
                }
                Err(pending) => Err(pending),
            }
        };
        match decided {
            Err(pending) => Err(pending.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)),
            Ok((through, decided)) => match self.confirm(through, decided).await {
                Ok(true) => Ok(()),
                // Something changed after the view: its news is on the way.
                Ok(false) => Err(tokio::time::Instant::now() + Duration::from_millis(20)),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "a purge cannot be answered while etcd is out of reach");
                    Err(tokio::time::Instant::now() + Duration::from_millis(100))
                }
            },
        }
    }
}

#[async_trait::async_trait]
impl Membership for EtcdMembership {
    async fn renew(&self, request: &LeaseRequest, head: u64) -> Result<LeaseResponse, MembershipError> {
        // The lease runs from no earlier than now on the node's count.
        let received = Instant::now();
        let deadline = received + self.lease;
        let mut registration = self.registration(&request.node).await?;
        let key = self.keys.member(&request.node);
        for _ in 0..RENEW_ATTEMPTS {
            let (record, response, record_revision) = {
                let view = self.shared.view.lock();
                let (record, response) = view.table.plan_renewal(request, head, self.lease, received);
                let record_revision = view.record_revisions.get(&request.node).copied().unwrap_or(0);
                (record, response, record_revision)
            };
            let mut compares = vec![Compare::mod_revision(key.clone(), CompareOp::Equal, record_revision)];
            if record.granted {
                // Nothing answered beyond what the node has applied.
                compares.push(Compare::value(
                    self.keys.answered(),
                    CompareOp::Less,
                    padded(record.applied + 1),
                ));
            }
            let value = serde_json::to_vec(&record).expect("a member record serializes");
            let put = TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(registration)));
            let txn = Txn::new()
                .when(compares)
                .and_then([put])
                .or_else([TxnOp::get(self.keys.answered(), None)]);
            match self.etcd.txn("renew", txn).await {
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
                Ok(answer) => {
                    for response in answer.op_responses() {
                        if let TxnOpResponse::Get(get) = response
                            && let Some(kv) = get.kvs().first()
                        {
                            let answered = parse_seq(kv.value()).unwrap_or(0);
                            self.shared.view.lock().learn_answered(answered, kv.mod_revision());
                        }
                    }
                    self.reread(&request.node).await?;
                }
                Err(e) if lease_not_found(&e) => {
                    self.registrations.lock().remove(&request.node);
                    registration = self.registration(&request.node).await?;
                }
                Err(e) => return Err(unavailable(e)),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(MembershipError::Unavailable(format!(
            "{}'s record kept changing; try again",
            request.node
        )))
    }

    async fn ack(&self, node: &str, applied: u64, head: u64, route: AckRoute) -> Result<(), MembershipError> {
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
        if route == AckRoute::Followed {
            let mut pending = self.pending_acks.lock();
            let entry = pending.entry(node.to_string()).or_default();
            *entry = (*entry).max(applied);
            drop(pending);
            self.acks_waiting.notify_one();
        }
        self.shared.changed();
        Ok(())
    }

    async fn status(&self, seq: u64) -> PurgeStatus {
        let mut status = self.status_now(seq);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        status.complete = self.complete(seq, deadline).await.is_ok();
        status
    }

    async fn wait_complete(&self, seq: u64, limit: Duration) -> PurgeStatus {
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.shared.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let wake = match self.complete(seq, deadline).await {
                Ok(()) => {
                    let mut status = self.status_now(seq);
                    status.complete = true;
                    return status;
                }
                Err(wake) => wake,
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
