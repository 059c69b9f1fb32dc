//! purge-api's log stream (`GET /v1/log?from=N`, newline-delimited JSON), read a chunk of
//! complete lines at a time. The purge subscriber follows it; the feed's history refill reads
//! its beginning.

use std::time::Duration;

use fresco_protocol::LogLine;

/// An open log stream.
pub struct LogStream {
    resp: reqwest::Response,
    buffer: Vec<u8>,
}

impl LogStream {
    /// Opens the log from sequence `from` on.
    pub async fn open(http: &reqwest::Client, purge_api: &str, credential: &str, from: u64) -> Result<Self, String> {
        let resp = http
            .get(format!("{}/v1/log?from={from}", purge_api.trim_end_matches('/')))
            .bearer_auth(credential)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("purge-api answered {}", resp.status()));
        }
        Ok(Self {
            resp,
            buffer: Vec::new(),
        })
    }

    /// The lines that arrived next, all complete (at least one), or `None` when the stream
    /// ended. Fails when nothing arrives for `silence` (purge-api sends a heartbeat every
    /// second) or a line is not a log line.
    pub async fn next_lines(&mut self, silence: Duration) -> Result<Option<Vec<LogLine>>, String> {
        loop {
            let Some(chunk) = tokio::time::timeout(silence, self.resp.chunk())
                .await
                .map_err(|_| format!("no heartbeat for {silence:?}"))?
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            self.buffer.extend_from_slice(&chunk);
            let Some(end) = self.buffer.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let complete: Vec<u8> = self.buffer.drain(..=end).collect();
            let lines = complete
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|line| serde_json::from_slice::<LogLine>(line).map_err(|e| format!("bad log line: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if !lines.is_empty() {
                return Ok(Some(lines));
            }
        }
    }
}
