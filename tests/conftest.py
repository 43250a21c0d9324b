"""Shared fixtures. Real components where this machine has them: Redis on 127.0.0.1:6379,
PostgreSQL on 127.0.0.1:5432 (trust auth, database ``test``), and a real Asterisk 22.5 from
``../shared/asterisk`` for the tier in ``tests/asterisk/``; the PBX simulator and the recorded
traces in ``../shared/ami-traces`` are there for speed, load and faults."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from telephony.simulator.replay import RecordedLine
from telephony.simulator.replay import load_trace as read_trace

REPO = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path:
    """``../shared`` beside the checkout (CI and developers have it there); override with
    ``HOTLINE_SHARED_DIR``."""
    if "HOTLINE_SHARED_DIR" in os.environ:
        return Path(os.environ["HOTLINE_SHARED_DIR"])
    for candidate in (REPO.parent / "shared", Path("/work/shared")):
        if (candidate / "ami-traces").is_dir():
            return candidate
    return REPO.parent / "shared"


SHARED = _shared_dir()
TRACES = SHARED / "ami-traces"


@functools.cache
def load_trace(name: str) -> list[RecordedLine]:
    """Load ``../shared/ami-traces/<name>.jsonl`` (``name`` without the suffix); read once per
    session (see :func:`_traces_read_before_any_loop`)."""
    return read_trace(TRACES / f"{name}.jsonl")


@pytest.fixture(autouse=True, scope="session")
def _traces_read_before_any_loop() -> None:
    """Read every trace before the first test: async tests replay them on the loop, and a
    file read there is a blocking call (a test run alone failed under blockbuster)."""
    for name in trace_names():
        load_trace(name)


def trace_names() -> list[str]:
    return sorted(p.stem for p in TRACES.glob("*.jsonl"))


@pytest.fixture
def trace() -> Iterator[object]:
    """The trace loader, as a fixture."""
    yield load_trace


@pytest.fixture
def no_blocking() -> Iterator[BlockBuster]:
    """Fail the test if anything blocks the event loop (file or socket I/O, sleep ...)."""
    with blockbuster_ctx() as buster:
        # Known and accepted: asyncpg parses its connect arguments on the loop, looking for
        # ~/.pgpass and ~/.postgresql/*.crt (a few stats) for every new connection. Pooling
        # makes that rare; it is asyncpg's behaviour, not something this service can move.
        for function in buster.functions.values():
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args")
            # pytest-timeout dumps every thread's stack from its SIGALRM handler, which runs
            # on the loop: let it write, or the dump of a hung test is lost.
            function.can_block_in("pytest_timeout.py", {"dump_stacks", "timeout_sigalrm"})
        yield buster


@pytest.fixture(autouse=True)
def _loop_never_blocks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Async tests run under blockbuster: a blocking call on the event loop fails the test."""
    if request.node.get_closest_marker("allow_blocking") or not _is_async(request):
        yield
        return
    request.getfixturevalue("no_blocking")
    yield


def _is_async(request: pytest.FixtureRequest) -> bool:
    return inspect.iscoroutinefunction(getattr(request.node, "function", None))
