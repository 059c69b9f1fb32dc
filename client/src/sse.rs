//! A parser of `text/event-stream` (the HTML "server-sent events" format), fed with whatever
//! chunks the network delivers.
//!
//! It follows the browser's algorithm so that the Rust client and `live.js` read the feed the
//! same way: lines end with CRLF, LF or CR; `:` starts a comment; a blank line dispatches the
//! message; an `id:` field updates the last event id even when the message has no data and so
//! dispatches nothing (the feed's keepalives rely on that, see `docs/feed.md`).

/// One dispatched message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseMessage {
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id when the message was dispatched (from this message or an earlier one).
    pub id: String,
}

/// What one [`SseParser::feed`] found, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    /// A message with data.
    Message(SseMessage),
    /// A blank line that ended a message without data but with an `id:`: the position moved
    /// without an event (a keepalive).
    Id(String),
    /// A `retry:` field (milliseconds).
    Retry(u64),
}

/// An incremental SSE parser; see the module documentation.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next one ends nothing.
    after_cr: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    id_buffer: String,
    id_seen: bool,
    last_id: String,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last event id: what a reconnecting client sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// Parses `chunk` and returns what it completed. A message cut by the chunk boundary is
    /// kept until the rest arrives.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseItem> {
        let mut out = Vec::new();
        if chunk.is_empty() {
            return out;
        }
        let mut rest = chunk;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
            if rest[end] == b'\r' {
                if rest.get(end + 1) == Some(&b'\n') {
                    rest = &rest[end + 2..];
                } else if end + 1 == rest.len() {
                    self.after_cr = true;
                    rest = &[];
                } else {
                    rest = &rest[end + 1..];
                }
            } else {
                rest = &rest[end + 1..];
            }
        }
        self.line.extend_from_slice(rest);
        out
    }

    fn process_line(&mut self, mut line: &[u8], out: &mut Vec<SseItem>) {
        if !self.started {
            self.started = true;
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
                self.has_data = true;
            }
            // An id with NUL is ignored, as browsers do.
            b"id" if !value.contains('\0') => {
                self.id_buffer = value.into_owned();
                self.id_seen = true;
            }
            b"retry" => {
                if let Ok(ms) = value.parse() {
                    out.push(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        self.last_id = self.id_buffer.clone();
        let event = std::mem::take(&mut self.event);
        let id_seen = std::mem::replace(&mut self.id_seen, false);
        if !self.has_data {
            if id_seen {
                out.push(SseItem::Id(self.last_id.clone()));
            }
            return;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        out.push(SseItem::Message(SseMessage {
            event: if event.is_empty() { "message".into() } else { event },
            data,
            id: self.last_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = "retry: 1000\n\nevent: hello\nid: 41\ndata: {\"seq\":41}\n\n: keepalive\nid: 42\n\n\
                        event: change\nid: 43\ndata: line one\ndata: line two\n\n";

    fn expected() -> Vec<SseItem> {
        vec![
            SseItem::Retry(1000),
            SseItem::Message(SseMessage {
                event: "hello".into(),
                data: "{\"seq\":41}".into(),
                id: "41".into(),
            }),
            SseItem::Id("42".into()),
            SseItem::Message(SseMessage {
                event: "change".into(),
                data: "line one\nline two".into(),
                id: "43".into(),
            }),
        ]
    }

    fn parse_in_chunks(input: &[u8], cuts: &[usize]) -> (Vec<SseItem>, String) {
        let mut parser = SseParser::new();
        let mut items = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            items.extend(parser.feed(&input[from..cut]));
            from = cut;
        }
        (items, parser.last_event_id().to_string())
    }

    #[test]
    fn whole_stream_in_one_chunk() {
        let (items, last) = parse_in_chunks(FEED.as_bytes(), &[]);
        assert_eq!(items, expected());
        assert_eq!(last, "43");
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        for input in [FEED.to_string(), FEED.replace('\n', "\r\n"), FEED.replace('\n', "\r")] {
            let bytes = input.as_bytes();
            for cut in 0..=bytes.len() {
                let (items, last) = parse_in_chunks(bytes, &[cut]);
                assert_eq!(items, expected(), "cut at {cut} of {input:?}");
                assert_eq!(last, "43");
            }
            // One byte at a time.
            let cuts: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(parse_in_chunks(bytes, &cuts).0, expected());
        }
    }

    #[test]
    fn comments_and_unknown_fields_dispatch_nothing() {
        let (items, last) = parse_in_chunks(b": hi\n\nfoo: bar\n\n:x\n\n", &[]);
        assert!(items.is_empty(), "{items:?}");
        assert_eq!(last, "");
    }

    #[test]
    fn id_only_messages_move_the_position_without_an_event() {
        let (items, last) = parse_in_chunks(b"id: 7\n\n: keepalive\nid: 9\n\n", &[]);
        assert_eq!(items, vec![SseItem::Id("7".into()), SseItem::Id("9".into())]);
        assert_eq!(last, "9");
        // A later message without an id keeps the last one.
        let (items, _) = parse_in_chunks(b"id: 9\n\ndata: x\n\n", &[]);
        assert_eq!(
            items[1],
            SseItem::Message(SseMessage {
                event: "message".into(),
                data: "x".into(),
                id: "9".into()
            })
        );
    }

    #[test]
    fn field_forms_follow_the_browser() {
        // No space after the colon, a field without a colon, an empty data line, a BOM.
        let (items, _) = parse_in_chunks("\u{feff}data:a\ndata\ndata: b\nevent:x\n\n".as_bytes(), &[]);
        assert_eq!(
            items,
            vec![SseItem::Message(SseMessage {
                event: "x".into(),
                data: "a\n\nb".into(),
                id: String::new()
            })]
        );
    }

    #[test]
    fn an_unfinished_message_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert!(parser.feed(b"event: change\nid: 5\ndata: {}\n").is_empty());
        assert_eq!(parser.last_event_id(), "");
        assert_eq!(parser.feed(b"\n").len(), 1);
        assert_eq!(parser.last_event_id(), "5");
    }
}
