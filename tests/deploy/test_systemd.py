"""deploy/ocs.service: systemd accepts it, and it runs the server the way
the server expects to be run.

`systemd-analyze verify` works here without systemd as PID 1: it parses the
unit with systemd's own loader (unknown keys, unparsable values, relative
or missing executables). It also insists that ExecStart's program exists,
so the test verifies a copy whose /opt/ocs/bin/ocs (the documented install
location) is replaced by this checkout's `ocs`; everything else is verified
as shipped. What no test here can do is start the unit under systemd and
its sandbox (no systemd as PID 1 in this container)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ocs.config import load_config
from tests.support.debian import program

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "ocs.service"
INSTALLED_OCS = "/opt/ocs/bin/ocs"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit file line: {line!r}"
        current.setdefault(key, []).append(value)
    return sections


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|ms)?", value)
    assert m, f"not a plain systemd time span: {value!r}"
    return float(m.group(1)) * {None: 1, "s": 1, "min": 60, "ms": 0.001}[m.group(2)]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = program("systemd-analyze", "systemd")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_OCS} " in text, "the unit should run the documented install location"
    ocs = Path(sys.executable).with_name("ocs")
    assert ocs.exists(), f"{ocs}: the checkout's ocs command (make install)"
    unit = tmp_path / "ocs.service"
    unit.write_text(text.replace(INSTALLED_OCS, str(ocs)))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    said = (out.stdout + out.stderr).strip()
    # a bad value or an unknown key is only a warning (exit 0): any output fails
    assert out.returncode == 0 and not said, f"systemd-analyze verify (exit {out.returncode}):\n{said}"


def test_the_unit_runs_the_server_as_the_server_expects():
    unit = parse_unit(UNIT.read_text())
    svc = unit["Service"]
    one = lambda key: (svc.get(key) or [None])[-1]
    cfg = load_config(DEPLOY / "ocs.toml")

    assert one("ExecStart") == f"{INSTALLED_OCS} serve --config /etc/ocs/ocs.toml"
    assert one("User") == "ocs" and one("Group") == "ocs", "a dedicated user, not root"
    assert one("Restart") == "on-failure"
    # SIGHUP installs the new rules version (ocs/net/server.py _rules_reload)
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    # SIGTERM is the graceful shutdown (DPR, drain, snapshot); systemd must
    # wait longer than the server's own grace before it sends SIGKILL
    assert one("KillSignal") == "SIGTERM"
    assert seconds(one("TimeoutStopSec")) >= cfg.shutdown_grace + 30, \
        f"TimeoutStopSec={one('TimeoutStopSec')} leaves no room for shutdown_grace={cfg.shutdown_grace} and a snapshot"
    assert int(one("LimitNOFILE")) >= 65536
    # the directories systemd creates and leaves writable are the ones the configuration uses
    assert f"/var/lib/{one('StateDirectory')}" == cfg.data
    assert f"/etc/{one('ConfigurationDirectory')}" == str(Path(cfg.rules).parent)
    # ProtectSystem=strict makes /etc read-only; an API activation or rollback
    # writes the rules directory (409 "not writable" otherwise)
    assert cfg.rules in svc.get("ReadWritePaths", []), "the rules directory must be writable: ReadWritePaths"
    assert Path(cfg.notifications).parent == Path(cfg.data)
    assert any(e.startswith(f"NUMBA_CACHE_DIR=/var/cache/{one('CacheDirectory')}/") for e in svc["Environment"])
    assert one("EnvironmentFile") == "-/etc/ocs/ocs.env", "where OCS_API_TOKENS is kept (deploy/ocs.toml says so)"
    # hardening that the server survives; numba's JIT needs executable mappings
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": ""}.items():
        assert one(key) == value, f"{key}={one(key)!r}, expected {value!r}"
    assert "MemoryDenyWriteExecute" not in svc, "numba's LLVM JIT maps code executable: it would not start"
    assert "ProcSubset" not in svc, "prometheus-client's process metrics read /proc/stat"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
