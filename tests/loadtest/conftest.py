import pytest

from loadtest import run, scenario
from loadtest.sessions import Counters


def quick(name: str, port: int, **overrides) -> scenario.Scenario:
    """A named scenario cut down to test size, against 127.0.0.1:port."""
    short = {"target": f"127.0.0.1:{port}", "load.warmup": 0.2, "load.duration": 0.8,
             "load.timeout": 1.0, "load.sessions": 256}
    return scenario.load(name, {**short, **{k.replace("__", "."): v
                                           for k, v in overrides.items()}})


@pytest.fixture(scope="session", autouse=True)
def compiled():
    """Compile the kernels outside any fail_after (seconds when numba's cache is cold)."""
    gateways = run.make_gateways(quick("steady", 1), Counters(), run.Clock())
    gateways[0].gen.compile()
