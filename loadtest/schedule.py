"""When an open-loop run sends each request: a piecewise-linear arrival rate.

In an open loop the offered load does not wait for the server (unlike the
closed loop's window), so a slow server shows as growing latency instead of
a politely lower request rate. Each request has an intended send time, fixed
in advance by the rate function; latency is measured from it, so time spent
queued in the generator because no session was free counts (the
"coordinated omission" of closed-loop tools does not happen here).

The rate is a sum of shapes over time since the start of traffic: a linear
ramp from `ramp_from` to `rate`, then flat; bursts of `burst_rate` lasting
`burst_seconds` every `burst_every` seconds. That is linear between
breakpoints, so the cumulative count N(t) is quadratic there and its inverse
- the intended time of request k - is exact. Request k of the run goes to
connection k mod K, so connections interleave instead of sending in step.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# Columns of a schedule row: one linear piece of the rate.
T_START_NS, N_START, RATE_PER_NS, SLOPE_PER_NS2, N_SCHEDULE_COLS = range(5)
NEVER = float(1 << 62)


class Shape:
    """The rate function: ramp to `rate`, with bursts on top (all in requests/s)."""

    def __init__(self, rate: float, ramp_from: float = 0.0, ramp_seconds: float = 0.0,
                 burst_rate: float = 0.0, burst_every: float = 0.0,
                 burst_seconds: float = 0.0, burst_at: float = 0.0):
        self.rate, self.ramp_from, self.ramp_seconds = rate, ramp_from, ramp_seconds
        self.burst_rate, self.burst_every = burst_rate, burst_every
        self.burst_seconds, self.burst_at = burst_seconds, burst_at

    def in_burst(self, t: float) -> bool:
        return (self.burst_every > 0 and self.burst_seconds > 0 and t >= self.burst_at
                and (t - self.burst_at) % self.burst_every < self.burst_seconds)

    def base(self, t: float) -> float:
        if self.ramp_seconds > 0 and t < self.ramp_seconds:
            return self.ramp_from + (self.rate - self.ramp_from) * t / self.ramp_seconds
        return self.rate

    def __call__(self, t: float) -> float:
        """Requests per second offered at t seconds after the start of traffic."""
        return self.burst_rate if self.in_burst(t) else self.base(t)

    def cuts(self, horizon: float) -> list[float]:
        """Times where the rate changes its formula, up to the horizon."""
        cuts = {0.0}
        if self.ramp_seconds > 0:  # however long: the ramp's end starts the flat part
            cuts.add(self.ramp_seconds)
        if self.burst_every > 0 and self.burst_seconds > 0:
            start = self.burst_at
            while start < horizon:  # a burst begun before the horizon ends too
                cuts.update((start, start + self.burst_seconds))
                start += self.burst_every
        return sorted(cuts)


def build(shape: Shape, horizon: float) -> np.ndarray:
    """Schedule rows covering [0, horizon) seconds; the last piece lasts forever."""
    cuts = shape.cuts(horizon)
    rows, n = [], 0.0
    for a, b in zip(cuts, cuts[1:] + [math.inf]):
        if shape.in_burst(a):
            r0 = r1 = shape.burst_rate
        else:
            r0, r1 = shape.base(a), (shape.base(b) if b != math.inf else shape.base(a))
        if b == math.inf:
            b, r1 = a + 1.0, r0  # flat from the last cut on
        slope = (r1 - r0) / (b - a)
        rows.append((a * 1e9, n, r0 / 1e9, slope / 1e18))
        n += (r0 + r1) / 2 * (b - a)
    return np.array(rows, np.float64)


def count_by(schedule: np.ndarray, t: float) -> float:
    """Requests offered in the first t seconds (the integral of the rate)."""
    i = int(np.searchsorted(schedule[:, T_START_NS], t * 1e9, side="right")) - 1
    t0, n0, r0, a = schedule[i]
    dt = t * 1e9 - t0
    return n0 + r0 * dt + a * dt * dt / 2


@njit(cache=True)
def intended_ns(schedule, k):
    """Nanoseconds after the start of traffic at which request k (0-based) is due:
    when N(t) first reaches k."""
    target = float(k)
    i = np.searchsorted(schedule[:, N_START], target)  # first piece starting at or past it
    if i < len(schedule) and schedule[i, N_START] == target:
        return schedule[i, T_START_NS]
    i -= 1
    t0, n0, r0, a = schedule[i, 0], schedule[i, 1], schedule[i, 2], schedule[i, 3]
    need = target - n0
    if abs(a) < 1e-30:
        return t0 + need / r0 if r0 > 0 else NEVER
    disc = r0 * r0 + 2 * a * need
    if disc < 0:
        return NEVER  # a ramp down that never gets there
    return t0 + (np.sqrt(disc) - r0) / a
