"""Typed, validated configuration: the schema and the YAML loader. (A reload is applied as a
diff against what Asterisk reports: :mod:`telephony.queue_admin`.)"""

from config.errors import ConfigError, ConfigIssue
from config.loader import load_config
from config.schema import HotlineConfig

__all__ = ["ConfigError", "ConfigIssue", "HotlineConfig", "load_config"]
