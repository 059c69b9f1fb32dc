//! Load shedding on the request path: when an origin or a shield is saturated, misses beyond
//! what it can take are answered 503 with `Retry-After` at once, instead of all slowing down.
//!
//! Each upstream (a shield, a site's origin) gets at most `shedding.upstream_concurrency`
//! fetches in flight from this node; up to `shedding.upstream_queue` more wait for a slot, for
//! no longer than their deadline; a miss beyond that is shed. Hits never reach an upstream, so
//! they are never shed behind misses; collapsed misses of one object take one slot (pingora's
//! cache lock lets one request fetch).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::SheddingSection;

/// The fetches in flight and waiting for one upstream.
struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// A fetch's slot at its upstream, held until the request ends (or tries another upstream).
pub struct Admission {
    _slot: OwnedSemaphorePermit,
}

/// Every upstream's gate.
pub struct UpstreamLimits {
    concurrency: usize,
    queue: usize,
    gates: Mutex<HashMap<SocketAddr, Arc<Gate>>>,
}

impl UpstreamLimits {
    /// Limits as configured.
    pub fn new(config: &SheddingSection) -> Self {
        Self {
            concurrency: config.upstream_concurrency,
            queue: config.upstream_queue,
            gates: Mutex::new(HashMap::new()),
        }
    }

    fn gate(&self, upstream: SocketAddr) -> Arc<Gate> {
        self.gates
            .lock()
            .entry(upstream)
            .or_insert_with(|| {
                Arc::new(Gate {
                    slots: Arc::new(Semaphore::new(self.concurrency)),
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// A slot for a fetch from `upstream`, waiting at most `patience` in its queue; `None`: shed
    /// it (the queue is full, or no slot freed in time).
    pub async fn admit(&self, upstream: SocketAddr, patience: Duration) -> Option<Admission> {
        let gate = self.gate(upstream);
        if let Ok(slot) = gate.slots.clone().try_acquire_owned() {
            return Some(Admission { _slot: slot });
        }
        if gate.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let slot = tokio::time::timeout(patience, gate.slots.clone().acquire_owned()).await;
        gate.waiting.fetch_sub(1, Ordering::AcqRel);
        match slot {
            Ok(Ok(slot)) => Some(Admission { _slot: slot }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_slots_and_the_queue_a_fetch_is_shed_at_once() {
        let limits = UpstreamLimits::new(&SheddingSection {
            upstream_concurrency: 2,
            upstream_queue: 1,
            retry_after_secs: 1,
        });
        let origin: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let patience = Duration::from_secs(5);
        let first = limits.admit(origin, patience).await.unwrap();
        let _second = limits.admit(origin, patience).await.unwrap();
        let limits = Arc::new(limits);
        let queued = tokio::spawn({
            let limits = limits.clone();
            async move { limits.admit(origin, patience).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert!(limits.admit(origin, patience).await.is_none(), "the queue is full");
        assert!(started.elapsed() < Duration::from_millis(50), "shed at once");
        assert!(
            limits.admit(other, patience).await.is_some(),
            "each upstream has its own slots"
        );
        drop(first);
        let _queued = queued.await.unwrap().expect("the queued fetch got the freed slot");
        let impatient = limits.admit(origin, Duration::from_millis(20)).await;
        assert!(impatient.is_none(), "no slot freed within its patience");
    }
}
