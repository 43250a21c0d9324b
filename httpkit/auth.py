"""Who is calling, by the ``Authorization: Bearer`` token: the one bearer parser
(:func:`bearer_token`) and the staff APIs' identification (:func:`identify`: tokens of the
office, the units and the agents)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from httpkit.errors import ApiError


@dataclass(frozen=True)
class Staff:
    """Who is calling: ``office`` (the admin token), ``unit`` or ``agent`` (named)."""

    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def bearer_token(request: web.Request) -> bytes:
    """The token of ``request``'s ``Authorization: Bearer`` header; 401 ``unauthorized`` when
    there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "需要登录：请提供有效的访问令牌")
    return token.encode()


def token_matches(given: bytes, expected: str | None) -> bool:
    """Is ``given`` the configured token ``expected`` (compared in constant time)? An unset or
    empty token matches nothing."""
    if not expected:
        return False
    return hmac.compare_digest(given, expected.encode())


def identify(request: web.Request, admin: str | None, units: Mapping[str, str],
             agents: Mapping[str, str] | None = None) -> Staff:
    """The caller of ``request`` by its bearer token (compared in constant time); 401
    ``unauthorized`` when there is none or it is nobody's. ``agents`` only where seats are
    let in."""
    given = bearer_token(request)
    if token_matches(given, admin):
        return Staff("office", "admin")
    for role, tokens in (("unit", units), ("agent", agents or {})):
        for name, expected in tokens.items():
            if hmac.compare_digest(given, expected.encode()):
                return Staff(role, name)
    raise ApiError(401, "unauthorized", "访问令牌无效，或无权访问")
