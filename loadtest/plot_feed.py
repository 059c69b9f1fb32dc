"""Plot feed-bench's CSV: when each feed connection heard of each purge.
usage: plot_feed.py docs/bench/feed-fanout.csv docs/bench/feed-fanout.png"""
import csv
import sys
from collections import defaultdict

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

by_purge = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    by_purge[int(r["purge"])].append(float(r["arrival_ms"]))
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
for purge, arrivals in sorted(by_purge.items()):
    s = sorted(arrivals)
    a.plot(s, [i / len(s) * 100 for i in range(len(s))], linewidth=0.8, label=f"purge {purge + 1}")
a.set_title(f"event arrival at {len(next(iter(by_purge.values())))} idle feeds, per purge")
a.set_xlabel("ms after the purge was sent")
a.set_ylabel("% of feeds that have the event")
a.grid(alpha=0.3)
if len(by_purge) <= 10:
    a.legend(fontsize=7)
last = [max(v) for _, v in sorted(by_purge.items())]
b.bar(range(1, len(last) + 1), last)
b.set_title("fan-out time: purge sent → event at the last feed")
b.set_xlabel("purge #")
b.set_ylabel("ms")
fig.suptitle("fresco change feed: one edge, one purge followed by every connection")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"plot: {sys.argv[2]}")
