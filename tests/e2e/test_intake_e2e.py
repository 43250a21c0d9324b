"""Every channel into one stream, through the whole running service (composition root, real
Redis, the PBX simulator for the phone): a web form, a signed app call and an agent's call
summary each become one intake in the Redis stream; the citizen can ask the status; the
OpenAPI document and the intake metrics are served."""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis

from channels.durable import NO_METADATA_LOOKUP
from channels.intake import Intake
from channels.signing import signed_headers
from telephony.simulator.server import PbxSimulator
from tests.e2e.conftest import AGENT_1001, RunningService, eventually, wait_ready

SECRET = "hotline-demo-secret"
QUEUES = ("12345", "enterprise")
APP_ID = "demo-app"
APP_KEY = "demo-app-signing-key-0001"        # config/demo/channels.yaml


async def stream_intakes(svc: RunningService) -> list[Intake]:
    keys = svc.hot.gateway.stream.keys
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", **NO_METADATA_LOOKUP)
    try:
        entries = await client.xrange(keys.stream)
    finally:
        await client.aclose()
    return [Intake.from_json(fields[b"intake"]) for _, fields in entries]


async def test_web_app_and_phone_intakes_reach_one_stream(service_factory) -> None:  # type: ignore[no-untyped-def]
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=11) as sim:
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            # Web form, as the city website posts it (no token: citizens are anonymous).
            form = {"submission_id": "web-8841", "name": "李女士", "phone": "13912345678",
                    "title": "小区噪音扰民", "content": "幸福小区 3 栋旁工地每晚 23 点后仍在施工。",
                    "district": "西湖区", "street": "文新街道"}
            status, web = await svc.post("/api/intake/web", form, token=None)
            assert status == 201, web
            again_status, again = await svc.post("/api/intake/web", form, token=None)
            assert (again_status, again["acceptance_no"]) == (200, web["acceptance_no"])

            # Mobile app, signed with its key.
            body = json.dumps({"request_id": "req-00000001", "app_user_id": "u-42",
                               "content": "路灯不亮已经一周了", "phone": "13700001111"},
                              ensure_ascii=False).encode()
            headers = signed_headers(APP_ID, APP_KEY, "POST", "/api/app/v1/intakes", body,
                                     timestamp=int(time.time()))
            headers["Content-Type"] = "application/json"
            async with svc.http.post(svc.base + "/api/app/v1/intakes", data=body,
                                     headers=headers) as resp:
                assert resp.status == 201, await resp.text()
                app = await resp.json()
            # The same signed request again: the nonce is refused (replay).
            async with svc.http.post(svc.base + "/api/app/v1/intakes", data=body,
                                     headers=headers) as resp:
                assert resp.status == 401 and (await resp.json())["error"] == "replayed_nonce"

            # Phone: a caller reaches seat 1001's queue; the agent writes the summary.
            sim.add_caller("13800138000", talk=600)
            await eventually(lambda: any(r.answered_at for r in svc.hot.tracker.active()),
                             what="call answered")
            call = next(r for r in svc.hot.tracker.active() if r.answered_at)
            agent = call.seat
            tokens = {"1001": AGENT_1001}
            summary = {"title": "咨询公积金提取", "content": "来电咨询租房提取公积金需要哪些材料。"}
            if agent in tokens:
                status, phone = await svc.post(f"/api/seats/{agent}/intake", summary,
                                               token=tokens[agent])
            else:                             # answered by a seat we hold no token for
                status, phone = await svc.post(f"/api/seats/{agent}/intake", summary)
            assert status == 201, phone
            # Another agent cannot summarise a call that is not theirs.
            if agent != "1001":
                status, body_ = await svc.post("/api/seats/1001/intake",
                                               {**summary, "call_id": call.call_id},
                                               token=AGENT_1001)
                assert status in (403, 404) and body_["error"] in ("not_your_call", "no_call")

            intakes = await stream_intakes(svc)
            by_channel = {i.channel: i for i in intakes}
            assert len(intakes) == 3 and set(by_channel) == {"web", "app", "phone"}
            assert by_channel["web"].acceptance_no == web["acceptance_no"]
            assert by_channel["web"].location.district == "西湖区"
            assert by_channel["app"].acceptance_no == app["acceptance_no"]
            assert by_channel["phone"].contact.phone == "13800138000"
            assert by_channel["phone"].call is not None
            assert by_channel["phone"].call.call_id == call.linkedid

            # The citizen asks the status with the acceptance number and their phone.
            status, answer = await svc.post("/api/intake/status",
                                            {"acceptance_no": web["acceptance_no"],
                                             "phone": "13912345678"}, token=None)
            # 已受理 whether or not the router has made the order yet (the office dispatches).
            assert status == 200 and answer["status"] == "accepted", answer
            status, answer = await svc.post("/api/intake/status",
                                            {"acceptance_no": web["acceptance_no"],
                                             "phone": "13900000000"}, token=None)
            assert status == 404 and answer["error"] == "not_found"

            # The router consumed the stream: one work order per intake, in the database.
            tickets = svc.hot.tickets
            assert tickets is not None
            for item in intakes:
                ticket = await eventually(lambda i=item: tickets.by_intake(i.intake_id),
                                          what=f"ticket for {item.channel}")
                assert ticket.acceptance_no == item.acceptance_no
                assert ticket.explanation["routing"]["rule"]
            status, answer = await svc.post("/api/intake/status",
                                            {"acceptance_no": web["acceptance_no"],
                                             "phone": "13912345678"}, token=None)
            assert answer["status"] == "accepted"

            status, doc = await svc.get("/openapi.json", token=None)
            assert status == 200 and "/api/intake/web" in doc["paths"]
            status, metrics = await svc.get("/metrics", token=None)
            assert 'hotline_intake_total{what="to_redis"} 3.0' in metrics
            assert "hotline_intake_redis_up 1.0" in metrics
