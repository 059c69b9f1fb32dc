"""Bar chart of tls_cost.sh's table: warm-hit req/s and p99 over HTTP and HTTPS, for reused
and for new connections, with HTTPS's share of HTTP's throughput on its bar."""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 5 and parts[0] in ("http", "https"):
        rows[(parts[0], parts[1])] = (float(parts[2]), float(parts[4]))

loads = ["keep-alive", "new-conn"]
fig, (rps_ax, p99_ax) = plt.subplots(1, 2, figsize=(10, 4))
for ax, index, label in ((rps_ax, 0, "warm hits per second"), (p99_ax, 1, "p99 latency (ms)")):
    for offset, scheme in ((-0.2, "http"), (0.2, "https")):
        values = [rows.get((scheme, load), (0, 0))[index] for load in loads]
        bars = ax.bar([i + offset for i in range(len(loads))], values, width=0.4, label=scheme)
        if scheme == "https" and index == 0:
            for bar, load in zip(bars, loads):
                base = rows.get(("http", load), (0, 0))[0]
                if base:
                    ax.annotate(f"{bar.get_height() / base:.0%}", (bar.get_x() + 0.2, bar.get_height()),
                                ha="center", va="bottom")
    ax.set_xticks(range(len(loads)), loads)
    ax.set_title(label)
    ax.legend()
fig.suptitle("What TLS costs a warm hit (fresco edge, same machine, same run)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
