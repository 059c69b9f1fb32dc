//! A graceful stop. On SIGTERM a node first stops being ready (`/readyz` answers 503, so a
//! load balancer sends it no more work), ends its change feeds (their clients resume by id:
//! the Rust client on its next edge, live.js on this one once it is back) and lets the
//! requests in flight finish, for at most `drain_ms`; only then does pingora stop its
//! services, which drops whatever is still running. Without the wait, every download and fill
//! in progress at SIGTERM would be cut. SIGINT stops at once, also during a drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch, UnixShutdownSignalWatch};
use tokio::signal::unix::{SignalKind, signal};

use crate::feed::FeedHub;

/// Counts the proxy's requests in progress (feeds excepted: they are ended, not waited for).
/// The count lives as long as the process, so that a request's guard costs one atomic add
/// and one subtract, not a reference count as well.
#[derive(Clone, Copy)]
pub struct RequestsInFlight(&'static AtomicUsize);

impl RequestsInFlight {
    /// A new counter, never freed (a node makes one for its proxy).
    pub fn leaked() -> Self {
        Self(Box::leak(Box::new(AtomicUsize::new(0))))
    }

    /// A request begins; it ends when the returned guard is dropped.
    pub fn enter(self) -> InFlight {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlight(self.0)
    }

    /// Requests in progress now.
    pub fn count(self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One request in progress, counted until dropped.
pub struct InFlight(&'static AtomicUsize);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// pingora's Unix signal handling, with the drain described above before a SIGTERM stops
/// the services.
pub struct DrainOnTerminate {
    /// The node's readiness, as `/readyz` reports it.
    pub ready: Arc<AtomicBool>,
    /// The change feed, ended first.
    pub feed: Option<Arc<FeedHub>>,
    /// The requests waited for.
    pub requests: RequestsInFlight,
    /// The longest wait.
    pub limit: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnTerminate {
    async fn recv(&self) -> ShutdownSignal {
        // Registered before the wait, so that a SIGINT during a drain cuts it short.
        let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
        let requested = UnixShutdownSignalWatch.recv().await;
        if !matches!(requested, ShutdownSignal::GracefulTerminate) {
            return requested;
        }
        self.ready.store(false, Ordering::Release);
        if let Some(feed) = &self.feed {
            feed.close();
        }
        let started = Instant::now();
        let at_start = self.requests.count();
        while self.requests.count() > 0 && started.elapsed() < self.limit {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = interrupt.recv() => {
                    tracing::warn!(requests = self.requests.count(), "SIGINT during the drain: stopping at once");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
        let left = self.requests.count();
        if left == 0 {
            tracing::info!(
                requests = at_start,
                took_ms = started.elapsed().as_millis() as u64,
                "SIGTERM: requests in flight finished; stopping"
            );
        } else {
            tracing::warn!(
                requests = left,
                limit_ms = self.limit.as_millis() as u64,
                "SIGTERM: requests still in flight after the drain limit are cut"
            );
        }
        requested
    }
}
