//! Origin webhook signatures: `X-Fresco-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, where
//! the MAC is over `"<t>.<body>"` with a secret shared by the origin and purge-api.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The header that carries a signature.
pub const HEADER: &str = "x-fresco-signature";

/// The header value signing `body` at Unix time `t` with `secret`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A parsed signature header.
#[derive(Debug, PartialEq, Eq)]
pub struct Signature {
    /// The signing time, Unix seconds.
    pub t: u64,
    /// The MAC.
    pub mac: Vec<u8>,
}

impl Signature {
    /// Parses `t=…,v1=…` (in any order; unknown schemes are ignored, as new ones may be added).
    pub fn parse(header: &str) -> Result<Self, &'static str> {
        let (mut t, mut mac) = (None, None);
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.parse().map_err(|_| "t is not a number")?),
                Some(("v1", v)) => mac = Some(hex::decode(v).map_err(|_| "v1 is not hex")?),
                _ => {}
            }
        }
        Ok(Self {
            t: t.ok_or("missing t=")?,
            mac: mac.ok_or("missing v1=")?,
        })
    }

    /// Whether this signature is `secret`'s over `body`; compared in constant time.
    pub fn verifies(&self, secret: &[u8], body: &[u8]) -> bool {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(self.t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&self.mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_its_body_and_secret() {
        let header = sign(b"s3cret", 1_790_000_000, b"{\"urls\":[\"/a.jpg\"]}");
        let sig = Signature::parse(&header).unwrap();
        assert_eq!(sig.t, 1_790_000_000);
        assert!(sig.verifies(b"s3cret", b"{\"urls\":[\"/a.jpg\"]}"));
        assert!(!sig.verifies(b"s3cret", b"{\"urls\":[\"/b.jpg\"]}"));
        assert!(!sig.verifies(b"other", b"{\"urls\":[\"/a.jpg\"]}"));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        assert!(Signature::parse("v1=00").is_err());
        assert!(Signature::parse("t=1").is_err());
        assert!(Signature::parse("t=x,v1=00").is_err());
        assert!(Signature::parse("t=1,v1=zz").is_err());
    }
}
