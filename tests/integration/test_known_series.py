"""Every counter has its series at 0 from start-up, so a first failure fires its alert.

Prometheus' ``increase()`` reads a series born at N as 0: a failed-leads
counter that first appears at 1 never fires ``SyncdFailedLeads``. These tests
start the daemon's wiring (:func:`syncd.bootstrap.bootstrap`, which ``syncd
run`` calls) and read the registry's Prometheus text before anything happened.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from syncd.bootstrap import bootstrap
from syncd.config import Config, parse_config
from syncd.metrics import REGISTRY
from syncd.services import known_series as known

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"

#: Families that are not syncd's own: the process and Python collectors.
FOREIGN = ("process_", "python_")


def fresh_config(tmp_path: Path) -> tuple[Config, str, str]:
    """Two syncs never seen by this process: one polled with write-back, one streamed and
    swept by the scheduled reconciliation."""
    polled, streamed = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("polled", "streamed"))
    data: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp_path}/syncd.db"},
        "salesforce": {
            "auth": {
                "method": "session",
                "session_id": "dummy-session-id",
                "instance_url": "https://127.0.0.1:9",
            }
        },
        "simz": {"base_url": "http://127.0.0.1:9", "api_key": "literal-test-key"},
        "syncs": [
            {
                "name": polled,
                "route": {"field": "Country", "values": {"US": "agt_us"}, "default": "agt_x"},
                "mapping": {"phoneNumber": "Phone"},
                "writeback": {"fields": {"status": "SimZ_Status__c"}},
            },
            {
                "name": streamed,
                "agent": "agt_1",
                "source": {"mode": "stream"},
                "mapping": {"phoneNumber": "Phone"},
                "reconcile": {"every": "24h"},
            },
        ],
        "observability": {"log_format": "json"},
    }
    return parse_config(yaml.safe_dump(data)), polled, streamed


@pytest.fixture
def started(tmp_path: Path) -> tuple[Config, str, str, dict[str, Any]]:
    """The wiring of a fresh daemon, and its /metrics text parsed: name -> samples."""
    config, polled, streamed = fresh_config(tmp_path)
    runtime = bootstrap(config, replicas=True)
    try:
        text = generate_latest(REGISTRY).decode()
    finally:
        runtime.close()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return config, polled, streamed, families


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float | None:
    for item in families[family].samples:
        if item.name == sample and all(item.labels.get(k) == v for k, v in labels.items()):
            return float(item.value)
    return None


def test_failure_series_are_at_zero_before_any_failure(
    started: tuple[Config, str, str, dict[str, Any]],
) -> None:
    """The series SyncdFailedLeads and SyncdWritebackFailures read exist at 0 from start."""
    _config, polled, streamed, families = started
    total = "syncd_leads_delivered_total"
    for sync in (polled, streamed):
        assert value(families, "syncd_leads_delivered", total, sync=sync, outcome="failed") == 0
        assert value(families, "syncd_polls", "syncd_polls_total", sync=sync, status="error") == 0
    written = "syncd_writeback_total"
    assert value(families, "syncd_writeback", written, sync=polled, outcome="failed") == 0
    assert value(families, "syncd_batches", "syncd_batches_total", sync=polled, agent="agt_x",
                 result="uncertain") == 0  # fmt: skip
    dropped = "syncd_stream_dropped_events_total"
    assert value(families, "syncd_stream_dropped_events", dropped, sync=streamed,
                 reason="bad_id") == 0  # fmt: skip
    assert value(families, "syncd_stream_connected", "syncd_stream_connected", sync=streamed) == 0
    # Write-back and stream counters only where the sync has them.
    assert value(families, "syncd_writeback", written, sync=streamed) is None
    assert value(families, "syncd_stream_events", "syncd_stream_events_total", sync=polled) is None
    runs = "syncd_reconcile_runs_total"
    assert value(families, "syncd_reconcile_runs", runs, sync=streamed, status="error") == 0
    assert value(families, "syncd_reconcile_runs", runs, sync=polled) is None
    # The sweep's gauges are born at the first sweep: a 0 before it would claim a clean one.
    missed = "syncd_reconcile_missed"
    assert value(families, missed, missed, sync=streamed) is None


def test_every_counter_and_histogram_has_a_series_per_sync(
    started: tuple[Config, str, str, dict[str, Any]],
) -> None:
    """A counter added without its known labels here would be born at its first count.

    Every syncd counter and histogram with a ``sync`` label has a series for the
    sync that may increment it; those without one have every known label set.
    """
    _config, polled, streamed, families = started
    missing = []
    for name, family in families.items():
        if name.startswith(FOREIGN) or family.type not in ("counter", "histogram"):
            continue
        syncs = {sample.labels.get("sync") for sample in family.samples}
        if any("sync" in sample.labels for sample in family.samples) or not family.samples:
            expected = {streamed} if name.startswith("syncd_stream_") else {polled, streamed}
            if name.startswith("syncd_writeback"):  # the counter family: syncd_writeback
                expected = {polled}
            if name.startswith("syncd_reconcile"):
                expected = {streamed}
            if name.startswith("syncd_call_writebacks"):  # neither sync writes calls back
                expected = set()
            if not expected <= syncs:
                missing.append((name, sorted(expected - syncs)))
    assert not missing, f"counters without a series per sync after start-up: {missing}"
    kinds = {s.labels["kind"] for s in families["syncd_salesforce_calls"].samples}
    assert kinds >= set(known.SALESFORCE_CALL_KINDS)


def test_a_second_start_keeps_the_counts(tmp_path: Path) -> None:
    """Exporting again (another start in the same process) never resets a count."""
    config, polled, _streamed = fresh_config(tmp_path)
    known.export_known_series(config)
    from syncd.metrics import LEADS_DELIVERED

    LEADS_DELIVERED.labels(polled, "failed").inc(2)
    known.export_known_series(config)
    assert (
        REGISTRY.get_sample_value(
            "syncd_leads_delivered_total", {"sync": polled, "outcome": "failed"}
        )
        == 2
    )


@pytest.mark.parametrize(
    ("metric", "values"),
    [
        ("syncd_leads_delivered_total", known.DELIVERY_OUTCOMES),
        ("syncd_batches_total", known.BATCH_RESULTS),
        ("syncd_records_polled_total", known.RECORD_RESULTS),
        ("syncd_gate_skipped_total", known.GATE_RULES),
        ("syncd_polls_total", known.POLL_STATUSES),
        ("syncd_salesforce_calls_total", known.SALESFORCE_CALL_KINDS),
        ("syncd_writeback_total", known.WRITEBACK_OUTCOMES),
        ("syncd_writeback_api_calls_total", known.WRITEBACK_CALL_RESULTS),
        ("syncd_reconcile_runs_total", known.RECONCILE_STATUSES),
        ("syncd_webhooks_total", known.WEBHOOK_RESULTS),
        ("syncd_call_writebacks_total", known.CALL_WRITEBACK_RESULTS),
        ("syncd_call_events_processed_total", known.CALL_EVENT_STATUSES),
    ],
)
def test_the_label_values_are_the_documented_ones(metric: str, values: tuple[str, ...]) -> None:
    """docs/operations.md's metrics table names exactly the values exported at start-up."""
    [row] = [line for line in OPERATIONS.read_text("utf-8").splitlines()
             if line.startswith(f"| `{metric}` |")]  # fmt: skip
    meaning = row.split("|")[4]
    listed = meaning.split(":", 1)[1] if ":" in meaning else meaning
    documented = set(re.findall(r"`([a-z_]+)`", listed.split("(")[0]))
    assert documented == set(values), row
