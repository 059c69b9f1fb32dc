#!/usr/bin/env python3
"""Turns what `eval` left in DIR into DIR/evaluation.md and its plots (PNG).

usage: plot_eval.py DIR [REPORT]

REPORT (default DIR/evaluation.md) is where the report goes; its plots go into eval/ beside it
(`make eval-docs` writes docs/evaluation.md and docs/eval/, without the raw samples).

DIR holds runs.json (the runs and the setup), for each run `<scenario>-<target>.summary.json`
(k6's --summary-export) and `<scenario>-<target>.csv` (k6's --out csv, times in Unix ms),
metrics.csv (the nodes' and origin's counters, once a second), faults.csv and scaling.csv.
"""
import collections
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"fresco": "tab:blue", "varnish": "tab:purple", "ats": "tab:orange"}
NAMES = {"fresco": "fresco", "varnish": "Varnish", "ats": "Traffic Server"}


def load_samples(path):
    """k6's CSV: {metric: [(time_s, value, tags)]}, times in seconds."""
    samples = collections.defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            samples[row["metric_name"]].append(
                (int(row["timestamp"]) / 1000.0, float(row["metric_value"]), row)
            )
    return samples


def per_second(points, start):
    """{second since start: [values]}."""
    buckets = collections.defaultdict(list)
    for t, v, _ in points:
        buckets[int(t - start)].append(v)
    return buckets


def quantile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(math.ceil(q * len(values))) - 1)]


def failed_thresholds(summary):
    """The thresholds k6 marked as failed: ["metric: expression", …]."""
    failed = []
    for metric, values in summary["metrics"].items():
        for expression, crossed in values.get("thresholds", {}).items():
            if crossed:
                failed.append(f"`{metric}`: `{expression}`")
    return failed


class Eval:
    def __init__(self, out, report):
        self.out = out
        self.report = report
        self.plots = os.path.join(os.path.dirname(report), "eval")
        os.makedirs(self.plots, exist_ok=True)
        with open(os.path.join(out, "runs.json")) as f:
            self.setup = json.load(f)
        self.runs = {(r["scenario"], r["target"]): r for r in self.setup["runs"]}
        self.deadline = self.setup["deadline_ms"]
        self._samples = {}
        self.metrics = collections.defaultdict(list)  # (run, source, metric) -> [(t, v)]
        path = os.path.join(out, "metrics.csv")
        if os.path.exists(path):
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    key = (row["run"], row["source"], row["metric"])
                    self.metrics[key].append((float(row["time"]), float(row["value"])))
        self.faults = []
        path = os.path.join(out, "faults.csv")
        if os.path.exists(path):
            with open(path, newline="") as f:
                self.faults = [(r["fault"], float(r["start"]), float(r["end"])) for r in csv.DictReader(f)]

    def samples(self, scenario, target):
        key = (scenario, target)
        if key not in self._samples:
            self._samples[key] = load_samples(os.path.join(self.out, self.runs[key]["samples"]))
        return self._samples[key]

    def summary(self, scenario, target):
        with open(os.path.join(self.out, self.runs[(scenario, target)]["summary"])) as f:
            return json.load(f)

    def targets(self, scenario):
        return [t for (s, t) in self.runs if s == scenario]

    def durations(self, scenario, target, name=None):
        return [
            v for _, v, row in self.samples(scenario, target)["http_req_duration"]
            if name is None or row["name"] == name
        ]

    def rate_per_second(self, run, source, metric):
        """(seconds since the run's start, increase per second) of a sampled counter."""
        points = self.metrics.get((run, source, metric), [])
        scenario, target = run.split("-", 1)
        start = self.runs[(scenario, target)]["started"]
        return [
            ((t0 + t1) / 2 - start, (v1 - v0) / (t1 - t0))
            for (t0, v0), (t1, v1) in zip(points, points[1:])
            if t1 > t0 and v1 >= v0
        ]

    def save(self, fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(self.plots, name), dpi=110)
        plt.close(fig)
        return f"eval/{name}"


