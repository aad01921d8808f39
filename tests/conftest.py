"""Shared fixtures (real databases: a SQLite file, and PostgreSQL when configured) and the tiers.

Two tiers (tests/README.md): ``make check`` runs every test that starts no
subprocess and no daemon (``-m "not slow"``); ``make test`` runs everything.
Which tests are slow is decided here, in one place: every test under
``tests/e2e/`` (the CLI in a subprocess), and the few elsewhere named in
:data:`SLOW_ELSEWHERE`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from syncd.adapters.db import make_engine
from syncd.adapters.migrate import upgrade

pytest_plugins = ["tests.simz_fixtures", "tests.salesforce_fixtures"]

POSTGRES_URL = os.environ.get("SYNCD_TEST_POSTGRES_URL")
POSTGRES_SKIP_REASON = (
    "set SYNCD_TEST_POSTGRES_URL=postgresql+psycopg://user@host:5432/db to run PostgreSQL tests"
)
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason=POSTGRES_SKIP_REASON)


#: Tests outside tests/e2e/ that start a subprocess or wait on real timers for seconds
#: (node id prefixes): the slow tier.
SLOW_ELSEWHERE = (
    "tests/integration/test_wheel.py",
    "tests/integration/test_deploy_files.py::TestKubernetes::test_overlay_builds_two_replicas",
    "tests/integration/test_deploy_rollouts.py",
    "tests/integration/test_deploy_monitoring.py::TestBuilt",
    "tests/integration/test_prometheus_rules.py::TestPromtool",
    "tests/integration/test_http_hostile.py::TestSlowClients::test_healthz_answers_under_slowloris",
    "tests/integration/test_salesforce_emulator.py::TestCli",
    "tests/integration/test_salesforce_emulator_writes.py::TestControlAndCli::test_cli_refuses",
    "tests/integration/test_simz_emulator.py::TestCli",
    "tests/integration/test_simz_emulator.py::TestViolationGuard::test_the_fixture_fails_unmarked",
    "tests/unit/test_domain_imports.py",
    "tests/unit/test_pubsub_generated.py",
    "tests/unit/test_cli_lazy.py::test_help_loads_no_command_module",
    # These wait on the stream's real timers (the LATEST settle, the supervisor's restart,
    # stall thresholds, a 3 s flow of events): seconds each, not a subprocess but as slow.
    "tests/integration/test_stream_odd_events.py",
    "tests/integration/test_stream_linger.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tier: tests/e2e/ by folder, the rest by :data:`SLOW_ELSEWHERE`."""
    for item in items:
        if item.nodeid.startswith(("tests/e2e/", *SLOW_ELSEWHERE)):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to the latest schema per session, copied by :func:`engine`."""
    path = tmp_path_factory.mktemp("template") / "syncd.db"
    template = make_engine(f"sqlite:///{path}")
    upgrade(template)
    template.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/syncd.db"


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped on exit
    (the test is skipped when no server is configured)."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs on a SQLite file and on PostgreSQL (skipped when unset)."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(db_url: str, migrated_sqlite: Path) -> Iterator[Engine]:
    """A migrated database on each backend (SQLite: a copy of the session's migrated file)."""
    if db_url.startswith("sqlite:///"):
        target = Path(db_url.removeprefix("sqlite:///"))
        if not target.exists():
            shutil.copyfile(migrated_sqlite, target)
    eng = make_engine(db_url)
    upgrade(eng)  # already at head: a version check
    yield eng
    eng.dispose()
