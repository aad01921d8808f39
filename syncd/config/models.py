"""The whole configuration file as pydantic models.

Every model forbids unknown keys: a typo in the YAML is an error, never a
silently ignored setting. ``config.example.yaml`` documents every option and
``syncd config-schema`` prints the JSON Schema generated from these classes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from syncd.config.types import Duration, FieldRefValue

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SOBJECT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- database


class DatabaseConfig(_Model):
    url: str = Field(
        default="sqlite:///./syncd.db",
        description="SQLAlchemy URL: sqlite:///path/to/syncd.db or "
        "postgresql+psycopg://user:password@host:5432/dbname.",
    )
    pool_size: int = Field(default=5, ge=1, le=100, description="PostgreSQL connection pool size.")

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in {"sqlite", "postgresql+psycopg"}:
            raise ValueError(
                f"unsupported database URL scheme {scheme!r}; "
                "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db"
            )
        if scheme == "sqlite" and not value.startswith("sqlite:///"):
            raise ValueError(
                "a SQLite URL needs three slashes: sqlite:///relative.db or sqlite:////abs.db"
            )
        try:
            parsed = make_url(value)
            port = parsed.port  # parsing the port happens here, not in make_url
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a valid database URL (expected e.g. postgresql+psycopg://user@host:5432/db); "
                "percent-encode special characters in the password"
            ) from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        if scheme == "sqlite" and not parsed.database:
            raise ValueError(
                "a SQLite URL needs a file: sqlite:///relative.db or sqlite:////abs.db"
            )
        if scheme == "sqlite" and parsed.database == ":memory:":
            raise ValueError(
                "an in-memory SQLite database forgets what was sent when syncd stops, "
                "so leads could be sent twice; use a file: sqlite:///syncd.db"
            )
        return value


# --------------------------------------------------------------------------- salesforce


class PasswordAuth(_Model):
    """Username, password and security token (the SOAP login)."""

    method: Literal["password"]
    username: str = Field(min_length=1)
    password: SecretStr
    security_token: SecretStr = Field(
        default=SecretStr(""), description="Empty when the org trusts the caller's IP range."
    )


class JwtAuth(_Model):
    """OAuth2 JWT bearer flow with a connected app's certificate key."""

    method: Literal["jwt"]
    username: str = Field(min_length=1)
    consumer_key: str = Field(min_length=1)
    private_key_file: str | None = Field(default=None, description="Path to the PEM private key.")
    private_key: SecretStr | None = Field(default=None, description="The PEM private key itself.")

    @model_validator(mode="after")
    def _one_key(self) -> JwtAuth:
        if (self.private_key_file is None) == (self.private_key is None):
            raise ValueError("set exactly one of private_key_file and private_key")
        return self


class ClientCredentialsAuth(_Model):
    """OAuth2 client credentials flow (needs a My Domain or login_url)."""

    method: Literal["client_credentials"]
    consumer_key: str = Field(min_length=1)
    consumer_secret: SecretStr


class SessionAuth(_Model):
    """An existing session id and instance URL. Cannot log in again when it expires."""

    method: Literal["session"]
    session_id: SecretStr
    instance_url: HttpUrl


SalesforceAuth = Annotated[
    PasswordAuth | JwtAuth | ClientCredentialsAuth | SessionAuth,
    Field(discriminator="method"),
]
AUTH_METHODS = ("password", "jwt", "client_credentials", "session")


