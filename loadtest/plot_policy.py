"""Plot policy_sim's CSV: object hit ratio per eviction policy and cache size, one panel per
Zipf alpha. usage: plot_policy.py target/policy_sim.csv docs/bench/eviction.png"""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
alphas = sorted({r["alpha"] for r in rows})
policies = list(dict.fromkeys(r["policy"] for r in rows))
fig, axes = plt.subplots(1, len(alphas), figsize=(6 * len(alphas), 4), sharey=False)
for ax, alpha in zip(axes, alphas):
    for policy in policies:
        pts = [(int(r["cache_percent"]), float(r["byte_hit_ratio"]) * 100) for r in rows
               if r["alpha"] == alpha and r["policy"] == policy]
        ax.plot([p for p, _ in pts], [h for _, h in pts], marker="o", label=policy,
                linewidth=3 if policy == "sieve" else 1.5)
    ax.set_title(f"Zipf alpha = {alpha}")
    ax.set_xlabel("cache size, % of corpus bytes")
    ax.set_ylabel("byte hit ratio, %")
    ax.grid(alpha=0.3)
    ax.legend()
fig.suptitle("memory eviction policies in fresco's store (20,000 images, log-normal sizes)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"plot: {sys.argv[2]}")
