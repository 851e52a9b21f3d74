"""Which rules version was installed when, and which one it replaced:
`DATA/rules/installed.jsonl`, one line per installation (at start, on a
reload, on an API activation).

The journal is the durable record of installations, but a snapshot retires
it; this file keeps the history for operators (`GET /v1/rules/versions`)
and for a rollback to the version in force before. An installation whose
line a crash lost is still in the journal and in the kept versions.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("ocs.rules")


class InstallHistory:
    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / "rules" / "installed.jsonl"

    def record(self, version: str, was: str | None, now: float) -> None:
        when = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps({"version": version, "was": was, "time": when}) + "\n")
        except OSError as e:        # history is for people; charging goes on without it
            log.error("%s: cannot record the installation of %s: %s", self.path, version, e)

    def entries(self) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue            # a line cut by a crash
        return out

    def previous(self, active: str) -> str | None:
        """The version in force before `active` was last installed."""
        for e in reversed(self.entries()):
            if e.get("version") == active:
                return e.get("was")
        return None