def hit_ratio_plot(ev):
    fig, ax = plt.subplots(figsize=(8, 3.6))
    rows = []
    for target in ev.targets("browse"):
        run = ev.runs[("browse", target)]
        points = ev.samples("browse", target)["cache_hits"]
        buckets = per_second(points, run["started"])
        seconds = sorted(buckets)
        ax.plot(seconds, [sum(buckets[s]) / len(buckets[s]) for s in seconds],
                label=NAMES.get(target, target), color=COLORS.get(target))
        hits = sum(v for _, v, _ in points)
        origin = ev.metrics.get((f"browse-{target}", "origin", "eval_origin_requests_total"), [])
        fetched = origin[-1][1] - origin[0][1] if len(origin) > 1 else float("nan")
        rows.append((target, hits / max(1, len(points)), len(points), fetched))
    ax.set_xlabel("seconds into browse.js")
    ax.set_ylabel("request hit ratio (per second)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Hit ratio over time, same trace and load")
    return ev.save(fig, "eval-hit-ratio.png"), rows


def latency_plot(ev, scenario, name, title):
    targets = ev.targets(scenario)
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), sharey=True, squeeze=False)
    for ax, target in zip(axes[0], targets):
        run = ev.runs[(scenario, target)]
        points = [p for p in ev.samples(scenario, target)["http_req_duration"] if p[2]["name"] == name]
        buckets = per_second(points, run["started"])
        seconds = sorted(buckets)
        for q, style in [(0.5, "-"), (0.99, "--"), (1.0, ":")]:
            ax.plot(seconds, [quantile(buckets[s], q) for s in seconds], style,
                    color=COLORS.get(target), label="max" if q == 1.0 else f"p{int(q * 100)}")
        ax.axhline(ev.deadline, color="red", linewidth=1, label=f"deadline {ev.deadline} ms")
        ax.set_yscale("log")
        ax.set_title(NAMES.get(target, target))
        ax.set_xlabel(f"seconds into {scenario}.js")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("response time, ms")
    fig.suptitle(title)
    return ev.save(fig, f"eval-latency-{scenario}.png")


def origin_plot(ev):
    fig, (ax_req, ax_bytes) = plt.subplots(1, 2, figsize=(10, 3.6))
    for target in ev.targets("browse"):
        run = ev.runs[("browse", target)]
        clients = per_second(ev.samples("browse", target)["http_reqs"], run["started"])
        seconds = sorted(clients)
        color = COLORS.get(target)
        label = NAMES.get(target, target)
        ax_req.plot(seconds, [len(clients[s]) for s in seconds], color=color, alpha=0.35, label=f"{label}: clients")
        origin = ev.rate_per_second(f"browse-{target}", "origin", "eval_origin_requests_total")
        ax_req.plot([t for t, _ in origin], [v for _, v in origin], color=color, label=f"{label}: origin")
        origin_bytes = ev.rate_per_second(f"browse-{target}", "origin", "eval_origin_bytes_total")
        ax_bytes.plot([t for t, _ in origin_bytes], [v / 1e6 for _, v in origin_bytes], color=color, label=label)
    ax_req.set_ylabel("requests/s")
    ax_req.set_xlabel("seconds into browse.js")
    ax_req.legend(fontsize=7)
    ax_req.set_title("Client requests and origin fetches")
    ax_bytes.set_ylabel("origin MB/s")
    ax_bytes.set_xlabel("seconds into browse.js")
    ax_bytes.legend(fontsize=7)
    ax_bytes.set_title("Origin bytes")
    return ev.save(fig, "eval-origin-load.png")


def swap_latencies(ev):
    """swap-bench's CSV as sorted ms, or None: "from_answer" (purge answered → swapped) and
    "from_sent" (webhook sent → swapped)."""
    path = os.path.join(ev.out, "swap-latency.csv")
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return {
        "from_answer": sorted(float(r["from_answer_ms"]) for r in rows),
        "from_sent": sorted(float(r["from_sent_ms"]) for r in rows),
    }


