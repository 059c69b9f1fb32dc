//! Image-CDN request traces: generated from a shape and a seed, kept as CSV (`id,size`, one
//! request a line, in order) that the libCacheSim script reads too, and served by an origin
//! whose answers have exactly the traced sizes.
//!
//! The shape is the one issue 13 describes for image CDNs: popularity is Zipf over a fixed
//! catalogue, a share of the requests goes to objects asked for once and never again (one-hit
//! wonders: fresh uploads, crawlers, long tails of personal photos), and sizes are log-normal
//! around a median of tens of KB. It is generated, not a real trace (`--trace FILE` replays one).

use std::io::{BufRead, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use axum::extract::{Request as AxumRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};

/// How a generated trace looks.
#[derive(Clone, Debug)]
pub struct TraceShape {
    /// Zipf exponent of the catalogue's popularity.
    pub alpha: f64,
    /// Share of requests that go to an object requested only this once.
    pub one_hit_share: f64,
    /// Objects in the catalogue (the one-hit wonders come on top).
    pub catalogue: usize,
    /// Requests in the trace.
    pub requests: usize,
    /// Median object size in bytes.
    pub median_bytes: f64,
    /// σ of the sizes' natural logarithm.
    pub size_sigma: f64,
    /// Smallest and largest object, in bytes.
    pub size_bounds: (u32, u32),
    /// Seed: one shape and seed give one trace.
    pub seed: u64,
}

/// One request of a trace: an object and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracedRequest {
    /// The object; equal ids are the same object.
    pub id: u64,
    /// Its size in bytes (always the same for one id).
    pub size: u32,
}

/// What a trace holds, for the report.
#[derive(Clone, Copy, Debug)]
pub struct TraceStats {
    /// Requests.
    pub requests: usize,
    /// Distinct objects.
    pub objects: usize,
    /// Bytes of all distinct objects: what a cache holding everything would need.
    pub footprint: u64,
    /// Bytes of all requests.
    pub requested_bytes: u64,
    /// Share of requests to objects requested exactly once.
    pub one_hit_share: f64,
}

/// A request trace, in order.
pub struct Trace {
    /// The requests.
    pub requests: Vec<TracedRequest>,
}

impl Trace {
    /// Generates the trace of `shape`. Catalogue object `r` (0-based) has popularity rank
    /// `r + 1`; one-hit wonders take ids from `shape.catalogue` up.
    pub fn generate(shape: &TraceShape) -> anyhow::Result<Self> {
        if !(0.0..1.0).contains(&shape.one_hit_share) {
            bail!("the one-hit share must be in [0, 1), not {}", shape.one_hit_share);
        }
        let mut rng = StdRng::seed_from_u64(shape.seed);
        let sizes = LogNormal::new(shape.median_bytes.ln(), shape.size_sigma).context("the size distribution")?;
        let (smallest, largest) = shape.size_bounds;
        let size_of_new = |rng: &mut StdRng| (sizes.sample(rng) as u32).clamp(smallest, largest);
        let catalogue_sizes: Vec<u32> = (0..shape.catalogue).map(|_| size_of_new(&mut rng)).collect();
        let popularity = Zipf::new(shape.catalogue as f64, shape.alpha).context("the popularity distribution")?;
        let mut next_wonder = shape.catalogue as u64;
        let requests = (0..shape.requests)
            .map(|_| {
                if rng.random::<f64>() < shape.one_hit_share {
                    next_wonder += 1;
                    TracedRequest {
                        id: next_wonder - 1,
                        size: size_of_new(&mut rng),
                    }
                } else {
                    let rank = popularity.sample(&mut rng) as usize;
                    TracedRequest {
                        id: rank as u64 - 1,
                        size: catalogue_sizes[rank - 1],
                    }
                }
            })
            .collect();
        Ok(Self { requests })
    }

    /// Counts what the trace holds.
    pub fn stats(&self) -> TraceStats {
        let mut seen: std::collections::HashMap<u64, (u32, u32)> = std::collections::HashMap::new();
        for r in &self.requests {
            seen.entry(r.id).or_insert((r.size, 0)).1 += 1;
        }
        let once = seen.values().filter(|(_, n)| *n == 1).count();
        TraceStats {
            requests: self.requests.len(),
            objects: seen.len(),
            footprint: seen.values().map(|(size, _)| u64::from(*size)).sum(),
            requested_bytes: self.requests.iter().map(|r| u64::from(r.size)).sum(),
            one_hit_share: once as f64 / self.requests.len().max(1) as f64,
        }
    }

