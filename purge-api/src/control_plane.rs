//! Where purge-api keeps its state: embedded (a redb file, one process; the default) or in
//! etcd (any number of replicas, `control_plane.etcd`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::PurgeApiConfig;
use crate::etcd::{self, EtcdLog, EtcdMembership, EtcdReplayGuard};
use crate::log::{PurgeLog, RedbLog};
use crate::members::{GrantRecord, Members, Membership};
use crate::replay::{LocalReplayGuard, ReplayGuard};

/// How long a starting replica waits for etcd before it gives up.
const ETCD_START_WAIT: Duration = Duration::from_secs(60);

/// The log, the membership table and the replay guard of one backend.
pub struct ControlPlane {
    /// The purge log.
    pub log: Arc<dyn PurgeLog>,
    /// Leases and acks.
    pub members: Box<dyn Membership>,
    /// Webhook signatures taken.
    pub replay: Box<dyn ReplayGuard>,
    /// `embedded` or `etcd`, for the logs.
    pub backend: &'static str,
}

impl ControlPlane {
    /// Opens the control plane `config` names; returns once its state is read.
    pub async fn open(config: &PurgeApiConfig) -> Result<Self, String> {
        match (&config.control_plane.etcd, &config.data_dir) {
            (Some(etcd), _) => {
                let opening = async {
                    let connection = etcd::connect(etcd).await?;
                    let keys = etcd::Keys::new(&etcd.prefix);
                    let log = EtcdLog::open(connection.clone(), keys.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    let members = EtcdMembership::open(
                        connection.clone(),
                        keys.clone(),
                        config.lease(),
                        config.lease_bound(),
                        log.heads(),
                    )
                    .await?;
                    Ok::<_, String>(Self {
                        log: Arc::new(log),
                        members: Box::new(members),
                        replay: Box::new(EtcdReplayGuard::new(connection, keys)),
                        backend: "etcd",
                    })
                };
                tokio::time::timeout(ETCD_START_WAIT, opening)
                    .await
                    .map_err(|_| format!("etcd {:?} did not answer within {ETCD_START_WAIT:?}", etcd.endpoints))?
            }
            (None, Some(dir)) => {
                let log = RedbLog::open(dir).map_err(|e| e.to_string())?;
                let members = Members::new(
                    config.lease(),
                    config.lease_bound(),
                    log.bounds().head,
                    GrantRecord::in_dir(dir),
                );
                Ok(Self {
                    log: Arc::new(log),
                    members: Box::new(members),
                    replay: Box::<LocalReplayGuard>::default(),
                    backend: "embedded",
                })
            }
            (None, None) => Err("data_dir is required with the embedded control plane".into()),
        }
    }
}
