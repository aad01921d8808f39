"""The whole configuration file as pydantic models.

Every model forbids unknown keys: a typo in the YAML is an error, never a
silently ignored setting. ``config.example.yaml`` documents every option and
``syncd config-schema`` prints the JSON Schema generated from these classes.

The domain reads its settings from these models (``SyncConfig``), so this
module imports no infrastructure library at import time: the two checks that
need one, a cron expression (APScheduler) and a database URL (SQLAlchemy), go
through :func:`cron_trigger` and :func:`parse_database_url`, which import it
when first called, that is when a configuration is validated.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncd.config.types import Duration, FieldRef, FieldRefValue
from syncd.domain.calling_hours import CallingHours, parse_days, parse_window, zone
from syncd.domain.guard import GUARD_HISTORY

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger
    from sqlalchemy.engine import URL

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SOBJECT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def cron_trigger(cron: str, timezone: str) -> CronTrigger:
    """APScheduler's trigger for a crontab (APScheduler is imported here, not by the module)."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(cron, timezone=timezone)


def parse_database_url(value: str) -> URL:
    """SQLAlchemy's parse of a database URL, ValueError if malformed (SQLAlchemy imported here)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(value)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _describe_character(char: str) -> str:
    """Name a character without printing it (it may be part of a secret)."""
    names = {"\n": "a line feed (\\n)", "\r": "a carriage return (\\r)", "\t": "a tab (\\t)"}
    return names.get(char, f"the character U+{ord(char):04X}")


def header_safe(value: SecretStr) -> SecretStr:
    """Refuse a secret that cannot travel in an HTTP header as it is, without showing it.

    Header values are visible ASCII; a control character (often a newline left at
    the end of a secret file) or a non-ASCII letter would be escaped or refused
    by the HTTP client, and the escaped secret would end up in errors and logs.
    """
    text = value.get_secret_value()
    for index, char in enumerate(text):
        if not "\x21" <= char <= "\x7e" and not (char == " " and 0 < index < len(text) - 1):
            where = "at the end" if index == len(text) - 1 else f"at position {index + 1}"
            raise ValueError(
                f"contains {_describe_character(char)} {where}; it is sent in an HTTP "
                "header, which takes visible ASCII only (check the secret's source; the value "
                "is not shown)"
            )
    return value


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: traffic that never leaves the machine."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def require_https(url: HttpUrl | None, info: ValidationInfo, section: str) -> None:
    """Refuse ``http://`` to a host off this machine unless the section allows it."""
    if url is None or url.scheme != "http" or is_loopback_host(url.host or ""):
        return
    if info.data.get("allow_insecure_http") is True:
        return
    raise ValueError(
        "http:// would send credentials in clear text; use https://, or set "
        f"{section}.allow_insecure_http: true (loopback hosts need neither)"
    )


def _allow_insecure_http() -> Any:
    """The ``allow_insecure_http`` field of a section that holds credential-bearing URLs."""
    return Field(
        default=False,
        description="Accept http:// URLs to hosts other than loopback (credentials then travel "
        "in clear text). Only for a trusted network, e.g. a TLS-terminating sidecar.",
    )


def config_dir(info: ValidationInfo) -> Path | None:
    """The configuration file's folder, when the loader passed it as validation context."""
    context = info.context
    folder = context.get("config_dir") if isinstance(context, dict) else None
    return folder if isinstance(folder, Path) else None


def resolve_path(value: str, info: ValidationInfo) -> Path:
    """``value`` as a path; a relative one is read from the configuration file's folder."""
    path = Path(value).expanduser()
    folder = config_dir(info)
    return folder / path if folder is not None and not path.is_absolute() else path


def existing_file(value: str | None, info: ValidationInfo) -> str | None:
    """Resolve a file setting and make sure the file is there now, not at the first call."""
    if value is None:
        return None
    if not value.strip():
        raise ValueError("the path is empty")
    path = resolve_path(value, info)
    if not path.is_file():
        relative = not Path(value).expanduser().is_absolute()
        note = " (relative paths start at the config file's folder)" if relative else ""
        raise ValueError(f"no such file: {path}{note}")
    return str(path)


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
            parsed = parse_database_url(value)
            port = parsed.port  # parsing the port happens here, not in make_url
        except ValueError:
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

    @field_validator("url")
    @classmethod
    def _sqlite_file_beside_config(cls, value: str, info: ValidationInfo) -> str:
        """A relative SQLite file lives in the configuration file's folder."""
        parsed = parse_database_url(value)
        if parsed.get_backend_name() != "sqlite" or config_dir(info) is None:
            return value
        path = resolve_path(str(parsed.database), info)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)


# --------------------------------------------------------------------------- salesforce


