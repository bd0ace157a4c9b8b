"""Config: strict pydantic models loaded from YAML (docs/architecture.md, Config)."""

from monitor.config.common import ProbeBase
from monitor.config.loader import ConfigError, load_config, parse_config
from monitor.config.models import Config, GlobalConfig, ProbeConfig, ProbeKinds, ServerConfig
from monitor.config.source import ConfigSource

__all__ = [
    "Config",
    "ConfigError",
    "ConfigSource",
    "GlobalConfig",
    "ProbeBase",
    "ProbeConfig",
    "ProbeKinds",
    "ServerConfig",
    "load_config",
    "parse_config",
]
