"""Work orders (工单): their lifecycle, who may move them, and their readable numbers.

The lifecycle is an explicit table (:data:`TRANSITIONS`): a ``(status, action)`` pair not in it
is refused with :class:`IllegalTransition`, the way starlette's ``WebSocketState`` refuses an
illegal change. The main line is the 12345 closed loop (受理闭环)::

    受理 accepted -审核-> reviewed -派单-> dispatched -签收-> signed -办理-> handling
      -反馈-> replied -回访-> surveyed -归档-> archived

and the side roads:

* 退回 return: a unit hands back an order that is not its duty (before or after signing);
  it goes to ``returned`` and the office dispatches it again.
* 延期 extend: the office grants more time; the status stays, ``extensions`` counts up to a
  limit (3 by the rules, configurable).
* 督办 supervise: the office flags an overdue open order; the status stays.
* 重办 reopen: after an unsatisfied callback (回访不满意) the order goes back to ``handling``.

Who may do what is :data:`PERMITTED_ROLES`; a unit may act only on its own orders (checked
by the store, which knows the order's unit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from channels.citizen_status import CitizenStatus
from config.kinds import DemandType, Urgency

Role = Literal["router", "office", "unit"]


class TicketStatus(StrEnum):
    """Where a work order is in its lifecycle (stored as the value)."""

    ACCEPTED = "accepted"  # 受理
    REVIEWED = "reviewed"  # 审核
    DISPATCHED = "dispatched"  # 派单
    SIGNED = "signed"  # 签收
    HANDLING = "handling"  # 办理
    REPLIED = "replied"  # 反馈
    SURVEYED = "surveyed"  # 回访
    ARCHIVED = "archived"  # 归档
    RETURNED = "returned"  # 退回 (waits for the office to dispatch again)


class TicketAction(StrEnum):
    """What an actor does to a work order; ``accept`` only ever creates one."""

    ACCEPT = "accept"  # 受理
    REVIEW = "review"  # 审核
    DISPATCH = "dispatch"  # 派单 (also re-dispatch after a return)
    SIGN = "sign"  # 签收
    HANDLE = "handle"  # 办理
    REPLY = "reply"  # 反馈
    SURVEY = "survey"  # 回访
    ARCHIVE = "archive"  # 归档
    RETURN = "return"  # 退回
    EXTEND = "extend"  # 延期
    SUPERVISE = "supervise"  # 督办
    REOPEN = "reopen"  # 重办
    # 期限重算: the router recounts provisional deadlines once the year's official holiday
    # arrangement is entered (router.provisional); the status stays. Not an API action.
    RESCHEDULE = "reschedule"


S, A = TicketStatus, TicketAction

TRANSITIONS: dict[tuple[TicketStatus, TicketAction], TicketStatus] = {
    (S.ACCEPTED, A.REVIEW): S.REVIEWED,
    (S.REVIEWED, A.DISPATCH): S.DISPATCHED,
    (S.RETURNED, A.DISPATCH): S.DISPATCHED,
    (S.DISPATCHED, A.SIGN): S.SIGNED,
    (S.DISPATCHED, A.RETURN): S.RETURNED,
    (S.SIGNED, A.RETURN): S.RETURNED,
    (S.SIGNED, A.HANDLE): S.HANDLING,
    (S.HANDLING, A.REPLY): S.REPLIED,
    (S.REPLIED, A.SURVEY): S.SURVEYED,
    (S.SURVEYED, A.ARCHIVE): S.ARCHIVED,
    (S.SURVEYED, A.REOPEN): S.HANDLING,
    # Events that leave the status where it is.
    (S.SIGNED, A.EXTEND): S.SIGNED,
    (S.HANDLING, A.EXTEND): S.HANDLING,
    (S.DISPATCHED, A.SUPERVISE): S.DISPATCHED,
    (S.SIGNED, A.SUPERVISE): S.SIGNED,
    (S.HANDLING, A.SUPERVISE): S.HANDLING,
}
"""Every allowed ``(from status, action) -> to status``; anything else is illegal."""

PERMITTED_ROLES: dict[TicketAction, frozenset[Role]] = {
    A.ACCEPT: frozenset({"router", "office"}),
    # The router reviews and dispatches on its own when its classification is confident.
    A.REVIEW: frozenset({"router", "office"}),
    A.DISPATCH: frozenset({"router", "office"}),
    A.SIGN: frozenset({"unit"}),
    A.HANDLE: frozenset({"unit"}),
    A.REPLY: frozenset({"unit"}),
    A.RETURN: frozenset({"unit"}),
    # The office approves extensions and runs callbacks, supervision and archiving.
    A.EXTEND: frozenset({"office"}),
    A.SURVEY: frozenset({"office"}),
    A.ARCHIVE: frozenset({"office"}),
    A.SUPERVISE: frozenset({"office"}),
    A.REOPEN: frozenset({"office"}),
    A.RESCHEDULE: frozenset({"router"}),
}

CITIZEN_STATUS: dict[TicketStatus, CitizenStatus] = {
    # The office's review is its own business: to the citizen the order is still 已受理.
    S.ACCEPTED: "accepted",
    S.REVIEWED: "accepted",
    S.DISPATCHED: "dispatched",
    S.SIGNED: "signed",
    S.HANDLING: "handling",
    S.REPLIED: "replied",
    S.SURVEYED: "surveyed",
    S.ARCHIVED: "archived",
    # No unit holds it until the office dispatches it again; the unit's reasons stay inside.
    S.RETURNED: "redispatching",
}
"""What the citizen's status query answers for an order in each status: the one mapping from
the order to the citizen's view (:mod:`channels.citizen_status`)."""

