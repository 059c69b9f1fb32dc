//! A generated image corpus and an origin that serves it, for measuring what the store keeps:
//! image-like incompressible bodies (JPEG-sized, log-normal around a median), SVGs (text that
//! compresses), and URLs whose body is byte-identical to another URL's.
//!
//! Everything derives from a seed, so a corpus is the same on every run, and bodies are
//! produced when asked for: a 1 GB corpus costs a few bytes per URL until it is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::StandardNormal;

/// The proportions of a corpus.
#[derive(Clone, Copy, Debug)]
pub struct CorpusMix {
    /// Share of URLs whose body is identical to an earlier URL's (of the same type).
    pub duplicate_share: f64,
    /// Share of distinct bodies that are SVG.
    pub svg_share: f64,
    /// Median size of an image body; sizes are log-normal around it (σ = 0.6), as the JPEGs
    /// of a CDN are.
    pub median_image_bytes: usize,
    /// Seed of the corpus.
    pub seed: u64,
}

impl Default for CorpusMix {
    /// 30 % duplicates, 10 % SVG, images around 30 KB.
    fn default() -> Self {
        Self {
            duplicate_share: 0.3,
            svg_share: 0.1,
            median_image_bytes: 30 * 1024,
            seed: 5,
        }
    }
}

/// The type of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// Incompressible bytes served as `image/jpeg`.
    Image,
    /// An SVG drawing, `image/svg+xml`.
    Svg,
}

impl BodyKind {
    /// The `Content-Type` the origin sends.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyKind::Image => "image/jpeg",
            BodyKind::Svg => "image/svg+xml",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            BodyKind::Image => "jpg",
            BodyKind::Svg => "svg",
        }
    }
}

/// One URL of a corpus.
#[derive(Clone, Debug)]
pub struct CorpusEntry {
    /// Its path, `/c/<n>.jpg` or `/c/<n>.svg`.
    pub path: String,
    /// Its body's type.
    pub kind: BodyKind,
    /// The distinct body it serves (the index of the first URL that served it).
    pub body: usize,
    /// The body's length.
    pub len: usize,
}

impl CorpusEntry {
    /// Whether this URL serves a body first served by another URL.
    pub fn is_duplicate(&self, index: usize) -> bool {
        self.body != index
    }
}

/// Byte counts of a corpus, the ground truth against which a store's gauges are read.
#[derive(Clone, Copy, Debug, Default)]
pub struct CorpusTotals {
    /// URLs.
    pub urls: usize,
    /// URLs that serve another URL's body.
    pub duplicate_urls: usize,
    /// URLs that serve an SVG.
    pub svg_urls: usize,
    /// Sum of the bodies of all URLs, as served.
    pub logical_bytes: u64,
    /// Sum of the distinct bodies.
    pub distinct_bytes: u64,
    /// Sum of the distinct SVG bodies.
    pub distinct_svg_bytes: u64,
}

/// A generated corpus.
pub struct Corpus {
    entries: Vec<CorpusEntry>,
    seed: u64,
}

impl Corpus {
    /// A corpus of `urls` URLs.
    pub fn with_urls(mix: CorpusMix, urls: usize) -> Self {
        Self::generate(mix, |corpus| corpus.entries.len() >= urls)
    }

    /// A corpus whose distinct bodies add up to at least `bytes`.
    pub fn with_distinct_bytes(mix: CorpusMix, bytes: u64) -> Self {
        let mut distinct = 0u64;
        Self::generate(mix, |corpus| {
            if let Some((i, last)) = corpus.entries.iter().enumerate().next_back()
                && !last.is_duplicate(i)
            {
                distinct += last.len as u64;
            }
            distinct >= bytes
        })
    }

