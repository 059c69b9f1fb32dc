"""Plot store-bench's CSVs: hit ratio (and p99 latency) per second around a kill -9 and warm
restart, hit latency from memory and from disk, and stored against logical bytes per node and
tier.
usage: plot_store.py docs/bench/store docs/bench/store.png   (the prefix of the four CSVs)"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

prefix, out = sys.argv[1], sys.argv[2]
rows = lambda name: list(csv.DictReader(open(f"{prefix}-{name}.csv")))
summary = {r["metric"]: float(r["value"]) for r in rows("summary")}
fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4.5))

restart = rows("restart")
for phase, colour in (("before", "tab:blue"), ("after", "tab:orange")):
    pts = [(int(r["second"]), float(r["hit_ratio"]) * 100) for r in restart
           if r["phase"] == phase and int(r["answered"]) > 0]
    a.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color=colour,
           label=f"{phase}: {summary.get('hit_ratio_' + phase, 0) * 100:.2f} % hits")
lat = a.twinx()
pts = [(int(r["second"]), float(r["p99_ms"])) for r in restart if int(r["answered"]) > 0]
lat.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:gray", linewidth=0.8, alpha=0.7,
         label="p99 latency (right axis)")
lat.set_ylabel("p99 ms per second")
lat.set_ylim(bottom=0)
lat.legend(fontsize=8, loc="upper right")
a.axvline(0, color="red", linestyle="--",
          label=f"kill -9, restart: ready {summary.get('restart_ready_s', 0) * 1000:.0f} ms, "
                f"first HIT {summary.get('restart_first_hit_s', 0) * 1000:.0f} ms")
a.set_title(f"edge hit ratio around a warm restart "
            f"({summary.get('restart_disk_bytes_before_kill', 0) / 1e9:.2f} GB on disk)")
a.set_xlabel("s (before the kill < 0 ≤ after the restart)")
a.set_ylabel("% of answered requests that were HITs")
a.legend(fontsize=8, loc="lower left")
a.grid(alpha=0.3)

latency = rows("latency")
for tier, colour in (("memory", "tab:green"), ("disk", "tab:purple")):
    s = sorted(float(r["latency_ms"]) for r in latency if r["tier"] == tier)
    if s:
        b.plot(s, [i / len(s) * 100 for i in range(len(s))], color=colour,
               label=f"{tier}: p50 {summary.get(tier + '_hit_p50_ms', 0):.3f} ms, "
                     f"p99 {summary.get(tier + '_hit_p99_ms', 0):.3f} ms")
b.set_xscale("log")
b.set_title("hit latency on the edge, one request at a time")
b.set_xlabel("ms (log)")
b.set_ylabel("% of hits answered within")
b.legend(fontsize=8)
b.grid(alpha=0.3)

held = [r for r in rows("bytes") if r["stored_bytes"] and r["logical_bytes"]]
labels = ["distinct bodies\n(dedup only)" if r["node"] == "corpus" else f"{r['node']}\n{r['tier']}"
          for r in held]
ratios = [float(r["stored_bytes"]) / float(r["logical_bytes"]) for r in held]
c.bar(labels, ratios, color=["tab:gray"] + ["tab:blue"] * (len(held) - 1))
for x, ratio in enumerate(ratios):
    c.text(x, ratio + 0.01, f"{ratio:.3f}", ha="center", fontsize=8)
c.set_ylim(0, 1.1)
c.set_title("stored / logical bytes\n(corpus: 30 % duplicate URLs, 10 % SVG)")
c.set_ylabel("stored / logical")
c.tick_params(axis="x", labelsize=8)

fig.suptitle("fresco store: deduplication, compression at rest, hit latency by tier, warm restart")
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"plot: {out}")
