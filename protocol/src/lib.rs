//! The purge protocol between purge-api, the cache nodes and origins, as it is on the wire.
//!
//! - [`PurgeRecord`]: one entry of the purge log, as nodes receive it.
//! - [`LogLine`]: one line of the log stream (`GET /v1/log?from=N`, newline-delimited JSON).
//! - [`LeaseRequest`]/[`LeaseResponse`], [`AckRequest`]: how a node keeps its lease and reports
//!   what it has applied.
//! - [`signature`]: the origin webhook signature, `X-Fresco-Signature: t=…,v1=…`.
//! - [`credential`]: the credential a node presents to purge-api, one per node id.

pub mod credential;
pub mod signature;

use serde::{Deserialize, Serialize};

/// A URL or path prefix as purged: the host picks the site (empty: the default site).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// Host name from an absolute URL, lower-case; empty for a bare path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The path (with query, for URLs), starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses `/path` or `http(s)://host/path`; `what` names the field in the error
    /// (`url`, `prefix`).
    pub fn parse(text: &str, what: &str) -> Result<Self, String> {
        if text.starts_with('/') {
            if text.starts_with("//") {
                return Err(format!(
                    "{what} `{text}` is ambiguous: use a path (/img/a.jpg) or an absolute URL"
                ));
            }
            return Ok(Self {
                host: String::new(),
                path: text.to_string(),
            });
        }
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .ok_or_else(|| format!("{what} `{text}` is neither a path (/img/a.jpg) nor an http(s) URL"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(format!("{what} `{text}` has no usable host"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            path: if path.is_empty() { "/".into() } else { path.to_string() },
        })
    }
}

/// One purge, as stored in the log and streamed to nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    /// Position in the log; consecutive from 1.
    pub seq: u64,
    /// When purge-api accepted it, Unix milliseconds.
    pub at_ms: u64,
    /// URLs, each with all its variants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<Target>,
    /// Surrogate keys (`Surrogate-Key` / `Cache-Tag` response headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Path prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<Target>,
    /// The hosts whose sites `tags` are limited to; empty: every site. Set when an origin's
    /// webhook secret is scoped to its site, so that its tag purges reach only its own objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_hosts: Vec<String>,
    /// Soft purge: mark stale (revalidate before serving) instead of deleting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

/// One line of the log stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLine {
    /// A purge to apply.
    Purge(PurgeRecord),
    /// The node asked for sequences the log no longer keeps: it must drop every mutable
    /// object, then continue from `next`.
    Reset {
        /// The first sequence the stream will send after this line.
        next: u64,
    },
    /// Nothing new; sent periodically so that a dead stream is noticed.
    Heartbeat {
        /// The log's head at the time.
        head: u64,
    },
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Client-facing cache.
    Edge,
    /// Origin-facing cache.
    Shield,
}

/// `POST /v1/lease`: a node asks for (or renews) its lease.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The node's id.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// The address it serves on.
    pub address: String,
    /// The address of its admin endpoints (`/readyz`), which edges probe before they route
    /// misses to a shield. Absent from nodes that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The highest sequence it has applied, with every one before it.
    pub applied: u64,
}

/// The answer to a [`LeaseRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// Whether the node holds a lease now. Without one it is fenced.
    pub granted: bool,
    /// The lease's length, counted by the node from when it *sent* the request.
    pub lease_ms: u64,
    /// The log's head now; the next renewal is granted only if the node has applied it.
    pub head: u64,
    /// Why not, when not granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/ack`: a node has applied every purge up to `applied`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// The node's id.
    pub node: String,
    /// The highest sequence applied, with every one before it.
    pub applied: u64,
    /// A copy, sent to a replica the node does not follow so that a purge answered there need
    /// not wait for the ack to come through the shared table: counted there, not shared (the
    /// replica the node follows shares it). Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy: bool,
}
