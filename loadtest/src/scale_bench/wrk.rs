//! wrk (Debian's package) as the load generator: one process per edge, parsed.

use std::process::Command;

/// What one wrk run measured.
#[derive(Clone, Debug, Default)]
pub struct WrkResult {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Socket errors and non-2xx answers.
    pub errors: u64,
}

/// Starts `wrk` against `url` (one thread, `connections`, `seconds`) without waiting.
pub fn start(url: &str, connections: usize, seconds: u64) -> std::io::Result<std::process::Child> {
    Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("running wrk ({e}): apt-get install wrk")))
}

/// Waits for a run started by [`start`] and parses its report.
pub fn finish(child: std::process::Child) -> std::io::Result<WrkResult> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(parse(&text))
}

/// Parses wrk's text report.
pub fn parse(text: &str) -> WrkResult {
    let mut result = WrkResult::default();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => result.rps = v.parse().unwrap_or(0.0),
            (Some("50%"), Some(v)) => result.p50_ms = millis(v),
            (Some("99%"), Some(v)) => result.p99_ms = millis(v),
            (Some("Non-2xx"), _) => result.errors += line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0),
            (Some("Socket"), _) => {
                result.errors += line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    result
}

/// `812.00us`, `1.20ms`, `2.01s` in milliseconds.
fn millis(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let report = "Running 1s test @ http://127.0.0.1:1/x\n  1 threads and 8 connections\n\
            Latency Distribution\n     50%  812.00us\n     75%    1.01ms\n     90%    1.20ms\n     99%    2.50ms\n\
            12000 requests in 1.00s, 240.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            Requests/sec:  12000.50\nTransfer/sec:    240.00MB\n";
        let r = parse(report);
        assert_eq!(r.rps, 12000.5);
        assert_eq!((r.p50_ms, r.p99_ms), (0.812, 2.5));
        assert_eq!(r.errors, 3);
    }
}
