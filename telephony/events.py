"""Typed AMI events: the rest of the service never sees a raw AMI dict.

:func:`parse_event` turns one AMI message (a panoramisk ``Message`` or any mapping of header
to value) into a frozen dataclass, or ``None`` for events the service does not use
(``Newexten``, ``DeviceStateChange`` ... about two thirds of Asterisk's traffic). Events the
service uses but that arrive with a field missing or malformed raise
:class:`MalformedEvent`, which the dispatcher logs once and skips.

Field names and meanings follow Asterisk 22's app_queue / manager docs and the recorded
sessions in ``../shared/ami-traces``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from telephony.errors import TelephonyError


class MalformedEvent(TelephonyError):
    """An event the service relies on lacks a field or has an unparseable value."""

    def __init__(self, event: str, field: str, reason: str) -> None:
        self.event = event
        self.field = field
        super().__init__(f"{event}: field {field!r} {reason}")


class DeviceStatus(enum.IntEnum):
    """``Status`` of a queue member: Asterisk's ``AST_DEVICE_*`` codes."""

    UNKNOWN = 0
    NOT_INUSE = 1
    INUSE = 2
    BUSY = 3
    INVALID = 4
    UNAVAILABLE = 5
    RINGING = 6
    RINGINUSE = 7
    ONHOLD = 8


class MemberChange(str, enum.Enum):
    """Which event carried a queue member's state."""

    ADDED = "QueueMemberAdded"
    REMOVED = "QueueMemberRemoved"
    STATUS = "QueueMemberStatus"
    PAUSE = "QueueMemberPause"
    LISTED = "QueueMember"          # one row of a QueueStatus response
    PENALTY = "QueueMemberPenalty"


@dataclass(frozen=True, slots=True)
class FullyBooted:
    """Asterisk finished booting (sent right after every login)."""


@dataclass(frozen=True, slots=True)
class CallerJoined:
    """``QueueCallerJoin``: a caller entered a queue."""

    queue: str
    channel: str
    uniqueid: str
    linkedid: str
    caller_number: str
    position: int
    count: int


@dataclass(frozen=True, slots=True)
class CallerLeft:
    """``QueueCallerLeave``: a caller left the queue (answered, abandoned or timed out)."""

    queue: str
    channel: str
    uniqueid: str
    position: int
    count: int


@dataclass(frozen=True, slots=True)
class CallerAbandoned:
    """``QueueCallerAbandon``: the caller hung up while waiting."""

    queue: str
    channel: str
    uniqueid: str
    hold_time: int
    position: int
    original_position: int


@dataclass(frozen=True, slots=True)
class AgentCalled:
    """``AgentCalled``: a seat is being rung for a waiting caller."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    dest_channel: str


@dataclass(frozen=True, slots=True)
class AgentRingNoAnswer:
    """``AgentRingNoAnswer``: the seat did not answer within the ring timeout."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    ring_time_ms: int


@dataclass(frozen=True, slots=True)
class AgentConnect:
    """``AgentConnect``: the seat answered; caller and seat are bridged."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    dest_channel: str
    hold_time: int
    ring_time: int


@dataclass(frozen=True, slots=True)
class AgentComplete:
    """``AgentComplete``: the queue call finished. ``uniqueid`` is empty when Asterisk no longer
    had the caller's channel (after a blind transfer, trace 05): match it by member."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    hold_time: int
    talk_time: int
    reason: str


