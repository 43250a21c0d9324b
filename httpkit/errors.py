"""HTTP error bodies: a stable ``error`` code, a Chinese ``message`` and ``details``; the one
table of the HTTP status each domain error code is answered with (:data:`STATUS_OF_CODE`); and
what the service does when a request fails on the client's side.

A client that goes away mid-request, sends a request the HTTP parser cannot read or takes
too long to send it is not a server error: one log line (no traceback), counted in
``hotline_http_client_failures_total{kind}`` (:class:`ClientEvents`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from httpkit.responses import json_response

log = logging.getLogger(__name__)

SERVER_NAME: Final = "hotline"
"""The ``Server`` header of every answer: no product versions for a scanner to match."""


def error_response(status: int, code: str, message: str,
                   details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error every client can rely on: ``{"error", "message", "details"}``."""
    body = {"error": code, "message": message, "details": details or {}}
    return json_response(body, status, headers)


class ApiError(Exception):
    """Raised by handlers; turned into :func:`error_response` by the middleware."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


STATUS_OF_CODE: Final[Mapping[str, int]] = {
    # The form, the agent's summary, the app's form: fields named in details.
    "invalid_field": 422,
    # channels.attachments.AttachmentRejected
    "attachment_too_large": 413, "attachment_type_mismatch": 415,
    "unsupported_attachment_type": 415, "too_many_attachments": 422,
    # channels.signing.SignatureRejected: the app's request is not authenticated.
    "missing_signature": 401, "unknown_app": 401, "stale_request": 401, "bad_nonce": 401,
    "bad_signature": 401, "replayed_nonce": 401,
    # channels.phone.PhoneIntakeError
    "no_call": 404, "not_your_call": 403,
    # Nothing was promised, or nothing can be told: the client tries again later.
    "intake_unavailable": 503, "status_unavailable": 503, "service_busy": 503,
    # telephony.seat_actions.SeatActionError: a missing seat, a number or reason not
    # configured, a call in the wrong state; the transfer's own wait ran out (504).
    "unknown_seat": 404, "unknown_department": 422, "unknown_pause_reason": 422,
    "seat_not_on_call": 409, "call_ended": 409, "transfer_failed": 409,
    "transfer_timeout": 504,
    # telephony.errors: the AMI link (a gateway the service depends on).
    "ami_not_ready": 503, "ami_timeout": 504, "ami_action_lost": 502, "ami_action_failed": 502,
    # router.tickets.TicketError and router.ticket_store.InvalidTicketChange
    "ticket_not_found": 404, "permission_denied": 403, "invalid_ticket_change": 422,
    "illegal_transition": 409, "extension_limit_reached": 409,
    "ticket_numbers_exhausted": 409, "ticket_error": 409,
    # asr's errors: no endpoint answers them today (the ASR runs behind AudioSocket and the
    # CLI); listed so a future one answers them like the rest of the service.
    "asr_unavailable": 503, "asr_capacity": 503, "asr_model_missing": 503,
    "asr_stream_lost": 502, "asr_file_unreadable": 422,
}
"""The HTTP status of each code a domain error carries: the domain packages say what went
wrong (a stable ``code``), only the HTTP layer says how it is answered.
tests/httpkit/test_errors.py checks every code of every domain error is here."""


class DomainError(Protocol):
    """What the HTTP layer reads of a domain error: its code, message and details."""

    @property
    def code(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def details(self) -> Mapping[str, Any]: ...


def error_for(code: str, message: str, details: Mapping[str, Any] | None = None) -> ApiError:
    """The :class:`ApiError` for ``code``, with its status from :data:`STATUS_OF_CODE`
    (a ``KeyError``, so a 500 logged as a bug, for a code the table does not have)."""
    return ApiError(STATUS_OF_CODE[code], code, message, dict(details or {}))


def api_error(exc: DomainError) -> ApiError:
    """The answer to a domain error: its code, message and details; the table's status."""
    return error_for(exc.code, exc.message, exc.details)


