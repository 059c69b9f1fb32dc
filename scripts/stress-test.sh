#!/usr/bin/env bash
# Runs a test N times beside one CPU burner per core, the way a loaded CI machine runs it, and
# counts the failures: how flaky tests are found and fixes are checked.
#
#   scripts/stress-test.sh N [cargo test arguments]
#   scripts/stress-test.sh 15 -p fresco-e2e --test cache_tiers a_restarted_cluster
#
# End-to-end tests use target/release's binaries: `cargo build --release --bins` first.
# The output of each failed run is kept in a temporary directory, named at the end.
set -euo pipefail
if [[ $# -lt 2 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 N [cargo test arguments]" >&2
    exit 2
fi
runs=$1
shift
logs=$(mktemp -d)
cargo test --release --no-run "$@" >"$logs/build.log" 2>&1 || { cat "$logs/build.log" >&2; exit 1; }

burners=()
for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    burners+=($!)
done
trap 'kill "${burners[@]}" 2>/dev/null' EXIT

failed=0
for i in $(seq "$runs"); do
    if cargo test --release "$@" -- --test-threads 1 >"$logs/run-$i.log" 2>&1; then
        rm "$logs/run-$i.log"
        echo "run $i/$runs: ok"
    else
        failed=$((failed + 1))
        echo "run $i/$runs: FAILED ($logs/run-$i.log)"
    fi
done
echo "$failed of $runs runs failed"
[[ $failed -eq 0 ]]
