"""The one record every channel produces: :class:`Intake`.

A channel adapter builds an :class:`IntakeDraft` (what the citizen sent, where from); the
gateway (:class:`channels.gateway.IntakeGateway`) gives it an ``intake_id`` and an acceptance
number (受理编号) and puts it durably in the intake stream, turning it into an :class:`Intake`.

``channel`` + ``external_id`` (+ the submitter, for the website form) is the idempotency key:
a re-submitted form, a re-fetched mail or a retried app call carries the same external id and
yields the same intake.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Channel = Literal["web", "app", "mail", "phone", "voicemail"]
CHANNELS: tuple[Channel, ...] = ("web", "app", "mail", "phone", "voicemail")


def utc_now() -> datetime:
    """Now, in UTC (every channel's default clock)."""
    return datetime.now(UTC)


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("received_at must carry a time zone")
    return value.astimezone(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Frozen):
    """How to reach the citizen; any part may be missing (anonymous mail, withheld number)."""

    name: Annotated[str, Field(max_length=100)] | None = None
    phone: Annotated[str, Field(max_length=32)] | None = None
    email: Annotated[str, Field(max_length=254)] | None = None
    app_user_id: Annotated[str, Field(max_length=128)] | None = None


class Location(_Frozen):
    """Where the problem is, as far as the citizen said (区/县, 街道/镇, 地址)."""

    district: Annotated[str, Field(max_length=50)] | None = None
    street: Annotated[str, Field(max_length=50)] | None = None
    address: Annotated[str, Field(max_length=300)] | None = None


class Attachment(_Frozen):
    """A file the citizen sent. The bytes live at ``stored_path`` (content-addressed by
    ``sha256``); ``stored_path`` is None when only the metadata was kept (over the size limit)."""

    name: Annotated[str, Field(max_length=255)]
    content_type: Annotated[str, Field(max_length=127)]
    size: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    stored_path: str | None = None
    note: str | None = None        # why the bytes were not kept, e.g. "too_large"


class CallDetails(_Frozen):
    """What a phone intake knows about its call (caller number is in ``contact.phone``)."""

    call_id: str                      # Asterisk Linkedid of the call
    seat_id: str | None = None
    queue: str | None = None
    agent_summary: str | None = None
    # A number the citizen asked to be called back on, when not the one they called from.
    callback_phone: Annotated[str, Field(max_length=32)] | None = None
    transcript: str | None = None      # filled once speech recognition has the call's words
    recording: str | None = None       # voicemail / recording file


class IntakeDraft(_Frozen):
    """What a channel adapter hands to the gateway."""

    channel: Channel
    external_id: Annotated[str, Field(min_length=1, max_length=500)]
    received_at: Annotated[datetime, AfterValidator(_aware_utc)]
    contact: Contact = Contact()
    title: Annotated[str, Field(max_length=500)] = ""
    text: Annotated[str, Field(max_length=200_000)] = ""
    location: Location = Location()
    attachments: tuple[Attachment, ...] = ()
    # Where the original is: "imap://host/INBOX;UIDVALIDITY=1;UID=42", "http:web 1.2.3.4", ...
    source_ref: Annotated[str, Field(max_length=1000)] = ""
    language: Annotated[str, Field(max_length=20)] = "zh-CN"
    # Acceptance number of the earlier intake this one follows up (a reply in a mail thread).
    thread_of: str | None = None
    call: CallDetails | None = None

    @property
    def idempotency_key(self) -> str:
        """Equal keys are one intake: ``channel:external_id``, and for the website form
        ``web:<submitter>:external_id``.

        The website's ``submission_id`` is chosen by the page, that is by whoever posts the
        form: a second citizen sending the same id was told the first one's acceptance number
        ("duplicate") and their own demand was dropped. So a web id counts only for the same
        submitter (phone and e-mail, hashed: key names show up in Redis tooling). The other
        channels' ids are not anyone's choice: ``app`` is ``<app id>:<request id>`` (the app
        is authenticated by its signature), ``mail`` the Message-ID (or a hash of the whole
        message), ``phone`` and ``voicemail`` Asterisk's Linkedid / mailbox message id."""
        if self.channel == "web":
            who = f"{self.contact.phone or ''}\x1f{self.contact.email or ''}"
            digest = hashlib.sha256(who.encode()).hexdigest()[:16]
            return f"web:{digest}:{self.external_id}"
        return f"{self.channel}:{self.external_id}"


class Intake(IntakeDraft):
    """An accepted intake, as it travels in the stream."""

    intake_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    acceptance_no: Annotated[str, Field(pattern=r"^[0-9]{16}$")]

    def to_json(self) -> str:
        """The stream payload (UTF-8 JSON, Chinese kept readable)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, payload: str | bytes) -> Intake:
        """Parse a stream payload; raises ``pydantic.ValidationError`` on a bad one."""
        return cls.model_validate_json(payload)
