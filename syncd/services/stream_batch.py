"""What a linger's change events ask of the stream: records to read, deletions, reconciliations.

A :class:`Batch` takes each event's header and lets the event go (its decoded
field values are never used). Ids are checked first
(:mod:`syncd.domain.record_ids`), so nothing but a record Id reaches SOQL:

* a wildcard (``00Q*``) or a GAP_OVERFLOW asks for a reconciliation poll from
  the event's commit time (:attr:`Batch.reconcile`);
* any other value that is no record Id is dropped, with one warning and one
  count (``syncd_stream_dropped_events_total{reason="bad_id"}``);
* an event whose unreadable header fields (read as absent) leave nothing to do
  is dropped (``bad_header``), as is a payload that could not be decoded
  (``undecodable``).

None of these stops the batch: it commits and its replay id is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from syncd.adapters.pubsub import UNDECODABLE, ChangeEvent
from syncd.domain.record_ids import PLACEHOLDER_ID, sort_ids
from syncd.logs import get_logger
from syncd.metrics import STREAM_DROPPED, STREAM_EVENTS, STREAM_GAPS, STREAM_STALLED
from syncd.services.known_series import STREAM_DROP_REASONS
from syncd.services.stream_board import StreamBoard

log = get_logger(__name__)

#: Change types whose records are read and evaluated.
READ_TYPES = frozenset(
    {
        "CREATE",
        "UPDATE",
        "UNDELETE",
        "GAP_CREATE",
        "GAP_UPDATE",
        "GAP_UNDELETE",
        "GAP_OVERFLOW",
    }
)
#: Change types that delete their records: a GAP_DELETE is a deletion Salesforce could not
#: describe in detail (made outside the application server), never a read.
DELETE_TYPES = frozenset({"DELETE", "GAP_DELETE"})
#: Why events are dropped (``syncd_stream_dropped_events_total``'s ``reason``).
DROP_REASONS = STREAM_DROP_REASONS


def export_stream_metrics(sync_name: str) -> None:
    """A streamed sync's stall gauge and drop counters at 0, so rules see them from start."""
    STREAM_STALLED.labels(sync=sync_name).set(0)
    for reason in DROP_REASONS:
        STREAM_DROPPED.labels(sync=sync_name, reason=reason)


@dataclass
class Batch:
    """What a linger's events ask for; the events themselves are not kept."""

    sync: str
    sobject: str
    board: StreamBoard
    count: int = 0
    last_replay: bytes = b""
    last_commit: datetime | None = None
    read: dict[str, None] = field(default_factory=dict)  # ordered set
    #: Record Id -> when it was deleted (the event's commit time).
    deleted: dict[str, datetime | None] = field(default_factory=dict)
    #: Commit times (None: unknown) of events only a reconciliation poll can recover.
    reconcile: list[datetime | None] = field(default_factory=list)
    #: When the batch's first events arrived: its new leads' read moment (speed to lead).
    arrived_at: datetime | None = None

    def add(self, events: list[ChangeEvent]) -> None:
        """Take what ``events`` name (in order); the last one's replay id is the batch's."""
        wanted = self.sobject.lower()
        for event in events:
            self.count += 1
            self.last_replay = event.replay_id
            self.last_commit = event.commit_at
            STREAM_EVENTS.labels(sync=self.sync, change_type=event.change_type or "event").inc()
            if UNDECODABLE in event.flaws:
                self._drop(event, "undecodable", "the payload does not fit its schema")
                continue
            if event.entity is not None and event.entity.lower() != wanted:
                continue  # /data/ChangeEvents carries every selected object
            change = event.change_type
            if change is not None and change.startswith("GAP_"):
                STREAM_GAPS.labels(sync=self.sync).inc()
                self.board.bump(self.sync, "gaps")
                log.info("stream gap event", change_type=change, records=len(event.record_ids))
            self._take_ids(event)

    def _take_ids(self, event: ChangeEvent) -> None:
        """The event's record Ids; what names no record is reconciled or dropped."""
        change = event.change_type
        ids = sort_ids(event.record_ids)
        overflow = change == "GAP_OVERFLOW"
        if ids.wildcards or overflow:
            self.reconcile.append(event.commit_at)
            log.info(
                "stream event names no single record; reconciling from its commit time",
                change_type=change,
                wildcards=list(ids.wildcards),
                commit_at=event.commit_at.isoformat() if event.commit_at else None,
            )
        if ids.invalid or (ids.placeholders and not overflow):
            shown = ", ".join(ids.invalid) if ids.invalid else PLACEHOLDER_ID
            self._drop(event, "bad_id", f"not a record Id: {shown}")
        elif event.flaws and not (ids.records or ids.wildcards or overflow):
            self._drop(event, "bad_header", "; ".join(event.flaws))
        elif event.flaws:
            log.warning("stream event header read in part", flaws=list(event.flaws))
        for record_id in ids.records:
            if change in DELETE_TYPES:
                self.deleted[record_id] = event.commit_at
                self.read.pop(record_id, None)  # deleted since: nothing left to read
            elif change is None or change in READ_TYPES:
                self.read[record_id] = None

    def _drop(self, event: ChangeEvent, reason: str, detail: str) -> None:
        """Let (part of) an event go for good: one warning, one count; the stream goes on."""
        STREAM_DROPPED.labels(sync=self.sync, reason=reason).inc()
        self.board.bump(self.sync, "dropped")
        log.warning(
            "stream event dropped",
            reason=reason,
            detail=detail[:300],
            change_type=event.change_type,
            replay_id=event.replay_id.hex(),
        )
