"""The stream's batch window adapts: a steady flow of change events costs one Salesforce
query per window (up to ``source.max_linger``), not one per ``delivery.linger``, and a lone
event after the flow is read within ``delivery.linger`` again.

Driven through the real subscriber against the Salesforce emulator's Pub/Sub API and a
real database; the queries are counted in the emulator's own log. The bounds are counts,
not times: a slower machine makes fewer, larger batches, never more.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine

from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from tests.e2e.harness import lead_records, wait_until
from tests.integration.test_stream import Stream, make_sync
from tests.integration.test_stream import emulator as emulator

#: 20 records a second for 3 seconds.
FLOW, SPACING = 60, 0.05


def id_reads(emulator: SalesforceEmulator, since: int) -> int:
    """Queries by record Id (one per batch of events) after the first ``since`` log entries."""
    return sum(1 for entry in emulator.query_log()[since:] if " Id IN (" in entry["soql"])


def flow(emulator: SalesforceEmulator, count: int) -> list[str]:
    ids: list[str] = []
    for n in range(count):
        ids += emulator.add_records(lead_records(1, start=1000 + n))
        time.sleep(SPACING)
    return ids


def linger_gauge() -> float:
    return REGISTRY.get_sample_value("syncd_stream_linger_seconds", {"sync": "web"}) or 0.0


#: delivery.linger and source.max_linger at their defaults.
WINDOW = (0.1, 1.0)
#: Reads for the flow: about 7 adapting (0.1, 0.2, 0.4, 0.8 s, then 1 s windows); a fixed
#: 100 ms window took 25 to 30 here.
MOST_READS = 15


def test_a_steady_flow_costs_one_read_per_window(
    emulator: SalesforceEmulator, engine: Engine
) -> None:
    """60 events at 20/s cost at most 15 reads; a lone event afterwards waits the base window."""
    window, most_reads = WINDOW, MOST_READS
    stream = Stream(emulator, engine, make_sync())
    stream.window = window
    stream.start()
    try:
        stream.subscribed()
        before = len(emulator.query_log())
        ids = flow(emulator, FLOW)
        wait_until(lambda: set(ids) <= set(stream.leads()), "every record of the flow")
        reads = id_reads(emulator, before)
        assert 1 <= reads <= most_reads, f"{reads} reads for {FLOW} events"
        assert linger_gauge() > window[0]  # the window grew under the flow

        time.sleep(window[1] + 0.5)  # the flow is over: a quiet spell
        [lone] = emulator.add_records(lead_records(1, start=5000))
        wait_until(lambda: lone in stream.leads(), "the lone record")
        assert linger_gauge() == pytest.approx(window[0])  # back at delivery.linger
    finally:
        stream.close()


def test_a_fixed_window_reads_once_per_linger(emulator: SalesforceEmulator, engine: Engine) -> None:
    """Without ``max_linger`` the window stays at ``delivery.linger``: the cost adapting saves."""
    stream = Stream(emulator, engine, make_sync())
    stream.start()
    try:
        stream.subscribed()
        before = len(emulator.query_log())
        ids = flow(emulator, FLOW)
        wait_until(lambda: set(ids) <= set(stream.leads()), "every record of the flow")
        assert linger_gauge() == pytest.approx(0.1)
        assert id_reads(emulator, before) > MOST_READS
    finally:
        stream.close()
