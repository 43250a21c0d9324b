"""Errors of the :mod:`config` package: every problem names the file, the key path and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the configuration.

    ``file`` is the config file name (``queues.yaml``), ``env`` for an environment variable or
    the secrets file's path; ``path`` is the key path inside it (``queues[0].seats[37].extension``,
    empty for a problem with the whole file); ``reason`` says what is wrong in plain words.
    """

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.file}: {self.path}: {self.reason}"
        return f"{self.file}: {self.reason}"


class ConfigError(Exception):
    """The configuration cannot be used; :attr:`issues` lists every problem found, not just
    the first, so an admin fixes them all in one pass."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__(self.format())

    def format(self) -> str:
        """Every issue, one per line (``file: key.path: reason``)."""
        return "\n".join(str(issue) for issue in self.issues)
