//! `POST /v1/purge` bodies (`fresco_purge_api::request`), from operators and origins.
//!
//! Promises: any body is accepted or refused with a reason, never a panic; an accepted one
//! makes a record within the limits that the log stores and reads back unchanged; a purge
//! scoped to a host either stays on it or is refused.

use fresco_protocol::PurgeRecord;
use fresco_purge_api::auth::PurgeScope;
use fresco_purge_api::request::{MAX_ENTRIES, PurgeRequest};

/// The bytes are a request body.
pub fn run(data: &[u8]) {
    let Ok(request) = PurgeRequest::parse(data) else { return };
    let scope = PurgeScope::Hosts(vec!["shop.example".into()]);
    for scope in [PurgeScope::Any, scope] {
        if request.check_scope(&scope).is_err() {
            continue;
        }
        let Ok(record) = request.to_record(1, &scope) else {
            continue;
        };
        let entries = record.urls.len() + record.tags.len() + record.prefixes.len();
        assert!((1..=MAX_ENTRIES).contains(&entries), "{entries} entries accepted");
        if let PurgeScope::Hosts(hosts) = &scope {
            for target in record.urls.iter().chain(&record.prefixes) {
                assert!(hosts.contains(&target.host), "{target:?} is outside {hosts:?}");
            }
        }
        let stored = serde_json::to_vec(&record).expect("a record serializes");
        let read: PurgeRecord = serde_json::from_slice(&stored).expect("a stored record reads back");
        assert_eq!(read, record, "the log changes a record");
    }
}
