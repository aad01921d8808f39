"""Configuration: pydantic models and the YAML loader."""

from syncd.config.loader import ConfigError, default_config_path, load_config, parse_config
from syncd.config.models import Config, SyncConfig

__all__ = [
    "Config",
    "ConfigError",
    "SyncConfig",
    "default_config_path",
    "load_config",
    "parse_config",
]
