"""What every ``syncd`` command shares: the config option, exit codes, loading and logging set-up.

The command modules import these from here, and ``syncd.entrypoints.cli`` only
assembles the commands into the ``syncd`` group, so no command module imports
the group and the CLI has no import cycle.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from syncd.config import Config, ConfigError, load_config
from syncd.entrypoints.cli_text import echo
from syncd.logs import configure_logging

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime

EXIT_CONFIG = 2
EXIT_FAILURE = 1

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SYNCD_CONFIG",
    default="config.yaml",
    show_default="$SYNCD_CONFIG or ./config.yaml",
    help="The YAML configuration file.",
)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    echo(f"syncd: {message}", err=True)
    sys.exit(code)


def load_or_exit(path: Path, uses: frozenset[str] | None = None) -> Config:
    """Load the configuration, or print its problems and exit 2.

    ``uses``: the credential sections the command talks to (default: all); the
    secrets of the others may be missing (see :func:`syncd.config.parse_config`).
    """
    try:
        return load_config(path, uses=uses)
    except ConfigError as exc:
        for line in exc.lines:
            echo(line, err=True)
        sys.exit(EXIT_CONFIG)


def setup(
    ctx: click.Context, config: Config | None = None, *, stream: TextIO | None = None
) -> None:
    """Configure logging from the global options and the configuration.

    ``stream`` (default stdout) is where log lines go: stderr for a command whose
    stdout is data (``--json``).
    """
    options: dict[str, Any] = ctx.find_root().params
    fmt = options.get("log_format") or (config.observability.log_format if config else "auto")
    level = options.get("log_level") or (config.observability.log_level if config else "info")
    secrets = config.secret_values() if config else ()
    configure_logging(level=level, fmt=fmt, stream=stream, secrets=secrets)


#: ``mallopt(3)`` parameters, from glibc's ``<malloc.h>``.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: The daemons' malloc arenas: glibc gives each thread that allocates an arena of its
#: own (up to 8 per core), and each keeps the memory freed in it.
MALLOC_ARENAS = 2
#: Allocations from this size up (a Salesforce page's body, its decoded text) get pages
#: of their own, handed back when freed. glibc's default starts here but rises to the
#: largest block freed so far, after which such blocks are carved from the arenas.
MALLOC_MMAP_THRESHOLD = 128 * 1024
#: How an operator chooses glibc's malloc settings instead (they then win).
_MALLOC_ENVIRONMENT = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def bound_malloc() -> bool:
    """Bound what glibc's malloc keeps for the daemons (``syncd run``, ``syncd once``).

    Call it first, before any thread starts. Python hands every object larger than
    512 bytes (Salesforce pages, decoded JSON, SQLite's page caches) to malloc; with
    glibc's defaults each of the daemon's threads (scheduler jobs, the page read-ahead,
    the SimZ sender) gets an arena that keeps what was freed in it, and the big blocks
    of one page are reused for the next from those arenas. Measured on
    ``syncd run`` over 100,000 records (benchmarks/run.py): about 7 MB less peak RSS on
    SQLite, 2 MB on PostgreSQL, at no measurable CPU. Only on glibc, and not when the
    environment sets these itself (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_`` or a ``glibc.malloc`` tunable). True if applied.
    """
    if any(name in os.environ for name in _MALLOC_ENVIRONMENT):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # not a glibc system
        return False
    if not libc.startswith("glibc"):
        return False
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    arenas = int(mallopt(M_ARENA_MAX, MALLOC_ARENAS))
    threshold = int(mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD))
    return arenas == 1 and threshold == 1


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, config, engine) out of the GC's way.

    For the long-running commands (``run``, ``once``), once wiring is done: the
    ~120,000 objects of a started syncd otherwise get walked by every full
    collection, which cost about 5 us per polled record. Frozen objects are still
    freed by reference counting; only the cycle collector stops visiting them.
    """
    gc.freeze()


def describe_db_error(exc: SQLAlchemyError) -> str:
    """One line for a database error, without SQLAlchemy's multi-line background."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"


def open_engine(config: Config) -> Engine:
    from syncd.adapters.db import make_engine

    return make_engine(config.database.url, pool_size=config.database.pool_size)


@contextmanager
def runtime_or_exit(
    config: Config, *, dry_run: bool, now: Callable[[], datetime] | None = None
) -> Iterator[Runtime]:
    """The wired runtime of a command that polls (``once``, ``backfill``), or exit 1.

    No recovery of ``sending`` leads: a daemon may be delivering them right now. A
    dry run reads the database read-only (or a throwaway one when there is none
    yet) and never migrates it, so it writes nothing; the throwaway is removed when
    the block ends. The caller closes the runtime.
    """
    from syncd.adapters.dry_run_db import DryRunDatabaseError, dry_run_engine
    from syncd.adapters.orm import utcnow
    from syncd.bootstrap import bootstrap

    with ExitStack() as stack:
        try:
            engine = stack.enter_context(dry_run_engine(config.database.url)) if dry_run else None
            runtime = bootstrap(
                config,
                recover=False,
                apply_migrations=not dry_run,
                engine=engine,
                now=now or utcnow,
            )
        except DryRunDatabaseError as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            fail(f"cannot open the database: {describe_db_error(exc)}")
        except OSError as exc:
            fail(f"cannot open the database: {exc}")
        yield runtime
