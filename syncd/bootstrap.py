"""The one place that wires syncd together: config in, a ready :class:`Runtime` out.

Everything else takes its collaborators as arguments (services take a session
factory and a client, the scheduler takes callables), so tests can wire the
parts differently; only this module knows which concrete adapter goes where.

At start-up, in this order: open the engine, apply the migrations (safe every
time; on a database already at head one ``SELECT``, without importing Alembic:
:func:`syncd.adapters.migrate.upgrade`), turn leads a crashed run left in
``sending`` into ``uncertain`` (:func:`recover_in_flight` -- they may have
reached SimZ, so they are never resent automatically), then build the
Salesforce sources and the SimZ client.

``syncd run`` bootstraps with ``replicas=True``: on SQLite it first takes the
file lock that refuses a second ``syncd run`` on the same database; on
PostgreSQL it skips the global recovery (another replica may be sending right
now) and leaves it to :class:`~syncd.services.leadership.Leadership`, which
recovers a sync's in-flight leads when it takes that sync's lease over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import migrate, writeback_store
from syncd.adapters.canonical_source import CanonicalSource
from syncd.adapters.db import is_sqlite, make_engine, make_session_factory
from syncd.adapters.leases import SqliteRunLock
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import LoginBackoff, SalesforceSource
from syncd.adapters.simz import SimzClient, key_fingerprint
from syncd.config import Config, SyncConfig
from syncd.config.suppression import SuppressionSourceConfig
from syncd.logs import get_logger
from syncd.services.call_processing import CallProcessor, CallsResult
from syncd.services.call_writeback import CallWritebackPass, CallWriter
from syncd.services.deliver import (
    DeliveryResult,
    default_worker,
    deliver_sync,
    recover_in_flight,
)
from syncd.services.known_series import export_known_series
from syncd.services.leadership import Leadership
from syncd.services.org_gate import OrgGate
from syncd.services.poll import PollResult, poll_sync
from syncd.services.reconcile import ReconcileResult
from syncd.services.reconcile_job import scheduled_sweep
from syncd.services.refetch import SalesforceUnreachable, resend_uncertain
from syncd.services.state_metrics import refresh_state_metrics
from syncd.services.stream_poll import poll_range
from syncd.services.suppression_lag import set_max_lag
from syncd.services.suppression_sources import SourceReader, SourceResult
from syncd.services.writeback import WritebackPass, Writer

if TYPE_CHECKING:  # the stream pulls in grpc: imported only by daemons that stream
    from syncd.services.stream import StreamIntake
    from syncd.services.stream_board import StreamBoard

log = get_logger("syncd.bootstrap")


@dataclass
class Runtime:
    """The wired daemon: one engine, one SimZ client, one Salesforce source per sync.

    Each sync gets its own :class:`SalesforceSource` because the polls of
    different syncs run in parallel threads and a source holds one login
    session that it renews on ``INVALID_SESSION_ID``; the SimZ client is shared,
    since its rate limit is per API key, not per sync. Records are read through
    :meth:`reader`, which hands them over in one canonical form.
    """

    config: Config
    engine: Engine
    session_factory: sessionmaker[Session]
    client: SimzClient
    source_factory: Callable[[], SalesforceSource]
    now: Callable[[], datetime] = utcnow
    worker: str = field(default_factory=default_worker)
    recovered: int = 0
    #: Set for ``syncd run``: only the sync's lease holder polls and delivers it.
    leadership: Leadership | None = None
    run_lock: SqliteRunLock | None = None
    #: Refused Salesforce logins, shared by every sync's source (one user, one lockout).
    login_backoff: LoginBackoff = field(default_factory=LoginBackoff)
    #: Delivery runs only against the trusted Salesforce org (set in ``__post_init__``).
    org_gate: OrgGate = field(init=False)
    _sources: dict[str, SalesforceSource] = field(default_factory=dict)
    _readers: dict[str, CanonicalSource] = field(default_factory=dict)
    _writers: dict[str, Writer] = field(default_factory=dict)
    _call_writers: dict[str, CallWriter] = field(default_factory=dict)
    _suppression: dict[str, SourceReader] = field(default_factory=dict)
    _calls: CallProcessor | None = None
    #: Called after the webhook receiver stored a new event (the scheduler's ``wake_calls``).
    _call_wakers: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.org_gate = OrgGate(
            self.session_factory,
            lambda: self.source("org"),
            sandbox_allowed=self.config.salesforce.sandbox == "allow",
            now=self.now,
        )

    def check_org_soon(self) -> None:
        """Read the Salesforce org in the background now, so that the first delivery
        pass does not wait for its login (a pass that comes first waits for it)."""
        threading.Thread(target=self.org_gate.problem, name="org-check", daemon=True).start()

    def source(self, sync: str) -> SalesforceSource:
        with self._lock:
            if sync not in self._sources:
                self._sources[sync] = self.source_factory()
            return self._sources[sync]

    def _led(
        self, sync: SyncConfig, stop: threading.Event | None
    ) -> tuple[bool, threading.Event | None]:
        """Whether this replica runs ``sync``'s leader-only jobs, and the ``stop`` such a
        job watches (also set once the sync's lease is lost, when replicas lead syncs)."""
        if self.leadership is None:
            return True, stop
        if not self.leadership.is_leader(sync.name):
            return False, stop
        return True, self.leadership.stop_event(sync.name, stop)

    def reader(self, sync: SyncConfig, name: str | None = None) -> CanonicalSource:
        """``sync``'s records in canonical form, read through ``source(name or sync.name)``.

        One per source, so each source describes the sync's fields once.
        """
        key = name or sync.name
        source = self.source(key)
        with self._lock:
            if key not in self._readers:
                self._readers[key] = CanonicalSource(source, source.describe_fields, sync)
            return self._readers[key]

    @property
    def credentials(self) -> list[str]:
        """Fingerprints of the SimZ API keys in use (how ``pauses`` names them)."""
        return [key_fingerprint(self.config.simz.api_key.get_secret_value())]

    def poll_led(
        self, sync: SyncConfig, stop: threading.Event | None = None
    ) -> PollResult | Standby:
        """The daemon's poll job: a poll if this replica leads ``sync``, else standby.

        The poll stops between pages as soon as the lease is lost.
        """
        if self.leadership is None:
            return self.poll(sync, stop)
        if not self.leadership.is_leader(sync.name):
            return Standby(sync.name)
        return self.poll(sync, self.leadership.stop_event(sync.name, stop))

    def poll(self, sync: SyncConfig, stop: threading.Event | None = None) -> PollResult:
        """One poll of ``sync``; then, with ``simz.resend_uncertain``, its uncertain leads."""
        result = poll_sync(
            self.session_factory,
            self.reader(sync),
            sync,
            now=self.now,
            stop=stop,
            max_api_usage_percent=self.config.salesforce.max_api_usage_percent,
            limit_pause=self.config.salesforce.limit_pause,
        )
        if self.config.simz.resend_uncertain and result.status == "ok":
            self.resend_uncertain(sync)
        return result

    def resend_uncertain(self, sync: SyncConfig) -> None:
        """Fetch ``sync``'s uncertain leads again and requeue those that pass the rules.

        Never raises: Salesforce or the database being unreachable leaves them
        uncertain until the next poll.
        """
        try:
            resend_uncertain(self.session_factory, self.reader(sync), sync, now=self.now)
        except (SalesforceUnreachable, SQLAlchemyError) as exc:
            log.warning(
                "uncertain leads not resent: cannot fetch their records again",
                sync=sync.name,
                error=str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
            )

    def deliver(self, sync: SyncConfig, stop: threading.Event | None = None) -> DeliveryResult:
        """One delivery pass of ``sync`` (the scheduler's deliver job); only if we lead it,
        and only while Salesforce answers as the trusted org."""
        fence = None
        if self.leadership is not None and not self.leadership.is_leader(sync.name):
            return DeliveryResult(sync=sync.name)
        refused = self.org_gate.problem()
        if refused is not None:
            return DeliveryResult(sync=sync.name, errors=[f"not delivered: {refused}"])
        if self.leadership is not None:
            stop = self.leadership.stop_event(sync.name, stop)
            fence = self.leadership.fence(sync.name)
        return deliver_sync(
            self.session_factory,
            self.client,
            sync,
            self.config.simz,
            now=self.now,
            stop=stop,
            worker=self.worker,
            fence=fence,
        )

    def writer(self, sync: SyncConfig) -> Writer:
        """The sync's write-back sender, with a Salesforce session of its own.

        Its own session because the write-back job runs in parallel with the
        sync's poll and a source is not thread-safe; the API-usage guard reads
        both sessions' last ``Sforce-Limit-Info``.
        """
        own, poll = self.source(f"writeback:{sync.name}"), self.source(sync.name)
        with self._lock:
            writer = self._writers.get(sync.name)
            if writer is None:
                writer = Writer(
                    self.session_factory,
                    own,
                    sync,
                    max_api_usage_percent=self.config.salesforce.max_api_usage_percent,
                    usage=poll.api_usage,
                    now=self.now,
                )
                self._writers[sync.name] = writer
            return writer

    def writeback(
        self, sync: SyncConfig, stop: threading.Event | None = None
    ) -> WritebackPass | None:
        """One write-back pass of ``sync`` (the scheduler's job); only if we lead it."""
        if sync.writeback is None:
            return None
        leading, stop = self._led(sync, stop)
        if not leading:
            return None
        return self.writer(sync).run(stop)

    def call_writer(self, sync: SyncConfig) -> CallWriter:
        """The sync's call write-back sender, with a Salesforce session of its own (its job
        runs in parallel with the poll and write-back); the API-usage guard reads the poll's."""
        own, poll = self.source(f"call-writeback:{sync.name}"), self.source(sync.name)
        with self._lock:
            writer = self._call_writers.get(sync.name)
            if writer is None:
                writer = CallWriter(
                    self.session_factory,
                    own,
                    sync,
                    max_api_usage_percent=self.config.salesforce.max_api_usage_percent,
                    usage=poll.api_usage,
                    now=self.now,
                )
                self._call_writers[sync.name] = writer
            return writer

    def call_writeback(
        self, sync: SyncConfig, stop: threading.Event | None = None
    ) -> CallWritebackPass | None:
        """One call write-back pass of ``sync`` (the scheduler's job); only if we lead it."""
        if sync.call_writeback is None:
            return None
        leading, stop = self._led(sync, stop)
        if not leading:
            return None
        return self.call_writer(sync).run(stop)

    def reconcile(
        self, sync: SyncConfig, stop: threading.Event | None = None
    ) -> ReconcileResult | None:
        """One scheduled reconciliation sweep of ``sync`` (the scheduler's job); only if we
        lead it, and only while we do (it stops between pages once the lease is lost)."""
        if sync.reconcile is None:
            return None
        leading, stop = self._led(sync, stop)
        if not leading:
            return None
        return scheduled_sweep(self, sync, self.config.salesforce, stop)

    def stream_intake(
        self,
        sync: SyncConfig,
        *,
        board: StreamBoard | None = None,
        on_queued: Callable[[str], None] | None = None,
    ) -> StreamIntake:
        """The Pub/Sub intake of a streamed sync (``source.mode: stream``).

        It has two Salesforce sources of its own: one whose session the gRPC
        calls carry (the subscriber's thread logs in again with it), one for the
        ``WHERE Id IN`` reads and the gap reconciliation (the intake's thread);
        the sync's poll job keeps its own.
        """
        from syncd.adapters.pubsub import PubSubSubscriber
        from syncd.services.stream import StreamIntake

        auth = self.source(f"{sync.name}#pubsub")
        reader = self.reader(sync, f"{sync.name}#stream")
        salesforce = self.config.salesforce
        subscriber = PubSubSubscriber(
            salesforce.pubsub_url,
            sync.topic,
            lambda renew: auth.session(renew=renew),
            ca_bundle=salesforce.ca_bundle,
            keepalive_timeout=sync.source.keepalive_timeout.total_seconds(),
            id_field=sync.source.id_field,
            call_timeout=salesforce.timeout,
        )

        def reconcile(start: datetime, end: datetime) -> PollResult:
            return poll_range(
                self.session_factory,
                reader,
                sync,
                start,
                end,
                now=self.now,
                max_api_usage_percent=salesforce.max_api_usage_percent,
                limit_pause=salesforce.limit_pause,
            )

        return StreamIntake(
            self.session_factory,
            sync,
            subscriber,
            reader,
            reconcile=reconcile,
            board=board,
            on_queued=on_queued,
            now=self.now,
            linger=sync.delivery.linger.total_seconds(),
            max_linger=sync.source.max_linger.total_seconds(),
            max_api_usage_percent=salesforce.max_api_usage_percent,
        )

    def read_suppression(
        self, source: SuppressionSourceConfig, stop: threading.Event | None = None
    ) -> SourceResult:
        """One read of a suppression source (the scheduler's job), if no other replica has it.

        Its own Salesforce session: the job runs in parallel with the polls.
        """
        with self._lock:
            reader = self._suppression.get(source.name)
        if reader is None:
            reader = SourceReader(
                self.session_factory,
                self.source(source.key),
                source,
                region=self.config.default_region,
                holder=self.worker,
                now=self.now,
            )
            with self._lock:
                reader = self._suppression.setdefault(source.name, reader)
        return reader.run(stop)

    def on_call_stored(self, waker: Callable[[], None]) -> None:
        """Have ``waker`` called each time the webhook receiver stores a new event."""
        self._call_wakers.append(waker)

    def wake_calls(self) -> None:
        """A new call-outcome webhook was committed: process it now (any thread)."""
        for waker in list(self._call_wakers):
            waker()

    def process_calls(self, stop: threading.Event | None = None) -> CallsResult | None:
        """Process the stored call-outcome webhooks (the scheduler's ``calls`` job), if this
        replica holds their lease; None without ``simz.webhook``."""
        webhook = self.config.simz.webhook
        if webhook is None:
            return None
        with self._lock:
            if self._calls is None:
                self._calls = CallProcessor(
                    self.session_factory,
                    webhook,
                    self.config.syncs,
                    holder=self.worker,
                    now=self.now,
                )
            processor = self._calls
        return processor.run(stop)

    def refresh_metrics(self) -> None:
        """Refresh the gauges read from the database."""
        refresh_state_metrics(self.session_factory, self.config)

    def close(self) -> None:
        """Close the clients and the engine; each step runs even if another fails.

        Called after a clean stop only: the leases are released, so another
        replica takes over at once instead of after the lease's expiry.
        """
        if self.leadership is not None:
            self.leadership.close(release=True)
        for reader in list(self._suppression.values()):
            reader.close()
        if self._calls is not None:
            self._calls.close()
        with self._lock:
            sources = list(self._sources.values())
            self._sources.clear()
            self._readers.clear()
        closables: list[SalesforceSource | SimzClient] = [*sources, self.client]
        for closable in closables:
            try:
                closable.close()
            except Exception:
                log.warning("close failed", what=type(closable).__name__, exc_info=True)
        self.engine.dispose()
        if self.run_lock is not None:
            self.run_lock.release()


@dataclass(frozen=True)
class Standby:
    """A poll skipped because another replica leads the sync (healthy, not stale)."""

    sync: str
    status: str = "standby"


def bootstrap(
    config: Config,
    *,
    apply_migrations: bool = True,
    recover: bool = True,
    engine: Engine | None = None,
    client: SimzClient | None = None,
    source_factory: Callable[[], SalesforceSource] | None = None,
    now: Callable[[], datetime] = utcnow,
    replicas: bool = False,
) -> Runtime:
    """Wire a :class:`Runtime` from ``config``; migrations and recovery run here.

    With ``replicas`` (``syncd run``) the runtime gets a :class:`Leadership`
    (not started yet); see the module docstring.

    Raises SQLAlchemy's errors (database unreachable, migration failed) and
    ``OSError`` (e.g. the SQLite folder cannot be created, or
    :class:`~syncd.adapters.leases.AnotherReplicaRunning`) for the caller to
    report; nothing is left open when it raises.
    """
    engine, run_lock = _open_engine(config, engine, replicas)
    try:
        single = not replicas or is_sqlite(engine)
        session_factory, recovered = _prepare(
            engine, config, apply_migrations=apply_migrations, recover=recover and single, now=now
        )
        simz = client or SimzClient(config.simz)
    except BaseException:
        engine.dispose()
        if run_lock is not None:
            run_lock.release()
        raise
    leadership = None
    if replicas:
        # On SQLite the file lock proves every earlier holder is gone: take the
        # leases at once instead of waiting for the dead run's leases to expire.
        leadership = Leadership(
            session_factory, config.syncs, config.daemon, force_first=is_sqlite(engine), now=now
        )
    # Every counter's series at 0 from the first scrape: alerts on increase() see a first failure.
    export_known_series(config)
    set_max_lag(config.suppression.max_lag)
    login_backoff = LoginBackoff()
    factory = source_factory or (
        lambda: SalesforceSource(config.salesforce, login_backoff=login_backoff)
    )
    return Runtime(
        login_backoff=login_backoff,
        config=config,
        engine=engine,
        session_factory=session_factory,
        client=simz,
        source_factory=factory,
        now=now,
        recovered=recovered,
        leadership=leadership,
        run_lock=run_lock,
        worker=leadership.replica if leadership is not None else default_worker(),
    )


def _open_engine(
    config: Config, engine: Engine | None, replicas: bool
) -> tuple[Engine, SqliteRunLock | None]:
    """Take ``syncd run``'s file lock (SQLite), then open the engine; on error no lock is held."""
    run_lock = SqliteRunLock.for_url(config.database.url) if replicas else None
    if run_lock is not None:
        run_lock.acquire()
    try:
        opened = engine or make_engine(config.database.url, pool_size=config.database.pool_size)
    except BaseException:
        if run_lock is not None:
            run_lock.release()
        raise
    return opened, run_lock


def _prepare(
    engine: Engine,
    config: Config,
    *,
    apply_migrations: bool,
    recover: bool,
    now: Callable[[], datetime],
) -> tuple[sessionmaker[Session], int]:
    """Migrate, install the write-back queueing, recover in-flight leads: the session factory."""
    if apply_migrations:
        result = migrate.upgrade(engine)
        if result.changed:
            log.info("database migrated", from_revision=result.before, to_revision=result.after)
    session_factory = make_session_factory(engine)
    # State changes of these syncs queue their write-backs in the same transaction.
    writeback_store.install(session_factory, config.syncs)
    # Logs an error naming the count and the operator's next step when > 0.
    recovered = recover_in_flight(session_factory, now=now) if recover else 0
    return session_factory, recovered
