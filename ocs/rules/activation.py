"""An activation that a crash interrupts is completed at the next start.

An activation through the API (`POST /v1/rules/versions/V/activate`, a
rollback) installs a version, journaled, and then writes its files into the
rules directory, which the directory watch and the next start read. The two
are not one atomic step: a crash after the install but before the write
would bring the next start up on the directory's old version (undoing the
activation without a word), and a crash in the middle of the write would
leave the directory a mix of both versions. So an activation is bracketed
by a marker in the data directory, `DATA/rules/activating`, holding the
version:

1. the marker is written (durable) before the install is asked for;
2. the version is installed (journaled);
3. its files are written into the rules directory;
4. the marker is removed (durable).

A marker at start means step 3 may not have finished. If the journal
installed the marker's version, its files are written again from the copy
the data directory keeps (`DATA/rules/VERSION`), then the marker goes; if
it did not, the activation never took effect (no 200 was answered), the
directory was not touched, and only the marker goes. While a marker stands
in a running server, the directory watch does not read the directory (it
may be half-written): it completes the write instead (`RulesWatch.check`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..durable import fsync_path
from .compile import RuleError, read_rule_files
from .versions import version_dir

log = logging.getLogger("ocs.rules")
MARKER = "activating"


def marker_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "rules" / MARKER


def begin(data_dir: str | Path, version: str) -> None:
    """Step 1: the marker names `version`, durably, before anything else."""
    path = marker_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{MARKER}.tmp")
    with open(tmp, "w") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def pending(data_dir: str | Path) -> str | None:
    """The version of an activation begun and not finished, or None."""
    try:
        return marker_path(data_dir).read_text().strip()
    except FileNotFoundError:
        return None


def end(data_dir: str | Path) -> None:
    """Step 4: the marker goes, durably."""
    path = marker_path(data_dir)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_path(path.parent)


def write_files(directory: str | Path, files: dict[str, bytes]) -> None:
    """Make the directory's rule files exactly `files`: each replaced by
    rename, durable before the old ones go. Files other than *.toml are
    left alone."""
    directory = Path(directory)
    for name, text in files.items():
        tmp = directory / f".{name}.tmp"       # not *.toml: a poll never reads it
        with open(tmp, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    for path in directory.glob("*.toml"):
        if path.name not in files:
            path.unlink()
    fsync_path(directory)


def kept_files(data_dir: str | Path, version: str) -> dict[str, bytes]:
    """The files of a kept version, as they were compiled."""
    path = version_dir(data_dir, version)
    if not path.is_dir():
        raise RuleError([f"{path}: rules version {version} is not kept in the data directory"])
    return read_rule_files(path)


def complete(data_dir: str | Path, directory: str | Path, installed: str | None) -> str | None:
    """At start, after the journal is replayed (`installed`: the version it
    left in force): finish an activation a crash interrupted. Returns the
    version written into `directory`, or None. Raises RuleError when the
    write cannot be finished (the server must not start on the directory's
    old version as if nothing had been activated)."""
    version = pending(data_dir)
    if version is None:
        return None
    marker = marker_path(data_dir)
    if version != installed:
        log.warning("%s: the activation of rules version %s was interrupted before it was installed: it did not "
                    "take effect, and the rules directory %s was not changed", marker, version, directory)
        end(data_dir)
        return None
    try:
        files = kept_files(data_dir, version)
    except RuleError as e:
        raise RuleError([f"{marker}: cannot complete the activation of rules version {version}: "
                         + "; ".join(e.errors)]) from None
    log.warning("%s: the activation of rules version %s was interrupted by a crash before its files were "
                "written into %s: writing them now", marker, version, directory)
    try:
        write_files(directory, files)
        end(data_dir)
    except OSError as e:
        raise RuleError([f"{marker}: cannot complete the activation of rules version {version}: "
                         f"writing {directory}: {e}"]) from None
    return version