class PasswordAuth(_Model):
    """Username, password and security token (the SOAP login)."""

    method: Literal["password"]
    """Selects this login: username, password and security token."""
    username: str = Field(min_length=1)
    """The integration user's Salesforce username."""
    password: SecretStr
    """The integration user's password."""
    security_token: SecretStr = Field(
        default=SecretStr(""), description="Empty when the org trusts the caller's IP range."
    )


class JwtAuth(_Model):
    """OAuth2 JWT bearer flow with a connected app's certificate key."""

    method: Literal["jwt"]
    """Selects the OAuth2 JWT bearer flow."""
    username: str = Field(min_length=1)
    """The integration user the connected app logs in as."""
    consumer_key: str = Field(min_length=1)
    """The connected app's consumer key (client id)."""
    private_key_file: str | None = Field(default=None, description="Path to the PEM private key.")
    private_key: SecretStr | None = Field(default=None, description="The PEM private key itself.")

    _private_key_file_exists = field_validator("private_key_file")(existing_file)

    @model_validator(mode="after")
    def _one_key(self) -> JwtAuth:
        if (self.private_key_file is None) == (self.private_key is None):
            raise ValueError("set exactly one of private_key_file and private_key")
        return self


class ClientCredentialsAuth(_Model):
    """OAuth2 client credentials flow (needs a My Domain or login_url)."""

    method: Literal["client_credentials"]
    """Selects the OAuth2 client credentials flow."""
    consumer_key: str = Field(min_length=1)
    """The connected app's consumer key (client id)."""
    consumer_secret: SecretStr
    """The connected app's consumer secret."""


class SessionAuth(_Model):
    """An existing session id and instance URL. Cannot log in again when it expires."""

    method: Literal["session"]
    """Selects an existing session (for tests)."""
    session_id: SecretStr
    """The session id (an OAuth access token)."""
    instance_url: HttpUrl
    """The org's instance URL, e.g. https://acme.my.salesforce.com."""

    _session_id_header_safe = field_validator("session_id")(header_safe)


SalesforceAuth = Annotated[
    PasswordAuth | JwtAuth | ClientCredentialsAuth | SessionAuth,
    Field(discriminator="method"),
]
AUTH_METHODS = ("password", "jwt", "client_credentials", "session")


