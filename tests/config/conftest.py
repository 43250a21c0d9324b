"""Fixtures for the config tests: a factory writing config directories under tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """``write_config(hotline=..., queues=...)`` writes the given YAML texts into a fresh
    directory and returns it (files left out are absent). tmp_path removes it afterwards."""
    counter = iter(range(1_000_000))

    def write(*, hotline: str | None = None, queues: str | None = None,
              **extra: str) -> Path:
        directory = tmp_path / f"cfg{next(counter)}"
        directory.mkdir()
        files = {"hotline.yaml": hotline, "queues.yaml": queues,
                 **{f"{k}.yaml": v for k, v in extra.items()}}
        for name, text in files.items():
            if text is not None:
                (directory / name).write_text(text, encoding="utf-8")
        return directory

    return write
