//! Compression at rest: which bodies are stored brotli-compressed, and how.
//!
//! Only formats that compress are tried (SVG, BMP, TIFF, ICO, text and the like); JPEG, PNG,
//! WebP, AVIF and GIF are compressed already and never recompressed. A body is kept compressed
//! only when that saves at least [`MIN_SAVING_PERCENT`] of it. The quality is
//! [`BROTLI_QUALITY`], chosen by `cargo run --release -p fresco-store --example
//! brotli_quality` (docs/benchmarks.md): quality 5 stores SVG within 1.2 points of quality 9 at
//! a twenty-fifth of its time; quality 11 is a third smaller again but a hundred times slower,
//! and compression runs on the proxy thread that completes the fill.

use std::io::{Read, Write};

use bytes::Bytes;

/// The brotli quality bodies are stored at.
pub const BROTLI_QUALITY: u32 = 5;
/// brotli's window (log2 of bytes); images of a few MB fit in the largest regular one.
const BROTLI_WINDOW: u32 = 22;
/// Smallest saving, in percent of the body, for a body to be kept compressed.
pub const MIN_SAVING_PERCENT: usize = 10;
/// Bodies smaller than this are not worth a compression frame.
const MIN_BODY_BYTES: usize = 256;

/// The content-type class a body is counted under in the compression metrics, or `None`
/// when bodies of that type are never compressed.
pub fn compressible_class(content_type: &str) -> Option<&'static str> {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "image/svg+xml" => Some("svg"),
        "image/bmp" | "image/x-bmp" | "image/x-ms-bmp" => Some("bmp"),
        "image/tiff" => Some("tiff"),
        "image/x-icon" | "image/vnd.microsoft.icon" => Some("ico"),
        "application/json" | "application/javascript" | "application/xml" | "text/javascript" => Some("text"),
        text if text.starts_with("text/") => Some("text"),
        _ => None,
    }
}

/// `body` compressed, when that saves at least [`MIN_SAVING_PERCENT`].
pub fn compress_if_worth_it(body: &[u8]) -> Option<Bytes> {
    if body.len() < MIN_BODY_BYTES {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 2);
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
        writer.write_all(body).ok()?;
    }
    (out.len() * 100 <= body.len() * (100 - MIN_SAVING_PERCENT)).then(|| Bytes::from(out))
}

/// The body a compressed one stands for.
pub fn decompress(data: &[u8]) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(data.len() * 3);
    brotli::Decompressor::new(data, 4096).read_to_end(&mut out)?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_stored_compressed_and_comes_back_the_same() {
        let svg: String = (0..200)
            .map(|i| {
                format!(
                    "<rect x=\"{i}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#2a9d8f\"/>",
                    i * 3
                )
            })
            .collect();
        let body = format!("<svg xmlns=\"http://www.w3.org/2000/svg\">{svg}</svg>");
        let packed = compress_if_worth_it(body.as_bytes()).expect("SVG compresses");
        assert!(packed.len() < body.len() / 4);
        assert_eq!(decompress(&packed).unwrap().as_ref(), body.as_bytes());
    }

    #[test]
    fn incompressible_bytes_and_image_formats_are_left_alone() {
        let mut noise = vec![0u8; 8192];
        blake3::Hasher::new().update(b"noise").finalize_xof().fill(&mut noise);
        assert!(compress_if_worth_it(&noise).is_none(), "saves under 10%");
        for already in ["image/jpeg", "image/png", "image/webp", "image/avif", "image/gif"] {
            assert_eq!(compressible_class(already), None, "{already}");
        }
        assert_eq!(compressible_class("image/svg+xml; charset=utf-8"), Some("svg"));
        assert_eq!(compressible_class("image/x-icon"), Some("ico"));
    }
}
