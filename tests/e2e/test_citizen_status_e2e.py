"""The citizen's status follows the work order, through the running service (composition root,
real Redis, SQLite and PostgreSQL): a web form and a signed app call become orders, the office
and the units move them through every step of the lifecycle over the ticket API, and after
each step both citizens' status queries (``POST /api/intake/status``, the signed
``GET /api/app/v1/intakes/{no}``) answer the order's status, in their usual shape and with no
unit's notes. An intake no order exists for yet still answers 已受理."""

from __future__ import annotations

import json
import time
from typing import Any

from channels.signing import signed_headers
from telephony.simulator.server import PbxSimulator
from tests.e2e.conftest import ADMIN, URBAN, WATER, RunningService, eventually
from tests.hotline.conftest import (  # noqa: F401 (fixtures)
    database_factory,
    pg_database_factory,
    sqlite_database_factory,
)

SECRET = "hotline-demo-secret"
QUEUES = ("12345", "enterprise")
APP_ID = "demo-app"
APP_KEY = "demo-app-signing-key-0001"        # config/demo/channels.yaml
PHONE = "13912345678"
APP_USER = "u-77"
OUTAGE = "幸福小区3栋从昨晚开始停水，到现在还没来水。"
UNIT_NOTE = "内部：阀门井7号更换，费用走维修基金"     # a unit's handling note: never shown
WEB_KEYS = {"acceptance_no", "status", "status_text", "channel", "received_at"}


async def submit_web(svc: RunningService, submission_id: str) -> str:
    status, body = await svc.post("/api/intake/web", {
        "submission_id": submission_id, "phone": PHONE, "title": "停水", "content": OUTAGE},
        token=None)
    assert status == 201, body
    return str(body["acceptance_no"])


async def submit_app(svc: RunningService, request_id: str) -> str:
    body = json.dumps({"request_id": request_id, "app_user_id": APP_USER, "title": "停水",
                       "content": OUTAGE, "phone": "13700001111"},
                      ensure_ascii=False).encode()
    headers = signed_headers(APP_ID, APP_KEY, "POST", "/api/app/v1/intakes", body,
                             timestamp=int(time.time()))
    headers["Content-Type"] = "application/json"
    async with svc.http.post(svc.base + "/api/app/v1/intakes", data=body,
                             headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["acceptance_no"])


async def web_status(svc: RunningService, acceptance_no: str) -> dict[str, Any]:
    async with svc.http.post(svc.base + "/api/intake/status",
                             json={"acceptance_no": acceptance_no, "phone": PHONE}) as resp:
        raw = await resp.text()
        assert resp.status == 200, raw
        assert resp.headers["Cache-Control"] == "no-store"
    assert UNIT_NOTE not in raw
    body: dict[str, Any] = json.loads(raw)
    assert set(body) == WEB_KEYS and body["acceptance_no"] == acceptance_no
    assert body["channel"] == "web"
    return body


async def app_status(svc: RunningService, acceptance_no: str) -> dict[str, Any]:
    target = f"/api/app/v1/intakes/{acceptance_no}?app_user_id={APP_USER}"
    headers = signed_headers(APP_ID, APP_KEY, "GET", target, b"", timestamp=int(time.time()))
    async with svc.http.get(svc.base + target, headers=headers) as resp:
        raw = await resp.text()
        assert resp.status == 200, raw
    assert UNIT_NOTE not in raw
    body: dict[str, Any] = json.loads(raw)
    assert set(body) == WEB_KEYS | {"thread_of"} and body["acceptance_no"] == acceptance_no
    assert body["channel"] == "app"
    return body


async def seen(svc: RunningService, web_no: str, app_no: str) -> list[tuple[str, str]]:
    """What the two citizens see: ``(status, status_text)`` of the web and the app intake."""
    web, app = await web_status(svc, web_no), await app_status(svc, app_no)
    return [(web["status"], web["status_text"]), (app["status"], app["status_text"])]


async def act(svc: RunningService, number: str, token: str, action: str,
              **data: Any) -> None:
    status, body = await svc.post(f"/api/tickets/{number}/actions", {"action": action, **data},
                                  token=token)
    assert status == 200, (action, body)


# (who, action, data, what the citizen then sees): the main line, a return and re-dispatch to
# another unit, an unsatisfied callback and its re-handling (重办), then the close.
LIFECYCLE: list[tuple[str, str, dict[str, Any], tuple[str, str]]] = [
    (ADMIN, "review", {}, ("accepted", "已受理")),
    (ADMIN, "dispatch", {}, ("dispatched", "已派单至承办单位")),
    (WATER, "sign", {}, ("signed", "承办单位已签收")),
    (WATER, "return", {"note": UNIT_NOTE}, ("redispatching", "重新派单中")),
    (ADMIN, "dispatch", {"unit_id": "city.urban"}, ("dispatched", "已派单至承办单位")),
    (URBAN, "sign", {"note": UNIT_NOTE}, ("signed", "承办单位已签收")),
    (URBAN, "handle", {"note": UNIT_NOTE}, ("handling", "办理中")),
    (URBAN, "reply", {"note": UNIT_NOTE}, ("replied", "已答复")),
    (ADMIN, "survey", {"survey_satisfied": False, "survey_note": UNIT_NOTE},
     ("surveyed", "已回访")),
    (ADMIN, "reopen", {}, ("handling", "办理中")),
    (URBAN, "reply", {"note": UNIT_NOTE}, ("replied", "已答复")),
    (ADMIN, "survey", {"survey_satisfied": True}, ("surveyed", "已回访")),
    (ADMIN, "archive", {}, ("archived", "已办结")),
]


async def test_each_step_of_the_order_reaches_the_citizen_on_web_and_app(  # type: ignore[no-untyped-def]
        service_factory, database_factory) -> None:
    url = await database_factory()
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=21) as sim:
        async with service_factory(
                sim.port, extra_env={"HOTLINE_SERVICE__DATABASE_URL": url}) as svc:
            web_no, app_no = await submit_web(svc, "web-status-1"), await submit_app(
                svc, "req-status-0001")
            tickets = svc.hot.tickets
            assert tickets is not None

            async def routed() -> list[str] | None:
                _, body = await svc.get("/api/tickets", token=WATER)
                found = {t["acceptance_no"]: t["number"] for t in body.get("tickets", [])}
                return [found[web_no], found[app_no]] if {web_no, app_no} <= set(found) \
                    else None
            numbers = await eventually(routed, what="both orders reach the water company")
            # Routed, not yet dispatched by the office: the order is 受理 and so is the view.
            assert await seen(svc, web_no, app_no) == [("accepted", "已受理")] * 2

            for who, action, data, expected in LIFECYCLE:
                for number in numbers:
                    await act(svc, number, who, action, **data)
                assert await seen(svc, web_no, app_no) == [expected] * 2, action


async def test_an_intake_with_no_order_yet_answers_accepted(service_factory) -> None:  # type: ignore[no-untyped-def]
    """Routing off: the intakes wait in the stream, no order exists; the status hash answers."""
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=22) as sim:
        async with service_factory(
                sim.port, extra_env={"HOTLINE_ROUTING__ENABLED": "false"}) as svc:
            web_no, app_no = await submit_web(svc, "web-status-2"), await submit_app(
                svc, "req-status-0002")
            assert await seen(svc, web_no, app_no) == [("accepted", "已受理")] * 2
            tickets = svc.hot.tickets
            assert tickets is not None and await tickets.listing() == []
