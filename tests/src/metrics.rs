//! A node's `/metrics` page, read the way a test or a benchmark needs it: one series' value.
//!
//! Series that a node does not export (yet) read as `None`, so a caller can tolerate a metric
//! being added or renamed without failing on an unrelated one.

use std::time::{Duration, Instant};

/// One scrape of a node's Prometheus text exposition.
pub struct Scrape {
    text: String,
}

impl Scrape {
    /// `GET {admin}/metrics`.
    pub async fn of(admin: &str) -> Self {
        let text = crate::client()
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .expect("the admin endpoint answers")
            .text()
            .await
            .expect("/metrics is text");
        Self { text }
    }

    /// Wraps an exposition already fetched.
    pub fn from_text(text: String) -> Self {
        Self { text }
    }

    /// The value of series `name` whose labels include every `labels` pair; `None` when the
    /// node has no such series. Several matches (a subset of labels) are summed.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                continue;
            }
            // fresco's label values hold no commas or quotes, so a plain split is enough.
            let has = |(k, v): &(&str, &str)| {
                series_labels.split(',').any(|pair| {
                    pair.split_once('=')
                        .is_some_and(|(key, value)| key == *k && value.trim_matches('"') == *v)
                })
            };
            if labels.iter().all(has) {
                *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        found
    }

    /// As [`Scrape::value`], zero when the series is missing.
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

/// Bytes foyer has written to a node's disk tier.
pub const DISK_WRITE_BYTES: (&str, &[(&str, &str)]) = ("foyer_storage_disk_io_bytes_total", &[("op", "write")]);

/// Waits until the disk tier of the node at `admin` has written at least `bytes` and then
/// stopped writing for a moment: the store writes on insertion, but through a queue, and a
/// `kill -9` loses what is still queued. Panics after `timeout`.
pub async fn wait_for_disk_writes(admin: &str, bytes: u64, timeout: Duration) -> u64 {
    let started = Instant::now();
    let mut last = None;
    loop {
        let (name, labels) = DISK_WRITE_BYTES;
        let written = Scrape::of(admin).await.value_or_zero(name, labels) as u64;
        if written >= bytes && last == Some(written) {
            return written;
        }
        assert!(
            started.elapsed() < timeout,
            "{admin}: the disk tier wrote {written} bytes, expected at least {bytes}"
        );
        last = Some(written);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
