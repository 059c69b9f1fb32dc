"""Plot trace-bench's results.csv: request and byte hit ratio of the real edges next to the
policies libCacheSim simulated, one group of bars per trace and cache size.
usage: plot_trace.py target/trace-bench/results.csv target/trace-bench/hit-ratio.png"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
groups = list(dict.fromkeys((r["trace"], float(r["fraction"])) for r in rows))
caches = list(dict.fromkeys(r["cache"] for r in rows))
# The edges first and in strong colours; the simulated policies after them, in greys.
order = {c: i for i, c in enumerate(caches)}
caches.sort(key=lambda c: (c.startswith("sim "), order[c]))
value = {(r["trace"], float(r["fraction"]), r["cache"]): r for r in rows}
width = 0.8 / len(caches)
fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(groups)), 8), sharex=True)
for ax, metric, title in zip(axes, ["request_hit_ratio", "byte_hit_ratio"], ["request hit ratio", "byte hit ratio"]):
    for i, cache in enumerate(caches):
        xs, ys = [], []
        for g, (trace, fraction) in enumerate(groups):
            r = value.get((trace, fraction, cache))
            if r:
                xs.append(g + (i - len(caches) / 2 + 0.5) * width)
                ys.append(float(r[metric]) * 100)
        edge = not cache.startswith("sim ")
        colour = ["tab:red", "tab:orange", "tab:green"][i % 3] if edge else plt.cm.Greys(0.25 + 0.6 * i / len(caches))
        ax.bar(xs, ys, width, label=cache, color=colour, edgecolor="black" if edge else None)
    ax.set_ylabel(f"{title}, %")
    ax.grid(axis="y", alpha=0.3)
axes[1].set_xticks(range(len(groups)))
axes[1].set_xticklabels([f"{t}\n{f * 100:.0f} % of footprint" for t, f in groups], fontsize=8)
axes[0].legend(ncol=4, fontsize=8)
fig.suptitle("fresco edges against libCacheSim's policies, same traces and cache sizes")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"plot: {sys.argv[2]}")
