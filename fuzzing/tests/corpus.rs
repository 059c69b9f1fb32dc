//! Every committed fuzz input, run on stable: the corpus `make fuzz` grew
//! (`fuzz/corpus/<target>/`) and each crash a campaign found, kept as a regression
//! (`fuzz/regressions/<target>/`). A target whose folders are missing fails: the corpus is
//! part of the project. As under `make fuzz` (`-malloc_limit_mb`), an input may not make the
//! code ask for more than [`MALLOC_LIMIT`] at once.
#![expect(
    unsafe_code,
    reason = "a global allocator that measures, as libFuzzer's malloc limit does"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use fresco_fuzzing::TARGETS;

/// The largest single allocation an input may cause.
const MALLOC_LIMIT: usize = 512 << 20;

/// The system allocator, noting the largest request since [`LARGEST`] was reset.
struct Measured;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only sizes are noted.
unsafe impl GlobalAlloc for Measured {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Measured = Measured;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("a corpus file reads");
            (e.path().display().to_string(), bytes)
        })
        .collect()
}

#[test]
fn every_committed_input_keeps_every_promise() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz"));
    for (name, run) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ has no inputs");
        let regressions = inputs(&root.join("regressions").join(name));
        for (path, bytes) in corpus.iter().chain(&regressions) {
            LARGEST.store(0, Ordering::Relaxed);
            if std::panic::catch_unwind(|| run(bytes)).is_err() {
                panic!("{path} breaks a promise of {name} (see the panic above)");
            }
            let largest = LARGEST.load(Ordering::Relaxed);
            assert!(
                largest <= MALLOC_LIMIT,
                "{path}: {name} asked for {largest} bytes at once from {} bytes of input",
                bytes.len()
            );
        }
        eprintln!("{name}: {} inputs, {} regressions", corpus.len(), regressions.len());
    }
}
