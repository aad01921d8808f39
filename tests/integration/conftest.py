"""Fixtures shared by the integration tests (the databases come from ``tests/conftest.py``)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.db import make_session_factory


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """Sessions on :func:`tests.conftest.engine`'s migrated database, on each backend."""
    return make_session_factory(engine)
