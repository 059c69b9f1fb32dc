//! Who may do what (README, "Purge API"):
//! - operators, with a bearer token from `tokens`: purge, read purges, list members;
//! - origins, with a signed webhook (±300 s, each signature once): purge, within the hosts their
//!   secret is scoped to;
//! - nodes, with the credential of their node id (`fresco_protocol::credential`): the node
//!   protocol (lease, ack, log) as that node only, and the member list.
//!
//! Purge tokens cannot reach the node protocol: a leaked purge token must not be able to
//! acknowledge purges for a node, which would break the freshness guarantee.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::WebhookSecret;
use crate::replay::ReplayGuard;
use axum::http::HeaderMap;
use fresco_protocol::credential;
use fresco_protocol::signature::{self, Signature};

/// How far a webhook's timestamp may be from purge-api's clock.
pub const SIGNATURE_WINDOW_SECS: u64 = 300;

/// Who sent a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Caller {
    /// An operator's purge token.
    Operator,
    /// A node, by the id its credential speaks for.
    Node(String),
}

/// What a purge may touch.
#[derive(Debug, PartialEq, Eq)]
pub enum PurgeScope {
    /// Anything.
    Any,
    /// URLs and prefixes on these hosts and tags on their sites.
    Hosts(Vec<String>),
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No valid credential (401).
    Unauthorized(&'static str),
    /// A valid credential that may not do this (403).
    Forbidden(String),
    /// What the check needs is out of reach (503).
    Unavailable(String),
}

/// Checks credentials.
pub struct Authenticator {
    credentials: Credentials,
    /// Signatures already used: a replay is refused.
    replay: Box<dyn ReplayGuard>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials purge-api accepts.
pub struct Credentials {
    /// Operators' purge tokens.
    pub tokens: Vec<String>,
    /// Keys node credentials derive from.
    pub node_keys: Vec<String>,
    /// Node ids refused whatever their credential.
    pub revoked_nodes: Vec<String>,
    /// Origins' webhook secrets.
    pub webhook_secrets: Vec<WebhookSecret>,
}

impl Authenticator {
    /// Accepts these credentials; `replay` remembers the webhook signatures taken.
    pub fn new(credentials: Credentials, replay: Box<dyn ReplayGuard>) -> Self {
        Self { credentials, replay }
    }

    /// Who the request's `Authorization: Bearer` is from.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, Denied> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Denied::Unauthorized("missing Authorization: Bearer <token>"))?;
        let presented = value
            .strip_prefix("Bearer ")
            .ok_or(Denied::Unauthorized("Authorization must be Bearer <token>"))?;
        // Every token is compared, in constant time, so timing tells nothing about which matched.
        let operator = self
            .credentials
            .tokens
            .iter()
            .fold(false, |m, t| m | constant_time_eq(t.as_bytes(), presented.as_bytes()));
        if operator {
            return Ok(Caller::Operator);
        }
        let node = credential::verify(self.credentials.node_keys.iter().map(|k| k.as_bytes()), presented)
            .ok_or(Denied::Unauthorized("invalid token"))?;
        if self.credentials.revoked_nodes.contains(&node) {
            return Err(Denied::Forbidden(format!("node {node} is revoked")));
        }
        Ok(Caller::Node(node))
    }

    /// An operator's request (purge status); nodes are refused.
    pub fn operator(&self, headers: &HeaderMap) -> Result<(), Denied> {
        match self.caller(headers)? {
            Caller::Operator => Ok(()),
            Caller::Node(node) => Err(Denied::Forbidden(format!(
                "node {node}'s credential is for the node protocol; use an operator token"
            ))),
        }
    }

    /// A node's request (lease, ack, log): the node it speaks for. Purge tokens are refused.
    pub fn node(&self, headers: &HeaderMap) -> Result<String, Denied> {
        match self.caller(headers)? {
            Caller::Node(node) => Ok(node),
            Caller::Operator => Err(Denied::Forbidden(
                "purge tokens cannot use the node protocol; a node presents its own credential \
                 (freshness.credential, made by `purge-api credential --node ID`)"
                    .into(),
            )),
        }
    }

    /// Whether the request may purge `body`, and within what: a bearer token or a webhook
    /// signature.
    pub async fn purge(&self, headers: &HeaderMap, body: &[u8]) -> Result<PurgeScope, Denied> {
        match headers.get(signature::HEADER).and_then(|v| v.to_str().ok()) {
            Some(header) => self.webhook(header, body).await,
            None => self.operator(headers).map(|()| PurgeScope::Any),
        }
    }

