//! Chooses the brotli quality of compression at rest: for each quality, how small the
//! compressible samples get and how long compressing (once per fill) and decompressing (on
//! every hit of a client without `br`) take.
//!
//! `cargo run --release -p fresco-store --example brotli_quality`. The samples are the demo's
//! SVG and generated SVG, BMP-like and ICO-like bodies of typical sizes.

use std::io::{Read, Write};
use std::time::Instant;

/// SVG of `shapes` shapes, like icons and illustrations.
fn svg(shapes: usize) -> Vec<u8> {
    let body: String = (0..shapes)
        .map(|i| {
            format!(
                "<path d=\"M{} {} L{} {} Q{} {} {} {}Z\" fill=\"#{:06x}\" stroke-width=\"{}\"/>\n",
                i * 7 % 500,
                i * 13 % 300,
                i * 11 % 500,
                i * 5 % 300,
                i * 3 % 500,
                i * 17 % 300,
                i * 19 % 500,
                i * 23 % 300,
                (i * 2_654_435_761usize) & 0xff_ffff,
                i % 4
            )
        })
        .collect();
    format!("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 500 300\">\n{body}</svg>\n").into_bytes()
}

/// An uncompressed bitmap of a smooth gradient with noise, like a BMP screenshot or ICO.
fn bitmap(width: usize, height: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * height * 3);
    let mut state = 0x9e37_79b9u32;
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state & 7) as usize;
            out.extend_from_slice(&[
                (x * 255 / width + noise) as u8,
                (y * 255 / height) as u8,
                ((x + y) % 256) as u8,
            ]);
        }
    }
    out
}

fn main() {
    let samples: Vec<(&str, Vec<u8>)> = vec![
        (
            "demo logo.svg",
            include_bytes!("../../devcluster/assets/img/logo.svg").to_vec(),
        ),
        ("svg 5 KB", svg(60)),
        ("svg 40 KB", svg(500)),
        ("bitmap 64x64 (ico)", bitmap(64, 64)),
        ("bitmap 320x200 (bmp)", bitmap(320, 200)),
    ];
    let names: Vec<&str> = samples.iter().map(|(n, _)| *n).collect();
    println!("size as stored, % of the original, per sample: {}", names.join(" | "));
    println!(
        "{:<8} {:>10} {:>12} {:>12}   per sample",
        "quality", "size %", "compress", "decompress"
    );
    for quality in [1u32, 3, 4, 5, 6, 7, 8, 9, 11] {
        let (mut packed_total, mut plain_total) = (0usize, 0usize);
        let (mut compress_ns, mut decompress_ns) = (0u128, 0u128);
        let mut each = Vec::new();
        for (_, body) in &samples {
            let rounds = 20;
            let mut packed = Vec::new();
            let started = Instant::now();
            for _ in 0..rounds {
                packed.clear();
                let mut w = brotli::CompressorWriter::new(&mut packed, 4096, quality, 22);
                w.write_all(body).unwrap();
                drop(w);
            }
            compress_ns += started.elapsed().as_nanos() / rounds;
            let started = Instant::now();
            for _ in 0..rounds {
                let mut out = Vec::new();
                brotli::Decompressor::new(packed.as_slice(), 4096)
                    .read_to_end(&mut out)
                    .unwrap();
                assert_eq!(&out, body);
            }
            decompress_ns += started.elapsed().as_nanos() / rounds;
            each.push(format!("{:.1}", packed.len() as f64 * 100.0 / body.len() as f64));
            packed_total += packed.len();
            plain_total += body.len();
        }
        println!(
            "{quality:<8} {:>9.1}% {:>9.0} µs {:>9.0} µs   {}",
            packed_total as f64 * 100.0 / plain_total as f64,
            compress_ns as f64 / 1000.0,
            decompress_ns as f64 / 1000.0,
            each.join(" | ")
        );
    }
    let total: usize = samples.iter().map(|(_, b)| b.len()).sum();
    println!(
        "({} samples, {} bytes in all; times are for all samples together)",
        samples.len(),
        total
    );
}
