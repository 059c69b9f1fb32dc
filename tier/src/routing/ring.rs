//! The shield ring: which shields a cache key belongs to, in order.
//!
//! Rendezvous (highest-random-weight) hashing: every shield scores every key, and a key's
//! shields in order are the shields by descending score. Its properties are the ones the ring
//! is for, each exact rather than approximate:
//! - a shield that joins takes exactly the keys it now outscores everyone on, about 1/M of them,
//!   from every other shield alike; one that leaves gives each of its keys to that key's second
//!   shield, and no other key moves;
//! - skipping an unhealthy shield is the same as removing it, so a key's failover shield is the
//!   shield it would have if the sick one were gone, and the same on every edge;
//! - a key's replicas are simply its first R shields.
//!
//! Ketama (pingora-load-balancing) gets the same within a few percent with 160 points a shield
//! and a binary search; with tens of shields, scoring each on a miss costs less than that and
//! needs no table. Only misses and revalidations ask the ring.

use std::net::SocketAddr;
use std::sync::Arc;

use super::health::Health;

/// One shield on the ring.
#[derive(Debug)]
pub struct Shield {
    /// Its node id; what is hashed, so every edge ranks it alike whatever address it has.
    pub id: String,
    /// Its proxy address.
    pub address: SocketAddr,
    /// Its admin address (`/readyz`), when known.
    pub admin: Option<SocketAddr>,
    /// The hash of `id`, mixed into each key's score.
    seed: u64,
    /// What this edge knows of its health.
    pub health: Health,
}

impl Shield {
    /// A shield, healthy until a check says otherwise.
    pub fn new(id: &str, address: SocketAddr, admin: Option<SocketAddr>) -> Self {
        Self {
            id: id.to_string(),
            address,
            admin,
            seed: hash64(id.as_bytes()),
            health: Health::new(),
        }
    }

    /// How strongly this shield claims a key: the highest score is the key's home.
    fn score(&self, key_hash: u64) -> u64 {
        mix64(key_hash ^ self.seed)
    }
}

/// The shields of the ring; immutable, replaced whole when the membership changes.
#[derive(Debug, Default)]
pub struct Ring {
    shields: Vec<Arc<Shield>>,
}

impl Ring {
    /// A ring of `shields` (order does not matter).
    pub fn new(shields: Vec<Arc<Shield>>) -> Self {
        Self { shields }
    }

    /// The shields on the ring.
    pub fn shields(&self) -> &[Arc<Shield>] {
        &self.shields
    }

    /// Whether the ring has no shield.
    pub fn is_empty(&self) -> bool {
        self.shields.is_empty()
    }

    /// The shields of a key, home first: the order a key's replicas and failovers follow.
    pub fn ranked(&self, key_hash: u64) -> Vec<&Arc<Shield>> {
        let mut ranked: Vec<(u64, &Arc<Shield>)> = self.shields.iter().map(|s| (s.score(key_hash), s)).collect();
        // Ties (practically never) are broken by id, so every edge still agrees.
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        ranked.into_iter().map(|(_, s)| s).collect()
    }

    /// The key's home shield.
    pub fn home(&self, key_hash: u64) -> Option<&Arc<Shield>> {
        self.shields
            .iter()
            .max_by(|a, b| a.score(key_hash).cmp(&b.score(key_hash)).then_with(|| b.id.cmp(&a.id)))
    }
}

/// The hash of a key (or a shield id) that the ring scores: the first 8 bytes of its blake3
/// digest, the same on every edge and every build.
pub fn hash64(bytes: &[u8]) -> u64 {
    let digest = blake3::hash(bytes);
    u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("a digest has 32 bytes"))
}

/// splitmix64's finalizer: a bijection that spreads every input bit over the output, so
/// `key ^ seed` scores are independent across shields.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str]) -> Ring {
        Ring::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| {
                    Arc::new(Shield::new(
                        id,
                        SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                        None,
                    ))
                })
                .collect(),
        )
    }

    fn homes(ring: &Ring, keys: usize) -> Vec<String> {
        (0..keys)
            .map(|k| {
                ring.home(hash64(format!("default/img/{k}.jpg").as_bytes()))
                    .unwrap()
                    .id
                    .clone()
            })
            .collect()
    }

    #[test]
    fn keys_spread_evenly_over_the_shields() {
        let ring = ring(&["shield-1", "shield-2", "shield-3", "shield-4"]);
        let homes = homes(&ring, 40_000);
        for id in ["shield-1", "shield-2", "shield-3", "shield-4"] {
            let share = homes.iter().filter(|h| *h == id).count() as f64 / 40_000.0;
            assert!((share - 0.25).abs() < 0.01, "{id} holds {share}");
        }
    }

    #[test]
    fn a_joining_shield_takes_about_one_in_m_keys_and_nothing_else_moves() {
        let before = homes(&ring(&["shield-1", "shield-2", "shield-3"]), 20_000);
        let after = homes(&ring(&["shield-1", "shield-2", "shield-3", "shield-4"]), 20_000);
        let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
        assert!(
            moved.iter().all(|(_, a)| *a == "shield-4"),
            "keys moved only to the newcomer"
        );
        let share = moved.len() as f64 / 20_000.0;
        assert!((share - 0.25).abs() < 0.015, "moved {share}");
    }

    #[test]
    fn a_key_fails_over_to_the_shield_it_would_have_without_the_sick_one() {
        let full = ring(&["shield-1", "shield-2", "shield-3"]);
        let without = ring(&["shield-1", "shield-3"]);
        for k in 0..2_000 {
            let key = hash64(format!("default/{k}").as_bytes());
            let ranked = full.ranked(key);
            let next = ranked.iter().find(|s| s.id != "shield-2").unwrap();
            assert_eq!(next.id, without.home(key).unwrap().id);
            assert_eq!(ranked[0].id, full.home(key).unwrap().id);
        }
    }

    #[test]
    fn the_ranking_does_not_depend_on_the_order_of_membership() {
        let a = ring(&["shield-1", "shield-2", "shield-3"]);
        let b = ring(&["shield-3", "shield-1", "shield-2"]);
        for k in 0..500 {
            let key = hash64(format!("k{k}").as_bytes());
            let ids = |r: &Ring| r.ranked(key).iter().map(|s| s.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&a), ids(&b));
        }
    }
}
