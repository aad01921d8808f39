"""When a sync runs: its poll schedule, its delivery tick and its source (poll or stream)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from syncd.config.base import FIELD_NAME, StrictModel, cron_trigger
from syncd.config.types import Duration


class ScheduleConfig(StrictModel):
    every: Duration | None = None
    """Poll interval, at least 1s. Set exactly one of every and cron."""
    cron: str | None = Field(default=None, description='Crontab, e.g. "*/5 8-18 * * mon-fri".')
    timezone: str = Field(default="UTC", description="Time zone the cron expression is read in.")

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.every is None) == (self.cron is None):
            raise ValueError("set exactly one of every and cron")
        if self.every is not None and self.every < timedelta(seconds=1):
            raise ValueError("every must be at least 1s")
        if self.cron is not None:
            try:
                cron_trigger(self.cron, self.timezone)
            except (ValueError, LookupError) as exc:
                raise ValueError(f"invalid cron expression {self.cron!r}: {exc}") from None
        return self

    @property
    def nominal_interval(self) -> timedelta:
        """The polling interval (for cron: the gap between its next two fire times)."""
        if self.every is not None:
            return self.every
        assert self.cron is not None
        trigger = cron_trigger(self.cron, self.timezone)
        now = datetime.now(UTC)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
        if first is None or second is None:
            return timedelta(days=1)
        gap: timedelta = second - first
        return gap


class DeliveryScheduleConfig(StrictModel):
    every: Duration = Field(
        default=timedelta(seconds=5),
        description="How often queued leads are delivered at the latest (the fallback tick).",
    )
    linger: Duration = Field(
        default=timedelta(milliseconds=100),
        description="When leads are queued, delivery starts within this (to fill a batch) "
        "instead of waiting for the next tick.",
    )

    @field_validator("linger")
    @classmethod
    def _linger(cls, value: timedelta) -> timedelta:
        if value > timedelta(seconds=60):
            raise ValueError("linger must be at most 60s (every is the fallback tick)")
        return value


_CDC_TOPIC = re.compile(r"^/data/(ChangeEvents|[A-Za-z][A-Za-z0-9_]*ChangeEvent)$")
_EVENT_TOPIC = re.compile(r"^/event/[A-Za-z][A-Za-z0-9_]*__e$")


def change_event_topic(sobject: str) -> str:
    """The Change Data Capture topic of an object: ``Lead`` -> ``/data/LeadChangeEvent``."""
    name = sobject[:-1] if sobject.endswith("__c") else sobject  # Foo__c -> Foo__ChangeEvent
    return f"/data/{name}ChangeEvent"


class SourceConfig(StrictModel):
    """Where new records come from: polling alone, or the Pub/Sub stream plus a slow poll."""

    mode: Literal["poll", "stream"] = Field(
        default="poll",
        description="poll: query on the schedule. stream: read change events as they happen "
        "(Pub/Sub API) and poll every reconcile_every as the safety net.",
    )
    topic: str | None = Field(
        default=None,
        description="Pub/Sub topic (stream mode): default /data/<Object>ChangeEvent; "
        "/data/ChangeEvents or a platform event such as /event/Lead_Ready__e also work.",
    )
    id_field: str = Field(
        default="RecordId__c",
        pattern=FIELD_NAME.pattern,
        description="For a platform event topic: the event field holding the record Id.",
    )
    reconcile_every: Duration = Field(
        default=timedelta(minutes=10),
        description="Stream mode: how often the regular poll runs as the safety net.",
    )
    keepalive_timeout: Duration = Field(
        default=timedelta(seconds=300),
        description="Stream mode: reconnect when nothing, not even a keepalive, arrived "
        "for this long (the server sends one at least every 270s).",
    )
    max_linger: Duration = Field(
        default=timedelta(seconds=1),
        description="Stream mode: while change events keep arriving, the batch window grows "
        "from delivery.linger up to this (one Salesforce query per window), and shrinks back "
        "when they thin out. Bounds the added latency; at most 60s.",
    )
    failover_within: Duration = Field(
        default=timedelta(seconds=30),
        description="Stream mode, several replicas: when the replica running the stream "
        "dies, another resumes it within this long. Sets the sync's lease (daemon.lease_ttl "
        "applies only if shorter). At least 10s.",
    )

    @field_validator("max_linger")
    @classmethod
    def _max_linger(cls, value: timedelta) -> timedelta:
        if value > timedelta(seconds=60):
            raise ValueError("max_linger must be at most 60s")
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and not (_CDC_TOPIC.match(value) or _EVENT_TOPIC.match(value)):
            raise ValueError(
                f"{value!r} is not a Pub/Sub topic: use /data/<Object>ChangeEvent, "
                "/data/ChangeEvents or /event/<Name>__e"
            )
        return value

    @field_validator("reconcile_every", "keepalive_timeout")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @field_validator("failover_within")
    @classmethod
    def _failover_within(cls, value: timedelta) -> timedelta:
        # Below 10s the lease would be renewed more than once a second.
        if value < timedelta(seconds=10):
            raise ValueError("must be at least 10s")
        return value


class ReconcileConfig(StrictModel):
    """The scheduled reconciliation sweep: every record the query matches, against the leads.

    The poll reads what changed; records that became eligible without a change
    of their cursor (a formula in the ``where``, a sharing change) are never
    read. The sweep reads the Ids of every matching record over a recent window
    and reports those without a lead (docs/design.md#never-silently-lost).
    """

    every: Duration = Field(
        default=timedelta(hours=24),
        description="How often the sweep runs (on the sync's leader). At least 1m.",
    )
    window: Duration = Field(
        default=timedelta(days=7),
        description="How far back (on the cursor field) each sweep reads, up to where the "
        "regular poll's window begins; never before the sync's start_at.",
    )
    queue: bool = Field(
        default=False,
        description="Take the records the sweep finds missed through the ordinary intake "
        "(mapping, rules, the blast-radius guard); false: only report them.",
    )

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value
