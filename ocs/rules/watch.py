"""Noticing new rule versions: file changes (polled) and SIGHUP; and
writing an activated version into the directory.

`check` is cheap when nothing changed (a stat of each file); when something
did, it reads and compiles the files and returns the new RuleSet, or logs
one clear line for a version it refuses (once per version, not every poll).

The rules directory is the one source of truth, also for a version
activated through the API: the activation writes that version's files
into the directory (`write`), so the watch, a SIGHUP and the next start all
find the version in force there. `lock` keeps a poll from reading the
directory while an activation installs and writes it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from .compile import RuleError, RuleSet, load_rules, read_rule_files

log = logging.getLogger("ocs.rules")


class RulesWatch:
    def __init__(self, directory: str | Path, version: str):
        self.dir = Path(directory)
        self.version = version
        self.lock = threading.Lock()    # held to read the directory, and by an activation throughout
        self._written = 0               # activations written; a read from before one is stale
        self._seen = self._stat()
        self._refused: set[str] = set()
        self.history = None             # an InstallHistory: every installation is recorded there

    def _stat(self):
        try:
            return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(self.dir.glob("*.toml")))
        except OSError:
            return None

    def check(self, forced: bool = False) -> RuleSet | None:
        """The rules now in the directory, if they are a new valid version."""
        with self.lock:
            seen = self._stat()
            if not forced and seen == self._seen:
                return None
            self._seen = seen
            written = self._written
            try:
                files = read_rule_files(self.dir)
            except RuleError as e:
                return self._refuse(e, forced)
        try:
            rules = load_rules(self.dir, files)
        except RuleError as e:
            return self._refuse(e, forced)
        except Exception as e:     # a bug the files provoke: refused like an invalid version, never fatal
            return self._refuse(RuleError([f"{self.dir}: cannot be compiled: {type(e).__name__}: {e}"]), forced, e)
        with self.lock:
            if self._written != written:
                return None     # an activation rewrote the directory meanwhile: what was read is gone
        if rules.version == self.version:
            return None
        return rules

    def _refuse(self, e: RuleError, forced: bool, cause: BaseException | None = None) -> None:
        key = "\n".join(e.errors)
        if forced or key not in self._refused:
            self._refused.add(key)
            log.error("rules %s refused, version %s keeps serving:\n  %s", self.dir, self.version,
                      "\n  ".join(e.errors), exc_info=cause)
        return None

    def installed(self, version: str) -> None:
        """`version` is in force now (called for every reload and activation)."""
        if self.history is not None and version != self.version:
            self.history.record(version, self.version, time.time())
        self.version = version

    def write(self, files: dict[str, bytes]) -> None:
        """Make the directory's rule files exactly `files` (the caller holds
        `lock`): each file replaced by rename, durable before the old ones
        go. Files other than *.toml are left alone. The next poll reads the
        directory again, so if a reload of the old files slipped in between,
        the directory's version comes back within one poll."""
        for name, text in files.items():
            tmp = self.dir / f".{name}.tmp"       # not *.toml: a poll never reads it
            with open(tmp, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / name)
        for path in self.dir.glob("*.toml"):
            if path.name not in files:
                path.unlink()
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._written += 1
        self._seen = None

    def writable(self) -> str | None:
        """Why an activation could not be written into the directory, or None."""
        if not self.dir.is_dir():
            return f"the rules directory {self.dir} does not exist"
        if not os.access(self.dir, os.W_OK | os.X_OK):
            return f"the rules directory {self.dir} is not writable by the server"
        return None
