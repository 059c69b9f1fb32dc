//! What an edge knows of each shield's health, and the probe that keeps it current.
//!
//! Two sources, kept apart as pingora-load-balancing keeps them:
//! - **active:** the prober asks every shield's `/readyz` each `health_interval_ms`. A shield
//!   that answers 200 is *ready*; one that answers anything at all is *alive* (a draining or
//!   fenced shield is alive but not ready; a frozen one is neither).
//! - **passive:** a request whose connection to a shield failed, or that the shield left
//!   unanswered past `shield_timeout_ms` while its probe failed too, takes the shield out for
//!   `passive_down_ms`.
//!
//! A request reads these as a few relaxed atomics; the prober writes them off the request path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::LazyLock;

/// The instant health times count from (milliseconds in an `AtomicU64`).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since [`EPOCH`], never 0 (0 means "never").
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64 + 1
}

/// One shield's health as this edge sees it.
#[derive(Debug, Default)]
pub struct Health {
    /// Its last probe answered 200. A shield without an admin address to probe counts as ready.
    ready: AtomicBool,
    /// Until when a passive failure keeps it out.
    down_until: AtomicU64,
}

impl Health {
    /// Health of a new shield: ready until its first probe says otherwise, so that a shield
    /// learnt at runtime is used at once.
    pub fn new() -> Self {
        Self {
            ready: AtomicBool::new(true),
            ..Default::default()
        }
    }

    /// Whether misses may go to this shield now: ready and not taken out.
    pub fn usable(&self, now_ms: u64) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.passively_down(now_ms)
    }

    /// Whether a recent failure of a request keeps it out.
    pub fn passively_down(&self, now_ms: u64) -> bool {
        now_ms < self.down_until.load(Ordering::Relaxed)
    }

    /// Whether its last probe answered 200.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Takes it out for `period` after a failed request.
    pub fn mark_down(&self, period: Duration) {
        self.down_until
            .fetch_max(now_ms() + period.as_millis() as u64, Ordering::Relaxed);
    }

    /// Records a probe's outcome: `Some(status)` when it answered, `None` when it did not.
    pub fn record_probe(&self, answered: Option<u16>) {
        self.ready.store(answered == Some(200), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_decides_readiness_and_a_failure_takes_a_shield_out_for_a_while() {
        let health = Health::new();
        assert!(health.usable(now_ms()), "usable before its first probe");
        health.record_probe(Some(503));
        assert!(!health.usable(now_ms()), "draining or fenced: not ready");
        health.record_probe(Some(200));
        assert!(health.usable(now_ms()));
        health.mark_down(Duration::from_millis(30));
        assert!(!health.usable(now_ms()));
        std::thread::sleep(Duration::from_millis(40));
        assert!(health.usable(now_ms()));
        health.record_probe(None);
        assert!(!health.ready(), "a frozen shield answers nothing");
    }
}
