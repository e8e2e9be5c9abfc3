"""
Typed configuration: built-in defaults, then a YAML file, then ``OPENCLAW_*``
environment variables, then twistd command-line options.

Everything is validated before any port is bound.  A bad value raises
``ConfigError`` whose text is one line naming the key, the value and why; the
twistd plugin turns it into exit status 78 (EX_CONFIG) so a service manager
does not restart-loop on a broken file.

``sections`` holds the dataclasses and key parsers, ``loading`` the layers
and where the file is found, ``example`` the rendered example file.
"""

from openclaw.config.example import render_example
from openclaw.config.loading import (
    EX_CONFIG,
    ConfigError,
    ConfigSource,
    build_config,
    config_path,
    default_home,
    load_config,
    read_yaml,
    value_sources,
)
from openclaw.config.parsing import parse_duration, parse_size
from openclaw.config.sections import (
    KEYS,
    LIST_SECTIONS,
    TOOL_NAMES,
    BrainConfig,
    Config,
    DaemonConfig,
    GatewayConfig,
    HeartbeatConfig,
    LanesConfig,
    LogConfig,
    OutboxConfig,
    ProviderConfig,
    StateConfig,
    StoreConfig,
    ClusterConfig,
    WebConfig,
    env_name,
)

__all__ = [
    "EX_CONFIG", "KEYS", "LIST_SECTIONS", "TOOL_NAMES", "BrainConfig", "Config", "ConfigError", "ConfigSource", "DaemonConfig", "GatewayConfig",
    "HeartbeatConfig", "LanesConfig", "LogConfig", "OutboxConfig", "ProviderConfig", "StateConfig", "StoreConfig", "ClusterConfig",
    "WebConfig", "build_config", "config_path", "default_home", "env_name", "load_config", "parse_duration", "parse_size",
    "read_yaml", "render_example", "value_sources",
]