    fn generate(mix: CorpusMix, mut done: impl FnMut(&Corpus) -> bool) -> Self {
        let mut rng = StdRng::seed_from_u64(mix.seed);
        let mut corpus = Corpus {
            entries: Vec::new(),
            seed: mix.seed,
        };
        let mut originals: Vec<usize> = Vec::new();
        while !done(&corpus) {
            let index = corpus.entries.len();
            let entry = if !originals.is_empty() && rng.random::<f64>() < mix.duplicate_share {
                let source = &corpus.entries[originals[rng.random_range(0..originals.len())]];
                CorpusEntry {
                    path: format!("/c/{index}.{}", source.kind.extension()),
                    ..source.clone()
                }
            } else {
                originals.push(index);
                let (kind, len) = if rng.random::<f64>() < mix.svg_share {
                    // SVG icons and illustrations: 2 to 40 KB, log-uniform.
                    (BodyKind::Svg, (2048.0 * 20f64.powf(rng.random::<f64>())) as usize)
                } else {
                    let len = mix.median_image_bytes as f64 * (0.6 * rng.sample::<f64, _>(StandardNormal)).exp();
                    (BodyKind::Image, len.clamp(1024.0, 512.0 * 1024.0) as usize)
                };
                CorpusEntry {
                    path: format!("/c/{index}.{}", kind.extension()),
                    kind,
                    body: index,
                    len,
                }
            };
            corpus.entries.push(entry);
        }
        corpus
    }

    /// Its URLs, in order.
    pub fn entries(&self) -> &[CorpusEntry] {
        &self.entries
    }

    /// The entry of `path`, if it is one of the corpus's.
    pub fn entry_of(&self, path: &str) -> Option<&CorpusEntry> {
        let index: usize = path.strip_prefix("/c/")?.split_once('.')?.0.parse().ok()?;
        self.entries.get(index).filter(|e| e.path == path)
    }

    /// The body `entry` serves.
    pub fn body(&self, entry: &CorpusEntry) -> Vec<u8> {
        let mut stream = blake3::Hasher::new()
            .update(&self.seed.to_le_bytes())
            .update(&(entry.body as u64).to_le_bytes())
            .finalize_xof();
        match entry.kind {
            BodyKind::Image => {
                let mut body = vec![0u8; entry.len];
                stream.fill(&mut body);
                // A JPEG's start-of-image and JFIF markers, so sniffers see an image.
                let header = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00];
                let n = header.len().min(body.len());
                body[..n].copy_from_slice(&header[..n]);
                body
            }
            BodyKind::Svg => {
                let mut seed = [0u8; 8];
                stream.fill(&mut seed);
                svg(entry.len, u64::from_le_bytes(seed))
            }
        }
    }

    /// Its byte counts.
    pub fn totals(&self) -> CorpusTotals {
        let mut totals = CorpusTotals {
            urls: self.entries.len(),
            ..CorpusTotals::default()
        };
        for (i, entry) in self.entries.iter().enumerate() {
            totals.logical_bytes += entry.len as u64;
            totals.svg_urls += usize::from(entry.kind == BodyKind::Svg);
            if entry.is_duplicate(i) {
                totals.duplicate_urls += 1;
            } else {
                totals.distinct_bytes += entry.len as u64;
                if entry.kind == BodyKind::Svg {
                    totals.distinct_svg_bytes += entry.len as u64;
                }
            }
        }
        totals
    }
}

/// An SVG drawing of exactly `len` bytes: filled Bézier paths with random coordinates and
/// colours, as illustrations exported by drawing tools are (they compress 2–4× with brotli).
fn svg(len: usize, seed: u64) -> Vec<u8> {
    use std::fmt::Write;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 512 512\" width=\"512\" height=\"512\">\n",
    );
    let close = "</svg>\n";
    while text.len() + close.len() < len {
        let mut coordinate = || rng.random::<f64>() * 512.0;
        let (x, y) = (coordinate(), coordinate());
        let _ = write!(text, "  <path d=\"M{x:.2} {y:.2}");
        for _ in 0..3 {
            let (a, b, c, d, e, f) = (
                coordinate(),
                coordinate(),
                coordinate(),
                coordinate(),
                coordinate(),
                coordinate(),
            );
            let _ = write!(text, " C{a:.2} {b:.2} {c:.2} {d:.2} {e:.2} {f:.2}");
        }
        let colour = rng.next_u64() & 0xFF_FFFF;
        let _ = writeln!(
            text,
            " Z\" fill=\"#{colour:06x}\" stroke=\"#000000\" stroke-width=\"{:.1}\"/>",
            rng.random::<f64>() * 3.0
        );
    }
    let mut body = text.into_bytes();
    // Cut to length on a line boundary the closing tag then fits into, padding with spaces.
    body.truncate(len.saturating_sub(close.len()));
    if let Some(end) = body.iter().rposition(|&b| b == b'\n') {
        body.truncate(end + 1);
    }
    body.resize(len.saturating_sub(close.len()), b' ');
    body.extend_from_slice(close.as_bytes());
    body
}

