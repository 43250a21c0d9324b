"""The whole service against the PBX simulator over TCP: 100 seats, Poisson callers, HTTP,
metrics, persistence, AMI loss. (Asterisk cannot be installed here; the simulator speaks AMI
as the recorded Asterisk 22.5 sessions do.)"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import pytest

from telephony.model import CallOutcome, CallRecord, SeatState
from telephony.simulator.server import PbxSimulator
from telephony.simulator.traffic import TrafficConfig
from tests.e2e.conftest import (
    ADMIN,
    AGENT_1001,
    AGENT_1002,
    RunningService,
    eventually,
    wait_ready,
)

SECRET = "hotline-demo-secret"
QUEUES = ("12345", "enterprise")


async def has(svc: RunningService, outcome: str, *, at_least: int = 0,
              exactly: int | None = None) -> bool:
    n = (await outcomes(svc)).get(outcome, 0)
    return n == exactly if exactly is not None else n >= at_least


def _count_outcomes(db_path: object) -> dict[str, int]:
    with sqlite3.connect(str(db_path)) as db:
        return dict(db.execute("select coalesce(outcome, 'open'), count(*) from calls "
                               "group by 1").fetchall())


async def outcomes(svc: RunningService) -> dict[str, int]:
    """Read the database as an operator would, with its own connection (off the loop)."""
    return await asyncio.to_thread(_count_outcomes, svc.db_path)


async def test_hundred_seats_take_calls_and_everything_is_measured(service_factory) -> None:  # type: ignore[no-untyped-def]
    traffic = TrafficConfig(calls_per_minute=600, mean_patience=20, mean_talk=8,
                            no_answer_probability=0.05, pauses_per_minute=5, mean_pause=10)
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=7, traffic=traffic) as sim:
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            sim.traffic.start()
            hot = svc.hot
            await eventually(lambda: hot.stats.day("12345", hot.stats.local_day(hot.clock()))
                             .answered >= 20, timeout=30, what="20 answered calls")
            status, stats = await svc.get("/api/stats")
            assert status == 200
            q = next(x for x in stats["queues"] if x["queue"] == "12345")
            assert q["today"]["answered"] >= 20
            assert 0 <= q["today"]["answer_rate_pct"] <= 100
            assert stats["seats"]["on_call"] + stats["seats"]["available"] > 0
            status, text = await svc.get("/metrics", token=None)
            assert status == 200 and 'hotline_ami_up 1.0' in text
            assert 'hotline_queue_today_answered{queue="12345"}' in text
            await eventually(lambda: has(svc, "answered", at_least=10), timeout=15,
                             what="answered calls in the database")
            await sim.traffic.stop()
    # After a clean shutdown every record is in the database.
    saved = await outcomes(svc)
    assert saved.get("answered", 0) >= 10
    assert hot.writer.backlog == 0


async def test_ami_loss_closes_calls_with_unknown_end_and_recovers(service_factory) -> None:  # type: ignore[no-untyped-def]
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=3) as sim:
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            hot = svc.hot
            sim.add_caller("13800138000", talk=600)
            await eventually(lambda: any(r.answered_at for r in hot.tracker.active()),
                             what="the call answered")
            call = hot.tracker.active()[0]
            # Asterisk restarts: the call and the members are gone while we are away.
            await sim.restart()
            await eventually(lambda: hot.link.counters.reconnects >= 1, what="reconnect")
            await wait_ready(svc)     # members re-added from config after the restart
            await eventually(lambda: hot.tracker.get(call.call_id) is None,
                             what="call closed by resync")
            await eventually(lambda: has(svc, "unknown_end", exactly=1), what="saved")
            seat = hot.board.by_seat_id(call.seat or "")
            assert seat is not None and seat.state in (SeatState.AVAILABLE, SeatState.WRAP_UP)
            assert CallOutcome.UNKNOWN_END.value in await outcomes(svc)


async def test_agent_endpoints_need_auth_and_own_seat(service_factory) -> None:  # type: ignore[no-untyped-def]
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=5) as sim:
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            assert (await svc.get("/api/seats", token=None))[0] == 401
            assert (await svc.get("/api/seats", token="wrong-token-123"))[0] == 401
            status, body = await svc.post("/api/seats/1002/pause", {"reason": "小休"},
                                          token=AGENT_1001)
            assert status == 403 and body["error"] == "forbidden" and body["message"]
            status, body = await svc.post("/api/seats/1001/pause", {"reason": "小休"},
                                          token=AGENT_1001)
            assert status == 200, body
            await eventually(lambda: svc.hot.board.by_seat_id("1001").state   # type: ignore[union-attr]
                             is SeatState.PAUSED, what="seat 1001 paused")
            status, body = await svc.get("/api/seats", token=AGENT_1001)
            assert [s["seat_id"] for s in body["seats"]] == ["1001"]
            assert body["seats"][0]["pause_reason"] == "小休"
            status, body = await svc.post("/api/seats/1001/unpause", token=AGENT_1001)
            assert status == 200
            # Bad input: clear JSON errors, nothing reaches Asterisk, the service keeps going.
            status, body = await svc.post("/api/seats/1001/pause", raw=b"{not json",
                                          token=AGENT_1001)
            assert (status, body["error"]) == (400, "invalid_json")
            status, body = await svc.post("/api/seats/1001/pause",
                                          {"reason": "小休\r\nAction: Originate"},
                                          token=AGENT_1001)
            assert (status, body["error"]) == (422, "unknown_pause_reason")
            status, body = await svc.post("/api/seats/1002/transfer", {"department": "8001"},
                                          token=AGENT_1002)
            assert (status, body["error"]) == (409, "seat_not_on_call")
            status, body = await svc.post("/api/admin/reload", token=AGENT_1002)
            assert status == 403
            status, body = await svc.post("/api/admin/reload", token=ADMIN)
            assert status == 200 and body["reloaded"] is True
            assert (await svc.get("/healthz", token=None))[0] == 200
            assert (await svc.get("/readyz", token=None))[0] == 200


async def test_desk_blind_transfer_and_three_way_through_http(service_factory) -> None:  # type: ignore[no-untyped-def]
    # time_scale 1: the simulated seat talks 3 s, long enough for the desk to act.
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=1, seed=11) as sim:
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            hot = svc.hot
            sim.add_caller("13800138001", talk=30)
            call = await eventually(lambda: next((r for r in hot.tracker.active()
                                                  if r.answered_at), None), what="answer")
            seat = call.seat
            token = AGENT_1001 if seat == "1001" else ADMIN
            status, body = await svc.post(f"/api/seats/{seat}/transfer",
                                          {"department": "8001"}, token=token)
            assert status == 200, body
            # The seat is free at once; the call ends when the citizen leaves the department.
            await eventually(lambda: hot.board.by_seat_id(seat).state  # type: ignore[union-attr]
                             is not SeatState.ON_CALL, what="seat freed")
            await eventually(lambda: has(svc, "transferred", exactly=1), timeout=20,
                             what="transferred call saved")

            sim.add_caller("13800138002", talk=30)
            call = await eventually(lambda: next((r for r in hot.tracker.active()
                                                  if r.answered_at), None), what="answer 2")
            status, body = await svc.post(f"/api/seats/{call.seat}/three-way",
                                          {"department": "8003"})
            # The room is the call's Linkedid, so no other call can be in it.
            assert status == 200 and body["result"] == call.linkedid.replace(".", "-"), body
            status, body = await svc.post(f"/api/seats/{call.seat}/three-way",
                                          {"department": "9999"})
            assert (status, body["error"]) == (422, "unknown_department")


async def test_reload_applies_the_membership_diff(service_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from tests.e2e.conftest import DEMO_CONFIG
    config_dir = tmp_path / "config"
    await asyncio.to_thread(shutil.copytree, DEMO_CONFIG, config_dir)
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=9) as sim:
        async with service_factory(sim.port, config_dir=config_dir) as svc:
            await wait_ready(svc)
            board = svc.hot.board
            assert board.by_seat_id("1003").queues == ("12345", "enterprise")  # type: ignore[union-attr]
            queues_yaml = config_dir / "queues.yaml"
            text = await asyncio.to_thread(queues_yaml.read_text, encoding="utf-8")
            # The admin takes seat 1003 off the enterprise line and seat 1100 off the hotline.
            enterprise = text.index("- name: enterprise")
            head, tail = text[:enterprise], text[enterprise:]
            tail = "\n".join(ln for ln in tail.split("\n") if '"1003"' not in ln)
            head = "\n".join(ln for ln in head.split("\n") if '"1100"' not in ln)
            await asyncio.to_thread(queues_yaml.write_text, head + tail, encoding="utf-8")
            status, body = await svc.post("/api/admin/reload")
            assert status == 200 and body["applied"] is True, body
            assert (body["added"], body["removed"]) == (0, 2)
            await eventually(lambda: board.by_seat_id("1003").queues == ("12345",),  # type: ignore[union-attr]
                             what="1003 left enterprise")
            await eventually(lambda: board.by_seat_id("1100").state   # type: ignore[union-attr]
                             is SeatState.LOGGED_OUT, what="1100 logged out")
            # A broken edit is refused with every error, and the running config stays.
            await asyncio.to_thread(queues_yaml.write_text, "queues: [oops", encoding="utf-8")
            status, body = await svc.post("/api/admin/reload")
            assert status == 422 and body["error"] == "config_invalid", body
            assert svc.hot.config.queues.queue("enterprise") is not None
            # The reload went through the one live-config holder; the service's parts were
            # built once and are not reassigned (issue 11).
            assert svc.hot.config is svc.hot.live.current
            with pytest.raises(dataclasses.FrozenInstanceError):
                svc.hot.http_port = 0  # type: ignore[misc]


async def _answered_with_long_seats(sim: PbxSimulator, svc: RunningService,
                                    number: str) -> CallRecord:
    """Every seat talks 600 s on its next call; one caller answered."""
    for queue in sim.engine.queues.values():
        for interface in queue.members:
            sim.dialplan.q.talk_time[interface] = 600
    sim.add_caller(number, talk=120)
    return await eventually(lambda: next((r for r in svc.hot.tracker.active()
                                          if r.answered_at), None), what="answer")


@pytest.mark.parametrize("target_missing", [False, True], ids=["with-target", "without-target"])
async def test_desk_attended_transfer_completed_by_hanging_up(
        service_factory, target_missing: bool) -> None:  # type: ignore[no-untyped-def]
    # Asterisk 22.5 leaves AttendedTransfer's TransferTarget* fields out in about half the
    # runs: the department must be recorded either way.
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=1, seed=13) as sim:
        sim.transfers.target_missing_rate = 1.0 if target_missing else 0.0
        # The department talks 6 s in all: long enough for the desk, then the call ends.
        sim.set_global("DEPT_TALK", "6")
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            call = await _answered_with_long_seats(sim, svc, "13800138003")
            status, body = await svc.post(f"/api/seats/{call.seat}/transfer",
                                          {"department": "8002", "mode": "attended"})
            assert status == 200, body
            status, body = await svc.post(f"/api/seats/{call.seat}/hangup")
            assert status == 200, body

            async def stored() -> CallRecord | None:
                found = [r for r in reversed(await svc.hot.store.recent(50))
                         if r.call_id == call.call_id and r.ended_at]
                return found[0] if found else None

            record = await eventually(stored, timeout=20, what="the call's end stored")
            assert (record.outcome, record.transferred_to) == (CallOutcome.TRANSFERRED, "8002")


async def test_desk_attended_transfer_to_a_busy_department_is_refused(service_factory) -> None:  # type: ignore[no-untyped-def]
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=1, seed=17) as sim:
        sim.set_global("DEPT_TALK_8003", "busy")
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            call = await _answered_with_long_seats(sim, svc, "13800138004")
            status, body = await svc.post(f"/api/seats/{call.seat}/transfer",
                                          {"department": "8003", "mode": "attended"})
            assert (status, body["error"]) == (409, "transfer_failed"), body
            live = svc.hot.tracker.get(call.call_id)
            assert live is not None and live.transferred_to is None
            assert svc.hot.board.by_seat_id(call.seat or "").call_id == call.call_id  # type: ignore[union-attr]


async def test_asterisk_stopped_with_a_caller_waiting_is_pbx_shutdown(service_factory) -> None:  # type: ignore[no-untyped-def]
    async with PbxSimulator(secret=SECRET, queues=QUEUES, time_scale=10, seed=19) as sim:
        async with service_factory(sim.port) as svc:
            await wait_ready(svc)
            for queue in sim.engine.queues.values():      # nobody free: the caller waits
                for member in list(queue.members.values()):
                    sim.set_paused(member, True, "会议")
            sim.add_caller("13800138005", talk=600)
            waiting = await eventually(lambda: next(iter(svc.hot.tracker.active()), None),
                                       what="the caller waiting")
            await sim.core_stop_now()
            await eventually(lambda: has(svc, "pbx_shutdown", exactly=1), timeout=20,
                             what="the waiting call saved as pbx_shutdown")
            saved = await outcomes(svc)
            assert "abandoned" not in saved, saved
            assert svc.hot.tracker.get(waiting.call_id) is None
