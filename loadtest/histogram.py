"""Log-bucketed latency histogram in the manner of HdrHistogram.

Values are nanoseconds. Below 2**SUB_BITS every value has its own bucket;
above, each power of two is split into 2**(SUB_BITS-1) linear buckets, so a
reported percentile is at most 1/128 (0.8%) above the true value. `record` is
a numba function so the generator's compiled loop can call it.
"""
from __future__ import annotations

import numpy as np
from numba import njit

SUB_BITS = 8
_SUB = 1 << SUB_BITS
_HALF = _SUB >> 1
_MAX_BITS = 40  # 2**40 ns is about 18 minutes; anything longer is clamped
N_BUCKETS = _SUB + (_MAX_BITS - SUB_BITS) * _HALF


@njit(cache=True, inline="always")
def bucket_of(value):
    if value < _SUB:
        return max(value, 0)
    bits = 0
    v = value
    while v:
        v >>= 1
        bits += 1
    shift = bits - SUB_BITS
    return min(_SUB + (shift - 1) * _HALF + ((value >> shift) - _HALF), N_BUCKETS - 1)


@njit(cache=True, inline="always")
def record(counts, value):
    counts[bucket_of(value)] += 1


def highest_equivalent(bucket: int) -> int:
    """Largest value that lands in `bucket`."""
    if bucket < _SUB:
        return bucket
    shift = (bucket - _SUB) // _HALF + 1
    mantissa = (bucket - _SUB) % _HALF + _HALF
    return ((mantissa + 1) << shift) - 1


class LatencyHistogram:
    def __init__(self):
        self.counts = np.zeros(N_BUCKETS, np.int64)

    def reset(self) -> None:
        self.counts[:] = 0

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> int:
        """Value at or below which q percent of the recordings fall (ns)."""
        total = self.total
        if total == 0:
            return 0
        rank = max(1, int(np.ceil(q / 100.0 * total)))
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank))
        return highest_equivalent(bucket)

    def max(self) -> int:
        nonzero = np.flatnonzero(self.counts)
        return highest_equivalent(int(nonzero[-1])) if len(nonzero) else 0

    def copy(self) -> "LatencyHistogram":
        other = LatencyHistogram()
        other.counts[:] = self.counts
        return other
