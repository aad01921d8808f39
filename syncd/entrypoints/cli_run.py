"""``syncd run``: the daemon's main thread -- start, wait for a signal, stop cleanly.

Start-up: logging, migrations (under the database's migration lock, so
replicas starting together take turns and the later ones find nothing to do;
on Kubernetes an init container has run ``syncd migrate`` already, and a
database at head is recognised by one ``SELECT`` without importing Alembic), recovery
of leads a crash left in ``sending`` (they become ``uncertain``), the HTTP
port, the webhook receiver (with ``simz.webhook``, on every replica, leader or
not: :mod:`syncd.entrypoints.webhook_http`), the sync leases (several
replicas may share a PostgreSQL database; only a sync's lease holder polls
and delivers it, see :mod:`syncd.services.leadership`), the scheduler, one "syncd started" line.
Then the main thread waits on ``stop``. A second ``syncd run`` on the same
SQLite file is refused (exit 1, one line).

Shutdown (SIGTERM or SIGINT; APScheduler installs no handlers, so we do): the
handler only sets ``stop``. The poll and deliver services receive that event
and stop paging and claiming; the main thread stops the scheduler and waits for
running jobs up to ``daemon.shutdown_grace``, then closes the webhook receiver
(it stops accepting, then finishes the commits under way), the probe port, the
clients and the engine, and logs "syncd stopped". Exit status:

* ``0`` -- every job finished in time; or the grace period ran out but no lead
  is left ``sending`` (e.g. a poll stuck in a slow Salesforce call: the next
  poll reads that window again);
* ``1`` -- the grace period ran out with leads still ``sending``: a warning says
  they become ``uncertain`` at the next start (they may have reached SimZ); also
  a start-up failure (database, port, a write-back field that is missing or
  not updateable: the same line as ``check-config --connect``);
* ``128 + signal`` (130 for SIGINT, 143 for SIGTERM) -- a second signal: exit at
  once, without waiting; leads in ``sending`` become ``uncertain`` at next start.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from syncd import __version__
from syncd.config import Config
from syncd.entrypoints.cli_common import (
    EXIT_FAILURE,
    bound_malloc,
    config_option,
    describe_db_error,
    freeze_startup_objects,
    load_or_exit,
    setup,
)
from syncd.entrypoints.http import ProbeServer, Readiness, serve
from syncd.entrypoints.http_loop import LoopServer
from syncd.entrypoints.scheduler import JobScheduler, PollTracker
from syncd.logs import get_logger

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime
    from syncd.config import SyncConfig
    from syncd.entrypoints.webhook_http import WebhookReceiver
    from syncd.services.stream_board import StreamBoard
    from syncd.services.stream_supervisor import StreamSupervisor

EXIT_OK = 0
EXIT_IN_FLIGHT = 1

log = get_logger("syncd.run")


def count_sending(engine: Engine) -> int | None:
    """Leads in ``sending`` right now, or None if the database cannot say.

    A raw DBAPI read, outside SQLAlchemy's BEGIN IMMEDIATE on SQLite: a job
    stuck past the grace period must not make this wait for its lock.
    """
    try:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT COUNT(*) FROM leads WHERE state = 'sending'")
            row = cursor.fetchone()
            cursor.close()
            connection.rollback()
        finally:
            connection.close()
    except Exception:
        log.warning("cannot count leads in flight", exc_info=True)
        return None
    return int(row[0]) if row else 0


def describe_database(url: str) -> dict[str, str]:
    """The backend and the URL with its password masked, for the start-up line."""
    parsed = make_url(url)
    return {
        "database": parsed.get_backend_name(),
        "database_url": parsed.render_as_string(hide_password=True),
    }


class SignalHandler:
    """First SIGTERM/SIGINT: set ``stop``. Second: exit at once with 128 + signal."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: list[int] = []

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) > 1:
            try:
                log.warning(
                    "second signal, exiting now; leads in flight become uncertain at next start",
                    signal=signal.Signals(signum).name,
                )
                logging.shutdown()
            finally:
                os._exit(128 + signum)
        self.stop.set()


