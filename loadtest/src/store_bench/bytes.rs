//! Phase 1: what the store keeps of a corpus — bytes as served (logical) against bytes
//! stored after deduplication and compression, per node and tier.

use std::io::Write;

use fresco_e2e::NodeInfo;
use fresco_e2e::corpus::CorpusTotals;
use fresco_e2e::metrics::Scrape;

/// One node's tier, from its gauges (`None` when the node does not export them).
pub struct TierBytes {
    /// The node's id.
    pub node: String,
    /// `memory` or `disk`.
    pub tier: &'static str,
    /// `fresco_store_logical_bytes`.
    pub logical: Option<f64>,
    /// `fresco_store_stored_bytes`.
    pub stored: Option<f64>,
}

impl TierBytes {
    /// stored / logical, when both are known and something is held.
    pub fn ratio(&self) -> Option<f64> {
        match (self.logical, self.stored) {
            (Some(logical), Some(stored)) if logical > 0.0 => Some(stored / logical),
            _ => None,
        }
    }
}

/// Reads both tiers of each node.
pub async fn read(nodes: &[&NodeInfo]) -> Vec<TierBytes> {
    let mut rows = Vec::new();
    for node in nodes {
        let scrape = Scrape::of(&node.admin).await;
        for tier in ["memory", "disk"] {
            rows.push(TierBytes {
                node: node.id.clone(),
                tier,
                logical: scrape.value("fresco_store_logical_bytes", &[("tier", tier)]),
                stored: scrape.value("fresco_store_stored_bytes", &[("tier", tier)]),
            });
        }
    }
    rows
}

/// What one node's store counted while it was filled.
pub struct SavingsCounters {
    /// The node's id.
    pub node: String,
    /// `fresco_store_dedup_hits_total`: bodies not stored again.
    pub dedup_hits: Option<f64>,
    /// `fresco_store_compression_input_bytes_total`, all types: compressible bodies as served.
    pub compressible_in: Option<f64>,
    /// `fresco_store_compression_output_bytes_total`, all types: the same bodies as stored.
    pub compressible_out: Option<f64>,
}

/// Reads the deduplication and compression counters of each node.
pub async fn read_savings(nodes: &[&NodeInfo]) -> Vec<SavingsCounters> {
    let mut rows = Vec::new();
    for node in nodes {
        let scrape = Scrape::of(&node.admin).await;
        rows.push(SavingsCounters {
            node: node.id.clone(),
            dedup_hits: scrape.value("fresco_store_dedup_hits_total", &[]),
            compressible_in: scrape.value("fresco_store_compression_input_bytes_total", &[]),
            compressible_out: scrape.value("fresco_store_compression_output_bytes_total", &[]),
        });
    }
    rows
}

impl SavingsCounters {
    /// Compressible bytes as stored / as served.
    pub fn compression_ratio(&self) -> Option<f64> {
        match (self.compressible_in, self.compressible_out) {
            (Some(served), Some(stored)) if served > 0.0 => Some(stored / served),
            _ => None,
        }
    }

    /// Prints one line.
    pub fn print(&self) {
        println!(
            "  {:<9} dedup hits {}, compressible bodies {} → {} (ratio {})",
            self.node,
            self.dedup_hits.map_or("n/a".into(), |n| format!("{n:.0}")),
            mib(self.compressible_in),
            mib(self.compressible_out),
            self.compression_ratio().map_or("n/a".into(), |r| format!("{r:.3}"))
        );
    }
}

fn mib(bytes: Option<f64>) -> String {
    bytes.map_or("n/a".into(), |b| format!("{:.1} MiB", b / (1 << 20) as f64))
}

/// Prints the corpus and the tiers.
pub fn print(corpus: &CorpusTotals, rows: &[TierBytes]) {
    println!(
        "corpus: {} URLs ({} duplicates, {} SVG), {} served, {} distinct (ideal dedup ratio {:.3})",
        corpus.urls,
        corpus.duplicate_urls,
        corpus.svg_urls,
        mib(Some(corpus.logical_bytes as f64)),
        mib(Some(corpus.distinct_bytes as f64)),
        corpus.distinct_bytes as f64 / corpus.logical_bytes as f64
    );
    for row in rows {
        println!(
            "  {:<9} {:<6} logical {:>11}  stored {:>11}  stored/logical {}",
            row.node,
            row.tier,
            mib(row.logical),
            mib(row.stored),
            row.ratio().map_or("n/a (gauges missing)".into(), |r| format!("{r:.3}"))
        );
    }
}

/// Writes `node,tier,logical_bytes,stored_bytes`; the corpus is the row `corpus,distinct`.
pub fn write_csv(path: &str, corpus: &CorpusTotals, rows: &[TierBytes]) {
    let mut csv = fresco_loadtest::output::create(path);
    writeln!(csv, "node,tier,logical_bytes,stored_bytes").unwrap();
    writeln!(
        csv,
        "corpus,distinct,{},{}",
        corpus.logical_bytes, corpus.distinct_bytes
    )
    .unwrap();
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.0}"));
    for row in rows {
        writeln!(
            csv,
            "{},{},{},{}",
            row.node,
            row.tier,
            cell(row.logical),
            cell(row.stored)
        )
        .unwrap();
    }
}
