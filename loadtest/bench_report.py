"""docs/benchmarks.md from the reports of `python -m loadtest.bench`, with plots."""
from __future__ import annotations

from pathlib import Path

from . import plots
from .report import Report


def _report(data: dict) -> Report:
    return Report(**{k: v for k, v in data.items() if k != "passed"})


def _slug(label: str) -> str:
    return label.split()[0].lower().replace("-", "")


def _ms(r: dict, key: str, which: str = "latency_ms") -> str:
    value = r[which][key]
    return "-" if value is None else f"{value:.3f}"


def _verdict(r: dict) -> str:
    return "pass" if r["passed"] else f"**fail** ({r['errors']:,} errors)"


def _closed(results: dict) -> list[str]:
    lines = ["| server | window | answers/s | p50 ms | p99 ms | p99.9 ms | errors "
             "| generator CPU |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, runs in results.items():
        for window, r in runs["closed"]:
            if "failed" in r:
                lines.append(f"| {label} | {window} | failed: {r['failed']} | | | | | |")
                continue
            lines.append(f"| {label} | {window} | {r['answered_per_s']:,.0f} | {_ms(r, 'p50')} "
                         f"| {_ms(r, 'p99')} | {_ms(r, 'p99.9')} | {r['errors']:,} "
                         f"| {r['generator_cpu_percent']:.0f}% |")
    return lines


def _knee(r: dict) -> str:
    """Where p99 leaves its floor: the most answers in a second whose p99
    stayed within twice the run's lowest per-second p99, with no error."""
    rows = [row for row in r["series"] if row["phase"] == "measure" and row["answered"]]
    if not rows:
        return "No measured second had an answer."
    floor = min(row["p99_ms"] for row in rows)
    calm = [row["answered"] for row in rows if row["p99_ms"] <= 2 * floor and not row["errors"]]
    top = max(row["answered"] for row in rows)
    return (f"p99 floor {floor:.2f} ms; the most answers in one second with p99 within "
            f"twice that and no error: **{max(calm, default=0):,}**; the most in any "
            f"second: {top:,}. The ramp may go on past what the server can answer: then "
            "requests that wait longer than the timeout count as timeouts and fail the "
            "run, as they should.")


def render(results: dict, args, notes: list[str], plot_dir: Path) -> str:
    plot_dir.mkdir(parents=True, exist_ok=True)
    rel = Path(plot_dir.name)
    pinning = ("each pinned to its own core" if args.pinned
               else "placed by the scheduler (not pinned)")
    lines = [
        "# Benchmarks", "",
        f"Generated {args.started:%Y-%m-%d %H:%M %Z} by", "",
        "    " + " ".join(args.command), "",
        f"Machine: {args.machine}. Server and load generator are separate processes, "
        f"{pinning}. Source: `{args.source}`.", "",
        "Every figure is from `python -m loadtest` (docs/loadtest.md). A run passes when "
        "every answer passed its checks (Session-Id, CC-Request-Number, Result-Code, one "
        "MSCC per rating group asked for, no grant beyond the request or the plan) and "
        "none timed out; the echo server is only matched by hop-by-hop id (relaxed). "
        "Latency runs from when a request was due (open loop: its scheduled time), so "
        "queueing in the generator counts; \"wire\" latency from when it was sent.", "",
        "## Closed loop, one connection", "",
        f"Scenario `closed`: W requests in flight, {args.warmup:g} s warm-up, "
        f"{args.duration:g} s measured; sessions CCR-I, 3 CCR-U, CCR-T over MSISDNs "
        "8613900000000-8613900099999, one rating group.", "",
        *_closed(results), "",
    ]
    steady = {label: runs["steady"] for label, runs in results.items()
              if "steady" in runs and "failed" not in runs["steady"]}
    if steady:
        lines += [
            f"## Open loop at {args.steady_rate:,} CCR/s: the `steady` scenario", "",
            f"4 gateways offer {args.steady_rate:,} CCR/s between them whatever the server "
            "does; sessions draw a profile (browsing 60%: 1-2 rating groups, 1-4 updates; "
            "streaming 30%: 4-12 updates using 90-100% of each grant; idle 10%), request "
            "10 MB per rating group, and no subscriber may hold and use more than the "
            "demo plan allows. The same offered load for every server, so the latency "
            "curves compare.", "",
            "| server | answers/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
            "| wire p99 ms | verdict |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for label, r in steady.items():
            lines.append(f"| {label} | {r['answered_per_s']:,.0f} | {_ms(r, 'p50')} "
                         f"| {_ms(r, 'p90')} | {_ms(r, 'p99')} | {_ms(r, 'p99.9')} "
                         f"| {_ms(r, 'max')} | {_ms(r, 'p99', 'wire_latency_ms')} "
                         f"| {_verdict(r)} |")
        cdf = plots.latency_cdf(list(steady.items()), str(plot_dir / "steady-latency.png"))
        lines += ["", f"![latency CDF, steady]({rel / Path(cdf).name})", ""]
        for label, r in steady.items():
            png = plots.timeline(label, r, str(plot_dir / f"steady-{_slug(label)}-timeline.png"))
            lines += [f"### {label}", "", f"![{label} timeline]({rel / Path(png).name})", "",
                      "```", _report(r).summary(), "```", ""]
    for label, runs in results.items():
        r = runs.get("ramp")
        if r and "failed" not in r:
            png = plots.timeline(label, r, str(plot_dir / f"ramp-{_slug(label)}-timeline.png"))
            lines += [f"## Ramp on {label}: the `ramp` scenario", "",
                      "4 gateways, offered load rising linearly from 1,000 to 60,000 CCR/s "
                      "over 60 s: where answers/s stop following requests/s is the "
                      "saturation point, where p99 leaves its floor the knee.", "",
                      _knee(r), "", f"![ramp]({rel / Path(png).name})", "",
                      "```", _report(r).summary(), "```", ""]
        r = runs.get("capacity")
        if r and "failed" not in r:
            lines += ["## The generator's own ceiling: the `capacity` scenario", "",
                      "Against the echo server, which sends every request back as its "
                      "answer; answers matched by hop-by-hop id only. The generator runs "
                      "on one core.", "", "```", _report(r).summary(), "```", ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)
