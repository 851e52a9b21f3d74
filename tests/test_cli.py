"""The `ocs` command: every subcommand explains itself with --help, and
`ocs serve --config FILE` can say everything its flags say, with a flag
winning over the file."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import pytest
import trio

from ocs.cli import parser, serve_config
from ocs.config import Config
from tests.support.gy import TOKEN
from tests.support.http import acall
from tests.support.rawclient import GyConnection, build_ccr
from tests.support.server import DEMO_RULES, ROOT

FLAG_KEY = {"no_fsync": "fsync"}     # flags that are not spelled as their key


def commands(p: argparse.ArgumentParser = None, path: tuple = ()) -> list[tuple[tuple, argparse.ArgumentParser]]:
    """(words, parser) of every command and command group."""
    p = p or parser()
    out = [(path, p)]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += commands(child, path + (name,))
    return out


def options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.mark.parametrize("words, p", commands(), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_help_exits_0_and_explains_every_option(words, p):
    out = subprocess.run([sys.executable, "-m", "ocs.cli", *words, "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: ocs" + "".join(" " + w for w in words))
    for a in options(p):
        assert a.help, f"ocs {' '.join(words)}: {a.option_strings or a.dest} has no help text"
        names = a.option_strings or [a.metavar or a.dest]
        assert all(n in out.stdout for n in names), (words, names)
        assert a.help.split("(")[0].strip()[:30] in " ".join(out.stdout.split())
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name in action.choices:
                assert name in out.stdout


def serve_options() -> list[argparse.Action]:
    serve = dict(commands())[("serve",)]
    return [a for a in options(serve) if a.dest != "config"]


def test_every_serve_flag_has_a_configuration_key():
    for a in serve_options():
        assert FLAG_KEY.get(a.dest, a.dest) in Config.__struct_fields__, f"{a.option_strings}: no key in Config"


# every flag's value in a file, and another on the command line
IN_FILE = {"listen": "127.0.0.1:0", "data": "file-data", "rules": "file-rules", "origin_host": "file.example",
           "origin_realm": "file-realm.example", "log_level": "DEBUG", "api": "127.0.0.1:0",
           "metrics": "127.0.0.1:0", "fsync": True, "store": "host=file.example dbname=ocs", "node": "file-node",
           "lease_seconds": 3.0}
ON_FLAGS = {"listen": "127.0.0.2:3869", "data": "flag-data", "rules": "flag-rules", "origin_host": "flag.example",
            "origin_realm": "flag-realm.example", "log_level": "WARNING", "api": "127.0.0.2:8081",
            "metrics": "127.0.0.2:9091", "fsync": False, "store": "host=flag.example dbname=ocs", "node": "flag-node",
            "lease_seconds": 2.5}


def toml(values: dict) -> str:
    return "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n".replace("'", '"')
                   for k, v in values.items())


def test_the_file_says_what_the_flags_say_and_a_flag_wins(tmp_path):
    keys = {FLAG_KEY.get(a.dest, a.dest) for a in serve_options()}
    assert keys == set(IN_FILE) == set(ON_FLAGS), "a serve flag is missing from this test"
    config = tmp_path / "ocs.toml"
    config.write_text(toml(IN_FILE))
    from_file = serve_config(parser().parse_args(["serve", "--config", str(config)]))
    assert {k: getattr(from_file, k) for k in keys} == IN_FILE
    argv = ["serve", "--config", str(config)]
    for a in serve_options():
        if a.dest == "no_fsync":
            argv.append("--no-fsync")
        else:
            argv += [a.option_strings[0], str(ON_FLAGS[a.dest])]
    both = serve_config(parser().parse_args(argv))
    assert {k: getattr(both, k) for k in keys} == ON_FLAGS


def start(args: list[str], log, timeout: float = 60) -> tuple[subprocess.Popen, int, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ocs.cli", "serve", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        diameter = re.search(r"ocs.net: listening on 127\.0\.0\.1:(\d+)", text)
        api = re.search(r"api listening on (http://[0-9.]+:\d+)", text)
        if diameter and api:
            return proc, int(diameter.group(1)), api.group(1)
        if proc.poll() is not None:
            raise RuntimeError(text)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(log.read_text())


async def origin_host_of_an_answer(port: int) -> str:
    async with trio.open_nursery() as n:
        conn = GyConnection(origin_host="pgw-cli.test.example")
        await conn.connect(port, n)
        a = await conn.request(build_ccr(conn.origin_host, "cli;1", 1, 0, "8613900000001", [{"rg": 1, "rsu": 0}]))
        n.cancel_scope.cancel()
    assert a.result_code == 2001
    return a.origin_host.decode()


async def test_serve_from_a_configuration_file_alone_then_a_flag_over_it(tmp_path):
    config = tmp_path / "ocs.toml"
    config.write_text(toml({"listen": "127.0.0.1:0", "data": str(tmp_path / "data"), "rules": str(DEMO_RULES),
                            "origin_host": "ocs-from-file.example", "api": "127.0.0.1:0",
                            "fsync": False}) + f'api_tokens = ["{TOKEN}"]\n')
    for flags, host in (([], "ocs-from-file.example"), (["--origin-host", "ocs-from-flag.example"],
                                                        "ocs-from-flag.example")):
        log = tmp_path / f"serve-{len(flags)}.log"
        proc, port, api = await trio.to_thread.run_sync(start, ["--config", str(config), *flags], log)
        try:
            with trio.fail_after(30):
                assert await origin_host_of_an_answer(port) == host
                r = await acall(api, "GET", "/v1/rules")                  # the token from the file
                assert r.status == 200 and r.json["directory"] == str(DEMO_RULES)
        finally:
            proc.terminate()
            await trio.to_thread.run_sync(proc.wait, 30)
        assert (tmp_path / "data" / "journal.log").exists()