/// A running origin serving a [`Corpus`] under `/c/`: `public, max-age=86400`, an ETag from
/// the body's digest (so identical bodies have identical ETags, as with content-hash ETags).
pub struct CorpusOrigin {
    /// Its base URL.
    pub url: String,
    /// The corpus it serves.
    pub corpus: Arc<Corpus>,
    requests: Arc<AtomicU64>,
}

struct Served {
    corpus: Arc<Corpus>,
    requests: Arc<AtomicU64>,
}

async fn serve_entry(State(served): State<Arc<Served>>, req: Request) -> Response {
    served.requests.fetch_add(1, Ordering::Relaxed);
    let Some(entry) = served.corpus.entry_of(req.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = served.corpus.body(entry);
    let etag = format!("\"{}\"", &blake3::hash(&body).to_hex()[..16]);
    let mut response = ([(header::CONTENT_TYPE, entry.kind.content_type())], body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    response
}

impl CorpusOrigin {
    /// Starts serving `corpus` on a free loopback port, in the calling tokio runtime.
    pub async fn start(corpus: Corpus) -> Self {
        let corpus = Arc::new(corpus);
        let requests = Arc::new(AtomicU64::new(0));
        let served = Arc::new(Served {
            corpus: corpus.clone(),
            requests: requests.clone(),
        });
        let app = Router::new().fallback(serve_entry).with_state(served);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, corpus, requests }
    }

    /// Requests the origin has answered (or refused) so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corpus_has_its_mix_and_reproduces_from_its_seed() {
        let corpus = Corpus::with_urls(CorpusMix::default(), 2000);
        let totals = corpus.totals();
        assert_eq!(totals.urls, 2000);
        let share = |n: usize| n as f64 / totals.urls as f64;
        assert!((0.25..0.35).contains(&share(totals.duplicate_urls)), "{totals:?}");
        assert!((0.07..0.13).contains(&share(totals.svg_urls)), "{totals:?}");
        let again = Corpus::with_urls(CorpusMix::default(), 2000);
        for (a, b) in corpus.entries().iter().zip(again.entries()).step_by(97) {
            assert_eq!(corpus.body(a), again.body(b));
        }
    }

    #[test]
    fn duplicates_serve_identical_bytes_and_bodies_have_their_length() {
        let corpus = Corpus::with_urls(CorpusMix::default(), 300);
        for (i, entry) in corpus.entries().iter().enumerate() {
            let body = corpus.body(entry);
            assert_eq!(body.len(), entry.len, "{}", entry.path);
            if entry.is_duplicate(i) {
                assert_eq!(body, corpus.body(&corpus.entries()[entry.body]));
            }
            if entry.kind == BodyKind::Svg {
                assert!(body.starts_with(b"<?xml") && body.ends_with(b"</svg>\n"));
            }
        }
    }

    #[test]
    fn a_corpus_by_bytes_reaches_its_size() {
        let corpus = Corpus::with_distinct_bytes(CorpusMix::default(), 10 << 20);
        let distinct = corpus.totals().distinct_bytes;
        assert!((10 << 20..11 << 20).contains(&distinct), "{distinct}");
    }
}
