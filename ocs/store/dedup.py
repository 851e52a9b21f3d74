"""The duplicate cache: the answers given lately, by Origin-Host followed by
the 4 octets of the End-to-End-Identifier (RFC 6733 section 6.2), so that a
retransmitted request gets the original answer and changes nothing. The
key only finds a candidate: the caller confirms that the answer is to the
same request (ocs.gy: its Session-Id, CC-Request-Type and -Number), since
a gateway may reuse an identifier after RFC 6733's four minutes or after
restarting its counter.

An answer is kept for `seconds` (DEFAULT_SECONDS, above the four minutes
RFC 6733 section 3 requires an End-to-End-Identifier to stay unique) and
within two budgets, of entries and of bytes (keys and answers). Two
generations: when the young one holds half of either budget it becomes the
old one and the old one is dropped whole, so the cache keeps between half
and all of the latest answers without evicting one by one; a generation
whose newest answer is past `seconds` is dropped too. Every request of a batch is looked up, and nearly all are new: in
Python dicts of a few hundred thousand keys each miss cost ~170 ns of
cache misses. Here each generation indexes its keys by a 64-bit
fingerprint in an open-addressing table that a compiled loop probes for a
whole batch; a fingerprint that matches is confirmed against the key itself
before its answer is used.
"""
from __future__ import annotations

import numpy as np
from numba import njit

DEFAULT_SECONDS = 600.0
DEFAULT_BYTES = 256 << 20


class _Generation:
    def __init__(self, slots: int):
        self.fp = np.zeros(slots, np.int64)       # 0: an empty slot
        self.at = np.zeros(slots, np.int64)       # where the key and answer are in the lists
        self.keys: list[bytes] = []
        self.answers: list[bytes] = []
        self.times: list[float] = []               # when each answer was given
        self.distinct = 0                          # keys, each counted once
        self.bytes = 0                             # of keys and answers
        self.newest = float("-inf")

    def clear(self) -> None:
        self.fp[:] = 0
        self.keys, self.answers, self.times = [], [], []
        self.distinct = self.bytes = 0
        self.newest = float("-inf")

    def add(self, keys: list[bytes], answers: list[bytes], fps: np.ndarray, now: float) -> None:
        if (len(self.keys) + len(keys)) * 2 > len(self.fp):      # at most half full
            self._grow(len(self.keys) + len(keys))
        self.distinct += _insert(self.fp, self.at, fps, len(self.keys))
        self.keys.extend(keys)
        self.answers.extend(answers)
        self.times.extend([now] * len(keys))
        self.bytes += sum(map(len, keys)) + sum(map(len, answers))
        self.newest = max(self.newest, now)

    def _grow(self, need: int) -> None:
        slots = len(self.fp)
        while need * 2 > slots:
            slots *= 2
        self.fp, self.at = np.zeros(slots, np.int64), np.zeros(slots, np.int64)
        self.distinct = _insert(self.fp, self.at, fingerprints(self.keys), 0)


class DuplicateCache:
    def __init__(self, entries: int, seconds: float = DEFAULT_SECONDS, max_bytes: int = DEFAULT_BYTES):
        self.entries = entries
        self.seconds = seconds
        self.max_bytes = max_bytes
        slots = 1024
        while slots < entries + 2:        # a generation holds about entries/2: at most half full
            slots *= 2
        self.young, self.old = _Generation(slots), _Generation(slots)

    def __len__(self) -> int:
        return self.young.distinct + self.old.distinct

    @property
    def bytes(self) -> int:
        return self.young.bytes + self.old.bytes

    def remember(self, keys: list[bytes], answers: list[bytes], now: float, fps: np.ndarray | None = None) -> None:
        """Keep these answers, given at `now` (a later one for the same key
        wins); `fps`: the keys' fingerprints, if the caller has them."""
        if self.old.newest < now - self.seconds and self.old.keys:
            self.old.clear()
        if not keys:
            return
        self.young.add(list(keys), list(answers), fingerprints(keys) if fps is None else fps, now)
        if self.young.distinct * 2 >= self.entries or self.young.bytes * 2 >= self.max_bytes:
            self.young, self.old = self.old, self.young
            self.young.clear()

    def lookup(self, keys: list[bytes], now: float, fps: np.ndarray | None = None) -> list[bytes | None]:
        """The answer kept for each key, given within `seconds` of `now`, or None."""
        n = len(keys)
        out: list[bytes | None] = [None] * n
        if not n or not len(self):
            return out
        if fps is None:
            fps = fingerprints(keys)
        found = np.empty((2, n), np.int64)
        _find(self.young.fp, self.young.at, fps, found[0])
        _find(self.old.fp, self.old.at, fps, found[1])
        for i in np.flatnonzero(np.maximum(found[0], found[1]) >= 0).tolist():    # rare: a retransmission
            for g, at in ((self.young, int(found[0, i])), (self.old, int(found[1, i]))):
                if at >= 0 and g.keys[at] == keys[i]:
                    if now - g.times[at] <= self.seconds:
                        out[i] = g.answers[at]
                    break
        return out


def fingerprints(keys: list[bytes]) -> np.ndarray:
    """A 64-bit fingerprint of each key, never 0."""
    ends = np.cumsum(np.fromiter(map(len, keys), np.int64, len(keys)))
    return packed_fingerprints(np.frombuffer(b"".join(keys), np.uint8), ends)


def packed_fingerprints(data: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """`fingerprints` of keys laid end to end in `data`, key k ending at ends[k]."""
    out = np.empty(len(ends), np.int64)
    _fingerprints(data, ends, out)
    return out


@njit(cache=True)
def _fingerprints(data, ends, out):
    start = 0
    for k in range(ends.shape[0]):
        h = np.uint64(14695981039346656037)               # FNV-1a,
        for i in range(start, ends[k]):
            h = (h ^ np.uint64(data[i])) * np.uint64(1099511628211)
        h ^= h >> np.uint64(30)                            # then splitmix64's finalizer: the table
        h *= np.uint64(0xBF58476D1CE4E5B9)                 # index is the low bits
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
        fp = np.int64(h)
        out[k] = fp if fp != 0 else 1
        start = ends[k]


@njit(cache=True)
def _insert(table, at, fps, first):
    """Index keys first, first + 1, ... by their fingerprints (a key already
    there now points to its latest answer); the number of new keys."""
    mask = table.shape[0] - 1
    new = 0
    for k in range(fps.shape[0]):
        i = fps[k] & mask
        while table[i] != 0 and table[i] != fps[k]:
            i = (i + 1) & mask
        if table[i] == 0:
            new += 1
        table[i] = fps[k]
        at[i] = first + k
    return new


@njit(cache=True)
def _find(table, at, fps, out):
    mask = table.shape[0] - 1
    for k in range(fps.shape[0]):
        out[k] = -1
        i = fps[k] & mask
        while table[i] != 0:
            if table[i] == fps[k]:
                out[k] = at[i]
                break
            i = (i + 1) & mask


KERNELS = (_insert, _find, _fingerprints)     # what warm_up compiles (ocs/kernels.py)


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) before serving,
    for the array types the charging loop passes too (a writable packed
    buffer: numba compiles read-only and writable arrays apart)."""
    cache = DuplicateCache(4)
    cache.remember([b"k"], [b"a"], 0.0)
    cache.lookup([b"k", b"x"], 0.0)
    fps = packed_fingerprints(np.frombuffer(b"k", np.uint8).copy(), np.ones(1, np.int64))
    cache.remember([b"k"], [b"a"], 0.0, fps)
    cache.lookup([b"k"], 0.0, fps)