def _flush_and_exit(status: int) -> None:
    """Leave now, even if a job thread is stuck in a network call.

    The executor's worker threads are joined at interpreter exit, so a plain
    ``sys.exit`` would wait for the stuck call; ``os._exit`` does not.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_daemon(config: Config, stop: threading.Event | None = None) -> int:
    """Run until ``stop`` is set (by a signal); return the exit status."""
    from syncd.services.stream_board import StreamBoard

    stop = stop or threading.Event()
    signals = SignalHandler(stop)
    if threading.current_thread() is threading.main_thread():
        signals.install()
    runtime = _start_runtime(config)
    if runtime is None:
        return EXIT_FAILURE
    syncs = [sync for sync in config.syncs if sync.enabled]
    tracker = PollTracker(syncs, runtime.now)
    board = StreamBoard(syncs, runtime.now)
    http = _serve_probes(config, runtime, tracker, board, stop)
    if http is None:
        runtime.close()
        return EXIT_FAILURE
    try:
        webhooks = _receive_webhooks(config, runtime)
    except OSError:
        http.close()
        runtime.close()
        return EXIT_FAILURE
    runtime.check_org_soon()
    if runtime.leadership is not None:
        # Leases before the first poll fires, so the leader polls at once.
        runtime.leadership.start()
    scheduler = JobScheduler(
        syncs,
        poll=runtime.poll_led,
        deliver=runtime.deliver,
        refresh=runtime.refresh_metrics,
        writeback=runtime.writeback,
        call_writeback=runtime.call_writeback,
        reconcile=runtime.reconcile,
        suppression=runtime.read_suppression,
        sources=config.suppression.sources,
        calls=runtime.process_calls if config.simz.webhook is not None else None,
        stop=stop,
        tracker=tracker,
        now=runtime.now,
    )
    runtime.on_call_stored(scheduler.wake_calls)
    scheduler.start()
    streams = _start_streams(syncs, runtime, board, scheduler, stop)
    _log_started(config, runtime, syncs, http.address)

    # Wake up now and then: signal handlers run on the main thread between bytecodes.
    while not stop.wait(0.5):
        pass
    return _stop(config, runtime, signals, scheduler, streams, [webhooks, http])


def _start_streams(
    syncs: list[SyncConfig],
    runtime: Runtime,
    board: StreamBoard,
    scheduler: JobScheduler,
    stop: threading.Event,
) -> StreamSupervisor | None:
    """Start the intake of each streamed sync; None when no sync streams.

    The stream's modules pull in gRPC, protobuf and Avro (about 12 MB of memory):
    a daemon whose syncs all poll never imports them.
    """
    if not any(sync.streamed for sync in syncs):
        return None
    from syncd.services.stream_supervisor import StreamSupervisor

    leadership = runtime.leadership
    streams = StreamSupervisor(
        syncs,
        lambda sync: runtime.stream_intake(sync, board=board, on_queued=scheduler.wake),
        stop,
        leading=leadership.is_leader if leadership is not None else None,
        bound_stop=leadership.stop_event if leadership is not None else None,
    )
    streams.start()
    return streams


def _start_runtime(config: Config) -> Runtime | None:
    """Migrate, recover and wire the parts; None (logged) when the database or a file refuses."""
    from syncd.bootstrap import bootstrap

    try:
        runtime = bootstrap(config, replicas=True)
        freeze_startup_objects()
    except SQLAlchemyError as exc:
        log.error("cannot start: database error", error=describe_db_error(exc))
        return None
    except OSError as exc:
        log.error("cannot start", error=str(exc))
        return None
    refusals = _writeback_refusals(config, runtime)
    if refusals:
        for line in refusals:
            log.error("cannot start", error=line)
        runtime.close()
        return None
    return runtime


def _writeback_refusals(config: Config, runtime: Runtime) -> list[str]:
    """``check-config --connect``'s write-back check: a missing or unwritable field
    refuses the start (every write would fail); Salesforce unreachable does not."""
    from syncd.services.writeback_check import start_refusals

    syncs = [s for s in config.syncs if s.enabled and s.writeback is not None]
    if not syncs:
        return []
    # The writer's own Salesforce session: its login serves the write-backs next.
    found = start_refusals(config, runtime.source(f"writeback:{syncs[0].name}"))
    for problem in found.undescribed:
        log.warning("write-back fields not checked at start", problem=problem)
    return found.problems


def _serve_probes(
    config: Config,
    runtime: Runtime,
    tracker: PollTracker,
    board: StreamBoard,
    stop: threading.Event,
) -> ProbeServer | None:
    """Serve /healthz, /readyz, /status.json and /metrics; None (logged) when the port is taken."""
    host, port = config.observability.host_port
    checks = Readiness(
        runtime.engine,
        tracker,
        runtime.now,
        credentials=runtime.credentials,
        stop=stop,
        login_backoff=runtime.login_backoff,
        streams=board.problems,
        stream_state=board.details,
    )
    try:
        # /readyz: can this replica serve; /status.json: every check, for people.
        return serve(host, port, checks.serving, status=checks)
    except OSError as exc:
        log.error(
            "cannot listen",
            listen=config.observability.listen,
            error=str(exc),
            hint="another process may hold this port (a second replica on this host?): "
            "give each one its own observability.listen",
        )
        return None


def _receive_webhooks(config: Config, runtime: Runtime) -> WebhookReceiver | None:
    """With ``simz.webhook``, receive SimZ's hooks on every replica; ``OSError`` (logged)
    when the port is taken. A new event wakes ``Runtime.wake_calls`` (the scheduler's job)."""
    webhook = config.simz.webhook
    if webhook is None:
        return None
    from syncd.entrypoints.webhook_http import serve_webhooks

    try:
        receiver = serve_webhooks(
            webhook, runtime.session_factory, receiver=runtime.worker, on_stored=runtime.wake_calls
        )
    except OSError as exc:
        log.error(
            "cannot listen",
            listen=webhook.listen,
            error=str(exc),
            hint="another process may hold this port: give each replica on a host its own "
            "simz.webhook.listen",
        )
        raise
    log.info(
        "webhook receiver listening",
        listen=receiver.address,
        public_url=webhook.hook_url(masked=True),
    )
    return receiver


def _log_started(config: Config, runtime: Runtime, syncs: list[SyncConfig], address: str) -> None:
    """The "syncd started" line, then a warning for each setting that risks unlawful calls
    (US numbers without calling hours), so it is seen at every start, not only at a check."""
    log.info(
        "syncd started",
        version=__version__,
        syncs=[sync.name for sync in syncs],
        streamed=[sync.name for sync in syncs if sync.streamed],
        listen=address,
        pid=os.getpid(),
        replica=runtime.worker,
        leading=runtime.leadership.leading() if runtime.leadership is not None else None,
        recovered_uncertain=runtime.recovered,
        **describe_database(config.database.url),
    )
    for sync in syncs:
        for warning in sync.safety_warnings():
            log.warning("configuration warning", sync=sync.name, warning=warning)


def _stop(
    config: Config,
    runtime: Runtime,
    signals: SignalHandler,
    scheduler: JobScheduler,
    streams: StreamSupervisor | None,
    listeners: list[LoopServer | None],
) -> int:
    """Stop within ``daemon.shutdown_grace``; the exit status says whether leads were in flight."""
    grace = config.daemon.shutdown_grace.total_seconds()
    names = [signal.Signals(s).name for s in signals.received]
    log.info("stopping", signal=names[0] if names else None, grace_seconds=grace)
    started = time.monotonic()
    report = scheduler.shutdown(grace)
    # The streams saw ``stop`` too; what they had not committed comes again after a restart.
    still_streaming = (
        streams.join(max(1.0, grace - (time.monotonic() - started))) if streams else []
    )
    if still_streaming:
        log.warning("streams still stopping", still_running=still_streaming)
    # The webhook receiver stops accepting, then finishes the stores under way, before
    # the database closes; until then every replica still took hooks.
    for listener in listeners:
        if listener is not None:
            listener.close()
    if report.clean:
        runtime.close()
        log.info("syncd stopped")
        return EXIT_OK

    in_flight = count_sending(runtime.engine)
    if in_flight == 0:
        log.warning(
            "grace period over with jobs still running; no lead is in flight",
            still_running=report.still_running,
        )
        log.info("syncd stopped")
        _flush_and_exit(EXIT_OK)
    log.warning(
        "grace period over with leads in flight: they will become uncertain at the next start",
        still_running=report.still_running,
        sending=in_flight,
    )
    log.info("syncd stopped")
    _flush_and_exit(EXIT_IN_FLIGHT)
    return EXIT_IN_FLIGHT  # not reached


@click.command("run")
@config_option
@click.pass_context
def run(ctx: click.Context, config_path: Path) -> None:
    """Run the daemon: poll Salesforce and deliver to SimZ on each sync's schedule.

    Applies migrations and recovers leads a crash left in flight (they become
    uncertain), serves /healthz, /readyz, /status.json and /metrics on observability.listen,
    receives SimZ's call-outcome webhooks on simz.webhook.listen when that is set, and
    logs JSON lines to stdout. SIGTERM or SIGINT stops it gracefully within
    daemon.shutdown_grace (exit 0; 1 if leads were left in flight); a second
    signal exits at once.
    """
    bound_malloc()  # before any thread starts
    config = load_or_exit(config_path)
    setup(ctx, config)
    sys.exit(run_daemon(config))
