"""The import boundary of DESIGN.md: the protocol, charging, rule and store
packages do no network I/O of their own. trio lives in `ocs/net/` only.

Checked on the source with `ast`, not by importing, so an import inside a
function or under `if TYPE_CHECKING` counts, and nothing third-party that
happens to be loaded already can make the check pass or fail.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("diameter", "gy", "engine", "rules", "store")
FORBIDDEN = ("trio", "asyncio", "socket")
# Our own modules that import trio: reaching them imports it too.
FORBIDDEN_OURS = ("ocs.net", "ocs.cli")


def _resolve(module: str | None, level: int, path: Path) -> str:
    """The absolute name of `from <level dots><module> import ...` in `path`."""
    if level == 0:
        return module or ""
    package = list(path.relative_to(ROOT).parent.parts)   # same for __init__.py: it is that package
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imported_modules(source: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in `source`, including the dynamic
    `__import__("x")` and `importlib.import_module("x")` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, path)
            found.append((node.lineno, base))
            # `from ocs import net` or `from .. import net` names a module too.
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in ("__import__", "import_module"):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(source: str, path: Path) -> list[str]:
    bad = []
    for line, module in imported_modules(source, path):
        top = module.split(".")[0]
        if top in FORBIDDEN or any(module == m or module.startswith(m + ".") for m in FORBIDDEN_OURS):
            bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return bad


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / "ocs" / package).rglob("*.py"))


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_package_imports_no_trio_asyncio_or_socket(package):
    paths = _sources(package)
    assert paths, f"ocs/{package} has no Python files: the check would pass vacuously"
    bad = [v for p in paths for v in violations(p.read_text(encoding="utf-8"), p)]
    assert bad == []


FAKE = ROOT / "ocs" / "gy" / "fake.py"
FAKE_INIT = ROOT / "ocs" / "gy" / "__init__.py"


@pytest.mark.parametrize("source, path", [
    ("import trio\n", FAKE),
    ("import trio.lowlevel as ll\n", FAKE),
    ("from trio import open_tcp_stream\n", FAKE),
    ("import os, asyncio\n", FAKE),
    ("from asyncio.streams import open_connection\n", FAKE),
    ("from socket import socket\n", FAKE),
    ("def f():\n    import socket\n", FAKE),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trio\n", FAKE),
    ("try:\n    import trio\nexcept ImportError:\n    trio = None\n", FAKE),
    ("s = __import__('socket')\n", FAKE),
    ("import importlib\nt = importlib.import_module('trio')\n", FAKE),
    ("from ..net import server\n", FAKE),
    ("from .. import net\n", FAKE),
    ("from ocs import cli\n", FAKE),
    ("from ocs.net.server import serve\n", FAKE),
    ("from ..net import server\n", FAKE_INIT),
], ids=lambda x: x if isinstance(x, str) else x.name)
def test_checker_catches(source, path):
    assert violations(source, path), "the boundary check missed an import it must catch"


@pytest.mark.parametrize("source", [
    "import struct\nimport numpy as np\n",
    "from . import avp as A\nfrom ..diameter import constants\n",
    "from diameter.message.avp import avp\n",
    "import socketserver_lookalike\n",
    "from .trio_free import x\n",
])
def test_checker_allows(source):
    assert violations(source, FAKE) == []


# ------------------------------------------------------------ circles and layers
# Imports point down this list and never up or sideways: a package may import
# its own modules and those of any layer below its own (docs/architecture.md,
# "Layers"). Function-level imports count as much as top-level ones: they
# only postpone a circle to run time.
LAYERS = (
    ("ocs.cli",),                                   # the `ocs` command
    ("ocs.clustercmd",),                            # `ocs cluster ...`, and joining the cluster store
    ("ocs.net", "ocs.kernels"),                     # trio: peers, charging loop, HTTP serving; warm-up
    ("ocs.api",),                                   # the operator HTTP API
    ("ocs.feeds", "ocs.metrics"),                   # usage records, settlement, notifications; metrics
    ("ocs.gy",),                                    # the credit-control application, operations, installing rules
    ("ocs.store",),                                 # state, journal, snapshots
    ("ocs.rules",),                                 # rule files compiled into engine tables
    ("ocs.engine", "ocs.diameter"),                 # the kernels; the codec and peer state machine
    ("ocs.subscriber", "ocs.codes", "ocs.durable", "ocs.config"),   # leaves: subscriber keys, protocol numbers, fsync, configuration
)


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of ocs/ by dotted name (a package by its own name)."""
    names = {}
    for path in (root / "ocs").rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        names[name.removesuffix(".__init__")] = path
    return names


