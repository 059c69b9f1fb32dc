//! What a browser asks the change feed to follow (`fresco_tier::feed::subscription`): a query
//! string, a form body or JSON, and a `Last-Event-ID`.
//!
//! Promises: any of them is a subscription or a refusal with a 4xx status, never a panic.

use fresco_tier::feed::subscription::{SubscriptionRequest, parse_event_id};

/// The bytes are tried as a form, as JSON and as an event id.
pub fn run(data: &[u8]) {
    for parsed in [
        SubscriptionRequest::from_form(data),
        SubscriptionRequest::from_json(data),
    ] {
        if let Err(refusal) = parsed {
            assert!((400..500).contains(&refusal.status), "refused with {}", refusal.status);
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(refusal) = parse_event_id(text)
    {
        assert!((400..500).contains(&refusal.status), "refused with {}", refusal.status);
    }
}
