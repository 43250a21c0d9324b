"""Errors of the intake channels (one root; Redis and SQLite errors are wrapped here)."""

from __future__ import annotations


class ChannelError(Exception):
    """Root of every error raised by :mod:`channels`."""


class IntakeUnavailable(ChannelError):
    """Neither Redis nor the local spool could take an intake; nothing was promised."""


class StreamUnavailable(ChannelError):
    """Redis did not answer (connection refused, timeout, loading, read-only)."""


class SpoolError(ChannelError):
    """The local spool could not be written or read."""
