"""The service's HTTP surface (aiohttp): health, readiness, metrics, stats, seats and the
agent/admin actions.

Authentication: ``Authorization: Bearer <token>``. Agent tokens are per seat (from config /
env); an agent may act only on their own seat. The admin token may do everything.
``/healthz``, ``/readyz`` and ``/metrics`` are open (no citizen data in them) for probes and
Prometheus; everything under ``/api`` needs a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from channels.answers import accepted_response
from channels.phone import PhoneIntake, PhoneIntakeError, parse_summary
from channels.textcheck import has_control
from config.errors import ConfigError
from httpkit.auth import bearer_token, token_matches
from httpkit.bodies import parse_json_object, read_body
from httpkit.errors import (
    CLIENT_EVENTS,
    ApiError,
    ClientEvents,
    api_error,
    error_for,
    error_middleware,
    server_header,
)
from httpkit.responses import json_response
from telephony.calls import CallTracker
from telephony.errors import AmiActionFailed, AmiActionLost, AmiNotConnected, AmiTimeout
from telephony.link import AmiLink, LinkState
from telephony.model import SeatSnapshot
from telephony.seat_actions import SeatActionError, SeatActions
from telephony.seats import SeatBoard
from telephony.stats import QueueStats

MAX_BODY = 16 * 1024
# 5000 CJK characters escaped as \uXXXX are 30 KB: a call summary may exceed MAX_BODY.
SUMMARY_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or the agent of one seat."""

    is_admin: bool
    seat_id: str | None


@dataclass(frozen=True)
class ApiDeps:
    """What the handlers need, handed in by the composition root."""

    board: SeatBoard
    tracker: CallTracker
    stats: QueueStats
    link: AmiLink
    seat_actions: Callable[[], SeatActions]
    registry: CollectorRegistry
    queues: Callable[[], tuple[str, ...]]
    admin_token: Callable[[], str | None]
    agent_tokens: Callable[[], dict[str, str]]
    reload_config: Callable[[], Awaitable[dict[str, Any]]]
    clock: Callable[[], datetime]
    phone_intake: PhoneIntake | None = None
    # The ASR's segments of a call by Linkedid (asr.sink.CallTranscripts.segments_of).
    transcript_of: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None
    # What the admin should act on while the service is ready (a missing holiday year ...).
    warnings: Callable[[], list[dict[str, Any]]] | None = None


DEPS = web.AppKey("deps", ApiDeps)


def authenticate(request: web.Request) -> Principal:
    deps = request.app[DEPS]
    given = bearer_token(request)
    if token_matches(given, deps.admin_token()):
        return Principal(True, None)
    for seat_id, seat_token in deps.agent_tokens().items():
        if token_matches(given, seat_token):
            return Principal(False, seat_id)
    raise ApiError(401, "unauthorized", "访问令牌无效")


def _require_admin(request: web.Request) -> Principal:
    who = authenticate(request)
    if not who.is_admin:
        raise ApiError(403, "forbidden", "仅管理员可执行此操作")
    return who


def _require_seat(request: web.Request) -> str:
    who = authenticate(request)
    seat_id = request.match_info["seat_id"]
    if not who.is_admin and who.seat_id != seat_id:
        raise ApiError(403, "forbidden", "坐席只能操作自己的坐席")
    return seat_id


async def _body(request: web.Request, *required: str) -> dict[str, str]:
    """The action's JSON object (an empty body is ``{}``) through the one body reader; its
    ``required`` fields non-empty text free of unsafe characters (they would be echoed in the
    error naming an unknown reason or department). Other fields are ignored."""
    raw = await read_body(request, MAX_BODY)
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
    return {"seat_id": seat.seat_id, "name": seat.name, "state": seat.state.value,
            "since": seat.since.isoformat(), "pause_reason": seat.pause_reason,
            "queues": list(seat.queues), "call_id": seat.call_id}


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    state = deps.link.state
    if state is LinkState.READY:
        warnings = deps.warnings() if deps.warnings is not None else []
        return json_response({"status": "ready", "ami": state.value,
                              **({"warnings": warnings} if warnings else {})})
    raise ApiError(503, "ami_not_ready", "与交换机（Asterisk AMI）的连接未就绪",
                   {"ami": state.value})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DEPS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def stats(request: web.Request) -> web.Response:
    """Live and today's figures per queue, plus today's 15-minute intervals."""
    authenticate(request)
    deps = request.app[DEPS]
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
    who = authenticate(request)
    board = request.app[DEPS].board
    rows = [seat_json(s) for s in board.snapshot() if who.is_admin or s.seat_id == who.seat_id]
    return json_response({"seats": rows})


