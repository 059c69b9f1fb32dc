//! Webhook replay protection: each signature purges once within its window.
//!
//! [`ReplayGuard`] is the interface; [`LocalReplayGuard`] remembers signatures in this process
//! (one purge-api), [`crate::etcd::EtcdReplayGuard`] in etcd, so that a signature taken by one
//! replica is refused by every other.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::auth::SIGNATURE_WINDOW_SECS;

/// Remembers which webhook signatures were used.
#[async_trait::async_trait]
pub trait ReplayGuard: Send + Sync + 'static {
    /// Records the signature `mac`, timestamped `t`, at `now` (both Unix seconds); false when
    /// it was recorded before. An error means it cannot be told, and the purge is refused.
    async fn first_use(&self, mac: &[u8], t: u64, now: u64) -> Result<bool, String>;
}

/// Signatures seen within the window, with their timestamps, in this process.
#[derive(Default)]
pub struct LocalReplayGuard {
    seen: Mutex<HashMap<Vec<u8>, u64>>,
}

#[async_trait::async_trait]
impl ReplayGuard for LocalReplayGuard {
    async fn first_use(&self, mac: &[u8], t: u64, now: u64) -> Result<bool, String> {
        let mut seen = self.seen.lock();
        seen.retain(|_, t| t.abs_diff(now) <= SIGNATURE_WINDOW_SECS);
        Ok(seen.insert(mac.to_vec(), t).is_none())
    }
}
