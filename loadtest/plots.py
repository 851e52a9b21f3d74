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


NINES = (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999)


def _nines(share: np.ndarray, top: float) -> np.ndarray:
    """-log10(1 - share): the tail spread out, 90% at 1, 99% at 2, ..."""
    with np.errstate(divide="ignore"):
        return np.minimum(-np.log10(np.maximum(1 - share, 0)), top)


def latency_cdf(reports: list[tuple[str, dict]], path: str) -> str:
    """The share of answers within each latency; the y axis in nines so the
    tail (p99, p99.9), which a linear axis squeezes into a line, is readable."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    top = 0.0
    for label, r in reports:
        buckets = np.array(r["histogram"], dtype=np.float64).reshape(-1, 2)
        if not len(buckets):
            continue
        total = buckets[:, 1].sum()
        top = max(top, np.log10(total) if total > 1 else 1.0)
        share = np.cumsum(buckets[:, 1]) / total
        lat = r["latency_ms"]
        ax.step(np.concatenate([[buckets[0, 0] / 1e6], buckets[:, 0] / 1e6]),
                _nines(np.concatenate([[0.0], share]), top), where="post",
                label=f"{label}: p50 {lat['p50']:.2f}, p99 {lat['p99']:.2f}, "
                      f"p99.9 {lat['p99.9']:.2f} ms")
    ticks = [q for q in NINES if -np.log10(1 - q) <= top + 1e-9] or [0.5]
    ax.set_yticks([-np.log10(1 - q) for q in ticks], [f"{q * 100:g}%" for q in ticks])
    ax.set_ylim(0, max(top, 1.0) * 1.02)
    ax.set_xscale("log")
    _plain_numbers(ax.xaxis)
    ax.set_xlabel("latency, ms (from when the request was due)")
    ax.set_ylabel("answers within (CDF)")
    ax.set_title("Latency CDF")
    ax.grid(True, which="major", color="0.9")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plain_numbers(axis) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def timeline(label: str, r: dict, path: str) -> str:
    plt = _pyplot()
    rows = [row for row in r["series"] if row.get("seconds", 1) > 0]
    start = np.array([row["t"] - row.get("seconds", 1) for row in rows])
    ends = start[-1:] + [rows[-1].get("seconds", 1)] if rows else []
    t = np.concatenate([start, ends])  # steps: each second holds its value

    def per_second(key):
        values = [row[key] / row.get("seconds", 1) for row in rows]
        return values + values[-1:]

    def held(key):
        values = [row[key] for row in rows]
        return values + values[-1:]

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6), dpi=100)
    top.step(t, per_second("answered"), where="post", label="answers/s", color="tab:blue")
    top.step(t, per_second("sent"), where="post", label="requests/s", color="tab:gray",
             lw=0.8, ls="--")
    top.set_ylabel("per second")
    top.set_ylim(bottom=0)
    gateways = top.twinx()
    gateways.step(t, held("connected"), where="post", color="tab:green", lw=0.8,
                  label="gateways connected")
    gateways.set_ylabel("gateways connected", color="tab:green")
    gateways.set_ylim(0, max(1, r["connections"]["gateways"]) * 1.1)
    lines = top.get_legend_handles_labels()
    more = gateways.get_legend_handles_labels()
    top.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    bottom.step(t, held("p99_ms"), where="post", label="p99", color="tab:red")
    bottom.step(t, held("p50_ms"), where="post", label="p50", color="tab:orange")
    bottom.set_yscale("log")
    _plain_numbers(bottom.yaxis)
    bottom.set_ylabel("latency in that second, ms")
    bottom.set_xlabel("seconds since traffic started (grey: warm-up and drain, not counted)")
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
    for row in rows:
        if row["phase"] != "measure":
            ax.axvspan(row["t"] - row.get("seconds", 1), row["t"], color="0.93", zorder=0,
                       lw=0)


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
