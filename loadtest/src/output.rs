//! Where the benchmarks write their results: under `target/bench/` unless told otherwise, so
//! that a run leaves the measurements committed in `docs/bench/` alone (`make bench-…
//! BENCH_OUT=docs/bench` writes there, on purpose).

use std::fs::File;
use std::path::Path;

/// Creates `path` for writing, with the directories it needs. Panics naming the path when it
/// cannot: a benchmark that cannot write its results has nothing to show.
pub fn create(path: impl AsRef<Path>) -> File {
    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()))
}
