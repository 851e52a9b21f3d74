"""The dependency lock, `requirements.lock`: every package `make install`
puts into `.venv`, pinned with its hashes by pip-tools' `pip-compile` from
pyproject.toml: its dependencies, every extra (`tools` is pip itself) and
the build backend.
`make lock` remakes it; `make install` installs exactly it with the
machine's own pip, so pip's configured index, extra indexes and
certificates apply (uv would ignore them).

The lock's first line records a digest of the requirements it was made
from. This script, standard library only (it runs before `.venv` exists):

    python3 deploy/lock.py stamp       after pip-compile: write that line
    python3 deploy/lock.py check       exit 1, saying what to do, when
                                       pyproject.toml's requirements changed
                                       since the lock was made
    .venv/bin/python deploy/lock.py installed
                                       exit 1 unless .venv holds exactly the
                                       lock; else print what it holds, one line
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
STAMP = "# requirements-sha256: "
REMAKE = "make lock"
# the project itself, installed editable beside the lock
PROJECT = "ocs"


def requirements_digest(pyproject: Path = PYPROJECT) -> str:
    """A digest of what the lock is made from: requires-python, the build
    system's requirements, the dependencies and every extra."""
    project = tomllib.loads(pyproject.read_text())
    what = {
        "requires-python": project["project"].get("requires-python", ""),
        "build-system": sorted(project["build-system"]["requires"]),
        "dependencies": sorted(project["project"].get("dependencies", [])),
        "optional-dependencies": {k: sorted(v) for k, v in
                                  sorted(project["project"].get("optional-dependencies", {}).items())},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` line of a lock."""
    return {_normal(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", text, re.M)}


def stamp() -> int:
    text = LOCK.read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith(STAMP)]
    LOCK.write_text(STAMP + requirements_digest() + "\n" + "".join(lines))
    print(f"{LOCK.name}: {len(pins(text))} packages pinned")
    return 0


def check(lock: Path = LOCK, pyproject: Path = PYPROJECT) -> int:
    if not lock.exists():
        print(f"{LOCK.name} is missing; make it with `{REMAKE}`", file=sys.stderr)
        return 1
    first = lock.read_text().partition("\n")[0]
    if not first.startswith(STAMP):
        print(f"{LOCK.name} has no '{STAMP.strip()}' line: it was not made by `{REMAKE}`", file=sys.stderr)
        return 1
    if first.removeprefix(STAMP).strip() != requirements_digest(pyproject):
        print(f"pyproject.toml's requirements changed since {LOCK.name} was made:"
              f" run `{REMAKE}` and commit {LOCK.name}", file=sys.stderr)
        return 1
    return 0


def installed() -> int:
    """Compare the running environment with the lock, exactly."""
    from importlib import metadata
    want = pins(LOCK.read_text())
    have = {_normal(d.metadata["Name"]): d.version for d in metadata.distributions()}
    have.pop(PROJECT, None)
    wrong = sorted(f"{n} {have[n]} (locked {v})" for n, v in want.items() if n in have and have[n] != v)
    missing = sorted(n for n in want if n not in have)
    extra = sorted(f"{n} {v}" for n, v in have.items() if n not in want)
    if wrong or missing or extra:
        for label, items in (("not the locked version", wrong), ("locked, not installed", missing),
                             ("installed, not locked", extra)):
            if items:
                print(f"{label}: {', '.join(items)}", file=sys.stderr)
        return 1
    direct = [_normal(re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0])
              for r in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]
    v = sys.version_info
    print(f"installed {len(want)} packages from {LOCK.name} into {Path(sys.prefix).name} (Python {v.major}.{v.minor}."
          f"{v.micro}): " + ", ".join(f"{n} {want[n]}" for n in direct) + f", and {len(want) - len(direct)} more")
    return 0


def main(argv: list[str]) -> int:
    commands = {"stamp": stamp, "check": check, "installed": installed}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
