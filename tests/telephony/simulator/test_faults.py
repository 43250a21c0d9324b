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
