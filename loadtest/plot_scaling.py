#!/usr/bin/env python3
"""Plots scale-bench's CSV: warm-hit throughput against the number of edges (with N x one edge),
the origin fetches of a working set twice one shield's memory with 1 and 2 shields, and the
origin fetches in the minute after a shield's kill -9 with 1 and 2 replicas per key.
usage: plot_scaling.py docs/bench/scaling.csv docs/bench/scaling.png"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
edges = [r for r in rows if r["part"] == "edges"]
shields = {r["part"]: r for r in rows if r["part"].startswith("shields")}
fig, (left, right, third) = plt.subplots(1, 3, figsize=(15, 4.4))

n = [int(r["n"]) for r in edges]
rps = [float(r["value"]) for r in edges]
left.plot(n, [rps[0] * k for k in n], "--", color="grey", label="N x one edge")
left.plot(n, [rps[0] * k * 0.9 for k in n], ":", color="grey", label="target 0.9 N x one edge")
left.plot(n, rps, "o-", color="tab:blue", label="measured")
for k, v, r in zip(n, rps, edges):
    left.annotate(f"{v:,.0f}/s\n{float(r['ratio']):.2f}x, p99 {float(r['p99_ms']):.1f} ms", (k, v),
                  textcoords="offset points", xytext=(6, -24), fontsize=8)
left.set_xticks(n)
left.set_xlabel("edges (each at the same CPU quota)")
left.set_ylabel("warm hits per second")
left.set_title("Edges: warm-hit throughput")
left.legend(fontsize=8)

labels, values = [], []
for part, title in (("shields", "in all"), ("shields_steady", "after pass 1")):
    for r in rows:
        if r["part"] == part:
            labels.append(f"{r['n']} shield{'s' if r['n'] != '1' else ''}\n{title}")
            values.append(float(r["value"]))
bars = right.bar(labels, values, color=["tab:orange", "tab:green"] * 2)
for b, v in zip(bars, values):
    right.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
right.tick_params(axis="x", labelsize=8)
right.set_ylabel("origin fetches")
right.set_title("Shields: working set = 2 x one shield's memory")
after = [r for r in rows if r["part"] == "replicas_after_kill"]
size = {r["n"]: float(r["value"]) for r in rows if r["part"] == "replicas_bytes"}
bars = third.bar([f"R = {r['n']}" for r in after], [float(r["value"]) for r in after], color=["tab:orange", "tab:green"])
for b, r in zip(bars, after):
    note = f"{float(r['value']):,.0f} fetches\nshields hold {size.get(r['n'], 0) / 1048576:.1f} MiB"
    third.annotate(note, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
third.set_ylabel("origin fetches in the minute after")
third.set_title("Replicas: a shield killed (3 shields, 600 keys)")
third.margins(y=0.25)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"wrote {sys.argv[2]}")
