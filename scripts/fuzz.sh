#!/usr/bin/env bash
# make fuzz: runs every cargo-fuzz target (fuzz/fuzz_targets/) for FUZZ_SECONDS each (default
# 60), growing fuzz/corpus/<target>/. A crash stops the run and names the input libFuzzer kept
# in fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ and fix the code; the
# corpus test (`make test`) then runs it on every build.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
targets=(${FUZZ_TARGETS:-cache_key record signature purge_request sse feed_subscription})

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "make fuzz: needs a nightly toolchain (libFuzzer's instrumentation); try 'rustup toolchain install nightly'" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz (crates.io)"
    cargo install --locked cargo-fuzz
fi

echo "==> building ${#targets[@]} fuzz targets (nightly, sanitizer; the first build takes a few minutes)"
(cd fuzz && cargo +nightly fuzz build -O 2>&1 | grep -E "^error" -A5 || true)
i=0
for target in "${targets[@]}"; do
    i=$((i + 1))
    mkdir -p "fuzz/corpus/$target"
    rm -rf "fuzz/artifacts/$target"
    before=$(ls "fuzz/corpus/$target" | wc -l)
    echo "==> [$i/${#targets[@]}] $target for ${seconds}s (corpus: $before inputs)"
    # libFuzzer's pulse lines (at each doubling of the executions) show progress; its NEW
    # lines are left out, there are thousands.
    if ! (cd fuzz && cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=65536 \
        -print_final_stats=1 2>&1 | grep --line-buffered -E "pulse|DONE|stat::number_of_executed_units|ERROR|panicked|SUMMARY|artifact_prefix|Test unit written"); then
        echo "make fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    if ls "fuzz/artifacts/$target"/crash-* "fuzz/artifacts/$target"/oom-* >/dev/null 2>&1; then
        echo "make fuzz: $target found a crash: $(ls fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    # Keep only the inputs that add coverage: the corpus is committed.
    (cd fuzz && cargo +nightly fuzz cmin -O "$target" "corpus/$target" >/dev/null 2>&1) || true
    echo "    $target: corpus $before -> $(ls "fuzz/corpus/$target" | wc -l) inputs (minimized), no crash"
done
echo "==> make fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
