"""The notification feed over the API: a client polls with a cursor and
gets each announcement once, after the CCR that crossed its threshold.
Plan `p`: a 1 MB bundle with announcements at 80% (819.2 KB) and 100%."""
from __future__ import annotations

import trio

from tests.support.gy import KB, TOKEN, GySession
from tests.support.http import acall
from tests.support.rawclient import GyConnection
from tests.support.server import OcsProcess

RULES = """
[[plan]]
id = "p"
timezone = "Asia/Shanghai"
bundle = "1 MB"
overage = { price = "0.0003", per = "1 KB" }
threshold = [
  { name = "bundle-80", bucket = "bundle", percent = 80 },
  { name = "bundle-100", bucket = "bundle", percent = 100 },
]

[[subscriber_range]]
first = "8613400000000"
last = "8613400000009"
plan = "p"
balance = "10.00"
"""
A, B = "8613400000001", "8613400000002"


async def poll(server, query: str, want: int, timeout: float = 10) -> dict:
    """Poll until at least `want` announcements come (they follow the journal write)."""
    with trio.fail_after(timeout):
        while True:
            r = await acall(server.api, "GET", f"/v1/notifications?{query}")
            assert r.status == 200, r
            if len(r.json["notifications"]) >= want:
                return r.json
            await trio.sleep(0.05)


def brief(feed: dict) -> list[tuple]:
    return [(n["subscriber"], n["threshold"], n["kind"], n["bucket"], n["percent"], n["octets"])
            for n in feed["notifications"]]


async def test_feed_by_cursor_filter_and_limit(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "plans.toml").write_text(RULES)
    server = OcsProcess(tmp_path / "data", rules=rules, extra=["--api", "127.0.0.1:0"], env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-feed.test.example")
                await conn.connect(server.port, n)
                empty = await acall(server.api, "GET", "/v1/notifications")
                assert (empty.status, empty.json) == (200, {"notifications": [], "next": 0})

                a = GySession(conn, A)
                await a.start(900 * KB)
                await a.update(850 * KB, 200 * KB)                  # 83%: bundle-80
                first = await poll(server, "after=0", 1)
                assert brief(first) == [(A, "bundle-80", "bucket", "bundle", 80, 850 * KB)]
                cursor = first["next"]
                assert cursor > 0
                # nothing new: the same cursor back
                again = await acall(server.api, "GET", f"/v1/notifications?after={cursor}")
                assert again.json == {"notifications": [], "next": cursor}

                await a.update(200 * KB, 0)                         # 1050 KB: bundle-100 (the bundle: 1024 KB used)
                b = GySession(conn, B)
                await b.start(900 * KB)
                await b.update(900 * KB, 0)                         # B at 88%: bundle-80
                second = await poll(server, f"after={cursor}", 2)
                assert sorted(brief(second)) == sorted([(A, "bundle-100", "bucket", "bundle", 100, 1024 * KB),
                                                        (B, "bundle-80", "bucket", "bundle", 80, 900 * KB)])
                end = second["next"]
                n.cancel_scope.cancel()

        # the whole feed, one subscriber's part, and pages of one
        whole = await poll(server, "after=0", 3)
        assert whole["next"] == end and len(whole["notifications"]) == 3
        mine = await acall(server.api, "GET", f"/v1/notifications?subscriber={A}")
        assert [(s, t) for s, t, *_ in brief(mine.json)] == [(A, "bundle-80"), (A, "bundle-100")]
        assert mine.json["next"] == end
        paged, after = [], 0
        for _ in range(3):
            page = await acall(server.api, "GET", f"/v1/notifications?after={after}&limit=1")
            assert len(page.json["notifications"]) == 1
            paged += page.json["notifications"]
            after = page.json["next"]
        assert paged == whole["notifications"] and after == end
        for n_ in whole["notifications"]:
            assert n_["plan"] == "p" and n_["rules"] and n_["time"].startswith("20")
        # cursors the feed did not give
        for bad, why in ((cursor - 1, "not the start of an announcement"), (end + 1, "beyond the end")):
            r = await acall(server.api, "GET", f"/v1/notifications?after={bad}")
            assert r.status == 409 and why in r.error, r
    finally:
        await trio.to_thread.run_sync(server.stop)


def announcement(subscriber: str, threshold: str) -> str:
    return ('{"time":"2026-01-01T00:00:00.000+00:00","subscriber":"%s","plan":"p","threshold":"%s",'
            '"kind":"bucket","rules":"0123456789ab","octets":1,"bucket":"bundle","percent":80}' % (subscriber, threshold))


async def test_damaged_lines_are_skipped_and_new_announcements_start_a_line(tmp_path):
    """A crash can cut the feed's last line short. Before, the next
    announcement was appended onto it, and every poll from before that line
    answered 500, for good. Now the server ends such a line before it
    appends, and the feed skips a line it cannot read (keeping a complete
    announcement at its end), moving the cursor past it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "plans.toml").write_text(RULES)
    data = tmp_path / "data"
    data.mkdir()
    full = announcement(B, "old-1")
    feed = data / "notifications.jsonl"
    feed.write_text(announcement(B, "old-0") + "\n"
                    + full[:50] + full + "\n"           # a cut line, an announcement appended onto it
                    + "not an announcement\n"
                    + full[:70])                        # and a crash cut the last one short
    server = OcsProcess(data, rules=rules, extra=["--api", "127.0.0.1:0"], env={"OCS_API_TOKENS": TOKEN})
    await trio.to_thread.run_sync(server.start)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as n:
                conn = GyConnection(origin_host="pgw-feed.test.example")
                await conn.connect(server.port, n)
                a = GySession(conn, A)
                await a.start(900 * KB)
                await a.update(850 * KB, 0)                         # 83%: bundle-80
                whole = await poll(server, "after=0", 3)
                n.cancel_scope.cancel()
        assert [(x["subscriber"], x["threshold"]) for x in whole["notifications"]] == \
            [(B, "old-0"), (B, "old-1"), (A, "bundle-80")]
        assert whole["next"] == feed.stat().st_size
        lines = feed.read_bytes().split(b"\n")
        assert lines[-2].startswith(b'{"time"') and b'"bundle-80"' in lines[-2], "a line of its own"
        assert lines[-3] == full[:70].encode()
        # a client paging one at a time gets past the damaged lines
        paged, after = [], 0
        for _ in range(3):
            page = await acall(server.api, "GET", f"/v1/notifications?after={after}&limit=1")
            assert page.status == 200, page
            paged += page.json["notifications"]
            after = page.json["next"]
        assert paged == whole["notifications"] and after == whole["next"]
        mine = await acall(server.api, "GET", f"/v1/notifications?subscriber={B}")
        assert [x["threshold"] for x in mine.json["notifications"]] == ["old-0", "old-1"]
        assert server.output().count("skipping a damaged announcement") == 3, "each logged once"
    finally:
        await trio.to_thread.run_sync(server.stop)
