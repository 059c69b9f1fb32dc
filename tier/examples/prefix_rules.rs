//! What prefix purges cost a hit: `PurgeRules::verdict` with 0, 100 and 10,000 prefix rules,
//! beside the linear scan the rules used before the trie.
//! `cargo run --release -p fresco-tier --example prefix_rules` (docs/benchmarks.md).

use std::hint::black_box;
use std::time::Instant;

use fresco_tier::freshness::rules::{PurgeRules, Rule, RuleKind};

const HITS: u32 = 1_000_000;

fn per_hit(mut verdict: impl FnMut(&str) -> u64) -> f64 {
    let keys: Vec<String> = (0..64)
        .map(|i| format!("shop\n/img/products/{i}/photo-large.jpg"))
        .collect();
    let started = Instant::now();
    let mut sum = 0;
    for i in 0..HITS {
        sum += verdict(&keys[i as usize % keys.len()]);
    }
    black_box(sum);
    started.elapsed().as_nanos() as f64 / f64::from(HITS)
}

fn main() {
    println!("prefix rules | trie ns/hit | linear scan ns/hit");
    for count in [0usize, 100, 10_000] {
        let prefixes: Vec<String> = (0..count).map(|i| format!("shop\n/deploy-{i}/")).collect();
        let mut rules = PurgeRules::default();
        let mut scan: Vec<(String, Rule)> = Vec::new();
        for (seq, prefix) in prefixes.iter().enumerate() {
            let rule = rules.add(RuleKind::Prefix, prefix, seq as u64 + 1, false);
            scan.push((prefix.clone(), rule));
        }
        let trie = per_hit(|key| rules.verdict(key, std::iter::empty(), 0) as u64);
        let linear = per_hit(|key| {
            scan.iter()
                .filter(|(p, _)| key.starts_with(p.as_str()))
                .fold(Rule::default(), |r, (_, p)| r.max(*p))
                .hard
        });
        println!("{count:>12} | {trie:>11.1} | {linear:>18.1}");
    }
}
