//! What one feed connection follows: parsed from the request, matched against each purge.

use fresco_protocol::Target;
use serde::Deserialize;

use super::purge::PreparedPurge;
use super::sse::Change;
use crate::freshness::Freshness;

/// Largest `POST /_fresco/events` body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest followed URL or tag.
const MAX_ITEM_BYTES: usize = 4096;

/// A request the feed refuses: the status and the reason sent as `{"error": …}`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// A subscription as asked for: `url` and `tag` parameters, and where to resume.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// Followed URLs (paths or absolute URLs).
    #[serde(default)]
    pub urls: Vec<String>,
    /// Followed tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The last event id the client saw (the `Last-Event-ID` header wins over it).
    #[serde(default)]
    pub last_event_id: Option<u64>,
    /// How long ago, in milliseconds, the client loaded what it follows (a page sends
    /// `performance.now()`). A client with no event id yet is first told of the purges made
    /// since then, which it could not have seen: its copies may predate them.
    #[serde(default)]
    pub age_ms: Option<u64>,
}

impl SubscriptionRequest {
    /// Parses `url=…&tag=…&last_event_id=…&age_ms=…` (a query string or a form body).
    pub fn from_form(text: &[u8]) -> Result<Self, Refusal> {
        let mut request = Self::default();
        for (name, value) in form_urlencoded::parse(text) {
            match name.as_ref() {
                "url" => request.urls.push(value.into_owned()),
                "tag" => request.tags.push(value.into_owned()),
                "last_event_id" => request.last_event_id = Some(parse_event_id(&value)?),
                "age_ms" => {
                    let age = value.trim().parse().map_err(|_| {
                        Refusal::new(400, format!("age_ms `{value}` is not a whole number of milliseconds"))
                    })?;
                    request.age_ms = Some(age);
                }
                other => {
                    return Err(Refusal::new(
                        400,
                        format!("unknown parameter `{other}` (use url, tag, last_event_id, age_ms)"),
                    ));
                }
            }
        }
        Ok(request)
    }

    /// Parses a JSON body `{"urls":[…],"tags":[…]}`.
    pub fn from_json(body: &[u8]) -> Result<Self, Refusal> {
        serde_json::from_slice(body).map_err(|e| Refusal::new(400, format!("bad JSON body: {e}")))
    }

    /// Checks the request against the limits and resolves every URL to its cache key.
    pub fn resolve(self, fresh: &Freshness, max_subscriptions: usize) -> Result<Subscription, Refusal> {
        self.check_limits(max_subscriptions)?;
        let urls = self
            .urls
            .into_iter()
            .map(|given| {
                let target = Target::parse(&given, "url").map_err(|m| Refusal::new(400, m))?;
                Ok(Followed {
                    primary: fresh.url_key(&target),
                    given,
                })
            })
            .collect::<Result<_, Refusal>>()?;
        Ok(Subscription { urls, tags: self.tags })
    }

    /// How many items, how long each, and what a tag may hold.
    fn check_limits(&self, max_subscriptions: usize) -> Result<(), Refusal> {
        let count = self.urls.len() + self.tags.len();
        if count == 0 {
            return Err(Refusal::new(400, "follow at least one `url` or `tag`"));
        }
        if count > max_subscriptions {
            return Err(Refusal::new(
                413,
                format!(
                    "{count} URLs and tags is more than the {max_subscriptions} one feed may follow; open another feed"
                ),
            ));
        }
        if let Some(long) = self.urls.iter().chain(&self.tags).find(|t| t.len() > MAX_ITEM_BYTES) {
            return Err(Refusal::new(
                400,
                // Cut on a character boundary: a client's text is any UTF-8.
                format!(
                    "`{}…` is longer than {MAX_ITEM_BYTES} bytes",
                    &long[..long.floor_char_boundary(64)]
                ),
            ));
        }
        if self.tags.iter().any(|t| t.is_empty() || t.contains([' ', ','])) {
            return Err(Refusal::new(
                400,
                "a tag must be a non-empty word without spaces or commas",
            ));
        }
        Ok(())
    }
}

