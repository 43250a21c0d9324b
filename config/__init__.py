"""Typed, validated configuration: the schema, the YAML loader and the reload diff."""

from config.errors import ConfigError, ConfigIssue
from config.loader import load_config
from config.reload import MembershipDiff, diff_memberships
from config.schema import HotlineConfig

__all__ = ["ConfigError", "ConfigIssue", "HotlineConfig", "MembershipDiff", "diff_memberships",
           "load_config"]
