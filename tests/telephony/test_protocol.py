"""AMI framing: UTF-8 split across reads, oversize lines, garbage, unknown ActionIDs, the peer
closing mid-message, bare LF, raising handlers. End to end over a real socket (the trace
replay server) and, where the exact TCP chunking matters, by feeding chunks directly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from panoramisk.ami_protocol import AMIProtocol  # type: ignore[import-untyped]
from panoramisk.manager import Manager  # type: ignore[import-untyped]
from panoramisk.message import Message  # type: ignore[import-untyped]

from telephony import actions
from telephony.link import AmiLink, LinkState
from telephony.protocol import AmiFramer, AmiProtocol, LinkCounters, mask_digits
from tests.telephony.conftest import preamble
from telephony.simulator.replay import serialise



def paused_event(trace: Callable[[str], list[Any]]) -> tuple[bytes, int]:
    """Trace 02's QueueMemberPause (PausedReason: 午休) and a byte offset inside 午."""
    text = next(t.text for t in trace("02-abandoned") if "PausedReason: 午休" in t.text)
    data = text.encode("utf-8")
    return data, data.index("午".encode()) + 1  # 午 is 3 bytes; split after the first


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def event(name: str, **fields: str) -> bytes:
    return serialise([("Event", name), *fields.items()])


# -- UTF-8 split across reads ------------------------------------------------------------

def test_panoramisk_loses_a_character_split_across_reads(trace: Any) -> None:
    """The measured bug: panoramisk decodes each chunk with errors='ignore'."""
    data, cut = paused_event(trace)
    seen: list[Message] = []
    manager = Manager(loop=object())  # never connects; only its dispatch() is used
    manager.register_event("*", lambda _m, msg: seen.append(msg))
    proto = AMIProtocol()
    proto.connection_made(None)  # no transport needed to feed bytes in
    proto.factory, proto.encoding = manager, "utf8"
    proto.data_received(data[:cut])
    proto.data_received(data[cut:])
    assert len(seen) == 1
    assert seen[0]["PausedReason"] == "休"  # 午 is gone


@pytest.mark.parametrize("where", ["before", "inside", "inside2", "first", "last"])
async def test_our_protocol_keeps_a_character_split_across_reads(trace: Any, where: str) -> None:
    data, cut = paused_event(trace)
    split = {"before": cut - 1, "inside": cut, "inside2": cut + 1, "first": 1,
             "last": len(data) - 1}[where]
    seen: list[Message] = []
    proto = AmiProtocol(on_event=seen.append, counters=LinkCounters(), max_message_bytes=65536)
    proto.data_received(b"Asterisk Call Manager/11.0.0\r\n" + data[:split])
    proto.data_received(data[split:])
    assert [m["PausedReason"] for m in seen] == ["午休"]
    assert proto.framer.banner == "Asterisk Call Manager/11.0.0"


async def test_every_byte_split_of_a_trace_gives_the_same_events(trace: Any) -> None:
    stream = "".join(t.text for t in trace("02-abandoned") if t.dir == "received").encode()
    whole: list[Message] = []
    AmiProtocol(on_event=whole.append, counters=LinkCounters(),
                max_message_bytes=65536).data_received(stream)
    assert any(m.get("PausedReason") == "午休" for m in whole)
    for size in (1, 2, 3, 7, 64, 1000):
        got: list[Message] = []
        proto = AmiProtocol(on_event=got.append, counters=LinkCounters(),
                            max_message_bytes=65536)
        for i in range(0, len(stream), size):
            proto.data_received(stream[i:i + size])
        assert [dict(m) for m in got] == [dict(m) for m in whole], size


async def test_utf8_split_over_a_real_socket(replay: Any, ami: Any, trace: Any) -> None:
    data, cut = paused_event(trace)
    server = await replay(preamble(trace))
    link, events = await ami(server)
    server.inject(data[:cut])
    await asyncio.sleep(0.02)  # let the first half be read on its own (not asserted)
    server.inject(data[cut:])
    await until(lambda: any(e.event == "QueueMemberPause" for e in events))
    pause = next(e for e in events if e.event == "QueueMemberPause")
    assert pause["PausedReason"] == "午休"
    assert link.counters.decode_errors == 0


# -- size cap ----------------------------------------------------------------------------

def test_framer_memory_stays_bounded_on_a_line_without_end() -> None:
    oversize: list[int] = []
    framer = AmiFramer(262144, lambda size, head: oversize.append(size))
    assert framer.feed(b"Asterisk Call Manager/11.0.0\r\n") == []
    chunk = b"A" * 65536
    for _ in range(16):  # 1 MB, no CRLF
        assert framer.feed(chunk) == []
        assert framer.buffered <= 262144
    out = framer.feed(b"\r\n\r\n" + event("FullyBooted", Status="Fully Booted"))
    assert len(oversize) == 1  # logged/counted once, not per chunk
    assert [m.split(b"\r\n")[0] for m in out] == [b"Event: FullyBooted"]


