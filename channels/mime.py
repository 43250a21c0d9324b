"""One mail of the mayor's mailbox (书记市长信箱), from RFC 5322 bytes to an intake draft.

Pure and synchronous: no I/O, no clock, no logging. :func:`parse_message` returns either a
:class:`ParsedMail` (the draft, the attachment bytes for the caller to store, the Message-IDs
this mail replies to) or a :class:`Skip` with the reason (auto-reply, bounce, loop, bulk ...).
It never raises on what a sender can put in a mail: broken MIME, bogus charsets, truncated
base64 and nesting bombs all end as best-effort text, with :attr:`ParsedMail.notes` saying what
was repaired. The poller (:mod:`channels.mailbox`) runs it in a worker thread.

Decisions (issue 3, "Mayor's mailbox"):

* Charsets (:mod:`channels.mail_text`): GB2312 / GBK labels are decoded as GB18030, Big5 as
  Big5-HKSCS; an unknown label (``x-unknown``) or bytes that do not fit their label fall back
  to UTF-8, then GB18030, then the closer of the two with replacement characters; each
  fallback is recorded in ``notes``.
* Mail bomb (more than ``max_parts`` parts or nesting deeper than ``max_depth``): the parts
  within the limits are read, the rest refused, and the intake text ends with a notice. A
  citizen's mail with text is never dropped for its structure; only a bomb without any
  readable text or attachment before the limit is a ``Skip("mail_bomb")``.
* ``X-Loop`` is a loop only when it names one of ``own_addresses``: list servers and
  forwarders stamp their own X-Loop on mail a citizen really wrote, and autoresponders that
  add a foreign X-Loop also add ``Auto-Submitted`` or ``Precedence``, which are checked.
* A mail over ``max_message_bytes`` is not fetched in full; :func:`parse_headers_only` makes an
  intake from its header (sender, subject, date) and a notice in the text, so the citizen is
  not dropped and an operator can open the original (``source_ref``).
"""

from __future__ import annotations

import binascii
import email
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from channels.intake import Attachment, Contact, IntakeDraft
from channels.mail_text import (
    add_note,
    clean_text,
    decode_bytes,
    decode_header_text,
    find_mobile,
    html_to_text,
    raw_header_text,
)
from config.channels import MailConfig
from config.textcheck import strip_control

SkipReason = Literal["auto_reply", "bounce", "delivery_report", "bulk", "loop", "mail_bomb"]

MAX_TITLE_CHARS: Final = 500
MAX_TEXT_CHARS: Final = 200_000
MAX_REFERENCES: Final = 20
# A Date header further from the fetch time than this is not believed (wrong clock, spam).
DATE_FUTURE_SKEW: Final = timedelta(days=1)
DATE_MAX_AGE: Final = timedelta(days=366)

NOTICE_BOMB: Final = ("[系统提示] 本邮件结构异常（部件过多或嵌套过深），超出限制的部分未解析，"
                      "请到信箱查看原件。")
NOTICE_TRUNCATED: Final = "[系统提示] 正文过长，已截断，请到信箱查看原件。"


@dataclass(frozen=True, slots=True)
class MailLimits:
    """What a mail may hold; built from ``channels.mail`` (:class:`config.channels.MailConfig`)."""

    max_attachment_bytes: int
    max_parts: int
    max_depth: int
    own_addresses: frozenset[str] = frozenset()   # lower case

    @classmethod
    def of(cls, cfg: MailConfig) -> MailLimits:
        """The limits of the ``channels.mail`` config section."""
        return cls(cfg.max_attachment_bytes, cfg.max_parts, cfg.max_depth,
                   frozenset(a.strip().lower() for a in cfg.own_addresses))


@dataclass(frozen=True, slots=True)
class Skip:
    """Not an intake: an automatic mail. The poller logs it and marks it seen."""

    reason: SkipReason
    detail: str
    message_id: str | None


