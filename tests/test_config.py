"""The configuration's peer rules: who may refund (off unless a rule
naming the Origin-Host says refunds = true), and a clear error otherwise."""
from __future__ import annotations

import pytest

from ocs.config import PeerPolicy, load_config


def test_refunds_are_allowed_by_origin_host_only(tmp_path):
    f = tmp_path / "ocs.toml"
    f.write_text('[[peers]]\norigin_host = "pgw1.example"\nrefunds = true\n\n[[peers]]\norigin_host = "pgw2.example"\n')
    assert PeerPolicy(load_config(f).peers).refund_hosts == {b"pgw1.example"}
    assert PeerPolicy([]).refund_hosts == frozenset()
    f.write_text('[[peers]]\nrealm = "partner.example"\nrefunds = true\n')
    with pytest.raises(SystemExit, match=r"peers\[0\]\.refunds: .*origin_host"):
        load_config(f)
