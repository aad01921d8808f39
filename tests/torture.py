"""Crash torture: the real ``syncd run`` killed with SIGKILL at random moments.

Both emulators live in the test process, so they survive every kill and their
record is the ground truth. Records arrive over time through the Salesforce
emulator's HTTPS control API (some of them later changed), random SimZ and
Salesforce faults are switched on between kills, and the daemon is killed
with SIGKILL at a random moment of each run and started again. At the end
the faults are cleared, the daemon drains until idle and stops with SIGTERM,
and :func:`check` proves the guarantees of docs/design.md#guarantees from the SimZ
emulator's record and the database:

* **never twice**: no ``salesforceId`` was received by SimZ more than once;
* **never lost**: every record the emulator holds has exactly one lead row,
  in a settled state (nothing left ``queued`` or ``sending``), and the last
  audit transition of each lead names its current state;
* **accepted means received**: every ``accepted`` lead was received (once);
* **uncertain only from real in-flight requests**: each uncertain lead went
  uncertain with a batch whose outcome is ``interrupted`` or ``uncertain``.
  An ``interrupted`` batch was opened while a daemon that was then killed
  ran (between its start and its kill), and one kill interrupts at most one
  batch (one sync, one agent: batches go one at a time). An ``uncertain``
  batch matches an answer SimZ really gave a fault for: per kind of answer
  (200 unreadable, 500, no answer), there are no more such batches than
  requests the emulator answered that way;
* **a suppression holds from the moment it takes effect**: numbers are put on
  the suppression list with ``syncd suppress add`` while daemons run (and are
  killed); no dial decision of a suppressed number was made at or after the
  entry's ``added_at`` (read once the number's lock is held);
* **the watermark never runs ahead**: after every kill, each record whose
  cursor is *strictly* below the saved watermark has a lead row (equal stamps
  may legitimately still be unread: the lookback re-reads them).

``run_torture`` returns a :class:`TortureReport` whose ``problems`` list is
empty when every check held; its ``summary()`` prints the figures.
"""

from __future__ import annotations

import json
import os
import random
import signal
import ssl
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Daemon, Harness

DEFAULT_SEED = 20240607

#: SimZ faults the torture picks from, with weights.
SIMZ_FAULTS: dict[str, int] = {
    "429": 2,
    "503": 2,
    "500": 2,
    "400": 2,
    "413": 1,
    "delay": 4,
    "lost_response": 2,
    "garbage_200": 2,
    "reset": 2,
}
SALESFORCE_FAULTS = ("INVALID_SESSION_ID", "REQUEST_LIMIT_EXCEEDED", "500", "delay")
#: Pub/Sub faults for the stream mode (``TORTURE_STREAM=1``).
PUBSUB_FAULTS = ("drop", "UNAUTHENTICATED", "invalid_replay", "slow")
SETTLED = {"accepted", "rejected", "uncertain", "invalid", "skipped", "failed"}
READ_TIMEOUT = 1.5


@dataclass
class TortureSettings:
    seed: int = DEFAULT_SEED
    kills: int = 5
    records: int = 400
    #: Seconds a daemon runs before its SIGKILL: uniform in this range.
    run_min: float = 0.3
    run_max: float = 2.5
    drain_timeout: float = 180.0
    #: The sync in stream mode: change events too, polls every 5 s, Pub/Sub faults.
    stream: bool = False

    @classmethod
    def from_env(cls, **defaults: Any) -> TortureSettings:
        """Defaults overridden by ``TORTURE_SEED``, ``TORTURE_KILLS``, ``TORTURE_RECORDS``."""
        settings = cls(**defaults)
        if os.environ.get("TORTURE_SEED"):
            settings.seed = int(os.environ["TORTURE_SEED"])
        if os.environ.get("TORTURE_KILLS"):
            settings.kills = int(os.environ["TORTURE_KILLS"])
        if os.environ.get("TORTURE_RECORDS"):
            settings.records = int(os.environ["TORTURE_RECORDS"])
        if os.environ.get("TORTURE_STREAM"):
            settings.stream = os.environ["TORTURE_STREAM"] not in ("0", "")
        return settings


