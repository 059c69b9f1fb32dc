#!/usr/bin/env bash
# Warm-hit throughput of a fresco edge next to nginx, Varnish, Traffic Server and Squid, all on
# this machine, measured in one run by loadtest/peers/run.sh (wrk, 30 KB and 200 KB; it installs
# the peers from Debian's packages when missing, with the configurations beside it).
# usage: loadtest/peers.sh [SECONDS] [CONNECTIONS]   (default 8 64)
# Writes the table to $BENCH_OUT/peers-latest.txt and a plot to $BENCH_OUT/peers-latest.png
# (BENCH_OUT: target/bench unless set; docs/bench replaces the committed ones).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers="$root/loadtest/peers/run.sh"
seconds=${1:-8}; conns=${2:-64}
port=9105
work=$(mktemp -d)
trap 'kill $(cat "$work/edge.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

cat > "$work/edge.yaml" <<YAML
node_id: bench-edge
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:9106
threads: 2
cache: { memory: 512MiB, disk: 1GiB, dir: $work/cache }
sites: [{ name: default, origin: "http://127.0.0.1:9000" }]
YAML
echo "==> starting fresco-edge on :$port (origin: the peers' nginx on :9000)"
FRESCO_LOG=warn "$root/target/release/fresco-edge" -c "$work/edge.yaml" 2>"$work/edge.log" &
echo $! > "$work/edge.pid"
for _ in $(seq 50); do curl -sf http://127.0.0.1:9106/readyz >/dev/null && break; sleep 0.1; done

echo "==> running the peers and fresco, ${seconds}s per target and object (about $((seconds * 12 + 20))s)"
out_dir=$(mkdir -p "${BENCH_OUT:-$root/target/bench}" && cd "${BENCH_OUT:-$root/target/bench}" && pwd)
out="$out_dir/peers-latest.txt"
EXTRA="fresco:$port" bash "$peers" "$seconds" "$conns" | tee "$out"
python3 "$root/loadtest/plot_peers.py" "$out" "$out_dir/peers-latest.png" || echo "(no plot: $?)"
