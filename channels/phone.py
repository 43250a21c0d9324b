"""Phone intakes: after a call, the agent's summary of the citizen's demand becomes an intake.

The agent desk posts an :class:`AgentSummary` (what the agent typed: the demand, the place, the
citizen's name, a callback number if the citizen asked for one) for a call the seat handled.
:func:`draft_from_call` turns it, with the tracker's :class:`~telephony.model.CallRecord`, into
an :class:`~channels.intake.IntakeDraft`:

* ``external_id`` is the call's Linkedid (which ties every leg of the call together): one
  intake per call. A second summary for the same call is a duplicate and gets the first one's
  acceptance number (受理编号), its text is *not* taken; correcting a summary is an update of
  the ticket (router issue), not a new intake.
* ``contact.phone`` is the caller's number, or None when it was withheld (``anonymous``,
  ``unknown``, empty ...); then the callback number, if the agent typed one, is used instead.
* ``call`` carries the call id (Linkedid), seat, queue, the agent's summary and the transcript
  of the call (``transcript_of``, by Linkedid: IVR first, then the conversation), None when
  live transcription is off or heard nothing.

:class:`PhoneIntake` is the service the HTTP route calls: it finds the call (the one given, or
the seat's current call, or the seat's most recent call), refuses a call the seat did not
handle, and submits. Every refusal is a :class:`PhoneIntakeError` with a stable ``code`` and a
Chinese message.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from channels.errors import ChannelError, IntakeUnavailable
from channels.gateway import Accepted, IntakeGateway
from channels.intake import CallDetails, Contact, IntakeDraft, Location, utc_now
from channels.web_form import LABELS, clean_line, clean_text, normalize_phone, phone_key
from telephony.calls import CallTracker
from telephony.model import CallPhase, CallRecord

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
StoredCall = Callable[[str], Awaitable[CallRecord | None]]

MAX_CONTENT_CHARS: Final = 5000
MAX_TITLE_CHARS: Final = 100
# Caller-ID placeholders for a number the network did not give (Asterisk, SIP trunks, ISDN
# "presentation restricted"): no way back to the citizen through them.
WITHHELD_NUMBERS: Final = frozenset(
    {"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld"})
_NOT_DIALABLE = re.compile(r"[^0-9+]")

SUMMARY_LABELS: dict[str, str] = {
    **LABELS, "content": "诉求内容", "callback_phone": "回拨电话", "call_id": "通话编号",
}
CALLBACK_FORMAT = "回拨电话格式不正确：请填写 11 位手机号码，或带区号的固定电话（如 0571-88888888）"

PhoneIntakeCode = Literal["invalid_field", "no_call", "not_your_call", "intake_unavailable"]


class PhoneIntakeError(ChannelError):
    """A summary that cannot become an intake; ``code`` is stable (the HTTP layer answers it
    with its status), ``message`` is Chinese for the agent, ``details`` names the wrong
    fields (``{"fields": {name: message}}``) or the call."""

    def __init__(self, code: PhoneIntakeCode, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code: PhoneIntakeCode = code
        self.message = message
        self.details = details or {}


# -- what the agent types -----------------------------------------------------------------
ShortText = Annotated[str, Field(max_length=50)]


class AgentSummary(BaseModel):
    """The agent's summary of the citizen's demand after a call (话后小结)."""

    # strict: a number or a list where text belongs is an error, not silently converted.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              str_strip_whitespace=True)

    title: Annotated[str, Field(max_length=MAX_TITLE_CHARS)] | None = Field(
        default=None, description="标题（可空）")
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)] = Field(
        description=f"诉求内容：坐席记录的来电人诉求（必填，最长 {MAX_CONTENT_CHARS} 字）")
    name: ShortText | None = Field(default=None, description="来电人姓名（可匿名）")
    district: ShortText | None = Field(default=None, description="所在区县")
    street: ShortText | None = Field(default=None, description="街道（乡镇）")
    address: Annotated[str, Field(max_length=300)] | None = Field(
        default=None, description="详细地址")
    callback_phone: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="回拨电话：来电人要求回拨到其他号码时填写（手机 13800138000，或座机 "
                          "0571-88888888）", examples=["13800138000"])

    @field_validator("content")
    @classmethod
    def _readable(cls, value: str) -> str:
        if not clean_text(value).strip():
            # Only control characters: nothing a person could read.
            raise PydanticCustomError("blank", "content is blank")
        return value

    @field_validator("callback_phone")
    @classmethod
    def _callback_phone(cls, value: str | None) -> str | None:
        if not value:
            return None
        normalized = normalize_phone(value)
        if normalized is None:
            raise PydanticCustomError("phone_format", CALLBACK_FORMAT)
        return normalized


class SummaryRequest(AgentSummary):
    """``POST /api/seats/{seat_id}/intake``: the summary, and which call it is for."""

    call_id: Annotated[str, Field(min_length=1, max_length=64,
                                  pattern=r"^[A-Za-z0-9_.:-]+$")] | None = Field(
        default=None, description="通话编号（来电弹屏中的 call_id 或 linkedid）；缺省时为坐席当前的通话，"
                          "无当前通话时为坐席最近一次接听的通话")


def _message(field: str, error: Mapping[str, Any]) -> str:
    label = SUMMARY_LABELS.get(field, field)
    kind = error["type"]
    if kind in ("missing", "string_too_short", "blank"):
        return f"请填写{label}"
    if kind == "string_type":
        return f"{label}应为文字"
    if kind == "string_too_long":
        return f"{label}不能超过 {error['ctx']['max_length']} 个字"
    if kind == "extra_forbidden":
        return f"不支持的字段：{field[:40]}"
    if kind == "phone_format":
        return CALLBACK_FORMAT
    return f"{label}格式不正确"


def parse_summary(data: Mapping[str, Any]) -> tuple[str | None, AgentSummary]:
    """Validate a summary request body: the call id (or None) and the summary.

    Raises :class:`PhoneIntakeError` ``invalid_field`` naming every wrong field at once."""
    try:
        request = SummaryRequest.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors(include_url=False, include_input=False):
            field = str(error["loc"][0]) if error["loc"] else "_body"
            fields.setdefault(field, _message(field, error))
        raise PhoneIntakeError("invalid_field", "通话小结有误，请检查标出的项目",
                               {"fields": fields}) from None
    return request.call_id, AgentSummary.model_validate(request.model_dump(exclude={"call_id"}))


# -- from a call to a draft ---------------------------------------------------------------
def caller_phone(raw: str | None) -> str | None:
    """The citizen's number as caller ID gave it: None when withheld; a mainland number in the
    web form's canonical form; anything else (international, short codes) as its digits."""
    if raw is None or raw.strip().lower() in WITHHELD_NUMBERS:
        return None
    normalized = normalize_phone(raw)
    if normalized is not None:
        return normalized
    digits = _NOT_DIALABLE.sub("", raw)
    return digits[:32] if any(ch.isdigit() for ch in digits) else None


