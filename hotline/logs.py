"""Structured logging (structlog) with phone numbers and secrets masked everywhere.

The composition root calls :func:`configure_logging` once. structlog events, plain
``logging`` records (panoramisk, aiohttp, SQLAlchemy ...) and Python warnings (aiohttp warns
about a malformed ``Content-Disposition`` by quoting it, file name and all) go through the
same handler and the same processors, so a citizen's number or a bearer token never reaches
the log unmasked, whoever logs it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["console", "json"]

PHONE_FIELDS: frozenset[str] = frozenset(
    {
        "caller",
        "callernumber",
        "callerid",
        "calleridnum",
        "connectedlinenum",
        "phone",
        "phonenumber",
        "number",
        "mobile",
        "telephone",
        "callee",
        "contactphone",
    }
)
"""Keys (lower-cased, ``_``/``-`` removed) whose values are phone numbers: in them any run of
7 or more digits is masked, not only the number shapes recognised in free text."""

# A Chinese mobile number, optionally +86 / 0086 / 86 in front and 3-4-4 grouping. The
# look-arounds keep it from matching inside longer digit runs (epoch milliseconds) and in the
# fraction of a decimal (Asterisk Uniqueids such as 1795398663.13800138000 are never phones).
_MOBILE = re.compile(
    r"(?<![\d.])(?P<prefix>(?:\+|00)?86[ -]?)?(?P<number>1[3-9]\d(?:[ -]?\d{4}){2})(?!\d|\.\d)"
)
# A landline with its area code set apart: 010-12345678, 0471 1234567, (0471)1234567.
# The separator is required: a bare 0-led digit run is as likely an id as a phone.
_LANDLINE = re.compile(r"(?<![\d.])(?:\(0\d{2,3}\)|0\d{2,3}[ -])\d{7,8}(?!\d|\.\d)")
# Phone fields inside free text, e.g. panoramisk's "CallerIDNum: 12345678" or a dict repr
# "'caller_number': '12345678'".
_FIELD_IN_TEXT = re.compile(
    r"(?i)(?<![a-z_])(?P<key>calleridnum|connectedlinenum|caller_?number|caller_?id|caller|phone"
    r"|mobile)['\"]?\s*[:=]\s*['\"]?(?P<digits>\+?\d{7,})(?!\d)"
)
_DIGIT_RUN = re.compile(r"\+?\d{7,}")

SECRET_MASK = "***"
# Names of secrets: a token, secret, password, API key, signature or Authorization header, also
# as the end of a longer name (admin_token, ami-secret, X-Signature).
_SECRET_NAME = r"(?:[a-z0-9]+[_-])*(?:tokens?|secret|password|passwd|api[_-]?key|authorization|signature)"
# "Bearer <token>" wherever it appears (an aiohttp parser error quotes the header line).
_BEARER = re.compile(r"(?i)(?<![a-z])(?P<scheme>bearer|basic)\s+(?P<value>[^\s'\",;]+)")
# A secret-named field in free text: "Secret: x", "admin_token=x", "'password': 'x'".
_SECRET_IN_TEXT = re.compile(
    r"(?i)(?<![a-z0-9])(?P<key>" + _SECRET_NAME + r")['\"]?\s*[:=]\s*['\"]?"
    r"(?:(?:bearer|basic)\s+)?(?P<value>[^\s'\",;&}]+)")
# The password of a URL: postgresql://user:password@host/db.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<value>[^@\s/]+)(?=@)",
                           re.IGNORECASE)
_SECRET_FIELD = re.compile(r"(?i)" + _SECRET_NAME)


def _mask_digits(raw: str) -> str:
    """Keep the first 3 and last 4 digits (2 and 2 for numbers shorter than 11 digits, so a
    7-digit local number still hides something); separators are dropped, ``+`` is kept."""
    plus = "+" if raw.startswith("+") else ""
    digits = "".join(ch for ch in raw if ch.isdigit())
    head, tail = (3, 4) if len(digits) >= 11 else (2, 2)
    return plus + digits[:head] + "*" * (len(digits) - head - tail) + digits[-tail:]


def _mask_mobile(match: re.Match[str]) -> str:
    return (match.group("prefix") or "") + _mask_digits(match.group("number"))


def _mask_field_in_text(match: re.Match[str]) -> str:
    start, end = match.span("digits")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + _mask_digits(match.group("digits")) + whole[end - offset :]


def _mask_group(name: str) -> Any:
    def replace(match: re.Match[str]) -> str:
        start, end = match.span(name)
        whole, offset = match.group(0), match.start()
        return whole[: start - offset] + SECRET_MASK + whole[end - offset :]
    return replace


def mask_secrets(text: str) -> str:
    """Mask bearer tokens, secret-named fields and URL passwords in free text.

    >>> mask_secrets("Authorization: Bearer s3cr3t-token, Secret: hotline")
    'Authorization: Bearer ***, Secret: ***'
    """
    text = _BEARER.sub(_mask_group("value"), text)
    text = _SECRET_IN_TEXT.sub(_mask_group("value"), text)
    return _URL_PASSWORD.sub(_mask_group("value"), text)


def mask_text(text: str) -> str:
    """Mask every phone number and secret (:func:`mask_secrets`) recognisable in free text.

    >>> mask_text("来电 13800138000, 回拨 010-12345678")
    '来电 138****8000, 回拨 010****5678'
    """
    text = _MOBILE.sub(_mask_mobile, text)
    text = _LANDLINE.sub(lambda m: _mask_digits(m.group(0)), text)
    return mask_secrets(_FIELD_IN_TEXT.sub(_mask_field_in_text, text))


def _is_phone_field(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "").replace("-", "") in PHONE_FIELDS


def _is_secret_field(key: object) -> bool:
    return isinstance(key, str) and _SECRET_FIELD.fullmatch(key) is not None


def _mask_entry(key: object, value: Any) -> Any:
    if _is_secret_field(key) and value is not None and not isinstance(value, bool):
        if isinstance(value, Mapping):
            return {k: SECRET_MASK for k in value}
        return SECRET_MASK
    return _mask_value(value, _is_phone_field(key))


def _mask_value(value: Any, phone_field: bool) -> Any:
    if isinstance(value, str):
        masked = mask_text(value)
        return _DIGIT_RUN.sub(lambda m: _mask_digits(m.group(0)), masked) if phone_field else masked
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # A number logged as an int is as private as one logged as text.
        masked = _mask_value(str(value), phone_field)
        return value if masked == str(value) else masked
    if isinstance(value, Mapping):
        return {(mask_text(k) if isinstance(k, str) else k): _mask_entry(k, v)
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(item, phone_field) for item in value]
    # Anything else (a CallRecord, an AMI message ...) would be rendered through repr() by the
    # renderer, unmasked: render it here instead.
    return _mask_value(repr(value), phone_field)


def mask_phone_numbers(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask phone numbers and secrets in every key and value of the
    event dict (the whole value of a secret-named key).

    Must run after exceptions are formatted to text and before the renderer.
    """
    return {(mask_text(key) if isinstance(key, str) else key): _mask_entry(key, value)
            for key, value in event_dict.items()}


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