class SalesforceConfig(_Model):
    auth: SalesforceAuth
    domain: str = Field(
        default="login",
        description="login (production), test (sandbox) or a My Domain such as acme.my.",
    )
    login_url: HttpUrl | None = Field(
        default=None,
        description="Overrides domain: the login host's base URL (e.g. the emulator's).",
    )
    api_version: str = Field(default="61.0", pattern=r"^\d{2,3}\.0$")
    ca_bundle: str | None = Field(
        default=None, description="PEM file of CAs to trust instead of the system store."
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per Salesforce HTTP call.")
    page_size: int = Field(
        default=2000, ge=200, le=2000, description="Records per query page (Sforce-Query-Options)."
    )
    max_api_usage_percent: int = Field(
        default=80,
        ge=1,
        le=100,
        description="Pause polling while the org's daily API usage is above this share.",
    )
    limit_pause: Duration = Field(
        default=timedelta(minutes=15),
        description="How long polling pauses after REQUEST_LIMIT_EXCEEDED or high API usage.",
    )
    pubsub_url: str = Field(
        default="api.pubsub.salesforce.com:7443",
        description="host:port of the Pub/Sub API (gRPC over TLS) for syncs in stream mode.",
    )

    @field_validator("pubsub_url")
    @classmethod
    def _pubsub_url(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if (
            not sep
            or not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]", host)
            or not port.isdigit()
            or not 0 < int(port) < 65536
        ):
            raise ValueError(f"{value!r} is not host:port (e.g. api.pubsub.salesforce.com:7443)")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", value) or "salesforce.com" in value:
            raise ValueError("use login, test or a My Domain prefix such as acme.my")
        return value


# --------------------------------------------------------------------------- simz


class TimeoutConfig(_Model):
    connect: float = Field(default=5.0, gt=0, le=300)
    read: float = Field(default=30.0, gt=0, le=600)


class BackoffConfig(_Model):
    initial: Duration = Field(default=timedelta(seconds=5))
    max: Duration = Field(default=timedelta(minutes=15))
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.initial <= timedelta(0):
            raise ValueError("initial must be greater than zero")
        if self.max < self.initial:
            raise ValueError("max must not be smaller than initial")
        return self


class SimzConfig(_Model):
    base_url: HttpUrl = Field(default=HttpUrl("https://api.simz.com"))
    api_key: SecretStr
    ca_bundle: str | None = Field(default=None, description="PEM file of CAs to trust.")
    timeout: TimeoutConfig = TimeoutConfig()
    batch_size: int = Field(default=100, ge=1, le=10_000, description="Leads per POST.")
    requests_per_second: float = Field(
        default=5.0, gt=0, le=1000, description="Client-side rate limit per API key."
    )
    max_attempts: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Retryable answers a lead may get before it becomes failed.",
    )
    backoff: BackoffConfig = BackoffConfig()
    resend_uncertain: bool = Field(
        default=False,
        description="Opt-in: requeue uncertain leads automatically. Risks calling a person twice.",
    )


# --------------------------------------------------------------------------- syncs


class ScheduleConfig(_Model):
    every: Duration | None = None
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
                CronTrigger.from_crontab(self.cron, timezone=self.timezone)
            except (ValueError, LookupError) as exc:
                raise ValueError(f"invalid cron expression {self.cron!r}: {exc}") from None
        return self

    @property
    def nominal_interval(self) -> timedelta:
        """The polling interval (for cron: the gap between its next two fire times)."""
        if self.every is not None:
            return self.every
        assert self.cron is not None
        trigger = CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        now = datetime.now(UTC)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
        if first is None or second is None:
            return timedelta(days=1)
        gap: timedelta = second - first
        return gap


class RouteConfig(_Model):
    field: FieldRefValue = Field(description="Field whose value picks the agent.")
    values: dict[str, str] = Field(min_length=1, description="Field value -> agent id.")
    default: str | None = Field(
        default=None, description="Agent for values not listed; without it such leads are invalid."
    )

    @field_validator("values")
    @classmethod
    def _agents(cls, value: dict[str, str]) -> dict[str, str]:
        for key, agent in value.items():
            if not agent.strip():
                raise ValueError(f"agent id for {key!r} is empty")
        return value


class MappingConfig(_Model):
    phoneNumber: FieldRefValue
    firstName: FieldRefValue | None = None
    lastName: FieldRefValue | None = None
    email: FieldRefValue | None = None
    campaignType: FieldRefValue | None = None
    customData: dict[str, FieldRefValue] = Field(default_factory=dict)


class PhoneConfig(_Model):
    default_region: str = Field(
        default="US", description="ISO 3166 region for numbers written without a country code."
    )

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. US, GB, DE)")
        return value.upper()


class RulesConfig(_Model):
    respect_do_not_call: bool = Field(
        default=True, description="Skip records whose DoNotCall field is true."
    )
    do_not_call_field: str = Field(default="DoNotCall", pattern=_FIELD.pattern)
    duplicate_phone_window: Duration = Field(
        default=timedelta(hours=24),
        description="Do not send the same number to the same agent twice within this window "
        "(0 turns the rule off).",
    )