def _aware(moment: datetime) -> datetime:
    # The tracker's times come from utc_now(); a naive one (an old stored row) is UTC too.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def draft_from_call(call: CallRecord, summary: AgentSummary, received_at: datetime, *,
                    seat_id: str, transcript: str | None = None) -> IntakeDraft:
    """The intake for ``call`` from the summary ``seat_id``'s agent typed.

    ``received_at`` is when the demand reached the hotline (the service passes the call's
    ``joined_at``). Raises :class:`PhoneIntakeError` ``not_your_call`` unless ``seat_id``
    answered the call."""
    if call.seat is None or call.seat != seat_id:
        raise PhoneIntakeError("not_your_call", f"该通话不是坐席 {seat_id} 接听的，不能提交小结",
                               {"call_id": call.call_id})
    caller = caller_phone(call.caller_number)
    text = clean_text(summary.content).strip()
    callback = summary.callback_phone
    if callback is not None and caller is not None and phone_key(callback) != phone_key(caller):
        # Contact has one phone and it is the caller's (the status query checks it); the
        # number the citizen asked to be called back on must still reach whoever calls back.
        text = f"{text}\n\n回拨电话：{callback}"

    def line(value: str | None) -> str | None:
        return (clean_line(value) or None) if value else None

    return IntakeDraft(
        channel="phone", external_id=call.linkedid, received_at=_aware(received_at),
        contact=Contact(name=line(summary.name), phone=caller or callback),
        title=line(summary.title) or "", text=text,
        location=Location(district=line(summary.district), street=line(summary.street),
                          address=line(summary.address)),
        source_ref=f"ami:call/{call.linkedid}",
        call=CallDetails(call_id=call.linkedid, seat_id=seat_id, queue=call.queue,
                         agent_summary=text, transcript=transcript, recording=None,
                         callback_phone=callback))


# -- the service --------------------------------------------------------------------------
class SeatCalls(Protocol):
    """The live calls, as :class:`PhoneIntake` needs them (see :class:`TrackerCalls`)."""

    def get(self, call_id: str) -> CallRecord | None:
        """A call the tracker still follows, by its call id (Uniqueid)."""
        ...

    def call_of_seat(self, seat_id: str) -> CallRecord | None:
        """The call ``seat_id`` is talking on now."""
        ...


class TrackerCalls:
    """:class:`SeatCalls` over the real :class:`~telephony.calls.CallTracker`, which knows a
    seat's call by its queue interface: ``interface_of`` maps a seat id to it (the seat
    board's ``by_seat_id(seat).interface``)."""

    def __init__(self, tracker: CallTracker,
                 interface_of: Callable[[str], str | None]) -> None:
        self._tracker = tracker
        self._interface_of = interface_of

    def get(self, call_id: str) -> CallRecord | None:
        return self._tracker.get(call_id)

    def call_of_seat(self, seat_id: str) -> CallRecord | None:
        interface = self._interface_of(seat_id)
        return None if interface is None else self._tracker.call_of_seat(interface)


