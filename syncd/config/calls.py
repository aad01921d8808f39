"""Call outcomes: the SimZ webhook receiver, reading its payloads, and writing calls back.

The SimZ spec defines ``options.webhookUrl`` but not the payload SimZ posts to
it, so nothing here assumes a shape: JSON paths (RFC 9535, read with
``python-jsonpath``) say where each value is. The defaults match the example
payload of ``syncd sandbox simz`` (docs/call-outcomes.md); they are an
example, not SimZ's contract.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import quote

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

from syncd.config.base import FIELD_NAME, StrictModel

#: The path token and the correlation secret: long enough that nobody guesses them.
MIN_SECRET_LENGTH = 32
#: A whole ``${...}`` reference, as the loader keeps those it was told not to resolve.
_REFERENCE = re.compile(r"\$\{[^}]+\}")
#: Where the receiver takes SimZ's hooks: this, then the token.
HOOK_PATH = "/hooks/simz/"


def host_port(value: str) -> str:
    """Check ``host:port``; the value unchanged."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 0.0.0.0:8081)")
    return value


class CallPathsConfig(StrictModel):
    """Where each value of a call outcome is in the payload: JSON paths, e.g. ``$.call.outcome``.

    A path that finds nothing leaves the value empty; a payload where the
    outcome and the disposition are both missing is kept raw and marked unreadable.
    """

    call_id: str | None = "$.callId"
    """The call's own id: hooks with the same call id are one call (one Task)."""
    outcome: str = "$.call.outcome"
    """What happened on the line: answered, voicemail, no_answer, ..."""
    disposition: str | None = "$.call.disposition"
    """The call's disposition, before ``disposition_map``."""
    duration_seconds: str | None = "$.call.durationSeconds"
    """Seconds on the call: a number, or text holding one."""
    started_at: str | None = "$.call.startedAt"
    """ISO 8601 start of the call."""
    ended_at: str | None = "$.call.endedAt"
    """ISO 8601 end of the call."""
    recording_url: str | None = "$.call.recordingUrl"
    """Link to the call's recording."""

    @field_validator("*")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import jsonpath  # python-jsonpath; imported here to keep config loading light

        try:
            jsonpath.compile(value)
        except jsonpath.JSONPathError as exc:
            reason = str(exc).splitlines()[0]
            raise ValueError(f"{value!r} is not a JSON path: {reason}") from None
        return value


class WebhookConfig(StrictModel):
    """Receive SimZ's call-outcome webhooks (opt-in). Every replica listens."""

    listen: str = Field(default="0.0.0.0:8081", description="host:port of the receiver.")
    public_url: HttpUrl
    """The receiver's address as SimZ reaches it (a load balancer in front of every replica).
    syncd sends ``options.webhookUrl`` = public_url + ``/hooks/simz/`` + token."""
    token: SecretStr
    """The unguessable path token, the only authentication (SimZ documents no signature);
    at least 32 characters. To rotate it, list the old one in ``previous_tokens`` until no
    call sent with it can still report back."""
    previous_tokens: list[SecretStr] = []
    """Tokens still accepted, not sent: for rotating ``token``."""
    correlation_secret: SecretStr
    """Key of the HMAC that proves a correlation value was made by syncd; at least 32
    characters. Rotating it
    unmatches the hooks of leads sent before."""
    correlation_key: str = Field(default="syncdRef", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    """The one customData key syncd adds to each lead when webhooks are on."""
    max_body_bytes: int = Field(default=65_536, ge=1_024, le=10_485_760)
    """Larger bodies get 413 and are not stored."""
    paths: CallPathsConfig = CallPathsConfig()
    """Where the payload keeps each value."""
    disposition_map: dict[str, str] = {}
    """SimZ disposition -> the company's value (matched ignoring case); others pass as they are."""
    opt_out_dispositions: list[str] = ["do_not_call", "opt_out"]
    """Dispositions (after the map, ignoring case) that put the number on the suppression
    list and cancel its pending leads in every sync."""

    _listen = field_validator("listen")(host_port)

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def hook_url(self, *, masked: bool = False) -> str:
        """The ``options.webhookUrl`` syncd sends: public_url + ``/hooks/simz/`` + token
        (``***`` in place of the token when ``masked``, for logs and check-config)."""
        token = "***" if masked else quote(self.token.get_secret_value(), safe="")
        return str(self.public_url).rstrip("/") + HOOK_PATH + token

    @field_validator("token", "correlation_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if not _long_or_unresolved(value):
            raise ValueError(f"needs at least {MIN_SECRET_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _distinct_tokens(self) -> WebhookConfig:
        for old in self.previous_tokens:
            if not _long_or_unresolved(old):
                raise ValueError(f"previous_tokens: each needs {MIN_SECRET_LENGTH}+ characters")
        return self


def _long_or_unresolved(secret: SecretStr) -> bool:
    """Long enough, or a ``${...}`` the loader left unresolved: the commands that read only
    the database (``syncd status``, ``syncd calls``) load the file without the secrets."""
    value = secret.get_secret_value()
    return len(value) >= MIN_SECRET_LENGTH or _REFERENCE.fullmatch(value) is not None


class CallFieldsConfig(StrictModel):
    """Fields of the synced object that receive the last call (``mode: fields``)."""

    outcome: str | None = Field(default=None, pattern=FIELD_NAME.pattern)
    """Text or picklist field that receives the call's outcome (answered, voicemail, ...)."""
    disposition: str | None = Field(default=None, pattern=FIELD_NAME.pattern)
    """Text or picklist field that receives the disposition, after disposition_map."""
    called_at: str | None = Field(default=None, pattern=FIELD_NAME.pattern)
    """Datetime field: when the call started (else when its hook arrived)."""

    def names(self) -> dict[str, str]:
        """Value kind -> field API name, for the fields that are set."""
        found = {"outcome": self.outcome, "disposition": self.disposition}
        found["called_at"] = self.called_at
        return {kind: name for kind, name in found.items() if name is not None}


class CallWritebackConfig(StrictModel):
    """Write each call back to the lead's Salesforce record; needs ``simz.webhook``."""

    mode: Literal["tasks", "fields"] = "tasks"
    """``tasks``: one completed call Task per call (WhoId = the record);
    ``fields``: the last call's outcome, disposition and time on the record."""
    fields: CallFieldsConfig = CallFieldsConfig()
    """For ``mode: fields``: at least one."""
    task_subject: str = Field(default="Call: {disposition}", max_length=200)
    """The Task's Subject; ``{outcome}`` and ``{disposition}`` are filled in."""

    @model_validator(mode="after")
    def _fields_for_fields(self) -> CallWritebackConfig:
        chosen = self.fields
        if self.mode == "fields" and not (chosen.outcome or chosen.disposition or chosen.called_at):
            raise ValueError(
                "mode fields: set at least one of fields.outcome, disposition and called_at"
            )
        return self
