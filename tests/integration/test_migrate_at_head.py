"""A database already at head is recognised without Alembic; any other one is migrated.

``syncd run`` and ``syncd once`` migrate at every start. On a database at
:data:`~syncd.adapters.migrate.HEAD_REVISION` that is one plain ``SELECT``, and
Alembic (about 12 MB of memory for the life of the daemon) is never imported;
a fresh database, or one at an older revision, still goes through Alembic under
the migration lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from alembic.util import CommandError
from sqlalchemy import Engine, text

from syncd.adapters import migrate
from syncd.adapters.db import make_engine
from tests.e2e.harness import minimal_config

#: In a fresh interpreter: import the daemons' commands, bootstrap as ``syncd once`` and as
#: ``syncd run`` do, and report the migration's outcome and whether Alembic got imported.
PROBE = """
import json, sys
from syncd.bootstrap import bootstrap
from syncd.config import load_config
import syncd.entrypoints.cli_once, syncd.entrypoints.cli_run
config = load_config(sys.argv[1])
for replicas in (False, True):
    runtime = bootstrap(config, recover=False, replicas=replicas)
    runtime.close()
alembic = sorted(name for name in sys.modules if name.split(".")[0] == "alembic")
print(json.dumps({"alembic": alembic}))
"""


def config_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(minimal_config(url, log_level="warning")), encoding="utf-8")
    return path


def probe(config: Path) -> list[str]:
    """The Alembic modules a fresh interpreter imported while starting on ``config``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alembic: list[str] = json.loads(done.stdout.strip().splitlines()[-1])["alembic"]
    return alembic


def revisions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


class TestStartWithoutAlembic:
    def test_a_database_at_head_starts_without_importing_alembic(
        self, db_url: str, tmp_path: Path
    ) -> None:
        engine = make_engine(db_url)
        try:
            migrate.upgrade(engine)
            assert probe(config_file(tmp_path, db_url)) == []
            assert revisions(engine) == [migrate.HEAD_REVISION]
        finally:
            engine.dispose()

    def test_a_fresh_database_is_migrated_with_alembic(self, db_url: str, tmp_path: Path) -> None:
        """The same probe sees Alembic when there is a migration to run (it can fail)."""
        assert "alembic.command" in probe(config_file(tmp_path, db_url))
        engine = make_engine(db_url)
        try:
            assert revisions(engine) == [migrate.HEAD_REVISION]
        finally:
            engine.dispose()


class TestAtHead:
    def test_fresh_older_and_head(self, db_url: str) -> None:
        """No alembic_version table: not at head; an older revision: not at head; head: yes."""
        engine = make_engine(db_url)
        try:
            assert not migrate.at_head(engine)
            older = migrate.upgrade(engine, "0010")
            assert older.after == "0010"
            assert not migrate.at_head(engine)
            result = migrate.upgrade(engine)
            assert (result.before, result.after) == ("0010", migrate.HEAD_REVISION)
            assert migrate.at_head(engine)
            again = migrate.upgrade(engine)
            assert not again.changed and again.after == migrate.HEAD_REVISION
        finally:
            engine.dispose()

    def test_a_revision_this_syncd_does_not_know_goes_to_alembic(self, db_url: str) -> None:
        """A database a newer syncd migrated is not "at head": Alembic refuses it, as before."""
        engine = make_engine(db_url)
        try:
            migrate.upgrade(engine)
            with engine.begin() as connection:
                connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
            assert not migrate.at_head(engine)
            with pytest.raises(CommandError, match="9999"):
                migrate.upgrade(engine)
        finally:
            engine.dispose()
