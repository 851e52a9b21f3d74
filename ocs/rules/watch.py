"""Noticing new rule versions: file changes (polled) and SIGHUP; and
writing an activated version into the directory.

`check` is cheap when nothing changed (a stat of each file); when something
did, it reads and compiles the files and returns the new RuleSet, or logs
one clear line for a version it refuses (once per version, not every poll).

The rules directory is the one source of truth, also for a version
activated through the API: the activation writes that version's files
into the directory (`write`), so the watch, a SIGHUP and the next start all
find the version in force there. `lock` keeps a poll from reading the
directory while an activation installs and writes it. An activation whose
write has not finished (`DATA/rules/activating`, see activation.py) keeps
the watch from reading the directory at all: each poll tries to finish
that write instead.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from . import activation
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
        self.data: Path | None = None   # the data directory, where an unfinished activation is marked
        self._warned: str | None = None

    def _stat(self):
        try:
            return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(self.dir.glob("*.toml")))
        except OSError:
            return None

    def check(self, forced: bool = False) -> RuleSet | None:
        """The rules now in the directory, if they are a new valid version.
        Never raises: whatever goes wrong refuses this look at the directory
        (logged), and the version in force keeps serving."""
        try:
            return self._check(forced)
        except Exception as e:
            return self._refuse(RuleError([f"{self.dir}: cannot be read: {type(e).__name__}: {e}"]), forced, e)

    def _check(self, forced: bool) -> RuleSet | None:
        with self.lock:
            if self.data is not None and activation.pending(self.data) is not None:
                if not self._finish_activation(forced):
                    return None
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

    def _finish_activation(self, forced: bool) -> bool:
        """An activation's marker stands (the caller holds `lock`, so no
        activation is under way): if its version is in force, write its
        files into the directory (a write that failed before, say on a full
        disk, is retried at every poll) and drop the marker. True if the
        directory may be read now."""
        version = activation.pending(self.data)
        if version == self.version:
            try:
                self.write(activation.kept_files(self.data, version))
                activation.end(self.data)
            except (OSError, RuleError) as e:
                self._warn_once(f"rules {self.dir}: version {version} is in force, but writing its files into "
                                f"the directory failed again: {e}; retried at the next poll", logging.ERROR)
                return False
            log.info("rules %s: the files of version %s, in force, are written into the directory now",
                     self.dir, version)
            self._warned = None
            return False            # the next poll reads what was written, the version in force
        # Not in force: an activation that gave up waiting (503) may still be
        # installed by the charging loop; until then the directory is not read.
        # A SIGHUP says the directory wins: the marker goes.
        if forced:
            log.warning("rules %s: SIGHUP: dropping the unfinished activation of version %s (not in force)",
                        self.dir, version)
            activation.end(self.data)
            return True
        self._warn_once(f"rules {self.dir}: an activation of version {version} is not finished "
                        f"({activation.marker_path(self.data)}) and that version is not in force: the directory "
                        "is not read until it is, a SIGHUP, or a restart")
        return False

    def _warn_once(self, message: str, level: int = logging.WARNING) -> None:
        if message != self._warned:
            self._warned = message
            log.log(level, "%s", message)

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
        self._written += 1          # also if it fails half-way: what a poll read before is stale
        self._seen = None
        activation.write_files(self.dir, files)

    def writable(self) -> str | None:
        """Why an activation could not be written into the directory, or None."""
        if not self.dir.is_dir():
            return f"the rules directory {self.dir} does not exist"
        if not os.access(self.dir, os.W_OK | os.X_OK):
            return f"the rules directory {self.dir} is not writable by the server"
        return None
