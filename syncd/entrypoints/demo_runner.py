"""``syncd demo``: the whole pipeline against the built-in emulators, in one process.

What a newcomer should see in well under a minute, without credentials and
without any network beyond loopback:

1. both emulators start (Salesforce over HTTPS with a CA generated for the
   run, SimZ over HTTP) and the Salesforce one is seeded with realistic
   Lead records from :func:`demo_leads` -- some with unusable phones, some
   DoNotCall, some sharing a number -- and their owners from :func:`demo_users`;
2. a real configuration file and a SQLite database are written to a fresh
   temporary folder, and the daemon is wired from that file by the same
   :func:`syncd.bootstrap.bootstrap` and :class:`JobScheduler` that
   ``syncd run`` uses, with short intervals;
3. while it runs, a few more records are added (the next poll finds them) and
   two SimZ faults are injected -- a 429 with ``Retry-After: 1`` and one lost
   answer -- so that the retry and the ``uncertain`` state can be seen;
4. once nothing is left queued or sending, it opens the Pub/Sub stream of the
   sync (as ``source.mode: stream`` does), creates one more record and shows it
   reaching SimZ within about a second: change event, read, queued, delivery
   woken at once;
5. it prints a summary read from the database and the commands to explore what
   it left behind (:mod:`.demo_report`).

Why the folder is kept by default: the summary ends with ``syncd status``,
``syncd leads`` and ``syncd requeue`` commands that point at its config file,
and they are only useful while that folder exists. ``--no-keep`` removes it.

The seeded records are stamped a few minutes in the past and the demo's sync
starts ten minutes back, so its first poll finds them. A real sync defaults to
``start_at: now`` (docs/design.md#safe-first-start) and never dials an org's history.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import Batch, Lead, Writeback
from syncd.config import Config, SyncConfig, load_config
from syncd.domain.states import LeadState
from syncd.entrypoints.demo_calls import (
    CALL_DELAY,
    CALL_WRITEBACK,
    CallsSummary,
    free_loopback_port,
    start_receiver,
    wait_for_calls,
    webhook_section,
)
from syncd.entrypoints.demo_report import DemoSummary, describe_batch, read_outcomes, render_summary
from syncd.sandbox.demo_data import demo_leads, demo_users, lead_record
from syncd.sandbox.example import example_sync
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.simz import SimzEmulator
from syncd.sandbox.simz_calls import CallSettings
from syncd.services.poll import PollResult

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime
    from syncd.entrypoints.scheduler import JobScheduler

__all__ = ["Demo", "DemoOptions", "DemoSummary", "command_prefix", "render_summary"]

SYNC_NAME = "demo-leads"
API_KEY = "demo-simz-key"
#: Country -> SimZ agent (the demo routes by a field, as a real sync may).
AGENTS = {"US": "agt_us", "GB": "agt_uk"}
POLL_EVERY = 2
DELIVER_EVERY = 1
BATCH_SIZE = 20
#: How far back the demo's sync starts, and the span the seeded stamps cover.
START_BACK = timedelta(minutes=10)
SEED_SPAN = timedelta(minutes=5)
#: Records added while the daemon runs (each with its own fictional number).
ADDED = 5
#: Where the demo writes each lead's outcome back (custom fields of the emulated org).
WRITEBACK_FIELDS = {
    "status": "SimZ_Status__c",
    "batch_id": "SimZ_Batch_Id__c",
    "sent_at": "SimZ_Sent_At__c",
    "error": "SimZ_Error__c",
}
WRITEBACK_STATES = ["accepted", "rejected", "uncertain", "failed", "invalid", "skipped"]
CUSTOM_FIELDS = (
    "Lead.SimZ_Status__c:picklist:40",
    "Lead.SimZ_Batch_Id__c:string:255",
    "Lead.SimZ_Sent_At__c:datetime",
    "Lead.SimZ_Error__c:string:255",
)
#: How many written-back records the summary shows (one per state, as far as there are).
WRITEBACK_EXAMPLES = 4
#: Seeds the emulator's calls: the same leads get the same outcomes on every run.
CALL_SEED = 25
#: The daemon's log file in the demo's folder.
LOG_FILE = "syncd.log"
#: Leads in a state the outbox still owns; the demo ends when there are none.
OPEN_STATES = (LeadState.QUEUED.value, LeadState.SENDING.value)


@dataclass(frozen=True)
class DemoOptions:
    """What the command line can change."""

    leads: int = 200
    keep: bool = True
    quiet: bool = False
    timeout: float = 90.0
    #: The daemon's log lines go to ``syncd.log`` in the demo's folder, at this level.
    log_level: str = "warning"


def seed_records(count: int, now: datetime) -> list[dict[str, Any]]:
    """``count`` demo leads stamped between ``SEED_SPAN`` ago and ten seconds ago, in order."""
    records = list(demo_leads(count))
    oldest = now - SEED_SPAN
    step = (SEED_SPAN - timedelta(seconds=10)) / max(count, 1)
    for index, record in enumerate(records):
        stamp = oldest + step * index
        record["CreatedDate"] = stamp.isoformat()
        record["SystemModstamp"] = stamp.isoformat()
    return records


def added_records(count: int = ADDED) -> list[dict[str, Any]]:
    """Records a user creates while the demo runs: valid, with numbers no seed uses.

    Area code 720 is not among the seeded ones, and 555-01xx lines are reserved
    for fiction. No stamp: the emulator stamps them "now", like Salesforce.
    """
    import random

    rng = random.Random(99)
    owners = demo_users().ids
    return [
        lead_record(rng, 10_000 + n, owners, phone=f"+1 720 555 01{n:02d}", country="US")
        for n in range(count)
    ]


def demo_config_data(
    workdir: Path,
    salesforce: SalesforceEmulator,
    simz: SimzEmulator,
    start_at: datetime,
    hook_port: int,
) -> dict[str, Any]:
    """The configuration file the demo runs from (the same schema as production)."""
    return {
        "database": {"url": f"sqlite:///{workdir / 'syncd.db'}"},
        "salesforce": {
            "auth": {
                "method": "password",
                "username": salesforce.username,
                "password": salesforce.password,
                "security_token": salesforce.security_token,
            },
            "login_url": salesforce.url,
            "ca_bundle": str(salesforce.ca_file),
            "pubsub_url": salesforce.pubsub_address,
            "timeout": 10,
        },
        "simz": {
            "base_url": simz.url,
            "api_key": API_KEY,
            "timeout": {"connect": 2, "read": 10},
            "batch_size": BATCH_SIZE,
            "requests_per_second": 50,
            "backoff": {"initial": "1s", "max": "5s", "multiplier": 2},
            "webhook": webhook_section(hook_port),
        },
        "syncs": [
            example_sync(
                SYNC_NAME,
                schedule={"every": f"{POLL_EVERY}s"},
                delivery={"every": f"{DELIVER_EVERY}s"},
                start_at=start_at.isoformat(timespec="seconds"),
                lookback="10m",
                lag="1s",
                route={"field": "Country", "values": dict(AGENTS)},
                # Above the most the demo seeds (2,000): the guard is not what it shows.
                guard={"max_new_per_poll": 5000},
                writeback={"fields": dict(WRITEBACK_FIELDS), "states": WRITEBACK_STATES},
                call_writeback=dict(CALL_WRITEBACK),
            )
        ],
        "observability": {"listen": "127.0.0.1:0", "log_format": "auto", "log_level": "warning"},
        "daemon": {"shutdown_grace": "10s"},
    }


def command_prefix() -> str:
    """How to call ``syncd`` from this shell: plain ``syncd`` when it is on PATH.

    ``make demo`` runs ``.venv/bin/syncd``, which is usually not on PATH, so
    the printed commands name it by its (relative) path.
    """
    here = Path(sys.executable).parent / "syncd"
    if not here.exists():
        return "syncd"
    found = shutil.which("syncd")
    if found and Path(found).resolve() == here.resolve():
        return "syncd"
    try:
        relative = os.path.relpath(here)
    except ValueError:
        return str(here)
    return relative if not relative.startswith("..") else str(here)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min ago" if seconds >= 120 else f"{seconds} s ago"


class Demo:
    """One run of the demo; :meth:`run` returns the summary, ``echo`` prints progress."""

    def __init__(self, options: DemoOptions, echo: Callable[[str], None]) -> None:
        self.options = options
        self._echo = echo
        self._lock = threading.Lock()
        self._polls = 0
        self._added = 0
        self._added_ids: list[str] = []
        self._seen_batches: set[int] = set()
        self._salesforce: SalesforceEmulator | None = None
        self._simz: SimzEmulator | None = None
        self._session_factory: sessionmaker[Session] | None = None
        self._calls: CallsSummary | None = None

    # ------------------------------------------------------------------ output

    def say(self, line: str = "") -> None:
        """A progress line (not with --quiet)."""
        if not self.options.quiet:
            with self._lock:
                self._echo(line)

    # ------------------------------------------------------------------ the run

    def run(self) -> DemoSummary:
        workdir = Path(tempfile.mkdtemp(prefix="syncd-demo-"))
        started = time.monotonic()
        try:
            with ExitStack() as stack:
                self._log_to(workdir / LOG_FILE, stack)
                salesforce, simz = self._start_emulators(workdir, stack)
                now = datetime.now(UTC)
                records = seed_records(self.options.leads, now)
                salesforce.add_records([*demo_users().records, *records])
                start_at = (now - START_BACK).replace(microsecond=0)
                config_path = workdir / "config.yaml"
                data = demo_config_data(workdir, salesforce, simz, start_at, free_loopback_port())
                config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
                config = load_config(config_path)
                self._introduce(workdir, salesforce, simz, len(records), config, now)
                simz.inject("429", retry_after=1)
                simz.inject("lost_response")
                self.say(
                    "  faults: SimZ answers the first request with 429 Retry-After: 1 "
                    "and loses the answer to the second"
                )
                self.say()
                idle = self._run_daemon(config)
                elapsed = time.monotonic() - started
                summary = self._summarise(workdir, config_path, config, len(records), idle, elapsed)
        except BaseException:
            if not self.options.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            raise
        if not self.options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return summary

    def _log_to(self, path: Path, stack: ExitStack) -> None:
        """The daemon's log lines to a file in the folder: none interrupts the narrative."""
        from syncd.logs import configure_logging

        out = stack.enter_context(path.open("a", encoding="utf-8"))
        configure_logging(level=self.options.log_level, fmt="json", stream=out)
        stack.callback(configure_logging, level=self.options.log_level, stream=sys.stderr)

    def _start_emulators(
        self, workdir: Path, stack: ExitStack
    ) -> tuple[SalesforceEmulator, SimzEmulator]:
        salesforce = SalesforceEmulator(
            cert_dir=workdir / "salesforce-ca", custom_fields=CUSTOM_FIELDS
        )
        salesforce.start()
        stack.callback(salesforce.stop)
        # Each accepted lead's call reports back; seeded, so a run repeats its calls.
        calls = CallSettings(delay=CALL_DELAY, seed=CALL_SEED)
        simz = SimzEmulator(api_key=API_KEY, agents=AGENTS.values(), calls=calls)
        simz.start()
        stack.callback(simz.stop)
        self._salesforce, self._simz = salesforce, simz
        return salesforce, simz

    def _introduce(
        self,
        workdir: Path,
        salesforce: SalesforceEmulator,
        simz: SimzEmulator,
        seeded: int,
        config: Config,
        now: datetime,
    ) -> None:
        sync = config.sync(SYNC_NAME)
        assert isinstance(sync.start_at, datetime)
        self.say("syncd demo: Salesforce -> syncd -> SimZ, against the built-in emulators")
        self.say("  (no credentials, loopback only; nothing here calls anybody)")
        self.say()
        self.say(f"  folder      {workdir}")
        self.say(
            f"  daemon log  {workdir / LOG_FILE}  (JSON lines, {self.options.log_level} and above)"
        )
        self.say(f"  Salesforce  {salesforce.url}  (HTTPS; CA {salesforce.ca_file})")
        self.say(f"  SimZ        {simz.url}  (agents {', '.join(AGENTS.values())})")
        self.say(
            f"  seeded      {seeded} Lead records (SystemModstamp {_ago(SEED_SPAN)} .. 10 s ago)"
            f" and {len(demo_users().records)} User records"
        )
        self.say(
            f"  sync        {sync.name}: start_at {_ago(now - sync.start_at)}, poll every "
            f"{POLL_EVERY} s, deliver every {DELIVER_EVERY} s, batches of {BATCH_SIZE}, "
            f"route by Country ({', '.join(f'{k} -> {v}' for k, v in AGENTS.items())})"
        )
        webhook = config.simz.webhook
        if webhook is not None:
            self.say(
                f"  calls       SimZ posts each accepted lead's call outcome {CALL_DELAY} s later"
                f" to {webhook.public_url}; syncd writes a Task on the record"
            )
        self.say("              (start_at is in the past only so the first poll finds the seeded")
        self.say("              records; a real sync defaults to start_at: now and never dials")
        self.say("              the org's history)")

    def _run_daemon(self, config: Config) -> bool:
        """The daemon's own wiring and scheduler, until the outbox is idle; True if it got there."""
        from syncd.bootstrap import bootstrap
        from syncd.entrypoints.scheduler import JobScheduler

        # As `syncd run` does: the SQLite run lock, the sync leases, polls by the leader.
        runtime = bootstrap(config, replicas=True)
        self._session_factory = runtime.session_factory
        receivers = ExitStack()
        receiver = start_receiver(config, runtime, receivers)
        syncs = [sync for sync in config.syncs if sync.enabled]
        runtime.check_org_soon()
        if runtime.leadership is not None:
            runtime.leadership.start()

        def poll(sync: SyncConfig, stop: threading.Event) -> Any:
            result = runtime.poll_led(sync, stop)
            if isinstance(result, PollResult):
                self._after_poll(result)
            return result

        def deliver(sync: SyncConfig, stop: threading.Event) -> Any:
            result = runtime.deliver(sync, stop)
            self._after_deliver()
            return result

        stop = threading.Event()
        scheduler = JobScheduler(
            syncs,
            poll=poll,
            deliver=deliver,
            writeback=runtime.writeback,
            call_writeback=runtime.call_writeback,
            calls=runtime.process_calls if config.simz.webhook is not None else None,
            refresh=runtime.refresh_metrics,
            stop=stop,
            now=runtime.now,
        )
        runtime.on_call_stored(scheduler.wake_calls)
        self.say(
            "running the daemon (the scheduler and wiring of `syncd run`) until nothing is queued"
            " and every outcome is written back to Salesforce:"
        )
        deadline = time.monotonic() + self.options.timeout
        idle = False
        scheduler.start()
        try:
            while time.monotonic() < deadline:
                if self._idle():
                    idle = True
                    break
                time.sleep(0.2)
            if idle:
                self._stream_step(runtime, scheduler)
                if self._simz is not None:
                    self._calls = wait_for_calls(self._simz, config, receiver)
        finally:
            report = scheduler.shutdown(config.daemon.shutdown_grace.total_seconds())
            receivers.close()
            self._after_deliver()  # a batch that finished during shutdown
            if not report.clean:
                self.say(f"  still running at shutdown: {', '.join(report.still_running)}")
            runtime.close()
        if not idle:
            self.say(f"  the outbox was not idle after {self.options.timeout:.0f} s; stopped")
        return idle

    def _stream_step(self, runtime: Runtime, scheduler: JobScheduler) -> None:
        """Open the sync's stream, create one record, show it reaching SimZ at once."""
        from syncd.services.stream_board import StreamBoard

        salesforce, simz = self._salesforce, self._simz
        assert salesforce is not None and simz is not None
        sync = runtime.config.sync(SYNC_NAME)
        stop = threading.Event()
        intake = runtime.stream_intake(sync, board=StreamBoard([]), on_queued=scheduler.wake)
        thread = threading.Thread(target=intake.run, args=(stop,), name="demo-stream")
        self.say()
        self.say(f"opening the Pub/Sub stream ({sync.topic} on {salesforce.pubsub_address}):")
        thread.start()
        try:
            if not _wait(lambda: salesforce.subscribe_log(), 15.0):
                self.say("  the stream did not open; skipped")
                return
            [record_id] = salesforce.add_records(added_records(ADDED + 1)[ADDED:])
            created = time.monotonic()
            with self._lock:
                self._added_ids.append(record_id)
                self._added += 1
            self.say(f"  + 1 new Lead record created in Salesforce: {record_id}")
            if _wait(lambda: record_id in simz.received_counts(), 15.0):
                seconds = time.monotonic() - created
                self.say(
                    f"  stream: it reached SimZ {seconds:.2f} s after it was created "
                    "(change event -> record read -> queued -> delivery woken)"
                )
            else:
                self.say("  stream: the record did not reach SimZ within 15 s")
            _wait(self._idle, 15.0)
        finally:
            stop.set()
            thread.join(15)

    # ------------------------------------------------------------------ progress

    def _after_poll(self, result: PollResult) -> None:
        with self._lock:
            self._polls += 1
            number = self._polls
        if result.status != "ok":
            self.say(f"  poll {number}: {result.status}: {result.error or ''}".rstrip())
            return
        if result.new or result.updated:
            changes = f"{result.new} new" + (
                f", {result.updated} updated" if result.updated else ""
            )
            self.say(
                f"  poll {number}: {result.fetched} read, {changes} "
                f"({result.queued} queued, {result.invalid} invalid, {result.skipped} skipped)"
            )
        else:
            self.say(
                f"  poll {number}: {result.fetched} read, nothing new "
                "(the lookback re-reads known records; unchanged ones cost no write)"
            )
        if number == 1 and self._salesforce is not None:
            ids = self._salesforce.add_records(added_records())
            with self._lock:
                self._added_ids = ids
                self._added = len(ids)
            self.say(
                f"  + {ADDED} new Lead records created in Salesforce; the next poll will find them"
            )

    def _after_deliver(self) -> None:
        """Print the batches finished since the last call, once the first poll was told."""
        with self._lock:
            told = self._polls > 0
        if self._session_factory is None or not told:
            return
        with self._session_factory() as session:
            rows = session.execute(
                select(Batch).where(Batch.outcome.is_not(None)).order_by(Batch.id)
            ).scalars()
            new = [row for row in rows if row.id not in self._seen_batches]
            for row in new:
                self._seen_batches.add(row.id)
                self.say(f"  {describe_batch(row)}")

    def _idle(self) -> bool:
        """True once a poll has stored the added records and nothing is queued or sending."""
        with self._lock:
            added = list(self._added_ids)
        if self._session_factory is None or not added:
            return False
        with self._session_factory() as session:
            stored = session.scalar(
                select(func.count()).select_from(Lead).where(Lead.salesforce_id.in_(added))
            )
            open_leads = session.scalar(
                select(func.count()).select_from(Lead).where(Lead.state.in_(OPEN_STATES))
            )
            unwritten = session.scalar(
                select(func.count()).select_from(Writeback).where(Writeback.status == "pending")
            )
        return stored == len(added) and open_leads == 0 and unwritten == 0

    # ------------------------------------------------------------------ summary

    def _summarise(
        self,
        workdir: Path,
        config_path: Path,
        config: Config,
        seeded: int,
        idle: bool,
        elapsed: float,
    ) -> DemoSummary:
        summary = DemoSummary(
            workdir=workdir,
            config_path=config_path,
            database_path=workdir / "syncd.db",
            seeded=seeded,
            added=self._added,
            idle=idle,
            elapsed=elapsed,
            polls=self._polls,
        )
        written = read_outcomes(config.database.url, summary)
        summary.written = self._examples(written)
        if self._simz is not None:
            counts = self._simz.received_counts()
            summary.simz_received = len(counts)
            summary.simz_received_twice = sum(1 for n in counts.values() if n > 1)
        summary.calls = self._calls
        return summary

    def _examples(self, written: Any) -> list[tuple[str, dict[str, Any]]]:
        """A few written-back records, one per state first, with their SimZ_* fields."""
        if self._salesforce is None:
            return []
        picked: list[str] = []
        seen: set[str] = set()
        for sf_id, state in written:
            if state not in seen:
                seen.add(state)
                picked.append(sf_id)
        picked = picked[:WRITEBACK_EXAMPLES]
        examples = []
        for sf_id in picked:
            record = self._salesforce.get_record("Lead", sf_id) or {}
            values = {name: record.get(name) for name in WRITEBACK_FIELDS.values()}
            examples.append((sf_id, values))
        return examples


def _wait(condition: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
