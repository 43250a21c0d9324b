"""Resynchronise seat board and calls with Asterisk after every (re)login.

While the link was down calls went on without us. On login we ask Asterisk what exists now
(``CoreShowChannels``, then ``QueueStatus``) and let the tracker close what is gone with an
honest ``unknown_end`` and adopt waiting callers it did not know.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from telephony import actions
from telephony.calls import CallTracker
from telephony.dispatch import Clock
from telephony.events import ChannelListed, MemberState, QueueEntry, parse_event
from telephony.model import CallRecord
from telephony.ports import ActionSender

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResyncReport:
    """What a resync found: members, waiting callers, live channels, calls closed."""

    members: tuple[MemberState, ...]
    entries: tuple[QueueEntry, ...]
    live_channels: int
    closed: tuple[CallRecord, ...]
    at: datetime


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


async def resync(link: ActionSender, tracker: CallTracker, clock: Clock) -> ResyncReport:
    """Bring ``tracker`` (and its board) in line with what Asterisk has now."""
    # Channels first: a call that joins after this snapshot is not in it, so only calls
    # already known when we asked may be closed (``snapshot_at``).
    snapshot_at = clock()
    reply = await link.send(actions.core_show_channels())
    live: set[str] = set()
    for message in reply.events:
        event = parse_event(message)
        if isinstance(event, ChannelListed):
            live.add(event.uniqueid)
    members, entries = await fetch_status(link)
    now = clock()
    closed = tracker.resync(members, entries, live, now, known_before=snapshot_at)
    if closed:
        log.warning("resync: %d call(s) ended while the AMI link was down; closed as "
                    "unknown_end", len(closed))
    return ResyncReport(tuple(members), tuple(entries), len(live), tuple(closed), now)
