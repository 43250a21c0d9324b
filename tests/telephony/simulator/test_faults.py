"""Fault injection, each observed by a raw client: drop, half-open, restart, listen off/on."""

from __future__ import annotations

import asyncio

import pytest

from telephony.simulator import PbxSimulator
from tests.telephony.simulator.ami_client import ami_client


async def test_login_errors_and_logoff() -> None:
    async with PbxSimulator(port=0) as pbx, ami_client(pbx.port, login=False) as ami:
        bad = await ami.login(secret="wrong")
        assert (bad["Response"], bad["Message"]) == ("Error", "Authentication failed")
        ok = await ami.login()
        assert ok["Message"] == "Authentication accepted"
        assert (await ami.read())["Event"] == "FullyBooted"
        bye = await ami.response(await ami.action("Logoff"))
        assert bye["Response"] == "Goodbye"
        with pytest.raises(asyncio.IncompleteReadError):
            await ami.read()


async def test_drop_connections_closes_every_client() -> None:
    async with PbxSimulator(port=0) as pbx, ami_client(pbx.port) as a, ami_client(pbx.port) as b:
        pbx.drop_connections()
        for ami in (a, b):
            with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
                while True:
                    await ami.read()


async def test_silent_keeps_socket_open_but_answers_nothing() -> None:
    async with PbxSimulator(port=0) as pbx, ami_client(pbx.port) as ami:
        assert (await ami.read())["Event"] == "FullyBooted"
        assert (await ami.read())["Event"] == "SuccessfulAuth"
        pbx.go_silent()
        await ami.action("Ping")
        # Absence of a reply can only be observed by waiting; the socket must stay open.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ami.read(), 0.3)
        assert not ami.reader.at_eof()
        pbx.resume()
        pong = await ami.response(await ami.action("Ping"))
        assert pong["Ping"] == "Pong"


async def test_restart_loses_members_and_calls() -> None:
    async with PbxSimulator(port=0, time_scale=20) as pbx:
        async with ami_client(pbx.port) as ami:
            await ami.response(await ami.action(
                "QueueAdd", Queue="12345", Interface="Local/1001@seats-long/n",
                MemberName="seat-1001", StateInterface="Local/1001@seats-long"))
            await ami.response(await ami.action(
                "Originate", Channel="Local/talk@citizen", Context="incoming", Exten="12345",
                Priority="1", CallerID='"" <13800138000>', Variable="SPEECH=silence/1,TALK=60",
                Async="true"))
            while (await ami.read()).get("Event") != "AgentConnect":
                pass
            await pbx.restart()
            with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
                while True:
                    await ami.read()
        async with ami_client(pbx.port) as ami:
            aid = await ami.action("QueueStatus", Queue="12345")
            items = []
            while True:
                msg = await ami.read()
                if msg.get("ActionID") == aid and msg.get("Event"):
                    items.append(msg["Event"])
                    if msg["Event"] == "QueueStatusComplete":
                        break
            assert items == ["QueueParams", "QueueStatusComplete"]
            aid = await ami.action("CoreShowChannels")
            while (msg := await ami.read()).get("Event") != "CoreShowChannelsComplete":
                assert msg.get("Event") != "CoreShowChannel"
            assert msg["ListItems"] == "0"


async def test_stop_and_start_listening() -> None:
    async with PbxSimulator(port=0) as pbx:
        port = pbx.port
        await pbx.stop_listening()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        await pbx.start_listening()
        assert pbx.port == port
        async with ami_client(port) as ami:
            assert (await ami.response(await ami.action("Ping")))["Ping"] == "Pong"


async def test_core_stop_now_abandons_waiting_callers_then_says_shutdown() -> None:
    async with PbxSimulator(port=0, time_scale=20) as pbx:
        async with ami_client(pbx.port) as ami:
            pbx.dialplan.q.talk_time["Local/1001@seats/n"] = 600
            await ami.response(await ami.action(
                "QueueAdd", Queue="12345", Interface="Local/1001@seats/n",
                MemberName="seat-1001", StateInterface="Local/1001@seats"))
            for number, until in (("13800138000", "AgentConnect"),
                                  ("13800138001", "QueueCallerJoin")):
                await ami.action(
                    "Originate", Channel="Local/talk@citizen", Context="incoming",
                    Exten="12345", Priority="1", CallerID=f'"" <{number}>',
                    Variable="SPEECH=silence/1,TALK=600", Async="true")
                while (msg := await ami.read()).get("Event") != until:
                    pass
                if until == "AgentConnect":
                    answered = msg["Channel"]
                else:
                    waiting = msg["Channel"]
            await pbx.core_stop_now()
            seen = []
            with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
                while True:
                    seen.append(await ami.read())
        names = [m.get("Event") for m in seen]
        assert names[-1] == "Shutdown"
        assert (seen[-1]["Shutdown"], seen[-1]["Restart"], seen[-1]["Privilege"]) == (
            "Cleanly", "False", "system,all")
        abandon = names.index("QueueCallerAbandon")
        assert seen[abandon]["Channel"] == waiting
        [gone] = [m for m in seen if m.get("Event") == "Hangup" and m["Channel"] == waiting]
        assert gone["Cause"] == "0" and seen.index(gone) > abandon
        complete = next(m for m in seen if m.get("Event") == "AgentComplete")
        assert (complete["Channel"], complete["Reason"]) == (answered, "caller")
        # Nothing listens until Asterisk is started again, which then has no calls.
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", pbx.port)
        await pbx.start_listening()
        assert not pbx.engine.channels and not pbx.engine.queues["12345"].members
