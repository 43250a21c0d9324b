"""The HTTP server under the service's application: what aiohttp's connection handler does
before, or without, the application, brought under the service's rules.

aiohttp answers a request its parser refuses (a bad request line, a header with a control
byte, a bad chunk size) itself, before any middleware: a ``text/plain`` 400, logged at ERROR
with a traceback whose message quotes the offending line (a bearer token with one bad byte
landed in the log in full, once per request). Nor does it bound the time a request may take
to arrive: 20 clients sending a byte every 3 s held their sockets for as long as they kept
sending (aiohttp's keep-alive timeout, 3630 s, only closes idle connections).

:class:`HotlineRunner` is an ``AppRunner`` whose connections are :class:`GuardedProtocol`:

* a request the parser refuses is answered with the service's JSON error (``bad_request``),
  logged in one line naming the parser's error class only (never the bytes it quotes), and
  counted (:class:`httpkit.errors.ClientEvents`);
* a request's line and headers must arrive within ``deadlines.headers`` seconds of its
  first byte (of the connection, for the first request), the whole request within
  ``deadlines.body`` (:class:`ReadDeadlines`). Past it: a body being read by a handler fails
  with :class:`~httpkit.errors.RequestReadTimeout`, which the error middleware answers
  with a JSON 408; a request whose headers are still coming gets a 408 written directly and
  the connection is closed. The time a handler then takes to answer (an AMI action) is not
  limited here.

This relies on aiohttp internals (``RequestHandler`` subclassing and a few of its private
attributes; aiohttp is pinned in pyproject.toml); ``tests/httpkit/test_server.py`` runs
it over real sockets, so an aiohttp upgrade that changes them fails there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from httpkit.errors import (
    CLIENT_EVENTS,
    REQUEST_TIMEOUT_MESSAGE,
    SERVER_NAME,
    ClientEvents,
    RequestReadTimeout,
    error_response,
)
from httpkit.responses import json_bytes

log = logging.getLogger(__name__)

__all__ = ["GuardedProtocol", "HotlineRunner", "ReadDeadlines", "TIMEOUT_ANSWER"]

TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Connection: close\r\nServer: " + SERVER_NAME.encode() + b"\r\nContent-Length: %d\r\n\r\n"
)
_TIMEOUT_BODY = json_bytes({"error": "request_timeout", "message": REQUEST_TIMEOUT_MESSAGE,
                            "details": {}})


@dataclass(frozen=True, slots=True)
class ReadDeadlines:
    """Seconds a request may take to arrive, from its first byte (from the connection, for
    the first request): its request line and headers, and the whole request, body included
    (``service.http_header_timeout_seconds`` / ``http_body_timeout_seconds``)."""

    headers: float = 10.0
    body: float = 120.0


class GuardedProtocol(RequestHandler):
    """aiohttp's connection handler with read deadlines per request and JSON low-level
    errors (see the module docstring)."""

    def __init__(self, manager: web.Server, *, deadlines: ReadDeadlines,
                 events: ClientEvents | None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._deadlines = deadlines
        self._events = events
        self._deadline: asyncio.TimerHandle | None = None
        self._started = 0.0
        # The body of the request now arriving (None between requests).
        self._arriving: StreamReader | None = None

    # -- the read deadlines -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A connection that never sends a whole request is held no longer than one that does.
        self._start_request()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._arriving = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._deadline is None and self._arriving is None \
                and not (self._close or self._force_close):
            self._start_request()                    # the first byte of the next request
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:             # its request line and headers are in
            broken = self._arriving
            if broken is not None and not broken.is_eof():
                # A message while a body is still arriving: the parser gave up inside that
                # body (a bad chunk) and queued its error. The body's handler would wait for
                # the rest of it for ever; it answers 400 invalid_body instead.
                broken.set_exception(web.RequestPayloadError("malformed request body"))
            self._disarm()
            self._arriving = self._messages[-1][1]
            if not self._arriving.is_eof():
                self._arm(self._deadlines.body)
        if self._arriving is not None and self._arriving.is_eof():
            self._arriving = None                    # the whole request is in
            self._disarm()

    def _start_request(self) -> None:
        self._started = self._loop.time()
        self._arm(self._deadlines.headers)

    def _arm(self, seconds: float) -> None:
        self._deadline = self._loop.call_at(self._started + seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport is None:
            return
        peer = self._peer()
        body = self._arriving
        request = self._current_request
        if body is not None and request is not None and request.content is body:
            # Its handler runs (and reads, or will read, this body): it answers the 408.
            self._note("read_timeout", peer, f"body of {request.method} {request.path}")
            body.set_exception(RequestReadTimeout())
            return
        waiting = body is None or any(payload is body for _, payload in self._messages)
        self._note("read_timeout", peer, "request line or headers" if body is None else
                   "body of a queued request" if waiting else "body after the answer")
        if self._request_in_progress:
            self.close()          # the answer being made is sent, then the connection closes
            return
        if waiting:               # nothing was answered to this request yet
            self.transport.write(TIMEOUT_ANSWER % len(_TIMEOUT_BODY) + _TIMEOUT_BODY)
        self.force_close()

    # -- low-level errors ---------------------------------------------------------------
    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp logs what escapes its connection loop with a traceback. A body that broke
        or went silent fails again when aiohttp reads past it after the answer: the client's
        doing, already counted where it was noticed."""
        if isinstance(kw.get("exc_info"), web.RequestPayloadError | RequestReadTimeout
                      | ConnectionError):
            log.debug("after the answer: %r", kw["exc_info"])
            self.force_close()
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's error answer (a request its parser refused, or a handler that failed
        past the error middleware), made the service's JSON error. The parser's message
        quotes the bytes it refused: only the error's class is logged."""
        if status == 500:
            log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
            code, text = "internal_error", "服务器内部错误，请稍后重试"
        elif status == 504:
            code, text = "timeout", "处理超时，请稍后重试"
        else:
            self._note("bad_request", self._peer(),
                       f"{status} {type(exc).__name__ if exc is not None else ''}")
            code, text = "bad_request", "HTTP 请求格式有误"
        if request.writer.output_size > 0:
            # As aiohttp: part of an answer is out, another cannot follow.
            raise ConnectionError("Response is sent already, cannot send another response "
                                  "with the error message")
        response = error_response(status, code, text)
        response.headers["Server"] = SERVER_NAME
        response.force_close()
        return response

    # -- helpers ------------------------------------------------------------------------
    def _peer(self) -> str | None:
        peer = self.peername
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return None if peer is None else str(peer)

    def _note(self, kind: str, peer: str | None, detail: str) -> None:
        if self._events is not None:
            self._events.note(kind, peer, detail)
        else:
            log.info("HTTP client-side failure: %s peer=%s %s", kind, peer, detail)