class PhoneIntake:
    """Turns agents' summaries into phone intakes.

    The tracker forgets a call once it has ended, and a seat is no longer "on" a call it
    blind-transferred (the caller is still talking to the department): :meth:`remember`,
    subscribed to the tracker, keeps the last ``remembered`` calls answered by a seat and each
    seat's latest one, so a summary written in wrap-up still finds its call. The memory is
    lost on restart: ``stored_call`` (the call store's ``get``) then finds a call named by its
    call id.
    """

    def __init__(self, calls: SeatCalls, gateway: IntakeGateway, clock: Clock = utc_now, *,
                 stored_call: StoredCall | None = None,
                 transcript_of: Callable[[str], Awaitable[str | None]] | None = None,
                 last_call_window: timedelta = timedelta(hours=1),
                 remembered: int = 2000) -> None:
        """``transcript_of`` (the ASR's :meth:`asr.sink.CallTranscripts.text_of`): what the
        caller said on the call (by Linkedid), attached to the intake."""
        self._calls = calls
        self._transcript_of = transcript_of
        self._stored = stored_call
        self._gateway = gateway
        self._clock = clock
        self._window = last_call_window
        self._limit = remembered
        self._recent: OrderedDict[str, CallRecord] = OrderedDict()   # call_id -> record
        self._last_of_seat: dict[str, str] = {}                       # seat id -> call_id

    def remember(self, call: CallRecord) -> None:
        """Tracker listener (``tracker.subscribe(phone.remember)``): keep calls a seat took."""
        if call.seat is None:
            return
        self._recent[call.call_id] = call
        self._recent.move_to_end(call.call_id)
        while len(self._recent) > self._limit:
            gone, record = self._recent.popitem(last=False)
            if record.seat is not None and self._last_of_seat.get(record.seat) == gone:
                del self._last_of_seat[record.seat]
        latest = self._recent.get(self._last_of_seat.get(call.seat, ""))
        if latest is None or latest.call_id == call.call_id or _answered(call) >= _answered(
                latest):
            self._last_of_seat[call.seat] = call.call_id

    async def find_call(self, seat_id: str, call_id: str | None) -> CallRecord:
        """The call a summary from ``seat_id`` is for; raises ``no_call`` when there is none.

        ``call_id`` may be the call id (Uniqueid) or the Linkedid (the call store knows only
        the call id). Without it: the seat's
        current call, else its most recent one if that ended less than ``last_call_window``
        ago (a summary typed after a break must name its call)."""
        if call_id is not None:
            found = self._calls.get(call_id) or self._recent.get(call_id) or next(
                (r for r in reversed(self._recent.values()) if r.linkedid == call_id), None)
            if found is None and self._stored is not None:
                found = await self._stored(call_id)
            if found is None:
                raise PhoneIntakeError("no_call", f"找不到通话 {call_id}（可能已结束较久或服务已重启）",
                                       {"call_id": call_id})
            return found
        current = self._calls.call_of_seat(seat_id)
        if current is not None:
            return current
        last = self._recent.get(self._last_of_seat.get(seat_id, ""))
        if last is None:
            raise PhoneIntakeError("no_call", f"坐席 {seat_id} 当前没有通话，也没有最近接听的通话，"
                                              "请指定通话编号")
        if last.phase is CallPhase.ENDED and last.ended_at is not None and (
                self._clock() - _aware(last.ended_at) > self._window):
            minutes = int(self._window.total_seconds() // 60)
            raise PhoneIntakeError("no_call", f"坐席 {seat_id} 最近一次通话已结束超过 {minutes} 分钟，"
                                              "请指定通话编号", {"last_call_id": last.call_id})
        return last

    async def submit_summary(self, seat_id: str, call_id: str | None,
                             summary: AgentSummary) -> Accepted:
        """Submit the summary as the intake of its call; the same call again is a duplicate
        with the same acceptance number. Raises :class:`PhoneIntakeError` (``no_call``,
        ``not_your_call``, ``intake_unavailable`` when neither Redis nor the spool took it)."""
        call = await self.find_call(seat_id, call_id)
        transcript = None
        if self._transcript_of is not None:
            transcript = await self._transcript_of(call.linkedid)
        draft = draft_from_call(call, summary, call.joined_at, seat_id=seat_id,
                                transcript=transcript)
        try:
            accepted = await self._gateway.submit(draft)
        except IntakeUnavailable:
            log.warning("intake unavailable: summary of call %s from seat %s refused",
                        call.linkedid, seat_id)
            raise PhoneIntakeError("intake_unavailable",
                                   "系统暂时无法受理，小结尚未提交成功，请稍后重试") from None
        log.info("phone intake %s%s for call %s (seat %s)", accepted.acceptance_no,
                 " (duplicate)" if accepted.duplicate else "", call.linkedid, seat_id,
                 extra={"acceptance_no": accepted.acceptance_no, "linkedid": call.linkedid,
                        "seat": seat_id})
        return accepted


def _answered(call: CallRecord) -> datetime:
    return _aware(call.answered_at or call.joined_at)
