"""Every counter's known label sets, exported at 0 when the daemon starts.

A counter's series is born at its first increment, and Prometheus'
``increase()`` reads a series born at N as 0: without a 0 before it, the first
failed lead or the first refused write-back after a start would never fire
``SyncdFailedLeads`` or ``SyncdWritebackFailures``. :func:`export_known_series`
creates, for each configured sync (and agent), every label value the code can
increment, so each counter has a 0 sample from the first scrape on. Syncs that
stream get the stream's counters, syncs with write-back (or call write-back) the write-back ones,
syncs with a scheduled reconciliation sweep its runs counter.

The label values live here, one tuple per counter; the code that increments a
counter uses the same words (a test holds them to docs/operations.md's table).
Histograms get their per-sync series too, so ``rate()`` over them starts at 0.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client.metrics import MetricWrapperBase

from syncd.adapters.call_outcome_store import PROCESSED_STATUSES
from syncd.config import Config
from syncd.domain.call_writeback import IN_DOUBT
from syncd.domain.gate import (
    CONSENT_RULE,
    DO_NOT_CALL_RULE,
    DUPLICATE_RULE,
    FREQUENCY_RULE,
    STOPPED_RULE,
    SUPPRESSION_RULE,
)
from syncd.domain.outcome import Counts
from syncd.domain.speed_to_lead import STAGE_NAMES
from syncd.domain.suppression import DO_NOT_CALL
from syncd.domain.writeback import DONE, FAILED, RETRY
from syncd.metrics import (
    BATCHES,
    CALL_EVENTS_PROCESSED,
    CALL_WRITEBACKS,
    DO_NOT_CALL_UNRECOGNISED,
    GATE_SKIPPED,
    LEADS_DELIVERED,
    LEASE_TAKEOVERS,
    POLL_DURATION,
    POLLS,
    RECONCILE_RUNS,
    RECORDS_POLLED,
    SALESFORCE_CALLS,
    SIMZ_REQUEST_DURATION,
    SPEED_TO_LEAD,
    SPEED_TO_LEAD_SKEW,
    STREAM_CONNECTED,
    STREAM_DROPPED,
    STREAM_EVENTS,
    STREAM_GAPS,
    STREAM_RECONNECTS,
    STREAM_REPLAY_RESETS,
    SUPPRESSION_LAG,
    SUPPRESSION_LATE,
    WEBHOOKS,
    WRITEBACK_CALLS,
    WRITEBACK_WAITED,
    WRITEBACKS,
)
from syncd.services.poll_report import RECORD_COUNTS, PollStatus
from syncd.services.reconcile import SweepStatus

#: ``syncd_leads_delivered_total``'s ``outcome``: what became of a batch's leads.
DELIVERY_OUTCOMES = tuple(name for name, _ in Counts().items())
#: ``syncd_batches_total``'s ``result``: the classified answer (``abandoned``: not sent).
BATCH_RESULTS = ("accepted", "rejected", "split", "retry", "paused", "uncertain", "abandoned")
#: ``syncd_records_polled_total``'s ``result``.
RECORD_RESULTS = RECORD_COUNTS
#: ``syncd_polls_total``'s ``status``.
POLL_STATUSES: tuple[str, ...] = get_args(PollStatus)
#: ``syncd_gate_skipped_total``'s ``rule``.
GATE_RULES = (
    DO_NOT_CALL_RULE,
    DUPLICATE_RULE,
    STOPPED_RULE,
    SUPPRESSION_RULE,
    CONSENT_RULE,
    FREQUENCY_RULE,
)
#: ``syncd_salesforce_calls_total``'s ``kind``.
SALESFORCE_CALL_KINDS = ("login", "query", "query_more", "limits", "bulk", "describe", "writeback")
#: ``syncd_writeback_total``'s ``outcome``.
WRITEBACK_OUTCOMES = (DONE, RETRY, FAILED)
#: ``syncd_writeback_api_calls_total``'s ``result``.
WRITEBACK_CALL_RESULTS = ("ok", "error")
#: ``syncd_call_writebacks_total``'s ``result``.
CALL_WRITEBACK_RESULTS = (DONE, RETRY, IN_DOUBT, FAILED)
#: ``syncd_stream_events_total``'s ``change_type``: the change types Salesforce sends.
STREAM_CHANGE_TYPES = (
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
)
#: ``syncd_reconcile_runs_total``'s ``status``: how a scheduled sweep ended.
RECONCILE_STATUSES: tuple[str, ...] = get_args(SweepStatus)
#: ``syncd_call_events_processed_total``'s ``status``: what a stored webhook became.
CALL_EVENT_STATUSES = PROCESSED_STATUSES
#: ``syncd_stream_dropped_events_total``'s ``reason``: why an event was let go.
STREAM_DROP_REASONS = ("bad_id", "bad_header", "undecodable")
#: ``syncd_webhooks_total``'s ``result``: what the webhook receiver answered.
WEBHOOK_RESULTS = ("stored", "duplicate", "not_found", "too_large", "bad_request", "error")


def export_known_series(config: Config) -> None:
    """Create every known label set of every counter (at 0) for the configured syncs.

    Safe to call more than once: an existing series keeps its value. Gauges are
    left to the code that sets them (the database refresh sets every sync's).
    """
    for kind in SALESFORCE_CALL_KINDS:
        SALESFORCE_CALLS.labels(kind=kind)
    for result in WEBHOOK_RESULTS:
        WEBHOOKS.labels(result)
    for status in CALL_EVENT_STATUSES:
        CALL_EVENTS_PROCESSED.labels(status)
    for source in suppression_lag_sources(config):
        SUPPRESSION_LAG.labels(source)
        SUPPRESSION_LATE.labels(source)
    for sync in config.syncs:
        name = sync.name
        _labels(LEADS_DELIVERED, name, DELIVERY_OUTCOMES)
        for agent in sync.agents:
            for result in BATCH_RESULTS:
                BATCHES.labels(name, agent, result)
        SIMZ_REQUEST_DURATION.labels(name)
        _labels(RECORDS_POLLED, name, RECORD_RESULTS)
        DO_NOT_CALL_UNRECOGNISED.labels(name)
        _labels(GATE_SKIPPED, name, GATE_RULES)
        _labels(POLLS, name, POLL_STATUSES)
        POLL_DURATION.labels(name)
        LEASE_TAKEOVERS.labels(name)
        _labels(SPEED_TO_LEAD, name, STAGE_NAMES)
        SPEED_TO_LEAD_SKEW.labels(name)
        if sync.writeback is not None:
            _labels(WRITEBACKS, name, WRITEBACK_OUTCOMES)
            _labels(WRITEBACK_CALLS, name, WRITEBACK_CALL_RESULTS)
            WRITEBACK_WAITED.labels(name)
        if sync.call_writeback is not None:
            for result in CALL_WRITEBACK_RESULTS:
                CALL_WRITEBACKS.labels(name, sync.call_writeback.mode, result)
        if sync.reconcile is not None:
            # The gauges are born at the first sweep: a 0 before it would claim a clean one.
            _labels(RECONCILE_RUNS, name, RECONCILE_STATUSES)
        if sync.streamed:
            _export_stream(name)


def suppression_lag_sources(config: Config) -> list[str]:
    """``syncd_suppression_lag_seconds``'s ``source``: do_not_call, then each source's name."""
    return [DO_NOT_CALL, *(source.name for source in config.suppression.sources)]


def _export_stream(name: str) -> None:
    """A streamed sync's counters at 0, and its stream not connected (here) until it is."""
    _labels(STREAM_EVENTS, name, STREAM_CHANGE_TYPES)
    _labels(STREAM_DROPPED, name, STREAM_DROP_REASONS)
    STREAM_RECONNECTS.labels(name)
    STREAM_GAPS.labels(name)
    STREAM_REPLAY_RESETS.labels(name)
    if not _has_series(STREAM_CONNECTED, name):
        STREAM_CONNECTED.labels(name).set(0)


def _labels(counter: MetricWrapperBase, sync: str, values: tuple[str, ...]) -> None:
    for value in values:
        counter.labels(sync, value)


def _has_series(metric: MetricWrapperBase, sync: str) -> bool:
    for family in metric.collect():
        if any(sample.labels.get("sync") == sync for sample in family.samples):
            return True
    return False
