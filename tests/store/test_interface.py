"""The Store protocol (ocs/store/interface.py) is all that ocs/ uses of a
store outside the store package: a second implementation (the cluster
store) needs nothing else. Every `store.X` / `.store.X` in the code is
checked against the protocol, and the embedded store implements it."""
from __future__ import annotations

import ast
from pathlib import Path

from ocs.store.embedded import EmbeddedStore
from ocs.store.interface import Store

OCS = Path(__file__).resolve().parents[2] / "ocs"


def declared() -> set[str]:
    names = set(Store.__annotations__)
    names |= {n for n, v in vars(Store).items() if not n.startswith("__") and (callable(v) or isinstance(v, property))}
    return names


def used_outside_the_store() -> dict[str, list[str]]:
    uses: dict[str, list[str]] = {}
    for path in OCS.rglob("*.py"):
        if path.parent.name == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
                owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
                if owner == "store":
                    uses.setdefault(node.attr, []).append(f"{path.relative_to(OCS.parent)}:{node.lineno}")
    return uses


def test_every_use_of_a_store_is_in_the_protocol():
    missing = {name: where for name, where in used_outside_the_store().items() if name not in declared()}
    assert not missing, f"used outside ocs/store but not in the Store protocol: {missing}"


def test_the_embedded_store_implements_it(tmp_path):
    store = EmbeddedStore(tmp_path / "data", fsync=False)
    store.open()
    try:
        assert isinstance(store, Store)
        absent = [n for n in declared() if not hasattr(store, n)]
        assert not absent, absent
    finally:
        store.close()
