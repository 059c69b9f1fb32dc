use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct TlsFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl TlsFileError {
    fn new(path: &Path, reason: impl ToString) -> Self {
        Self {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// A server's certificate chain and private key, as PEM files.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl ServerFiles {
    /// Reads both files and checks that the key belongs to the certificate.
    pub fn check(&self) -> Result<(), TlsFileError> {
        self.server_config(&[]).map(drop)
    }

    /// The base64 SHA-256 of the key's SubjectPublicKeyInfo: the pin a browser can be told to
    /// trust for this server alone (Chromium's `--ignore-certificate-errors-spki-list`).
    pub fn public_key_pin(&self) -> Result<String, TlsFileError> {
        use base64::Engine;
        use sha2::Digest;
        let pem = std::fs::read_to_string(&self.key).map_err(|e| TlsFileError::new(&self.key, e))?;
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| TlsFileError::new(&self.key, e))?;
        let digest = sha2::Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&key));
        Ok(base64::engine::general_purpose::STANDARD.encode(digest))
    }

    /// A rustls server configuration offering `alpn` (most preferred first).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
        crate::install_crypto_provider();
        let chain = read_certificates(&self.cert)?;
        let key = read_key(&self.key)?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsFileError::new(&self.key, format!("does not match the certificate: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Every certificate in a PEM file; at least one, and nothing else (pingora refuses a CA
/// file with other items in it).
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = std::fs::read(path).map_err(|e| TlsFileError::new(path, e))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::read_all(&mut pem.as_slice()) {
        match item.map_err(|e| TlsFileError::new(path, format!("not PEM: {e}")))? {
            rustls_pemfile::Item::X509Certificate(der) => certs.push(der),
            _ => return Err(TlsFileError::new(path, "holds a PEM item that is not a certificate")),
        }
    }
    if certs.is_empty() {
        return Err(TlsFileError::new(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let pem = std::fs::read(path).map_err(|e| TlsFileError::new(path, e))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsFileError::new(path, format!("not PEM: {e}")))?
        .ok_or_else(|| TlsFileError::new(path, "holds no PEM private key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalCa;

    #[test]
    fn a_missing_file_a_certificate_for_a_key_and_a_foreign_key_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::generate().unwrap();
        let a = ca.issue(&["localhost"]).unwrap().write(dir.path(), "a").unwrap();
        let b = ca.issue(&["localhost"]).unwrap().write(dir.path(), "b").unwrap();
        assert!(a.check().is_ok());

        let missing = ServerFiles {
            cert: dir.path().join("nope.pem"),
            key: a.key.clone(),
        };
        assert!(missing.check().unwrap_err().to_string().contains("nope.pem"));

        let swapped = ServerFiles {
            cert: a.key.clone(),
            key: a.key.clone(),
        };
        let e = swapped.check().unwrap_err();
        assert_eq!(e.path, a.key);
        assert!(e.reason.contains("not a certificate"), "{e}");
        assert!(crate::trusting(Some(&a.key)).is_err(), "a key is no CA file");
        let garbage = dir.path().join("garbage.crt");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = crate::trusting(Some(&garbage)).unwrap_err();
        assert!(e.reason.contains("trust anchor"), "{e}");
        assert!(crate::trusting(Some(&a.cert)).is_ok());

        let foreign = ServerFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        assert!(foreign.check().unwrap_err().reason.contains("does not match"));
    }
}
