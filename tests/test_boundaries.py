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
