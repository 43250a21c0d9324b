"""Reading request bodies of the intake endpoints with their own size limits, and JSON
answers.

The service's application sets a small ``client_max_size`` for the agent API; these handlers
never call ``request.read()`` / ``request.post()`` (which apply it) but read ``request.content``
themselves, up to the limit of each endpoint, so every refusal is the documented JSON error.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from hotline.http_errors import ApiError

# JSON bodies carry no files: 1 MiB is far above the longest allowed text (100,000 characters
# of CJK escaped as \\uXXXX is 600 KB) and far below what would hurt.
JSON_BODY_LIMIT = 1024 * 1024


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"提交内容过大（上限 {_size(limit)}）",
                    {"max_bytes": limit})


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


def check_declared_length(request: web.Request, limit: int) -> None:
    """Refuse at once when ``Content-Length`` already says the body is too large."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes."""
    check_declared_length(request, limit)
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(limit + 1 - total):
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (400 ``invalid_json`` otherwise)."""
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, RecursionError):      # JSONDecodeError, bad UTF-8, deep nesting
        raise ApiError(400, "invalid_json", "提交内容不是合法的 JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "提交内容必须是 JSON 对象")
    return data


def json_response(data: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers,
                        text=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                        content_type="application/json")
