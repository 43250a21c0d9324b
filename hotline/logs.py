"""Structured logging (structlog) with phone numbers and secrets masked everywhere.

The composition root calls :func:`configure_logging` once. structlog events, plain
``logging`` records (panoramisk, aiohttp, SQLAlchemy ...) and Python warnings (aiohttp warns
about a malformed ``Content-Disposition`` by quoting it, file name and all) go through the
same handler and the same processors, so a citizen's number or a bearer token never reaches
the log unmasked, whoever logs it. What is masked and how: :mod:`privacy.masking`.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from privacy.masking import mask_fields

LogFormat = Literal["console", "json"]


def mask_phone_numbers(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask phone numbers and secrets in every key and value of the
    event dict (the whole value of a secret-named key; :func:`privacy.masking.mask_fields`).

    Must run after exceptions are formatted to text and before the renderer.
    """
    return mask_fields(event_dict)


class _HotlineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we install, so a second configure replaces it instead of adding one."""


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(
            f"日志级别无效 (invalid log level {level!r}): use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return number


def configure_logging(level: str, fmt: LogFormat, *, stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib root logger; call once from the composition root.

    ``level`` is a stdlib level name (``"INFO"``); ``fmt`` is ``"console"`` (human, for a
    terminal) or ``"json"`` (one JSON object per line, for log shipping). Output goes to
    ``stream`` (default ``sys.stderr``). Calling it again replaces the previous setup.
    """
    number = _level_number(level)
    if fmt not in ("console", "json"):
        raise ValueError(f"日志格式无效 (invalid log format {fmt!r}): use 'console' or 'json'")

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Plain logging records: their `extra=` fields become event dict keys (and get masked).
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            # Tracebacks become text before masking: exception messages carry numbers too.
            structlog.processors.format_exc_info,
            mask_phone_numbers,
            renderer,
        ],
    )
    handler = _HotlineHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _HotlineHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(number)
    # Warnings (aiohttp's BadContentDispositionHeader quotes the header, a citizen's file name
    # with their phone number in it) went to stderr raw; as records of "py.warnings" they are
    # masked like everything else.
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Safe to cache: the masking and rendering live in the stdlib handler, which a later
        # configure_logging() replaces, so even cached loggers follow a reconfiguration.
        cache_logger_on_first_use=True,
    )
