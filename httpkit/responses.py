"""The one JSON responder of the service: every JSON answer, success or error, is made by
:func:`json_response` from :func:`json_bytes`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

NO_STORE: Final[Mapping[str, str]] = {"Cache-Control": "no-store"}
"""Headers of an answer that proxies and browsers must not cache (it names citizens)."""


def json_bytes(data: Any, *, compact: bool = False) -> bytes:
    """``data`` as UTF-8 JSON, Chinese kept readable. A lone surrogate (echoed from a request:
    JSON ``"\\ud800"`` decodes to one) cannot be UTF-8: such a document is written with
    ``\\u`` escapes instead, still valid JSON that gives the client back what it sent."""
    separators = (",", ":") if compact else None
    text = json.dumps(data, ensure_ascii=False, default=str, separators=separators)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(data, ensure_ascii=True, default=str, separators=separators).encode()


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None, *,
                  compact: bool = False) -> web.Response:
    """``data`` as an ``application/json; charset=utf-8`` answer (:func:`json_bytes`)."""
    return web.Response(status=status, headers=dict(headers) if headers else None,
                        body=json_bytes(data, compact=compact),
                        content_type="application/json", charset="utf-8")
