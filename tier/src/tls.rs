//! HTTPS on a node's proxy listener (the `tls:` section).
//!
//! pingora terminates TLS with rustls; this module only turns the configuration into its
//! settings. The certificate and key were read and matched when the configuration was loaded
//! ([`crate::config::NodeConfig`]), because pingora panics on a file it cannot use.
//!
//! Upstream, an `https://` origin is verified by pingora against `tls.ca_file` or the system's
//! roots (certificate and name); purge-api and the shields' admin endpoints by
//! [`fresco_tls::trusting`]. Between edges and shields traffic is plain HTTP: the cluster's own
//! network is the operator's to protect (README, "Security").

use std::path::Path;

use fresco_tls::ServerFiles;
use pingora_core::listeners::tls::TlsSettings;

/// An HTTP client builder for purge-api and the shields' admin endpoints that trusts
/// `ca_file` (`tls.ca_file`) when there is one. Never the system's roots instead: a node told
/// whom to trust must not trust more, so a file unusable now (it was checked when the
/// configuration was loaded) stops the node.
pub fn trusted_client(ca_file: Option<&Path>) -> reqwest::ClientBuilder {
    fresco_tls::trusting(ca_file).expect("tls.ca_file was checked when the configuration was loaded")
}

/// pingora's TLS settings for `files`, offering HTTP/2 first when `http2`.
pub fn listener_settings(files: &ServerFiles, http2: bool) -> pingora_error::Result<TlsSettings> {
    let mut settings = TlsSettings::intermediate(&files.cert.display().to_string(), &files.key.display().to_string())?;
    if http2 {
        settings.enable_h2();
    }
    Ok(settings)
}