def purge_plot(ev, swaps):
    answers = sorted(v for _, v, _ in ev.samples("purge", "fresco")["purge_answer_ms"])
    fig, ax = plt.subplots(figsize=(7, 3.8))

    def cdf(values, label, **style):
        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label, **style)

    cdf(answers, "webhook sent → purge answered: fresh on every edge (purge.js)", color=COLORS["fresco"])
    if swaps:
        cdf(swaps["from_answer"], "purge answered → image swapped in Chromium (swap-bench)", color="tab:green")
        cdf(swaps["from_sent"], "webhook sent → image swapped in Chromium (swap-bench)",
            color="tab:green", linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("ms")
    ax.set_ylabel("share of purges")
    ax.set_title("Purge → fresh everywhere → new image on screen (CDF)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ev.save(fig, "eval-purge.png"), answers


def outage_plot(ev):
    run = ev.runs[("outage", "fresco")]
    start = run["started"]
    points = ev.samples("outage", "fresco")["http_req_duration"]
    failed = ev.samples("outage", "fresco")["http_req_failed"]
    buckets = per_second(points, start)
    errors = per_second(failed, start)
    seconds = sorted(buckets)
    # Each second's bucket is drawn at its middle, so that a fault's band lines up with it.
    middles = [s + 0.5 for s in seconds]
    fig, (ax_lat, ax_err) = plt.subplots(2, 1, figsize=(9, 5.4), sharex=True)
    for q, style in [(0.5, "-"), (0.99, "--"), (1.0, ":")]:
        ax_lat.plot(middles, [quantile(buckets[s], q) for s in seconds], style, color=COLORS["fresco"],
                    label="max" if q == 1.0 else f"p{int(q * 100)}")
    ax_lat.axhline(ev.deadline, color="red", linewidth=1, label=f"deadline {ev.deadline} ms")
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("response time, ms")
    ax_lat.legend(fontsize=7, loc="upper left")
    ax_err.plot(middles, [sum(errors.get(s, [])) for s in seconds], color="tab:red", label="errors/s")
    ax_err.plot(middles, [len(buckets[s]) for s in seconds], color="gray", alpha=0.5, label="requests/s")
    origin = ev.rate_per_second("outage-fresco", "origin", "eval_origin_requests_total")
    ax_err.plot([t for t, _ in origin], [v for _, v in origin], color="tab:green", label="origin fetches/s")
    ax_err.set_ylabel("per second")
    ax_err.set_xlabel("seconds into outage.js")
    ax_err.legend(fontsize=7, loc="upper left")
    for name, began, ended in ev.faults:
        for ax in (ax_lat, ax_err):
            ax.axvspan(began - start, ended - start, color="gold", alpha=0.25)
        ax_lat.text(began - start, ev.deadline * 1.3, name.replace("_", " "), fontsize=7)
    fig.suptitle("Steady load through faults (shaded: the fault)")
    return ev.save(fig, "eval-outage.png")


def outage_phases(ev):
    """{phase: (requests, errors, p99, max)} from the k6 tags."""
    phases = collections.defaultdict(lambda: [0, 0, []])
    samples = ev.samples("outage", "fresco")
    for _, v, row in samples["http_req_duration"]:
        phases[phase_of(row)][2].append(v)
    for _, v, row in samples["http_req_failed"]:
        phases[phase_of(row)][0] += 1
        phases[phase_of(row)][1] += int(v)
    return {p: (n, e, quantile(d, 0.99), max(d) if d else float("nan")) for p, (n, e, d) in phases.items()}


def phase_of(row):
    for tag in row.get("extra_tags", "").split("&"):
        if tag.startswith("phase="):
            return tag[len("phase="):]
    return "steady"


def scaling_plot(ev):
    path = os.path.join(ev.out, "scaling.csv")
    if not os.path.exists(path):
        return None, []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["part"] == "edges"]
    if not rows:
        return None, []
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    n = [int(r["n"]) for r in rows]
    rps = [float(r["value"]) for r in rows]
    ax.plot(n, rps, "o-", color=COLORS["fresco"], label="measured")
    ax.plot(n, [rps[0] * k / n[0] for k in n], "--", color="gray", label="linear")
    ax.set_xlabel("edges (each capped at the same CPU share)")
    ax.set_ylabel("warm hits/s")
    ax.set_xticks(n)
    ax.legend()
    ax.set_title("Throughput against the number of edges")
    return ev.save(fig, "eval-scaling.png"), rows


def fmt(x, digits=1):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def main():
    out = sys.argv[1]
    report = sys.argv[2] if len(sys.argv) > 2 else os.path.join(out, "evaluation.md")
    ev = Eval(out, report)
    trace = ev.setup["trace"]
    md = []
    w = md.append
    w("# fresco evaluation\n")
    w(f"Written by `make eval{' QUICK=1' if ev.setup['quick'] else ''}` (`target/release/eval`, "
      "`loadtest/plot_eval.py`) from one run on this machine; every number below comes from "
      f"the files `eval` wrote (`{out}`). k6 drives the load (`loadtest/k6/`); fresco is a devcluster "
      "of 2 edges and 2 shields (each 64 MiB of memory, 256 MiB of disk); Varnish (320 MiB "
      "of memory) and Traffic Server (64 MiB of memory, 256 MiB of disk, concurrent misses "
      "collapsed) are each one cache, with one fresco node's budget, in front of the same origin. "
      f"The origin answers after {ev.setup['origin_latency_ms']} ms.\n")
    w(f"The trace: {trace['requests']} requests to {trace['objects']} objects "
      f"({trace['footprint'] / 2**20:.0f} MiB), Zipf α {trace['alpha']}, "
      f"{trace['one_hit_share'] * 100:.0f} % of the requests to objects asked for once.\n")
    w(f"**Maximum response time: {ev.deadline} ms** at the edge (the edges' `deadline_ms`; "
      "shields get 90 % of it), plus 500 ms for a body to cross loopback: every scenario has "
      "the threshold `max<"
      f"{ev.deadline + 500}` on its image requests, faults included.\n")

    w("## Thresholds\n")
    w("| scenario | target | requests | p50 ms | p99 ms | max ms | thresholds |")
    w("|---|---|---:|---:|---:|---:|---|")
    for (scenario, target), run in ev.runs.items():
        summary = ev.summary(scenario, target)
        d = summary["metrics"]["http_req_duration"]
        failed = failed_thresholds(summary)
        verdict = "met" if not failed else "not met: " + "; ".join(failed)
        w(f"| {scenario} | {NAMES.get(target, target)} | {summary['metrics']['http_reqs']['count']} | "
          f"{fmt(d.get('med'), 2)} | {fmt(d.get('p(99)'), 2)} | {fmt(d.get('max'), 1)} | {verdict} |")
    w("")

    name, rows = hit_ratio_plot(ev)
    w("## Hit ratio and origin load (browse.js)\n")
    w("Each virtual user loads a page of 6 images from the trace, in the trace's order, then "
      "reads for about a second. Hit ratio is what the cache answered from its store (fresco and "
      "Varnish: `X-Cache: HIT`; Traffic Server: its coded `Via`); origin fetches are counted at "
      "the origin. fresco's users are spread over 2 edges, each holding what its own users asked "
      "for, with the shields behind them catching the rest, so its edge hit ratio is below a single "
      "cache's; origin fetches per request is the number that compares the tiers as a whole.\n")
    w(f"![hit ratio]({name})\n")
    w("| target | requests | edge hit ratio | origin fetches | origin fetches per request |")
    w("|---|---:|---:|---:|---:|")
    for target, ratio, requests, fetched in rows:
        w(f"| {NAMES.get(target, target)} | {requests} | {ratio:.3f} | {fmt(fetched, 0)} | "
          f"{fmt(fetched / max(1, requests), 3)} |")
    w("")
    w(f"![origin load]({origin_plot(ev)})\n")
    w("## Latency against the maximum response time\n")
    w(f"![browse latency]({latency_plot(ev, 'browse', 'image', 'browse.js: response time per second')})\n")

    w("## Thundering herd (herd.js)\n")
    w("Every round, hundreds of users ask every edge for one object nobody asked for before, at "
      "the same instant; the origin must see one fetch of it.\n")
    w("| target | requests | p99 ms | max ms | origin fetches per object (max) |")
    w("|---|---:|---:|---:|---:|")
    for target in ev.targets("herd"):
        summary = ev.summary("herd", target)
        d = summary["metrics"]["http_req_duration{name:herd}"] if "http_req_duration{name:herd}" in summary["metrics"] else None
        durations = ev.durations("herd", target, "herd")
        fetches = summary["metrics"].get("origin_fetches_per_object", {}).get("max")
        w(f"| {NAMES.get(target, target)} | {len(durations)} | {fmt(quantile(durations, 0.99), 1)} | "
          f"{fmt(max(durations) if durations else None, 1)} | {fmt(fetches, 0)} |")
        del d
    w("")

    if ("purge", "fresco") in ev.runs:
        swaps = swap_latencies(ev)
        name, answers = purge_plot(ev, swaps)
        summary = ev.summary("purge", "fresco")["metrics"]
        w("## Freshness (purge.js)\n")
        w("The origin writes a new version of an image and sends the signed webhook (HMAC from k6's "
          "crypto module); once purge-api answers 200, the version is recorded as answered. "
          "Readers ask for the highest answered version, then read the image from their edge: "
          "a lower version is a stale read.\n")
        w(f"- purges answered: {len(answers)}, p50 {fmt(quantile(answers, 0.5), 1)} ms, "
          f"p99 {fmt(quantile(answers, 0.99), 1)} ms, max {fmt(answers[-1] if answers else None, 1)} ms")
        w(f"- reads checked: {summary.get('fresh_reads', {}).get('count', 0) + summary.get('stale_reads', {}).get('count', 0)}, "
          f"stale: **{summary.get('stale_reads', {}).get('count', 0)}**")
        if swaps:
            a, t = swaps["from_answer"], swaps["from_sent"]
            w(f"- image swapped in a browser (`swap-bench`: headless Chromium shows the demo gallery "
              f"through edge-1 while the demo origin changes an image and purges it, {len(a)} times; "
              f"k6 has no EventSource): purge answered → swapped p50 {fmt(quantile(a, 0.5), 1)} ms, "
              f"p99 {fmt(quantile(a, 0.99), 1)} ms, max {fmt(a[-1], 1)} ms; webhook sent → swapped "
              f"p50 {fmt(quantile(t, 0.5), 1)} ms, p99 {fmt(quantile(t, 0.99), 1)} ms\n")
        else:
            w("- image swapped in a browser: not measured in this run (swap-bench failed or did "
              "not run; see swap.log)\n")
        w(f"![purge latency]({name})\n")

    if ("outage", "fresco") in ev.runs:
        w("## Failures (outage.js)\n")
        w("Steady load from the trace while `eval` kills the origin (`kill -9`, started again after "
          "the fault), kills shield-1 (`kill -9`, started again) and freezes purge-api (SIGSTOP, "
          "then SIGCONT). A fault's phase lasts until 5 s after it ends.\n")
        w(f"![outage]({outage_plot(ev)})\n")
        w("| phase | requests | errors | p99 ms | max ms |")
        w("|---|---:|---:|---:|---:|")
        for phase, (n, e, p99, mx) in sorted(outage_phases(ev).items()):
            w(f"| {phase} | {n} | {e} | {fmt(p99, 1)} | {fmt(mx, 1)} |")
        w("")

    name, rows = scaling_plot(ev)
    if name:
        w("## Scaling\n")
        w("`scale-bench --edges-only`: warm hits of 1, 2 and 4 edges, each confined to the same "
          "CPU share, so that the machine's two cores do not cap the sum.\n")
        w(f"![scaling]({name})\n")
        w("| edges | hits/s | of linear |")
        w("|---:|---:|---:|")
        for r in rows:
            w(f"| {r['n']} | {float(r['value']):.0f} | {float(r['ratio']):.2f} |")
        w("")

    with open(report, "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
