"""deploy/ocs.toml, the production configuration example, is a valid
configuration and shows every key the configuration has, so it cannot
drift from ocs/config.py: a key added there and not here, or renamed or
removed there and left here, fails this test."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ocs.config import Config, PeerPolicy, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "ocs.toml"
_COMMENTED_KEY = re.compile(r"^# ?(\w+) = ", re.M)


def commented_keys(text: str) -> set[str]:
    return {k for k in _COMMENTED_KEY.findall(text) if k in Config.__struct_fields__}


def test_the_example_loads_and_names_every_key():
    text = EXAMPLE.read_text()
    cfg = load_config(EXAMPLE)
    assert cfg != Config(), "the example sets something"
    shown = set(tomllib.loads(text)) | commented_keys(text)
    missing = sorted(set(Config.__struct_fields__) - shown)
    assert not missing, f"{EXAMPLE.name} does not show these configuration keys: {missing}"


def test_the_commented_keys_are_valid_too(tmp_path):
    text = EXAMPLE.read_text()
    keys = commented_keys(text)
    assert keys, "the example comments out its optional keys"
    uncommented = tmp_path / "ocs.toml"
    # a top-level key must come before the first table: put them first
    lines = [re.sub(r"^# ?", "", m.group(0)) for m in re.finditer(r"^# ?(\w+) = .*$", text, re.M)
             if m.group(1) in keys]
    uncommented.write_text("\n".join(lines) + "\n" + text)
    cfg = load_config(uncommented)
    for k in keys:
        assert getattr(cfg, k) != getattr(Config(), k), f"{k}: the commented value is the default"


def test_the_example_is_a_production_configuration():
    cfg = load_config(EXAMPLE)
    assert cfg.fsync, "answers must be durable in production"
    assert cfg.peers, "production names its gateways instead of accepting loopback peers"
    policy = PeerPolicy(cfg.peers)
    assert policy.allows("pgw1.operator.example", "operator.example", "10.1.0.11")
    assert not policy.allows("pgw1.operator.example", "operator.example", "10.1.0.99"), "address is checked"
    assert not policy.allows("pgw9.operator.example", "operator.example", "127.0.0.1"), "no loopback default"
    assert cfg.api is not None, "the API address is where Prometheus scrapes /metrics"
    assert cfg.api_tokens == [], "tokens belong in OCS_API_TOKENS (ocs.env), not in a file many can read"
    assert "OCS_API_TOKENS" in EXAMPLE.read_text()
    assert Path(cfg.data).is_absolute() and Path(cfg.rules).is_absolute()