@dataclass
class TortureReport:
    seed: int
    kills: int = 0
    records: int = 0
    updates: int = 0
    suppressed: int = 0
    leads_by_state: dict[str, int] = field(default_factory=dict)
    received: int = 0
    duplicates: int = 0
    interrupted_batches: int = 0
    uncertain_batches: int = 0
    simz_faults: Counter[str] = field(default_factory=Counter)
    salesforce_faults: Counter[str] = field(default_factory=Counter)
    pubsub_faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def uncertain(self) -> int:
        return self.leads_by_state.get("uncertain", 0)

    def summary(self) -> str:
        states = ", ".join(f"{k}={v}" for k, v in sorted(self.leads_by_state.items()))
        lines = [
            f"torture seed={self.seed} (TORTURE_SEED={self.seed} to replay)",
            f"  kills={self.kills} records={self.records} updates={self.updates} "
            f"suppressed={self.suppressed}",
            f"  leads by state: {states}",
            f"  uncertain={self.uncertain} (batches: interrupted={self.interrupted_batches}, "
            f"uncertain answers={self.uncertain_batches})",
            f"  received by SimZ={self.received} duplicates={self.duplicates}",
            f"  SimZ faults injected: {dict(sorted(self.simz_faults.items()))}",
            f"  Salesforce faults injected: {dict(sorted(self.salesforce_faults.items()))}",
            f"  Pub/Sub faults injected: {dict(sorted(self.pubsub_faults.items()))}",
            f"  problems: {len(self.problems)}",
        ]
        lines.extend(f"    - {p}" for p in self.problems[:30])
        return "\n".join(lines)


def _utc(value: Any) -> datetime:
    """A SQLite-stored (naive UTC) or emulator (aware) datetime as an aware UTC datetime."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class _SalesforceControl:
    """The Salesforce emulator's control API over HTTPS, as an outside tool would use it."""

    def __init__(self, harness: Harness) -> None:
        self.base = harness.salesforce.url + "/__sandbox/"
        self.context = ssl.create_default_context(cafile=str(harness.salesforce.ca_file))

    def post(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + action,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30, context=self.context) as answer:
            parsed: dict[str, Any] = json.loads(answer.read())
        return parsed


