"""Where syncd connects: its database and the Salesforce org (with the login forms)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl, SecretStr, ValidationInfo, field_validator, model_validator

from syncd.config.base import (
    StrictModel,
    allow_insecure_http_field,
    config_dir,
    existing_file,
    header_safe,
    parse_database_url,
    require_https,
    resolve_path,
)
from syncd.config.types import Duration

# --------------------------------------------------------------------------- database


class DatabaseConfig(StrictModel):
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


class PasswordAuth(StrictModel):
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


class JwtAuth(StrictModel):
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


class ClientCredentialsAuth(StrictModel):
    """OAuth2 client credentials flow (needs a My Domain or login_url)."""

    method: Literal["client_credentials"]
    """Selects the OAuth2 client credentials flow."""
    consumer_key: str = Field(min_length=1)
    """The connected app's consumer key (client id)."""
    consumer_secret: SecretStr
    """The connected app's consumer secret."""


class SessionAuth(StrictModel):
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


class SalesforceConfig(StrictModel):
    # First, so that the URL validators below can read it.
    allow_insecure_http: bool = allow_insecure_http_field()
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
    sandbox: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="Deliver leads read from a Salesforce sandbox org (IsSandbox): refuse "
        "(default; a full sandbox copy keeps real phone numbers) or allow.",
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
