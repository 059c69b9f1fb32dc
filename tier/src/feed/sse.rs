//! The feed's messages as `text/event-stream` text (docs/feed.md has the contract).

use serde::Serialize;

/// The client's reconnection delay, sent once at the start of a feed.
pub const RETRY: &[u8] = b"retry: 1000\n\n";

#[derive(Serialize)]
struct ChangeData<'a> {
    seq: u64,
    url: Option<&'a str>,
    etag: Option<&'a str>,
    tags: &'a [&'a str],
    soft: bool,
}

/// One `change` event.
pub struct Change<'a> {
    /// The purge's sequence number (also the event id).
    pub seq: u64,
    /// The followed URL as the subscriber gave it; `None` for a tag nobody's URL is known for.
    pub url: Option<&'a str>,
    /// The ETag of the copy the purge replaced, when known.
    pub etag: Option<&'a str>,
    /// The purged tags that matched.
    pub tags: &'a [&'a str],
    /// A soft purge.
    pub soft: bool,
}

impl Change<'_> {
    /// Appends the event to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let data = ChangeData {
            seq: self.seq,
            url: self.url,
            etag: self.etag,
            tags: self.tags,
            soft: self.soft,
        };
        out.extend_from_slice(format!("event: change\nid: {}\ndata: ", self.seq).as_bytes());
        serde_json::to_writer(&mut *out, &data).expect("serializing to a Vec cannot fail");
        out.extend_from_slice(b"\n\n");
    }
}

/// The `hello` event: the subscriber's position once any replay is done.
pub fn hello(out: &mut Vec<u8>, seq: u64, node: &str) {
    let data = serde_json::json!({ "seq": seq, "node": node });
    out.extend_from_slice(format!("event: hello\nid: {seq}\ndata: {data}\n\n").as_bytes());
}

/// The `reset` event: the edge cannot replay what the subscriber missed; it continues at `seq`.
pub fn reset(out: &mut Vec<u8>, seq: u64, reason: &str) {
    let data = serde_json::json!({ "seq": seq, "reason": reason });
    out.extend_from_slice(format!("event: reset\nid: {seq}\ndata: {data}\n\n").as_bytes());
}

/// A keepalive: a comment, and the position as an id without data, which updates the client's
/// last event id without dispatching an event.
pub fn keepalive(out: &mut Vec<u8>, seq: u64) {
    out.extend_from_slice(format!(": keepalive\nid: {seq}\n\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_one_event_with_its_id_and_json_data() {
        let mut out = Vec::new();
        Change {
            seq: 42,
            url: Some("/img/a.jpg"),
            etag: Some("\"x\""),
            tags: &["t"],
            soft: false,
        }
        .write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: change\nid: 42\ndata: {\"seq\":42,\"url\":\"/img/a.jpg\",\"etag\":\"\\\"x\\\"\",\"tags\":[\"t\"],\"soft\":false}\n\n"
        );
    }
}
