//! [`Membership`] in this process's memory: one purge-api.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fresco_protocol::{LeaseRequest, LeaseResponse};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{AckRoute, MemberView, Membership, MembershipError, PurgeStatus, Table};

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

/// The membership table of a single purge-api.
pub struct Members {
    table: Mutex<Table>,
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
            table: Mutex::new(Table {
                answered_max,
                ..Table::default()
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

    fn renew_now(&self, request: &LeaseRequest, head: u64) -> LeaseResponse {
        let now = Instant::now();
        let mut table = self.table.lock();
        let (record, response) = table.plan_renewal(request, head, self.lease, now);
        if record.granted {
            self.grants.record();
        }
        table.apply_record(&request.node, record, now, self.lease_bound);
        drop(table);
        self.changed.send_modify(|v| *v += 1);
        response
    }

    fn ack_now(&self, node: &str, applied: u64, head: u64) -> Result<(), MembershipError> {
        if applied > head {
            return Err(MembershipError::Refused(format!(
                "{node} cannot have applied {applied}: the log's head is {head}"
            )));
        }
        if !self.table.lock().raise_applied(node, applied, Instant::now()) {
            return Err(MembershipError::Refused(format!(
                "unknown node {node}: request a lease first"
            )));
        }
        self.changed.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Whether purge `seq` is complete, and if so answers it (under the same lock as the
    /// check, so no renewal slips in between); if not, when the first lease holder still
    /// missing it will surely expire.
    fn pending_until(&self, seq: u64) -> Option<Instant> {
        let mut table = self.table.lock();
        let pending = table.pending_until(seq, Instant::now(), Some(self.leases_unknown_until));
        if pending.is_none() {
            table.answered_max = table.answered_max.max(seq);
        }
        pending
    }

    fn status_now(&self, seq: u64) -> PurgeStatus {
        let mut table = self.table.lock();
        let status = table.status(seq, Instant::now(), Some(self.leases_unknown_until));
        if status.complete {
            table.answered_max = table.answered_max.max(seq);
        }
        status
    }
}

#[async_trait::async_trait]
impl Membership for Members {
    async fn renew(&self, request: &LeaseRequest, head: u64) -> Result<LeaseResponse, MembershipError> {
        Ok(self.renew_now(request, head))
    }

    async fn ack(&self, node: &str, applied: u64, head: u64, _route: AckRoute) -> Result<(), MembershipError> {
        // One process: nothing to share.
        self.ack_now(node, applied, head)
    }

    async fn status(&self, seq: u64) -> PurgeStatus {
        self.status_now(seq)
    }

    async fn wait_complete(&self, seq: u64, limit: Duration) -> PurgeStatus {
        let deadline = tokio::time::Instant::now() + limit;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let Some(next_expiry) = self.pending_until(seq) else {
                return self.status_now(seq);
            };
            let wake = tokio::time::Instant::from_std(next_expiry).min(deadline);
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        return self.status_now(seq);
                    }
                }
            }
        }
    }

    fn list(&self) -> Vec<MemberView> {
        self.table.lock().list(Instant::now())
    }

    fn counts(&self, head: u64) -> (usize, usize) {
        self.table.lock().counts(head, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use fresco_protocol::Role;

    use super::*;

    /// A table in memory for leases of `lease_ms`, surely expired after `bound_ms`.
    fn members(lease_ms: u64, bound_ms: u64, answered_max: u64) -> Members {
        Members::new(
            Duration::from_millis(lease_ms),
            Duration::from_millis(bound_ms),
            answered_max,
            GrantRecord::in_memory(),
        )
    }

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
        let m = members(2000, 2200, 0);
        // First contact at head 5: not yet caught up.
        assert!(!m.renew_now(&lease("e1", 0), 5).granted);
        assert!(
            m.renew_now(&lease("e1", 5), 7).granted,
            "caught up with the head it was shown"
        );
        assert!(!m.renew_now(&lease("e1", 6), 9).granted, "shown 7, applied only 6");
    }

    #[test]
    fn a_stalled_node_loses_its_lease_at_the_second_renewal() {
        let m = members(2000, 2200, 0);
        m.renew_now(&lease("e1", 0), 0);
        assert!(m.renew_now(&lease("e1", 0), 0).granted);
        assert!(m.renew_now(&lease("e1", 0), 3).granted, "head 3 was not shown before");
        assert!(!m.renew_now(&lease("e1", 0), 3).granted, "shown 3, applied 0");
    }

    #[test]
    fn a_purge_completes_when_every_lease_holder_acked() {
        let m = members(2000, 2200, 0);
        for node in ["e1", "e2"] {
            m.renew_now(&lease(node, 0), 0);
            assert!(m.renew_now(&lease(node, 0), 0).granted);
        }
        assert!(!m.status_now(1).complete);
        m.ack_now("e1", 1, 1).unwrap();
        let status = m.status_now(1);
        assert_eq!(
            (status.acked.clone(), status.pending.clone()),
            (vec!["e1".into()], vec!["e2".into()])
        );
        m.ack_now("e2", 1, 1).unwrap();
        assert!(m.status_now(1).complete);
        assert!(m.status_now(1).complete, "reporting it complete answers it");
        assert!(
            !m.renew_now(&lease("e3", 0), 1).granted,
            "a newcomer must apply answered purges first"
        );
    }

    #[test]
    fn after_a_restart_no_purge_completes_until_old_leases_surely_expired() {
        let m = members(100, 150, 7);
        assert!(
            !m.status_now(8).complete,
            "a node may hold a lease from before the restart"
        );
        std::thread::sleep(Duration::from_millis(160));
        assert!(m.status_now(8).complete);
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
        first.renew_now(&lease("e1", 0), 0);
        assert!(first.renew_now(&lease("e1", 0), 0).granted);
        drop(first);
        let restarted = Members::new(
            Duration::from_millis(100),
            Duration::from_millis(150),
            0,
            GrantRecord::in_dir(dir.path()),
        );
        assert!(
            !restarted.status_now(1).complete,
            "e1 may still hold the lease the previous process granted, though the log is empty"
        );
        std::thread::sleep(Duration::from_millis(160));
        assert!(restarted.status_now(1).complete);
    }

    #[test]
    fn a_node_ahead_of_the_log_gets_no_lease() {
        let m = members(2000, 2200, 0);
        let answer = m.renew_now(&lease("e1", 9), 3);
        assert!(!answer.granted);
        assert!(answer.reason.unwrap().contains("reset"));
        assert_eq!(
            m.list()[0].applied,
            0,
            "a claim beyond the head is not taken as applied"
        );
        assert!(m.ack_now("e1", 4, 3).unwrap_err().to_string().contains("head is 3"));
        assert!(m.ack_now("e1", u64::MAX, 3).is_err());
        assert!(
            m.status_now(1).acked.is_empty(),
            "no purge beyond the head counts as acked"
        );
    }

    #[tokio::test]
    async fn an_unresponsive_holder_stops_counting_when_its_lease_surely_expired() {
        let m = members(100, 150, 0);
        m.renew_now(&lease("e1", 0), 0);
        assert!(m.renew_now(&lease("e1", 0), 0).granted);
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
