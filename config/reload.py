"""What a config reload (SIGHUP) changes in Asterisk's queue memberships.

A pure function: the service turns :class:`MembershipDiff` into ``QueueRemove``, ``QueueAdd``
and ``QueuePenalty`` actions (in that order, so a seat that moves interface is never in a
queue twice).
"""

from __future__ import annotations

from dataclasses import dataclass

from config.schema import HotlineConfig, QueuesConfig


@dataclass(frozen=True, slots=True, order=True)
class MemberSpec:
    """Everything ``QueueAdd`` needs for one seat in one queue."""

    queue: str
    interface: str
    member_name: str
    state_interface: str
    penalty: int
    extension: str


@dataclass(frozen=True, slots=True, order=True)
class MemberRef:
    """A member to ``QueueRemove`` (Asterisk identifies members by queue + interface)."""

    queue: str
    interface: str


@dataclass(frozen=True, slots=True, order=True)
class PenaltyChange:
    """A member that stays but gets a new penalty (``QueuePenalty``)."""

    queue: str
    interface: str
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class MembershipDiff:
    """The changes between two configs, each list sorted (deterministic action order)."""

    remove: tuple[MemberRef, ...]
    add: tuple[MemberSpec, ...]
    repenalise: tuple[PenaltyChange, ...]

    def __bool__(self) -> bool:
        return bool(self.remove or self.add or self.repenalise)


def member_specs(queues: QueuesConfig) -> dict[tuple[str, str], MemberSpec]:
    """Every member the queues section asks for, keyed by ``(queue, interface)``."""
    specs: dict[tuple[str, str], MemberSpec] = {}
    for queue in queues.queues:
        for seat in queue.seats:
            spec = MemberSpec(
                queue=queue.name,
                interface=queues.interface_for(seat),
                member_name=queues.member_name_for(seat),
                state_interface=queues.state_interface_for(seat),
                penalty=seat.penalty,
                extension=seat.extension,
            )
            specs[(spec.queue, spec.interface)] = spec
    return specs


def diff_memberships(old: HotlineConfig | QueuesConfig,
                     new: HotlineConfig | QueuesConfig) -> MembershipDiff:
    """Members to remove, add and re-penalise to go from ``old`` to ``new``.

    A member whose name or state interface changed is removed and added again: Asterisk has
    no action to change those in place (``QueuePenalty`` only changes the penalty).
    """
    before = member_specs(old.queues if isinstance(old, HotlineConfig) else old)
    after = member_specs(new.queues if isinstance(new, HotlineConfig) else new)
    remove: list[MemberRef] = []
    add: list[MemberSpec] = []
    repenalise: list[PenaltyChange] = []
    for key, was in before.items():
        now = after.get(key)
        if now is None or (now.member_name, now.state_interface) != (
                was.member_name, was.state_interface):
            remove.append(MemberRef(*key))
            if now is not None:
                add.append(now)
        elif now.penalty != was.penalty:
            repenalise.append(PenaltyChange(was.queue, was.interface, was.penalty, now.penalty))
    add.extend(spec for key, spec in after.items() if key not in before)
    return MembershipDiff(tuple(sorted(remove)), tuple(sorted(add)), tuple(sorted(repenalise)))
