"""What a gateway is told with each grant besides the units (3GPP TS 32.299
7.2.148 Quota-Holding-Time, 7.2.221 Volume-Quota-Threshold, inside the MSCC):
per plan and rating group, from the plan's `[[plan.quota]]` entries. An
entry naming rating groups applies to them (the first such entry wins); an
entry without applies to the plan's other rating groups. A threshold is a
volume ("2 MB") or a share of each grant ("20%"); a threshold not below
the grant is not sent (the gateway would ask again at once)."""
from __future__ import annotations

import re

import numpy as np

from . import schema as S
from .units import parse_volume

_PERCENT = re.compile(r"^\s*(\d{1,3})\s*%\s*$")


class QuotaOptions:
    """Compiled: (plan, rating group) keys sorted, with the plan's default."""

    def __init__(self):
        self._keys: list[int] = []
        self._vals: list[tuple[int, int, int]] = []     # (holding time s, threshold octets, threshold percent)
        self.defaults: list[tuple[int, int, int]] = []  # per plan
        self.keys = np.zeros(0, np.int64)
        self.vals = np.zeros((0, 3), np.int64)
        self.plan_defaults = np.zeros((0, 3), np.int64)

    @staticmethod
    def _value(q: S.Quota, where, key: str) -> tuple[int, int, int] | None:
        octets = percent = 0
        if isinstance(q.threshold, str) and _PERCENT.match(q.threshold):
            percent = int(_PERCENT.match(q.threshold).group(1))
            if not 0 < percent < 100:
                where(f"{key}.threshold", f"a share of the grant from 1% to 99%, not {q.threshold!r}")
                return None
        elif q.threshold is not None:
            try:
                octets = parse_volume(q.threshold)
            except ValueError as e:
                where(f"{key}.threshold", f"a volume (\"2 MB\") or a share of the grant (\"20%\"): {e}")
                return None
        return (q.holding_time or 0, octets, percent)

    def add_plan(self, plan_row: int, p: S.Plan, where, key: str) -> None:
        """`where(key path, message)` records an error."""
        default = (0, 0, 0)
        seen: set[int] = set()
        for k, q in enumerate(p.quota):
            value = self._value(q, where, f"{key}.quota[{k}]")
            if value is None:
                continue
            if q.rating_groups is None:
                default = value if default == (0, 0, 0) else default
                continue
            for rg in q.rating_groups:
                if rg not in seen:
                    seen.add(rg)
                    self._keys.append((plan_row << 32) | rg)
                    self._vals.append(value)
        self.defaults.append(default)

    def finish(self) -> None:
        order = np.argsort(np.array(self._keys, np.int64), kind="stable")
        self.keys = np.array(self._keys, np.int64)[order]
        self.vals = np.array(self._vals, np.int64).reshape(-1, 3)[order]
        self.plan_defaults = np.array(self.defaults, np.int64).reshape(-1, 3)

    @property
    def any(self) -> bool:
        return bool(len(self.keys)) or bool(self.plan_defaults.any())

    def for_grants(self, plans: np.ndarray, rgs: np.ndarray, granted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Quota-Holding-Time, Volume-Quota-Threshold) for grants of `granted`
        octets of rating groups `rgs` on plans `plans`; 0: not sent."""
        vals = self.plan_defaults[plans]
        if len(self.keys):
            want = (plans.astype(np.int64) << 32) | rgs
            at = np.minimum(np.searchsorted(self.keys, want), len(self.keys) - 1)
            hit = self.keys[at] == want
            vals = np.where(hit[:, None], self.vals[at], vals)
        threshold = np.where(vals[:, 2] > 0, granted * vals[:, 2] // 100, vals[:, 1])
        threshold = np.where(threshold < granted, threshold, 0)
        return np.where(granted > 0, vals[:, 0], 0), threshold