@dataclass(frozen=True, slots=True)
class AttachmentPayload:
    """One attachment: its metadata and, when within the size limit, its bytes to store."""

    meta: Attachment          # stored_path is None: the caller stores ``data`` and sets it
    data: bytes | None        # None when the bytes are not kept (``meta.note == "too_large"``)


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """A mail that becomes an intake, once the poller adds where it came from."""

    draft: IntakeDraft                         # without attachments, source_ref, thread_of
    attachments: tuple[AttachmentPayload, ...]
    references: tuple[str, ...]                # Message-IDs replied to, oldest first
    notes: tuple[str, ...]                     # repairs made while parsing, for the log

    def finish(self, *, source_ref: str, thread_of: str | None,
               stored_paths: Mapping[str, str]) -> IntakeDraft:
        """The draft to submit: ``stored_paths`` maps an attachment's sha256 to where its
        bytes were written; attachments missing from it keep metadata only."""
        attachments = tuple(
            p.meta.model_copy(update={"stored_path": stored_paths[p.meta.sha256]})
            if p.meta.sha256 is not None and p.meta.sha256 in stored_paths else p.meta
            for p in self.attachments)
        values = self.draft.model_dump()
        values.update(source_ref=source_ref, thread_of=thread_of,
                      attachments=[a.model_dump() for a in attachments])
        return IntakeDraft.model_validate(values)


MailParse = ParsedMail | Skip


def _headers(msg: email.message.Message, name: str) -> list[str]:
    """Every raw value of header ``name`` (unparsed; compat32 keeps them as received)."""
    lower = name.lower()
    return [v for k, v in msg.raw_items() if k.lower() == lower and isinstance(v, str)]


def _header(msg: email.message.Message, name: str) -> str | None:
    values = _headers(msg, name)
    return values[0] if values else None


_MSGID_IN_BRACKETS: Final = re.compile(r"<([^<>\s]{1,2000})>")


def normalize_message_id(value: str) -> str | None:
    """The id inside ``<...>`` (or the bare token), stable enough to be an external id.

    Ids longer than 400 characters or carrying odd characters become ``sha256:<hex>``."""
    text = raw_header_text(value).strip()
    match = _MSGID_IN_BRACKETS.search(text)
    ident = match.group(1) if match else (text.split()[0] if text.split() else "")
    if not ident:
        return None
    if len(ident) > 400 or not ident.isprintable() or not ident.isascii():
        return "sha256:" + hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()
    return ident


def _message_ids(value: str) -> list[str]:
    text = raw_header_text(value)
    found = _MSGID_IN_BRACKETS.findall(text) or text.split()[:1]
    return [i for i in (normalize_message_id(f"<{raw}>") for raw in found) if i is not None]


def _references(msg: email.message.Message) -> tuple[str, ...]:
    """Message-IDs this mail answers, oldest first: References (in order), then In-Reply-To.

    The poller threads onto the first one it knows, i.e. the thread's earliest intake."""
    ids: list[str] = []
    for name in ("References", "In-Reply-To"):
        for value in _headers(msg, name):
            ids.extend(_message_ids(value))
    unique = list(dict.fromkeys(ids))
    if len(unique) > MAX_REFERENCES:   # keep the root and the direct parent side
        unique = unique[: MAX_REFERENCES // 2] + unique[-(MAX_REFERENCES // 2):]
    return tuple(unique)


def _received_at(msg: email.message.Message, fetched_at: datetime) -> datetime:
    raw = _header(msg, "Date")
    if raw is None:
        return fetched_at
    try:
        sent = email.utils.parsedate_to_datetime(raw_header_text(raw).strip())
    except (ValueError, TypeError, IndexError, OverflowError):
        return fetched_at
    if sent.tzinfo is None:     # "-0000": UTC, origin's zone unknown (RFC 5322 §3.3)
        sent = sent.replace(tzinfo=UTC)
    if not fetched_at - DATE_MAX_AGE <= sent <= fetched_at + DATE_FUTURE_SKEW:
        return fetched_at
    return sent.astimezone(UTC)


_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")


def _sender(msg: email.message.Message, notes: list[str]) -> tuple[str | None, str | None]:
    """(display name, address) of From, decoded; either may be None."""
    raw = _header(msg, "From")
    if raw is None:
        return None, None
    name, addr = email.utils.parseaddr(raw_header_text(raw))
    display = decode_header_text(name, notes)[:100] or None
    address = addr.strip()
    return display, address if _EMAIL.match(address) else None


# --------------------------------------------------------------------------------- automatic

_DAEMONS: Final = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})


