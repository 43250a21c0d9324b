"""Generated traffic: calls answered, abandoned, ring-no-answer, pauses; consistent stream."""

from __future__ import annotations

import asyncio
from collections import Counter

from telephony.simulator import PbxSimulator
from telephony.simulator.traffic import PAUSE_REASONS, TrafficConfig
from tests.telephony.simulator.ami_client import Msg, ami_client

SEATS = 6


async def _run_traffic(strategy: str, seed: int) -> list[Msg]:
    cfg = TrafficConfig(calls_per_minute=20, mean_patience=40, mean_talk=20,
                        no_answer_probability=0.2, pauses_per_minute=2, mean_pause=30)
    async with PbxSimulator(port=0, time_scale=400, seed=seed, traffic=cfg,
                            strategy=strategy) as pbx:  # type: ignore[arg-type]
        async with ami_client(pbx.port) as ami:
            for i in range(SEATS):
                await ami.response(await ami.action(
                    "QueueAdd", Queue="12345", Interface=f"Local/{1001 + i}@seats/n",
                    MemberName=f"seat-{1001 + i}", StateInterface=f"Local/{1001 + i}@seats"))
            events: list[Msg] = []

            async def collect() -> None:
                while True:
                    events.append(await ami.read())

            reader = asyncio.create_task(collect())
            pbx.traffic.start()
            await asyncio.sleep(1.5)  # ≈ 600 simulated seconds, ≈ 200 callers
            await pbx.traffic.stop()
            # Let every call in progress end (bounded: talk and ring times are short here).
            for _ in range(100):
                if not pbx.engine.channels:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            assert not pbx.engine.channels
        return events


def _check_consistent(events: list[Msg]) -> Counter[str]:
    names = Counter(e.get("Event", "") for e in events)
    joined = {e["Uniqueid"] for e in events if e.get("Event") == "QueueCallerJoin"}
    left = {e["Uniqueid"] for e in events if e.get("Event") == "QueueCallerLeave"}
    assert joined == left
    connected = [e["Uniqueid"] for e in events if e.get("Event") == "AgentConnect"]
    completed = [e["Uniqueid"] for e in events if e.get("Event") == "AgentComplete"]
    assert sorted(connected) == sorted(completed)
    abandoned = {e["Uniqueid"] for e in events if e.get("Event") == "QueueCallerAbandon"}
    assert abandoned.isdisjoint(connected) and abandoned <= joined
    assert len(joined) == len(connected) + len(abandoned)
    created = Counter(e["Channel"] for e in events if e.get("Event") == "Newchannel")
    gone = Counter(e["Channel"] for e in events if e.get("Event") == "Hangup")
    assert created == gone
    # A member is never connected to two callers at once.
    busy: set[str] = set()
    for e in events:
        if e.get("Event") == "AgentConnect":
            assert e["Interface"] not in busy
            busy.add(e["Interface"])
        elif e.get("Event") == "AgentComplete":
            busy.discard(e["Interface"])
    for e in events:
        if e.get("Event") == "QueueMemberPause" and e["Paused"] == "1":
            assert e["PausedReason"] in PAUSE_REASONS
    return names


async def test_poisson_traffic_rrmemory() -> None:
    names = _check_consistent(await _run_traffic("rrmemory", seed=7))
    assert names["AgentConnect"] > 20
    assert names["QueueCallerAbandon"] > 0
    assert names["AgentRingNoAnswer"] > 0
    assert names["QueueMemberPause"] > 0


async def test_poisson_traffic_other_strategies() -> None:
    for strategy in ("leastrecent", "ringall"):
        names = _check_consistent(await _run_traffic(strategy, seed=3))
        assert names["AgentConnect"] > 20


async def test_add_caller_api_is_answered() -> None:
    async with PbxSimulator(port=0, time_scale=50, seed=1) as pbx, ami_client(pbx.port) as ami:
        await ami.response(await ami.action(
            "QueueAdd", Queue="12345", Interface="Local/1001@seats/n", MemberName="seat-1001",
            StateInterface="Local/1001@seats"))
        channel = pbx.add_caller("13800138000", talk=30)
        while (e := await ami.read()).get("Event") != "AgentConnect":
            pass
        assert e["Channel"] == channel and e["MemberName"] == "seat-1001"
        while (e := await ami.read()).get("Event") != "AgentComplete":
            pass
        assert e["Reason"] == "agent"


async def test_a_share_of_the_traffic_goes_through_the_ivr_speech_context() -> None:
    """asr_share sends that share of callers through [incoming-asr] (Set ASR_UUID, then
    AudioSocket; without a source the simulator waits out the recorded time)."""
    import pytest
    with pytest.raises(ValueError, match="asr_share"):
        TrafficConfig(asr_share=1.5)
    traffic = TrafficConfig(calls_per_minute=0, mean_patience=0, asr_share=1.0)
    async with PbxSimulator(port=0, time_scale=50, seed=3, traffic=traffic) as pbx, \
            ami_client(pbx.port) as ami:
        pbx.traffic.add_caller()
        while (e := await ami.read()).get("Event") != "VarSet" or \
                e.get("Variable") != "ASR_UUID":
            pass
        assert e["Context"] == "incoming-asr"
