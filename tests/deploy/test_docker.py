"""deploy/Dockerfile and .dockerignore.

No image is built here: this container has the docker client but no daemon
(`docker info`: "Cannot connect to the Docker daemon"), and CI runs in the
same kind of container. So the test checks what a build depends on: every
file the Dockerfile COPYs exists and is sent in the build context (not
excluded by .dockerignore); the files it copies are enough to run `ocs`
from them alone; and the image agrees with deploy/ocs.toml, the
configuration it runs (ports, data volume, rules, health check), as a
non-root user."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ocs.config import load_config, split_hostport

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            word, _, args = pending.partition(" ")
            out.append((word.upper(), args.strip()))
            pending = ""
    return out


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    out = []
    for word, args in instructions():
        if word == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--chown=")]
            assert not any(p.startswith("--") for p in parts), "no multi-stage copies or other flags expected"
            out.append((parts[:-1], parts[-1]))
    return out


def _pattern(p: str) -> re.Pattern:
    rx = ""
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            rx, i = rx + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            rx, i = rx + ".*", i + 2
        elif p[i] == "*":
            rx, i = rx + "[^/]*", i + 1
        elif p[i] == "?":
            rx, i = rx + "[^/]", i + 1
        else:
            rx, i = rx + re.escape(p[i]), i + 1
    return re.compile(rx + r"\Z")


def sent_in_context(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one
    of its parent directories decides; `!` re-includes."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = Path(path).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    sent = True
    for p in patterns:
        negate = p.startswith("!")
        rx = _pattern(p.lstrip("!").strip("/"))
        if any(rx.match(c) for c in candidates):
            sent = negate
    return sent


def test_every_copied_file_exists_and_is_in_the_build_context():
    cps = copies()
    assert cps
    for sources, _ in cps:
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
            files = [src] if (ROOT / src).is_file() else \
                [str(f.relative_to(ROOT)) for f in (ROOT / src).rglob("*") if f.is_file()
                 and "__pycache__" not in f.parts]
            left_out = [f for f in files if not sent_in_context(f)]
            assert not left_out, f"COPY {src}: .dockerignore keeps these out of the context: {left_out[:5]}"
    # and the context is small: no data, venv, tests or git history
    for path in (".venv/bin/python", "data/journal.log", ".git/HEAD", "tests/test_boundaries.py",
                 "ocs/__pycache__/cli.cpython-311.pyc", "rules/demo/__pycache__/x.pyc", "rules/other/plans.toml"):
        assert not sent_in_context(path), f"{path} would be sent to the docker daemon"


def test_the_image_runs_the_example_configuration_as_non_root():
    steps = instructions()
    one = lambda word: [a for w, a in steps if w == word]
    assert one("FROM") == ["python:3.11-slim-bookworm"]
    assert one("USER") and one("USER")[-1] not in ("root", "0"), "runs as a non-root user"
    cmd = shlex.split(one("CMD")[-1].strip("[]").replace(",", " "))
    assert cmd[:3] == ["ocs", "serve", "--config"], cmd
    destinations = {tuple(src): dst for src, dst in copies()}
    assert destinations[("deploy/ocs.toml",)] == cmd[3], "the configuration CMD reads is the one copied in"
    cfg = load_config(ROOT / "deploy" / "ocs.toml")
    assert destinations[("rules/demo",)] == cfg.rules, "the configuration's rules directory is filled"
    # an API activation writes the rules directory (409 "not writable" otherwise)
    user = one("USER")[-1]
    assert f"COPY --chown={user}:{user} rules/demo {cfg.rules}" in [f"COPY {a}" for a in one("COPY")], \
        "the rules directory belongs to the user the server runs as"
    exposed = {int(p) for a in one("EXPOSE") for p in a.split()}
    ports = {split_hostport(a)[1] for a in (cfg.listen, cfg.api, cfg.metrics)}
    assert ports <= exposed and 3868 in exposed, f"EXPOSE {exposed}, the configuration listens on {ports}"
    assert cfg.data in shlex.split(one("VOLUME")[-1].strip("[]").replace(",", " ")), "the data is a volume"
    health = one("HEALTHCHECK")[-1]
    assert f"127.0.0.1:{split_hostport(cfg.metrics)[1]}/metrics" in health, health
    assert one("STOPSIGNAL") == ["SIGTERM"]


def test_the_copied_files_alone_run_ocs(tmp_path):
    """A context holding only what the Dockerfile copies: `ocs rules check`
    runs from it (its own ocs package, not this checkout's) and accepts the
    rules the image ships."""
    ctx = tmp_path / "context"
    for sources, _ in copies():
        for src in sources:
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, ctx / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                (ctx / src).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / src, ctx / src)
    code = ("import sys, ocs.cli; print(ocs.cli.__file__); "
            "sys.exit(ocs.cli.main(['rules', 'check', 'rules/demo']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ctx, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    first, rest = out.stdout.split("\n", 1)
    assert Path(first).is_relative_to(ctx), f"ran {first}, not the copied package"
    assert "OK, version" in rest, rest
