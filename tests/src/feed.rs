//! Reading an edge's change feed (`/_fresco/events`) in tests, message by message.

use std::time::Duration;

/// One server-sent message: an event, or a keepalive (an id without data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// `event:` (empty for a keepalive).
    pub event: String,
    /// `id:`, when the message had one.
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
    buffer: String,
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
            buffer: String::new(),
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
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = parse(&block) {
                    return Some(message);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("the feed is UTF-8"));
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

/// Parses one message block; `None` for a block of comments and `retry:` only.
fn parse(block: &str) -> Option<Message> {
    let mut message = Message::default();
    let mut any = false;
    for line in block.lines() {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "event" => message.event = value.to_string(),
            "id" => message.id = value.parse().ok(),
            "data" => message.data.push_str(value),
            _ => continue,
        }
        any = true;
    }
    any.then_some(message)
}
