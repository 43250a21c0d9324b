"""Queue membership from config, applied to Asterisk as a diff.

The desired membership (config, minus seats an agent logged out) is compared with what
Asterisk reports (``QueueStatus``); the difference becomes ``QueueAdd`` / ``QueueRemove`` /
``QueuePenalty`` actions. Applied on every login (Asterisk may have restarted and lost its
dynamic members) and on every config reload (SIGHUP or the admin endpoint).

A member is (re-)added with the pause its seat should have (:mod:`telephony.pauses`): after
an Asterisk restart an agent at 会议 must not start receiving calls. A member Asterisk has
but knows nothing about the pause of (``LastPause: 0``, never paused since it was added:
a static member after a restart) is paused with ``QueuePause`` when its seat should be.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from telephony import actions
from telephony.actions import AmiAction
from telephony.errors import TelephonyError
from telephony.events import MemberState
from telephony.ports import ActionSender

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Membership:
    """One seat in one queue, as config wants it."""

    queue: str
    interface: str
    member_name: str
    state_interface: str
    penalty: int = 0
    paused: bool = False
    reason: str = ""


@dataclass(slots=True)
class ApplyReport:
    """What applying a plan did."""

    added: int = 0
    removed: int = 0
    penalised: int = 0
    paused: int = 0
    errors: list[str] = field(default_factory=list)


def plan(desired: Iterable[Membership], actual: Iterable[MemberState],
         managed_queues: Iterable[str]) -> list[AmiAction]:
    """Actions turning ``actual`` into ``desired`` for the queues the config manages.

    Members of queues the config does not mention are left alone.
    """
    managed = set(managed_queues)
    want = {(m.queue, m.interface): m for m in desired}
    have = {(a.queue, a.interface): a for a in actual if a.queue in managed}
    out: list[AmiAction] = []
    for key in sorted(have.keys() - want.keys()):
        out.append(actions.queue_remove(*key))
    for key in sorted(want.keys() - have.keys()):
        m = want[key]
        out.append(actions.queue_add(m.queue, m.interface, m.member_name, m.state_interface,
                                     penalty=m.penalty, paused=m.paused, reason=m.reason))
    for key in sorted(want.keys() & have.keys()):
        if want[key].penalty != have[key].penalty:
            out.append(actions.queue_penalty(key[0], key[1], want[key].penalty))
        if want[key].paused and not have[key].paused and not have[key].last_pause:
            out.append(actions.queue_pause(key[0], key[1], True, want[key].reason or None))
    return out


async def apply(link: ActionSender, plan_: Iterable[AmiAction]) -> ApplyReport:
    """Send each action; an Asterisk error on one does not stop the others."""
    report = ApplyReport()
    for action in plan_:
        try:
            await link.send(action)
        except TelephonyError as exc:
            report.errors.append(str(exc))
            log.error("queue membership: %s", exc)
            continue
        if action.name == "QueueAdd":
            report.added += 1
        elif action.name == "QueueRemove":
            report.removed += 1
        elif action.name == "QueuePause":
            report.paused += 1
        else:
            report.penalised += 1
    return report
