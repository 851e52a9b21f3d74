import itertools

import pytest

from tests.support.pg import PgPair

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg():
    """A PostgreSQL 15 primary and its synchronous standby, for the session
    (each test takes a database of its own: `cluster_dsn`)."""
    pair = PgPair().start()
    yield pair
    pair.stop()


@pytest.fixture
def cluster_dsn(pg):
    return pg.database(f"ocs_t{next(_names)}")
