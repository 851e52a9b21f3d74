"""requirements.lock (deploy/lock.py): made by pip-compile from
pyproject.toml, installed exactly by `make install`. The lock must be
current for pyproject.toml's requirements, pin every one of them inside its
range with hashes, and be exactly what this environment holds; a changed
requirement without a new lock is refused with a message saying what to do."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import lock  # noqa: E402


def test_the_lock_is_current_for_pyproject():
    assert lock.check() == 0, "requirements.lock is stale: run `make lock`"


def test_every_requirement_is_pinned_in_its_range_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = project["build-system"]["requires"] + project["project"]["dependencies"]
    reqs += [r for extra in project["project"]["optional-dependencies"].values() for r in extra]
    text = lock.LOCK.read_text()
    pins = lock.pins(text)
    for r in map(Requirement, reqs):
        name = re.sub(r"[-_.]+", "-", r.name).lower()
        assert name in pins, f"{r.name} is not in requirements.lock"
        assert r.specifier.contains(pins[name], prereleases=True), f"{r} but the lock pins {pins[name]}"
    # every pin carries at least one hash: pip installs it with --require-hashes
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
    pinned = [b for b in blocks if "==" in b.partition("\n")[0]]
    assert len(pinned) == len(pins)
    assert all("--hash=sha256:" in b for b in pinned)


def test_this_environment_is_exactly_the_lock():
    out = subprocess.run([sys.executable, str(ROOT / "deploy" / "lock.py"), "installed"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"installed {len(lock.pins(lock.LOCK.read_text()))} packages from requirements.lock")


def test_a_requirement_changed_without_a_new_lock_is_refused(tmp_path, capsys):
    changed = tmp_path / "pyproject.toml"
    changed.write_text((ROOT / "pyproject.toml").read_text().replace('"trio>=0.25"', '"trio>=0.26"'))
    assert changed.read_text() != (ROOT / "pyproject.toml").read_text()
    assert lock.check(pyproject=changed) == 1
    assert "run `make lock` and commit requirements.lock" in capsys.readouterr().err
    # a change that is not a requirement (the version, the description) needs no new lock
    other = tmp_path / "other.toml"
    other.write_text((ROOT / "pyproject.toml").read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    assert lock.check(pyproject=other) == 0
    unstamped = tmp_path / "requirements.lock"
    unstamped.write_text(lock.LOCK.read_text().split("\n", 1)[1])
    assert lock.check(lock=unstamped) == 1
    assert "was not made by `make lock`" in capsys.readouterr().err
