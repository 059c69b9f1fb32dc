//! Reading an edge's change feed (`/_fresco/events`) in tests, message by message, with the
//! Rust client's SSE parser (the browser's algorithm).

use std::collections::VecDeque;
use std::time::Duration;

use fresco_client::sse::{SseItem, SseParser};

/// One server-sent message: an event, or a keepalive (an id without data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// `event:` (empty for a keepalive).
    pub event: String,
    /// The last event id when the message was dispatched (a browser's `lastEventId`), if any.
    pub id: Option<u64>,
    /// `data:` (empty for a keepalive).
    pub data: String,
}

impl Message {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is JSON ({e}): {}", self.data))
    }
}

/// An open feed.
pub struct Feed {
    resp: reqwest::Response,
    parser: SseParser,
    parsed: VecDeque<Message>,
}

impl Feed {
    /// Opens `url` (`http://edge/_fresco/events?…`), optionally resuming after `last_event_id`.
    /// Panics unless the edge answers 200 with an event stream.
    pub async fn open(url: &str, last_event_id: Option<u64>) -> Self {
        let resp = Self::request(url, last_event_id).await;
        assert_eq!(resp.status(), 200, "{url}: {:?}", resp.headers());
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream",
            "a feed is an event stream"
        );
        Self {
            resp,
            parser: SseParser::new(),
            parsed: VecDeque::new(),
        }
    }

    /// Sends the feed request and returns the answer as it is (for refusals).
    pub async fn request(url: &str, last_event_id: Option<u64>) -> reqwest::Response {
        let http = reqwest::Client::builder().build().expect("a client");
        let mut req = http.get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        req.send().await.expect("the edge answers")
    }

    /// The next message, or `None` if none comes within `wait` or the stream ends.
    pub async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(message) = self.parsed.pop_front() {
                return Some(message);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            for item in self.parser.feed(&chunk) {
                let message = match item {
                    SseItem::Message(m) => Message {
                        event: m.event,
                        id: m.id.parse().ok(),
                        data: m.data,
                    },
                    SseItem::Id(id) => Message {
                        id: id.parse().ok(),
                        ..Message::default()
                    },
                    SseItem::Retry(_) => continue,
                };
                self.parsed.push_back(message);
            }
        }
    }

    /// The next message whose event is `event`, skipping others (keepalives, hello).
    pub async fn next_event(&mut self, event: &str, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next(left).await?;
            if message.event == event {
                return Some(message);
            }
        }
    }
}
