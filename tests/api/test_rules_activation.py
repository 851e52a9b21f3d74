"""An activation through the API is crash-safe on disk, and its failures are
answers, not 500s.

The server is killed (SIGKILL) at each point of an activation, as far as
the disk can tell: the marker `DATA/rules/activating` written, the version
installed (journaled), the rules directory written not at all, half, or
whole. A real server started on that data directory comes up on the
activated version with the directory rewritten, or, when the install never
became durable, on the version before with the directory untouched. A
write of the directory that fails is a 507, retried by the watch; two
uploads of the same version at once both succeed."""
from __future__ import annotations

import trio

from ocs.rules.activation import marker_path
from tests.api.test_rules_api import SUBSCRIBERS, files
from tests.support.gy import TOKEN
from tests.support.http import acall
from tests.support.server import OcsProcess


def setup(tmp_path, poll: float = 0.1) -> tuple[OcsProcess, object]:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in files("0.0001").items():
        (rules / name).write_text(text)
    config = tmp_path / "ocs.toml"
    config.write_text(f"rules_poll = {poll}\n")
    server = OcsProcess(tmp_path / "data", rules=rules, config=config, extra=["--api", "127.0.0.1:0"],
                        env={"OCS_API_TOKENS": TOKEN})
    return server, rules


def two_versions() -> tuple[dict, dict]:
    """v1 and v2 differ in both files, so half of each is a third version."""
    v1 = files("0.0001")
    v2 = files("0.0005")
    v2["subscribers.toml"] = SUBSCRIBERS.replace('"100.00"', '"200.00"')
    return v1, v2


def directory(rules) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(rules.glob("*.toml"))}


async def active(server) -> str:
    r = await acall(server.api, "GET", "/v1/rules")
    assert r.status == 200, r
    return r.json["version"]


async def upload(server, body: dict) -> str:
    r = await acall(server.api, "POST", "/v1/rules", {"files": body})
    assert r.status in (200, 201), r
    return r.json["version"]


async def test_an_activation_killed_before_the_directory_is_written_is_completed_at_start(tmp_path):
    v1_files, v2_files = two_versions()
    server, rules = setup(tmp_path)
    data = tmp_path / "data"
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            v1 = await active(server)
            v2 = await upload(server, v2_files)
            r = await acall(server.api, "POST", f"/v1/rules/versions/{v2}/activate")
            assert r.status == 200, r
            assert not marker_path(data).exists(), "a finished activation leaves no marker"
    finally:
        await trio.to_thread.run_sync(server.kill)

    # What the disk holds when a kill -9 comes after the install was
    # journaled: the marker, and the directory not, half, or wholly written.
    # (Half: each file is replaced by rename, so a file is one version or
    # the other; here plans.toml is v2's and subscribers.toml still v1's, a
    # valid third version the server must not start on.)
    states = {"not written": v1_files,
              "half written": {"plans.toml": v2_files["plans.toml"], "subscribers.toml": v1_files["subscribers.toml"]},
              "written": v2_files}
    for state, on_disk in states.items():
        for p in rules.glob("*.toml"):
            p.unlink()
        for name, text in on_disk.items():
            (rules / name).write_text(text)
        marker_path(data).write_text(v2 + "\n")
        await trio.to_thread.run_sync(server.start)
        try:
            with trio.fail_after(30):
                assert await active(server) == v2, state
            assert directory(rules) == v2_files, state
            assert not marker_path(data).exists(), state
            assert f"the activation of rules version {v2} was interrupted by a crash" in server.output(), state
            await trio.sleep(0.3)                   # polls of the directory: the watch agrees
            assert await active(server) == v2, state
        finally:
            await trio.to_thread.run_sync(server.kill)
    assert v1 != v2


async def test_an_activation_killed_before_its_install_was_journaled_did_not_happen(tmp_path):
    v1_files, v2_files = two_versions()
    server, rules = setup(tmp_path)
    data = tmp_path / "data"
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            v1 = await active(server)
            v2 = await upload(server, v2_files)
    finally:
        await trio.to_thread.run_sync(server.kill)
    # killed after the marker was written, before the install was durable:
    # the directory was not touched (it is written only after the install)
    marker_path(data).write_text(v2 + "\n")
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(30):
            assert await active(server) == v1
        assert directory(rules) == v1_files
        assert not marker_path(data).exists()
        assert f"the activation of rules version {v2} was interrupted before it was installed" in server.output()
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_a_failed_directory_write_is_a_507_and_the_watch_finishes_it(tmp_path):
    v1_files, v2_files = two_versions()
    server, rules = setup(tmp_path)
    data = tmp_path / "data"
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            v1 = await active(server)
            v2 = await upload(server, v2_files)
            # the write's temporary file cannot be created (as on a full disk)
            blocker = rules / ".plans.toml.tmp"
            blocker.mkdir()
            r = await acall(server.api, "POST", f"/v1/rules/versions/{v2}/activate")
            assert r.status == 507, r
            assert f"version {v2} is in force, but writing its files into {rules} failed" in r.error, r
            assert await active(server) == v2
            assert marker_path(data).read_text().strip() == v2
            # meanwhile the directory (v1's files) is not read: v2 stays in force
            await trio.sleep(0.5)
            assert await active(server) == v2 and directory(rules) == v1_files
            # the disk has room again: the next poll writes the files, the marker goes
            blocker.rmdir()
            while marker_path(data).exists():
                await trio.sleep(0.05)
            assert directory(rules) == v2_files
            await trio.sleep(0.3)
            assert await active(server) == v2
            # an activation that cannot even be marked changes nothing
            (data / "rules" / ".activating.tmp").mkdir()
            r = await acall(server.api, "POST", f"/v1/rules/versions/{v1}/activate")
            assert r.status == 507 and "nothing changed" in r.error, r
            assert await active(server) == v2 and directory(rules) == v2_files
            (data / "rules" / ".activating.tmp").rmdir()
            r = await acall(server.api, "POST", "/v1/rules/rollback")
            assert (r.status, r.json["version"]) == (200, v1), r
            assert directory(rules) == v1_files and not marker_path(data).exists()
    finally:
        await trio.to_thread.run_sync(server.stop)


async def test_the_same_version_uploaded_at_once_by_several_clients(tmp_path):
    """Each upload keeps the version in its own temporary directory and
    renames it into place: the ones that find it there already succeed."""
    server, rules = setup(tmp_path, poll=0)
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(120):
            for round in range(8):
                body = {"files": files(f"0.000{round + 2}")}
                answers = []

                async def post():
                    answers.append(await acall(server.api, "POST", "/v1/rules", body))
                async with trio.open_nursery() as n:
                    for _ in range(6):
                        n.start_soon(post)
                assert all(r.status in (200, 201) for r in answers), answers
                assert len({r.json["version"] for r in answers}) == 1
            kept = [p.name for p in (tmp_path / "data" / "rules").iterdir()]
            assert not [k for k in kept if k.endswith(".tmp")], kept
            r = await acall(server.api, "GET", "/v1/rules/versions")
            assert len(r.json["versions"]) == 9, r.json
    finally:
        await trio.to_thread.run_sync(server.stop)
