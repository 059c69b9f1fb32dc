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

use fresco_tls::ServerFiles;
use pingora_core::listeners::tls::TlsSettings;

/// pingora's TLS settings for `files`, offering HTTP/2 first when `http2`.
pub fn listener_settings(files: &ServerFiles, http2: bool) -> pingora_error::Result<TlsSettings> {
    fresco_tls::install_crypto_provider();
    let mut settings = TlsSettings::intermediate(&files.cert.display().to_string(), &files.key.display().to_string())?;
    if http2 {
        settings.enable_h2();
    }
    Ok(settings)
}
