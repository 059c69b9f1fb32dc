"""Plot purge-bench's CSV: acknowledgement latency of each purge, and its distribution.
usage: plot_purge.py docs/bench/purge-latency.csv docs/bench/purge-latency.png"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

by_backend = {}
for r in csv.DictReader(open(sys.argv[1])):
    by_backend.setdefault(r.get("backend", "embedded"), []).append(float(r["latency_ms"]))
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
for backend, lat in by_backend.items():
    s = sorted(lat)
    pct = lambda p: s[round((len(s) - 1) * p)]
    line = a.plot(lat, linewidth=0.6, label=f"{backend}: p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms")
    b.plot(s, [i / len(s) * 100 for i in range(len(s))], color=line[0].get_color(), label=backend)
a.set_title("purge answer latency, one purge at a time")
a.set_xlabel("purge #")
a.set_ylabel("ms")
a.legend()
b.legend()
b.set_xscale("log")
b.set_title("distribution")
b.set_xlabel("ms (log)")
b.set_ylabel("% of purges answered within")
b.grid(alpha=0.3)
fig.suptitle("fresco purge: POST /v1/purge until every edge and shield applied it")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"plot: {sys.argv[2]}")
