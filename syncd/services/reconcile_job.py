"""The scheduled reconciliation sweep of one sync (``syncs[].reconcile``), run on its leader.

Every ``reconcile.every`` the daemon sweeps the last ``reconcile.window`` of the
sync's cursor range up to where the regular poll's window begins
(:mod:`syncd.services.reconcile`), with a Salesforce session of its own (the
poll's runs in parallel and a session is not thread-safe). It does not start
while the org's API usage is above ``salesforce.max_api_usage_percent``, and
stops between pages once it passes it, as a poll does.

A sweep that compared its whole window sets ``syncd_reconcile_missed`` (what it
found, queued or not: the poll missed them either way) and
``syncd_reconcile_last_success_timestamp_seconds``; every run counts in
``syncd_reconcile_runs_total{status}``. With ``reconcile.queue`` the missed
records are taken in through the ordinary intake, under the blast-radius guard.
"""

from __future__ import annotations

import threading

from sqlalchemy.exc import SQLAlchemyError

from syncd.config.models import SalesforceConfig, SyncConfig
from syncd.domain.api_usage import usage_over_limit
from syncd.domain.reconcile import EmptyRange
from syncd.logs import get_logger
from syncd.metrics import RECONCILE_LAST_SUCCESS, RECONCILE_MISSED, RECONCILE_RUNS
from syncd.services.reconcile import (
    ReconcileResult,
    ReconcileRuntime,
    plan_reconcile,
    run_reconcile,
)

log = get_logger("syncd.reconcile")

#: Who the audit trail names for a scheduled sweep's intake.
SCHEDULED_ACTOR = "syncd (scheduled reconcile)"


def source_name(sync: SyncConfig) -> str:
    """The Salesforce session the scheduled sweep of ``sync`` uses (its own)."""
    return f"{sync.name}#reconcile"


def scheduled_sweep(
    runtime: ReconcileRuntime,
    sync: SyncConfig,
    salesforce: SalesforceConfig,
    stop: threading.Event | None = None,
) -> ReconcileResult | None:
    """One scheduled sweep of ``sync``; None when it did not run (off, nothing to sweep,
    API usage too high). Never raises for Salesforce or database trouble."""
    settings = sync.reconcile
    if settings is None:
        return None
    name = source_name(sync)
    reason = usage_over_limit(runtime.source(name).api_usage(), salesforce.max_api_usage_percent)
    if reason is None:
        reason = usage_over_limit(
            runtime.source(sync.name).api_usage(), salesforce.max_api_usage_percent
        )
    if reason is not None:
        RECONCILE_RUNS.labels(sync=sync.name, status="paused").inc()
        log.warning("reconcile skipped: API usage", sync=sync.name, reason=reason)
        return None
    try:
        plan = plan_reconcile(runtime, sync, salesforce, length=settings.window, source_name=name)
        result = run_reconcile(
            runtime,
            plan,
            salesforce,
            queue=settings.queue,
            who=SCHEDULED_ACTOR,
            reason="scheduled reconcile",
            stop=stop,
        )
    except EmptyRange:
        log.info("reconcile skipped: nothing to sweep yet", sync=sync.name)
        return None
    except SQLAlchemyError as exc:
        RECONCILE_RUNS.labels(sync=sync.name, status="error").inc()
        log.error("reconcile error", sync=sync.name, error=str(exc).splitlines()[0][:300])
        return None
    report(result, runtime.now().timestamp())
    return result


def report(result: ReconcileResult, at: float) -> None:
    """The sweep's metrics and its log line (a warning when it found missed records)."""
    RECONCILE_RUNS.labels(sync=result.sync, status=result.status).inc()
    fields = {
        "sync": result.sync,
        "status": result.status,
        "since": result.window.start.isoformat(),
        "until": result.window.end.isoformat(),
        "records": result.fetched,
        "missed": len(result.missed),
        "no_longer_matched": len(result.unmatched),
        "seconds": round(result.duration_seconds, 1),
    }
    if result.status == "ok":
        RECONCILE_MISSED.labels(sync=result.sync).set(len(result.missed))
        RECONCILE_LAST_SUCCESS.labels(sync=result.sync).set(at)
    intake = result.intake
    if intake is not None:
        fields.update(queued=intake.queued, held=intake.held, intake_status=intake.status)
    if result.missed:
        log.warning(
            "reconcile found records no poll read",
            salesforce_ids=result.missed[:20],
            **fields,
        )
    else:
        log.info("reconcile finished", **fields)
