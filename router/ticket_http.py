"""Work orders over HTTP, for the hotline office and the responsible units.

Authentication (``Authorization: Bearer <token>``): the admin token acts as the office
(``office:admin``); a unit token (``routing.unit_tokens`` / ``HOTLINE_UNIT_TOKENS``) acts as
that unit, which sees and changes **only its own orders** (another unit's order is "not found",
so numbers cannot be probed). Seat agents have no access here.

    GET  /api/tickets?status=&unit=&limit=&before=&overdue=&manual=
                                                newest first (a unit: its own only); a full
                                                page carries "next": pass it as ?before=
    GET  /api/tickets/{number}                  the order and its audit trail
    POST /api/tickets/{number}/actions          {"action": "sign", "note": "...", ...}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from channels.intake import utc_now
from config.textcheck import has_control
from httpkit.auth import identify
from httpkit.bodies import parse_json_object, read_body
from httpkit.errors import ApiError, api_error, error_for
from httpkit.responses import NO_STORE, json_response
from router.ticket_store import InvalidTicketChange, TicketStore
from router.tickets import (
    Actor,
    PermissionDenied,
    Ticket,
    TicketAction,
    TicketError,
    TicketNotFound,
    TicketStatus,
)

MAX_BODY = 16 * 1024
_NUMBER = re.compile(r"[A-Z]{1,8}\d{8,20}")
# 12345 deadlines are days to weeks away (签收 hours, 办理 5–15 working days, an extension as
# much again); a deadline more than a year ahead is a typo (2062 for 2026), not a decision.
MAX_DEADLINE_AHEAD = timedelta(days=366)


def _plain_text(value: str | None, key: str) -> str | None:
    """``value`` unless it holds unsafe characters (422 naming ``key``)."""
    if value is not None and has_control(value):
        raise ApiError(422, "invalid_field", f"{key} 含有控制字符", {"fields": [key]})
    return value


def _number(request: web.Request) -> str:
    number = request.match_info["number"]
    if not _NUMBER.fullmatch(number):
        raise ApiError(404, "ticket_not_found", "工单不存在")
    return number


@dataclass(frozen=True)
class TicketApiDeps:
    """Handed in by the composition root; getters so a config reload changes tokens."""

    store: Callable[[], TicketStore | None]
    admin_token: Callable[[], str | None]
    unit_tokens: Callable[[], dict[str, str]]
    # The unit ids of units.yaml: an order dispatched elsewhere would belong to no one.
    known_units: Callable[[], set[str]]
    clock: Callable[[], datetime] = utc_now


TICKET_API = web.AppKey("ticket_api", TicketApiDeps)


def _who(request: web.Request) -> Actor:
    deps = request.app[TICKET_API]
    who = identify(request, deps.admin_token(), deps.unit_tokens())
    return Actor.parse(str(who))


def _store(request: web.Request) -> TicketStore:
    store = request.app[TICKET_API].store()
    if store is None:
        raise ApiError(503, "tickets_unavailable", "工单库未启用")
    return store


def _unit_of(actor: Actor) -> str | None:
    return actor.name if actor.role == "unit" else None


def _visible(actor: Actor, ticket: Ticket) -> bool:
    unit = _unit_of(actor)
    return unit is None or ticket.unit_id == unit


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """A ticket as the API shows it (the citizen's phone included: the unit calls back)."""
    return ticket.model_dump(mode="json")


async def list_tickets(request: web.Request) -> web.Response:
    actor = _who(request)
    query = request.query
    try:
        status = TicketStatus(query["status"]) if query.get("status") else None
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise ApiError(422, "invalid_field", "status 或 limit 无效",
                       {"fields": ["status", "limit"]}) from None
    if not 1 <= limit <= 500:
        raise ApiError(422, "invalid_field", "limit 须在 1 到 500 之间", {"fields": ["limit"]})
    flags = {}
    for name in ("overdue", "manual"):
        value = query.get(name, "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise ApiError(422, "invalid_field", f"{name} 须为 true 或 false", {"fields": [name]})
        flags[name] = value in ("true", "1")
    before = query.get("before") or None
    if before is not None and not _NUMBER.fullmatch(before):
        raise ApiError(422, "invalid_field", "before 须为工单编号", {"fields": ["before"]})
    own = _unit_of(actor)
    unit = own if own is not None else _plain_text(query.get("unit") or None, "unit")
    if own is not None and flags["manual"]:
        raise ApiError(403, "forbidden", "待人工派单的工单仅热线办公室可见")
    tickets = await _store(request).listing(
        unit_id=unit, status=status, limit=limit, before=before,
        overdue_at=request.app[TICKET_API].clock() if flags["overdue"] else None,
        manual=flags["manual"])
    page: dict[str, Any] = {"tickets": [ticket_json(t) for t in tickets]}
    if len(tickets) == limit:
        page["next"] = tickets[-1].number      # ?before=<next> gives the following page
    return json_response(page, headers=NO_STORE)


async def get_ticket(request: web.Request) -> web.Response:
    actor = _who(request)
    store = _store(request)
    number = _number(request)
    try:
        ticket = await store.get(number)
    except TicketNotFound:
        ticket = None
    if ticket is None or not _visible(actor, ticket):
        raise ApiError(404, "ticket_not_found", "工单不存在")
    events = await store.events(number)
    return json_response({"ticket": ticket_json(ticket),
                          "events": [e.model_dump(mode="json") for e in events]}, headers=NO_STORE)


async def _owns(store: TicketStore, actor: Actor, number: str) -> bool:
    """May ``actor`` know that order ``number`` exists (the office, or its own unit)?"""
    unit = _unit_of(actor)
    if unit is None:
        return True
    try:
        return (await store.get(number)).unit_id == unit
    except TicketNotFound:
        return False


def _optional_time(body: dict[str, Any], key: str, now: datetime) -> datetime | None:
    """A new deadline: ISO 8601 with a time zone, after ``now`` and at most
    :data:`MAX_DEADLINE_AHEAD` later (422 naming ``key`` otherwise)."""
    value = body.get(key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(422, "invalid_field", f"{key} 须为带时区的 ISO 时间",
                       {"fields": [key]})
    try:
        # 9999-12-31T23:00-05:00 is a valid ISO time whose UTC is past year 9999: the
        # database driver's conversion overflowed (a 500) before this check.
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = None
    if moment is None or not now < moment <= now + MAX_DEADLINE_AHEAD:
        raise ApiError(422, "invalid_field",
                       f"{key} 须晚于当前时间，且不超过 {MAX_DEADLINE_AHEAD.days} 天",
                       {"fields": [key]})
    return moment


def _unit_id(request: web.Request, value: Any) -> str | None:
    """A unit to dispatch to: one of units.yaml (422 otherwise)."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in request.app[TICKET_API].known_units():
        raise ApiError(422, "unknown_unit", "unit_id 须为 units.yaml 中的单位",
                       {"fields": ["unit_id"]})
    return value


async def act(request: web.Request) -> web.Response:
    actor = _who(request)
    store = _store(request)
    number = _number(request)
    body = parse_json_object(await read_body(request, MAX_BODY))
    try:
        action = TicketAction(str(body.get("action")))
    except ValueError:
        raise ApiError(422, "invalid_field", "action 无效",
                       {"fields": ["action"],
                        "allowed": [a.value for a in TicketAction]}) from None
    note = body.get("note", "")
    satisfied = body.get("survey_satisfied")
    if not isinstance(note, str) or (satisfied is not None and not isinstance(satisfied, bool)):
        raise ApiError(422, "invalid_field", "note 须为文字，survey_satisfied 须为 true/false",
                       {"fields": ["note", "survey_satisfied"]})
    survey_note = body.get("survey_note")
    if survey_note is not None and not isinstance(survey_note, str):
        raise ApiError(422, "invalid_field", "survey_note 须为文字", {"fields": ["survey_note"]})
    for key, value in (("note", note), ("survey_note", survey_note)):
        _plain_text(value, key)
    unit_id = _unit_id(request, body.get("unit_id"))
    now = request.app[TICKET_API].clock()
    try:
        ticket = await store.transition(
            number, action, actor, note[:2000], unit_id=unit_id,
            sign_by=_optional_time(body, "sign_by", now),
            handle_by=_optional_time(body, "handle_by", now),
            survey_satisfied=satisfied, survey_note=None if survey_note is None else survey_note[:2000])
    except TicketNotFound:
        raise error_for("ticket_not_found", "工单不存在") from None
    except PermissionDenied as exc:
        if not await _owns(store, actor, number):
            # A unit never learns whether another unit's order exists.
            raise error_for("ticket_not_found", "工单不存在") from None
        raise api_error(exc) from None
    except ValidationError as exc:
        raise error_for(InvalidTicketChange.code, str(exc)) from None
    except TicketError as exc:
        raise api_error(exc) from None
    return json_response({"ticket": ticket_json(ticket)}, headers=NO_STORE)


def add_ticket_routes(app: web.Application, deps: TicketApiDeps) -> None:
    """Register the ticket endpoints on ``app``."""
    app[TICKET_API] = deps
    app.router.add_get("/api/tickets", list_tickets)
    app.router.add_get("/api/tickets/{number}", get_ticket)
    app.router.add_post("/api/tickets/{number}/actions", act)
