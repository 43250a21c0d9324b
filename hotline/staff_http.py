"""What the staff APIs (tickets, knowledge base) share: bearer tokens of the office, the
units and the agents, and uncached JSON answers."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hotline.http_errors import ApiError, json_bytes


@dataclass(frozen=True)
class Staff:
    """Who is calling: ``office`` (the admin token), ``unit`` or ``agent`` (named)."""

    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def identify(request: web.Request, admin: str | None, units: Mapping[str, str],
             agents: Mapping[str, str] | None = None) -> Staff:
    """The caller of ``request`` by its ``Authorization: Bearer`` token (compared in constant
    time); 401 ``unauthorized`` when there is none or it is nobody's. ``agents`` only where
    seats are let in."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "需要登录：请提供有效的访问令牌")
    given = token.encode()
    if admin and hmac.compare_digest(given, admin.encode()):
        return Staff("office", "admin")
    for role, tokens in (("unit", units), ("agent", agents or {})):
        for name, expected in tokens.items():
            if hmac.compare_digest(given, expected.encode()):
                return Staff(role, name)
    raise ApiError(401, "unauthorized", "访问令牌无效，或无权访问")


def no_store_json(data: Any, status: int = 200) -> web.Response:
    """A JSON answer that proxies and browsers must not cache (it names citizens)."""
    return web.Response(status=status, body=json_bytes(data), content_type="application/json",
                        charset="utf-8", headers={"Cache-Control": "no-store"})