def _automatic(msg: email.message.Message, address: str | None,
               limits: MailLimits, message_id: str | None) -> Skip | None:
    """The Skip for an auto-reply, bounce, report, bulk mail or loop; None for a person's."""
    def skip(reason: SkipReason, detail: str) -> Skip:
        return Skip(reason, detail, message_id)

    if msg.get_content_type() == "multipart/report":
        return skip("delivery_report", "multipart/report")
    return_path = _header(msg, "Return-Path")
    if return_path is not None and raw_header_text(return_path).strip() in ("<>", ""):
        return skip("bounce", "Return-Path: <>")
    lower_addr = (address or "").lower()
    if lower_addr.split("@")[0] in _DAEMONS:
        return skip("bounce", f"From: {lower_addr.split('@')[0]}")
    if lower_addr and lower_addr in limits.own_addresses:
        return skip("loop", "From is our own address")
    auto = _header(msg, "Auto-Submitted")
    if auto is not None and raw_header_text(auto).strip().split(";")[0].strip().lower() != "no":
        return skip("auto_reply", f"Auto-Submitted: {raw_header_text(auto).strip()[:60]}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-AutoReply-From"):
        if _header(msg, name) is not None:
            return skip("auto_reply", name)
    precedence = _header(msg, "Precedence")
    if precedence is not None:
        value = raw_header_text(precedence).strip().lower()
        if value in ("bulk", "junk", "list", "auto_reply"):
            return skip("auto_reply" if value == "auto_reply" else "bulk",
                        f"Precedence: {value}")
    for loop in _headers(msg, "X-Loop"):
        names = {a.lower() for _, a in email.utils.getaddresses([raw_header_text(loop)]) if a}
        names.add(raw_header_text(loop).strip().lower())
        if names & limits.own_addresses:
            return skip("loop", "X-Loop names our own address")
    return None


# -------------------------------------------------------------------------------------- body

def _param(part: email.message.Message, key: str, header: str,
           notes: list[str]) -> str | None:
    """Parameter ``key`` of ``header`` decoded: RFC 2231 (charset, continuations), RFC 2047
    words inside quotes (non-standard, common), raw GBK / UTF-8 bytes."""
    raw = _header(part, header)
    if raw is None:
        return None
    scratch = email.message.Message()
    scratch[header] = raw_header_text(raw)
    try:
        value = scratch.get_param(key, header=header)
    except (ValueError, IndexError, TypeError):   # unparseable parameter list
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        charset, _lang, text = value
        try:
            data = str(text).encode("latin-1")
        except UnicodeEncodeError:      # already text (unescaped non-ASCII in the header)
            return decode_header_text(str(text), notes)
        return decode_header_text(decode_bytes(data, charset or None, notes), notes)
    return decode_header_text(email.utils.unquote(str(value)), notes)


_UNSAFE_NAME: Final = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_MIME_TYPE: Final = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,60}/[a-z0-9][a-z0-9.+*-]{0,60}$")