class _GuardedServer(web.Server):
    """aiohttp's ``Server`` making :class:`GuardedProtocol` connections."""

    def __init__(self, base: web.Server, *, deadlines: ReadDeadlines,
                 events: ClientEvents | None) -> None:
        super().__init__(base.request_handler, request_factory=base.request_factory,
                         handler_cancellation=base.handler_cancellation, loop=base._loop,
                         **base._kwargs)
        self._deadlines = deadlines
        self._events = events

    def __call__(self) -> RequestHandler:
        return GuardedProtocol(self, loop=self._loop, deadlines=self._deadlines,
                               events=self._events, **self._kwargs)


class HotlineRunner(web.AppRunner):
    """``web.AppRunner`` for the service: :class:`GuardedProtocol` connections with
    ``deadlines``, no access log (the service logs what matters itself)."""

    def __init__(self, app: web.Application, *, deadlines: ReadDeadlines = ReadDeadlines(),
                 **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        # aiohttp keeps an idle keep-alive connection for 3630 s; browsers and proxies reuse
        # theirs within seconds. 75 s is nginx's default.
        kwargs.setdefault("keepalive_timeout", 75.0)
        super().__init__(app, **kwargs)
        self._deadlines = deadlines

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        return _GuardedServer(base, deadlines=self._deadlines,
                              events=self.app.get(CLIENT_EVENTS))