/// Parses an event id (a purge sequence number).
pub fn parse_event_id(text: &str) -> Result<u64, Refusal> {
    text.trim()
        .parse()
        .map_err(|_| Refusal::new(400, format!("event id `{text}` is not a purge sequence number")))
}

struct Followed {
    given: String,
    primary: String,
}

/// What one connection follows, resolved to cache keys.
pub struct Subscription {
    urls: Vec<Followed>,
    tags: Vec<String>,
}

impl Subscription {
    /// The primary keys of the followed URLs.
    pub fn primaries(&self) -> impl Iterator<Item = &str> {
        self.urls.iter().map(|f| f.primary.as_str())
    }

    /// Appends the events `purge` makes for this subscription to `out`; returns how many.
    pub fn write_events(&self, purge: &PreparedPurge, out: &mut Vec<u8>) -> usize {
        let mut written = 0;
        let mut reported: Vec<&str> = Vec::new();
        for followed in &self.urls {
            if !purge.covers(&followed.primary) {
                continue;
            }
            let tags: Vec<&str> = purge.tags_of(&followed.primary).iter().map(String::as_str).collect();
            Change {
                seq: purge.seq,
                url: Some(&followed.given),
                etag: purge.etags.get(&followed.primary).map(String::as_str),
                tags: &tags,
                soft: purge.soft,
            }
            .write(out);
            reported.push(&followed.primary);
            written += 1;
        }
        let followed_tags: Vec<&str> = self
            .tags
            .iter()
            .filter(|t| purge.tags.contains(t))
            .map(String::as_str)
            .collect();
        if followed_tags.is_empty() {
            return written;
        }
        let mut any_url = false;
        for (primary, tags) in &purge.tagged {
            let tags: Vec<&str> = tags
                .iter()
                .map(String::as_str)
                .filter(|t| followed_tags.contains(t))
                .collect();
            if tags.is_empty() || reported.contains(&primary.as_str()) {
                continue;
            }
            any_url = true;
            Change {
                seq: purge.seq,
                url: Some(primary.split_once('\n').map_or(primary.as_str(), |(_, path)| path)),
                etag: purge.etags.get(primary).map(String::as_str),
                tags: &tags,
                soft: purge.soft,
            }
            .write(out);
            written += 1;
        }
        if !any_url && written == 0 {
            Change {
                seq: purge.seq,
                url: None,
                etag: None,
                tags: &followed_tags,
                soft: purge.soft,
            }
            .write(out);
            written += 1;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_urls_tags_and_where_to_resume() {
        let request = SubscriptionRequest::from_form(b"url=%2Fimg%2Fa.jpg&url=/b.png&tag=red&last_event_id=7").unwrap();
        assert_eq!(request.urls, ["/img/a.jpg", "/b.png"]);
        assert_eq!(request.tags, ["red"]);
        assert_eq!(request.last_event_id, Some(7));
        assert_eq!(
            SubscriptionRequest::from_form(b"last_event_id=x").unwrap_err().status,
            400
        );
        assert_eq!(SubscriptionRequest::from_form(b"uri=/a").unwrap_err().status, 400);
        let json = SubscriptionRequest::from_json(br#"{"urls":["/a"],"tags":["t"]}"#).unwrap();
        assert_eq!((json.urls.len(), json.tags.len()), (1, 1));
    }

    #[test]
    fn a_long_url_of_any_text_is_refused_not_a_panic() {
        // 63 ASCII bytes, then two-byte characters: byte 64 falls inside one.
        let long = format!("/{}{}", "a".repeat(62), "é".repeat(3000));
        let request = SubscriptionRequest {
            urls: vec![long],
            ..Default::default()
        };
        let refusal = request.check_limits(256).unwrap_err();
        assert_eq!(refusal.status, 400);
        assert!(
            refusal.message.contains("longer than 4096 bytes"),
            "{}",
            refusal.message
        );
    }
}
