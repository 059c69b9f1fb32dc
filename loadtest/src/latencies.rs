//! Latency percentiles for the benchmarks' reports: an HDR histogram of microseconds, 1 µs to
//! an hour, with three significant digits, so a percentile read back is within 0.1 % of the
//! one recorded.

use hdrhistogram::Histogram;

const HOUR_US: u64 = 3_600_000_000;

/// Latencies recorded in milliseconds and read back as percentiles; 0 while empty.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// None yet.
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, HOUR_US, 3).expect("bounds within hdrhistogram's range"))
    }

    /// Records one latency (beyond an hour: an hour).
    pub fn record_ms(&mut self, ms: f64) {
        self.0.saturating_record((ms.max(0.0) * 1000.0).round() as u64);
    }

    /// The `q` quantile (0–1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// The smallest, in milliseconds.
    pub fn min_ms(&self) -> f64 {
        self.0.min() as f64 / 1000.0
    }

    /// The largest, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }

    /// How many were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl FromIterator<f64> for Latencies {
    fn from_iter<I: IntoIterator<Item = f64>>(values: I) -> Self {
        let mut latencies = Self::new();
        values.into_iter().for_each(|ms| latencies.record_ms(ms));
        latencies
    }
}

impl<'a> FromIterator<&'a f64> for Latencies {
    fn from_iter<I: IntoIterator<Item = &'a f64>>(values: I) -> Self {
        values.into_iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_spread_and_of_nothing() {
        let latencies: Latencies = (1..=1000).map(|i| i as f64 / 10.0).collect();
        assert_eq!(latencies.len(), 1000);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(near(latencies.quantile_ms(0.5), 50.0), "{}", latencies.quantile_ms(0.5));
        assert!(
            near(latencies.quantile_ms(0.99), 99.0),
            "{}",
            latencies.quantile_ms(0.99)
        );
        assert!(near(latencies.max_ms(), 100.0));
        assert_eq!(Latencies::new().quantile_ms(0.99), 0.0);
    }
}
