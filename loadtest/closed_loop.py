"""The closed loop under its first command line, kept for older docs.

    python -m loadtest.closed_loop --target 127.0.0.1:3868 --window 64 \
        --duration 10 --warmup 2 [--relaxed] [--json FILE]

is `python -m loadtest --scenario closed` with the same flags; that command
(docs/loadtest.md) does everything this did and more.
"""
from __future__ import annotations

import argparse
import sys

from . import __main__ as cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.closed_loop",
                                description="Closed-loop Diameter Gy load generator "
                                            "(python -m loadtest --scenario closed)")
    p.add_argument("--target", default="127.0.0.1:3868", help="HOST:PORT")
    p.add_argument("--window", default="64", help="requests in flight")
    p.add_argument("--duration", default="10", help="measured seconds")
    p.add_argument("--warmup", default="2", help="seconds not measured")
    p.add_argument("--origin-host", help="Origin-Host")
    p.add_argument("--origin-realm")
    p.add_argument("--destination-realm")
    p.add_argument("--msisdns", help="FIRST-LAST subscriber range")
    p.add_argument("--updates", help="CCR-Updates per session")
    p.add_argument("--use-percent", help="share of each grant reported as used (0-100)")
    p.add_argument("--rating-group", help="the sessions' rating group")
    p.add_argument("--timeout", help="seconds before an unanswered request is a timeout")
    p.add_argument("--expect-results", help="Result-Codes that are not check failures")
    p.add_argument("--relaxed", action="store_true",
                   help="match answers by hop-by-hop id only (for the echo server)")
    p.add_argument("--json", help="also write the report to this file")
    a = p.parse_args(argv)
    args = ["--scenario", "closed", "--no-progress"]
    for name in ("target", "window", "duration", "warmup", "origin_host", "origin_realm",
                 "destination_realm", "msisdns", "updates", "use_percent", "timeout",
                 "expect_results", "json"):
        value = getattr(a, name)
        if value is not None:
            args += ["--" + name.replace("_", "-"), value]
    if a.rating_group:
        args += ["--rating-groups", a.rating_group]
    if a.relaxed:
        args.append("--relaxed")
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
