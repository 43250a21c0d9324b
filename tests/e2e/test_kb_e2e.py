"""The knowledge base through the running service: the water company keeps its own article
current, another unit cannot see or touch it, an agent finds it, and a citizen's question
that arrives next gets it attached to the consultation ticket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.train import train
from telephony.simulator.server import PbxSimulator
from tests.e2e.conftest import ADMIN, AGENT_1001, URBAN, WATER, eventually

SECRET = "hotline-demo-secret"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "labelled_sample.csv"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The routing model, trained on the team's sample as `make demo` does."""
    out = tmp_path_factory.mktemp("model") / "router-model.joblib"
    train(SAMPLE, out)
    return str(out)
ARTICLE = {"title": "计划停水信息在哪里查询",
           "body": "水务集团在官网和公众号提前 24 小时公布计划停水的范围和时间。",
           "keywords": ["停水", "计划停水"]}


async def test_units_keep_their_articles_and_consultations_get_them(  # type: ignore[no-untyped-def]
        service_factory, model_path) -> None:
    env = {"HOTLINE_ROUTING__MODEL_PATH": model_path}
    async with PbxSimulator(secret=SECRET, queues=("12345", "enterprise"), time_scale=10, seed=7) as sim:
        async with service_factory(sim.port, extra_env=env) as svc:
            status, body = await svc.send("PUT", "/api/kb/articles/water-plan", ARTICLE, WATER)
            assert status == 201 and body["article"]["unit"] == "city.water"
            # Another unit: cannot overwrite it, cannot see it, cannot delete it.
            assert (await svc.send("PUT", "/api/kb/articles/water-plan", ARTICLE, URBAN))[0] == 404
            assert (await svc.get("/api/kb/articles", token=URBAN))[1]["articles"] == []
            assert (await svc.send("DELETE", "/api/kb/articles/water-plan", None, URBAN))[0] == 404
            status, body = await svc.send("PUT", "/api/kb/articles/x1", ARTICLE | {
                "unit": "city.urban"}, WATER)
            assert status == 403 and body["error"] == "forbidden"
            # Bad input: clear errors naming the field.
            status, body = await svc.send("PUT", "/api/kb/articles/x2", {"title": ""}, WATER)
            assert status == 422 and "title" in body["details"]["fields"]
            status, body = await svc.send("PUT", "/api/kb/articles/x3", ARTICLE, ADMIN)
            assert status == 422 and body["details"]["fields"] == ["unit"]
            # The office sees every article; an agent searches (seats cannot edit).
            _, listed = await svc.get("/api/kb/articles", token=ADMIN)
            assert [a["id"] for a in listed["articles"]] == ["water-plan"]
            status, found = await svc.get("/api/kb/search?q=请问计划停水在哪里能查到", AGENT_1001)
            assert status == 200 and found["hits"][0]["article"]["id"] == "water-plan"
            assert (await svc.send("PUT", "/api/kb/articles/y", ARTICLE, AGENT_1001))[0] == 401
            assert (await svc.get("/api/kb/search?q=", AGENT_1001))[0] == 422

            status, _ = await svc.post("/api/intake/web", {
                "submission_id": "web-kb-1", "phone": "13912345678", "title": "咨询计划停水",
                "content": "请问计划停水的通知在哪里可以查询到？"}, token=None)
            assert status == 201

            async def consultation() -> Any:
                _, page = await svc.get("/api/tickets", token=ADMIN)
                return page["tickets"][0] if page.get("tickets") else None
            ticket = await eventually(consultation, what="the consultation's ticket")
            assert ticket["type"] == "consultation"
            assert [a["id"] for a in ticket["explanation"]["kb"]][:1] == ["water-plan"]

            assert (await svc.send("DELETE", "/api/kb/articles/water-plan", None, WATER))[0] == 200
            _, found = await svc.get("/api/kb/search?q=计划停水", AGENT_1001)
            assert found["hits"] == []
