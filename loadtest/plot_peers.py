"""Bar chart of a peers.sh table: req/s per target for each object, fresco highlighted,
with each target's ratio to fresco printed on its bar."""
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) >= 5 and parts[1].startswith("img-"):
        try:
            rows.setdefault(parts[1], []).append((parts[0], float(parts[2])))
        except ValueError:
            pass

fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 4))
if len(rows) == 1:
    axes = [axes]
for ax, (obj, targets) in zip(axes, sorted(rows.items(), key=lambda kv: int(kv[0].split("-")[1].rstrip("k.jpg")))):
    names = [t for t, _ in targets]
    values = [v for _, v in targets]
    colors = ["#e76f51" if n == "fresco" else "#2a9d8f" for n in names]
    ax.bar(names, values, color=colors)
    ax.set_title(f"warm hits, {obj}", pad=18)
    ax.set_ylim(0, max(values) * 1.18)
    ax.set_ylabel("requests/s")
    fresco = dict(targets).get("fresco")
    for i, v in enumerate(values):
        label = f"{v:,.0f}" + (f"\n{fresco / v:.2f}x" if fresco and names[i] != "fresco" else "")
        ax.text(i, v, label, ha="center", va="bottom", fontsize=8)
    ax.tick_params(axis="x", rotation=30)
fig.suptitle("fresco vs peers (fresco req/s divided by peer req/s above each bar)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"plot: {sys.argv[2]}")
