//! Error responses: a status code and a JSON body `{"error": …}`, and which is which.

use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// What kind of failure an error is, for the status code and the `fresco_errors_total` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The upstream did not answer in time: 504.
    UpstreamTimeout,
    /// The upstream refused, reset or could not be reached: 502.
    UpstreamUnreachable,
    /// The client sent something unusable, or went away: 400 (or nothing).
    Client,
    /// A fault of this node: 500.
    Internal,
}

impl FailureKind {
    /// Every kind, in declaration order (the order of `kind as usize`).
    pub const ALL: [FailureKind; 4] = [
        Self::UpstreamTimeout,
        Self::UpstreamUnreachable,
        Self::Client,
        Self::Internal,
    ];

    /// Classifies a pingora error.
    pub fn of(e: &Error) -> (Self, u16) {
        use ErrorType::*;
        match e.etype() {
            HTTPStatus(code) if *code >= 500 => (Self::Internal, *code),
            HTTPStatus(code) => (Self::Client, *code),
            ConnectTimedout | ReadTimedout | WriteTimedout => (Self::UpstreamTimeout, 504),
            _ => match e.esource() {
                ErrorSource::Upstream => (Self::UpstreamUnreachable, 502),
                ErrorSource::Downstream => (Self::Client, 400),
                ErrorSource::Internal | ErrorSource::Unset => (Self::Internal, 500),
            },
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::Client => "client",
            Self::Internal => "internal",
        }
    }

    /// The message clients see.
    pub fn message(self) -> &'static str {
        match self {
            Self::UpstreamTimeout => "upstream did not answer within the deadline",
            Self::UpstreamUnreachable => "upstream unreachable",
            Self::Client => "bad request",
            Self::Internal => "internal error",
        }
    }
}

/// Sends `status` with a JSON body `{"error": message, "node": node}`.
pub async fn send_json_error(
    session: &mut Session,
    status: u16,
    message: &str,
    node: &str,
) -> pingora_error::Result<()> {
    send_json_error_with(session, status, message, node, &[]).await
}

/// [`send_json_error`] with more response headers (`Retry-After`, `Allow`).
pub async fn send_json_error_with(
    session: &mut Session,
    status: u16,
    message: &str,
    node: &str,
    extra: &[(&'static str, &str)],
) -> pingora_error::Result<()> {
    let body = serde_json::json!({ "error": message, "node": node }).to_string();
    let mut header = ResponseHeader::build(status, Some(5 + extra.len()))?;
    for (name, value) in extra {
        header.insert_header(*name, *value)?;
    }
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len())?;
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("x-fresco-node", node)?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(header), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await?;
    Ok(())
}
