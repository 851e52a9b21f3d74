"""The open-loop arrival schedule against a numeric integral of the rate."""
import numpy as np
import pytest

from loadtest import schedule
from loadtest.schedule import Shape, build, count_by, intended_ns

SHAPES = [
    Shape(1000),
    Shape(1000, ramp_from=100, ramp_seconds=10),
    Shape(6000, ramp_from=100, ramp_seconds=12),  # as long as the run
    Shape(6000, ramp_from=100, ramp_seconds=30),  # longer than the run
    Shape(500, ramp_from=2000, ramp_seconds=4),  # a ramp down
    Shape(1000, burst_rate=5000, burst_every=3, burst_seconds=0.5, burst_at=1),
    Shape(2000, ramp_from=0, ramp_seconds=5, burst_rate=8000, burst_every=2,
          burst_seconds=0.25, burst_at=0.5),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_count_is_the_integral_of_the_rate(shape):
    plan = build(shape, horizon=12)
    ts = np.linspace(0, 12, 60_001)
    cumulative = np.concatenate([[0], np.cumsum(np.diff(ts) * (lambda r: (r[1:] + r[:-1]) / 2)(
        np.array([shape(x) for x in ts])))])
    for t in (0.0, 0.3, 1.0, 2.7, 4.0, 9.99, 12.0):
        numeric = np.interp(t, ts, cumulative)
        assert count_by(plan, t) == pytest.approx(numeric, rel=1e-3, abs=10)
    # Past the horizon the ramp goes on to its end, then holds; no more bursts.
    assert count_by(plan, 13) - count_by(plan, 12) == pytest.approx(
        (shape.base(12) + shape.base(13)) / 2, rel=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_intended_times_invert_the_count(shape):
    plan = build(shape, horizon=12)
    total = int(count_by(plan, 12))
    previous = -1.0
    for k in np.linspace(0, total, 200).astype(int):
        t = intended_ns(plan, int(k)) / 1e9
        assert count_by(plan, t) == pytest.approx(k, abs=1e-6 * max(k, 1) + 1e-6)
        assert t >= previous
        previous = t


def test_a_zero_rate_never_comes():
    plan = build(Shape(0.0 + 1e-300), horizon=1)
    assert intended_ns(plan, 10) >= schedule.NEVER or intended_ns(plan, 10) > 1e15
