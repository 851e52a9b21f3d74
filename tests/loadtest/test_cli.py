"""python -m loadtest: options, scenarios, exit codes, the JSON report, plots."""
import json
import re

import pytest
import trio

from loadtest import __main__ as cli
from loadtest import closed_loop, plots
from loadtest.bench import free_port
from loadtest.reference import echo
from loadtest.scenario import Scenario


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    options = set(re.findall(r"--[a-z][a-z-]+", text))
    for flag, *_ in cli.FLAGS:
        assert flag in options
    assert {"--scenario", "--json", "--plots", "--progress", "--set", "--relaxed"} <= options
    for name in ("steady", "ramp", "burst", "reconnect-storm"):
        assert name in text


def test_flags_cover_every_scenario_section():
    keys = {key.split(".")[0] for _, key, *_ in cli.FLAGS if key}
    sections = {f for f in Scenario.__struct_fields__
                if f not in ("name", "description", "judge")}
    assert sections <= keys | {"judge"}


def test_flags_and_set_override_the_scenario():
    a = cli.parser().parse_args(["-s", "burst", "--rate", "10", "--msisdns", "100-199",
                                 "--updates", "2-4", "--use-percent", "50",
                                 "--rating-groups", "1,2", "--set", "load.tick=0.05",
                                 "--set", "reconnect.graceful=true"])
    sc = cli.resolve(a)
    assert (sc.load.rate, sc.subscribers.first, sc.subscribers.last) == (10, "100", "199")
    assert sc.sessions.rating_groups == [1, 2] and sc.load.tick == 0.05
    assert sc.reconnect.graceful is True
    assert {(p.updates, p.use_percent) for p in sc.sessions.profile} == {((2, 4), (50, 50))}


def test_a_bad_scenario_or_no_server_exits_2(capsys):
    assert cli.main(["--scenario", "no-such-thing"]) == 2
    assert "no scenario" in capsys.readouterr().err
    assert cli.main(["--target", f"127.0.0.1:{free_port()}", "--duration", "0.1"]) == 2
    assert "could not connect" in capsys.readouterr().err


def test_list(capsys):
    assert cli.main(["--list"]) == 0
    assert "reconnect-storm" in capsys.readouterr().out


async def test_a_run_writes_the_summary_json_and_plots(tmp_path, capsys):
    async with trio.open_nursery() as nursery:
        port = await nursery.start(echo.serve, "127.0.0.1", 0)
        argv = ["-s", "capacity", "--target", f"127.0.0.1:{port}", "--rate", "2000",
                "--warmup", "0.2", "--duration", "1.2", "--json", str(tmp_path / "r.json"),
                "--plots", str(tmp_path / "r"), "--progress"]
        code = await trio.to_thread.run_sync(cli.main, argv)
        # the old command line still works, as a closed loop
        old = await trio.to_thread.run_sync(closed_loop.main, [
            "--target", f"127.0.0.1:{port}", "--window", "8", "--duration", "0.3",
            "--warmup", "0.1", "--relaxed"])
        nursery.cancel_scope.cancel()
    assert code == 0 and old == 0
    out, err = capsys.readouterr()
    summary = out.split("scenario closed")[0]
    assert "PASS" in summary and len(summary.splitlines()) <= 24
    assert "answers/s" in err and "\r" in err  # the progress line
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is True and report["scenario"]["load"]["rate"] == 2000
    assert report["series"] and report["histogram"] and report["latency_ms"]["p99.9"] > 0
    for name in ("r-latency.png", "r-timeline.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # plots again from the JSON, two servers on one CDF
    written = plots.main([f"a={tmp_path / 'r.json'}", f"b={tmp_path / 'r.json'}",
                          "--out", str(tmp_path / "both")])
    assert written == 0 and (tmp_path / "both-latency.png").exists()
    # and docs/benchmarks.md's sections from it
    import argparse
    import datetime

    from loadtest.bench_report import render
    args = argparse.Namespace(started=datetime.datetime.now().astimezone(), command=["x"],
                              machine="m", pinned=False, warmup=0.2, duration=1.2, source="abc",
                              steady_rate=2000)
    text = render({"echo": {"closed": [(8, report)], "steady": report, "ramp": report,
                            "capacity": report}}, args, ["a note"], tmp_path / "bench")
    assert "| echo | 8 |" in text and "## Ramp on echo" in text and "- a note" in text
    assert "](bench/steady-latency.png)" in text
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == [
        "ramp-echo-timeline.png", "steady-echo-timeline.png", "steady-latency.png"]
