"""The one Config, in a module per section: the daemon's settings (``daemon.py``), the
``[models]`` and ``[agent]`` tables, and how they are loaded from file, environment and flags
(``loading.py``)."""

from mcp_local_provider.core.config.agent import AgentSettings, BackendSettings
from mcp_local_provider.core.config.daemon import (
    KNOWN_SCOPES,
    Config,
    Scope,
    base_url,
    default_state_dir,
)
from mcp_local_provider.core.config.loading import (
    DEFAULT_CONFIG_NAME,
    ENV_PREFIX,
    ConfigError,
    check_exposure,
    load_config,
    stdin_is_tty,
)
from mcp_local_provider.core.config.models import ModelsConfig

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "ENV_PREFIX",
    "KNOWN_SCOPES",
    "AgentSettings",
    "BackendSettings",
    "Config",
    "ConfigError",
    "ModelsConfig",
    "Scope",
    "base_url",
    "check_exposure",
    "default_state_dir",
    "load_config",
    "stdin_is_tty",
]
