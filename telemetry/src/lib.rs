//! How every fresco process logs and exports metrics, so that they all look alike to an
//! operator: structured logs on stderr (`text` or `json`, level from `FRESCO_LOG`, default
//! `info`) and Prometheus text from the process-wide registry.

/// Installs the process's log subscriber. `format` is `text` or `json`.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FRESCO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Every registered metric in Prometheus text format: (content type, body).
pub fn metrics_text() -> Result<(String, Vec<u8>), String> {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    encoder
        .encode(&prometheus::gather(), &mut body)
        .map_err(|e| format!("encoding metrics: {e}"))?;
    Ok((encoder.format_type().to_string(), body))
}