class Torture:
    def __init__(self, tmp: Path, simz: SimzEmulator, settings: TortureSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.simz = simz
        self.harness = Harness(tmp, simz)
        self.control = _SalesforceControl(self.harness)
        self.report = TortureReport(seed=settings.seed)
        self.ids: list[str] = []
        self.next_index = 0
        #: (start, kill) wall-clock times of every killed daemon.
        self.killed_runs: list[tuple[datetime, datetime]] = []
        salesforce = dict(self.harness.config()["salesforce"])
        salesforce.update(limit_pause="2s", timeout=10)
        self.harness.write_config(
            salesforce=salesforce,
            simz={
                "batch_size": 20,
                "timeout": {"connect": 2, "read": READ_TIMEOUT},
                "backoff": {"initial": "200ms", "max": "1s"},
                "max_attempts": 1000,
            },
            sync={
                "schedule": {"every": "1s"},
                "delivery": {"every": "300ms"},
                # Any TORTURE_RECORDS may land in one poll; every record must settle.
                "guard": {"max_new_per_poll": None},
                **(
                    {"source": {"mode": "stream", "reconcile_every": "5s"}}
                    if settings.stream
                    else {}
                ),
            },
        )

    # ------------------------------------------------------------------ records

    @staticmethod
    def _phone(index: int) -> str:
        exchange = 200 + index // 10_000 % 800
        return f"+1 212 {exchange} {index % 10_000:04d}"

    def _record(self, index: int) -> dict[str, Any]:
        roll = self.rng.random()
        phone = self._phone(index)
        record: dict[str, Any] = {
            "sobject": "Lead",
            "FirstName": f"Tor{index}",
            "LastName": "Ture",
            "Company": "Acme",
            "Phone": phone,
            "DoNotCall": False,
        }
        if roll < 0.03:
            record["Phone"] = "not a phone"  # -> invalid
        elif roll < 0.06:
            record["DoNotCall"] = True  # -> skipped
        return record

    def add_records(self, count: int) -> None:
        if count <= 0:
            return
        batch = [self._record(self.next_index + n) for n in range(count)]
        self.next_index += count
        self.ids.extend(self.control.post("records", {"records": batch})["ids"])
        self.report.records += count

    def update_some(self) -> None:
        """Change a few existing records (a queued one goes out with the new data)."""
        for record_id in self.rng.sample(self.ids, min(len(self.ids), self.rng.randint(0, 4))):
            self.control.post(
                "update",
                {"sobject": "Lead", "id": record_id, "fields": {"Company": "Changed Inc"}},
            )
            self.report.updates += 1

    def suppress_some(self) -> None:
        """Put one or two numbers of records already added on the suppression list, with the
        real CLI, while a daemon may be claiming them."""
        for _ in range(self.rng.randint(1, 2) if self.next_index else 0):
            number = self._phone(self.rng.randrange(self.next_index)).replace(" ", "")
            result = self.harness.cli("suppress", "add", number, "--reason", "torture opt-out")
            if result.returncode != 0:
                self.problem(f"suppress add {number} failed: {result.stderr.strip()[-300:]}")
            self.report.suppressed += 1

    # ------------------------------------------------------------------ faults

    def inject_faults(self) -> None:
        kinds, weights = zip(*SIMZ_FAULTS.items(), strict=True)
        for _ in range(self.rng.randint(0, 4)):
            kind = self.rng.choices(kinds, weights)[0]
            params: dict[str, Any] = {}
            if kind == "delay":
                # Mostly within the read timeout; sometimes beyond it (-> uncertain).
                beyond = self.rng.random() < 0.3
                params["seconds"] = READ_TIMEOUT + 0.5 if beyond else self.rng.uniform(0.2, 1.0)
            if kind == "429":
                params["retry_after"] = 1
            count = self.rng.randint(1, 2)
            self.simz.inject(kind, count, **params)
            self.report.simz_faults[kind] += count
        if self.rng.random() < 0.5:
            kind = self.rng.choice(SALESFORCE_FAULTS)
            params = {"seconds": self.rng.uniform(0.2, 1.0)} if kind == "delay" else {}
            self.control.post("inject", {"kind": kind, "count": 1, **params})
            self.report.salesforce_faults[kind] += 1
        if self.settings.stream and self.rng.random() < 0.6:
            kind = self.rng.choice(PUBSUB_FAULTS)
            params = {"seconds": self.rng.uniform(0.05, 0.3)} if kind == "slow" else {}
            self.control.post("pubsub/fault", {"kind": kind, **params})
            self.report.pubsub_faults[kind] += 1

    # ------------------------------------------------------------------ the run

    def run(self) -> TortureReport:
        settings = self.settings
        per_run = max(1, settings.records // (settings.kills + 1))
        try:
            for _ in range(settings.kills):
                self.inject_faults()
                self.add_records(per_run // 2)
                self.update_some()
                started = datetime.now(UTC)
                daemon = self.harness.start()
                budget = self.rng.uniform(settings.run_min, settings.run_max)
                time.sleep(budget * self.rng.random())
                self.add_records(per_run - per_run // 2)
                self.suppress_some()
                time.sleep(budget * self.rng.random())
                daemon.process.send_signal(signal.SIGKILL)
                killed = datetime.now(UTC)
                daemon.process.wait(30)
                self.killed_runs.append((started, killed))
                self.report.kills += 1
                self.check_watermark(f"after kill {self.report.kills}")
            self.add_records(settings.records - self.report.records)
            self.drain()
            self.check()
        finally:
            self.harness.close()
        return self.report

    def drain(self) -> None:
        """No faults: run until every record has a settled lead, then stop with SIGTERM."""
        self.simz.clear_faults()
        self.harness.salesforce.clear_faults()
        if self.settings.stream:
            self.harness.salesforce.pubsub_fault("slow", seconds=0)
        daemon = self.harness.start()

        def idle() -> bool:
            states = self.harness.lead_states()
            if len(states) < len(self.ids):
                return False
            return not any(state not in SETTLED for state in states.values())

        self.harness.wait_until(idle, "every record settled", self.settings.drain_timeout)
        polls = self.harness.successful_polls()
        self.harness.wait_until(
            lambda: self.harness.successful_polls() >= polls + 2, "two more polls"
        )
        self.harness.wait_until(idle, "every record settled", self.settings.drain_timeout)
        status = daemon.stop()
        if status != 0:
            self.report.problems.append(f"drain daemon exited {status}: {_tail(daemon)}")

    # ------------------------------------------------------------------ checks

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def check_watermark(self, when: str) -> None:
        rows = self.harness.query("SELECT watermark FROM sync_state WHERE sync_name = 'web'")
        if not rows or rows[0][0] is None:
            return
        watermark = _utc(rows[0][0])
        have = set(self.harness.lead_states())
        behind = [
            r["Id"]
            for r in self.harness.salesforce.store.snapshot("Lead")
            if _utc(r["SystemModstamp"]) < watermark and r["Id"] not in have
        ]
        if behind:
            self.problem(
                f"{when}: watermark {watermark.isoformat()} is ahead of {len(behind)} "
                f"unprocessed records, e.g. {behind[:3]}"
            )

    def check(self) -> None:
        h = self.harness
        report = self.report
        counts = self.simz.received_counts()
        received = self.simz.received()
        report.received = len(received)
        twice = {sf_id: n for sf_id, n in counts.items() if n > 1}
        report.duplicates = len(twice)
        if twice:
            self.problem(f"received by SimZ more than once: {dict(list(twice.items())[:5])}")

        states = h.lead_states()
        report.leads_by_state = dict(Counter(states.values()))
        missing = [i for i in self.ids if i not in states]
        if missing:
            self.problem(f"{len(missing)} records have no lead, e.g. {missing[:3]}")
        unknown = set(states) - set(self.ids)
        if unknown:
            self.problem(f"{len(unknown)} leads for no record, e.g. {sorted(unknown)[:3]}")
        unsettled = {i: s for i, s in states.items() if s not in SETTLED}
        if unsettled:
            self.problem(f"leads not settled after the drain: {dict(list(unsettled.items())[:5])}")
        rows = h.query("SELECT sync_name, salesforce_id, COUNT(*) FROM leads GROUP BY 1, 2")
        several = [r for r in rows if r[2] != 1]
        if several:
            self.problem(f"records with more than one lead row: {several[:3]}")

        last = h.query(
            "SELECT l.salesforce_id, l.state, t.to_state FROM leads l "
            "LEFT JOIN lead_transitions t ON t.id = "
            "(SELECT MAX(id) FROM lead_transitions WHERE lead_id = l.id)"
        )
        trail = [(sf, state, to) for sf, state, to in last if to != state]
        if trail:
            self.problem(f"audit trail disagrees with the state: {trail[:3]}")

        accepted_ids = [i for i, s in states.items() if s == "accepted"]
        accepted_counts = self.simz.received_counts(accepted_only=True)
        not_there = [i for i in accepted_ids if accepted_counts.get(i) != 1]
        if not_there:
            self.problem(
                f"{len(not_there)} accepted leads SimZ did not accept once: {not_there[:3]}"
            )
        ghost = [i for i in counts if states.get(i) not in ("accepted", "rejected", "uncertain")]
        if ghost:
            self.problem(
                f"{len(ghost)} leads SimZ received are not accepted/rejected/uncertain: "
                f"{[(g, states.get(g)) for g in ghost[:3]]}"
            )
        self.check_uncertain(states)
        self.check_suppressions()
        self.check_watermark("after the drain")

    def check_suppressions(self) -> None:
        """No number was decided for a send once its suppression had taken effect."""
        late = self.harness.query(
            "SELECT d.lead_id, d.phone_e164, d.decided_at, s.added_at FROM dial_decisions d "
            "JOIN suppressions s ON s.phone_e164 = d.phone_e164 WHERE d.decided_at >= s.added_at"
        )
        if late:
            self.problem(f"sends decided after their number's suppression: {late[:3]}")
        decided = self.harness.query("SELECT COUNT(*) FROM dial_decisions")[0][0]
        sent = self.harness.query("SELECT COUNT(*) FROM leads WHERE sent_at IS NOT NULL")[0][0]
        if decided < sent:
            self.problem(f"{sent} leads were sent but only {decided} dial decisions recorded")

    def check_uncertain(self, states: dict[str, str]) -> None:
        h = self.harness
        rows = h.query(
            "SELECT l.salesforce_id, t.batch_id, b.outcome, b.created_at, b.http_status "
            "FROM leads l JOIN lead_transitions t ON t.lead_id = l.id "
            # The move into uncertain (a later poll may add notes that keep the state).
            "AND t.id = (SELECT MAX(id) FROM lead_transitions WHERE lead_id = l.id "
            "AND to_state = 'uncertain' AND from_state <> 'uncertain') "
            "LEFT JOIN batches b ON b.id = t.batch_id WHERE l.state = 'uncertain'"
        )
        batches: dict[int, tuple[str, datetime, int | None]] = {}
        for sf_id, batch_id, outcome, created, status in rows:
            if batch_id is None or outcome not in ("interrupted", "uncertain"):
                self.problem(f"uncertain lead {sf_id} from batch {batch_id} outcome {outcome!r}")
                continue
            batches[batch_id] = (outcome, _utc(created), status)
        if sum(1 for s in states.values() if s == "uncertain") != len(rows):
            self.problem("some uncertain leads have no transition into uncertain")

        interrupted = {b: v for b, v in batches.items() if v[0] == "interrupted"}
        self.report.interrupted_batches = len(interrupted)
        per_run: Counter[int] = Counter()
        for batch_id, (_o, created, _s) in interrupted.items():
            run = next(
                (n for n, (start, kill) in enumerate(self.killed_runs) if start <= created <= kill),
                None,
            )
            if run is None:
                self.problem(f"interrupted batch {batch_id} opened at {created} by no killed run")
            else:
                per_run[run] += 1
        for run, n in per_run.items():
            if n > 1:
                self.problem(f"kill {run + 1} left {n} batches interrupted (at most 1 in flight)")

        answered = [b for b in batches.values() if b[0] == "uncertain"]
        self.report.uncertain_batches = len(answered)
        faults = Counter(
            str(r.get("fault")) for r in self.simz.requests() if r.get("fault") is not None
        )
        kinds = {
            "200 unreadable": (sum(1 for b in answered if b[2] == 200), faults["garbage_200"]),
            "500": (sum(1 for b in answered if b[2] == 500), faults["500"]),
            "no answer": (
                sum(1 for b in answered if b[2] is None),
                faults["lost_response"] + faults["reset"] + faults["delay"],
            ),
        }
        for name, (batches_seen, faulty_answers) in kinds.items():
            if batches_seen > faulty_answers:
                self.problem(
                    f"{batches_seen} batches uncertain after '{name}' but SimZ gave only "
                    f"{faulty_answers} such answers"
                )
        other = [b for b in answered if b[2] not in (200, 500, None)]
        if other:
            self.problem(f"uncertain batches after unexpected statuses: {other[:3]}")


def _tail(daemon: Daemon, lines: int = 20) -> str:
    return "\n".join(daemon.output().splitlines()[-lines:])


def run_torture(tmp: Path, simz: SimzEmulator, settings: TortureSettings) -> TortureReport:
    """Run the whole torture and return its report (``problems`` empty when all held)."""
    return Torture(tmp, simz, settings).run()
