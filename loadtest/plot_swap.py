"""Plot swap-bench's CSV: purge → image swapped in Chromium, per change and as a distribution.
usage: plot_swap.py docs/bench/swap-latency.csv docs/bench/swap-latency.png"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
series = {
    "from purge sent": [float(r["from_sent_ms"]) for r in rows],
    "from purge answer": [float(r["from_answer_ms"]) for r in rows],
}
pct = lambda s, p: s[round((len(s) - 1) * p)]
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
for (name, lat), color in zip(series.items(), ("tab:blue", "tab:orange")):
    s = sorted(lat)
    a.plot(lat, linewidth=0.8, color=color,
           label=f"{name}: p50 {pct(s, 0.5):.1f} ms, p95 {pct(s, 0.95):.1f} ms")
    b.plot(s, [i / len(s) * 100 for i in range(len(s))], color=color, label=name)
a.axhline(100, color="red", linestyle="--", linewidth=0.8, label="target p95 100 ms")
a.set_title("image swapped in the page, one change at a time")
a.set_xlabel("change #")
a.set_ylabel("ms")
a.legend(fontsize=8)
b.set_title("distribution")
b.set_xlabel("ms")
b.set_ylabel("% of changes swapped within")
b.grid(alpha=0.3)
b.legend(fontsize=8)
fig.suptitle("fresco live.js: origin's signed purge → new image shown in headless Chromium (loopback)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"plot: {sys.argv[2]}")
