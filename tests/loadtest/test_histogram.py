"""The log-bucketed histogram against exact percentiles."""
import numpy as np
import pytest

from loadtest.histogram import N_BUCKETS, LatencyHistogram, bucket_of, highest_equivalent, record


def test_buckets_are_contiguous_and_ordered():
    values = np.unique(np.concatenate([np.arange(4096),
                                       np.geomspace(1, 2**39, 5000).astype(np.int64)]))
    buckets = np.array([bucket_of(int(v)) for v in values])
    assert (np.diff(buckets) >= 0).all()
    assert [bucket_of(v) for v in range(256)] == list(range(256))  # exact below 2**8
    for v, b in zip(values, buckets):
        assert v <= highest_equivalent(int(b)) <= v * 1.008 + 1
        assert b == 0 or highest_equivalent(int(b) - 1) < v
    assert bucket_of(2**60) == N_BUCKETS - 1 and bucket_of(-5) == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_percentiles_within_resolution(seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(mean=12, sigma=1.5, size=20_000).astype(np.int64)
    h = LatencyHistogram()
    for v in values:
        record(h.counts, int(v))
    assert h.total == len(values)
    for q in (50, 90, 99, 99.9, 100):
        exact = np.percentile(values, q, method="inverted_cdf")
        assert exact <= h.percentile(q) <= exact * 1.008 + 1, q
    assert h.max() == h.percentile(100)