    async fn webhook(&self, header: &str, body: &[u8]) -> Result<PurgeScope, Denied> {
        let sig = Signature::parse(header).map_err(Denied::Unauthorized)?;
        let now = now_secs();
        if sig.t.abs_diff(now) > SIGNATURE_WINDOW_SECS {
            return Err(Denied::Unauthorized("signature timestamp outside ±300 s"));
        }
        let secret = self
            .credentials
            .webhook_secrets
            .iter()
            .find(|s| sig.verifies(s.secret().as_bytes(), body))
            .ok_or(Denied::Unauthorized("bad signature"))?;
        match self.replay.first_use(&sig.mac, sig.t, now).await {
            Ok(true) => {}
            Ok(false) => return Err(Denied::Unauthorized("replayed signature")),
            Err(e) => return Err(Denied::Unavailable(format!("replay check: {e}"))),
        }
        Ok(match secret.hosts() {
            None => PurgeScope::Any,
            Some(hosts) => PurgeScope::Hosts(hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const NODE_KEY: &[u8] = b"node-key-node-key-node";

    fn auth() -> Authenticator {
        Authenticator::new(
            Credentials {
                tokens: vec!["token-token-token-1".into()],
                node_keys: vec![String::from_utf8(NODE_KEY.to_vec()).unwrap()],
                revoked_nodes: vec!["edge-9".into()],
                webhook_secrets: vec![
                    WebhookSecret::Any("secret-secret-secret".into()),
                    WebhookSecret::Scoped {
                        secret: "shop-secret-secret".into(),
                        hosts: vec!["Shop.example".into()],
                    },
                ],
            },
            Box::<crate::replay::LocalReplayGuard>::default(),
        )
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    fn bearer(value: &str) -> HeaderMap {
        headers("authorization", &format!("Bearer {value}"))
    }

    #[tokio::test]
    async fn operators_and_nodes_each_reach_only_their_own_endpoints() {
        let a = auth();
        let operator = bearer("token-token-token-1");
        let edge = bearer(&credential::derive(NODE_KEY, "edge-1"));
        assert_eq!(a.caller(&operator), Ok(Caller::Operator));
        assert_eq!(a.caller(&edge), Ok(Caller::Node("edge-1".into())));
        assert!(matches!(a.node(&operator), Err(Denied::Forbidden(_))));
        assert!(matches!(a.operator(&edge), Err(Denied::Forbidden(_))));
        assert!(matches!(a.purge(&edge, b"{}").await, Err(Denied::Forbidden(_))));
        assert_eq!(a.node(&edge), Ok("edge-1".into()));
        assert!(matches!(
            a.caller(&bearer("token-token-token-2")),
            Err(Denied::Unauthorized(_))
        ));
        assert!(matches!(a.caller(&HeaderMap::new()), Err(Denied::Unauthorized(_))));
        let revoked = bearer(&credential::derive(NODE_KEY, "edge-9"));
        assert!(matches!(a.node(&revoked), Err(Denied::Forbidden(_))));
    }

    #[tokio::test]
    async fn webhooks_are_checked_for_time_and_replay_and_carry_their_scope() {
        let a = auth();
        let body = br#"{"urls":["/a.jpg"]}"#;
        let good = signature::sign(b"secret-secret-secret", now_secs(), body);
        assert_eq!(
            a.purge(&headers(signature::HEADER, &good), body).await,
            Ok(PurgeScope::Any)
        );
        assert_eq!(
            a.purge(&headers(signature::HEADER, &good), body).await,
            Err(Denied::Unauthorized("replayed signature"))
        );
        let stale = signature::sign(b"secret-secret-secret", now_secs() - 301, body);
        assert!(a.purge(&headers(signature::HEADER, &stale), body).await.is_err());
        let wrong = signature::sign(b"not-the-secret-at-all", now_secs(), body);
        assert_eq!(
            a.purge(&headers(signature::HEADER, &wrong), body).await,
            Err(Denied::Unauthorized("bad signature"))
        );
        let shop = signature::sign(b"shop-secret-secret", now_secs(), body);
        assert_eq!(
            a.purge(&headers(signature::HEADER, &shop), body).await,
            Ok(PurgeScope::Hosts(vec!["shop.example".into()]))
        );
    }
}