def _seat_action(run: Callable[[SeatActions, str, dict[str, str]], Awaitable[Any]],
                 *required: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        seat_id = _require_seat(request)
        body = await _body(request, *required)
        try:
            result = await run(request.app[DEPS].seat_actions(), seat_id, body)
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


async def seat_intake(request: web.Request) -> web.Response:
    """The agent's summary of a call becomes a phone intake (201; 200 for a call already
    summarised: same acceptance number, text unchanged)."""
    seat_id = _require_seat(request)
    phone = request.app[DEPS].phone_intake
    if phone is None:
        raise ApiError(503, "intake_unavailable", "受理通道未启用")
    data = parse_json_object(await read_body(request, SUMMARY_BODY_LIMIT))
    try:
        call_id, summary = parse_summary(data)
        accepted = await phone.submit_summary(seat_id, call_id, summary)
    except PhoneIntakeError as exc:
        raise api_error(exc) from None
    return accepted_response(accepted)


async def call_transcript(request: web.Request) -> web.Response:
    """What the caller said on a call this seat answered (final segments with word timings;
    the live partials go to the screen-pop over Redis pub/sub). ``call_id`` may be the call id
    or the Linkedid; another seat's call is refused like in the summary."""
    seat_id = _require_seat(request)
    deps = request.app[DEPS]
    if deps.phone_intake is None or deps.transcript_of is None:
        raise ApiError(503, "asr_unavailable", "语音识别未启用")
    try:
        call = await deps.phone_intake.find_call(seat_id, request.match_info["call_id"])
    except PhoneIntakeError as exc:
        raise api_error(exc) from None
    if call.seat != seat_id:
        raise ApiError(403, "not_your_call", f"该通话不是坐席 {seat_id} 接听的",
                       {"call_id": call.call_id})
    segments = await deps.transcript_of(call.linkedid)
    return json_response({"call_id": call.linkedid, "segments": [
        {k: v for k, v in s.items() if k in ("purpose", "stream_id", "seq", "text", "start_s",
                                             "end_s", "words")} for s in segments]})


async def reload(request: web.Request) -> web.Response:
    """Re-read the config files; a broken edit is refused with every error, old config kept."""
    _require_admin(request)
    try:
        return json_response(await request.app[DEPS].reload_config())
    except ConfigError as exc:
        raise ApiError(422, "config_invalid", "配置有误，未重新加载，当前配置继续生效",
                       {"issues": [str(issue) for issue in exc.issues]}) from None


def build_app(deps: ApiDeps) -> web.Application:
    """The aiohttp application (no side effects until it is run)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app[DEPS] = deps
    events = ClientEvents()
    deps.registry.register(events)
    app[CLIENT_EVENTS] = events
    app.on_response_prepare.append(server_header)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/seats", seats)
    app.router.add_post("/api/seats/{seat_id}/pause", _seat_action(_pause, "reason"))
    app.router.add_post("/api/seats/{seat_id}/unpause", _seat_action(_unpause))
    app.router.add_post("/api/seats/{seat_id}/transfer", _seat_action(_transfer, "department"))
    app.router.add_post("/api/seats/{seat_id}/three-way",
                        _seat_action(_three_way, "department"))
    app.router.add_post("/api/seats/{seat_id}/hangup", _seat_action(_hangup))
    app.router.add_post("/api/seats/{seat_id}/intake", seat_intake)
    app.router.add_get("/api/seats/{seat_id}/calls/{call_id}/transcript", call_transcript)
    app.router.add_post("/api/admin/reload", reload)
    return app
