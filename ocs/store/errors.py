"""What the cluster store raises, without importing its driver (the
charging loop of an embedded server catches these too)."""


class StoreUnavailable(OSError):
    """PostgreSQL cannot be reached or refused the write; nothing of it was
    acknowledged (OSError: the charging loop holds the answers and answers
    new requests 3004 until it can write again)."""


class Fenced(Exception):
    """Another node took this node's slots over (its epoch moved on): this
    process must not write again. Not an OSError: nothing retries it; the
    node stops, and starts again as a new member."""
