//! Which shields are on the ring: the configured ones, and those purge-api lists.
//!
//! Every shield holds a purge lease, so purge-api's member list (`GET /v1/members`) already
//! names every running shield with its proxy and admin addresses; an edge polls it and a shield
//! that joins is on every edge's ring within a poll, with no edge restarted or reconfigured.
//! A listed shield leaves the ring only after it has been missing from the list (or not heard
//! from by purge-api) for [`FORGET_AFTER`]: a restarted purge-api lists nobody until the nodes'
//! next renewal, and that must not empty the ring. A shield that stops is out of use long
//! before that, through its health (`health.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::ShieldEntry;

/// How long a shield missing from purge-api's list stays on the ring.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);
/// A member purge-api has not heard from for this long counts as missing from its list.
const SILENT_AFTER_MS: u64 = 5_000;

/// purge-api's `GET /v1/members`, the part of it routing reads.
#[derive(Debug, Deserialize)]
pub struct MemberList {
    /// The members.
    pub members: Vec<Member>,
}

/// One member of [`MemberList`].
#[derive(Debug, Deserialize)]
pub struct Member {
    /// Node id.
    pub id: String,
    /// `edge` or `shield`.
    pub role: String,
    /// Proxy address.
    pub address: String,
    /// Admin address.
    #[serde(default)]
    pub admin: Option<String>,
    /// Milliseconds since purge-api last heard from it.
    pub last_seen_ms: u64,
}

/// The shield set: configured entries, and discovered ones with when they were last listed.
#[derive(Debug, Default)]
pub struct Membership {
    configured: Vec<ShieldEntry>,
    discovered: BTreeMap<String, (ShieldEntry, Instant)>,
}

impl Membership {
    /// A membership of the configured shields only.
    pub fn new(configured: Vec<ShieldEntry>) -> Self {
        Self {
            configured,
            discovered: BTreeMap::new(),
        }
    }

    /// Takes in one answer of purge-api, received at `now`.
    pub fn update(&mut self, list: &MemberList, now: Instant) {
        for member in &list.members {
            if member.role != "shield" || member.last_seen_ms > SILENT_AFTER_MS {
                continue;
            }
            let Ok(address) = member.address.parse::<SocketAddr>() else {
                tracing::warn!(shield = %member.id, address = %member.address, "purge-api lists a shield at an address that is not ip:port: left out");
                continue;
            };
            if address.ip().is_unspecified() {
                tracing::warn!(shield = %member.id, %address, "a shield listens on an unspecified address, which edges cannot reach: left out");
                continue;
            }
            let entry = ShieldEntry {
                id: member.id.clone(),
                address,
                admin: member.admin.as_deref().and_then(|a| a.parse().ok()),
            };
            self.discovered.insert(member.id.clone(), (entry, now));
        }
        self.discovered
            .retain(|_, (_, listed)| now.duration_since(*listed) < FORGET_AFTER);
    }

    /// The shields on the ring now: the configured ones, then the discovered ones not
    /// configured, by id.
    pub fn shields(&self) -> Vec<ShieldEntry> {
        let mut shields = self.configured.clone();
        for (id, (entry, _)) in &self.discovered {
            if !self.configured.iter().any(|c| &c.id == id) {
                shields.push(entry.clone());
            }
        }
        shields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(members: &[(&str, &str, u64)]) -> MemberList {
        MemberList {
            members: members
                .iter()
                .map(|(id, role, seen)| Member {
                    id: id.to_string(),
                    role: role.to_string(),
                    address: "127.0.0.1:7000".into(),
                    admin: Some("127.0.0.1:7001".into()),
                    last_seen_ms: *seen,
                })
                .collect(),
        }
    }

    fn ids(m: &Membership) -> Vec<String> {
        m.shields().into_iter().map(|s| s.id).collect()
    }

    #[test]
    fn shields_join_from_the_list_and_leave_only_after_missing_for_a_while() {
        let configured = ShieldEntry {
            id: "shield-1".into(),
            address: "127.0.0.1:8090".parse().unwrap(),
            admin: None,
        };
        let mut m = Membership::new(vec![configured]);
        let t0 = Instant::now();
        m.update(
            &list(&[
                ("shield-1", "shield", 0),
                ("shield-2", "shield", 10),
                ("edge-1", "edge", 0),
            ]),
            t0,
        );
        assert_eq!(
            ids(&m),
            ["shield-1", "shield-2"],
            "edges are not shields; configured first"
        );
        m.update(&list(&[]), t0 + Duration::from_secs(2));
        assert_eq!(
            ids(&m),
            ["shield-1", "shield-2"],
            "an empty list (a restarted purge-api) empties nothing"
        );
        m.update(
            &list(&[("shield-2", "shield", 9_000)]),
            t0 + FORGET_AFTER + Duration::from_secs(1),
        );
        assert_eq!(
            ids(&m),
            ["shield-1"],
            "silent and unlisted for longer than FORGET_AFTER"
        );
    }
}
