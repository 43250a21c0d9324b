"""AmiLink against the trace replay server over real sockets: login, actions and list
actions, errors, reconnect with backoff, the Ping watchdog, no replay of lost actions, safe
values only."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from telephony import actions
from telephony.actions import AmiAction
from telephony.errors import (
    AmiActionFailed,
    AmiActionLost,
    AmiNotConnected,
    AmiTimeout,
    UnsafeActionValue,
)
from telephony.link import AmiLink, LinkState
from telephony.protocol import AmiProtocol, LinkCounters
from tests.telephony.conftest import preamble
from telephony.simulator.replay import RecordedLine

SEAT1 = ("12345", "Local/1001@seats/n", "seat-1001", "Local/1001@seats")
SEAT2 = ("12345", "Local/1002@seats/n", "seat-1002", "Local/1002@seats")


def sent(text: str) -> RecordedLine:
    return RecordedLine(0.0, "sent", text)


def received(text: str) -> RecordedLine:
    return RecordedLine(0.0, "received", text)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# -- login, actions, list actions, errors --------------------------------------------------

async def test_login_and_list_actions_of_trace_03(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(trace("03-pause-status"))
    link, events = await ami(server)
    assert link.banner == "Asterisk Call Manager/11.0.0"
    added = await link.send(actions.queue_add(*SEAT1))
    assert added.response["Message"] == "Added interface to queue" and added.events == ()
    await link.send(actions.queue_add(*SEAT2))
    await link.send(actions.queue_pause("12345", "Local/1002@seats/n", True, "培训"))
    status = await link.send(actions.queue_status("12345"))
    assert status.response["EventList"] == "start"
    assert [e.event for e in status.events] == [
        "QueueParams", "QueueMember", "QueueMember", "QueueStatusComplete"]
    assert status.events[2]["PausedReason"] == "培训"
    summary = await link.send(actions.queue_summary("12345"))
    assert [e.event for e in summary.events] == ["QueueSummary", "QueueSummaryComplete"]
    # List events went to the response, not to on_event; the rest of the stream did.
    names = {e.event for e in events}
    assert "QueueMemberPause" in names and "QueueMember" not in names
    # Our builders write what Asterisk was sent in the recording (ActionIDs aside).
    recorded = [t.text for t in trace("03-pause-status") if t.dir == "sent"]
    ours = [a.text for a in server.received]
    strip = re.compile(r"ActionID: [^\r]*")
    assert [strip.sub("", t) for t in ours[:6]] == [strip.sub("", t) for t in recorded[:6]]


async def test_queue_status_with_waiting_callers_of_trace_08(
        replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(trace("08-status-with-waiting"))
    link, events = await ami(server)
    await link.send(actions.queue_add(*SEAT1))
    for number in ("13800138004", "13800138005", "13800138006"):
        queued = await link.send(actions.originate(
            "Local/talk@citizen", "incoming", "12345", caller_id_number=number,
            variables={"SPEECH": "silence/1", "TALK": "10"}))
        assert queued.response["Message"] == "Originate successfully queued"
    status = await link.send(actions.queue_status("12345"))
    entries = [e for e in status.events if e.event == "QueueEntry"]
    assert [e["Position"] for e in entries] == ["1", "2"]
    await link.send(actions.queue_summary("12345"))
    channels = await link.send(actions.core_show_channels())
    assert [e.event for e in channels.events].count("CoreShowChannel") == 4
    assert channels.events[-1].event == "CoreShowChannelsComplete"
    # Each OriginateResponse reached on_event with the ActionID of its Originate.
    originate_ids = [a.action_id for a in server.actions_named("Originate")]
    responses = [e for e in events if e.event == "OriginateResponse"]
    assert [e["ActionID"] for e in responses] == originate_ids


async def test_error_responses_of_trace_09(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(trace("09-errors"))
    link, events = await ami(server)
    cases = [
        (AmiAction("QueueAdd", (("Queue", "no-such-queue"), ("Interface", SEAT1[1]))),
         "Unable to add interface to queue: No such queue"),
        (actions.queue_pause("12345", "Local/9999@seats/n", True), "Interface not found"),
        (actions.queue_remove("12345", "Local/9999@seats/n"),
         "Unable to remove interface: Not there"),
        (actions.redirect("Local/nonexistent-0000;1", "departments", "8001"),
         "Channel does not exist: Local/nonexistent-0000;1"),
        (AmiAction("NoSuchAction"), "Invalid/unknown command: NoSuchAction. "
         "Use Action: ListCommands to show available commands."),
    ]
    for action, message in cases:
        with pytest.raises(AmiActionFailed) as failed:
            await link.send(action)
        assert failed.value.action == action.name and failed.value.message == message
    queued = await link.send(actions.originate("Local/talk@no-such-context", "incoming",
                                               "12345"))
    assert queued.response["Response"] == "Success"  # send does not wait for the dial
    await until(lambda: any(e.event == "OriginateResponse" for e in events))
    result = next(e for e in events if e.event == "OriginateResponse")
    assert result["Response"] == "Failure"
    assert result["ActionID"] == server.actions_named("Originate")[0].action_id
    assert link.state is LinkState.READY


async def test_unanswered_action_times_out(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay([*preamble(trace), sent("Action: QueueStatus\r\n\r\n")])
    link, _ = await ami(server)
    with pytest.raises(AmiTimeout):
        await link.send(actions.queue_status(), timeout=0.1)
    assert link.state is LinkState.READY
    assert (await link.send(actions.ping())).response["Ping"] == "Pong"


async def test_send_when_not_ready_and_after_close(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    await server.refuse()
    link, _ = await ami(server, ready=False)
    with pytest.raises(AmiNotConnected):
        await link.send(actions.ping())
    with pytest.raises(AmiNotConnected):
        await link.wait_ready(0.05)
    await server.accept()
    await link.wait_ready(5)
    await link.aclose()
    assert link.state is LinkState.CLOSED
    assert server.actions_named("Logoff")  # logged off politely
    with pytest.raises(AmiNotConnected):
        await link.send(actions.ping())


# -- on_ready resync ---------------------------------------------------------------------

async def test_on_ready_resyncs_before_ready(replay: Any, trace: Any) -> None:
    lines = trace("08-status-with-waiting")
    start = next(i for i, t in enumerate(lines) if "Action: QueueStatus" in t.text)
    server = await replay([*preamble(trace), *lines[start:start + 7]])
    states: list[LinkState] = []
    resync: list[Any] = []

    async def on_ready() -> None:
        assert link_box[0].state is LinkState.CONNECTING
        resync.append(await link_box[0].send(actions.queue_status("12345")))

    link_box: list[AmiLink] = []
    link = AmiLink(host="127.0.0.1", port=server.port, username="hotline",
                   secret="hotline-secret", on_event=lambda m: None, on_ready=on_ready,
                   on_state_change=states.append)
    link_box.append(link)
    async with link:
        await link.wait_ready(5)
        assert len(resync) == 1 and resync[0].events[-1].event == "QueueStatusComplete"
    assert states == [LinkState.CONNECTING, LinkState.READY, LinkState.CLOSED]


async def test_failing_on_ready_reconnects(replay: Any, ami: Any, trace: Any) -> None:
    calls: list[int] = []

    async def on_ready() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("resync failed")

    server = await replay(preamble(trace))
    link, _ = await ami(server, on_ready=on_ready)
    assert len(calls) == 2 and server.connections == 2
    assert link.counters.reconnects == 1


# -- reconnect -----------------------------------------------------------------------------

async def test_reconnect_delays_grow_with_seeded_jitter(
        replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, _ = await ami(server, rng=random.Random(7), backoff_initial=0.01, backoff_max=0.05,
                        backoff_jitter=0.2)
    await server.refuse()
    server.drop()
    await until(lambda: link.counters.reconnects >= 5)
    await server.accept()
    await link.wait_ready(5)
    expected_rng = random.Random(7)
    expected = [min(0.05, base * (1 + expected_rng.uniform(-0.2, 0.2)))
                for base in (0.01, 0.02, 0.04, 0.05, 0.05)]
    delays = list(link.backoff_delays)
    assert delays[:5] == pytest.approx(expected)
    assert delays[0] < delays[1] < delays[2]
    assert server.connections == 2


async def test_rejected_login_is_retried_with_backoff(replay: Any, ami: Any,
                                                     trace: Any) -> None:
    rejected = [*trace("09-errors")[:2], received(
        "Response: Error\r\nActionID: login-1\r\nMessage: Authentication failed\r\n\r\n")]
    server = await replay(rejected)
    link, _ = await ami(server, ready=False)
    await until(lambda: server.connections >= 3)
    assert link.state is not LinkState.READY
    server.trace = preamble(trace)
    await link.wait_ready(5)


async def test_half_open_connection_is_detected_by_the_watchdog(
        replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, _ = await ami(server, ping_interval=0.05, ping_timeout=0.1)
    await until(lambda: len(server.actions_named("Ping")) >= 1)
    server.go_silent()  # socket open, nothing answered: what a dead NAT or host looks like
    await until(lambda: server.connections == 2 and link.state is LinkState.READY)
    assert link.counters.watchdog_timeouts == 1


# -- no replay of lost actions -------------------------------------------------------------

async def test_originate_pending_during_a_drop_is_lost_not_resent(
        replay: Any, ami: Any, trace: Any) -> None:
    originate = next(t for t in trace("09-errors") if "Action: Originate" in t.text)
    server = await replay([*preamble(trace), originate])  # never answered
    link, _ = await ami(server)
    pending = asyncio.create_task(link.send(actions.originate(
        "Local/talk@citizen", "incoming", "12345", caller_id_number="13800138000")))
    await server.wait_for(lambda s: len(s.actions_named("Originate")) == 1)
    server.drop()
    with pytest.raises(AmiActionLost, match="可能已执行"):
        await pending
    await until(lambda: server.connections == 2 and link.state is LinkState.READY)
    # After the reconnect (FullyBooted included) the link sends something else ...
    assert (await link.send(actions.ping())).response["Ping"] == "Pong"
    # ... and the Originate was sent exactly once.
    assert [a.connection for a in server.actions_named("Originate")] == [1]
    assert link.counters.actions_lost == 1


async def test_idempotent_action_is_retried_once_after_reconnect(
        replay: Any, ami: Any, trace: Any) -> None:
    lines = trace("03-pause-status")
    start = next(i for i, t in enumerate(lines) if "Action: QueueStatus" in t.text)
    server = await replay([*preamble(trace), lines[start]])  # first time: no answer
    link, _ = await ami(server)
    pending = asyncio.create_task(link.send(actions.queue_status("12345"), timeout=5))
    await server.wait_for(lambda s: len(s.actions_named("QueueStatus")) == 1)
    server.trace = [*preamble(trace), *lines[start:start + 6]]  # answered next time
    server.drop()
    status = await pending
    assert status.events[-1].event == "QueueStatusComplete"
    assert [a.connection for a in server.actions_named("QueueStatus")] == [1, 2]


async def test_idempotent_action_lost_twice_fails(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay([*preamble(trace), sent("Action: QueueStatus\r\n\r\n")])
    link, _ = await ami(server)
    pending = asyncio.create_task(link.send(actions.queue_status(), timeout=5))
    for n in (1, 2):
        await server.wait_for(lambda s: len(s.actions_named("QueueStatus")) == n)
        server.drop()
    with pytest.raises(AmiNotConnected):
        await pending
    assert len(server.actions_named("QueueStatus")) == 2


# -- safe values only ----------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    lambda: actions.queue_pause("12345", "Local/1001@seats/n", True,
                                "午休\r\nAction: Originate\r\nChannel: Local/x@y"),
    lambda: actions.originate("Local/talk@citizen", "incoming", "12345",
                              caller_id_number="138\n00138000"),
    lambda: actions.queue_add("12345", "Local/1001@seats/n", "seat\r\n", "Local/1001@seats"),
    lambda: AmiAction("QueuePause", (("Reason", "a\nb"),)),
    lambda: AmiAction("Ping\r\nAction: Originate"),
    lambda: AmiAction("Ping", (("Bad Header", "x"),)),
])
def test_action_with_line_break_cannot_be_built(build: Callable[[], AmiAction]) -> None:
    with pytest.raises(UnsafeActionValue):
        build()


async def test_nothing_unsafe_reaches_the_socket(replay: Any, ami: Any, trace: Any) -> None:
    server = await replay(preamble(trace))
    link, _ = await ami(server)
    with pytest.raises(TypeError):
        await link.send({"Action": "Originate", "Channel": "x\r\nAction: Hangup"})
    proto = AmiProtocol(on_event=lambda m: None, counters=LinkCounters(), max_message_bytes=1)
    with pytest.raises(TypeError):  # panoramisk's unescaped writer is disabled
        proto.send({"Action": "Ping"})
    assert (await link.send(actions.ping())).response["Ping"] == "Pong"
    line = re.compile(r"^[A-Za-z][A-Za-z0-9-]*: [^\x00-\x1f]*$")
    for action in server.received:
        body = action.text.removesuffix("\r\n\r\n")
        assert all(line.match(part) for part in body.split("\r\n")), action.text
    assert [a.name for a in server.received] == ["Login", "Ping"]
