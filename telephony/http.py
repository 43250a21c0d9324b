"""Telephony over HTTP: the seat board, the queue figures and the agent's seat actions.

    GET  /api/stats                         live and today's figures per queue (any staff)
    GET  /api/seats                         the seats (an agent: only their own)
    POST /api/seats/{seat_id}/pause         {"reason": "午休"}
    POST /api/seats/{seat_id}/unpause
    POST /api/seats/{seat_id}/transfer      {"department": "8001", "mode": "blind"|"attended"}
    POST /api/seats/{seat_id}/three-way     {"department": "8001"}
    POST /api/seats/{seat_id}/hangup

Authentication (``Authorization: Bearer <token>``): the admin token, or an agent's token, who
may act only on their own seat (:func:`httpkit.auth.require_seat`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from config.textcheck import has_control
from httpkit.auth import Staff, identify, require_seat
from httpkit.bodies import parse_json_object, read_body
from httpkit.errors import ApiError, api_error, error_for
from httpkit.responses import json_response
from telephony.calls import CallTracker
from telephony.errors import AmiActionFailed, AmiActionLost, AmiNotConnected, AmiTimeout
from telephony.model import SeatSnapshot
from telephony.seat_actions import SeatActionError, SeatActions
from telephony.seats import SeatBoard
from telephony.stats import QueueStats

ACTION_BODY_LIMIT = 16 * 1024


@dataclass(frozen=True)
class SeatApiDeps:
    """What the seat handlers need, handed in by the composition root."""

    board: SeatBoard
    tracker: CallTracker
    stats: QueueStats
    seat_actions: Callable[[], SeatActions]
    queues: Callable[[], tuple[str, ...]]
    admin_token: Callable[[], str | None]
    agent_tokens: Callable[[], dict[str, str]]
    clock: Callable[[], datetime]


SEAT_API = web.AppKey("seat_api", SeatApiDeps)


def _caller(request: web.Request) -> Staff:
    """The admin or an agent (unit tokens have no access to seats)."""
    deps = request.app[SEAT_API]
    return identify(request, deps.admin_token(), {}, deps.agent_tokens())


async def _body(request: web.Request, *required: str) -> dict[str, str]:
    """The action's JSON object (an empty body is ``{}``) through the one body reader; its
    ``required`` fields non-empty text free of unsafe characters (they would be echoed in the
    error naming an unknown reason or department). Other fields are ignored."""
    raw = await read_body(request, ACTION_BODY_LIMIT)
    data = parse_json_object(raw) if raw.strip() else {}
    missing = [k for k in required if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise ApiError(422, "invalid_field", f"缺少或无效的字段：{', '.join(missing)}",
                       {"fields": missing})
    unsafe = [k for k in (*required, "mode") if isinstance(data.get(k), str)
              and has_control(data[k])]
    if unsafe:
        raise ApiError(422, "invalid_field", f"字段含有控制字符：{', '.join(unsafe)}",
                       {"fields": unsafe})
    return {k: v for k, v in data.items() if isinstance(v, str)}


def seat_json(seat: SeatSnapshot) -> dict[str, Any]:
    """One seat as the API shows it."""
    return {"seat_id": seat.seat_id, "name": seat.name, "state": seat.state.value,
            "since": seat.since.isoformat(), "pause_reason": seat.pause_reason,
            "queues": list(seat.queues), "call_id": seat.call_id}


async def stats(request: web.Request) -> web.Response:
    """Live and today's figures per queue, plus today's 15-minute intervals."""
    _caller(request)
    deps = request.app[SEAT_API]
    now = deps.clock()
    day = deps.stats.local_day(now)
    out = []
    for queue in deps.queues():
        out.append({
            "queue": queue,
            "waiting": len(deps.tracker.waiting(queue)),
            "longest_wait_seconds": round(deps.tracker.longest_wait(queue, now), 1),
            "today": deps.stats.day(queue, day).figures(),
            "intervals": [{"start": start.isoformat(), **counts.figures()}
                          for start, counts in deps.stats.intervals(queue, day)],
        })
    seats = {state.value: n for state, n in deps.board.counts().items()}
    return json_response({"at": now.isoformat(), "day": day.isoformat(),
                          "service_level_seconds": deps.stats.service_level,
                          "seats": seats, "queues": out})


async def seats(request: web.Request) -> web.Response:
    """The seat board: all seats for the admin, their own for an agent."""
    who = _caller(request)
    board = request.app[SEAT_API].board
    rows = [seat_json(s) for s in board.snapshot()
            if who.is_office or (who.role == "agent" and s.seat_id == who.name)]
    return json_response({"seats": rows})


def _seat_action(run: Callable[[SeatActions, str, dict[str, str]], Awaitable[Any]],
                 *required: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        seat_id = require_seat(_caller(request), request.match_info["seat_id"])
        body = await _body(request, *required)
        try:
            result = await run(request.app[SEAT_API].seat_actions(), seat_id, body)
        except SeatActionError as exc:
            raise api_error(exc) from None
        except AmiNotConnected:
            raise error_for("ami_not_ready", "与交换机的连接未就绪，请稍后重试") from None
        except AmiTimeout:
            raise error_for("ami_timeout", "交换机未在规定时间内响应") from None
        except AmiActionLost:
            raise error_for("ami_action_lost", "连接中断，操作可能未执行，请核实后重试") from None
        except AmiActionFailed as exc:
            raise error_for("ami_action_failed", "交换机拒绝了该操作",
                            {"asterisk": exc.message}) from None
        return json_response({"ok": True, "seat_id": seat_id, "result": result})
    return handler


async def _pause(desk: SeatActions, seat: str, body: dict[str, str]) -> None:
    await desk.pause(seat, body["reason"])


async def _unpause(desk: SeatActions, seat: str, body: dict[str, str]) -> None:
    await desk.unpause(seat)


async def _transfer(desk: SeatActions, seat: str, body: dict[str, str]) -> str:
    mode = body.get("mode", "blind")
    if mode == "attended":
        call = await desk.attended_transfer(seat, body["department"])
    elif mode == "blind":
        call = await desk.blind_transfer(seat, body["department"])
    else:
        raise ApiError(422, "invalid_field", "mode 只能是 blind 或 attended", {"fields": ["mode"]})
    return call.call_id


async def _three_way(desk: SeatActions, seat: str, body: dict[str, str]) -> str:
    return await desk.three_way(seat, body["department"])


async def _hangup(desk: SeatActions, seat: str, body: dict[str, str]) -> str:
    return (await desk.hangup(seat)).call_id


def add_seat_routes(app: web.Application, deps: SeatApiDeps) -> None:
    """Register the seat board, the queue figures and the seat actions on ``app``."""
    app[SEAT_API] = deps
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/seats", seats)
    app.router.add_post("/api/seats/{seat_id}/pause", _seat_action(_pause, "reason"))
    app.router.add_post("/api/seats/{seat_id}/unpause", _seat_action(_unpause))
    app.router.add_post("/api/seats/{seat_id}/transfer", _seat_action(_transfer, "department"))
    app.router.add_post("/api/seats/{seat_id}/three-way",
                        _seat_action(_three_way, "department"))
    app.router.add_post("/api/seats/{seat_id}/hangup", _seat_action(_hangup))
