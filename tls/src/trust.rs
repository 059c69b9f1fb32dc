use std::path::Path;

use crate::TlsFileError;
use crate::files::read_certificates;

/// A reqwest client builder that verifies servers against the CA certificates in `ca_file`
/// only, or against the system's roots when there is none.
///
/// Only the file's authorities are trusted, not the system's as well: a node that is told
/// which CA its cluster uses should not accept a certificate any public CA issued. Every
/// certificate in the file must be one a verifier can use (pingora and reqwest fail later,
/// and pingora panics, on a file that holds anything else).
pub fn trusting(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, TlsFileError> {
    crate::install_crypto_provider();
    let builder = reqwest::Client::builder();
    let Some(path) = ca_file else {
        return Ok(builder);
    };
    let mut builder = builder.tls_built_in_root_certs(false);
    let mut roots = rustls::RootCertStore::empty();
    for der in read_certificates(path)? {
        roots.add(der.clone()).map_err(|e| TlsFileError {
            path: path.to_path_buf(),
            reason: format!("holds a certificate that cannot be a trust anchor: {e}"),
        })?;
        let cert = reqwest::Certificate::from_der(&der).map_err(|e| TlsFileError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}
