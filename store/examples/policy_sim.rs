//! Hit ratio of each memory eviction policy on a Zipf image workload, through the real store.
//!
//! `cargo run --release -p fresco-store --example policy_sim [REQUESTS]`
//!
//! 20,000 images with log-normal sizes (median 40 KB, 2 KB to 1 MB), requested with Zipf
//! popularity (α = 0.8 and 1.0), into memory-only stores of 5 %, 10 % and 20 % of the corpus.
//! A miss inserts the object, as a cache fill does. Prints object and byte hit ratios per policy
//! and writes them as CSV to `target/policy_sim.csv`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fresco_store::{EvictionPolicy, FoyerStorage, StoreConfig};
use pingora_cache::CacheMeta;
use pingora_cache::key::CacheKey;
use pingora_cache::storage::Storage;
use pingora_cache::trace::Span;
use pingora_http::ResponseHeader;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, LogNormal, Zipf};

const OBJECTS: usize = 20_000;

fn sizes(rng: &mut StdRng) -> Vec<usize> {
    // Log-normal around 40 KB with σ = 1.
    let size = LogNormal::new(40_000f64.ln(), 1.0).unwrap();
    (0..OBJECTS)
        .map(|_| (size.sample(rng) as usize).clamp(2_000, 1_000_000))
        .collect()
}

fn meta() -> CacheMeta {
    let header = ResponseHeader::build(200, None).unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(86_400), now, 0, 0, header)
}

async fn run(policy: EvictionPolicy, capacity: usize, sizes: &[usize], trace: &[usize], blob: &Bytes) -> (f64, f64) {
    let store = FoyerStorage::open(StoreConfig::new(capacity).with_eviction(policy))
        .await
        .unwrap()
        .leak();
    let span = Span::inactive().handle();
    let (mut hits, mut hit_bytes, mut bytes) = (0usize, 0usize, 0usize);
    for &object in trace {
        let key = CacheKey::new(format!("/img/{object}.jpg"), "");
        bytes += sizes[object];
        if store.lookup(&key, &span).await.unwrap().is_some() {
            hits += 1;
            hit_bytes += sizes[object];
        } else {
            let mut miss = store.get_miss_handler(&key, &meta(), &span).await.unwrap();
            miss.write_body(blob.slice(..sizes[object]), true).await.unwrap();
            miss.finish().await.unwrap();
        }
    }
    (hits as f64 / trace.len() as f64, hit_bytes as f64 / bytes as f64)
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let mut rng = StdRng::seed_from_u64(42);
    let sizes = sizes(&mut rng);
    let corpus: usize = sizes.iter().sum();
    let blob = Bytes::from(vec![0u8; 1_000_000]);
    let csv_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/policy_sim.csv");
    let mut csv = std::fs::File::create(csv_path).unwrap();
    writeln!(csv, "alpha,cache_percent,policy,object_hit_ratio,byte_hit_ratio").unwrap();
    println!(
        "corpus: {OBJECTS} objects, {} MB; {requests} requests per run",
        corpus / 1_000_000
    );
    println!(
        "{:>5} {:>6} {:>7} {:>9} {:>9}",
        "alpha", "cache", "policy", "hit", "byte-hit"
    );
    for alpha in [0.8, 1.0] {
        let popularity = Zipf::new(OBJECTS as f64, alpha).unwrap();
        // The same trace for every policy; ranks (from 1) are shuffled onto objects so that
        // popularity and size are independent.
        let mut order: Vec<usize> = (0..OBJECTS).collect();
        order.shuffle(&mut rng);
        let trace: Vec<usize> = (0..requests)
            .map(|_| order[popularity.sample(&mut rng) as usize - 1])
            .collect();
        for percent in [5, 10, 20] {
            let capacity = corpus * percent / 100;
            for policy in EvictionPolicy::ALL {
                let (hit, byte_hit) = run(policy, capacity, &sizes, &trace, &blob).await;
                println!(
                    "{alpha:>5} {percent:>5}% {:>7} {:>8.2}% {:>8.2}%",
                    policy.name(),
                    hit * 100.0,
                    byte_hit * 100.0
                );
                writeln!(csv, "{alpha},{percent},{},{hit:.4},{byte_hit:.4}", policy.name()).unwrap();
            }
        }
    }
    println!("csv: {csv_path}");
}
