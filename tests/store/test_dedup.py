"""The duplicate cache against the plain two-generation dict it replaced:
the same answers for any sequence of batches remembered and looked up."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.store.dedup import DuplicateCache, fingerprints


class Reference:
    """Two dicts: when the young one holds half the budget it becomes the old."""

    def __init__(self, entries: int):
        self.entries, self.young, self.old = entries, {}, {}

    def remember(self, keys, answers):
        self.young.update(zip(keys, answers))
        if len(self.young) * 2 >= self.entries:
            self.old, self.young = self.young, {}

    def lookup(self, keys):
        return [self.young.get(k, self.old.get(k)) for k in keys]


KEYS = st.binary(min_size=0, max_size=6)
STEPS = st.lists(st.tuples(st.sampled_from(["remember", "lookup"]), st.lists(KEYS, max_size=40)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3000), STEPS)
def test_the_cache_answers_as_the_dicts_did(entries, steps):
    cache, ref = DuplicateCache(entries), Reference(entries)
    for n, (what, keys) in enumerate(steps):
        if what == "remember":
            answers = [b"%d:" % n + k for k in keys]
            cache.remember(keys, answers)
            ref.remember(keys, answers)
        else:
            assert cache.lookup(keys) == ref.lookup(keys)
    assert len(cache) == len(ref.young) + len(ref.old)


def test_a_fingerprint_that_matches_is_not_taken_for_the_key():
    cache = DuplicateCache(100)
    cache.remember([b"pgw1\x00\x00\x00\x01"], [b"answer"])
    assert cache.lookup([b"pgw1\x00\x00\x00\x01"]) == [b"answer"]
    # another key presented with the same fingerprint: confirmed, and refused
    assert cache.lookup([b"pgw2\x00\x00\x00\x01"], fingerprints([b"pgw1\x00\x00\x00\x01"])) == [None]


def test_a_batch_larger_than_the_table_grows_it():
    cache = DuplicateCache(10)
    keys = [b"k%d" % i for i in range(5000)]
    cache.remember(keys, keys)
    assert cache.lookup(keys[::97]) == keys[::97]
