//! The nodes, their leases and what each has applied; when a purge is complete.
//!
//! The rules (docs/freshness.md has the argument):
//! - A lease is granted only to a node that has applied every purge ever answered with 200
//!   (`answered_max`) and the head it was shown at its previous renewal. A node that stops
//!   making progress therefore loses its lease within two renewals.
//! - Purge N is complete when every node holding a lease has applied N. A node whose lease
//!   has *surely* expired (L·(1+ρ)+margin after the grant, on purge-api's clock) no longer
//!   counts: it is fenced and will not serve mutable objects until it has caught up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fresco_protocol::{LeaseRequest, LeaseResponse, Role};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

struct Member {
    role: Role,
    address: String,
    admin: Option<String>,
    applied: u64,
    shown_head: u64,
    lease_until: Option<Instant>,
    last_seen: Instant,
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

struct State {
    members: BTreeMap<String, Member>,
    answered_max: u64,
}

impl State {
    /// Reports purge `seq` complete to someone: from now on a lease needs it applied. Called
    /// under the same lock as the completion check, so no renewal slips in between.
    fn answer(&mut self, seq: u64) {
        self.answered_max = self.answered_max.max(seq);
    }
}

/// Whether a purge-api on this data dir ever granted a lease: a file written and synced before
/// the first lease a process grants. A restarted purge-api cannot see the leases its previous
/// process granted, and an empty log does not mean there were none: with this record it waits
/// them out whatever its log holds.
pub struct GrantRecord {
    path: Option<PathBuf>,
    written: AtomicBool,
}

impl GrantRecord {
    /// The record kept in `dir` (purge-api's data dir).
    pub fn in_dir(dir: &Path) -> Self {
        let path = dir.join("leases-granted");
        Self {
            written: AtomicBool::new(path.exists()),
            path: Some(path),
        }
    }

    /// A record that starts empty and is never kept (tests).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            written: AtomicBool::new(false),
        }
    }

    /// Whether a lease was granted on this data dir before this process.
    fn granted_before(&self) -> bool {
        self.path.as_ref().is_some_and(|p| p.exists())
    }

    /// Records, durably and once, that a lease is about to be granted.
    fn record(&self) {
        if self.written.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(path) = &self.path else { return };
        let written = std::fs::File::create(path).and_then(|f| f.sync_all());
        if let Err(e) = written {
            // Only a restart right after this one is less safe: it waits out old leases only
            // if its log is not empty. Said loudly, not fatal.
            tracing::error!(error = %e, path = %path.display(), "could not record that leases were granted");
        }
    }
}

/// The membership table, shared by the HTTP handlers.
pub struct Members {
    state: Mutex<State>,
    /// Until then, leases granted by a previous purge-api process may still be held by nodes
    /// this one has not heard from: no purge is complete before it.
    leases_unknown_until: Instant,
    lease: Duration,
    lease_bound: Duration,
    changed: watch::Sender<u64>,
    grants: GrantRecord,
}

impl Members {
    /// A table for leases of `lease` that purge-api takes as expired after `lease_bound`.
    /// `answered_max` starts at the log's head: after a restart, any logged purge may have been
    /// answered. For `lease_bound` no purge completes when leases may have been granted before
    /// (a non-empty log, or `grants` says so), since nodes may still hold them.
    pub fn new(lease: Duration, lease_bound: Duration, answered_max: u64, grants: GrantRecord) -> Self {
        let leases_may_be_held = answered_max > 0 || grants.granted_before();
        Self {
            state: Mutex::new(State {
                members: BTreeMap::new(),
                answered_max,
            }),
            // A data dir that never granted a lease has no node holding one.
            leases_unknown_until: Instant::now()
                + if leases_may_be_held {
                    lease_bound
                } else {
                    Duration::ZERO
                },
            lease,
            lease_bound,
            changed: watch::channel(0).0,
            grants,
        }
    }

    /// Handles a lease request; `head` is the log's head now.
    pub fn renew(&self, request: &LeaseRequest, head: u64) -> LeaseResponse {
        let now = Instant::now();
        let mut state = self.state.lock();
        let answered_max = state.answered_max;
        let member = state.members.entry(request.node.clone()).or_insert_with(|| Member {
            role: request.role,
            address: request.address.clone(),
            admin: request.admin.clone(),
            applied: 0,
            // First contact: the node must catch up to the head it is shown now.
            shown_head: head,
            lease_until: None,
            last_seen: now,
        });
        member.role = request.role;
        member.address.clone_from(&request.address);
        member.admin.clone_from(&request.admin);
        member.last_seen = now;
        let needed = answered_max.max(member.shown_head);
        // Checked before `applied` is raised: what a node claims beyond the head must not
        // count as applied, or it would count for purges this log has yet to write.
        if request.applied > head {
            // The node has applied sequences this log does not have (its data was lost or
            // restored): it must reset before it may hold a lease.
            member.shown_head = head;
            drop(state);
            return LeaseResponse {
                granted: false,
                lease_ms: self.lease.as_millis() as u64,
                head,
                reason: Some(format!(
                    "applied {} is ahead of the log's head {head}: reset",
                    request.applied
                )),
            };
        }
        member.applied = member.applied.max(request.applied);
        let granted = member.applied >= needed;
        let reason = if granted {
            self.grants.record();
            member.lease_until = Some(now + self.lease_bound);
            None
        } else {
            Some(format!("applied {} of {needed} needed", member.applied))
        };
        member.shown_head = head;
        drop(state);
        self.changed.send_modify(|v| *v += 1);
        LeaseResponse {
            granted,
            lease_ms: self.lease.as_millis() as u64,
            head,
            reason,
        }
    }

