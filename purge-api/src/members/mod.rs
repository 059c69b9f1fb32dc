//! The nodes, their leases and what each has applied; when a purge is complete.
//!
//! The rules (docs/freshness.md has the argument):
//! - A lease is granted only to a node that has applied every purge ever answered with 200
//!   (`answered_max`) and the head it was shown at its previous renewal. A node that stops
//!   making progress therefore loses its lease within two renewals.
//! - Purge N is complete when every node holding a lease has applied N. A node whose lease
//!   has *surely* expired (L·(1+ρ)+margin after the grant, on purge-api's clock) no longer
//!   counts: it is fenced and will not serve mutable objects until it has caught up.
//!
//! [`Membership`] is where these rules are kept: [`Members`] in this process's memory (one
//! purge-api), [`crate::etcd::EtcdMembership`] in etcd (replicas, which all see one table).
//! [`Table`] holds the rules themselves, for both.

mod local;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fresco_protocol::{LeaseRequest, LeaseResponse, Role};
use serde::{Deserialize, Serialize};

pub use self::local::{GrantRecord, Members};

/// Why a node-protocol call was not taken.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The call contradicts the log (409).
    #[error("{0}")]
    Refused(String),
    /// The shared table is out of reach (503); nothing was granted.
    #[error("membership unavailable: {0}")]
    Unavailable(String),
}

/// How an ack reached this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckRoute {
    /// From a node that follows this replica: counted, and shared with the other replicas.
    Followed,
    /// A copy of an ack the node sent to the replica it follows: counted here at once, left
    /// for that replica to share.
    Copy,
}

/// Leases, acks and purge completion, as purge-api's handlers use them.
///
/// Contract: a purge reported complete (by `wait_complete` or `status`) is one that every node
/// holding a lease granted by *any* process sharing this table has applied; from then on no
/// lease is granted to a node that has not applied it.
#[async_trait::async_trait]
pub trait Membership: Send + Sync + 'static {
    /// Handles a lease request; `head` is the log's head now.
    async fn renew(&self, request: &LeaseRequest, head: u64) -> Result<LeaseResponse, MembershipError>;
    /// Records that `node` has applied everything up to `applied`, which cannot be beyond the
    /// log's `head`.
    async fn ack(&self, node: &str, applied: u64, head: u64, route: AckRoute) -> Result<(), MembershipError>;
    /// Where purge `seq` stands now.
    async fn status(&self, seq: u64) -> PurgeStatus;
    /// Waits until purge `seq` is complete, or `limit` has passed; returns its status then.
    async fn wait_complete(&self, seq: u64, limit: Duration) -> PurgeStatus;
    /// The members, for `GET /v1/members` (nodes not heard from for a minute are left out).
    fn list(&self) -> Vec<MemberView>;
    /// (lease holders, nodes behind `head`) for the gauges.
    fn counts(&self, head: u64) -> (usize, usize);
}

/// What is known of a node, as one renewal leaves it; what the etcd backend stores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Edge or shield.
    pub role: Role,
    /// Where it serves.
    pub address: String,
    /// Where its admin endpoints are.
    pub admin: Option<String>,
    /// Highest sequence applied.
    pub applied: u64,
    /// The head it was shown last: its next lease needs it applied.
    pub shown_head: u64,
    /// This renewal granted a lease.
    pub granted: bool,
    /// A lease granted before (or by) this renewal may still be held.
    pub may_hold_lease: bool,
    /// How many leases the node was granted: a process that sees more than it counted missed a
    /// grant, and takes it as made now.
    #[serde(default)]
    pub grants: u64,
}

/// One node as a process sees it.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) record: MemberRecord,
    /// When its lease surely expires, on this process's clock.
    pub(crate) lease_until: Option<Instant>,
    /// The grants counted into `lease_until`.
    pub(crate) counted_grants: u64,
    pub(crate) last_seen: Instant,
}

