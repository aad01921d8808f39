"""SQLite engines: writers of several threads take turns (BEGIN IMMEDIATE, busy timeout),
and commits are durable (synchronous=FULL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from syncd.adapters.db import make_engine


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'writers.db'}")
    with made.begin() as connection:
        connection.execute(text("CREATE TABLE counter (thread TEXT, n INTEGER)"))
    return made


def run_threads(*targets: threading.Thread, timeout: float = 60) -> None:
    for thread in targets:
        thread.start()
    for thread in targets:
        thread.join(timeout=timeout)
        assert not thread.is_alive(), f"{thread.name} is stuck"


def test_threads_write_in_turn_without_lock_errors(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for n in range(200):
                with engine.begin() as connection:
                    connection.execute(
                        text("INSERT INTO counter VALUES (:t, :n)"), {"t": name, "n": n}
                    )
        except BaseException as exc:
            errors.append(exc)

    run_threads(*(threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)))
    assert errors == []
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT thread, count(*) FROM counter GROUP BY thread"))
        assert dict(rows.all()) == {f"w{i}": 200 for i in range(4)}


def test_a_rolled_back_transaction_frees_the_lock(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        connection.execute(text("INSERT INTO counter VALUES ('a', 1)"))
        raise RuntimeError("boom")
    done = threading.Event()

    def other() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO counter VALUES ('b', 1)"))
        done.set()

    # A transaction left open would make the other writer wait out the 30 s busy timeout.
    run_threads(threading.Thread(target=other), timeout=10)
    assert done.is_set()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT thread FROM counter")).scalars().all() == ["b"]


def test_commits_are_durable_before_they_return(engine: Engine) -> None:
    """synchronous=FULL in WAL mode: a claim is on disk before its POST can start."""
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
