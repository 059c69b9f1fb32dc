//! Refilling the feed's history after a start, from purge-api's log.
//!
//! The history lives in memory. Without a refill, every browser that reconnects to a restarted
//! edge would get `reset` and reload all its images; with it, they get just what they missed.
//! The refill reads the purges up to what the node had applied when it started — the node's
//! own catch-up goes on separately, and everything after that point reaches the history as it
//! is applied.

use std::sync::Arc;
use std::time::Duration;

use fresco_protocol::{LogLine, PurgeRecord};

use super::FeedHub;
use crate::freshness::log_stream::LogStream;
use crate::freshness::purge_apis::PurgeApiUrls;

/// Reads the `history` purges ending at the hub's start position from `purge_api` (each replica
/// in turn) and puts them in front of the history. Gives up (leaving the history as it is)
/// after a few failures.
pub async fn run(hub: Arc<FeedHub>, http: reqwest::ClientBuilder, purge_api: PurgeApiUrls, credential: String) {
    let until = hub.started_at();
    if until == 0 {
        hub.prefill(&[]);
        return;
    }
    let from = until.saturating_sub(hub.limits().history as u64 - 1).max(1);
    let http = http
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("an HTTP client");
    for attempt in 0..5u32 {
        let replica = &purge_api.0[attempt as usize % purge_api.0.len()];
        match read_log(&http, replica, &credential, from, until).await {
            Ok(records) => {
                tracing::info!(
                    from,
                    until,
                    purges = records.len(),
                    "feed history refilled from the purge log"
                );
                hub.prefill(&records);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "refilling the feed history failed");
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            }
        }
    }
    hub.prefill(&[]);
}

/// The purges `from..=until` (fewer when the log no longer keeps the oldest).
async fn read_log(
    http: &reqwest::Client,
    purge_api: &str,
    credential: &str,
    from: u64,
    until: u64,
) -> Result<Vec<PurgeRecord>, String> {
    let mut stream = LogStream::open(http, purge_api, credential, from).await?;
    let mut records = Vec::new();
    while let Some(lines) = stream.next_lines(Duration::from_secs(3)).await? {
        for line in lines {
            match line {
                LogLine::Purge(record) if record.seq <= until => {
                    let done = record.seq == until;
                    records.push(record);
                    if done {
                        return Ok(records);
                    }
                }
                // Past the start position, or the log's head is below it (a rebuilt log):
                // nothing more to refill.
                LogLine::Purge(_) => return Ok(records),
                LogLine::Heartbeat { head } if head < until => return Ok(records),
                LogLine::Heartbeat { .. } => {}
                // The log no longer keeps `from`: it goes on from a later sequence.
                LogLine::Reset { .. } => records.clear(),
            }
        }
    }
    Ok(records)
}
