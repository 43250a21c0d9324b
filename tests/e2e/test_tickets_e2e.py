"""Work orders through the running service: a citizen's web form becomes a ticket routed to
the water company; the unit sees only its own orders and moves the order through its
lifecycle; the office surveys and archives; every step is in the audit trail."""

from __future__ import annotations

from typing import Any

from telephony.simulator.server import PbxSimulator
from tests.e2e.conftest import ADMIN, AGENT_1001, URBAN, WATER, RunningService, eventually
from tests.router.city import city  # noqa: F401 (fixture)

SECRET = "hotline-demo-secret"


async def act(svc: RunningService, number: str, token: str, action: str,
              **data: Any) -> tuple[int, Any]:
    return await svc.post(f"/api/tickets/{number}/actions", {"action": action, **data},
                          token=token)


async def test_a_unit_works_its_order_and_sees_no_other(service_factory) -> None:  # type: ignore[no-untyped-def]
    async with PbxSimulator(secret=SECRET, queues=("12345", "enterprise"), time_scale=10, seed=3) as sim:
        async with service_factory(sim.port) as svc:
            status, web = await svc.post("/api/intake/web", {
                "submission_id": "web-water-1", "phone": "13912345678", "title": "停水",
                "content": "幸福小区3栋从昨晚开始停水，到现在还没来水。"}, token=None)
            assert status == 201

            async def water_ticket() -> Any:
                _, body = await svc.get("/api/tickets", token=WATER)
                return body["tickets"][0] if body.get("tickets") else None
            ticket = await eventually(water_ticket, what="the order reaches the water company")
            number = ticket["number"]
            assert ticket["acceptance_no"] == web["acceptance_no"]
            assert ticket["unit_id"] == "city.water" and ticket["status"] == "accepted"

            # Another unit: the order does not exist for it; seats have no access at all.
            assert (await svc.get(f"/api/tickets/{number}", token=URBAN))[0] == 404
            assert (await act(svc, number, URBAN, "sign"))[0] == 404
            assert (await svc.get("/api/tickets", token=URBAN))[1]["tickets"] == []
            assert (await svc.get("/api/tickets", token=AGENT_1001))[0] == 401
            assert (await svc.get("/api/tickets", token=None))[0] == 401

            # The office reviews and dispatches; the unit signs, handles and replies.
            assert (await act(svc, number, ADMIN, "review"))[0] == 200
            assert (await act(svc, number, ADMIN, "dispatch"))[0] == 200
            status, body = await act(svc, number, WATER, "reply")       # not yet signed
            assert status == 409 and body["error"] == "illegal_transition" and body["message"]
            for step in ("sign", "handle"):
                assert (await act(svc, number, WATER, step))[0] == 200
            status, body = await act(svc, number, WATER, "reply", note="已抢修，恢复供水")
            assert status == 200 and body["ticket"]["status"] == "replied"
            # The unit cannot survey its own work; the office does.
            assert (await act(svc, number, WATER, "survey", survey_satisfied=True))[0] == 403
            assert (await act(svc, number, ADMIN, "survey", survey_satisfied=True))[0] == 200
            assert (await act(svc, number, ADMIN, "archive"))[0] == 200
            status, detail = await svc.get(f"/api/tickets/{number}", token=ADMIN)
            assert detail["ticket"]["status"] == "archived"
            actions = [e["action"] for e in detail["events"]]
            assert actions == ["accept", "review", "dispatch", "sign", "handle", "reply",
                               "survey", "archive"]
            # Bad input: a clear error, nothing changed.
            status, body = await act(svc, number, ADMIN, "teleport")
            assert status == 422 and "allowed" in body["details"]
            status, body = await svc.post(f"/api/tickets/{number}/actions", raw=b"{oops",
                                          token=ADMIN)
            assert status == 400 and body["error"] == "invalid_json"


