#!/usr/bin/env bash
# What TLS costs a warm hit: one edge of `devcluster` and one of `devcluster --tls`, side by
# side on this machine, measured with wrk on the same cached image. Two loads each:
#   keep-alive   CONNECTIONS connections reused (the record layer's cost);
#   new-conn     `Connection: close` on every request (a full handshake per hit).
# usage: loadtest/tls_cost.sh [SECONDS] [CONNECTIONS]   (default 8 32)
# Writes docs/bench/tls-cost.txt and docs/bench/tls-cost.png.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-8}; conns=${2:-32}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

start() { # name, devcluster flags…
  local name=$1; shift
  "$root/target/release/devcluster" --state-dir "$work/$name" --edges 1 --shields 1 "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
}
echo "==> starting a plain and a TLS cluster (1 edge, 1 shield each)"
start plain
start tls --tls
for name in plain tls; do
  for _ in $(seq 300); do grep -q '^READY' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '^READY' "$work/$name.out" || { cat "$work/$name.err"; exit 1; }
done
edge() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['edges'][0]['url'])" "$work/$1/cluster.json"; }
plain=$(edge plain)/img/sunset.jpg
tls=$(edge tls)/img/sunset.jpg
curl -sf -o /dev/null "$plain"
curl -sf -o /dev/null --cacert "$work/tls/tls/ca.crt" "$tls"

out="$root/docs/bench/tls-cost.txt"
mkdir -p "$root/docs/bench"
{
  echo "# warm hits of /img/sunset.jpg (10.9 KB), wrk ${seconds}s, $(nproc) cores, $(date -u +%F)"
  printf '%-8s %-10s %12s %10s %10s\n' scheme load 'req/s' 'p50_ms' 'p99_ms'
} >"$out"
run() { # scheme, load, url, wrk flags…
  local scheme=$1 load=$2 url=$3; shift 3
  echo "==> $scheme $load (${seconds}s)" >&2
  wrk -t2 -d"${seconds}s" --latency "$@" "$url" >"$work/wrk.txt"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else printf "%.3f", v*1000 }'; }
  printf '%-8s %-10s %12s %10s %10s\n' "$scheme" "$load" "$rps" "$(ms "$p50")" "$(ms "$p99")" >>"$out"
}
run http keep-alive "$plain" -c"$conns"
run https keep-alive "$tls" -c"$conns"
run http new-conn "$plain" -c"$conns" -H 'Connection: close'
run https new-conn "$tls" -c"$conns" -H 'Connection: close'
cat "$out"
python3 "$root/loadtest/plot_tls.py" "$out" "$root/docs/bench/tls-cost.png" || echo "(no plot: $?)"