/// Where a purge stands.
#[derive(Debug, Default, Serialize)]
pub struct PurgeStatus {
    /// The purge.
    pub seq: u64,
    /// Complete: no lease holder still has to apply it.
    pub complete: bool,
    /// Nodes that applied it.
    pub acked: Vec<String>,
    /// Lease holders that have not applied it yet.
    pub pending: Vec<String>,
    /// Nodes that have not applied it and whose lease has expired: they are fenced.
    pub lease_expired: Vec<String>,
}

/// One node in `GET /v1/members`.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Node id.
    pub id: String,
    /// Edge or shield.
    pub role: Role,
    /// Where it serves.
    pub address: String,
    /// Where its admin endpoints are (`/readyz`), when it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// Highest sequence applied.
    pub applied: u64,
    /// Milliseconds its lease has left (as purge-api bounds it); 0 when fenced.
    pub lease_ms_left: u64,
    /// Milliseconds since it was last heard from.
    pub last_seen_ms: u64,
}

/// Members not heard from for this long are left out of the list.
pub(crate) const FORGOTTEN_AFTER: Duration = Duration::from_secs(60);

/// The membership table and its rules, without any locking or storage.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) members: BTreeMap<String, Member>,
    /// The highest purge reported complete.
    pub(crate) answered_max: u64,
}

impl Table {
    /// What a renewal would write for `request` at `head`, and its answer; changes nothing.
    pub(crate) fn plan_renewal(
        &self,
        request: &LeaseRequest,
        head: u64,
        lease: Duration,
        now: Instant,
    ) -> (MemberRecord, LeaseResponse) {
        let existing = self.members.get(&request.node);
        // First contact: the node must catch up to the head it is shown now.
        let shown_head = existing.map_or(head, |m| m.record.shown_head);
        let applied_before = existing.map_or(0, |m| m.record.applied);
        let may_hold_lease = existing.is_some_and(|m| m.lease_until.is_some_and(|u| u > now));
        let needed = self.answered_max.max(shown_head);
        let mut record = MemberRecord {
            role: request.role,
            address: request.address.clone(),
            admin: request.admin.clone(),
            applied: applied_before,
            shown_head: head,
            granted: false,
            may_hold_lease,
            grants: existing.map_or(0, |m| m.record.grants),
        };
        let answer = |granted, reason| LeaseResponse {
            granted,
            lease_ms: lease.as_millis() as u64,
            head,
            reason,
        };
        // Checked before `applied` is raised: what a node claims beyond the head must not
        // count as applied, or it would count for purges this log has yet to write.
        if request.applied > head {
            // The node has applied sequences this log does not have (its data was lost or
            // restored): it must reset before it may hold a lease.
            let reason = format!("applied {} is ahead of the log's head {head}: reset", request.applied);
            return (record, answer(false, Some(reason)));
        }
        record.applied = applied_before.max(request.applied);
        record.granted = record.applied >= needed;
        record.may_hold_lease |= record.granted;
        record.grants += u64::from(record.granted);
        let reason = (!record.granted).then(|| format!("applied {} of {needed} needed", record.applied));
        let granted = record.granted;
        (record, answer(granted, reason))
    }

    /// Takes `record` as written for `node` at `now`: a grant is held until `now + bound` at
    /// the latest; one that may still be held but that this process never saw (it never
    /// counted the grant) is taken as granted now.
    pub(crate) fn apply_record(&mut self, node: &str, record: MemberRecord, now: Instant, bound: Duration) {
        let member = self.members.entry(node.to_string()).or_insert_with(|| Member {
            record: record.clone(),
            lease_until: None,
            counted_grants: 0,
            last_seen: now,
        });
        let applied = member.record.applied.max(record.applied);
        let missed_grant = record.grants > member.counted_grants || member.lease_until.is_none();
        if record.granted || (record.may_hold_lease && missed_grant) {
            let until = now + bound;
            member.lease_until = Some(member.lease_until.map_or(until, |u| u.max(until)));
        }
        member.counted_grants = member.counted_grants.max(record.grants);
        member.record = record;
        member.record.applied = applied;
        member.last_seen = now;
    }

    /// Raises what `node` has applied; false for a node this table does not know.
    pub(crate) fn raise_applied(&mut self, node: &str, applied: u64, now: Instant) -> bool {
        let Some(member) = self.members.get_mut(node) else {
            return false;
        };
        member.record.applied = member.record.applied.max(applied);
        member.last_seen = now;
        true
    }