class OptionsConfig(_Model):
    """SimZ per-request options (LeadSubmissionOptions); absent ones are left out."""

    priority: str | None = None
    enableAMD: bool | None = None
    webhookUrl: HttpUrl | None = None


class DeliveryScheduleConfig(_Model):
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


class SourceConfig(_Model):
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
        pattern=_FIELD.pattern,
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


class SyncConfig(_Model):
    name: str = Field(description="Unique, lower case: letters, digits, - and _.")
    enabled: bool = True
    object: str = Field(default="Lead", description="Salesforce object to poll, e.g. Lead.")
    where: str | None = Field(default=None, description="Extra SOQL condition, ANDed in.")
    cursor_field: str = Field(default="SystemModstamp", pattern=_FIELD.pattern)
    schedule: ScheduleConfig = ScheduleConfig(every=timedelta(seconds=60))
    delivery: DeliveryScheduleConfig = DeliveryScheduleConfig()
    source: SourceConfig = SourceConfig()
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
    phone: PhoneConfig = PhoneConfig()
    rules: RulesConfig = RulesConfig()
    options: OptionsConfig | None = None

    @field_validator("start_at", mode="before")
    @classmethod
    def _start_at(cls, value: Any) -> Any:
        return _parse_start_at(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid sync name: use lower case letters, digits, - and _ "
                "(at most 63 characters)"
            )
        return value

    @field_validator("object")
    @classmethod
    def _object(cls, value: str) -> str:
        if not _SOBJECT.match(value):
            raise ValueError(f"{value!r} is not a Salesforce object name")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> SyncConfig:
        if (self.agent is None) == (self.route is None):
            raise ValueError("set exactly one of agent and route")
        if self.agent is not None and not self.agent.strip():
            raise ValueError("agent is empty")
        return self

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


# --------------------------------------------------------------------------- the rest


class ObservabilityConfig(_Model):
    listen: str = Field(
        default="0.0.0.0:8080", description="host:port for /healthz, /readyz, /metrics."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port (e.g. 0.0.0.0:8080)")
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class DaemonConfig(_Model):
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=25),
        description="After SIGTERM, how long the in-flight batch may take before exit.",
    )
    replica_id: str | None = Field(
        default=None,
        max_length=200,
        description="This replica's name in leases and syncd status "
        "(default: hostname-pid-random). Must differ between replicas.",
    )
    lease_ttl: Duration | None = Field(
        default=None,
        description="How long a sync's lease lasts without renewal, which bounds the "
        "takeover after a replica dies (default: two poll intervals, at least 10s).",
    )

    @field_validator("lease_ttl")
    @classmethod
    def _lease_ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=2):
            raise ValueError("lease_ttl must be at least 2s")
        return value


class Config(_Model):
    """The whole syncd configuration file."""

    database: DatabaseConfig = DatabaseConfig()
    salesforce: SalesforceConfig
    simz: SimzConfig
    syncs: list[SyncConfig] = Field(min_length=1)
    observability: ObservabilityConfig = ObservabilityConfig()
    daemon: DaemonConfig = DaemonConfig()

    @field_validator("syncs")
    @classmethod
    def _unique_names(cls, value: list[SyncConfig]) -> list[SyncConfig]:
        seen: set[str] = set()
        for sync in value:
            if sync.name in seen:
                raise ValueError(f"duplicate sync name {sync.name!r}")
            seen.add(sync.name)
        return value

    def sync(self, name: str) -> SyncConfig:
        for sync in self.syncs:
            if sync.name == name:
                return sync
        raise KeyError(name)

    def secret_values(self) -> list[str]:
        """Every secret value in the file, for the log redactor."""
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, SecretStr):
                found.append(node.get_secret_value())
            elif isinstance(node, BaseModel):
                for name in type(node).model_fields:
                    walk(getattr(node, name))
            elif isinstance(node, list | tuple):
                for item in node:
                    walk(item)
            elif isinstance(node, dict):
                for item in node.values():
                    walk(item)

        walk(self)
        # The password as written in the URL (maybe percent-encoded) and as sent.
        found.append(urlsplit(self.database.url).password or "")
        found.append(make_url(self.database.url).password or "")
        return [value for value in found if value]
