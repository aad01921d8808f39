"""Every metric the Prometheus rules and the Grafana dashboard read is one syncd exposes.

The names are scraped from ``/metrics`` of a real ``syncd run`` process that
has polled and delivered, not taken from the source code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records
from tests.integration.deploy_files import (
    PROMETHEUS_SERIES,
    dashboard_expressions,
    metric_names,
    rule_expressions,
)

_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "counter": ("_total",),
}


def exposed_series(text: str) -> set[str]:
    """Series names in Prometheus text: each TYPE'd family with its suffixes, and every sample."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        base = name.removesuffix("_total") if kind == "counter" else name
        names.update(base + suffix for suffix in _SUFFIXES.get(kind, ()))
    names.update(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M))
    return names


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def test_exposed_series_reads_histograms_and_counters() -> None:
    """The scrape parser knows the suffixes of histograms and counters."""
    text = "# TYPE a_seconds histogram\n# TYPE b_total counter\nb_total 1.0\n"
    assert exposed_series(text) == {
        "a_seconds",
        "a_seconds_bucket",
        "a_seconds_sum",
        "a_seconds_count",
        "b_total",
    }


def test_rules_and_dashboard_use_only_exposed_metrics(harness: Harness) -> None:
    """Scrape a daemon that polled and delivered; every referenced series is in the scrape."""
    harness.salesforce.add_records(lead_records(3))
    daemon = harness.start()
    harness.wait_until(lambda: harness.count_state("accepted") == 3, "3 leads accepted")
    status, text = daemon.get("/metrics")
    assert status == 200
    exposed = exposed_series(text)
    assert "syncd_simz_request_duration_seconds_bucket" in exposed
    for source, expressions in (
        ("rules.yaml", rule_expressions()),
        ("syncd.json", dashboard_expressions()),
    ):
        for expression in expressions:
            unknown = metric_names(expression) - exposed - PROMETHEUS_SERIES
            assert not unknown, f"{source}: {expression!r} reads {sorted(unknown)}"
    assert daemon.stop() == 0, daemon.output()


def test_a_fresh_daemon_exports_the_failure_series_at_zero(harness: Harness) -> None:
    """Before any lead exists, /metrics has the series the failure alerts read, at 0.

    ``increase()`` reads a series born at N as 0, so a counter that first appears at
    its first failure would never fire SyncdFailedLeads or SyncdWritebackFailures.
    Also the deploy kit's own series: the build version and the process collector.
    """
    harness.salesforce.declare_field("Lead.SimZ_Status__c:picklist:40")
    harness.write_config(sync={"writeback": {"fields": {"status": "SimZ_Status__c"}}})
    daemon = harness.start()
    status, text = daemon.get("/metrics")
    assert status == 200
    for line in (
        'syncd_leads_delivered_total{outcome="failed",sync="web"} 0.0',
        'syncd_writeback_total{outcome="failed",sync="web"} 0.0',
        'syncd_polls_total{status="error",sync="web"} 0.0',
        'syncd_batches_total{agent="agt_1",result="uncertain",sync="web"} 0.0',
    ):
        assert line in text.splitlines(), line
    assert re.search(r'^syncd_build_info\{version="[^"]+"\} 1\.0$', text, re.M)
    assert re.search(r"^process_resident_memory_bytes \S+$", text, re.M)
    assert re.search(r"^process_start_time_seconds \S+$", text, re.M)
    assert daemon.stop() == 0, daemon.output()