    /// Records that `node` has applied everything up to `applied`, which cannot be beyond the
    /// log's `head`: the error says why not.
    pub fn ack(&self, node: &str, applied: u64, head: u64) -> Result<(), String> {
        if applied > head {
            return Err(format!(
                "{node} cannot have applied {applied}: the log's head is {head}"
            ));
        }
        let mut state = self.state.lock();
        let Some(member) = state.members.get_mut(node) else {
            return Err(format!("unknown node {node}: request a lease first"));
        };
        member.applied = member.applied.max(applied);
        member.last_seen = Instant::now();
        drop(state);
        self.changed.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Where purge `seq` stands now, and the earliest time that could change by itself (a lease
    /// that will expire). A purge reported complete counts as answered from then on.
    pub fn status(&self, seq: u64) -> (PurgeStatus, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.state.lock();
        let mut status = PurgeStatus {
            seq,
            ..Default::default()
        };
        let mut next_expiry: Option<Instant> = (now < self.leases_unknown_until).then_some(self.leases_unknown_until);
        for (id, m) in &state.members {
            if m.applied >= seq {
                status.acked.push(id.clone());
            } else {
                match m.lease_until {
                    Some(until) if until > now => {
                        status.pending.push(id.clone());
                        next_expiry = Some(next_expiry.map_or(until, |e| e.min(until)));
                    }
                    _ => status.lease_expired.push(id.clone()),
                }
            }
        }
        status.complete = next_expiry.is_none();
        if status.complete {
            state.answer(seq);
        }
        (status, next_expiry)
    }

    /// Whether purge `seq` is complete, without building its status (every waiter checks on
    /// every ack); if not, when the first lease holder still missing it will surely expire.
    fn pending_until(&self, seq: u64) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let pending = state
            .members
            .values()
            .filter(|m| m.applied < seq)
            .filter_map(|m| m.lease_until.filter(|until| *until > now))
            .chain((now < self.leases_unknown_until).then_some(self.leases_unknown_until))
            .min();
        if pending.is_none() {
            state.answer(seq);
        }
        pending
    }

    /// Waits until purge `seq` is complete, or `limit` has passed; returns its status then.
    pub async fn wait_complete(&self, seq: u64, limit: Duration) -> PurgeStatus {
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let Some(next_expiry) = self.pending_until(seq) else {
                return self.status(seq).0;
            };
            let next_expiry = Some(next_expiry);
            let wake = next_expiry.map_or(deadline, |e| tokio::time::Instant::from_std(e).min(deadline));
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return self.status(seq).0;
                    }
                }
            }
        }
    }

    /// The members, for `GET /v1/members` (nodes not heard from for a minute are left out).
    pub fn list(&self) -> Vec<MemberView> {
        let now = Instant::now();
        let state = self.state.lock();
        state
            .members
            .iter()
            .filter(|(_, m)| now.duration_since(m.last_seen) < Duration::from_secs(60))
            .map(|(id, m)| MemberView {
                id: id.clone(),
                role: m.role,
                address: m.address.clone(),
                admin: m.admin.clone(),
                applied: m.applied,
                lease_ms_left: m
                    .lease_until
                    .map_or(0, |u| u.saturating_duration_since(now).as_millis() as u64),
                last_seen_ms: now.duration_since(m.last_seen).as_millis() as u64,
            })
            .collect()
    }

    /// (lease holders, nodes behind `head`) for the gauges.
    pub fn counts(&self, head: u64) -> (usize, usize) {
        let now = Instant::now();
        let state = self.state.lock();
        let leased = state
            .members
            .values()
            .filter(|m| m.lease_until.is_some_and(|u| u > now))
            .count();
        let lagging = state.members.values().filter(|m| m.applied < head).count();
        (leased, lagging)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(node: &str, applied: u64) -> LeaseRequest {
        LeaseRequest {
            node: node.into(),
            role: Role::Edge,
            address: "127.0.0.1:1".into(),
            admin: None,
            applied,
        }
    }

    #[test]
    fn a_lease_needs_the_head_that_was_shown_and_every_answered_purge() {
        let m = Members::new(
            Duration::from_secs(2),
            Duration::from_millis(2200),
            0,
            GrantRecord::in_memory(),
        );
        // First contact at head 5: not yet caught up.
        assert!(!m.renew(&lease("e1", 0), 5).granted);
        assert!(
            m.renew(&lease("e1", 5), 7).granted,
            "caught up with the head it was shown"
        );
        assert!(!m.renew(&lease("e1", 6), 9).granted, "shown 7, applied only 6");
    }

    #[test]
    fn a_stalled_node_loses_its_lease_at_the_second_renewal() {
        let m = Members::new(
            Duration::from_secs(2),
            Duration::from_millis(2200),
            0,
            GrantRecord::in_memory(),
        );
        m.renew(&lease("e1", 0), 0);
        assert!(m.renew(&lease("e1", 0), 0).granted);
        assert!(m.renew(&lease("e1", 0), 3).granted, "head 3 was not shown before");
        assert!(!m.renew(&lease("e1", 0), 3).granted, "shown 3, applied 0");
    }

    #[test]
    fn a_purge_completes_when_every_lease_holder_acked() {
        let m = Members::new(
            Duration::from_secs(2),
            Duration::from_millis(2200),
            0,
            GrantRecord::in_memory(),
        );
        for node in ["e1", "e2"] {
            m.renew(&lease(node, 0), 0);
            assert!(m.renew(&lease(node, 0), 0).granted);
        }
        assert!(!m.status(1).0.complete);
        m.ack("e1", 1, 1).unwrap();
        let (status, _) = m.status(1);
        assert_eq!(
            (status.acked.clone(), status.pending.clone()),
            (vec!["e1".into()], vec!["e2".into()])
        );
        m.ack("e2", 1, 1).unwrap();
        assert!(m.status(1).0.complete);
        assert!(m.status(1).0.complete, "reporting it complete answers it");
        assert!(
            !m.renew(&lease("e3", 0), 1).granted,
            "a newcomer must apply answered purges first"
        );
    }

    #[test]
    fn after_a_restart_no_purge_completes_until_old_leases_surely_expired() {
        let m = Members::new(
            Duration::from_millis(100),
            Duration::from_millis(150),
            7,
            GrantRecord::in_memory(),
        );
        assert!(
            !m.status(8).0.complete,
            "a node may hold a lease from before the restart"
        );
        std::thread::sleep(Duration::from_millis(160));
        assert!(m.status(8).0.complete);
    }

    #[test]
    fn a_restart_on_an_empty_log_still_waits_out_the_leases_granted_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = Members::new(
            Duration::from_millis(100),
            Duration::from_millis(150),
            0,
            GrantRecord::in_dir(dir.path()),
        );
        first.renew(&lease("e1", 0), 0);
        assert!(first.renew(&lease("e1", 0), 0).granted);
        drop(first);
        let restarted = Members::new(
            Duration::from_millis(100),
            Duration::from_millis(150),
            0,
            GrantRecord::in_dir(dir.path()),
        );
        assert!(
            !restarted.status(1).0.complete,
            "e1 may still hold the lease the previous process granted, though the log is empty"
        );
        std::thread::sleep(Duration::from_millis(160));
        assert!(restarted.status(1).0.complete);
    }

    #[test]
    fn a_node_ahead_of_the_log_gets_no_lease() {
        let m = Members::new(
            Duration::from_secs(2),
            Duration::from_millis(2200),
            0,
            GrantRecord::in_memory(),
        );
        let answer = m.renew(&lease("e1", 9), 3);
        assert!(!answer.granted);
        assert!(answer.reason.unwrap().contains("reset"));
        assert_eq!(
            m.list()[0].applied,
            0,
            "a claim beyond the head is not taken as applied"
        );
        assert!(m.ack("e1", 4, 3).unwrap_err().contains("head is 3"));
        assert!(m.ack("e1", u64::MAX, 3).is_err());
        assert!(
            m.status(1).0.acked.is_empty(),
            "no purge beyond the head counts as acked"
        );
    }

    #[tokio::test]
    async fn an_unresponsive_holder_stops_counting_when_its_lease_surely_expired() {
        let m = Members::new(
            Duration::from_millis(100),
            Duration::from_millis(150),
            0,
            GrantRecord::in_memory(),
        );
        m.renew(&lease("e1", 0), 0);
        assert!(m.renew(&lease("e1", 0), 0).granted);
        let started = Instant::now();
        let status = m.wait_complete(1, Duration::from_secs(5)).await;
        assert!(status.complete);
        assert_eq!(status.lease_expired, vec!["e1".to_string()]);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(140) && waited < Duration::from_millis(1000),
            "{waited:?}"
        );
    }
}