class SalesforceConfig(_Model):
    # First, so that the URL validators below can read it.
    allow_insecure_http: bool = _allow_insecure_http()
    auth: SalesforceAuth
    """How syncd logs in; method picks one of the forms below."""
    domain: str = Field(
        default="login",
        description="login (production), test (sandbox) or a My Domain such as acme.my.",
    )
    login_url: HttpUrl | None = Field(
        default=None,
        description="Overrides domain: the login host's base URL (e.g. the emulator's).",
    )
    api_version: str = Field(default="61.0", pattern=r"^\d{2,3}\.0$")
    """Salesforce REST API version, written NN.0 (quote it in YAML)."""
    ca_bundle: str | None = Field(
        default=None, description="PEM file of CAs to trust instead of the system store."
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per Salesforce HTTP call.")
    page_size: int = Field(
        default=2000, ge=200, le=2000, description="Records per query page (Sforce-Query-Options)."
    )
    bulk_query_above: int = Field(
        default=10_000,
        ge=0,
        description="syncd backfill reads with a Bulk API 2.0 query job when SELECT COUNT() "
        "finds more records than this; 0: never.",
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

    _ca_bundle_exists = field_validator("ca_bundle")(existing_file)

    @field_validator("login_url")
    @classmethod
    def _login_url_https(cls, value: HttpUrl | None, info: ValidationInfo) -> HttpUrl | None:
        require_https(value, info, "salesforce")
        return value

    @field_validator("auth")
    @classmethod
    def _instance_url_https(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, SessionAuth):
            try:
                require_https(value.instance_url, info, "salesforce")
            except ValueError as exc:
                raise ValueError(f"instance_url: {exc}") from None
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
    """Seconds to open a connection; a failure here means nothing was sent."""
    read: float = Field(default=30.0, gt=0, le=600)
    """Seconds to wait for the next bytes of an answer; a timeout here makes the batch
    uncertain. The whole POST is bounded by ``total`` as well."""
    total: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="Seconds a whole POST may take, answer included; past it the batch "
        "is uncertain. Keep it below daemon.shutdown_grace.",
    )

    @model_validator(mode="after")
    def _total_covers_connect(self) -> TimeoutConfig:
        if self.total < self.connect:
            raise ValueError("total must not be smaller than connect")
        return self


class BackoffConfig(_Model):
    initial: Duration = Field(default=timedelta(seconds=5))
    """First wait of the exponential backoff (retries, paused keys and agents)."""
    max: Duration = Field(default=timedelta(minutes=15))
    """Longest wait; at least initial."""
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    """Growth of the wait per failure."""

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.initial <= timedelta(0):
            raise ValueError("initial must be greater than zero")
        if self.max < self.initial:
            raise ValueError("max must not be smaller than initial")
        return self


class SimzConfig(_Model):
    # First, so that the base_url validator can read it.
    allow_insecure_http: bool = _allow_insecure_http()
    base_url: HttpUrl = Field(default=HttpUrl("https://api.simz.com"))
    """SimZ API base URL."""
    api_key: SecretStr
    """The company API key (X-Company-API-Key); logs show only its fingerprint."""
    ca_bundle: str | None = Field(default=None, description="PEM file of CAs to trust.")
    timeout: TimeoutConfig = TimeoutConfig()
    """Connect and read timeouts of a POST."""
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
    """Exponential backoff with jitter for retries and paused keys or agents."""
    resend_uncertain: bool = Field(
        default=False,
        description="Opt-in: after each poll, fetch the sync's uncertain leads again from "
        "Salesforce and requeue those that still pass every rule. Risks calling a person twice.",
    )

    _api_key_header_safe = field_validator("api_key")(header_safe)
    _ca_bundle_exists = field_validator("ca_bundle")(existing_file)

    @field_validator("base_url")
    @classmethod
    def _base_url_https(cls, value: HttpUrl, info: ValidationInfo) -> HttpUrl:
        require_https(value, info, "simz")
        return value


# --------------------------------------------------------------------------- syncs


class ScheduleConfig(_Model):
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
    """The phone number, normalised to E.164; an unusable one makes the lead invalid."""
    firstName: FieldRefValue | None = None
    """First name; absent or empty values are left out of the request."""
    lastName: FieldRefValue | None = None
    """Last name; absent or empty values are left out of the request."""
    email: FieldRefValue | None = None
    """Email; a value that is not an email address is left out, with a note on the lead."""
    campaignType: FieldRefValue | None = None
    """SimZ campaign type; absent or empty values are left out of the request."""
    customData: dict[str, FieldRefValue] = Field(default_factory=dict)
    """Extra SimZ customData: key -> field path or {const: value}."""


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


#: DoNotCall text values that mean "may be called" unless the sync names its own.
DEFAULT_CALLABLE_VALUES = ("false", "0", "no", "n")


class RulesConfig(_Model):
    respect_do_not_call: bool = Field(
        default=True, description="Skip records whose DoNotCall field is true."
    )
    do_not_call_field: str = Field(default="DoNotCall", pattern=_FIELD.pattern)
    """The field that says do not call: a checkbox, or text whose callable values are listed
    in do_not_call_callable_values."""
    do_not_call_callable_values: list[str] = Field(
        default_factory=lambda: sorted(DEFAULT_CALLABLE_VALUES),
        description="For a DoNotCall field that is not a checkbox: the values that mean "
        "'may be called' (compared case-insensitively after trimming; an empty or null field "
        "is always callable). Any other value skips the lead.",
    )

    @field_validator("do_not_call_callable_values")
    @classmethod
    def _fold_callable(cls, values: list[str]) -> list[str]:
        return sorted({value.strip().lower() for value in values})

    duplicate_phone_window: Duration = Field(
        default=timedelta(hours=24),
        description="Do not send the same number to the same agent twice within this window "
        "(0 turns the rule off).",
    )


class OptionsConfig(_Model):
    """SimZ per-request options (LeadSubmissionOptions); absent ones are left out."""

    priority: str | None = None
    """SimZ priority of the submitted leads."""
    enableAMD: bool | None = None
    """Ask SimZ for answering-machine detection."""
    webhookUrl: HttpUrl | None = None
    """URL SimZ calls back with call results."""


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


class GuardConfig(_Model):
    """The blast-radius guard: a poll with more new leads than this holds them all."""

    max_new_per_poll: int | None = Field(
        default=1000,
        ge=1,
        description="Hold a poll's new leads when it finds more than this many ready to call "
        "(null: no fixed limit).",
    )
    max_factor: float | None = Field(
        default=None,
        gt=1,
        description="Also hold when a poll finds more than this times the trailing average "
        "of new leads per poll (null: off).",
    )
    min_history: int = Field(
        default=5,
        ge=1,
        le=GUARD_HISTORY,
        description="Completed polls needed before max_factor applies.",
    )
    factor_floor: int = Field(
        default=100,
        ge=1,
        description="max_factor never holds a poll of this many new leads or fewer.",
    )
    stream_window: Duration = Field(
        default=timedelta(minutes=10),
        description="Streamed syncs: max_new_per_poll applies per rolling window of this "
        "length; past it, further leads are held.",
    )


class TimezoneField(_Model):
    field: str = Field(pattern=_FIELD.pattern, description="Record field with an IANA zone.")


class CallingHoursConfig(_Model):
    """Deliver a lead only inside this window of its local time (off when absent)."""

    window: str = Field(description="Local time of day, e.g. 08:00-21:00 (end exclusive).")
    days: str = Field(default="mon-sun", description="e.g. mon-sun, mon-fri, mon-fri,sat.")
    timezone: Literal["from_phone"] | str | TimezoneField = Field(
        default="from_phone",
        description="from_phone, an IANA zone (e.g. America/New_York), or {field: Name}: "
        "a record field holding an IANA zone (the phone's zones when it is empty or unknown).",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_days(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | TimezoneField) -> str | TimezoneField:
        if isinstance(value, str) and value != "from_phone" and zone(value) is None:
            raise ValueError(f"{value!r} is neither from_phone nor an IANA time zone")
        return value

    @property
    def fixed_zone(self) -> str | None:
        """The one IANA zone every lead is called in, or None to take it from the phone."""
        return (
            self.timezone
            if isinstance(self.timezone, str) and self.timezone != "from_phone"
            else None
        )

    @property
    def zone_field(self) -> str | None:
        """The record field that names each lead's zone, or None."""
        return self.timezone.field if isinstance(self.timezone, TimezoneField) else None

    @property
    def hours(self) -> CallingHours:
        start, end = parse_window(self.window)
        return CallingHours(start, end, parse_days(self.days))


#: Lead states a write-back may report (``held`` is the blast-radius guard's state).
WRITEBACK_STATES = (
    "accepted",
    "rejected",
    "uncertain",
    "failed",
    "skipped",
    "invalid",
    "held",
)
WritebackState = Literal[
    "accepted", "rejected", "uncertain", "failed", "skipped", "invalid", "held"
]


class WritebackFieldsConfig(_Model):
    """Fields of the synced object that receive a lead's outcome; any subset."""

    status: str | None = Field(default=None, pattern=_FIELD.pattern)
    """Text or picklist field that receives the lead's state (e.g. SimZ_Status__c)."""
    batch_id: str | None = Field(default=None, pattern=_FIELD.pattern)
    """Text field that receives the SimZ batchId, when SimZ returned one."""
    sent_at: str | None = Field(default=None, pattern=_FIELD.pattern)
    """Datetime field that receives the time the lead's batch was sent."""
    error: str | None = Field(default=None, pattern=_FIELD.pattern)
    """Text field that receives the rejection or failure (code: message), cut to its length."""

    def names(self) -> dict[str, str]:
        """Value kind -> field API name, for the fields that are set."""
        found = {
            "status": self.status,
            "batch_id": self.batch_id,
            "sent_at": self.sent_at,
            "error": self.error,
        }
        return {kind: name for kind, name in found.items() if name is not None}


class WritebackConfig(_Model):
    """Write each lead's outcome back to its Salesforce record (sObject Collections update)."""

    fields: WritebackFieldsConfig
    """Which fields receive the outcome; at least one."""
    states: list[WritebackState] = Field(
        default=["accepted", "rejected", "uncertain", "failed"],
        min_length=1,
        description="Lead states whose outcome is written back.",
    )

    @model_validator(mode="after")
    def _some_field(self) -> WritebackConfig:
        names = list(self.fields.names().values())
        if not names:
            raise ValueError("set at least one of fields.status, batch_id, sent_at and error")
        folded = [name.lower() for name in names]
        if len(set(folded)) != len(folded):
            raise ValueError("each write-back value needs its own field")
        return self


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
    """A disabled sync is neither polled nor delivered."""
    object: str = Field(default="Lead", description="Salesforce object to poll, e.g. Lead.")
    where: str | None = Field(default=None, description="Extra SOQL condition, ANDed in.")
    cursor_field: str = Field(default="SystemModstamp", pattern=_FIELD.pattern)
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

    def _read_paths(self) -> list[tuple[str, str]]:
        """(where, field path) of every field the mapping, routing and rules read."""
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
        return paths

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
    """Lowest level logged."""

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
    """Where syncd records every lead, batch and cursor."""
    salesforce: SalesforceConfig
    """The Salesforce org to poll."""
    simz: SimzConfig
    """The SimZ API to deliver to."""
    syncs: list[SyncConfig] = Field(min_length=1)
    """One entry per Salesforce query mapped to SimZ leads."""
    observability: ObservabilityConfig = ObservabilityConfig()
    """Health, readiness, metrics and logs."""
    daemon: DaemonConfig = DaemonConfig()
    """Shutdown and replica settings of syncd run."""
    _unresolved: tuple[str, ...] = PrivateAttr(default=())

    @property
    def unresolved(self) -> tuple[str, ...]:
        """Key paths whose ``${...}`` the loader was told to leave unresolved (kept as written).

        Only for commands that never use them (``status``, ``leads``, ...).
        """
        return self._unresolved

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
        found.append(parse_database_url(self.database.url).password or "")
        return [value for value in found if value]
