"""One sync: a Salesforce query mapped to SimZ leads, with all its sections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from syncd.config.base import FIELD_NAME, SOBJECT_NAME, SYNC_NAME, StrictModel
from syncd.config.calls import CallWritebackConfig
from syncd.config.legal_hours import legal_hours_regions
from syncd.config.mapping import MappingConfig, OptionsConfig, PhoneConfig, RouteConfig
from syncd.config.rules import CallingHoursConfig, GuardConfig, RulesConfig
from syncd.config.schedule import (
    DeliveryScheduleConfig,
    ReconcileConfig,
    ScheduleConfig,
    SourceConfig,
    change_event_topic,
)
from syncd.config.types import Duration, FieldRef
from syncd.config.writeback import WritebackConfig
from syncd.domain.fields import field_paths
from syncd.domain.mapping import MappingSpec, Route
from syncd.domain.rules import IntakeRules
from syncd.domain.soql import QuerySpec
from syncd.domain.soql_where import where_fields
from syncd.domain.window import CursorPolicy


def _parse_start_at(value: Any) -> Any:
    if value is None or value == "now":
        return "now"
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is neither 'now' nor an ISO date such as 2024-01-31T00:00:00Z"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if hasattr(value, "isoformat"):  # a YAML date
        return datetime.fromisoformat(value.isoformat()).replace(tzinfo=UTC)
    raise ValueError("expected 'now' or an ISO date")


class SyncConfig(StrictModel):
    name: str = Field(description="Unique, lower case: letters, digits, - and _.")
    enabled: bool = True
    """A disabled sync is neither polled nor delivered."""
    object: str = Field(default="Lead", description="Salesforce object to poll, e.g. Lead.")
    where: str | None = Field(default=None, description="Extra SOQL condition, ANDed in.")
    cursor_field: str = Field(default="SystemModstamp", pattern=FIELD_NAME.pattern)
    """The replication cursor: a datetime field that every change moves forward."""
    schedule: ScheduleConfig = ScheduleConfig(every=timedelta(seconds=60))
    """When to poll: every (an interval) or cron."""
    delivery: DeliveryScheduleConfig = DeliveryScheduleConfig()
    """When to deliver queued leads."""
    source: SourceConfig = SourceConfig()
    """Where new records come from: polling, or Change Data Capture events (stream)."""
    start_at: Literal["now"] | datetime = Field(
        default="now",
        description="'now' (default: never dial the org's history) or an ISO date to "
        "backfill from.",
    )
    lookback: Duration = Field(
        default=timedelta(minutes=10),
        description="Re-read this far behind the watermark to catch late commits.",
    )
    lag: Duration = Field(
        default=timedelta(seconds=15),
        description="Never read closer to the present than this.",
    )
    agent: str | None = Field(default=None, description="The SimZ agent id that takes every lead.")
    route: RouteConfig | None = Field(default=None, description="Pick the agent by a field value.")
    mapping: MappingConfig
    """Where each SimZ lead field comes from."""
    phone: PhoneConfig = PhoneConfig()
    """How phone numbers are read."""
    rules: RulesConfig = RulesConfig()
    """Safety rules that hold leads back (skipped)."""
    options: OptionsConfig | None = None
    """SimZ request options; absent ones are left out of the request."""
    guard: GuardConfig = GuardConfig()
    """The blast-radius guard: how many new leads one poll may queue before they are held."""
    calling_hours: CallingHoursConfig | None = Field(
        default=None, description="Only deliver inside these local hours (off when absent)."
    )
    writeback: WritebackConfig | None = None
    """Write each lead's outcome back to its Salesforce record (off when absent)."""
    reconcile: ReconcileConfig | None = None
    """A scheduled sweep that reports (or queues) matching records without a lead (off when
    absent; `syncd reconcile` runs one by hand)."""
    call_writeback: CallWritebackConfig | None = None
    """Write each call's outcome to the record (a Task, or fields); needs simz.webhook."""

    @field_validator("start_at", mode="before")
    @classmethod
    def _start_at(cls, value: Any) -> Any:
        return _parse_start_at(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SYNC_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid sync name: use lower case letters, digits, - and _ "
                "(at most 63 characters)"
            )
        return value

    @field_validator("object")
    @classmethod
    def _object(cls, value: str) -> str:
        if not SOBJECT_NAME.match(value):
            raise ValueError(f"{value!r} is not a Salesforce object name")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> SyncConfig:
        if (self.agent is None) == (self.route is None):
            raise ValueError("set exactly one of agent and route")
        if self.agent is not None and not self.agent.strip():
            raise ValueError("agent is empty")
        return self

    @model_validator(mode="after")
    def _writeback_not_read(self) -> SyncConfig:
        if self.writeback is None:
            return self
        written = {name.lower(): name for name in self.writeback.fields.names().values()}
        for label, path in self._read_paths():
            head = path.split(".")[0].lower()
            if head in written:
                raise ValueError(
                    f"{label} reads {path}, which write-back writes: a field syncd writes "
                    "cannot also decide the lead (each write would look like a change)"
                )
        return self

    @model_validator(mode="after")
    def _call_fields_not_read(self) -> SyncConfig:
        calls = self.call_writeback
        if calls is None or calls.mode != "fields":
            return self
        written = {name.lower() for name in calls.fields.names().values()}
        for label, path in self._read_paths():
            if path.split(".")[0].lower() in written:
                raise ValueError(
                    f"{label} reads {path}, which call_writeback writes: a field syncd writes "
                    "cannot also decide the lead (each call written would look like a change)"
                )
        return self

    def _read_paths(self) -> list[tuple[str, str]]:
        """(setting, field path) of every field the mapping, routing, rules, the ``where``
        condition and the calling hours' zone field read."""
        mapping = self.mapping
        refs: list[tuple[str, FieldRef | None]] = [
            ("mapping.phoneNumber", mapping.phoneNumber),
            ("mapping.firstName", mapping.firstName),
            ("mapping.lastName", mapping.lastName),
            ("mapping.email", mapping.email),
            ("mapping.campaignType", mapping.campaignType),
            *((f"mapping.customData.{key}", ref) for key, ref in mapping.customData.items()),
        ]
        if self.route is not None:
            refs.append(("route.field", self.route.field))
        paths = [(label, ref.path) for label, ref in refs if ref is not None and ref.path]
        if self.rules.respect_do_not_call:
            paths.append(("rules.do_not_call_field", self.rules.do_not_call_field))
        paths.append(("cursor_field", self.cursor_field))
        paths += [("where", path) for path in where_fields(self.where)]
        if self.calling_hours is not None and self.calling_hours.zone_field is not None:
            paths.append(("calling_hours.timezone.field", self.calling_hours.zone_field))
        if self.calling_hours is not None and self.calling_hours.state_field is not None:
            paths.append(("calling_hours.state_field", self.calling_hours.state_field))
        if self.rules.consent is not None:
            paths.append(("rules.consent.field", self.rules.consent.field))
        return paths

    def safety_warnings(self) -> list[str]:
        """What this sync may do that the law forbids, as lines that say what to add.

        Not errors: a sync may be meant to call around the clock (a consenting
        audience, another dialer enforcing hours), but it should say so by choice.
        """
        if not self.enabled or self.calling_hours is not None:
            return []
        found = legal_hours_regions(
            self.phone.default_region, self.route.values if self.route is not None else {}
        )
        return [
            f"sync {self.name} sends {region.region} numbers ({region.because}) but sets no "
            f"calling_hours: add calling_hours: {region.suggestion} ({region.law}; see "
            "docs/holding-and-calling-hours.md)"
            for region in found
        ]

    @property
    def streamed(self) -> bool:
        """True when change events feed this sync (``source.mode: stream``)."""
        return self.source.mode == "stream"

    @property
    def topic(self) -> str:
        """The Pub/Sub topic the stream reads (``source.topic`` or the object's CDC topic)."""
        return self.source.topic or change_event_topic(self.object)

    @property
    def poll_interval(self) -> timedelta:
        """How often the regular poll runs: the schedule, or ``reconcile_every`` when streamed."""
        if self.streamed:
            return self.source.reconcile_every
        return self.schedule.nominal_interval

    @property
    def agents(self) -> list[str]:
        """Every agent id this sync may send to."""
        if self.agent is not None:
            return [self.agent]
        assert self.route is not None
        found = list(dict.fromkeys(self.route.values.values()))
        if self.route.default and self.route.default not in found:
            found.append(self.route.default)
        return found

    # ------------------------------------------------------------------ the domain's settings

    @property
    def cursor_policy(self) -> CursorPolicy:
        """The cursor field and the poll window's bounds."""
        return CursorPolicy(self.cursor_field, self.start_at, self.lookback, self.lag)

    @property
    def query_spec(self) -> QuerySpec:
        """What the poll query reads: every field the mapping, routing and rules need."""
        mapping = self.mapping
        fields = field_paths(
            [
                mapping.phoneNumber,
                mapping.firstName,
                mapping.lastName,
                mapping.email,
                mapping.campaignType,
                *mapping.customData.values(),
            ]
        )
        if self.route is not None:
            fields += field_paths([self.route.field])
        if self.rules.respect_do_not_call:
            fields.append(self.rules.do_not_call_field)
        if self.calling_hours is not None and self.calling_hours.zone_field is not None:
            fields.append(self.calling_hours.zone_field)
        if self.calling_hours is not None and self.calling_hours.state_field is not None:
            fields.append(self.calling_hours.state_field)
        if self.rules.consent is not None:
            fields.append(self.rules.consent.field)
        written = (
            frozenset(name.lower() for name in self.writeback.fields.names().values())
            if self.writeback is not None
            else frozenset()
        )
        return QuerySpec(self.object, self.cursor_field, tuple(fields), self.where, written)

    @property
    def mapping_spec(self) -> MappingSpec:
        """Where each SimZ lead field comes from, and the record fields the mapper reads."""
        mapping, rules = self.mapping, self.rules
        route = self.route
        return MappingSpec(
            phone=mapping.phoneNumber,
            cursor_field=self.cursor_field,
            region=self.phone.default_region,
            first_name=mapping.firstName,
            last_name=mapping.lastName,
            email=mapping.email,
            campaign_type=mapping.campaignType,
            custom=tuple(mapping.customData.items()),
            agent=self.agent,
            route=Route(route.field, route.values, route.default) if route is not None else None,
            do_not_call_field=rules.do_not_call_field if rules.respect_do_not_call else None,
            callable_values=frozenset(rules.do_not_call_callable_values),
            zone_field=self.calling_hours.zone_field if self.calling_hours is not None else None,
            state_field=self.calling_hours.state_field if self.calling_hours is not None else None,
            consent_field=rules.consent.field if rules.consent is not None else None,
        )

    @property
    def intake_rules(self) -> IntakeRules:
        """The rules a read record goes through: DoNotCall, consent, the duplicate window.

        DoNotCall propagates only from a sync that reads the field (respects it).
        """
        rules = self.rules
        return IntakeRules(
            rules.respect_do_not_call,
            rules.duplicate_phone_window,
            consent=rules.consent.rule if rules.consent is not None else None,
            propagate_do_not_call=rules.propagate_do_not_call and rules.respect_do_not_call,
        )