def import_graph(modules: dict[str, Path], sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """module -> the modules of ocs/ it imports, anywhere in its source.
    `from pkg import mod` is an edge to `pkg.mod`, not to `pkg`."""
    graph = {}
    for name, path in modules.items():
        source = sources[name] if sources is not None else path.read_text(encoding="utf-8")
        found = set()
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module, node.level, path)
                found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if any(module == unit or module.startswith(unit + ".") for unit in layer):
            return rank
    return None


def unit_of(module: str) -> str:
    return next(unit for layer in LAYERS for unit in layer if module == unit or module.startswith(unit + "."))


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import that does not point to the importer's own package or a lower layer."""
    bad = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if unit_of(source) != unit_of(target) and layer_of(target) <= layer_of(source):
                bad.append(f"{source} imports {target}")
    return bad


def test_no_import_circles():
    found = circles(import_graph(module_names()))
    assert found == [], "import circles (function-level imports counted): " + \
        "; ".join(" <-> ".join(c) for c in found)


def test_every_module_has_a_layer():
    assert [m for m in module_names() if m != "ocs" and layer_of(m) is None] == []


def test_imports_point_down_the_layers():
    assert upward(import_graph(module_names())) == []


@pytest.mark.parametrize("lower, higher", [
    ("ocs.gy", "ocs.net"), ("ocs.diameter", "ocs.gy"), ("ocs.engine", "ocs.gy"), ("ocs.engine", "ocs.diameter"),
    ("ocs.engine", "ocs.store"), ("ocs.engine", "ocs.rules"), ("ocs.store", "ocs.gy"), ("ocs.rules", "ocs.store"),
    ("ocs.gy", "ocs.feeds"), ("ocs.api", "ocs.net"), ("ocs.diameter", "ocs.engine"),
])
def test_the_layers_say_what_may_not_be_imported(lower, higher):
    """What the layers forbid, spelled out: a change to LAYERS that allowed
    one of these would have to change this list too."""
    assert upward({f"{lower}.m": {f"{higher}.m"}}) == [f"{lower}.m imports {higher}.m"]


def _graph(files: dict[str, str]) -> dict[str, set[str]]:
    modules = {name: ROOT / Path(*name.split(".")).with_suffix(".py") for name in files}
    return import_graph(modules, files)


@pytest.mark.parametrize("files, expected", [
    ({"ocs.a.x": "from .y import f\n", "ocs.a.y": "def g():\n    from .x import h\n"}, [["ocs.a.x", "ocs.a.y"]]),
    ({"ocs.a.x": "from ocs.b import y\n", "ocs.b.y": "from typing import TYPE_CHECKING\n"
      "if TYPE_CHECKING:\n    from ..a.x import X\n"}, [["ocs.a.x", "ocs.b.y"]]),
    ({"ocs.a.x": "import ocs.a.y\n", "ocs.a.y": "import ocs.a.z\n", "ocs.a.z": "from . import x\n"},
     [["ocs.a.x", "ocs.a.y", "ocs.a.z"]]),
    ({"ocs.a.x": "from .y import f\n", "ocs.a.y": "import numpy\n"}, []),
], ids=["function-level", "type-checking", "three", "none"])
def test_circle_finder(files, expected):
    assert circles(_graph(files)) == expected
