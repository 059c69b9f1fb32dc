//! [`ReplayGuard`] in etcd: a signature is a key created once, on an etcd lease that outlives
//! the time the signature can be presented.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use parking_lot::Mutex;

use super::{Etcd, Keys};
use crate::auth::SIGNATURE_WINDOW_SECS;
use crate::replay::ReplayGuard;

/// Webhook signatures already used, in etcd.
pub struct EtcdReplayGuard {
    etcd: Etcd,
    keys: Keys,
    /// The etcd lease of the current window-long epoch.
    epoch_lease: Mutex<Option<(u64, i64)>>,
}

impl EtcdReplayGuard {
    pub(crate) fn new(etcd: Etcd, keys: Keys) -> Self {
        Self {
            etcd,
            keys,
            epoch_lease: Mutex::new(None),
        }
    }

    /// The lease for keys made during the epoch of `now`: a signature is presentable until
    /// `t + window <= now + 2·window`, and the lease, granted within the epoch, runs three.
    async fn lease(&self, now: u64) -> Result<i64, String> {
        let epoch = now / SIGNATURE_WINDOW_SECS;
        if let Some((held, id)) = *self.epoch_lease.lock()
            && held == epoch
        {
            return Ok(id);
        }
        let ttl = 3 * SIGNATURE_WINDOW_SECS as i64;
        let granted = self.etcd.lease_grant(ttl).await.map_err(|e| format!("etcd: {e}"))?;
        *self.epoch_lease.lock() = Some((epoch, granted.id()));
        Ok(granted.id())
    }
}

#[async_trait::async_trait]
impl ReplayGuard for EtcdReplayGuard {
    async fn first_use(&self, mac: &[u8], _t: u64, now: u64) -> Result<bool, String> {
        let key = self.keys.replay(&hex::encode(mac));
        let lease = self.lease(now).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, "", Some(PutOptions::new().with_lease(lease)))]);
        let answer = self.etcd.txn("replay", txn).await.map_err(|e| format!("etcd: {e}"))?;
        Ok(answer.succeeded())
    }
}