OPEN_STATUSES: frozenset[TicketStatus] = frozenset({S.DISPATCHED, S.SIGNED, S.HANDLING})
"""Statuses in which a unit holds the order and a deadline runs."""


class TicketError(Exception):
    """Root of the ticket errors; ``code`` is stable (the HTTP layer answers it with its
    status), the message is Chinese with the English reason."""

    code = "ticket_error"

    @property
    def message(self) -> str:
        """The error's text, as raised."""
        return str(self)

    @property
    def details(self) -> dict[str, Any]:
        """Nothing more than the message says."""
        return {}


class TicketNotFound(TicketError):
    """No ticket with that number."""

    code = "ticket_not_found"

    def __init__(self, number: str) -> None:
        super().__init__(f"工单不存在 (no ticket {number})")
        self.number = number


class IllegalTransition(TicketError):
    """The action is not allowed from the ticket's current status (or its guard failed)."""

    code = "illegal_transition"

    def __init__(self, status: TicketStatus, action: TicketAction, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"工单状态 {status.value} 不允许操作 {action.value}"
            f" (action {action.value!r} not allowed in status {status.value!r}){detail}"
        )
        self.status = status
        self.action = action
        self.reason = reason


class ExtensionLimitReached(IllegalTransition):
    """The order already had the maximum number of extensions (延期最多 3 次)."""

    code = "extension_limit_reached"


class PermissionDenied(TicketError):
    """The actor may not take this action on this order."""

    code = "permission_denied"

    def __init__(self, actor: Actor, action: TicketAction, reason: str) -> None:
        super().__init__(f"无权操作 (actor {actor} may not {action.value}): {reason}")
        self.actor = actor
        self.action = action


class TicketNumbersExhausted(TicketError):
    """More orders in one day than the number format holds."""

    code = "ticket_numbers_exhausted"


