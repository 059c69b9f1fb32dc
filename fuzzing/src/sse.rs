//! The Rust client's server-sent events parser (`fresco_client::sse`), reading what an edge,
//! or anything posing as one, sends.
//!
//! Promises: no panic, and the same items however the network cuts the stream into chunks.

use fresco_client::sse::SseParser;

/// Byte 0 picks where the stream is cut; the rest is the stream.
pub fn run(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut whole = SseParser::new();
    let at_once = whole.feed(stream);
    let cut = usize::from(cut).min(stream.len());
    let mut parts = SseParser::new();
    let mut in_chunks = parts.feed(&stream[..cut]);
    in_chunks.extend(parts.feed(&stream[cut..]));
    assert_eq!(at_once, in_chunks, "cutting the stream at {cut} changes what it says");
    assert_eq!(whole.last_event_id(), parts.last_event_id());
    let mut bytewise = SseParser::new();
    let one_by_one: Vec<_> = stream.chunks(1).flat_map(|b| bytewise.feed(b)).collect();
    assert_eq!(at_once, one_by_one, "a byte at a time changes what the stream says");
}
