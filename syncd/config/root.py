"""The top level of the configuration file: every section, plus observability and daemon."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator

from syncd.config.base import StrictModel, parse_database_url
from syncd.config.connections import DatabaseConfig, SalesforceConfig
from syncd.config.simz import SimzConfig
from syncd.config.suppression import SuppressionConfig
from syncd.config.sync import SyncConfig
from syncd.config.types import Duration


class ObservabilityConfig(StrictModel):
    listen: str = Field(
        default="0.0.0.0:8080",
        description="host:port for /healthz, /readyz, /status.json and /metrics.",
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


class DaemonConfig(StrictModel):
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
        "takeover after a replica dies (default: two poll intervals, at least 10s). A sync "
        "in stream mode has the lease its source.failover_within allows, or this if shorter.",
    )

    @field_validator("lease_ttl")
    @classmethod
    def _lease_ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=2):
            raise ValueError("lease_ttl must be at least 2s")
        return value


class Config(StrictModel):
    """The whole syncd configuration file."""

    database: DatabaseConfig = DatabaseConfig()
    """Where syncd records every lead, batch and cursor."""
    salesforce: SalesforceConfig
    """The Salesforce org to poll."""
    simz: SimzConfig
    """The SimZ API to deliver to."""
    syncs: list[SyncConfig] = Field(min_length=1)
    """One entry per Salesforce query mapped to SimZ leads."""
    suppression: SuppressionConfig = SuppressionConfig()
    """The suppression list's sources: Salesforce queries of numbers nobody may call."""
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

    @model_validator(mode="after")
    def _webhook_consistent(self) -> Config:
        webhook = self.simz.webhook
        for sync in self.syncs:
            if sync.call_writeback is not None and webhook is None:
                raise ValueError(
                    f"syncs[{sync.name}].call_writeback needs simz.webhook: "
                    "call outcomes arrive by webhook"
                )
            if webhook is not None and sync.options is not None and sync.options.webhookUrl:
                raise ValueError(
                    f"syncs[{sync.name}].options.webhookUrl: leave it out when simz.webhook "
                    "is set; syncd sends the receiver's URL itself"
                )
        return self

    @property
    def default_region(self) -> str:
        """The region of numbers written without a country code: the first sync's."""
        return self.syncs[0].phone.default_region

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