    /// Writes it as CSV: a header `id,size`, then a request a line.
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        writeln!(out, "id,size")?;
        for r in &self.requests {
            writeln!(out, "{},{}", r.id, r.size)?;
        }
        out.flush().with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a trace written by [`Trace::write_csv`] (or by hand: `id,size` lines, a header
    /// optional). An id seen again with another size is an error, since a cache could not
    /// tell the two apart.
    pub fn read_csv(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut sizes = std::collections::HashMap::new();
        let mut requests = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if (n == 0 && line.starts_with("id")) || line.trim().is_empty() {
                continue;
            }
            let parsed = line
                .split_once(',')
                .and_then(|(id, size)| Some((id.trim().parse().ok()?, size.trim().parse().ok()?)));
            let Some((id, size)) = parsed else {
                bail!("{}:{}: `{line}` is not `id,size`", path.display(), n + 1);
            };
            if *sizes.entry(id).or_insert(size) != size {
                bail!(
                    "{}:{}: object {id} was {} bytes before",
                    path.display(),
                    n + 1,
                    sizes[&id]
                );
            }
            requests.push(TracedRequest { id, size });
        }
        Ok(Self { requests })
    }
}

/// What a replay through a node saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct HitCounts {
    /// Requests answered.
    pub requests: u64,
    /// Of those, `X-Cache: HIT`.
    pub hits: u64,
    /// Bytes answered.
    pub bytes: u64,
    /// Of those, in hits.
    pub hit_bytes: u64,
}

impl HitCounts {
    /// Hits per request.
    pub fn request_hit_ratio(&self) -> f64 {
        self.hits as f64 / self.requests.max(1) as f64
    }

    /// Bytes in hits per byte answered.
    pub fn byte_hit_ratio(&self) -> f64 {
        self.hit_bytes as f64 / self.bytes.max(1) as f64
    }
}

/// Replays `trace` through the node at `base` (served by a [`TraceOrigin`]) in order, one
/// request at a time on one connection, so that the node sees the order a simulator sees.
/// Every answer must be a 200 of the traced size. `progress` gets the requests done, every
/// thousand.
pub async fn replay(base: &str, trace: &Trace, mut progress: impl FnMut(usize)) -> anyhow::Result<HitCounts> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let mut counts = HitCounts::default();
    for (n, r) in trace.requests.iter().enumerate() {
        let url = format!("{base}{}", path_of(r));
        let resp = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let hit = resp.headers().get("x-cache").is_some_and(|v| v == "HIT");
        let body = resp.bytes().await.with_context(|| format!("the body of {url}"))?;
        if status != 200 || body.len() != r.size as usize {
            bail!(
                "request {n}: {url} answered {status} with {} of {} bytes",
                body.len(),
                r.size
            );
        }
        counts.requests += 1;
        counts.bytes += u64::from(r.size);
        if hit {
            counts.hits += 1;
            counts.hit_bytes += u64::from(r.size);
        }
        if n % 1_000 == 0 {
            progress(n);
        }
    }
    Ok(counts)
}

/// The path under which an origin serves traced request `r`.
pub fn path_of(r: &TracedRequest) -> String {
    format!("/t/{}-{}.jpg", r.id, r.size)
}

/// An origin that answers `/t/{id}-{size}.jpg` with `size` bytes that begin with the id, so
/// that no two objects share a body (the store would keep one copy of identical bodies), and
/// a year's `max-age`: in a replay only eviction removes objects.
pub struct TraceOrigin {
    /// Its base URL.
    pub url: String,
    requests: Arc<AtomicU64>,
}

struct Served {
    objects: TraceObjects,
    requests: Arc<AtomicU64>,
}

/// The bodies a [`TraceOrigin`] answers with: `size` bytes that begin with the object's id and
/// go on with random filler, so that no two objects share a body and none compresses.
pub struct TraceObjects {
    filler: Bytes,
}

impl TraceObjects {
    /// Bodies for objects up to `largest` bytes.
    pub fn new(largest: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(0x7ace);
        Self {
            filler: (0..largest).map(|_| rng.random()).collect::<Vec<u8>>().into(),
        }
    }

