"""Typed, validated configuration: the schema, the YAML loader and the settings types other
packages read. A leaf: it imports nothing of the project (an import-linter contract)."""

from config.errors import ConfigError, ConfigIssue
from config.loader import load_config
from config.schema import HotlineConfig

__all__ = ["ConfigError", "ConfigIssue", "HotlineConfig", "load_config"]
