"""Keeping a rules version in the data directory (DATA/rules/VERSION)."""
from __future__ import annotations

import threading

from ocs.rules.compile import load_rules
from ocs.rules.versions import keep, kept_versions, version_dir
from tests.support.server import DEMO_RULES


def test_the_same_version_kept_by_several_callers_at_once(tmp_path):
    """Two uploads, or an upload and the charging loop's install, may keep
    the same version at the same moment: every caller succeeds, the files
    are the version's, and no temporary directory is left."""
    rules = load_rules(DEMO_RULES)
    for attempt in range(20):
        data = tmp_path / str(attempt)
        start = threading.Barrier(4)
        failed = []

        def run():
            start.wait()
            try:
                assert keep(data, rules) == version_dir(data, rules.version)
            except BaseException as e:      # noqa: BLE001 - reported below
                failed.append(repr(e))
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failed, failed
        kept = version_dir(data, rules.version)
        assert {p.name: p.read_bytes() for p in kept.iterdir()} == rules.files
        assert [p.name for p in (data / "rules").iterdir()] == [rules.version]
        assert kept_versions(data) == [rules.version]
