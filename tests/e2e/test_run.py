"""``syncd run`` as a user runs it: a subprocess against both emulators and a SQLite file.

Leads go from the Salesforce emulator (HTTPS) to the SimZ emulator (HTTP)
exactly once, and the probes answer as documented: ``/healthz`` always,
``/readyz`` 200 while the replica can serve, ``/status.json`` 503 naming the
failing check (a 401 from SimZ, polls that fail), ``/metrics`` in Prometheus text.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def failing_checks(body: dict[str, object]) -> set[str]:
    failing = body.get("failing")
    assert isinstance(failing, list)
    return {str(item["check"]) for item in failing}


class TestDelivery:
    def test_leads_arrive_once(self, harness: Harness) -> None:
        """Every record reaches SimZ exactly once, also records added while the daemon runs."""
        harness.salesforce.add_records(lead_records(25))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 25, "25 leads accepted")
        harness.salesforce.add_records(lead_records(5, start=25))
        harness.wait_until(lambda: harness.count_state("accepted") == 30, "30 leads accepted")
        # Let a few more polls and deliveries run over the same records.
        polls = harness.successful_polls()
        harness.wait_until(lambda: harness.successful_polls() >= polls + 3, "three more polls")

        assert daemon.stop(signal.SIGINT) == 0, daemon.output()
        counts = harness.simz.received_counts()
        assert len(counts) == 30
        assert set(counts.values()) == {1}
        assert set(counts) == set(harness.lead_states())
        assert daemon.find("syncd stopped") is not None

    def test_started_line(self, harness: Harness) -> None:
        """One "syncd started" line names version, syncs, listen address and backend, no secret."""
        daemon = harness.start()
        started = daemon.started
        assert started["syncs"] == ["web"]
        assert started["database"] == "sqlite"
        assert started["listen"].startswith("127.0.0.1:")
        assert started["version"]
        assert daemon.stop() == 0
        assert harness.simz.api_key not in daemon.output()
        assert "sf-password" not in daemon.output()

    @pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
    def test_polled_syncs_load_no_stream_or_unused_libraries(self, harness: Harness) -> None:
        """A daemon whose syncs all poll never loads gRPC or Avro (about 12 MB of memory):
        only a streamed sync's intake needs them. Nor does a password login load
        simple-salesforce's SOAP metadata client (lxml) or PyJWT's ``cryptography``
        (about 17 MB): syncd never calls the one and signs a JWT only for a JWT login."""
        harness.salesforce.add_records(lead_records(5))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 5, "5 leads accepted")

        maps = Path(f"/proc/{daemon.process.pid}/maps").read_text()
        assert daemon.stop() == 0
        paths = {line.split(maxsplit=5)[-1] for line in maps.splitlines() if "/" in line}
        assert [path for path in paths if "_ssl" in path]  # shared objects are listed
        unused = ("grpc", "fastavro", "/lxml/", "/cryptography/")
        assert not [path for path in paths if any(part in path for part in unused)]


class TestProbes:
    def test_health_ready_metrics_and_404(self, harness: Harness) -> None:
        """A healthy daemon answers 200 on /healthz, /readyz and /status.json, metrics, 404."""
        harness.salesforce.add_records(lead_records(3))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 3, "3 leads accepted")

        assert daemon.get_json("/healthz") == (200, {"status": "ok"})
        status, body = daemon.get_json("/readyz")
        assert status == 200, body
        assert body["checks"] == {"config": "ok", "database": "ok", "shutdown": "ok"}
        status, body = daemon.get_json("/status.json")
        assert status == 200, body
        assert body["checks"] == {
            "config": "ok",
            "database": "ok",
            "shutdown": "ok",
            "simz_auth": "ok",
            "salesforce_login": "ok",
            "poll:web": "ok",
        }

        status, text = daemon.get("/metrics")
        assert status == 200
        # The gauges read from the database are refreshed at start and every 15 s.
        assert 'syncd_uncertain_leads{sync="web"} 0.0' in text
        assert 'syncd_leads_delivered_total{outcome="accepted",sync="web"} 3.0' in text
        assert 'syncd_polls_total{status="ok",sync="web"}' in text

        status, text = daemon.get("/nope")
        assert status == 404
        assert json.loads(text)["status"] == "not found"
        assert daemon.stop() == 0

    def test_401_fails_the_status_page_not_readiness(self, harness: Harness) -> None:
        """A SimZ 401 pauses the API key: /status.json 503 naming simz_auth, /readyz 200."""
        harness.salesforce.add_records(lead_records(3))
        harness.write_config(simz={"api_key": "wrong-key-for-this-test"})
        daemon = harness.start()
        harness.wait_until(
            lambda: harness.query(
                "SELECT COUNT(*) FROM pauses WHERE scope = 'api_key' AND http_status = 401"
            )[0][0],
            "a 401 pause",
        )
        status, body = daemon.get_json("/status.json")
        assert status == 503, body
        assert failing_checks(body) == {"simz_auth"}
        assert daemon.get("/readyz")[0] == 200
        assert daemon.get_json("/healthz") == (200, {"status": "ok"})
        assert daemon.stop() == 0
        assert harness.simz.received() == []
        assert harness.count_state("queued") == 3
        assert "wrong-key-for-this-test" not in daemon.output()

    def test_failing_polls_fail_the_status_page_not_readiness(self, harness: Harness) -> None:
        """Polls failing for three intervals: /status.json 503 naming the sync; /readyz 200."""
        config = harness.config()
        config["salesforce"]["auth"]["password"] = "not-the-password"
        harness.write_config(**config)
        daemon = harness.start()
        _, body = harness.wait_until(
            lambda: (
                lambda answer: (
                    answer if answer[0] == 503 and "poll:web" in failing_checks(answer[1]) else None
                )
            )(daemon.get_json("/status.json")),
            "/status.json 503 naming poll:web",
        )
        assert failing_checks(body) == {"poll:web", "salesforce_login"}
        assert daemon.get("/readyz")[0] == 200
        assert daemon.get_json("/healthz") == (200, {"status": "ok"})
        assert daemon.stop() == 0


class TestStartFailures:
    def test_port_in_use(self, harness: Harness) -> None:
        """A taken listen port: one log line naming the setting to change, exit 1, no traceback."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            harness.write_config(
                observability={"listen": f"127.0.0.1:{port}", "log_format": "json"}
            )
            result = harness.cli("run", timeout=60)
        assert result.returncode == 1
        assert "Traceback" not in result.stdout + result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        [refused] = [line for line in lines if line["event"] == "cannot listen"]
        assert "observability.listen" in refused["hint"]


