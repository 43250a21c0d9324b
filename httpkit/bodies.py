"""The one request body reader: each endpoint reads its body with its own size limit, and a
JSON body as one object with bounded depth.

The service's application sets a small ``client_max_size`` for the agent API; these handlers
never call ``request.read()`` / ``request.post()`` (which apply it) but read ``request.content``
themselves, up to the limit of each endpoint, so every refusal is the documented JSON error.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from httpkit.errors import ApiError

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


# No body any endpoint takes nests deeper than 3; 32 leaves room for clients that wrap. json
# itself stops only near the interpreter's recursion limit, with a RecursionError.
MAX_JSON_DEPTH = 32
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")       # NaN, Infinity: Python's extension, not RFC 8259


def _too_deep(data: Any) -> bool:
    """Does ``data`` nest deeper than :data:`MAX_JSON_DEPTH` (walked without recursion)?"""
    level: list[Any] = [data]
    for _ in range(MAX_JSON_DEPTH):
        level = [child for item in level if isinstance(item, dict | list)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 ``invalid_json`` for anything else: not JSON, not UTF-8,
    nested deeper than :data:`MAX_JSON_DEPTH`, an integer of more than 4,300 digits (Python's
    own limit, CVE-2020-10735: a ValueError, which the seat actions' reader let through as a
    500), ``NaN``/``Infinity``."""
    try:
        data = json.loads(raw, parse_constant=_no_constant) if raw else None
    except RecursionError:
        raise _invalid_json("JSON 嵌套层数过多", {"max_depth": MAX_JSON_DEPTH}) from None
    except ValueError:       # JSONDecodeError, bad UTF-8, over 4,300 digits, NaN
        raise _invalid_json("提交内容不是合法的 JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "提交内容必须是 JSON 对象")
    # Cheap bound first: fewer brackets than the limit cannot nest past it.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(data):
        raise _invalid_json("JSON 嵌套层数过多", {"max_depth": MAX_JSON_DEPTH})
    return data


def _invalid_json(message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(400, "invalid_json", message, details)

