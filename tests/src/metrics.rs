//! A node's `/metrics` page, read the way a test or a benchmark needs it: one series' value.
//!
//! Series that a node does not export (yet) read as `None`, so a caller can tolerate a metric
//! being added or renamed without failing on an unrelated one.

use std::time::{Duration, Instant};

/// One scrape of a node's Prometheus text exposition.
pub struct Scrape {
    samples: Vec<prometheus_parse::Sample>,
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
        Self::from_text(text)
    }

    /// Parses an exposition already fetched.
    pub fn from_text(text: String) -> Self {
        let lines = text.lines().map(|line| Ok(line.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("/metrics is Prometheus text");
        Self {
            samples: scrape.samples,
        }
    }

    /// The value of counter, gauge or untyped series `name` whose labels include every
    /// `labels` pair; `None` when the node has no such series. Several matches (a subset of
    /// labels) are summed.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use prometheus_parse::Value;
        self.samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)))
            .map(|sample| match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                Value::Histogram(_) | Value::Summary(_) => 0.0,
            })
            .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_found_by_a_subset_of_its_labels_and_a_missing_one_is_none() {
        let scrape = Scrape::from_text(
            "# HELP fresco_store_lookups_total Lookups.\n\
             # TYPE fresco_store_lookups_total counter\n\
             fresco_store_lookups_total{result=\"memory\",tier=\"edge\"} 3\n\
             fresco_store_lookups_total{result=\"disk\",tier=\"edge\"} 4\n\
             # TYPE fresco_purge_lag gauge\n\
             fresco_purge_lag 2\n"
                .to_string(),
        );
        let lookups = "fresco_store_lookups_total";
        assert_eq!(scrape.value(lookups, &[("result", "memory")]), Some(3.0));
        assert_eq!(scrape.value(lookups, &[("tier", "edge")]), Some(7.0), "summed");
        assert_eq!(scrape.value(lookups, &[("result", "none")]), None);
        assert_eq!(scrape.value("fresco_purge_lag", &[]), Some(2.0));
        assert_eq!(scrape.value_or_zero("fresco_missing_total", &[]), 0.0);
    }
}