async def test_one_megabyte_line_is_skipped_and_the_link_goes_on(
        replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, events = await ami(server)
    server.inject(b"Event: Huge\r\nData: " + b"x" * (1 << 20) + b"\r\n\r\n"
                  + event("QueueCallerAbandon", Queue="12345"))
    await until(lambda: any(e.event == "QueueCallerAbandon" for e in events))
    assert link.counters.oversize_messages == 1
    assert not any(e.event == "Huge" for e in events)
    assert link.state is LinkState.READY
    assert (await link.send(actions.ping())).response["Ping"] == "Pong"


# -- garbage and malformed messages ------------------------------------------------------

async def test_garbage_and_malformed_messages_are_skipped(
        replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, events = await ami(server)
    before = len(events)
    server.inject(b"\x00\xff\xfe\x80garbage\r\n\r\n"          # not UTF-8, no headers
                  + b"Foo: bar\r\nBaz: qux\r\n\r\n"             # neither Event nor Response
                  + b"Event: \r\nQueue: 1\r\n\r\n"               # empty event name
                  + b"Event: Bad Name!\r\n\r\n"                  # malformed event name
                  + event("QueueCallerJoin", Queue="12345"))
    await until(lambda: any(e.event == "QueueCallerJoin" for e in events))
    assert [e.event for e in events[before:]] == ["QueueCallerJoin"]
    assert link.counters.parse_errors == 4
    assert link.counters.decode_errors == 1


async def test_invalid_utf8_inside_an_event_keeps_the_event(
        replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, events = await ami(server)
    server.inject(b"Event: Hangup\r\nCallerIDName: \xc0\xaf\xff\r\nUniqueid: 1.2\r\n\r\n")
    await until(lambda: any(e.event == "Hangup" for e in events))
    hangup = next(e for e in events if e.event == "Hangup")
    assert hangup["Uniqueid"] == "1.2" and "\ufffd" in hangup["CallerIDName"]
    assert link.counters.decode_errors == 1


async def test_response_for_unknown_action_id_is_skipped(
        replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, _ = await ami(server)
    server.inject(b"Response: Success\r\nActionID: nobody-1\r\nMessage: late\r\n\r\n"
                  b"Response: Error\r\nMessage: no id at all\r\n\r\n")
    await until(lambda: link.counters.unknown_responses == 2)
    assert (await link.send(actions.ping())).response["Ping"] == "Pong"


async def test_bare_lf_messages_are_accepted(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, events = await ami(server)
    server.inject(b"Event: AgentCalled\nQueue: 12345\nMemberName: seat-1001\n\n"
                  b"Event: AgentConnect\r\nQueue: 12345\n\r\n")
    await until(lambda: any(e.event == "AgentConnect" for e in events))
    called = next(e for e in events if e.event == "AgentCalled")
    assert called["MemberName"] == "seat-1001" and called["Queue"] == "12345"
    assert link.counters.parse_errors == 0


async def test_peer_closing_mid_message_reconnects(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, events = await ami(server)
    server.drop(partial=b"Event: Hangup\r\nChannel: Local/talk@citizen-000")
    await until(lambda: server.connections == 2 and link.state is LinkState.READY)
    assert link.counters.truncated_messages == 1
    assert not any(e.event == "Hangup" for e in events)
    assert (await link.send(actions.ping())).response["Ping"] == "Pong"


# -- event handlers ----------------------------------------------------------------------

def test_a_raising_handler_does_not_lose_the_rest_of_the_chunk() -> None:
    """One chunk, three events; the handler raises on the second (panoramisk loses the 3rd)."""
    seen: list[str] = []

    def on_event(msg: Message) -> None:
        seen.append(msg.event)
        if msg.event == "Two":
            raise KeyError("boom")

    link = AmiLink(host="127.0.0.1", port=1, username="u", secret="s", on_event=on_event)
    proto = AmiProtocol(on_event=link._dispatch, counters=link.counters,
                        max_message_bytes=65536)
    proto.data_received(event("One") + event("Two") + event("Three"))
    assert seen == ["One", "Two", "Three"]
    assert link.counters.handler_errors == 1
    assert link.counters.events_received == 3


async def test_a_raising_handler_over_a_socket(replay: Any, ami: Any, trace: Any) -> None:
    seen: list[str] = []

    def on_event(msg: Message) -> None:
        seen.append(msg.event)
        if msg.event == "QueueCallerJoin":
            raise ValueError("handler bug")

    server = await replay(preamble(trace))
    link, _ = await ami(server, on_event=on_event)
    server.inject(event("QueueCallerJoin", CallerIDNum="13800138000")
                  + event("AgentCalled") + event("AgentConnect"))
    await until(lambda: "AgentConnect" in seen)
    assert seen[-3:] == ["QueueCallerJoin", "AgentCalled", "AgentConnect"]
    assert link.counters.handler_errors == 1
    assert link.state is LinkState.READY


async def test_an_async_handler_is_refused_not_scheduled(
        replay: Any, ami: Any, trace: Any) -> None:
    ran: list[str] = []

    async def on_event(msg: Message) -> None:
        ran.append(msg.event)

    server = await replay(preamble(trace))
    link, _ = await ami(server, on_event=on_event)
    await until(lambda: link.counters.handler_errors >= 2)  # FullyBooted, SuccessfulAuth
    await asyncio.sleep(0)
    assert ran == []  # closed, never run in the background


def test_phone_numbers_are_masked_for_logs() -> None:
    assert mask_digits("CallerIDNum: 13800138004") == "CallerIDNum: 138****8004"
