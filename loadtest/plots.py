"""PNG plots of load-test reports (matplotlib, the `bench` extra).

    python -m loadtest.plots REPORT.json [REPORT.json ...] --out PREFIX

Two figures: PREFIX-latency.png, the latency CDF of every report given
(one line per server, on a log time axis, percentiles marked), and, for a
single report, PREFIX-timeline.png: answers and requests per second, p50
and p99 per second, and connected gateways, over the whole run with the
warm-up and drain shaded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _as_dict(report) -> dict:
    if isinstance(report, dict):
        return report
    import json
    return json.loads(report.to_json())


def latency_cdf(reports: list[tuple[str, dict]], path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for label, r in reports:
        buckets = np.array(r["histogram"], dtype=np.float64).reshape(-1, 2)
        if not len(buckets):
            continue
        ms = buckets[:, 0] / 1e6
        share = np.cumsum(buckets[:, 1]) / buckets[:, 1].sum()
        lat = r["latency_ms"]
        ax.step(ms, share, where="post",
                label=f"{label}: p50 {lat['p50']:.2f} / p99 {lat['p99']:.2f} ms")
    for q in (0.5, 0.9, 0.99, 0.999):
        ax.axhline(q, color="0.85", lw=0.8, zorder=0)
        ax.text(1.0, q, f" p{q * 100:g}", transform=ax.get_yaxis_transform(),
                va="center", fontsize=8, color="0.4")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (from when the request was due)")
    ax.set_ylabel("share of answers")
    ax.set_ylim(0, 1.01)
    ax.set_title("Latency CDF")
    ax.grid(True, which="major", axis="x", color="0.9")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def timeline(label: str, r: dict, path: str) -> str:
    plt = _pyplot()
    rows = r["series"]
    t = np.array([row["t"] for row in rows])
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6), dpi=100)
    top.plot(t, [row["answered"] for row in rows], label="answers/s", color="tab:blue")
    top.plot(t, [row["sent"] for row in rows], label="requests/s", color="tab:gray", lw=0.8,
             ls="--")
    top.set_ylabel("per second")
    top.set_ylim(bottom=0)
    gateways = top.twinx()
    gateways.step(t, [row["connected"] for row in rows], where="pre", color="tab:green",
                  lw=0.8, label="gateways connected")
    gateways.set_ylabel("gateways connected", color="tab:green")
    gateways.set_ylim(0, max(1, r["connections"]["gateways"]) * 1.1)
    lines = top.get_legend_handles_labels()
    more = gateways.get_legend_handles_labels()
    top.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    bottom.plot(t, [row["p99_ms"] for row in rows], label="p99", color="tab:red")
    bottom.plot(t, [row["p50_ms"] for row in rows], label="p50", color="tab:orange")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency per second, ms")
    bottom.set_xlabel("seconds since traffic started")
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, bottom):
        _shade_phases(ax, rows)
        ax.grid(True, color="0.92")
    top.set_title(f"{label}: throughput and latency over time")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _shade_phases(ax, rows) -> None:
    """Grey where the figures do not count: the warm-up and the drain."""
    previous = 0.0
    for row in rows:
        if row["phase"] != "measure":
            ax.axvspan(previous, row["t"], color="0.93", zorder=0, lw=0)
        previous = row["t"]


def write(report, prefix: str, label: str | None = None) -> list[str]:
    r = _as_dict(report)
    label = label or r["scenario"]["name"]
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    return [latency_cdf([(label, r)], f"{prefix}-latency.png"),
            timeline(label, r, f"{prefix}-timeline.png")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.plots",
                                description="Plot JSON reports of python -m loadtest")
    p.add_argument("reports", nargs="+", help="LABEL=FILE or FILE")
    p.add_argument("--out", required=True, help="PREFIX of the PNG files")
    a = p.parse_args(argv)
    from .report import load
    loaded = []
    for item in a.reports:
        label, eq, path = item.partition("=")
        loaded.append((label, load(path)) if eq else (Path(item).stem, load(item)))
    if len(loaded) == 1:
        written = write(loaded[0][1], a.out, loaded[0][0])
    else:
        written = [latency_cdf(loaded, f"{a.out}-latency.png")]
    print("\n".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
