//! `/_fresco/live.js`: the browser script (`client/live.js`), served by every edge.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::sync::LazyLock;

/// The script, as built into the edge.
pub const LIVE_JS: &str = include_str!("../../../client/live.js");

static ETAG: LazyLock<String> = LazyLock::new(|| format!("\"{}\"", &blake3::hash(LIVE_JS.as_bytes()).to_hex()[..16]));

/// Answers a `GET` or `HEAD` of the script (304 to a matching `If-None-Match`).
pub async fn serve_live_js(session: &mut Session, node: &str) -> Result<()> {
    let req = session.req_header();
    let head = req.method == http::Method::HEAD;
    let not_modified = req
        .headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == ETAG.as_str()));
    let status = if not_modified { 304 } else { 200 };
    let mut header = ResponseHeader::build(status, Some(6))?;
    header.insert_header("content-type", "text/javascript; charset=utf-8")?;
    // Short: a new edge version's script reaches pages within minutes; the ETag makes the
    // revalidation cheap.
    header.insert_header("cache-control", "public, max-age=300")?;
    header.insert_header("etag", ETAG.as_str())?;
    header.insert_header("access-control-allow-origin", "*")?;
    header.insert_header("x-fresco-node", node)?;
    if not_modified {
        session.write_response_header(Box::new(header), true).await?;
        return Ok(());
    }
    header.insert_header("content-length", LIVE_JS.len())?;
    session.write_response_header(Box::new(header), head).await?;
    if !head {
        session
            .write_response_body(Some(Bytes::from_static(LIVE_JS.as_bytes())), true)
            .await?;
    }
    Ok(())
}