@dataclass(frozen=True, slots=True)
class MemberState:
    """A queue member's state from QueueMemberAdded/Removed/Status/Pause or a QueueStatus row."""

    change: MemberChange
    queue: str
    interface: str
    member_name: str
    status: DeviceStatus
    paused: bool
    paused_reason: str
    in_call: bool
    penalty: int
    calls_taken: int
    # Epoch of the member's last pause (kept after an unpause); 0: never paused since it was
    # added, so Asterisk knows nothing of its pause (measured on Asterisk 22.5).
    last_pause: int = 0


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One waiting caller in a QueueStatus response."""

    queue: str
    position: int
    channel: str
    uniqueid: str
    caller_number: str
    wait: int


@dataclass(frozen=True, slots=True)
class ChannelListed:
    """One channel in a CoreShowChannels response.

    Asterisk 22.5, a queue call bridged to a seat: the caller's leg runs ``Application: Queue``
    (``ApplicationData: 12345,t,,,120``, the queue first) and the seat's leg ``AppQueue``
    (``(Outgoing Line)``), both with the same ``BridgeId``; ``Duration`` is ``HH:MM:SS``
    since the channel was created (measured on a scratch Asterisk, see ``telephony/resync.py``).
    """

    channel: str
    uniqueid: str
    linkedid: str
    application: str
    bridge_id: str
    application_data: str = ""
    duration: int = 0          # seconds since the channel was created
    caller_number: str = ""


@dataclass(frozen=True, slots=True)
class PbxShutdown:
    """``Shutdown``: Asterisk is stopping (``core stop now``/``restart``). It comes after the
    hang-ups it caused: waiting callers first get ``QueueCallerAbandon`` and a ``Hangup`` with
    ``Cause: 0`` (measured on Asterisk 22.5; a citizen hanging up gives ``Cause: 16``)."""

    restart: bool


@dataclass(frozen=True, slots=True)
class ChannelHangup:
    """``Hangup`` of any channel (caller, seat leg, department)."""

    channel: str
    uniqueid: str
    linkedid: str
    cause: int


@dataclass(frozen=True, slots=True)
class ChannelHold:
    """``Hold``/``Unhold`` on a channel (the seat's leg during an attended transfer)."""

    channel: str
    uniqueid: str
    on_hold: bool


@dataclass(frozen=True, slots=True)
class ChannelBridged:
    """``BridgeEnter``: a channel joined a bridge. During an attended transfer the
    department's Local leg enters the consultation bridge at once, still ringing (``up``
    False; measured on the real Asterisk 22.5 with a busy department), so only a leg that is
    up (here or by :class:`ChannelUp` later) has answered."""

    channel: str
    uniqueid: str
    linkedid: str
    bridge_id: str
    up: bool


@dataclass(frozen=True, slots=True)
class ChannelUp:
    """``Newstate`` to ``Up`` (6): a channel answered (the department's leg of a
    consultation: trace 06, 4.614 s). Other state changes are not used."""

    channel: str
    uniqueid: str
    linkedid: str


@dataclass(frozen=True, slots=True)
class TransferDone:
    """``AttendedTransfer`` / ``BlindTransfer``: Asterisk's own report of a transfer, whoever
    started it (the service's ``Atxfer`` or a seat phone's feature code ``*2``/``#1``).

    ``transferee_uniqueid`` is the caller's channel (the queue call's Uniqueid),
    ``transferer_channel`` the seat's leg, ``target`` the extension the call went to (the
    department number), ``success`` whether Asterisk completed it (``Result: Success``).
    Measured on the real Asterisk 22.5: an ``Atxfer`` completed by the seat hanging up sends
    ``AttendedTransfer`` with ``TransferTargetExten: 8002`` and then ``AgentComplete`` with
    ``Reason: transfer``; but in about half the runs the ``TransferTarget*`` fields are
    missing altogether (``target`` is then empty and the tracker names the department from
    the consultation it saw, see :class:`ChannelBridged`).
    """

    attended: bool
    success: bool
    result: str
    transferee_uniqueid: str
    transferer_channel: str
    target: str


@dataclass(frozen=True, slots=True)
class VariableSet:
    """``VarSet`` of a variable the service watches (``ASR_UUID``)."""

    channel: str
    uniqueid: str
    linkedid: str
    variable: str
    value: str


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """``OriginateResponse``: the outcome of an async Originate (``Reason`` 4 = answered)."""

    action_id: str
    success: bool
    channel: str
    uniqueid: str
    reason: int


@dataclass(frozen=True, slots=True)
class SurveyResult:
    """``UserEvent: SurveyResult`` from the survey dialplan: the citizen's rating (回访)."""

    ticket: str
    rating: str
    read_status: str
    channel: str
    uniqueid: str


AmiEvent: TypeAlias = (
    FullyBooted | CallerJoined | CallerLeft | CallerAbandoned | AgentCalled
    | AgentRingNoAnswer | AgentConnect | AgentComplete | MemberState | QueueEntry
    | ChannelListed | ChannelHangup | ChannelHold | ChannelBridged | ChannelUp | TransferDone
    | VariableSet | OriginateResult | SurveyResult | PbxShutdown
)

# Variables whose VarSet matters; every other VarSet (a third of all traffic) is dropped early.
WATCHED_VARIABLES: Final = frozenset({"ASR_UUID"})


def _req(m: Mapping[str, str], event: str, key: str) -> str:
    value = m.get(key)
    if value is None or value == "":
        raise MalformedEvent(event, key, "is missing")
    return value


def _int(m: Mapping[str, str], event: str, key: str, default: int | None = None) -> int:
    value = m.get(key)
    if value is None or value == "":
        if default is None:
            raise MalformedEvent(event, key, "is missing")
        return default
    try:
        return int(value)
    except ValueError:
        raise MalformedEvent(event, key, f"is not an integer: {value[:40]!r}") from None


def _caller_number(m: Mapping[str, str]) -> str:
    number = m.get("CallerIDNum") or ""
    return "" if number in ("<unknown>", "unknown") else number


def _joined(m: Mapping[str, str]) -> CallerJoined:
    e = "QueueCallerJoin"
    return CallerJoined(_req(m, e, "Queue"), _req(m, e, "Channel"), _req(m, e, "Uniqueid"),
                        m.get("Linkedid") or "", _caller_number(m), _int(m, e, "Position", 0),
                        _int(m, e, "Count", 0))


def _left(m: Mapping[str, str]) -> CallerLeft:
    e = "QueueCallerLeave"
    return CallerLeft(_req(m, e, "Queue"), _req(m, e, "Channel"), _req(m, e, "Uniqueid"),
                      _int(m, e, "Position", 0), _int(m, e, "Count", 0))


def _abandoned(m: Mapping[str, str]) -> CallerAbandoned:
    e = "QueueCallerAbandon"
    return CallerAbandoned(_req(m, e, "Queue"), _req(m, e, "Channel"), _req(m, e, "Uniqueid"),
                           _int(m, e, "HoldTime", 0), _int(m, e, "Position", 0),
                           _int(m, e, "OriginalPosition", 0))


def _called(m: Mapping[str, str]) -> AgentCalled:
    e = "AgentCalled"
    return AgentCalled(_req(m, e, "Queue"), _req(m, e, "Uniqueid"), _req(m, e, "Interface"),
                       m.get("MemberName") or "", m.get("DestChannel") or "")


def _ring_no_answer(m: Mapping[str, str]) -> AgentRingNoAnswer:
    e = "AgentRingNoAnswer"
    return AgentRingNoAnswer(_req(m, e, "Queue"), _req(m, e, "Uniqueid"),
                             _req(m, e, "Interface"), m.get("MemberName") or "",
                             _int(m, e, "RingTime", 0))


def _connect(m: Mapping[str, str]) -> AgentConnect:
    e = "AgentConnect"
    return AgentConnect(_req(m, e, "Queue"), _req(m, e, "Uniqueid"), _req(m, e, "Interface"),
                        m.get("MemberName") or "", m.get("DestChannel") or "",
                        _int(m, e, "HoldTime", 0), _int(m, e, "RingTime", 0))


def _complete(m: Mapping[str, str]) -> AgentComplete:
    e = "AgentComplete"
    return AgentComplete(_req(m, e, "Queue"), m.get("Uniqueid") or "", _req(m, e, "Interface"),
                         m.get("MemberName") or "", _int(m, e, "HoldTime", 0),
                         _int(m, e, "TalkTime", 0), m.get("Reason") or "")


def _member(change: MemberChange) -> Callable[[Mapping[str, str]], MemberState]:
    # QueueStatus rows name the interface "Location" and the member "Name" (trace 03).
    interface_key, name_key = (("Location", "Name") if change is MemberChange.LISTED
                               else ("Interface", "MemberName"))

    def build(m: Mapping[str, str]) -> MemberState:
        e = change.value
        status = _int(m, e, "Status", 0)
        try:
            device = DeviceStatus(status)
        except ValueError:
            raise MalformedEvent(e, "Status", f"unknown device status {status}") from None
        return MemberState(change, _req(m, e, "Queue"), _req(m, e, interface_key),
                           m.get(name_key) or "", device, m.get("Paused") == "1",
                           m.get("PausedReason") or "", m.get("InCall") == "1",
                           _int(m, e, "Penalty", 0), _int(m, e, "CallsTaken", 0),
                           _int(m, e, "LastPause", 0))
    return build


def _entry(m: Mapping[str, str]) -> QueueEntry:
    e = "QueueEntry"
    return QueueEntry(_req(m, e, "Queue"), _int(m, e, "Position", 0), _req(m, e, "Channel"),
                      _req(m, e, "Uniqueid"), _caller_number(m), _int(m, e, "Wait", 0))


def _duration(m: Mapping[str, str], event: str) -> int:
    value = m.get("Duration") or ""
    if not value:
        return 0
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise MalformedEvent(event, "Duration", f"is not HH:MM:SS: {value[:40]!r}")
    hours, minutes, seconds = (int(p) for p in parts)
    return hours * 3600 + minutes * 60 + seconds


def _listed(m: Mapping[str, str]) -> ChannelListed:
    e = "CoreShowChannel"
    return ChannelListed(_req(m, e, "Channel"), _req(m, e, "Uniqueid"), m.get("Linkedid") or "",
                         m.get("Application") or "", m.get("BridgeId") or "",
                         m.get("ApplicationData") or "", _duration(m, e), _caller_number(m))


def _hangup(m: Mapping[str, str]) -> ChannelHangup:
    e = "Hangup"
    return ChannelHangup(_req(m, e, "Channel"), _req(m, e, "Uniqueid"), m.get("Linkedid") or "",
                         _int(m, e, "Cause", 0))


def _hold(on_hold: bool) -> Callable[[Mapping[str, str]], ChannelHold]:
    def build(m: Mapping[str, str]) -> ChannelHold:
        e = "Hold" if on_hold else "Unhold"
        return ChannelHold(_req(m, e, "Channel"), _req(m, e, "Uniqueid"), on_hold)
    return build


def _bridged(m: Mapping[str, str]) -> ChannelBridged:
    e = "BridgeEnter"
    return ChannelBridged(_req(m, e, "Channel"), _req(m, e, "Uniqueid"), m.get("Linkedid") or "",
                          m.get("BridgeUniqueid") or "", m.get("ChannelState") == _UP)


_UP: Final = "6"   # AST_STATE_UP


def _newstate(m: Mapping[str, str]) -> ChannelUp | None:
    if m.get("ChannelState") != _UP:
        return None
    e = "Newstate"
    return ChannelUp(_req(m, e, "Channel"), _req(m, e, "Uniqueid"), m.get("Linkedid") or "")


_LOCAL_EXTEN = re.compile(r"^Local/([^@/;]+)@")


def leg_of(channel: str) -> str:
    """A channel name without a Local channel's ``;1``/``;2`` half: both halves of the
    caller's or the seat's Local channel are that one leg of the call."""
    return channel.rsplit(";", 1)[0]


def local_extension(channel: str) -> str:
    """``Local/8002@departments-00000002;1`` → ``8002``; ``""`` for other channels."""
    found = _LOCAL_EXTEN.match(channel)
    return found.group(1) if found else ""


def _transfer_target(m: Mapping[str, str], exten_key: str, channel_key: str) -> str:
    """The department number a transfer went to: the target's dialplan extension, else the
    extension of a ``Local/<exten>@<context>`` target channel."""
    exten = m.get(exten_key) or ""
    if exten and exten not in ("s", "<unknown>"):
        return exten
    return local_extension(m.get(channel_key) or "")


def _attended(m: Mapping[str, str]) -> TransferDone:
    result = m.get("Result") or ""
    return TransferDone(True, result == "Success", result, m.get("TransfereeUniqueid") or "",
                        m.get("OrigTransfererChannel") or "",
                        _transfer_target(m, "TransferTargetExten", "TransferTargetChannel"))


def _blind(m: Mapping[str, str]) -> TransferDone:
    result = m.get("Result") or ""
    return TransferDone(False, result == "Success", result, m.get("TransfereeUniqueid") or "",
                        m.get("TransfererChannel") or "", m.get("Extension") or "")


def _varset(m: Mapping[str, str]) -> VariableSet | None:
    variable = m.get("Variable") or ""
    if variable not in WATCHED_VARIABLES:
        return None
    e = "VarSet"
    return VariableSet(_req(m, e, "Channel"), _req(m, e, "Uniqueid"), m.get("Linkedid") or "",
                       variable, m.get("Value") or "")


def _originate(m: Mapping[str, str]) -> OriginateResult:
    e = "OriginateResponse"
    uniqueid = m.get("Uniqueid") or ""
    return OriginateResult(m.get("ActionID") or "", m.get("Response") == "Success",
                           m.get("Channel") or "",
                           "" if uniqueid == "<unknown>" else uniqueid,
                           _int(m, e, "Reason", 0))


def _user_event(m: Mapping[str, str]) -> SurveyResult | None:
    if m.get("UserEvent") != "SurveyResult":
        return None
    e = "UserEvent"
    return SurveyResult(_req(m, e, "Ticket"), m.get("Rating") or "", m.get("ReadStatus") or "",
                        m.get("Channel") or "", m.get("Uniqueid") or "")


_Builder: TypeAlias = Callable[[Mapping[str, str]], AmiEvent | None]
_BUILDERS: Final[dict[str, _Builder]] = {
    "FullyBooted": lambda m: FullyBooted(),
    "Shutdown": lambda m: PbxShutdown(m.get("Restart") == "True"),
    "QueueCallerJoin": _joined,
    "QueueCallerLeave": _left,
    "QueueCallerAbandon": _abandoned,
    "AgentCalled": _called,
    "AgentRingNoAnswer": _ring_no_answer,
    "AgentConnect": _connect,
    "AgentComplete": _complete,
    "QueueEntry": _entry,
    "CoreShowChannel": _listed,
    "Hangup": _hangup,
    "Hold": _hold(True),
    "Unhold": _hold(False),
    "BridgeEnter": _bridged,
    "Newstate": _newstate,
    "AttendedTransfer": _attended,
    "BlindTransfer": _blind,
    "VarSet": _varset,
    "OriginateResponse": _originate,
    "UserEvent": _user_event,
    **{c.value: _member(c) for c in MemberChange},
}

HANDLED_EVENTS: Final = frozenset(_BUILDERS)


def parse_event(message: Mapping[str, str]) -> AmiEvent | None:
    """Type one AMI event; ``None`` if the service does not use this event.

    Raises :class:`MalformedEvent` when a used event lacks a required field.
    """
    builder = _BUILDERS.get(message.get("Event") or "")
    return None if builder is None else builder(message)
