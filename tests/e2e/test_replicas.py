"""Several ``syncd run`` replicas on one PostgreSQL: one leader per sync, failover, no double send.

Real parts only: the CLI in subprocesses, both emulators over loopback, a real
PostgreSQL schema (``SYNCD_TEST_POSTGRES_URL``). The lease ttl is 4s, so the
takeover bound (:func:`takeover_bound`) is 5s; takeover times are measured on
the database's own clock (the dead holder's last renewal to the heir's
acquisition) and compared with that bound plus a fixed allowance for a
loaded, shared test machine. Numbers suppressed while replicas deliver are
never decided after their suppression took effect.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from syncd.sandbox.demo_data import bulk_leads
from syncd.sandbox.simz import SimzEmulator
from syncd.services.leadership import takeover_bound
from syncd.services.org_gate import ORG_QUERY
from tests.e2e.harness import Daemon, Harness, clean_env, run_syncd, syncd_command, wait_until

TTL = timedelta(seconds=4)
#: Scheduling noise allowed on top of the takeover bound (2 cores shared by many tests).
ALLOWANCE = timedelta(seconds=5)
TERMINAL = {"accepted", "uncertain", "rejected", "failed", "invalid", "skipped"}
WAIT = 120.0


def records(count: int, start: int) -> list[dict[str, Any]]:
    """``count`` valid, distinct Lead records (numbers from ``start`` on)."""
    made = list(bulk_leads(start + count))[start:]
    return made


class TcpProxy:
    """A loopback TCP relay to PostgreSQL that the test can cut and restore.

    Cutting closes every relayed connection and makes new ones fail at once,
    as a network partition between one replica and its database would.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cut_off = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_off.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.server.close()


class Cluster:
    """The harness plus a PostgreSQL view of the shared database."""

    def __init__(self, harness: Harness, url: str) -> None:
        self.h = harness
        self.url = url
        self.db: Engine = create_engine(url)
        self.total = 0
        self.replicas: dict[str, Daemon] = {}

    def config(self, name: str, url: str | None = None, **simz: Any) -> Path:
        """The replicas' config; ``simz`` overrides SimZ settings (e.g. a slower rate).

        The blast-radius guard is set above the tests' volume: an heir whose first poll
        comes after the next wave was added reads two waves at once (1,500 new leads),
        which the default guard (1,000) would hold, and these tests are not about it.
        """
        return self.h.write_config(
            name,
            database={"url": url or self.url},
            sync={
                "schedule": {"every": "1s"},
                "lookback": "5s",
                "delivery": {"every": "1s"},
                "guard": {"max_new_per_poll": 100_000},
            },
            simz={"batch_size": 50, **simz},
            daemon={"shutdown_grace": "10s", "lease_ttl": f"{int(TTL.total_seconds())}s"},
        )

    def start(self, config: Path) -> Daemon:
        daemon = self.h.start(config)
        self.replicas[daemon.started["replica"]] = daemon
        return daemon

    def add(self, count: int) -> None:
        self.h.salesforce.add_records(records(count, self.total))
        self.total += count

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.db.connect() as connection:
            return list(connection.execute(text(statement), params))

    def lease(self) -> Any | None:
        rows = self.sql(
            "SELECT holder, token, acquired_at, renewed_at, expires_at FROM leases "
            "WHERE name = 'sync:web'"
        )
        return rows[0] if rows else None

    def leader(self) -> str | None:
        """The replica holding an unexpired lease, by the database's clock."""
        rows = self.sql(
            "SELECT holder FROM leases WHERE name = 'sync:web' AND expires_at > clock_timestamp()"
        )
        return str(rows[0][0]) if rows else None

    def states(self) -> dict[str, str]:
        return {sf: state for sf, state in self.sql("SELECT salesforce_id, state FROM leads")}

    def settled(self) -> bool:
        states = self.states()
        return len(states) == self.total and all(s in TERMINAL for s in states.values())

    def wait_settled(self) -> None:
        try:
            wait_until(self.settled, f"all {self.total} leads in a final state", WAIT)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; {self.unsettled()}") from None

    def unsettled(self) -> str:
        """What a timed-out wait left: leads per state, the leads missing, the lease."""
        per_state = self.sql("SELECT state, count(*) FROM leads GROUP BY state ORDER BY state")
        counts = ", ".join(f"{state}={n}" for state, n in per_state)
        missing = self.total - sum(n for _, n in per_state)
        return f"leads by state: {counts}; not yet read: {missing}; lease: {self.lease()}"

    def check_never_twice(self, simz: SimzEmulator) -> None:
        """No salesforceId reached SimZ twice; every record is exactly one lead, and every
        lead SimZ has is recorded accepted (or uncertain when its replica died mid-POST)."""
        counts = simz.received_counts()
        twice = {sf: n for sf, n in counts.items() if n > 1}
        assert twice == {}, f"sent more than once: {list(twice.items())[:5]}"
        states = self.states()
        assert len(states) == self.total
        assert len(self.sql("SELECT salesforce_id FROM leads")) == self.total
        for sf in counts:
            assert states[sf] in ("accepted", "uncertain"), (sf, states[sf])
        accepted = {sf for sf, state in states.items() if state == "accepted"}
        assert accepted <= set(counts), "a lead recorded accepted never reached SimZ"

    def close(self) -> None:
        self.db.dispose()


