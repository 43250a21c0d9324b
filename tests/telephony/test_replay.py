"""The trace replay AMI server, driven by a raw asyncio client (no AmiLink in the way)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from telephony.simulator.replay import (
    RecordedLine,
    header,
    load_trace,
    serialise,
)


@pytest.fixture
async def client() -> AsyncIterator[
        Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]]:
    """Factory: a raw TCP client to a port, closed at the end."""
    writers: list[asyncio.StreamWriter] = []

    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        return reader, writer
    yield connect
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_message(reader: asyncio.StreamReader) -> str:
    async with asyncio.timeout(5):
        return (await reader.readuntil(b"\r\n\r\n")).decode("utf-8")


def test_serialise_reproduces_recorded_messages_exactly(trace: Any) -> None:
    for line in trace("02-abandoned"):
        if line.dir != "received" or not line.text.endswith("\r\n\r\n"):
            continue  # the banner
        fields = [tuple(row.split(": ", 1)) for row in line.text[:-4].split("\r\n")]
        assert serialise(fields) == line.text.encode("utf-8")


def test_load_trace_reads_the_jsonl_format(trace: Any, tmp_path: Any) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"t": 0.5, "dir": "received", "text": "Event: A\\r\\n\\r\\n"}\n\n',
                    encoding="utf-8")
    assert load_trace(path) == [RecordedLine(0.5, "received", "Event: A\r\n\r\n")]


async def test_action_ids_are_rewritten_in_order(replay: Any, client: Any, trace: Any) -> None:
    server = await replay(trace("03-pause-status"))
    reader, writer = await client(server.port)
    assert await reader.readline() == b"Asterisk Call Manager/11.0.0\r\n"
    writer.write(b"Action: Login\r\nUsername: hotline\r\nSecret: s\r\nActionID: mine-1\r\n\r\n")
    login = await read_message(reader)
    assert header(login, "ActionID") == "mine-1"
    assert header(login, "Message") == "Authentication accepted"
    assert header(await read_message(reader), "Event") == "FullyBooted"
    await read_message(reader)  # SuccessfulAuth
    # Second action → second recorded response (QueueAdd a-1), rewritten.
    writer.write(b"Action: QueueAdd\r\nQueue: 12345\r\nActionID: X/7\r\n\r\n")
    added = await read_message(reader)
    assert (header(added, "Response"), header(added, "ActionID")) == ("Success", "X/7")
    assert server.received[-1].action_id == "X/7" and server.received[-1].connection == 1


async def test_list_events_get_the_client_action_id(
        replay: Any, client: Any, trace: Any) -> None:
    lines = trace("03-pause-status")
    start = next(i for i, t in enumerate(lines) if "Action: QueueStatus" in t.text)
    server = await replay([*trace("09-errors")[:3], *lines[start:start + 6]])
    reader, writer = await client(server.port)
    await reader.readline()
    writer.write(b"Action: Login\r\nActionID: L\r\n\r\n")
    await read_message(reader)
    writer.write(b"Action: QueueStatus\r\nActionID: qs-9\r\n\r\n")
    got = [await read_message(reader) for _ in range(5)]
    assert [header(m, "ActionID") for m in got] == ["qs-9"] * 5
    assert header(got[-1], "Event") == "QueueStatusComplete"
    assert "PausedReason: 培训" in got[3]


async def test_ping_is_answered_and_logoff_closes(replay: Any, client: Any, trace: Any) -> None:
    server = await replay(trace("09-errors")[:3])
    reader, writer = await client(server.port)
    await reader.readline()
    writer.write(b"Action: Ping\r\nActionID: p1\r\n\r\n")
    pong = await read_message(reader)
    assert (header(pong, "Ping"), header(pong, "ActionID")) == ("Pong", "p1")
    writer.write(b"Action: Logoff\r\nActionID: bye\r\n\r\n")
    assert header(await read_message(reader), "Response") == "Goodbye"
    async with asyncio.timeout(5):
        assert await reader.read() == b""


async def test_silent_server_answers_nothing(replay: Any, client: Any, trace: Any) -> None:
    server = await replay(trace("09-errors")[:3])
    reader, writer = await client(server.port)
    await reader.readline()
    await server.wait_for(lambda s: s.connections == 1)
    server.go_silent()
    writer.write(b"Action: Ping\r\nActionID: p1\r\n\r\n")
    await server.wait_for(lambda s: len(s.actions_named("Ping")) == 1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await reader.read(1)
    assert not writer.is_closing()


async def test_refuse_and_accept_again_on_the_same_port(replay: Any, client: Any,
                                                       trace: Any) -> None:
    server = await replay(trace("09-errors")[:1])
    port = server.port
    await server.refuse()
    with pytest.raises(ConnectionRefusedError):
        await client(port)
    await server.accept()
    assert server.port == port
    reader, _ = await client(port)
    assert (await reader.readline()).startswith(b"Asterisk Call Manager/")


async def test_inject_and_drop_mid_message(replay: Any, client: Any, trace: Any) -> None:
    server = await replay(trace("09-errors")[:1])
    reader, _ = await client(server.port)
    await reader.readline()
    await server.wait_for(lambda s: s.connections == 1)
    server.inject(b"\xff\xfe raw\r\n\r\n")
    server.drop(partial=b"Event: Hangup\r\nChan")
    async with asyncio.timeout(5):
        assert await reader.read() == b"\xff\xfe raw\r\n\r\nEvent: Hangup\r\nChan"


async def test_tail_streams_as_fast_as_the_client_reads(
        replay: Any, client: Any, trace: Any) -> None:
    def events() -> Iterator[bytes]:
        for n in range(2000):
            yield serialise([("Event", "Newstate"), ("Uniqueid", f"1.{n}")])

    server = await replay(trace("09-errors")[:1], tail=events)
    reader, _ = await client(server.port)
    await reader.readline()
    got = [header(await read_message(reader), "Uniqueid") for _ in range(2000)]
    assert got == [f"1.{n}" for n in range(2000)]


async def test_paced_replay_keeps_order(replay: Any, client: Any, trace: Any) -> None:
    lines = [line for line in trace("02-abandoned")[:12] if line.dir == "received"]
    server = await replay(lines, pace=0.01)
    reader, _ = await client(server.port)
    assert (await reader.readline()).decode() == lines[0].text
    for line in lines[1:]:
        assert await read_message(reader) == line.text
