"""Who is calling, by the ``Authorization: Bearer`` token: the one bearer parser
(:func:`bearer_token`), the one principal type (:class:`Staff`) and the one identification
(:func:`identify`: tokens of the office, the units and the agents), with the two checks the
seat and admin endpoints make (:func:`require_office`, :func:`require_seat`)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from httpkit.errors import ApiError


@dataclass(frozen=True)
class Staff:
    """Who is calling: ``office`` (the admin token), ``unit`` or ``agent`` (named; an agent's
    name is their seat id)."""

    role: str
    name: str

    @property
    def is_office(self) -> bool:
        """Is this the admin (who may do everything)?"""
        return self.role == "office"

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


def require_office(staff: Staff) -> Staff:
    """``staff`` if it is the office; 403 ``forbidden`` for anyone else."""
    if not staff.is_office:
        raise ApiError(403, "forbidden", "仅管理员可执行此操作")
    return staff


def require_seat(staff: Staff, seat_id: str) -> str:
    """``seat_id`` if ``staff`` may act on that seat (the office, or the agent of that seat);
    403 ``forbidden`` for anyone else."""
    if not staff.is_office and not (staff.role == "agent" and staff.name == seat_id):
        raise ApiError(403, "forbidden", "坐席只能操作自己的坐席")
    return seat_id
