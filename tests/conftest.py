from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile the server's kernels into numba's on-disk cache once, before
    any test starts a server: with the cache cold (a fresh checkout) that
    takes about a minute, which would otherwise be spent inside the first
    server's start-up timeout. Warm, it takes a fraction of a second."""
    from ocs.kernels import warm_up
    from ocs.rules.compile import load_rules
    warm_up(load_rules(Path(__file__).parents[1] / "rules" / "demo"))
