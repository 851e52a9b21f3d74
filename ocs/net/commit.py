"""What crosses from the charging loop to the committer, and what an
operation submitted to the loop holds: named, typed objects (STYLE.md 10)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import trio

from ..diameter.message import Frames


@dataclass(frozen=True, eq=False)
class Arrival:
    """One read's requests: the peer they came from, the frames, when (trio time)."""
    peer: Any           # the connection's Peer (its `ident`, `deliver`)
    frames: Frames
    at: float


@dataclass(frozen=True, eq=False)
class Commit:
    """One turn's work for the committer: a journal record to make durable
    (None: nothing to write), then, once it is durable, the answers to hand
    to their peers (one per request of `arrivals`, in order), the notices to
    announce, the operation to wake and the sessions to re-authorize."""
    record: Any = None
    arrivals: tuple[Arrival, ...] = ()
    answers: tuple[bytes, ...] | list[bytes] = ()
    notices: Any = None
    operation: "Operation | None" = None
    reauthorize: np.ndarray | None = None

    @property
    def requests(self) -> int:
        return len(self.answers)


class Operation:
    """A change run on the charging loop between two batches, `fn(store,
    rules, now) -> operations.Done`; it holds its own result or error, and
    `done` is set once its record is durable (or it failed). Internal
    operations (nobody waits) have no `done`: their failure is logged."""

    def __init__(self, fn: Callable, waited: bool = True):
        self.fn = fn
        self.done: trio.Event | None = trio.Event() if waited else None
        self.result: Any = None
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        self.error = error
        if self.done is not None:
            self.done.set()

    def finish(self) -> None:
        if self.done is not None:
            self.done.set()

    def outcome(self) -> Any:
        """The result, or raise the error (OperationError for a refusal)."""
        if self.error is not None:
            raise self.error
        return self.result
