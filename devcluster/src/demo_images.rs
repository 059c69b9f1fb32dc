//! New content for a demo image, in the format its name says: what an editor saving a new
//! version of a picture would produce. Each version is a diagonal gradient of another hue with
//! a band across it, so a change is plain to see (and to hash).

/// The size of regenerated raster images (the bundled JPEG and WebP are 320×200).
const WIDTH: u32 = 320;
/// See [`WIDTH`].
const HEIGHT: u32 = 200;

/// Version `version` of the image `name`, encoded as its extension says; `None` for a format
/// the demo cannot write.
pub fn regenerate(name: &str, version: u64) -> Option<Vec<u8>> {
    let hue = (version.wrapping_mul(137) % 360) as f32;
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "svg" => Some(svg(hue, version).into_bytes()),
        "png" => png(&pixels(hue)),
        "jpg" | "jpeg" => jpeg(&pixels(hue)),
        "webp" => webp(&pixels(hue)),
        _ => None,
    }
}

/// RGB of `hue` (degrees) at full saturation and lightness `l` in 0..1.
fn rgb(hue: f32, l: f32) -> [u8; 3] {
    let c = 1.0 - (2.0 * l - 1.0).abs();
    let h = hue / 60.0;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    [r, g, b].map(|v| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// WIDTH×HEIGHT RGB pixels: a gradient of `hue` with a light band through the middle.
fn pixels(hue: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity((WIDTH * HEIGHT * 3) as usize);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let band = (HEIGHT * 2 / 5..HEIGHT * 3 / 5).contains(&y);
            let l = if band {
                0.85
            } else {
                0.25 + 0.4 * (x + y) as f32 / (WIDTH + HEIGHT) as f32
            };
            out.extend_from_slice(&rgb((hue + x as f32 / 8.0) % 360.0, l));
        }
    }
    out
}

fn svg(hue: f32, version: u64) -> String {
    let [r, g, b] = rgb(hue, 0.35);
    let [r2, g2, b2] = rgb((hue + 180.0) % 360.0, 0.6);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"200\" height=\"200\" viewBox=\"0 0 200 200\">\n\
         \x20 <title>fresco v{version}</title>\n\
         \x20 <rect width=\"200\" height=\"200\" rx=\"24\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>\n\
         \x20 <circle cx=\"100\" cy=\"90\" r=\"46\" fill=\"#{r2:02x}{g2:02x}{b2:02x}\"/>\n\
         \x20 <text x=\"100\" y=\"190\" font-family=\"sans-serif\" font-size=\"18\" text-anchor=\"middle\" fill=\"#ffffff\">v{version}</text>\n\
         </svg>\n"
    )
}

fn png(rgb: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(rgb).ok()?;
    writer.finish().ok()?;
    Some(out)
}

fn jpeg(rgb: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 85);
    encoder
        .encode(rgb, WIDTH as u16, HEIGHT as u16, jpeg_encoder::ColorType::Rgb)
        .ok()?;
    Some(out)
}

fn webp(rgb: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    image_webp::WebPEncoder::new(&mut out)
        .encode(rgb, WIDTH, HEIGHT, image_webp::ColorType::Rgb8)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_is_written_with_its_own_signature() {
        let starts = [
            ("a.png", &b"\x89PNG"[..]),
            ("a.jpg", &b"\xff\xd8\xff"[..]),
            ("a.webp", &b"RIFF"[..]),
            ("a.svg", &b"<svg"[..]),
        ];
        for (name, magic) in starts {
            let bytes = regenerate(name, 1).expect(name);
            assert!(bytes.starts_with(magic), "{name}");
            assert_ne!(bytes, regenerate(name, 2).unwrap(), "{name}: versions differ");
        }
        assert!(regenerate("a.gif", 1).is_none());
    }
}
