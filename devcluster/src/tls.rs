//! `devcluster --tls`: a local CA and one server certificate for every process of the cluster.
//!
//! The files live in `DIR/tls/`: `ca.crt` (what clients trust: `cluster.json`'s `ca`),
//! `server.crt` and `server.key` (edges, purge-api and the demo origin serve with them). They
//! are made once and reused by later starts on the same addresses, so a browser or a client
//! told to trust `ca.crt` keeps trusting the cluster across restarts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fresco_tls::{LocalCa, ServerFiles};

use crate::state::StateDir;

/// The TLS files of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterTls {
    /// The CA certificate, PEM.
    pub ca: PathBuf,
    /// The certificate every server of the cluster presents, and its key.
    pub server: ServerFiles,
}

impl ClusterTls {
    /// The files in `DIR/tls/`, made now unless they exist for the same names: `localhost`,
    /// 127.0.0.1 and `listen_ip`.
    pub fn prepare(state: &StateDir, listen_ip: IpAddr) -> anyhow::Result<Self> {
        let tls = Self::of_state_dir(state.root());
        let dir = state.root().join("tls");
        std::fs::create_dir_all(&dir)?;
        let names = {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            if !names.contains(&listen_ip.to_string()) {
                names.push(listen_ip.to_string());
            }
            names
        };
        let names_file = dir.join("names");
        let made_for = std::fs::read_to_string(&names_file).unwrap_or_default();
        if made_for == names.join(" ") && tls.ca.exists() && tls.server.check().is_ok() {
            return Ok(tls);
        }
        let ca = LocalCa::generate().context("making the local CA")?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        ca.issue(&names)
            .context("issuing the server certificate")?
            .write(&dir, "server")?;
        std::fs::write(&tls.ca, ca.certificate_pem())?;
        std::fs::write(&names_file, names.join(" "))?;
        Ok(tls)
    }

    /// Where the files of the cluster whose state dir is `root` are (made or not).
    pub fn of_state_dir(root: &Path) -> Self {
        let dir = root.join("tls");
        Self {
            ca: dir.join("ca.crt"),
            server: ServerFiles {
                cert: dir.join("server.crt"),
                key: dir.join("server.key"),
            },
        }
    }

    /// The `cert_file` and `key_file` lines of a `tls:` section that serves with them.
    pub fn serving_lines(&self) -> String {
        format!(
            "  cert_file: {}\n  key_file: {}\n",
            self.server.cert.display(),
            self.server.key.display()
        )
    }

    /// An HTTP client builder that trusts this cluster's CA.
    pub fn client(&self) -> reqwest::ClientBuilder {
        fresco_tls::trusting(Some(&self.ca)).expect("the CA devcluster wrote")
    }
}