REQUEST_TIMEOUT_MESSAGE: Final = "请求未在规定时间内传完，请重试"


class RequestReadTimeout(TimeoutError):
    """The request's body did not arrive within the read deadline (set on the body stream by
    :mod:`httpkit.server`). A ``TimeoutError``: aiohttp's lingering read after the
    answer then stops quietly instead of logging it."""


CLIENT_FAILURES: Final[dict[str, str]] = {
    "disconnected": "客户端在请求完成前断开 / client went away mid-request",
    "bad_request": "HTTP 请求格式有误 / HTTP request the parser refused",
    "bad_body": "请求体编码有误 / malformed request body (chunked or compressed)",
    "read_timeout": "请求未在时限内传完 / request not received within the read deadline",
}


class ClientEvents(Collector):
    """Counts requests that failed on the client's side, and logs each in one line."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def note(self, kind: str, peer: str | None, detail: str = "") -> None:
        """Count one failure of ``kind`` (a key of :data:`CLIENT_FAILURES`) from ``peer``."""
        self.counts[kind] += 1
        log.info("HTTP 客户端失败 / client-side HTTP failure: %s (%s) peer=%s %s",
                 CLIENT_FAILURES[kind], kind, peer or "?", detail)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hotline_http_client_failures",
            "Requests failed on the client's side (not server errors), by kind",
            labels=["kind"])
        for kind in CLIENT_FAILURES:
            family.add_metric([kind], float(self.counts[kind]))
        yield family


CLIENT_EVENTS = web.AppKey("client_events", ClientEvents)


def client_failure(request: web.Request, kind: str, detail: str = "") -> None:
    """Note a client-side failure of ``request`` (counted when the app has a counter)."""
    events = request.app.get(CLIENT_EVENTS)
    if events is None:
        log.info("HTTP 客户端失败 / client-side HTTP failure: %s peer=%s", kind, request.remote)
    else:
        events.note(kind, request.remote, detail)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure leaves as the documented JSON error; the service keeps running."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except web.HTTPNotFound:
        return error_response(404, "not_found", "请求的地址不存在")
    except web.HTTPMethodNotAllowed as exc:
        allowed = sorted(exc.allowed_methods)
        # RFC 9110 §15.5.6: a 405 "MUST generate an Allow header field".
        return error_response(405, "method_not_allowed", "不支持该请求方法",
                              {"allowed": allowed}, headers={"Allow": ", ".join(allowed)})
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "payload_too_large", "请求体过大")
    except web.HTTPException as exc:
        return error_response(exc.status, "http_error", "请求无法处理", {"reason": exc.reason})
    except RequestReadTimeout:
        # Counted and logged where the deadline passed (httpkit.server).
        response = error_response(408, "request_timeout", REQUEST_TIMEOUT_MESSAGE)
        response.force_close()
        return response
    except web.RequestPayloadError as exc:
        client_failure(request, "bad_body", f"{request.method} {request.path}: {exc}")
        return error_response(400, "invalid_body", "请求体编码有误")
    except ConnectionError:
        transport = request.transport
        if transport is not None and not transport.is_closing():
            return _bug(request)        # e.g. a refused connection to a backend
        # The client closed the connection while its body was being read (aiohttp sets
        # ConnectionResetError("Connection lost") on the body stream): nobody will read an
        # answer, and it is not the service's fault.
        client_failure(request, "disconnected", f"{request.method} {request.path}")
        return error_response(400, "client_disconnected", "客户端已断开")
    except Exception:
        return _bug(request)


def _bug(request: web.Request) -> web.Response:
    # A bug, not the client's fault: logged with its traceback; the client still gets the
    # documented error body and the service keeps running.
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, "internal_error", "服务器内部错误，请稍后重试")


async def server_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: replace aiohttp's ``Server: Python/3.x aiohttp/3.y``."""
    response.headers["Server"] = SERVER_NAME
