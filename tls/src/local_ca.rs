use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::ServerFiles;

/// A certificate authority made on the spot, for development clusters and tests: never for
/// production, where certificates come from the operator's CA.
pub struct LocalCa {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate a [`LocalCa`] issued, with its key.
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl LocalCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "fresco local CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let certificate_pem = params.self_signed(&key)?.pem();
        Ok(Self {
            certificate_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA's certificate, PEM: what clients are told to trust.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Result<IssuedCertificate, rcgen::Error> {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("fresco"));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl IssuedCertificate {
    /// Writes `<name>.crt` and `<name>.key` into `dir` (the key readable by its owner only).
    pub fn write(&self, dir: &Path, name: &str) -> std::io::Result<ServerFiles> {
        use std::os::unix::fs::OpenOptionsExt;
        let cert = dir.join(format!("{name}.crt"));
        let key: PathBuf = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)?;
        std::io::Write::write_all(&mut file, self.key_pem.as_bytes())?;
        Ok(ServerFiles { cert, key })
    }
}
