import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="session", autouse=True)
def loadtest_kernels():
    """The load generator's kernels (tests/loadtest/conftest.py `compiled`)
    compile into numba's cache in a process of their own while the first
    tests run: on a fresh checkout that is half a minute of one core, which
    the tests that start servers mostly leave idle. If they are needed
    before it is done, they are compiled there as they would be without it."""
    warm = ("from loadtest import run\n"
            "from loadtest.sessions import Counters\n"
            "from tests.loadtest.conftest import quick\n"
            "run.make_gateways(quick('steady', 1), Counters(), run.Clock())[0].gen.compile()\n")
    proc = subprocess.Popen([sys.executable, "-c", warm], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    yield
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile the server's kernels into numba's on-disk cache once, before
    any test starts a server: with the cache cold (a fresh checkout) that
    takes about a minute, which would otherwise be spent inside the first
    server's start-up timeout. Warm, it takes a fraction of a second."""
    from ocs.kernels import warm_up
    from ocs.rules.compile import load_rules
    warm_up(load_rules(Path(__file__).parents[1] / "rules" / "demo"))
