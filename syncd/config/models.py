"""The whole configuration file as pydantic models.

Every model forbids unknown keys: a typo in the YAML is an error, never a
silently ignored setting. ``config.example.yaml`` documents every option and
``syncd config-schema`` prints the JSON Schema generated from these classes.

This module is where the rest of syncd imports the models from; they are
defined by section:

* :mod:`syncd.config.base`: the strict base model and the checks shared by the
  sections (paths beside the config file, HTTPS, header-safe secrets, cron and
  database URL parsing);
* :mod:`syncd.config.connections`: ``database`` and ``salesforce`` with its
  login forms;
* :mod:`syncd.config.simz`: ``simz``;
* :mod:`syncd.config.schedule`, :mod:`syncd.config.mapping`,
  :mod:`syncd.config.rules` and :mod:`syncd.config.writeback`: the sections of
  a sync, which :mod:`syncd.config.sync` puts together as ``SyncConfig``;
* :mod:`syncd.config.root`: ``observability``, ``daemon`` and ``Config``, the
  whole file.

The domain reads its settings from these models (``SyncConfig``), so they import
no infrastructure library at import time: the two checks that need one, a cron
expression (APScheduler) and a database URL (SQLAlchemy), go through
:func:`cron_trigger` and :func:`parse_database_url`, which import it when first
called, that is when a configuration is validated.
"""

from syncd.config.base import (
    config_dir,
    cron_trigger,
    existing_file,
    header_safe,
    is_loopback_host,
    parse_database_url,
    require_https,
    resolve_path,
)
from syncd.config.connections import (
    AUTH_METHODS,
    ClientCredentialsAuth,
    DatabaseConfig,
    JwtAuth,
    PasswordAuth,
    SalesforceAuth,
    SalesforceConfig,
    SessionAuth,
)
from syncd.config.mapping import MappingConfig, OptionsConfig, PhoneConfig, RouteConfig
from syncd.config.root import Config, DaemonConfig, ObservabilityConfig
from syncd.config.rules import (
    DEFAULT_CALLABLE_VALUES,
    CallingHoursConfig,
    CapConfig,
    ConsentConfig,
    GuardConfig,
    RulesConfig,
    TimezoneField,
)
from syncd.config.schedule import (
    DeliveryScheduleConfig,
    ReconcileConfig,
    ScheduleConfig,
    SourceConfig,
    change_event_topic,
)
from syncd.config.simz import BackoffConfig, SimzConfig, TimeoutConfig
from syncd.config.sync import SyncConfig
from syncd.config.writeback import (
    WRITEBACK_STATES,
    WritebackConfig,
    WritebackFieldsConfig,
    WritebackState,
)

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_CALLABLE_VALUES",
    "WRITEBACK_STATES",
    "BackoffConfig",
    "CallingHoursConfig",
    "CapConfig",
    "ClientCredentialsAuth",
    "Config",
    "ConsentConfig",
    "DaemonConfig",
    "DatabaseConfig",
    "DeliveryScheduleConfig",
    "GuardConfig",
    "JwtAuth",
    "MappingConfig",
    "ObservabilityConfig",
    "OptionsConfig",
    "PasswordAuth",
    "PhoneConfig",
    "ReconcileConfig",
    "RouteConfig",
    "RulesConfig",
    "SalesforceAuth",
    "SalesforceConfig",
    "ScheduleConfig",
    "SessionAuth",
    "SimzConfig",
    "SourceConfig",
    "SyncConfig",
    "TimeoutConfig",
    "TimezoneField",
    "WritebackConfig",
    "WritebackFieldsConfig",
    "WritebackState",
    "change_event_topic",
    "config_dir",
    "cron_trigger",
    "existing_file",
    "header_safe",
    "is_loopback_host",
    "parse_database_url",
    "require_https",
    "resolve_path",
]
