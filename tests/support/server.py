"""Run `ocs serve` as a real process, the way an operator does."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_RULES = ROOT / "rules" / "demo"
_LISTENING = re.compile(r"ocs.net: listening on 127\.0\.0\.1:(\d+)")
_API = re.compile(r"api listening on (http://[0-9.]+:\d+)")


class OcsProcess:
    def __init__(self, data: Path, rules: Path = DEMO_RULES, config: Path | None = None,
                 extra: list[str] | None = None, log: Path | None = None, fake_time: str | None = None,
                 env: dict | None = None):
        self.data = Path(data)
        self.rules = Path(rules)
        self.config = config
        self.extra = extra or []
        self.log = log or self.data.with_name(self.data.name + ".log")
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.api: str | None = None        # http://HOST:PORT when started with --api
        self.fake_time = fake_time         # "YYYY-MM-DD HH:MM:SS" UTC: the server's clock starts there (faketime)
        self.env = env or {}

    def start(self, timeout: float = 60) -> "OcsProcess":
        args = [sys.executable, "-m", "ocs.cli", "serve", "--listen", "127.0.0.1:0",
                "--data", str(self.data), "--rules", str(self.rules)] + self.extra
        if self.config:
            args += ["--config", str(self.config)]
        env = dict(os.environ, **self.env)
        if self.fake_time:
            # libfaketime preloaded into the server itself (not the `faketime`
            # wrapper, which would stand between the test and the server's pid)
            libs = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
            if not libs:
                raise RuntimeError("libfaketime is not installed (Debian package faketime; `make install`)")
            env.update(LD_PRELOAD=str(libs[0]), FAKETIME=f"@{self.fake_time}", TZ="UTC")
        self._log_file = open(self.log, "ab")
        start_offset = self.log.stat().st_size
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[start_offset:].decode(errors="replace")
            m = _LISTENING.search(text)
            if m:
                self.port = int(m.group(1))
                api = _API.search(text)
                self.api = api.group(1) if api else None
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"ocs serve exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError(f"ocs serve did not listen within {timeout} s:\n{self.log.read_text()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        """SIGKILL the server if it runs; safe to call at any time."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if getattr(self, "_log_file", None) is not None:
            self._log_file.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.stop()
            if self.proc.poll() is None:
                self.kill()


def show_subscriber(data: Path, msisdn: str | list[str], rules: Path = DEMO_RULES):
    """`ocs subscriber show`: a dict for one number, a list for several."""
    import json
    ids = [msisdn] if isinstance(msisdn, str) else list(msisdn)
    out = subprocess.run([sys.executable, "-m", "ocs.cli", "subscriber", "show", *ids,
                          "--data", str(data), "--rules", str(rules)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"ocs subscriber show failed: {out.stderr}")
    return json.loads(out.stdout)
