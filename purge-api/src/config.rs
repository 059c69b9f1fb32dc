//! purge-api's YAML configuration (`conf/purge-api.yaml`). Errors name the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// purge-api's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeApiConfig {
    /// Address of the API (and of `/metrics`, `/healthz`, `/readyz`).
    pub listen: SocketAddr,
    /// Where the purge log lives with the embedded control plane; required unless
    /// `control_plane.etcd` is set.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Where the purge log, leases and members are kept. Default: embedded (a redb file in
    /// `data_dir`, one purge-api).
    #[serde(default)]
    pub control_plane: ControlPlaneSection,
    /// Bearer tokens of operators: they purge, read purge status and list members. They cannot
    /// reach the node protocol.
    pub tokens: Vec<String>,
    /// Keys that node credentials are derived from (`purge-api credential --node ID`); the first
    /// derives new credentials, the others are still accepted (rotation).
    pub node_keys: Vec<String>,
    /// Node ids whose credentials are refused (a lost or retired machine). Default: none.
    #[serde(default)]
    pub revoked_nodes: Vec<String>,
    /// Secrets of origins that sign webhooks (`X-Fresco-Signature`), each a string (may purge
    /// anything) or `{secret, hosts}` (may purge only those hosts' URLs, prefixes and tags).
    /// Default: none.
    #[serde(default)]
    pub webhook_secrets: Vec<WebhookSecret>,
    /// Lease length L. Default: 2000.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Clock drift ρ allowed between purge-api and nodes; a lease is taken as surely expired
    /// after L·(1+ρ)+margin. Default: 0.05.
    #[serde(default = "default_drift")]
    pub clock_drift: f64,
    /// The margin of the line above. Default: 100.
    #[serde(default = "default_margin_ms")]
    pub lease_margin_ms: u64,
    /// How many purges the log keeps; a node further behind resets. Default: 1,000,000.
    #[serde(default = "default_retention")]
    pub retention_entries: u64,
    /// Log format: `text` or `json`. Default: text.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Serve HTTPS only, with this certificate and key. Default: plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// The `control_plane:` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSection {
    /// Keep it in etcd, shared by every purge-api replica naming the same cluster and prefix.
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
}

/// `control_plane.etcd`: the etcd cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the members, `http://host:2379` (or `https://` with `ca_file`).
    pub endpoints: Vec<String>,
    /// Where under etcd's key space fresco keeps its keys. Default: `/fresco`.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// The longest an etcd call may take; a purge that cannot be written within it is a 503.
    /// Default: 800.
    #[serde(default = "default_etcd_timeout_ms")]
    pub timeout_ms: u64,
    /// CA certificates (PEM) that etcd's server certificates are verified against; sets TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// etcd's authentication. Default: none.
    #[serde(default)]
    pub user: Option<EtcdUser>,
}

/// An etcd user.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdUser {
    /// The user name.
    pub name: String,
    /// A file holding the password (kept out of the configuration).
    pub password_file: PathBuf,
}

fn default_etcd_prefix() -> String {
    "/fresco".into()
}
fn default_etcd_timeout_ms() -> u64 {
    800
}

/// The `tls:` section: a certificate chain and its key, PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key.
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// The files as `fresco-tls` takes them.
    pub fn server_files(&self) -> fresco_tls::ServerFiles {
        fresco_tls::ServerFiles {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
        }
    }
}

/// One origin's webhook secret, with what it may purge.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum WebhookSecret {
    /// May purge anything.
    Any(String),
    /// May purge only URLs and prefixes on these hosts, and tags on their sites.
    Scoped {
        /// The secret.
        secret: String,
        /// The hosts, as in absolute purge URLs.
        hosts: Vec<String>,
    },
}

impl WebhookSecret {
    /// The secret itself.
    pub fn secret(&self) -> &str {
        match self {
            Self::Any(secret) | Self::Scoped { secret, .. } => secret,
        }
    }

    /// The hosts it is limited to; `None`: any.
    pub fn hosts(&self) -> Option<&[String]> {
        match self {
            Self::Any(_) => None,
            Self::Scoped { hosts, .. } => Some(hosts),
        }
    }
}

fn default_lease_ms() -> u64 {
    2000
}
fn default_drift() -> f64 {
    0.05
}
fn default_margin_ms() -> u64 {
    100
}
fn default_retention() -> u64 {
    1_000_000
}
fn default_log_format() -> String {
    "text".into()
}

