"""What the called person's local rules say about a due lead now (the values, pure).

Calling hours, and with ``calling_hours.profile: us`` the state rules, depend on
where the number is: its zones and states. The service that knows the sync's
configuration (:mod:`syncd.services.call_window`) answers for every due lead of a
claim with a :class:`LocalCall`; the send gate makes a lead wait while its window
is closed, applies the per-number caps its states add, and keeps ``evidence`` in
the lead's dial decision (docs/safety.md#the-record-of-every-dial-decision).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncd.domain.frequency import Cap


@dataclass(frozen=True)
class DueLead:
    """A due lead as local rules see it: its number and the record's zone and state fields."""

    lead_id: int
    phone_e164: str | None
    time_zone: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class LocalCall:
    """The local rules' answer for one lead.

    ``opens``: None when the lead may be called now, else when its window opens.
    ``caps``: the per-number caps its states add (e.g. three calls per 24 hours).
    ``evidence``: plain JSON values for the dial decision: ``rule`` (the window and
    days that allowed or held it), ``zones``, ``zone_source`` (``phone``, ``field``
    or ``fixed``), ``local_time`` (ISO, in the first zone), and with a profile
    ``profile``, ``states`` and ``state_source``.
    """

    opens: datetime | None = None
    caps: tuple[Cap, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)


#: Given the due leads of a claim and the time: one answer per lead id.
CallingRules = Callable[[Sequence[DueLead], datetime], Mapping[int, LocalCall]]
