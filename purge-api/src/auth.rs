//! Who may purge: bearer tokens, or an origin's signed webhook (±300 s, each signature once).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use fresco_protocol::signature::{self, Signature};
use parking_lot::Mutex;

/// How far a webhook's timestamp may be from purge-api's clock.
pub const SIGNATURE_WINDOW_SECS: u64 = 300;

/// Checks credentials.
pub struct Authenticator {
    tokens: Vec<String>,
    secrets: Vec<String>,
    /// Signatures seen within the window, with their timestamps: a replay is refused.
    seen: Mutex<HashMap<Vec<u8>, u64>>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// Accepts these bearer tokens and webhook secrets.
    pub fn new(tokens: Vec<String>, secrets: Vec<String>) -> Self {
        Self {
            tokens,
            secrets,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the request carries a valid bearer token.
    pub fn bearer(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("missing Authorization: Bearer <token>")?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or("Authorization must be Bearer <token>")?;
        // Every token is compared, in constant time, so timing tells nothing about which matched.
        let matched = self
            .tokens
            .iter()
            .fold(false, |m, t| m | constant_time_eq(t.as_bytes(), token.as_bytes()));
        if matched { Ok(()) } else { Err("invalid token") }
    }

    /// Whether the request is authorized to purge `body`: a bearer token or a webhook signature.
    pub fn purge(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
        match headers.get(signature::HEADER).and_then(|v| v.to_str().ok()) {
            Some(header) => self.webhook(header, body),
            None => self.bearer(headers),
        }
    }

    fn webhook(&self, header: &str, body: &[u8]) -> Result<(), &'static str> {
        let sig = Signature::parse(header)?;
        let now = now_secs();
        if sig.t.abs_diff(now) > SIGNATURE_WINDOW_SECS {
            return Err("signature timestamp outside ±300 s");
        }
        if !self.secrets.iter().any(|s| sig.verifies(s.as_bytes(), body)) {
            return Err("bad signature");
        }
        let mut seen = self.seen.lock();
        seen.retain(|_, t| t.abs_diff(now) <= SIGNATURE_WINDOW_SECS);
        if seen.insert(sig.mac.clone(), sig.t).is_some() {
            return Err("replayed signature");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(vec!["token-token-token-1".into()], vec!["secret-secret-secret".into()])
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_tokens() {
        let a = auth();
        assert!(
            a.bearer(&headers("authorization", "Bearer token-token-token-1"))
                .is_ok()
        );
        assert!(
            a.bearer(&headers("authorization", "Bearer token-token-token-2"))
                .is_err()
        );
        assert!(a.bearer(&HeaderMap::new()).is_err());
    }

    #[test]
    fn webhooks_are_checked_for_time_and_replay() {
        let a = auth();
        let body = br#"{"urls":["/a.jpg"]}"#;
        let good = signature::sign(b"secret-secret-secret", now_secs(), body);
        assert!(a.purge(&headers(signature::HEADER, &good), body).is_ok());
        assert_eq!(
            a.purge(&headers(signature::HEADER, &good), body),
            Err("replayed signature")
        );
        let stale = signature::sign(b"secret-secret-secret", now_secs() - 301, body);
        assert!(a.purge(&headers(signature::HEADER, &stale), body).is_err());
        let wrong = signature::sign(b"not-the-secret-at-all", now_secs(), body);
        assert_eq!(a.purge(&headers(signature::HEADER, &wrong), body), Err("bad signature"));
    }
}
