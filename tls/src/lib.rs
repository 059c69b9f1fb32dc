//! TLS for fresco's own servers and clients.
//!
//! The edges' and shields' proxy listeners get TLS from pingora (rustls); this crate serves
//! what pingora does not cover:
//!
//! - [`ServerFiles`]: a certificate chain and key read from PEM files into a rustls server
//!   configuration, with errors that name the file.
//! - [`TlsListener`]: an axum listener that accepts TLS, for purge-api and the demo origin.
//!   Handshakes run concurrently and time out, so a client that opens a connection and says
//!   nothing holds up no one else.
//! - [`trusting`]: a reqwest client that trusts a given CA file instead of the system's roots,
//!   for nodes that call purge-api and shields, and for `fresco-client`.
//! - [`LocalCa`]: a certificate authority made on the spot (rcgen), for `devcluster --tls` and
//!   the tests.
//!
//! Every part uses rustls with *ring*: pingora installs ring as the process's crypto provider.

mod files;
mod listener;
mod local_ca;
mod trust;

pub use files::{ServerFiles, TlsFileError};
pub use listener::TlsListener;
pub use local_ca::{IssuedCertificate, LocalCa};
pub use trust::trusting;

/// Makes ring the process's rustls provider unless one is installed already; every entry
/// point calls it first, so the order in which a process starts its parts does not matter.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
