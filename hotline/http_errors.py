"""HTTP error bodies: a stable ``error`` code, a Chinese ``message`` and ``details``."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str,
                   details: dict[str, Any] | None = None) -> web.Response:
    """A JSON error every client can rely on: ``{"error", "message", "details"}``."""
    body = {"error": code, "message": message, "details": details or {}}
    return web.Response(status=status, text=json.dumps(body, ensure_ascii=False),
                        content_type="application/json")


class ApiError(Exception):
    """Raised by handlers; turned into :func:`error_response` by the middleware."""

    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


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
        return error_response(405, "method_not_allowed", "不支持该请求方法",
                              {"allowed": sorted(exc.allowed_methods)})
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "payload_too_large", "请求体过大")
    except web.HTTPException as exc:
        return error_response(exc.status, "http_error", "请求无法处理", {"reason": exc.reason})
    except Exception:
        # A bug, not the client's fault: logged with its traceback; the client still gets
        # the documented error body and the service keeps running.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "服务器内部错误，请稍后重试")