_ACTOR = re.compile(r"^(?:router|office:[^\s:]{1,120}|unit:[^\s:]{1,120})$")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the router, an office user (``office:<user>``) or a unit (``unit:<id>``)."""

    role: Role
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> Actor:
        """``'router'``, ``'office:zhang'`` or ``'unit:gov.housing'``; ValueError otherwise."""
        if not _ACTOR.match(text):
            raise ValueError(
                f"操作人格式错误 (actor {text!r}): use 'router', 'office:<user>' or 'unit:<unit_id>'"
            )
        role, _, name = text.partition(":")
        return cls(role=role, name=name or None)  # type: ignore[arg-type]  # regex-checked

    def __str__(self) -> str:
        return self.role if self.name is None else f"{self.role}:{self.name}"


ROUTER = Actor("router")


def next_status(
    status: TicketStatus,
    action: TicketAction,
    *,
    extensions: int = 0,
    max_extensions: int = 3,
    survey_satisfied: bool | None = None,
) -> TicketStatus:
    """The status after ``action``, or raise :class:`IllegalTransition`.

    Beyond the table, two guards: an extension only while fewer than ``max_extensions`` were
    granted, and a reopen (重办) only after an unsatisfied callback.
    """
    target = TRANSITIONS.get((status, action))
    if target is None:
        raise IllegalTransition(status, action)
    if action is A.EXTEND and extensions >= max_extensions:
        raise ExtensionLimitReached(
            status, action, f"已延期 {extensions} 次, 最多 {max_extensions} 次"
        )
    if action is A.REOPEN and survey_satisfied is not False:
        raise IllegalTransition(status, action, "只有回访不满意的工单可以重办 (not unsatisfied)")
    return target


def check_actor(actor: Actor, action: TicketAction, unit_id: str | None) -> None:
    """Raise :class:`PermissionDenied` unless ``actor`` may take ``action`` on an order
    held by ``unit_id``: the role must be permitted, and a unit acts only on its own orders."""
    if actor.role not in PERMITTED_ROLES[action]:
        raise PermissionDenied(actor, action, f"角色 {actor.role} 不能执行此操作")
    if actor.role == "unit" and actor.name != unit_id:
        raise PermissionDenied(actor, action, "只能操作本单位的工单 (not this unit's order)")


# Ticket numbers are read by people in China: the day in them is the Beijing date. China has
# had no daylight saving since 1991, so a fixed offset is exact and needs no tz database
# (zoneinfo would read files on the event loop).
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
SEQUENCE_DIGITS = 6


def number_day(at: datetime) -> str:
    """``YYYYMMDD`` of ``at`` (aware) in Beijing time."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} given; use an aware one")
    return at.astimezone(BEIJING).strftime("%Y%m%d")


def format_number(prefix: str, day: str, sequence: int) -> str:
    """``GD20261123000042``: prefix, Beijing date, 6-digit sequence of that day."""
    if not 1 <= sequence < 10**SEQUENCE_DIGITS:
        raise TicketNumbersExhausted(
            f"工单编号已用完 (day {day} has no ticket number left for sequence {sequence})"
        )
    return f"{prefix}{day}{sequence:0{SEQUENCE_DIGITS}d}"


def parse_number_day(number: str, prefix: str) -> date:
    """The Beijing date a ticket number was issued on (ValueError if it is not one)."""
    body = number.removeprefix(prefix)
    if body == number or len(body) != 8 + SEQUENCE_DIGITS or not body.isdigit():
        raise ValueError(f"not a ticket number: {number!r}")
    return datetime.strptime(body[:8], "%Y%m%d").date()


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewTicket(_Frozen):
    """What the router hands the store to create a work order for one intake."""

    intake_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    acceptance_no: str = Field(pattern=r"^[0-9]{16}$")
    channel: str = Field(max_length=16)
    type: DemandType
    urgency: Urgency
    unit_id: str | None = Field(default=None, max_length=64)
    title: str = Field(default="", max_length=500)
    text: str = ""
    citizen_name: str | None = Field(default=None, max_length=100)
    # Stored in full (the unit calls the citizen back); the log processors mask it.
    citizen_phone: str | None = Field(default=None, max_length=32, repr=False)
    citizen_email: str | None = Field(default=None, max_length=254, repr=False)
    citizen_app_user_id: str | None = Field(default=None, max_length=128)
    location: dict[str, Any] = Field(default_factory=dict)
    sign_by: datetime | None = None
    handle_by: datetime | None = None
    # The moment the deadlines were counted from, and whether they rest on a provisional
    # holiday calendar (a year without its official arrangement; router.calendar).
    deadlines_from: datetime | None = None
    deadline_provisional: bool = False
    repeat_of: str | None = None
    related_to: str | None = None
    # Why it was routed this way (rule, words, model scores), shown to the dispatcher.
    explanation: dict[str, Any] = Field(default_factory=dict)


class Ticket(NewTicket):
    """A stored work order."""

    number: str
    status: TicketStatus
    created_at: datetime
    updated_at: datetime
    extensions: int = 0
    supervised: bool = False
    survey_satisfied: bool | None = None
    survey_note: str | None = None
    surveyed_at: datetime | None = None


class TicketEvent(_Frozen):
    """One line of a ticket's audit trail."""

    ticket_number: str
    at: datetime
    actor: str
    action: TicketAction
    from_status: TicketStatus | None
    to_status: TicketStatus
    note: str = ""
