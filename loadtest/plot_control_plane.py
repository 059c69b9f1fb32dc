"""Plot control-plane-bench's CSV: purge answer latency and purge-api's CPU and memory against
the number of simulated nodes, one line per purge rate.
usage: plot_control_plane.py target/bench/control-plane.csv  (writes control-plane.png beside it)"""
import csv
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
rates = sorted({int(r["rate"]) for r in rows})
fig, (lat, cpu, mem) = plt.subplots(1, 3, figsize=(15, 4.2))
for rate in rates:
    points = sorted((int(r["nodes"]), r) for r in rows if int(r["rate"]) == rate)
    nodes = [n for n, _ in points]
    line = lat.plot(nodes, [float(r["p99_ms"]) for _, r in points], marker="o", label=f"{rate}/s p99")
    lat.plot(nodes, [float(r["p50_ms"]) for _, r in points], marker=".", linestyle="--",
             color=line[0].get_color(), label=f"{rate}/s p50")
    cpu.plot(nodes, [float(r["api_cpu_cores"]) for _, r in points], marker="o", label=f"{rate} purges/s")
    mem.plot(nodes, [float(r["api_rss_mib"]) for _, r in points], marker="o", label=f"{rate} purges/s")
lat.set_yscale("log")
lat.set_title("purge answer latency (wait: true)")
lat.set_ylabel("ms (log)")
cpu.axhline(1.0, color="grey", linestyle=":", linewidth=1)
cpu.set_title("purge-api CPU (1.0 = one core)")
cpu.set_ylabel("cores")
mem.set_title("purge-api resident memory")
mem.set_ylabel("MiB")
for a in (lat, cpu, mem):
    a.set_xscale("log")
    a.set_xlabel("simulated nodes (log)")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
fig.suptitle("one purge-api (embedded log) in front of simulated nodes speaking the real node protocol")
fig.tight_layout()
out = os.path.join(os.path.dirname(sys.argv[1]), "control-plane.png")
fig.savefig(out, dpi=110)
print(f"plot: {out}")