impl PurgeApiConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let config: Self =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text)).map_err(|e| {
                let field = e.path().to_string();
                format!("{}: field `{field}`: {}", path.display(), e.into_inner())
            })?;
        config
            .validate()
            .map_err(|(field, msg)| format!("{}: field `{field}`: {msg}", path.display()))?;
        if let Some(tls) = &config.tls
            && let Err(e) = tls.server_files().check()
        {
            let field = if e.path == tls.key_file {
                "tls.key_file"
            } else {
                "tls.cert_file"
            };
            return Err(format!("{}: field `{field}`: {e}", path.display()));
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.tokens.is_empty() || self.tokens.iter().any(|t| t.len() < 16) {
            return Err(("tokens", "needs at least one token, each of 16 characters or more"));
        }
        if self.node_keys.is_empty() || self.node_keys.iter().any(|k| k.len() < 16) {
            return Err(("node_keys", "needs at least one key, each of 16 characters or more"));
        }
        if self.node_keys.iter().any(|k| self.tokens.contains(k)) {
            return Err(("node_keys", "must differ from every token"));
        }
        if self.webhook_secrets.iter().any(|s| s.secret().len() < 16) {
            return Err(("webhook_secrets", "each secret needs 16 characters or more"));
        }
        if self
            .webhook_secrets
            .iter()
            .filter_map(WebhookSecret::hosts)
            .any(|hosts| hosts.is_empty() || hosts.iter().any(|h| h.is_empty() || h.contains(['/', ':', ' '])))
        {
            return Err(("webhook_secrets", "a scoped secret needs hosts, each a bare host name"));
        }
        if !(100..=60_000).contains(&self.lease_ms) {
            return Err(("lease_ms", "must be between 100 and 60000"));
        }
        if !(0.0..=1.0).contains(&self.clock_drift) {
            return Err(("clock_drift", "must be between 0 and 1"));
        }
        if self.retention_entries < 1000 {
            return Err(("retention_entries", "must be at least 1000"));
        }
        match &self.control_plane.etcd {
            None if self.data_dir.is_none() => {
                return Err(("data_dir", "is required with the embedded control plane"));
            }
            Some(etcd) if etcd.endpoints.is_empty() || etcd.endpoints.iter().any(|e| !e.contains("://")) => {
                return Err((
                    "control_plane.etcd.endpoints",
                    "needs at least one endpoint, each a URL such as http://127.0.0.1:2379",
                ));
            }
            Some(etcd) if !etcd.prefix.starts_with('/') || etcd.prefix.len() < 2 => {
                return Err(("control_plane.etcd.prefix", "must be a key path such as /fresco"));
            }
            Some(etcd) if !(50..=10_000).contains(&etcd.timeout_ms) => {
                return Err(("control_plane.etcd.timeout_ms", "must be between 50 and 10000"));
            }
            _ => {}
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(("log_format", "must be text or json"));
        }
        Ok(())
    }

    /// The lease length L.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// How long after a grant purge-api takes a lease as surely expired: L·(1+ρ)+margin.
    pub fn lease_bound(&self) -> Duration {
        self.lease().mul_f64(1.0 + self.clock_drift) + Duration::from_millis(self.lease_margin_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_valid_and_bad_fields_are_named() {
        let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/purge-api.yaml"));
        PurgeApiConfig::load(example).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        for (yaml, field) in [
            ("tokens: [short]\nnode_keys: [node-key-node-key-node]", "tokens"),
            ("tokens: [token-token-token-1]", "node_keys"),
            (
                "tokens: [token-token-token-1]\nnode_keys: [token-token-token-1]",
                "node_keys",
            ),
            (
                "tokens: [token-token-token-1]\nnode_keys: [node-key-node-key-node]\n\
                 webhook_secrets: [{secret: secret-secret-secret, hosts: []}]",
                "webhook_secrets",
            ),
            (
                "tokens: [token-token-token-1]\nnode_keys: [node-key-node-key-node]\n\
                 tls: {cert_file: /nonexistent/purge.crt, key_file: /nonexistent/purge.key}",
                "tls.cert_file",
            ),
            (
                "tokens: [token-token-token-1]\nnode_keys: [node-key-node-key-node]\n\
                 control_plane: {etcd: {endpoints: [127.0.0.1:2379]}}",
                "control_plane.etcd.endpoints",
            ),
            (
                "tokens: [token-token-token-1]\nnode_keys: [node-key-node-key-node]",
                "data_dir",
            ),
        ] {
            // Every case has a data_dir but the one about it.
            let data_dir = if field == "data_dir" { "" } else { "data_dir: x\n" };
            std::fs::write(&bad, format!("listen: 127.0.0.1:1\n{data_dir}{yaml}\n")).unwrap();
            let error = PurgeApiConfig::load(&bad).unwrap_err();
            assert!(error.contains(field), "{yaml}: {error}");
        }
    }
}
