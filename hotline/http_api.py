"""The service's HTTP application (aiohttp): the ops endpoints (health, readiness, metrics,
config reload), the seat endpoints that cross slices (a call summary becomes a channels phone
intake; a call's ASR transcript), and the wiring of telephony's seat routes
(:func:`telephony.http.add_seat_routes`).

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

from channels.http_responses import accepted_response
from channels.phone import PhoneIntake, PhoneIntakeError, parse_summary
from config.errors import ConfigError
from httpkit.auth import Staff, identify, require_office, require_seat
from httpkit.bodies import parse_json_object, read_body
from httpkit.errors import (
    CLIENT_EVENTS,
    ApiError,
    ClientEvents,
    api_error,
    error_middleware,
    server_header,
)
from httpkit.responses import json_response
from telephony.calls import CallTracker
from telephony.http import SeatApiDeps, add_seat_routes
from telephony.link import AmiLink, LinkState
from telephony.seat_actions import SeatActions
from telephony.seats import SeatBoard
from telephony.stats import QueueStats

MAX_BODY = 16 * 1024
# 5000 CJK characters escaped as \uXXXX are 30 KB: a call summary may exceed MAX_BODY.
SUMMARY_BODY_LIMIT = 64 * 1024


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


def _caller(request: web.Request) -> Staff:
    """The admin or an agent (unit tokens have no access here)."""
    deps = request.app[DEPS]
    return identify(request, deps.admin_token(), {}, deps.agent_tokens())


def _require_seat(request: web.Request) -> str:
    return require_seat(_caller(request), request.match_info["seat_id"])


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
    require_office(_caller(request))
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
    add_seat_routes(app, SeatApiDeps(
        board=deps.board, tracker=deps.tracker, stats=deps.stats,
        seat_actions=deps.seat_actions, queues=deps.queues, admin_token=deps.admin_token,
        agent_tokens=deps.agent_tokens, clock=deps.clock))
    app.router.add_post("/api/seats/{seat_id}/intake", seat_intake)
    app.router.add_get("/api/seats/{seat_id}/calls/{call_id}/transcript", call_transcript)
    app.router.add_post("/api/admin/reload", reload)
    return app
