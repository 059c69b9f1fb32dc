//! Where a cluster's keys are: which shield stores a path, which shield the ring makes its
//! home, and waiting for an edge's ring to settle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fresco_tier::cache_key::primary_key;
use fresco_tier::routing::{Ring, Shield, hash64};

use crate::metrics::Scrape;
use crate::{NodeInfo, client};

/// Whether `shield` has `path` stored: it answers `only-if-cached` from its cache or 504s.
pub async fn stored_on(shield: &NodeInfo, path: &str) -> bool {
    let resp = client()
        .get(format!("{}{path}", shield.url))
        .header("cache-control", "only-if-cached")
        .send()
        .await
        .expect("the shield answers");
    match resp.status().as_u16() {
        200 => true,
        504 => false,
        other => panic!("{}: {path}: unexpected {other}", shield.id),
    }
}

/// The shields holding `path`, by index in `shields`.
pub async fn holders(shields: &[NodeInfo], path: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, shield) in shields.iter().enumerate() {
        if stored_on(shield, path).await {
            found.push(i);
        }
    }
    found
}

/// Waits until `edge` counts `ready` shields on its ring.
pub async fn wait_for_ring(edge: &NodeInfo, ready: usize) {
    let started = Instant::now();
    loop {
        let now = Scrape::of(&edge.admin)
            .await
            .value("fresco_shields", &[("state", "ready")]);
        if now == Some(ready as f64) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{} sees {now:?} ready shields, not {ready}",
            edge.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The home shield of `path` among `shields`, as every edge computes it.
pub fn home_of(shields: &[NodeInfo], path: &str) -> String {
    let ring = Ring::new(
        shields
            .iter()
            .map(|s| {
                let address = s.url.trim_start_matches("http://").parse().unwrap();
                Arc::new(Shield::new(&s.id, address, None))
            })
            .collect(),
    );
    let key = primary_key("default", path, &["fresco".to_string()]);
    ring.home(hash64(key.as_bytes())).unwrap().id.clone()
}

/// A path of kind `kind` (`img`, `sluggish`) whose home among `shields` is `shield`.
pub fn path_homed_on(shields: &[NodeInfo], shield: &str, kind: &str, tag: &str) -> String {
    (0..)
        .map(|i| format!("/{kind}/{tag}-{i}.jpg"))
        .find(|p| home_of(shields, p) == shield)
        .unwrap()
}
