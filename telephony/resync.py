"""Resynchronise seat board and calls with Asterisk after every (re)login.

While the link was down calls went on without us. On login we ask Asterisk what exists now
(``CoreShowChannels``, then ``QueueStatus``) and let the tracker close what is gone with an
honest ``unknown_end``, adopt waiting callers it did not know, and adopt callers already
talking to a seat.

A queue call bridged to a seat, as Asterisk 22.5 lists it (measured on a scratch Asterisk):
the caller's channel runs ``Application: Queue`` with ``ApplicationData: 12345,t,,,120``
(the queue first), the seat's leg ``Application: AppQueue`` (``(Outgoing Line)``), and both
carry the same ``BridgeId``; the seat's ``QueueMember`` row says ``InCall: 1``. The seat leg
is named after the member's device (``Local/1001@seats-00000001;1`` for the interface
``Local/1001@seats/n``, ``PJSIP/1001-0000000a`` for ``PJSIP/1001``), which is how the leg is
matched to its member. Calls that began and ended while we could not see are not in either
list: :mod:`telephony.queue_log` reconciles them from Asterisk's own record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from telephony import actions
from telephony.calls import BridgedCall, CallTracker
from telephony.dispatch import Clock
from telephony.events import ChannelListed, MemberState, QueueEntry, parse_event
from telephony.model import CallRecord
from telephony.ports import ActionSender

log = logging.getLogger(__name__)

# A channel's name is its device plus "-<8 hex digits>" (and ";1"/";2" for Local channels).
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-f]{8}(;[12])?$")


@dataclass(frozen=True, slots=True)
class ResyncReport:
    """What a resync found: members, waiting callers, bridged calls, live channels, calls
    closed."""

    members: tuple[MemberState, ...]
    entries: tuple[QueueEntry, ...]
    live_channels: int
    closed: tuple[CallRecord, ...]
    at: datetime
    bridged: tuple[BridgedCall, ...] = ()


async def fetch_status(link: ActionSender) -> tuple[list[MemberState], list[QueueEntry]]:
    """``QueueStatus`` for every queue, typed."""
    reply = await link.send(actions.queue_status())
    members: list[MemberState] = []
    entries: list[QueueEntry] = []
    for message in reply.events:
        event = parse_event(message)
        if isinstance(event, MemberState):
            members.append(event)
        elif isinstance(event, QueueEntry):
            entries.append(event)
    return members, entries


def channel_device(channel: str) -> str:
    """``Local/1001@seats`` of ``Local/1001@seats-00000001;1``, ``PJSIP/1001`` of
    ``PJSIP/1001-0000000a``."""
    return _CHANNEL_SUFFIX.sub("", channel)


def interface_device(interface: str) -> str:
    """The device a queue interface dials: ``Local/1001@seats`` of ``Local/1001@seats/n``
    (a Local interface's options follow a second slash)."""
    if interface.startswith("Local/"):
        return "/".join(interface.split("/", 2)[:2])
    return interface


def bridged_calls(channels: Iterable[ChannelListed],
                  members: Iterable[MemberState]) -> list[BridgedCall]:
    """Queue callers bridged to a seat, from one ``CoreShowChannels`` and one ``QueueStatus``."""
    by_bridge: dict[str, list[ChannelListed]] = {}
    for ch in channels:
        if ch.bridge_id:
            by_bridge.setdefault(ch.bridge_id, []).append(ch)
    member_of: dict[tuple[str, str], str] = {}
    for m in members:
        member_of[(m.queue, interface_device(m.interface))] = m.interface
    out: list[BridgedCall] = []
    for legs in by_bridge.values():
        callers = [c for c in legs if c.application == "Queue"]
        seats = [c for c in legs if c.application == "AppQueue"]
        for caller in callers:
            queue = caller.application_data.split(",", 1)[0]
            for seat in seats:
                interface = member_of.get((queue, channel_device(seat.channel)))
                if interface is None:
                    continue
                out.append(BridgedCall(
                    uniqueid=caller.uniqueid, linkedid=caller.linkedid, queue=queue,
                    caller_channel=caller.channel, caller_number=caller.caller_number,
                    interface=interface, seat_channel=seat.channel,
                    age_seconds=caller.duration, seat_leg_seconds=seat.duration))
                break
            else:
                # E.g. during an attended transfer the seat leg consults in another bridge.
                log.info("resync: queue caller %s is bridged to no member of queue %s",
                         caller.uniqueid, queue)
    return out


async def resync(link: ActionSender, tracker: CallTracker, clock: Clock) -> ResyncReport:
    """Bring ``tracker`` (and its board) in line with what Asterisk has now."""
    # Channels first: a call that joins after this snapshot is not in it, so only calls
    # already known when we asked may be closed (``snapshot_at``).
    snapshot_at = clock()
    reply = await link.send(actions.core_show_channels())
    channels = [ev for ev in map(parse_event, reply.events) if isinstance(ev, ChannelListed)]
    live = {ch.uniqueid for ch in channels}
    members, entries = await fetch_status(link)
    bridged = bridged_calls(channels, members)
    now = clock()
    closed = tracker.resync(members, entries, live, now, known_before=snapshot_at,
                            bridged=bridged)
    if closed:
        log.warning("resync: %d call(s) ended while the AMI link was down; closed as "
                    "unknown_end", len(closed))
    return ResyncReport(tuple(members), tuple(entries), len(live), tuple(closed), now,
                        tuple(bridged))