    /// When the first lease holder still missing purge `seq` surely expires; `None`: it is
    /// complete. `unknown_until`: leases this table cannot see may be held until then.
    pub(crate) fn pending_until(&self, seq: u64, now: Instant, unknown_until: Option<Instant>) -> Option<Instant> {
        self.members
            .values()
            .filter(|m| m.record.applied < seq)
            .filter_map(|m| m.lease_until.filter(|until| *until > now))
            .chain(unknown_until.filter(|u| *u > now))
            .min()
    }

    /// Where purge `seq` stands, and the earliest time that could change by itself.
    pub(crate) fn status(&self, seq: u64, now: Instant, unknown_until: Option<Instant>) -> PurgeStatus {
        let mut status = PurgeStatus {
            seq,
            ..Default::default()
        };
        for (id, m) in &self.members {
            if m.record.applied >= seq {
                status.acked.push(id.clone());
            } else if m.lease_until.is_some_and(|until| until > now) {
                status.pending.push(id.clone());
            } else {
                status.lease_expired.push(id.clone());
            }
        }
        status.complete = self.pending_until(seq, now, unknown_until).is_none();
        status
    }

    pub(crate) fn list(&self, now: Instant) -> Vec<MemberView> {
        self.members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) < FORGOTTEN_AFTER)
            .map(|(id, m)| MemberView {
                id: id.clone(),
                role: m.record.role,
                address: m.record.address.clone(),
                admin: m.record.admin.clone(),
                applied: m.record.applied,
                lease_ms_left: m
                    .lease_until
                    .map_or(0, |u| u.saturating_duration_since(now).as_millis() as u64),
                last_seen_ms: now.duration_since(m.last_seen).as_millis() as u64,
            })
            .collect()
    }

    pub(crate) fn counts(&self, head: u64, now: Instant) -> (usize, usize) {
        let leased = self
            .members
            .values()
            .filter(|m| m.lease_until.is_some_and(|u| u > now))
            .count();
        let lagging = self.members.values().filter(|m| m.record.applied < head).count();
        (leased, lagging)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(applied: u64, granted: bool, may_hold_lease: bool, grants: u64) -> MemberRecord {
        MemberRecord {
            role: Role::Edge,
            address: "127.0.0.1:1".into(),
            admin: None,
            applied,
            shown_head: applied,
            granted,
            may_hold_lease,
            grants,
        }
    }

    #[test]
    fn a_grant_this_process_never_saw_counts_as_made_when_it_hears_of_it() {
        let bound = Duration::from_millis(50);
        let mut table = Table::default();
        let start = Instant::now();
        table.apply_record("e1", record(1, true, true, 1), start, bound);
        // Its first lease has run out here; another process granted a second one, and what
        // arrives is a later renewal that did not grant but says a lease may be held.
        let later = start + Duration::from_millis(200);
        table.apply_record("e1", record(1, false, true, 2), later, bound);
        assert!(
            table.pending_until(2, later, None).is_some(),
            "the missed grant is taken as made when its news came"
        );
        // The same news again changes nothing: that grant is counted.
        let much_later = later + Duration::from_millis(200);
        table.apply_record("e1", record(1, false, true, 2), much_later, bound);
        assert!(table.pending_until(2, much_later, None).is_none());
    }

    #[test]
    fn a_renewal_counts_its_grants_and_never_lowers_what_was_applied() {
        let mut table = Table::default();
        let now = Instant::now();
        let request = LeaseRequest {
            node: "e1".into(),
            role: Role::Edge,
            address: "127.0.0.1:1".into(),
            admin: None,
            applied: 4,
        };
        let (first, answer) = table.plan_renewal(&request, 4, Duration::from_secs(1), now);
        assert!(answer.granted && first.grants == 1);
        table.apply_record("e1", first, now, Duration::from_secs(1));
        let (second, _) = table.plan_renewal(&LeaseRequest { applied: 2, ..request }, 4, Duration::from_secs(1), now);
        assert_eq!((second.applied, second.grants), (4, 2));
    }
}