def check_connect(harness: Harness) -> subprocess.CompletedProcess[str]:
    return harness.cli("check-config", "--connect", timeout=60)


class TestCheckConnect:
    def test_both_reachable_and_no_lead_sent(self, harness: Harness) -> None:
        """--connect runs the sync's real poll query with LIMIT 1, reaches SimZ, sends nothing."""
        result = check_connect(harness)
        assert result.returncode == 0, result.stderr
        assert "salesforce: ok (logged in)" in result.stdout
        assert "salesforce: sync web: ok (poll query runs)" in result.stdout
        assert "simz: ok" in result.stdout
        assert "simz: the API key is not checked" in result.stdout
        assert harness.simz.requests() == []
        [query] = [entry["soql"] for entry in harness.salesforce.query_log()]
        assert query.startswith("SELECT Phone, FirstName, LastName, Company, DoNotCall, Id, ")
        assert query.endswith(" ORDER BY SystemModstamp, Id LIMIT 1")

    def test_database_state_is_reported_without_creating_it(self, harness: Harness) -> None:
        """Before migrate the database is reported missing and not created; after, at head."""
        from syncd.adapters.db import make_engine
        from syncd.adapters.migrate import head_revision, upgrade

        first = check_connect(harness)
        assert first.returncode == 0, first.stderr
        assert f"database: ok ({harness.db_path} does not exist yet" in first.stdout
        assert not harness.db_path.exists()
        harness.db_path.parent.mkdir(parents=True)
        engine = make_engine(f"sqlite:///{harness.db_path}")
        upgrade(engine, "0001")
        head = head_revision(engine)
        before = check_connect(harness)
        assert f"schema at revision 0001, the latest is {head}; `syncd migrate`" in before.stdout
        upgrade(engine)
        engine.dispose()
        after = check_connect(harness)
        assert f"schema at revision {head}, the latest)" in after.stdout

    @pytest.mark.parametrize(
        ("sync", "expected"),
        [
            (
                {"mapping": {"phoneNumber": "Phonee"}},
                "salesforce: sync web: FAILED: INVALID_FIELD: No such column 'Phonee' on entity "
                "'Lead'. If you are attempting to use a custom field, be sure to append the '__c' "
                "after the custom field name. (row 1, column 8): SELECT >>>Phonee, DoNotCall, Id,",
            ),
            (
                {"where": "LeadSource = 'Web' AND AND IsConverted = false"},
                "salesforce: sync web: FAILED: MALFORMED_QUERY: unexpected token: 'and' at ",
            ),
            (
                {"mapping": {"phoneNumber": "Phone", "email": "Ownr.Email"}},
                "salesforce: sync web: FAILED: INVALID_FIELD: Didn't understand relationship "
                "'Ownr' in field path.",
            ),
        ],
        ids=["field-typo", "broken-where", "relationship-typo"],
    )
    def test_query_problems_are_marked(
        self, harness: Harness, sync: dict[str, Any], expected: str
    ) -> None:
        """A mapping typo or a broken where: one line with the query and the spot marked, exit 1."""
        harness.write_config(sync=sync)
        result = check_connect(harness)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        [line] = [line for line in result.stderr.splitlines() if "FAILED" in line]
        assert line.startswith(expected), line
        assert ">>>" in line and line.count(">>>") == 1
        assert "simz: ok" in result.stdout

    def test_unreachable_database_fails(self, harness: Harness) -> None:
        """An unreachable database is one FAILED line (password hidden) and exit 1."""
        harness.write_config(
            database={"url": "postgresql+psycopg://syncd:canary-db-pw@127.0.0.1:1/syncd"}
        )
        result = check_connect(harness)
        assert result.returncode == 1
        [line] = [line for line in result.stderr.splitlines() if "FAILED" in line]
        assert line.startswith("database: FAILED: cannot reach postgresql+psycopg://syncd:***@")
        assert "canary-db-pw" not in result.stdout + result.stderr

    def test_missing_ca_bundle_is_a_config_error(self, harness: Harness) -> None:
        """A ca_bundle that does not exist: exit 2 and one line, before connecting anywhere."""
        config = harness.config()
        config["salesforce"]["ca_bundle"] = str(harness.tmp / "no-such-ca.pem")
        harness.write_config(**config)
        result = check_connect(harness)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines() == [
            f"{harness.config_path}: salesforce.ca_bundle: no such file: "
            f"{harness.tmp / 'no-such-ca.pem'}"
        ]

    def test_failures_are_one_line_each(self, harness: Harness) -> None:
        """A refused login and an unreachable SimZ give one line each and exit 1, no traceback."""
        config = harness.config()
        config["salesforce"]["auth"]["password"] = "not-the-password"
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        config["simz"]["base_url"] = f"http://127.0.0.1:{closed_port}"
        harness.write_config(**config)
        result = check_connect(harness)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        failed = [line for line in result.stderr.splitlines() if "FAILED" in line]
        assert [line.split(":")[0] for line in failed] == ["salesforce", "simz"]