    /// The answer to `path` if it names a traced object (`/t/{id}-{size}.jpg`) no larger than
    /// `largest`: a 200 with a year's `max-age`, since in a replay only eviction (or a purge)
    /// removes objects.
    pub fn response(&self, path: &str) -> Option<Response> {
        let (id, size) = object_of(path).filter(|(_, size)| *size <= self.filler.len())?;
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(&id.to_le_bytes()[..size.min(8)]);
        body.extend_from_slice(&self.filler[..size - body.len()]);
        let mut response = ([(header::CONTENT_TYPE, "image/jpeg")], body).into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000"),
        );
        Some(response)
    }
}

/// Parses `/t/{id}-{size}.jpg`.
fn object_of(path: &str) -> Option<(u64, usize)> {
    let (id, size) = path.strip_prefix("/t/")?.strip_suffix(".jpg")?.split_once('-')?;
    Some((id.parse().ok()?, size.parse().ok()?))
}

async fn serve_object(State(served): State<Arc<Served>>, req: AxumRequest) -> Response {
    served.requests.fetch_add(1, Ordering::Relaxed);
    served
        .objects
        .response(req.uri().path())
        .unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
}

impl TraceOrigin {
    /// Starts it on a free loopback port, in the calling tokio runtime, for objects up to
    /// `largest` bytes (larger ones are 404).
    pub async fn start(largest: usize) -> anyhow::Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let served = Arc::new(Served {
            objects: TraceObjects::new(largest),
            requests: requests.clone(),
        });
        let app = axum::Router::new().fallback(serve_object).with_state(served);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, requests })
    }

    /// Requests it has answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(one_hit_share: f64) -> TraceShape {
        TraceShape {
            alpha: 0.8,
            one_hit_share,
            catalogue: 2_000,
            requests: 20_000,
            median_bytes: 40_000.0,
            size_sigma: 1.0,
            size_bounds: (2_000, 1_000_000),
            seed: 7,
        }
    }

    #[test]
    fn one_shape_and_seed_give_one_trace() {
        let (a, b) = (
            Trace::generate(&shape(0.3)).unwrap(),
            Trace::generate(&shape(0.3)).unwrap(),
        );
        assert_eq!(a.requests, b.requests);
        let other_seed = Trace::generate(&TraceShape { seed: 8, ..shape(0.3) }).unwrap();
        assert_ne!(a.requests, other_seed.requests);
    }

    #[test]
    fn the_one_hit_share_is_at_least_the_shape_asks() {
        // Catalogue objects drawn once add to the asked share; wonders are never drawn again.
        let stats = Trace::generate(&shape(0.3)).unwrap().stats();
        assert!(stats.one_hit_share >= 0.3 && stats.one_hit_share < 0.4, "{stats:?}");
        let none = Trace::generate(&shape(0.0)).unwrap().stats();
        assert!(none.one_hit_share < 0.05, "{none:?}");
        assert!(none.objects <= 2_000);
    }

    #[test]
    fn popularity_is_skewed_and_sizes_stay_in_bounds() {
        let trace = Trace::generate(&shape(0.0)).unwrap();
        let top = trace.requests.iter().filter(|r| r.id == 0).count();
        let hundredth = trace.requests.iter().filter(|r| r.id == 99).count();
        // Zipf 0.8: rank 1 is asked for about 100^0.8 ≈ 40 times as often as rank 100.
        assert!(top > 15 * hundredth.max(1), "rank 1: {top}, rank 100: {hundredth}");
        assert!(trace.requests.iter().all(|r| (2_000..=1_000_000).contains(&r.size)));
    }

    #[test]
    fn a_trace_reads_back_as_written_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let trace = Trace::generate(&shape(0.3)).unwrap();
        trace.write_csv(&path).unwrap();
        assert_eq!(Trace::read_csv(&path).unwrap().requests, trace.requests);
        std::fs::write(&path, "id,size\n1,100\n1,200\n").unwrap();
        let err = Trace::read_csv(&path).err().unwrap().to_string();
        assert!(err.contains(":3:") && err.contains("100 bytes before"), "{err}");
        std::fs::write(&path, "1,100\nx\n").unwrap();
        let err = Trace::read_csv(&path).err().unwrap().to_string();
        assert!(err.contains(":2:") && err.contains("not `id,size`"), "{err}");
    }

    #[test]
    fn object_paths_parse_back() {
        let r = TracedRequest { id: 42, size: 1234 };
        assert_eq!(object_of(&path_of(&r)), Some((42, 1234)));
        assert_eq!(object_of("/t/42.jpg"), None);
        assert_eq!(object_of("/t/x-1.jpg"), None);
    }
}
