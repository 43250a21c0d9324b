"""Structured logging: phone numbers and secrets are masked in structlog and in plain ``logging``
output, and ids that merely look numeric are left alone. The masking patterns themselves:
tests/privacy/test_masking.py."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
import re
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from panoramisk.ami_protocol import AMIProtocol  # type: ignore[import-untyped]

from hotline.logs import configure_logging


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """A stream to configure logging into; the previous logging setup is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_config = structlog.get_config()
    stream = io.StringIO()
    try:
        yield stream
    finally:
        for handler in [h for h in root.handlers if h not in saved_handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved_level)
        structlog.configure(**saved_config)
        logging.captureWarnings(False)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_output_of_structlog_events_is_masked(log_output: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=log_output)
    log = structlog.get_logger("hotline.test")
    log.info("来电 %s", "13800138000", caller_number="13900001111", call_id="1795398663.0")
    log.debug("not shown at INFO", caller="13800138000")

    [line] = _json_lines(log_output)
    assert line["event"] == "来电 138****8000"
    assert line["caller_number"] == "139****1111"
    assert line["call_id"] == "1795398663.0"
    assert line["level"] == "info"
    assert line["logger"] == "hotline.test"
    assert str(line["timestamp"]).endswith("Z")
    assert "13800138000" not in log_output.getvalue()


def test_panoramisk_style_stdlib_records_are_masked_too(log_output: io.StringIO) -> None:
    configure_logging("DEBUG", "json", stream=log_output)
    # panoramisk logs through the stdlib: `log.debug('...%s', message)`.
    logging.getLogger("panoramisk.manager").debug(
        "Received: %s",
        "Event: QueueCallerJoin\r\nCallerIDNum: 13800138000\r\nUniqueid: 1795398663.0",
    )
    logging.getLogger("panoramisk.manager").info("peer", extra={"caller": "88886666"})

    first, second = _json_lines(log_output)
    assert first["logger"] == "panoramisk.manager"
    assert first["level"] == "debug"
    assert first["event"] == (
        "Received: Event: QueueCallerJoin\r\nCallerIDNum: 138****8000\r\nUniqueid: 1795398663.0"
    )
    assert second["caller"] == "88****66"
    assert "13800138000" not in log_output.getvalue()


def test_console_output_and_tracebacks_are_masked(log_output: io.StringIO) -> None:
    configure_logging("INFO", "console", stream=log_output)
    log = structlog.get_logger("hotline.test")
    try:
        raise ValueError("bad caller 13800138000")
    except ValueError:
        log.exception("lookup failed", phone="13912345678")
    logging.getLogger("aiohttp.access").warning("GET /calls?phone=13700001111")

    text = log_output.getvalue()
    assert "lookup failed" in text and "ValueError: bad caller 138****8000" in text
    assert "phone=139****5678" in text
    assert "GET /calls?phone=137****1111" in text
    for raw in ("13800138000", "13912345678", "13700001111"):
        assert raw not in text


TOKEN = "adm1n-T0ken-for-hotline-tests"


def test_secret_named_fields_are_masked_whole(log_output: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=log_output)
    structlog.get_logger("hotline.test").info(
        "reloaded", admin_token=TOKEN, agent_tokens={"1001": TOKEN}, secret=None, seats=100)
    logging.getLogger("hotline.test").info("reloaded", extra={"unit_token": TOKEN})
    first, second = _json_lines(log_output)
    assert first["admin_token"] == "***" and first["agent_tokens"] == {"1001": "***"}
    assert first["secret"] is None and first["seats"] == 100
    assert second["unit_token"] == "***"
    assert TOKEN not in log_output.getvalue()


def test_warnings_go_through_the_masking_handler(log_output: io.StringIO,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """aiohttp warns about a malformed Content-Disposition by quoting it: before, the warning
    went to stderr raw, with the citizen's phone number in the file name."""
    from aiohttp.multipart import parse_content_disposition

    configure_logging("INFO", "json", stream=log_output)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        parse_content_disposition('form-data; name="files"; filename="张三13800138000.jpg')
    [line] = _json_lines(log_output)
    assert line["logger"] == "py.warnings" and "BadContentDispositionHeader" in str(line["event"])
    assert "138****8000" in str(line["event"])
    assert "13800138000" not in log_output.getvalue() + capsys.readouterr().err


def test_reconfiguring_replaces_the_handler(log_output: io.StringIO) -> None:
    configure_logging("INFO", "json", stream=io.StringIO())
    configure_logging("WARNING", "json", stream=log_output)
    logging.getLogger("x").info("dropped")
    logging.getLogger("x").warning("kept")
    assert [line["event"] for line in _json_lines(log_output)] == ["kept"]


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "json"), ("INFO", "xml")])
def test_bad_settings_are_refused(level: str, fmt: str, log_output: io.StringIO) -> None:
    with pytest.raises(ValueError, match="无效"):
        configure_logging(level, fmt, stream=log_output)  # type: ignore[arg-type]


def test_loggers_taken_before_configuration_are_masked(log_output: io.StringIO) -> None:
    """Modules take their logger at import time, before the composition root configures; and
    a reconfiguration reaches loggers already cached."""
    early = structlog.get_logger("hotline.early")
    configure_logging("INFO", "json", stream=io.StringIO())
    early.info("cached now", caller="13800138000")
    configure_logging("INFO", "json", stream=log_output)
    early.info("after reconfigure", caller="13800138000")
    [line] = _json_lines(log_output)
    assert line["event"] == "after reconfigure"
    assert line["caller"] == "138****8000"


class _Dispatcher:
    """Stands in for panoramisk's Manager, which would need a live Asterisk: the protocol only
    hands it the parsed events."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def dispatch(self, message: Any) -> None:
        self.events.append(message)


@pytest.mark.parametrize("name", ["01-answered", "02-abandoned", "04-ring-no-answer"])
def test_panoramisk_debug_log_of_a_recorded_session_is_masked(
    name: str, trace: Callable[[str], list[Any]], log_output: io.StringIO
) -> None:
    """Real AMI traffic through panoramisk's own parser, which logs every message it reads."""
    configure_logging("DEBUG", "json", stream=log_output)
    received = "".join(line.text for line in trace(name) if line.dir == "received")
    protocol = AMIProtocol()
    protocol.connection_made(transport=None)  # it only reads here: no transport needed
    protocol.factory = dispatcher = _Dispatcher()
    protocol.encoding = "utf-8"  # as Manager(encoding="utf8"), its default
    protocol.data_received(received.encode("utf-8"))

    text = log_output.getvalue()
    assert dispatcher.events
    assert "message interpreted" in text
    callers = set(re.findall(r"CallerIDNum: (1\d{10})", received))
    assert callers
    for number in callers:
        assert number not in text
        assert f"{number[:3]}****{number[-4:]}" in text
    # Ids and times survive untouched, so the log can still be correlated.
    for uniqueid in set(re.findall(r"Uniqueid: (\S+)", received)):
        assert uniqueid in text
    for stamp in set(re.findall(r"EventTV: (\S+)", received)):
        assert stamp in text
