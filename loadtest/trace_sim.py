#!/usr/bin/env python3
"""Simulated hit ratios of eviction policies on a trace, with libCacheSim.

usage: trace_sim.py TRACE.csv CACHE_BYTES [CACHE_BYTES ...] [--policies Sieve,S3FIFO,...]

TRACE.csv is what `trace-bench` writes: a header `id,size`, then one request a line, in order.
Prints one JSON object a line: policy, cache_bytes, request_hit_ratio, byte_hit_ratio. Cache
sizes count object bytes only (libCacheSim's default), as the edge's memory tier weighs
bodies plus a few hundred bytes of headers.
"""
import argparse
import csv
import json
import sys

try:
    import libcachesim as lcs
except ImportError:
    sys.exit("trace_sim.py: libcachesim is missing (pip install libcachesim; scripts/setup.sh bench installs it)")

# The policies the issue compares against, and LRU as the baseline everyone knows.
DEFAULT_POLICIES = "Sieve,S3FIFO,WTinyLFU,ARC,TwoQ,LRU"


def read_trace(path):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        first = next(rows)
        if first[0].strip() != "id":
            yield int(first[0]), int(first[1])
        for row in rows:
            yield int(row[0]), int(row[1])


def simulate(policy, cache_bytes, trace):
    cache = getattr(lcs, policy)(cache_size=cache_bytes)
    req = lcs.Request()
    hits = hit_bytes = total_bytes = 0
    for clock, (obj, size) in enumerate(trace):
        req.obj_id, req.obj_size, req.clock_time = obj, size, clock
        total_bytes += size
        if cache.get(req):
            hits += 1
            hit_bytes += size
    return hits / max(len(trace), 1), hit_bytes / max(total_bytes, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("cache_bytes", nargs="+", type=int)
    ap.add_argument("--policies", default=DEFAULT_POLICIES)
    args = ap.parse_args()
    trace = list(read_trace(args.trace))
    for cache_bytes in args.cache_bytes:
        for policy in args.policies.split(","):
            if not hasattr(lcs, policy):
                sys.exit(f"trace_sim.py: libcachesim has no policy `{policy}`")
            request_hr, byte_hr = simulate(policy, cache_bytes, trace)
            print(json.dumps({
                "policy": policy,
                "cache_bytes": cache_bytes,
                "request_hit_ratio": request_hr,
                "byte_hit_ratio": byte_hr,
            }), flush=True)


if __name__ == "__main__":
    main()