@pytest.fixture
def cluster(tmp_path: Path, simz_emulator: SimzEmulator, postgres_url: str) -> Iterator[Cluster]:
    with Harness(tmp_path, simz_emulator) as harness:
        cluster = Cluster(harness, postgres_url)
        try:
            yield cluster
        finally:
            cluster.close()


def session_spans(log: list[dict[str, Any]]) -> dict[str, tuple[datetime, datetime]]:
    """Per Salesforce session: the time of its first and last poll query.

    Every replica, leader or not, reads the org once at start on a session of its
    own (the org identity check, not a poll); those reads are left out.
    """
    spans: dict[str, tuple[datetime, datetime]] = {}
    for entry in log:
        if entry["soql"] == ORG_QUERY:
            continue
        at = datetime.fromisoformat(entry["time"])
        first, last = spans.get(entry["session"], (at, at))
        spans[entry["session"]] = (min(first, at), max(last, at))
    return spans


class TestFailover:
    def test_leader_killed_three_times_nothing_sent_twice(self, cluster: Cluster) -> None:
        """Three replicas share thousands of records while the leader is SIGKILLed three
        times: each takeover comes within the bound, no salesforceId reaches SimZ twice,
        every record ends in exactly one state, and no two replicas ever poll at once."""
        simz = cluster.h.simz
        config = cluster.config("replicas.yaml")
        for _ in range(3):
            cluster.start(config)
        bound = takeover_bound(TTL) + ALLOWANCE
        takeovers: list[timedelta] = []
        for _kill in range(3):
            cluster.add(1000)
            wave_start = len(simz.received())
            wait_until(
                lambda n=wave_start: len(simz.received()) >= n + 200, "delivery under way", WAIT
            )
            leader = wait_until(cluster.leader, "a leader", WAIT)
            cluster.replicas[leader].process.send_signal(signal.SIGKILL)
            cluster.replicas[leader].process.wait(30)
            dead = cluster.lease()  # the dead holder can renew no more: its last renewal
            assert dead is not None and dead.holder == leader
            heir = wait_until(
                lambda old=leader: (
                    (lease := cluster.lease()) is not None and lease.holder != old and lease
                ),
                "another replica takes the lease over",
                WAIT,
            )
            assert heir.token == dead.token + 1
            takeovers.append(heir.acquired_at - dead.renewed_at)
            cluster.start(config)  # keep three replicas
        cluster.add(500)
        cluster.wait_settled()
        cluster.check_never_twice(simz)
        assert all(t <= bound for t in takeovers), (takeovers, bound)
        assert len(takeovers) == 3

        # Takeovers are visible in the heirs' logs and metrics.
        acquired = [d for d in cluster.replicas.values() if d.find("sync lease acquired")]
        assert len(acquired) >= 4  # the first leader and three heirs

        # Polls never overlap: each Salesforce session (one per replica's login)
        # queried within its own span of time, disjoint from every other one's.
        spans = sorted(session_spans(cluster.h.salesforce.query_log()).values())
        assert len(spans) >= 4
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end < start, f"two replicas polled at once: {spans}"

    def test_status_and_metrics_name_the_leader(self, cluster: Cluster) -> None:
        """syncd status shows the replica that leads the sync; its /metrics says 1, the
        follower's says 0."""
        config = cluster.config("replicas.yaml")
        first = cluster.start(config)
        second = cluster.start(config)
        leader = wait_until(cluster.leader, "a leader", WAIT)
        follower = next(name for name in cluster.replicas if name != leader)
        shown = run_syncd("status", cwd=cluster.h.tmp, config=config, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert f"leader         {leader}" in shown.stdout
        assert follower in shown.stdout  # listed among the replicas

        def gauge(daemon: Daemon) -> str | None:
            _status, body = daemon.get("/metrics")
            lines = [
                ln for ln in body.splitlines() if ln.startswith('syncd_sync_leader{sync="web"}')
            ]
            return lines[0].split()[-1] if lines else None

        by_name = {d.started["replica"]: d for d in (first, second)}
        wait_until(lambda: gauge(by_name[leader]) == "1.0", "leader gauge 1", WAIT)
        wait_until(lambda: gauge(by_name[follower]) == "0.0", "follower gauge 0", WAIT)
        assert by_name[follower].get("/readyz")[0] == 200  # a follower is ready


class TestConnectionCut:
    def test_cut_replica_stops_sending_and_recovers(self, cluster: Cluster) -> None:
        """The leader loses its database connection: it stops sending at once, another
        replica takes over and delivers, nothing is sent twice; once its connection is
        back it rejoins, and it leads again when the other one dies."""
        simz = cluster.h.simz
        url = make_url(cluster.url)
        proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
        try:
            via_proxy = url.set(host="127.0.0.1", port=proxy.port)
            cut_config = cluster.config("cut.yaml", via_proxy.render_as_string(hide_password=False))
            direct_config = cluster.config("direct.yaml")
            cut = cluster.start(cut_config)
            cut_name = cut.started["replica"]
            wait_until(lambda: cluster.leader() == cut_name, "the proxied replica leads", WAIT)
            other = cluster.start(direct_config)
            other_name = other.started["replica"]
            cluster.add(300)
            cluster.wait_settled()

            proxy.cut()
            cluster.add(700)
            wait_until(lambda: cluster.leader() == other_name, "the other replica leads", WAIT)
            cluster.wait_settled()
            cut.wait_log("sync leadership lost: polling and delivery stop here", timeout=WAIT)
            cluster.check_never_twice(simz)
            # Every lead of the second wave reached SimZ in a batch of the other replica.
            batches = {
                simz_batch: worker
                for simz_batch, worker in cluster.sql(
                    "SELECT simz_batch_id, worker FROM batches WHERE simz_batch_id IS NOT NULL"
                )
            }
            second_wave = {r["salesforceId"] for r in simz.received()[300:]}
            assert len(second_wave) == 700
            workers = {
                batches.get(r["batchId"])
                for r in simz.received()
                if r["salesforceId"] in second_wave
            }
            assert workers == {other_name}

            proxy.restore()
            wait_until(
                lambda: cluster.sql(
                    "SELECT 1 FROM replicas WHERE id = :id AND expires_at > clock_timestamp() "
                    "AND heartbeat_at > (SELECT max(acquired_at) FROM leases)",
                    id=cut_name,
                ),
                "the cut replica's heartbeat again",
                WAIT,
            )
            other.process.send_signal(signal.SIGKILL)
            other.process.wait(30)
            cluster.add(200)
            wait_until(lambda: cluster.leader() == cut_name, "the recovered replica leads", WAIT)
            cluster.wait_settled()
            cluster.check_never_twice(simz)
            assert cut.process.poll() is None  # it never crashed
        finally:
            proxy.close()


def e164(phone: str) -> str:
    return phonenumbers.format_number(
        phonenumbers.parse(phone, "US"), phonenumbers.PhoneNumberFormat.E164
    )


class TestSuppressionUnderReplicas:
    def test_no_send_is_decided_after_its_number_was_suppressed(self, cluster: Cluster) -> None:
        """`syncd suppress add`, ten at once, while two replicas deliver (slowly: 30 leads
        a second): the numbers of records not yet polled, of a lead already sent, of queued
        leads the claims reach while the additions run and of the last ones queued. No dial
        decision for a suppressed number is later than its entry's added_at (read once the
        number's lock is held); every lead not decided before it is skipped, at intake or
        at the gate, and never reached SimZ; nothing is sent twice."""
        simz = cluster.h.simz
        config = cluster.config("replicas.yaml", batch_size=10, requests_per_second=3)
        cluster.start(config)
        cluster.start(config)
        cluster.add(1000)
        wait_until(lambda: len(simz.received()) >= 60, "delivery under way", WAIT)
        unpolled = {e164(record["Phone"]) for record in records(3, cluster.total)}
        queue = "SELECT phone_e164 FROM leads WHERE state = 'queued' ORDER BY id"
        picked = [
            *cluster.sql(f"{queue} LIMIT 3 OFFSET 100"),  # claimed while the additions run
            *cluster.sql(f"{queue} DESC LIMIT 3"),  # far behind
            *cluster.sql("SELECT phone_e164 FROM leads WHERE state = 'accepted' LIMIT 1"),
        ]
        numbers = unpolled | {row.phone_e164 for row in picked}
        adds = [
            subprocess.Popen(
                syncd_command("suppress", "add", phone, "--reason", "opted out", config=config),
                cwd=cluster.h.tmp,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for phone in numbers
        ]
        for add in adds:
            out, err = add.communicate(timeout=WAIT)
            assert add.returncode == 0 and out.startswith("suppressed: "), out + err
        cluster.add(3)
        cluster.wait_settled()
        cluster.check_never_twice(simz)

        late = cluster.sql(
            "SELECT d.lead_id FROM dial_decisions d JOIN suppressions s "
            "ON s.phone_e164 = d.phone_e164 WHERE d.decided_at > s.added_at"
        )
        assert late == []
        leads = cluster.sql(
            "SELECT l.salesforce_id, l.phone_e164, l.state, l.note, d.decided_at, s.added_at "
            "FROM leads l JOIN suppressions s ON s.phone_e164 = l.phone_e164 "
            "LEFT JOIN dial_decisions d ON d.lead_id = l.id"
        )
        assert sorted(lead.phone_e164 for lead in leads) == sorted(numbers)
        assert len(numbers) == 10
        received = simz.received_counts()
        listed = "number is on the suppression list (operator: opted out)"
        for lead in leads:
            if lead.decided_at is not None:
                assert lead.decided_at < lead.added_at and lead.state == "accepted", lead
            else:
                assert lead.state == "skipped" and lead.salesforce_id not in received, lead
                intake = lead.phone_e164 in unpolled
                assert lead.note == (listed if intake else f"send gate: {listed}"), lead


class TestSqliteRefusesASecondReplica:
    def test_second_run_on_one_sqlite_file_exits_1_with_one_line(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """A second syncd run on the same SQLite file exits 1 with one clear line."""
        with Harness(tmp_path, simz_emulator) as harness:
            first = harness.start()
            log_path = tmp_path / "second.log"
            second = run_syncd("run", cwd=tmp_path, config=harness.config_path, timeout=60)
            log_path.write_text(second.stdout + second.stderr)
            assert second.returncode == 1
            lines = [ln for ln in (second.stdout + second.stderr).splitlines() if ln.strip()]
            assert len(lines) == 1, lines
            assert "SQLite supports one replica" in lines[0]
            assert first.process.poll() is None  # the first one is unaffected
            assert first.stop() == 0