def _safe_name(name: str | None, index: int) -> str:
    # Bidi overrides and the rest of config.textcheck's unsafe characters go first:
    # "invoice\u202efdp.exe" would read as "invoiceexe.pdf".
    cleaned = _UNSAFE_NAME.sub("_", strip_control(name or "")).strip(" .")
    if not cleaned:
        return f"附件{index}"
    if len(cleaned) > 255:      # keep the extension
        stem, dot, ext = cleaned.rpartition(".")
        cleaned = (stem[: 250 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else cleaned[:255]
    return cleaned


@dataclass(slots=True)
class _Walk:
    """State of one walk over the MIME tree, bounded by the limits."""

    limits: MailLimits
    notes: list[str]
    attachments: list[AttachmentPayload] = field(default_factory=list)
    parts: int = 0
    refused: bool = False       # a part was not read because of max_parts / max_depth

    def texts(self, part: email.message.Message, depth: int) -> list[str]:
        """Readable text segments of ``part`` (attachments collected on the side)."""
        if self.refused and self.parts >= self.limits.max_parts:
            return []
        if depth > self.limits.max_depth:
            self.refused = True
            add_note(self.notes, "mail_bomb:depth")
            return []
        self.parts += 1
        if self.parts > self.limits.max_parts:
            self.refused = True
            add_note(self.notes, "mail_bomb:parts")
            return []
        ctype = part.get_content_type()
        if part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
            if ctype == "multipart/alternative":
                return self._alternative(children, depth)
            out: list[str] = []
            for child in children:
                out.extend(self.texts(child, depth + 1))
            return out
        if part.get_content_maintype() == "multipart":
            return self._repair(part, depth)
        return self._leaf(part, ctype)

    def _alternative(self, children: list[email.message.Message], depth: int) -> list[str]:
        """One version of the body: the plain text when it says something, else the richest."""
        versions = [(c.get_content_type(), self.texts(c, depth + 1)) for c in children]
        for ctype, texts in versions:
            if ctype == "text/plain" and any(t.strip() for t in texts):
                return texts
        for _ctype, texts in reversed(versions):
            if any(t.strip() for t in texts):
                return texts
        return []

    def _repair(self, part: email.message.Message, depth: int) -> list[str]:
        """A multipart whose boundary is missing or wrong: look for a boundary line in the
        body and re-parse with it; failing that, the body is the text."""
        add_note(self.notes, "mime_broken_boundary")
        body = _payload_bytes(part)
        match = re.search(rb"(?m)^--([^\s]{1,70}?)(--)?\s*$", body)
        if match:
            boundary = match.group(1).decode("ascii", errors="replace")
            header = f'Content-Type: {part.get_content_type()}; boundary="{boundary}"\r\n\r\n'
            try:
                repaired = email.message_from_bytes(header.encode() + body,
                                                    policy=email.policy.compat32)
            except (RecursionError, ValueError, TypeError, LookupError):
                repaired = None
            if repaired is not None and repaired.is_multipart():
                self.parts -= 1     # the repaired container stands for this same part
                return self.texts(repaired, depth)
        text = clean_text(decode_bytes(body, None, self.notes))
        return [text] if text else []

    def _leaf(self, part: email.message.Message, ctype: str) -> list[str]:
        disposition = (_header(part, "Content-Disposition") or "").split(";")[0].strip().lower()
        filename = (_param(part, "filename", "Content-Disposition", self.notes)
                    or _param(part, "name", "Content-Type", self.notes))
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            data = _payload_bytes(part)
            charset = _param(part, "charset", "Content-Type", self.notes)
            text = decode_bytes(data, charset, self.notes)
            text = html_to_text(text) if ctype == "text/html" else clean_text(text)
            return [text] if text else []
        self._attachment(part, ctype, filename)
        return []

    def _attachment(self, part: email.message.Message, ctype: str, filename: str | None) -> None:
        data = _payload_bytes(part)
        index = len(self.attachments) + 1
        meta = Attachment(
            name=_safe_name(filename, index),
            content_type=ctype if _MIME_TYPE.match(ctype) else "application/octet-stream",
            size=len(data), sha256=hashlib.sha256(data).hexdigest(),
            note="too_large" if len(data) > self.limits.max_attachment_bytes else None)
        keep = len(data) <= self.limits.max_attachment_bytes
        self.attachments.append(AttachmentPayload(meta, data if keep else None))


def _payload_bytes(part: email.message.Message) -> bytes:
    # The payload as parsed (8-bit bytes as surrogates): get_payload() without decode
    # replaces those with U+FFFD, losing GBK text that was sent unencoded.
    raw = getattr(part, "_payload", None)
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte in ("base64", "quoted-printable") and isinstance(raw, str) and not raw.isascii():
        # 8-bit bytes cannot be base64 or quoted-printable: the label is wrong (seen in
        # hand-made mail); decoding would turn the citizen's text into noise.
        return raw.encode("utf-8", errors="surrogateescape")
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, binascii.Error):
        data = None
    if isinstance(data, bytes):
        return data
    if isinstance(raw, str):
        return raw.encode("utf-8", errors="surrogateescape")
    return b""


# ----------------------------------------------------------------------------------- parsing

_BOUNDARY_DECL: Final = re.compile(rb"(?i)boundary\s*=")


def _defuse(raw: bytes, limits: MailLimits, notes: list[str]) -> bytes:
    """Cut a mail that declares more multiparts than ``max_parts`` before the first one over,
    so the stdlib parser never builds (or recurses into) a bomb: the parts before the cut
    are parsed as a truncated mail, which it handles."""
    for count, match in enumerate(_BOUNDARY_DECL.finditer(raw), start=1):
        if count > limits.max_parts:
            cut = raw.rfind(b"\n", 0, match.start())
            add_note(notes, "mail_bomb:parts")
            return raw[: max(cut, 0)]
    return raw


def _external_id(message_id: str | None, raw: bytes) -> str:
    return message_id if message_id else "sha256:" + hashlib.sha256(raw).hexdigest()


def _parse_bytes(raw: bytes, headers_only: bool) -> email.message.Message:
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    return parser.parsebytes(raw, headersonly=headers_only)


def parse_message(raw: bytes, limits: MailLimits, *, fetched_at: datetime) -> MailParse:
    """Parse one whole mail. Never raises on malformed input (see the module docstring)."""
    notes: list[str] = []
    try:
        msg = _parse_bytes(_defuse(raw, limits, notes), headers_only=False)
    except RecursionError:      # nesting beyond what _defuse caught (max_parts very high)
        add_note(notes, "mail_bomb:depth")
        msg = _parse_bytes(raw, headers_only=True)
        return _bomb(msg, limits, notes)
    message_id = _message_id(msg)
    name, address = _sender(msg, notes)
    skip = _automatic(msg, address, limits, message_id)
    if skip is not None:
        return skip
    walk = _Walk(limits, notes)
    texts = walk.texts(msg, 0)
    body = "\n\n".join(t for t in texts if t)
    bomb = walk.refused or any(n.startswith("mail_bomb") for n in notes)
    if bomb and not body and not walk.attachments:
        return Skip("mail_bomb", ",".join(n for n in notes if n.startswith("mail_bomb")),
                    message_id)
    return _parsed(msg, raw, notes, name, address, body, tuple(walk.attachments),
                   fetched_at, notice=NOTICE_BOMB if bomb else None)


def parse_headers_only(header: bytes, limits: MailLimits, *, fetched_at: datetime,
                       size: int, max_size: int) -> MailParse:
    """A mail too big to fetch (``size`` > ``max_size``): an intake from its header alone,
    the text saying so, or a Skip when the header shows an automatic mail."""
    notes: list[str] = ["too_large"]
    msg = _parse_bytes(header, headers_only=True)
    message_id = _message_id(msg)
    name, address = _sender(msg, notes)
    skip = _automatic(msg, address, limits, message_id)
    if skip is not None:
        return skip
    notice = (f"[系统提示] 邮件过大（{size / 1048576:.1f} MB，上限 {max_size / 1048576:.1f} MB），"
              "正文和附件未取回，请到信箱查看原件。")
    return _parsed(msg, header, notes, name, address, "", (), fetched_at, notice=notice)


def _bomb(msg: email.message.Message, limits: MailLimits, notes: list[str]) -> MailParse:
    message_id = _message_id(msg)
    _name, address = _sender(msg, notes)
    skip = _automatic(msg, address, limits, message_id)
    return skip if skip is not None else Skip("mail_bomb", "nesting beyond the parser",
                                              message_id)


def _message_id(msg: email.message.Message) -> str | None:
    raw = _header(msg, "Message-ID")
    return normalize_message_id(raw) if raw is not None else None


def _parsed(msg: email.message.Message, raw: bytes, notes: list[str], name: str | None,
            address: str | None, body: str, attachments: tuple[AttachmentPayload, ...],
            fetched_at: datetime, *, notice: str | None) -> ParsedMail:
    subject = _header(msg, "Subject")
    title = decode_header_text(subject, notes)[:MAX_TITLE_CHARS] if subject is not None else ""
    tail = [notice] if notice else []
    room = MAX_TEXT_CHARS - sum(len(t) + 2 for t in tail)
    if len(body) > room:
        add_note(notes, "text_truncated")
        body = body[: room - len(NOTICE_TRUNCATED) - 2]
        tail.insert(0, NOTICE_TRUNCATED)
    text = "\n\n".join([body, *tail]) if body else "\n\n".join(tail)
    draft = IntakeDraft(
        channel="mail",
        external_id=_external_id(_message_id(msg), raw),
        received_at=_received_at(msg, fetched_at),
        contact=Contact(name=name, email=address, phone=find_mobile(body)),
        title=title,
        text=text,
    )
    return ParsedMail(draft, attachments, _references(msg), tuple(notes))
