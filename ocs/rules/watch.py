"""Noticing new rule versions: file changes (polled) and SIGHUP.

`check` is cheap when nothing changed (a stat of each file); when something
did, it reads and compiles the files and returns the new RuleSet, or logs
one clear line for a version it refuses (once per version, not every poll).
"""
from __future__ import annotations

import logging
from pathlib import Path

from .compile import RuleError, RuleSet, load_rules, read_rule_files

log = logging.getLogger("ocs.rules")


class RulesWatch:
    def __init__(self, directory: str | Path, version: str):
        self.dir = Path(directory)
        self.version = version
        self._seen = self._stat()
        self._refused: set[str] = set()

    def _stat(self):
        try:
            return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(self.dir.glob("*.toml")))
        except OSError:
            return None

    def check(self, forced: bool = False) -> RuleSet | None:
        """The rules now in the directory, if they are a new valid version."""
        seen = self._stat()
        if not forced and seen == self._seen:
            return None
        self._seen = seen
        try:
            files = read_rule_files(self.dir)
            rules = load_rules(self.dir, files)
        except RuleError as e:
            key = "\n".join(e.errors)
            if forced or key not in self._refused:
                self._refused.add(key)
                log.error("rules %s refused, version %s keeps serving:\n  %s", self.dir, self.version,
                          "\n  ".join(e.errors))
            return None
        if rules.version == self.version:
            return None
        return rules

    def installed(self, version: str) -> None:
        self.version = version
