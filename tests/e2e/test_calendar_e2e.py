"""Deadlines past the holiday years the service knows, through the running service: an order
counted into 2027 is provisional, the admin is told on /readyz and /metrics, and the reload
that enters 2027 in sla.yaml recounts the open order, on its audit trail.

The service's clock (``hotline.app.utc_now``, the seam every part of ``serve`` reads) runs
from Tuesday 2026-12-29 10:00 in Beijing, whatever day the test runs on."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import hotline.app
from telephony.simulator.server import PbxSimulator
from tests.e2e.conftest import DEMO_CONFIG, RunningService, eventually

SECRET = "hotline-demo-secret"
START = datetime(2026, 12, 29, 2, 0, tzinfo=UTC)


@pytest.fixture
def december(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's clock: START plus the time elapsed since the test began."""
    offset = START - datetime.now(UTC)
    monkeypatch.setattr(hotline.app, "utc_now", lambda: datetime.now(UTC) + offset)


async def the_order(svc: RunningService) -> dict[str, Any]:
    async def first() -> Any:
        _, body = await svc.get("/api/tickets")
        return body["tickets"][0] if body.get("tickets") else None
    ticket: dict[str, Any] = await eventually(first, what="the order is made")
    _, detail = await svc.get(f"/api/tickets/{ticket['number']}")
    return dict(detail)


def metric(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name)]


async def test_entering_2027_recounts_a_provisional_order(  # type: ignore[no-untyped-def]
        service_factory, tmp_path: Path, december: None) -> None:
    config = tmp_path / "config"
    await asyncio.to_thread(shutil.copytree, DEMO_CONFIG, config)
    async with PbxSimulator(secret=SECRET, queues=("12345", "enterprise"), time_scale=10,
                            seed=5) as sim:
        async with service_factory(sim.port, config_dir=config) as svc:
            status, _ = await svc.post("/api/intake/web", {
                "submission_id": "web-lamp-1", "phone": "13912345678", "title": "路灯不亮",
                "content": "小区门口路灯不亮，晚上很黑，请尽快维修。"}, token=None)
            assert status == 201
            before = await the_order(svc)
            order = before["ticket"]
            assert order["deadline_provisional"] is True
            assert "临时期限" in order["explanation"]["deadline"]
            old_handle_by = datetime.fromisoformat(order["handle_by"])
            assert old_handle_by > START + timedelta(days=3)       # runs into 2027

            status, ready = await eventually(
                lambda: _ready(svc), what="/readyz answers 200")
            [warning] = ready["warnings"]
            assert warning["code"] == "calendar_not_confirmed" and warning["years"] == [2027]
            _, text = await svc.get("/metrics", token=None)
            assert metric(text, "hotline_calendar_unconfirmed_years ") == \
                ["hotline_calendar_unconfirmed_years 1.0"]
            assert metric(text, "hotline_calendar_unconfirmed_year{") == \
                ['hotline_calendar_unconfirmed_year{year="2027"} 1.0']

            # The admin enters 2027 (a test arrangement: Jan 1 and Mon Jan 4 off) and reloads.
            sla_yaml = config / "sla.yaml"
            sla = (await asyncio.to_thread(sla_yaml.read_text, encoding="utf-8")).replace(
                "  years: {}", "  years:\n    2027:\n      holidays: [2027-01-01, 2027-01-04]")
            await asyncio.to_thread(sla_yaml.write_text, sla, encoding="utf-8")
            status, reloaded = await svc.post("/api/admin/reload")
            assert status == 200 and reloaded["deadlines_recounted"] == 1

            after = await the_order(svc)
            order = after["ticket"]
            assert order["deadline_provisional"] is False
            # One working day more: Jan 4 is off now.
            assert datetime.fromisoformat(order["handle_by"]) == old_handle_by + timedelta(days=1)
            last = after["events"][-1]
            assert last["action"] == "reschedule" and last["actor"] == "router"
            assert last["from_status"] == last["to_status"] == before["ticket"]["status"]
            assert "→" in last["note"]
            status, ready = await svc.get("/readyz", token=None)
            assert status == 200 and "warnings" not in ready
            _, text = await svc.get("/metrics", token=None)
            assert metric(text, "hotline_calendar_unconfirmed_years ") == \
                ["hotline_calendar_unconfirmed_years 0.0"]
            assert 'hotline_deadlines_recounted_total{what="changed"} 1.0' in text


async def _ready(svc: RunningService) -> tuple[int, Any] | None:
    status, body = await svc.get("/readyz", token=None)
    return (status, body) if status == 200 else None