async def test_tickets_reach_the_citys_own_system_through_the_outbox(  # type: ignore[no-untyped-def]
        service_factory, city) -> None:
    """routing.outbound on: the ticket made from a web form is POSTed to the city's system
    (a real local HTTP server) with its number as idempotency key, after one 503."""
    system, url = city
    system.script = [503]
    env = {"HOTLINE_ROUTING__OUTBOUND__ENABLED": "true", "HOTLINE_ROUTING__OUTBOUND__URL": url,
           "HOTLINE_ROUTING__OUTBOUND__BACKOFF_INITIAL": "0.05"}
    async with PbxSimulator(secret=SECRET, queues=("12345", "enterprise"), time_scale=10, seed=4) as sim:
        async with service_factory(sim.port, extra_env=env) as svc:
            status, _ = await svc.post("/api/intake/web", {
                "submission_id": "web-out-1", "phone": "13912345678", "title": "停水",
                "content": "幸福小区3栋从昨晚开始停水，到现在还没来水。"}, token=None)
            assert status == 201

            async def delivered() -> Any:
                return len(system.seen) >= 2 or None
            await eventually(delivered, what="the ticket reaches the city's system")
            _, body = await svc.get("/api/tickets", token=WATER)
            number = body["tickets"][0]["number"]
    assert [key for key, _, _ in system.seen] == [number, number]
    assert system.seen[-1][1]["unit_id"] == "city.water"


async def test_the_office_pages_through_orders_and_finds_overdue_and_manual_ones(  # type: ignore[no-untyped-def]
        service_factory) -> None:
    async with PbxSimulator(secret=SECRET, queues=("12345", "enterprise"), time_scale=10, seed=5) as sim:
        async with service_factory(sim.port) as svc:
            for n in range(5):
                status, _ = await svc.post("/api/intake/web", {
                    "submission_id": f"web-page-{n}", "phone": "13912345678", "title": "停水",
                    "content": f"幸福小区{n}栋从昨晚开始停水，到现在还没来水。"}, token=None)
                assert status == 201
            status, _ = await svc.post("/api/intake/web", {
                "submission_id": "web-vague", "phone": "13912345679",
                "content": "你好你好你好你好"}, token=None)
            assert status == 201

            async def all_routed() -> Any:
                _, body = await svc.get("/api/tickets?limit=100", token=ADMIN)
                return body["tickets"] if len(body.get("tickets", [])) == 6 else None
            every = await eventually(all_routed, what="six orders")

            seen: list[str] = []
            path = "/api/tickets?limit=4"
            while True:
                status, page = await svc.get(path, token=ADMIN)
                assert status == 200
                seen += [t["number"] for t in page["tickets"]]
                if "next" not in page:
                    break
                path = f"/api/tickets?limit=4&before={page['next']}"
            assert seen == [t["number"] for t in every]        # newest first, no gaps

            _, manual = await svc.get("/api/tickets?manual=true", token=ADMIN)
            assert [t["unit_id"] for t in manual["tickets"]] == [None]
            assert (await svc.get("/api/tickets?manual=true", token=WATER))[0] == 403
            # Nothing is overdue yet: deadlines are days away.
            _, overdue = await svc.get("/api/tickets?overdue=true", token=ADMIN)
            assert overdue["tickets"] == []
            for bad in ("overdue=maybe", "before=x;drop", "limit=0"):
                status, body = await svc.get(f"/api/tickets?{bad}", token=ADMIN)
                assert status == 422 and body["error"] == "invalid_field" and body["message"]


async def test_control_characters_get_a_clear_error_not_a_crash(  # type: ignore[no-untyped-def]
        service_factory) -> None:
    async with PbxSimulator(secret=SECRET, queues=("12345", "enterprise"), time_scale=10, seed=6) as sim:
        async with service_factory(sim.port) as svc:
            assert (await svc.get("/api/tickets/GD%00", token=ADMIN))[0] == 404
            status, body = await svc.get("/api/tickets?unit=city%00water", token=ADMIN)
            assert status == 422 and body["details"]["fields"] == ["unit"]
            status, body = await svc.post("/api/tickets/GD20261123000001/actions",
                                          {"action": "sign", "note": "好\u0000的"}, token=ADMIN)
            assert status == 422 and body["error"] == "invalid_field"
            assert (await svc.get("/healthz", token=None))[0] == 200
