"""The reconciliation sweep's pure half: its range and the comparison of Ids with leads.

Pure code. The poll reads what *changed* (a cursor window); a record can come to
match the sync's query without its cursor moving (a formula field in the
``where``, a sharing or owner change, a late commit behind ``lookback``, a
stream that lost more than Salesforce keeps), and then no poll ever reads it.
The sweep reads the Ids of every record the query matches over a range and
compares them with the sync's leads (docs/design.md#never-silently-lost):

* **missed**: the record matches, the sync has no lead for it;
* **no longer matched**: a lead whose stored cursor lies in the range, but the
  record is not among those the query matches now (deleted, left the ``where``,
  no longer visible to the integration user), confirmed by a read by Id;
* the **states** of the leads of the matched records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncd.domain.window import PollWindow, floor_second


class EmptyRange(ValueError):
    """The range to sweep is empty: its start is not before its end."""

    def __init__(self, start: datetime, end: datetime) -> None:
        super().__init__(
            f"nothing to reconcile: {start.isoformat()} is not before {end.isoformat()}"
        )


def sweep_range(
    *,
    since: datetime | None,
    until: datetime | None,
    start_at: datetime,
    resume_from: datetime,
    length: timedelta | None = None,
) -> PollWindow:
    """``[since, until)`` in whole seconds, with the sync's defaults; EmptyRange if empty.

    ``until`` defaults to ``resume_from``, where the regular poll's window begins:
    records after it are read by the next poll anyway, so calling them missed
    would be a false alarm. ``since`` defaults to ``length`` before the end (the
    scheduled sweep's window) or, without one, to the sync's ``start_at``; it is
    never before ``start_at`` when defaulted (history the sync was told to leave alone).
    """
    end = floor_second(until if until is not None else resume_from)
    if since is not None:
        start = since
    elif length is not None:
        start = max(start_at, end - length)
    else:
        start = start_at
    start = floor_second(start)
    if end <= start:
        raise EmptyRange(start, end)
    return PollWindow(start, end)


@dataclass
class Tally:
    """What a sweep found so far, page by page.

    ``swept`` holds every Id the query returned (a record changed during a REST
    sweep can be returned twice: it counts once).
    """

    swept: set[str] = field(default_factory=set)
    missed: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)

    def add_page(self, ids: Sequence[str], known: Mapping[str, str]) -> list[str]:
        """Count one page: ``known`` maps the page's Ids that have a lead to its state.

        Returns the page's missed Ids (no lead), in the page's order.
        """
        missed: list[str] = []
        for record_id in ids:
            if not record_id or record_id in self.swept:
                continue
            self.swept.add(record_id)
            state = known.get(record_id)
            if state is None:
                missed.append(record_id)
            else:
                self.states[state] += 1
        self.missed.extend(missed)
        return missed

    def unlisted(self, in_range: Iterable[str]) -> list[str]:
        """Leads stored in the range whose records the sweep did not return (candidates
        for "no longer matched", to be confirmed with :func:`no_longer_matched`)."""
        return sorted(set(in_range) - self.swept)


def no_longer_matched(candidates: Iterable[str], matched_now: Collection[str]) -> list[str]:
    """The candidates a read by Id (with the sync's ``where``) did not find either.

    A candidate found by Id still matches: its cursor moved past the range
    while the sweep ran (the next poll reads it), so it is not reported.
    """
    return sorted(set(candidates) - set(matched_now))
