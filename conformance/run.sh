#!/usr/bin/env bash
# make conformance: the HTTP caching test suite (cache-tests, the suite behind cache-tests.fyi,
# vendored in conformance/cache-tests/) against one fresco edge in front of the suite's own
# server, then against an edge behind a shield; prints the counts beside the peers' published
# results and what fresco still fails, and fails when a run passes fewer required tests than
# its floor in conformance/floor.json. TEST=<id> runs that one test, with the exchange shown.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="$root/target/release"
out="$root/target/conformance"
suite="$here/cache-tests"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing nodejs and npm (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "the conformance suite needs node and npm: sudo apt-get install -y nodejs npm" >&2
    exit 1
  fi
fi
if [ ! -d "$suite/node_modules/undici" ]; then
  echo "==> installing the suite's one dependency (undici, npm)"
  (cd "$suite" && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
fi

# Ports below the kernel's ephemeral range, so that no outgoing connection holds one first.
free_port() {
  python3 - <<'PY'
import random, socket
low = int(open('/proc/sys/net/ipv4/ip_local_port_range').read().split()[0])
for _ in range(200):
    port = random.randrange(10000, low)
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', port)); print(port); break
        except OSError:
            pass
PY
}

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_ready() { # URL WHAT LOG [CURL_FLAG]: until URL answers (200, or anything with -s)
  for _ in $(seq 1 300); do
    curl "${4:--fs}" -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$2 did not become ready; its log:" >&2
  cat "$3" >&2
  exit 1
}

server_port="$(free_port)"
(cd "$suite" && npm_config_protocol=http npm_config_port="$server_port" \
  npm_config_pidfile="$work/server.pid" exec node test-engine/server/server.mjs >"$work/server.log" 2>&1) &
pids+=($!)
wait_ready "http://127.0.0.1:$server_port/" "the suite's server" "$work/server.log" -s

# A node of ROLE (edge, shield) named NAME, with UPSTREAM_LINES added (shields: for an edge).
start_node() { # ROLE NAME UPSTREAM_LINES -> prints the proxy port
  local role="$1" name="$2" lines="$3" port admin
  port="$(free_port)"
  admin="$(free_port)"
  cat >"$work/$name.yaml" <<YAML
node_id: $name
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
cache: { memory: 64MiB }
$lines
sites:
  - name: default
    origin: http://127.0.0.1:$server_port
    browser_cache: origin
YAML
  "$bin/fresco-$role" -c "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$admin/readyz" "$name" "$work/$name.log"
  echo "$port"
}

run_suite() { # NAME EDGE_PORT
  if [ -n "${TEST:-}" ]; then
    echo "==> $TEST against $1"
    (cd "$suite" && npm_config_base="http://127.0.0.1:$2" npm_config_id="$TEST" \
      node --no-warnings test-engine/cli.mjs)
    return
  fi
  echo "==> running the suite against $1 (a minute or two)"
  (cd "$suite" && npm_config_base="http://127.0.0.1:$2" npm_config_id='' npm_package_config_id='' \
    node --no-warnings test-engine/cli.mjs >"$out/$1.json" 2>"$out/$1.log")
}

mkdir -p "$out"
edge="$(start_node edge edge "")"
run_suite edge "$edge"
shield="$(start_node shield shield "")"
edge_behind="$(start_node edge edge-behind-shield "shields: ['127.0.0.1:$shield']")"
run_suite edge+shield "$edge_behind"

[ -n "${TEST:-}" ] && exit 0
node "$here/score.mjs" "edge=$out/edge.json" "edge+shield=$out/edge+shield.json"
echo "results: $out/edge.json, $out/edge+shield.json"
