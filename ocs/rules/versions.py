"""Rule versions: kept, and moving the state from one to the next.

Every version the server installs is kept in the data directory
(`DATA/rules/VERSION/*.toml`), so each charge's rule version can be read
back, a journal record "rules version V installed" can be replayed exactly,
and an operator can roll back.

Subscriber rows refer to plans, plan buckets and packs by index; a new
version may reorder or rename them. `migrate` carries each row over by id
and name: a subscriber keeps what it used of bucket "bundle" even if the
bundle is now the second bucket. A version that drops a plan someone is on,
or a pack someone holds, is refused.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from ..durable import fsync_path
from ..engine.tables import HOLDS, PLAN_BUCKETS, SLOT_FREE
from .compile import RuleError, RuleSet, load_rules


def version_dir(data_dir: str | Path, version: str) -> Path:
    return Path(data_dir) / "rules" / version


def keep(data_dir: str | Path, rules: RuleSet) -> Path:
    """Store the files of `rules` under DATA/rules/VERSION (once).

    Safe when several callers keep the same version at once (two uploads,
    an upload and the charging loop's install): each writes its own
    temporary directory and renames it into place; the version is a digest
    of the files, so whoever's rename wins, the kept files are the same,
    and a rename that finds the version already there is a success."""
    target = version_dir(data_dir, rules.version)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        for name, text in rules.files.items():
            with open(tmp / name, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():     # not "someone kept it first": a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_path(target.parent)
    return target


def load_kept(data_dir: str | Path, version: str) -> RuleSet:
    path = version_dir(data_dir, version)
    if not path.is_dir():
        raise RuleError([f"{path}: rules version {version} is not kept in the data directory"])
    return load_rules(path)


def kept_versions(data_dir: str | Path) -> list[str]:
    root = Path(data_dir) / "rules"
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir() and not d.name.endswith(".tmp") and not d.name.startswith(".")]
    return [d.name for d in sorted(dirs, key=lambda d: d.stat().st_mtime)]


def migrate(subs: np.ndarray, sessions: np.ndarray, old: RuleSet, new: RuleSet, retired=()) -> None:
    """Carry the rows over from `old` to `new`. `retired` rows (deleted
    subscribers) hold nothing and keep no plan in use."""
    _migrate_rows(subs, sessions, old, new, np.fromiter(retired, np.int64))
    # sponsor holds follow their contract by id; an ended contract's holds go
    contract_map = np.array([new.sponsor_index.get(sp.id, -1) for sp in old.sponsors] + [-1], dtype=np.int32)
    held = sessions["sp"]
    sessions["sp"] = np.where(held >= 0, contract_map[np.maximum(held, 0)], -1)
    gone = (held >= 0) & (sessions["sp"] < 0)
    sessions["sp_octets"][gone] = 0
    sessions["sp_money"][gone] = 0


def _migrate_rows(subs: np.ndarray, sessions: np.ndarray, old: RuleSet, new: RuleSet, retired: np.ndarray) -> None:
    """Re-index rows (`subs` = the provisioned rows) and sessions from `old`
    to `new`, in place. Raises RuleError, changing nothing, if `new` lacks
    a plan or pack in use."""
    errors = []
    plan_map = np.array([new.plan_index.get(p.id, -1) for p in old.plans] or [-1], dtype=np.int32)
    live = np.ones(len(subs), dtype=bool)
    live[retired[retired < len(subs)]] = False
    used_plans = np.unique(subs["plan"][live]) if live.any() else np.zeros(0, np.int32)
    for p in used_plans.tolist():
        if p < len(old.plans) and plan_map[p] < 0:
            n = int((live & (subs["plan"] == p)).sum())
            errors.append(f"plan {old.plans[p].id!r} is removed, but {n} subscribers are on it")
    pack_map = np.array([new.pack_index.get(p.id, -1) for p in old.packs] + [-1], dtype=np.int32)
    held = np.unique(subs["k_def"][subs["k_def"] >= 0]) if len(subs) else np.zeros(0, np.int32)
    for d in held.tolist():
        if pack_map[d] < 0:
            n = int((subs["k_def"] == d).any(axis=1).sum())
            errors.append(f"pack {old.packs[d].id!r} is removed, but {n} subscribers hold it")
    if errors:
        raise RuleError(errors)

    for p in used_plans.tolist():
        carry_buckets(subs, sessions, np.nonzero(live & (subs["plan"] == p))[0],
                      old.bucket_names[p], new.bucket_names[plan_map[p]])
    defs = subs["k_def"]
    subs["k_def"] = np.where(defs >= 0, pack_map[np.maximum(defs, 0)], -1)
    if len(subs):
        subs["plan"] = plan_map[subs["plan"]]
        subs["plan"][~live & (subs["plan"] < 0)] = 0     # any plan: a retired row is never charged


def carry_buckets(subs: np.ndarray, sessions: np.ndarray, rows: np.ndarray, names_old: list[str],
                  names_new: list[str]) -> np.ndarray:
    """Move the plan-bucket counters of `rows` from buckets `names_old` to
    `names_new`, by name: what was used of "bundle" stays used wherever
    "bundle" now is; a bucket that disappears takes its counters with it.
    Holds of open sessions follow their bucket. Returns the sessions
    changed."""
    if names_old == names_new or not len(rows):
        return np.zeros(0, np.int64)
    perm = [names_old.index(n) if n in names_old else -1 for n in names_new]
    perm += [-1] * (PLAN_BUCKETS - len(perm))
    for field in ("b_used", "b_res"):
        before = subs[field][rows].copy()
        after = np.zeros_like(before)
        for j, i in enumerate(perm):
            if i >= 0:
                after[:, j] = before[:, i]
        subs[field][rows] = after
    # holds on plan buckets (candidates 0-3 and 8-11) follow their bucket
    back = {i: j for j, i in enumerate(perm) if i >= 0}
    open_rows = np.nonzero(np.isin(sessions["sub"], rows))[0]
    for x in open_rows.tolist():
        hc = sessions[x]["hold_c"]
        for slot in range(len(hc)):
            if sessions[x]["rg"][slot] == SLOT_FREE:
                continue
            for k in range(HOLDS):
                c = int(hc[slot, k])
                if c >= 0 and c % 8 < PLAN_BUCKETS:
                    j = back.get(c % 8, -1)
                    if j < 0:
                        hc[slot, k] = -1
                        sessions[x]["hold_v"][slot, k] = 0
                    else:
                        hc[slot, k] = (c // 8) * 8 + j
    return open_rows.astype(np.int64)
