//! Restarting a devcluster node with other cache sizes: devcluster writes every node's YAML
//! with the same sizes, and a benchmark needs a small memory tier (so hits come from disk) or
//! a large disk tier (to hold a gigabyte).

use std::path::Path;

use fresco_e2e::{Cluster, NodeInfo, NodeProcess, Signal, stop_node};

/// Sizes of a node's cache tiers, in MiB; `None` keeps what the configuration says.
#[derive(Clone, Copy, Debug)]
pub struct CacheSizes {
    /// `cache.memory`.
    pub memory_mib: Option<u64>,
    /// `cache.disk`.
    pub disk_mib: Option<u64>,
}

/// Rewrites `cache.memory` and `cache.disk` in the node configuration at `config`.
fn write_sizes(config: &Path, sizes: CacheSizes) {
    let yaml = std::fs::read_to_string(config).expect("the node's configuration reads");
    let mut in_cache = false;
    let lines: Vec<String> = yaml
        .lines()
        .map(|line| {
            if !line.starts_with(' ') {
                in_cache = line.starts_with("cache:");
            }
            let key = line.trim_start().split_once(':').map(|(key, _)| key);
            match (key, sizes.memory_mib, sizes.disk_mib) {
                (Some("memory"), Some(mib), _) if in_cache => format!("  memory: {mib}MiB"),
                (Some("disk"), _, Some(mib)) if in_cache => format!("  disk: {mib}MiB"),
                _ => line.to_string(),
            }
        })
        .collect();
    std::fs::write(config, lines.join("\n") + "\n").expect("the node's configuration writes");
}

/// Stops `node` cleanly (SIGTERM: its store flushes), restarts it with `sizes` and waits until
/// it is ready. With `empty_cache`, its disk cache is removed first (a changed disk size then
/// starts from a fresh device).
pub fn restart_with_sizes(cluster: &Cluster, node: &NodeInfo, sizes: CacheSizes, empty_cache: bool) -> NodeProcess {
    stop_node(node, Signal::SIGTERM);
    write_sizes(&node.config, sizes);
    if empty_cache {
        let cache = cluster.state_dir().join("cache").join(&node.id);
        std::fs::remove_dir_all(&cache).expect("the node's cache dir is removed");
    }
    cluster.restart_node(node)
}
