"""After-hours voicemail from Asterisk's file storage: real temporary mailbox directories with
messages written in app_voicemail's exact ``msgNNNN.txt`` format beside a real WAV, the real
attachment store, and the in-memory gateway."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import os
import struct
import subprocess
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asr.files import transcribe_file
from asr.local import LocalRecognizer
from asr.voicemail import make_transcriber
from channels.voicemail import (
    BAD_DIR,
    DONE_DIR,
    VoicemailError,
    VoicemailPoller,
    parse_message_info,
    split_callerid,
)
from config.asr import AsrConfig
from config.channels import PhoneConfig
from tests.asr.recog_fixtures import AUDIO, KoreanAudio, ListSink, ko_model, ko_model_dir, korean
from tests.channels.fakes import MemoryGateway

__all__ = ["ko_model", "ko_model_dir", "korean"]   # session fixtures of the transcript tests

ORIGTIME = 1795399262                      # Mon Nov 23 2026 02:01:02 UTC (10:01 in Beijing)
WRITTEN = float(ORIGTIME + 20)             # when the files landed in INBOX
LATER = datetime.fromtimestamp(WRITTEN + 30, UTC)


def wav_bytes(seconds: float = 0.5) -> bytes:
    """A real 8 kHz mono 16-bit WAV (a 440 Hz tone), as Asterisk's ``wav`` format writes."""
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 8000)))
                      for n in range(int(8000 * seconds)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
    return buffer.getvalue()


def message_txt(*, callerid: str = '"Zhang San" <13800138000>', origtime: int = ORIGTIME,
                msg_id: str | None = f"{ORIGTIME}-00000000", duration: int = 17,
                flag: str = "", encoding: str = "utf-8") -> bytes:
    """A ``msgNNNN.txt`` exactly as ``leave_voicemail()`` writes it (current Asterisk): the
    header with ``fprintf`` before recording, ``flag`` and ``duration`` appended after it.
    ``msg_id=None`` writes what old releases wrote (no rdnis, no msg_id, no flag)."""
    origdate = time.strftime("%a %b %e %I:%M:%S %p UTC %Y", time.gmtime(origtime))
    lines = [";", "; Message Information file", ";", "[message]", "origmailbox=12345",
             "context=afterhours", "macrocontext=", "exten=s"]
    if msg_id is not None:
        lines.append("rdnis=unknown")
    lines += ["priority=2", "callerchan=PJSIP/trunk-00000001", f"callerid={callerid}",
              f"origdate={origdate}", f"origtime={origtime}", "category="]
    if msg_id is not None:
        lines += [f"msg_id={msg_id}", f"flag={flag}"]
    lines.append(f"duration={duration}")
    return ("\n".join(lines) + "\n").encode(encoding)


@dataclass
class Mailbox:
    """A voicemail mailbox dir (``/var/spool/asterisk/voicemail/<context>/<mailbox>``)."""

    root: Path

    def put(self, stem: str = "msg0000", *, folder: str = "INBOX", txt: bytes | None = None,
            audio: dict[str, bytes] | None = None, mtime: float = WRITTEN) -> None:
        """Audio first, then the .txt, as Asterisk's renames do; both dated ``mtime``."""
        directory = self.root / folder
        directory.mkdir(parents=True, exist_ok=True)
        for ext, data in ({"wav": wav_bytes()} if audio is None else audio).items():
            (directory / f"{stem}.{ext}").write_bytes(data)
            os.utime(directory / f"{stem}.{ext}", (mtime, mtime))
        if txt is not None:
            (directory / f"{stem}.txt").write_bytes(txt)
            os.utime(directory / f"{stem}.txt", (mtime, mtime))

    def names(self, folder: str) -> list[str]:
        directory = self.root / folder
        return sorted(os.listdir(directory)) if directory.is_dir() else []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Setup:
    box: Mailbox
    gateway: MemoryGateway
    poller: VoicemailPoller
    clock: Clock
    attachments: Path

    async def put(self, *args: object, **kwargs: object) -> None:
        await asyncio.to_thread(self.box.put, *args, **kwargs)   # type: ignore[arg-type]

    async def names(self, folder: str) -> list[str]:
        return await asyncio.to_thread(self.box.names, folder)


@pytest.fixture
def setup(tmp_path: Path) -> Callable[..., Setup]:
    """Factory: a mailbox dir (made here, off the test's loop) and a poller on it."""
    box = Mailbox(tmp_path / "voicemail" / "afterhours" / "12345")
    box.root.mkdir(parents=True)

    def make(**kwargs: object) -> Setup:
        gateway, clock = MemoryGateway(), Clock(LATER)
        cfg = PhoneConfig(voicemail_dir=str(box.root), voicemail_poll_seconds=0.05)
        poller = VoicemailPoller(lambda: cfg, gateway, tmp_path / "attachments", clock,
                                 **kwargs)  # type: ignore[arg-type]
        return Setup(box, gateway, poller, clock, tmp_path / "attachments")
    return make


def read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


async def test_a_new_voicemail_becomes_one_intake_with_its_recording(
        setup: Callable[..., Setup]) -> None:
    s = setup()
    audio = wav_bytes()
    await s.put(txt=message_txt(), audio={"wav": audio})

    report = await s.poller.poll_once()

    assert (report.accepted, report.bad, report.waiting) == (1, {}, 0)
    [intake] = s.gateway.intakes
    assert intake.channel == "voicemail" and intake.external_id == f"{ORIGTIME}-00000000"
    assert intake.received_at == datetime.fromtimestamp(ORIGTIME, UTC)
    assert intake.contact.phone == "13800138000" and intake.contact.name == "Zhang San"
    assert intake.text == "（语音留言，时长 17 秒，待转写）"
    [recording] = intake.attachments
    assert recording.sha256 == hashlib.sha256(audio).hexdigest()
    assert recording.size == len(audio) and recording.content_type == "audio/wav"
    assert recording.name == "语音留言-20261123-100102.wav"
    assert recording.stored_path is not None
    assert await asyncio.to_thread(read, recording.stored_path) == audio
    assert Path(recording.stored_path).is_relative_to(s.attachments)
    assert intake.call is not None
    assert intake.call.call_id == intake.external_id
    assert intake.call.recording == recording.stored_path
    # Taken: out of INBOX, kept for people under .hotline-done (the source_ref points there).
    assert await s.names("INBOX") == []
    done = await s.names(DONE_DIR)
    assert done == [f"{ORIGTIME}-00000000.INBOX.msg0000.txt",
                    f"{ORIGTIME}-00000000.INBOX.msg0000.wav"]
    assert intake.source_ref == f"voicemail:{s.box.root / DONE_DIR / done[0]}"


async def test_a_message_still_being_written_is_not_taken(setup: Callable[..., Setup]) -> None:
    s = setup()
    s.clock.now = datetime.fromtimestamp(WRITTEN + 1, UTC)
    await s.put(txt=None)                      # the recording renamed in, the .txt not yet
    assert (await s.poller.poll_once()).waiting == 1
    await s.put(txt=message_txt(), audio={})   # the .txt, one second old
    report = await s.poller.poll_once()

    assert (report.waiting, report.accepted, s.gateway.intakes) == (1, 0, [])
    assert await s.names("INBOX") == ["msg0000.txt", "msg0000.wav"]

    s.clock.now = datetime.fromtimestamp(WRITTEN + 3, UTC)     # settled (2 s)
    assert (await s.poller.poll_once()).accepted == 1


async def test_crash_between_submit_and_move_yields_the_same_number(
        setup: Callable[..., Setup]) -> None:
    s = setup()
    await s.put(txt=message_txt())
    await s.poller.poll_once()
    [first] = s.gateway.intakes
    # As if the service had died after the submit: the files are still in INBOX.
    await s.put(txt=message_txt())

    report = await s.poller.poll_once()

    assert (report.accepted, report.duplicates) == (0, 1)
    assert [i.acceptance_no for i in s.gateway.intakes] == [first.acceptance_no]
    assert await s.names("INBOX") == []
    assert len(await s.names(DONE_DIR)) == 4          # nothing overwritten


async def test_gateway_down_leaves_the_messages_for_the_next_round(
        setup: Callable[..., Setup]) -> None:
    s = setup()
    await s.put("msg0000", txt=message_txt())
    await s.put("msg0001", txt=message_txt(msg_id=f"{ORIGTIME}-00000001"))
    s.gateway.fail = True

    report = await s.poller.poll_once()

    assert (report.deferred, report.accepted) == (2, 0)
    assert len(await s.names("INBOX")) == 4 and await s.names(DONE_DIR) == []
    s.gateway.fail = False
    assert (await s.poller.poll_once()).accepted == 2


async def test_message_numbers_are_reused_by_asterisk_but_each_message_is_its_own_intake(
        setup: Callable[..., Setup]) -> None:
    s = setup()
    await s.put(txt=message_txt())
    await s.poller.poll_once()
    # INBOX empty again: Asterisk numbers the next message msg0000 too.
    await s.put(txt=message_txt(msg_id=f"{ORIGTIME + 600}-00000001", origtime=ORIGTIME + 600,
                                callerid="057188888888"))
    await s.poller.poll_once()

    assert [i.contact.phone for i in s.gateway.intakes] == ["13800138000", "0571-88888888"]
    assert len(await s.names(DONE_DIR)) == 4


@pytest.mark.parametrize(("txt", "audio", "reason"), [
    (b"\x00\xff garbage, no section", {"wav": wav_bytes()}, "unparsable"),
    (message_txt().replace(f"origtime={ORIGTIME}".encode(), b"origtime=yesterday"),
     {"wav": wav_bytes()}, "unparsable"),
])
async def test_bad_messages_are_set_aside_with_the_reason_and_the_rest_still_taken(
        setup: Callable[..., Setup], txt: bytes, audio: dict[str, bytes], reason: str) -> None:
    s = setup(max_audio_bytes=16_000)           # 2 s of 8 kHz 16-bit is 32 kB
    await s.put("msg0000", txt=txt, audio=audio)
    await s.put("msg0001", txt=message_txt(msg_id=f"{ORIGTIME}-00000001"))

    report = await s.poller.poll_once()

    assert report.bad == {reason: 1} and report.accepted == 1
    assert [i.external_id for i in s.gateway.intakes] == [f"{ORIGTIME}-00000001"]
    assert await s.names("INBOX") == []
    bad = await s.names(BAD_DIR)
    assert sum(n.endswith("msg0000.txt") for n in bad) == 1
    [reason_file] = [n for n in bad if n.endswith(".reason")]
    text = await asyncio.to_thread((s.box.root / BAD_DIR / reason_file).read_text)
    assert text.startswith(reason + "\n")


@pytest.mark.parametrize(("audio", "reason", "words"), [
    ({}, "missing_audio", "录音缺失"),
    ({"wav": b""}, "missing_audio", "录音缺失"),
    ({"wav": wav_bytes(2.0)}, "audio_too_large", "超过大小上限"),
])
async def test_a_message_without_a_usable_recording_still_reaches_a_person(
        setup: Callable[..., Setup], audio: dict[str, bytes], reason: str, words: str) -> None:
    s = setup(max_audio_bytes=16_000)           # 2 s of 8 kHz 16-bit is 32 kB
    await s.put("msg0000", txt=message_txt(), audio=audio)

    report = await s.poller.poll_once()

    # The caller's number is in the .txt: an intake for a call-back, the reason in its text.
    assert report.accepted == 1 and report.bad == {reason: 1}
    [intake] = s.gateway.intakes
    assert intake.contact.phone == "13800138000" and words in intake.text
    assert intake.attachments == () and intake.call is not None
    assert intake.call.recording is None
    assert await s.names("INBOX") == []


async def test_a_recording_left_without_its_txt_is_set_aside_only_when_old(
        setup: Callable[..., Setup]) -> None:
    s = setup(orphan_seconds=600)
    await s.put(txt=None)
    assert (await s.poller.poll_once()).bad == {}
    s.clock.now = datetime.fromtimestamp(WRITTEN + 601, UTC)

    report = await s.poller.poll_once()

    assert report.bad == {"audio_without_info": 1}
    assert await s.names("INBOX") == [] and s.gateway.intakes == []


async def test_urgent_folder_and_several_formats_attach_the_playable_wav(
        setup: Callable[..., Setup]) -> None:
    s = setup()
    audio = wav_bytes()
    await s.put(folder="Urgent", txt=message_txt(flag="Urgent"),
                audio={"gsm": b"\xd8" * 330, "WAV": b"RIFF49" * 20, "wav": audio})

    assert (await s.poller.poll_once()).accepted == 1

    [recording] = s.gateway.intakes[0].attachments
    assert recording.sha256 == hashlib.sha256(audio).hexdigest()
    assert await s.names("Urgent") == []
    assert len(await s.names(DONE_DIR)) == 4


async def test_an_old_asterisk_message_without_msg_id_and_caller_id(
        setup: Callable[..., Setup]) -> None:
    s = setup()
    txt = message_txt(msg_id=None, callerid="Unknown")
    await s.put(txt=txt)

    await s.poller.poll_once()
    await s.put(txt=txt)                       # the same message again (a crash before move)
    report = await s.poller.poll_once()

    [intake] = s.gateway.intakes
    assert report.duplicates == 1
    assert intake.external_id.startswith("vm-") and len(intake.external_id) == 43
    assert intake.contact.phone is None and intake.contact.name is None


async def test_no_directory_configured_is_idle_and_a_missing_one_is_an_error(
        tmp_path: Path) -> None:
    gateway = MemoryGateway()
    idle = VoicemailPoller(lambda: PhoneConfig(), gateway, tmp_path / "a")
    assert (await idle.poll_once()).accepted == 0
    missing = VoicemailPoller(lambda: PhoneConfig(voicemail_dir=str(tmp_path / "nowhere")),
                              gateway, tmp_path / "a")
    with pytest.raises(VoicemailError):
        await missing.poll_once()


async def test_run_takes_messages_as_they_arrive(setup: Callable[..., Setup]) -> None:
    s = setup()
    async with asyncio.TaskGroup() as tasks:
        polling = tasks.create_task(s.poller.run())
        await asyncio.sleep(0.1)
        await s.put(txt=message_txt())
        for _ in range(100):
            if s.gateway.intakes:
                break
            await asyncio.sleep(0.02)
        polling.cancel()
    assert len(s.gateway.intakes) == 1 and s.poller.totals.accepted == 1


# -- the .txt -----------------------------------------------------------------------------
def test_parse_message_info_reads_every_field_asterisk_writes() -> None:
    info = parse_message_info(message_txt(duration=42, flag="Urgent"))
    assert (info.origmailbox, info.context, info.exten) == ("12345", "afterhours", "s")
    assert info.callerchan == "PJSIP/trunk-00000001"
    assert info.callerid == '"Zhang San" <13800138000>'
    assert info.origdate == "Mon Nov 23 02:01:02 AM UTC 2026"
    assert (info.origtime, info.msg_id, info.flag, info.duration) == (
        ORIGTIME, f"{ORIGTIME}-00000000", "Urgent", 42)


def test_caller_names_in_gbk_are_read() -> None:
    info = parse_message_info(message_txt(callerid='"张三" <13800138000>', encoding="gbk"))
    assert split_callerid(info.callerid) == ("张三", "13800138000")


@pytest.mark.parametrize(("callerid", "expected"), [
    ('"Zhang San" <13800138000>', ("Zhang San", "13800138000")),
    ("13800138000", (None, "13800138000")),
    ("+86 138 0013 8000", (None, "13800138000")),
    ("Zhang San", ("Zhang San", None)),
    ("Unknown", (None, None)),
    ('"anonymous" <anonymous>', (None, None)),
    ('"13800138000" <13800138000>', (None, "13800138000")),
    ("<0571-88888888>", (None, "0571-88888888")),
    ("", (None, None)),
])
def test_split_callerid(callerid: str, expected: tuple[str | None, str | None]) -> None:
    assert split_callerid(callerid) == expected


# -- transcription (issue 5): the real Korean Vosk model through asr.files ------------------
async def ko_1_wav() -> bytes:
    """``tests/data/audio/ko-1.wav``: 8 kHz mono 16-bit PCM, what Asterisk's ``wav`` format
    records, so it serves as the voicemail's ``msg0000.wav`` as is."""
    return await asyncio.to_thread((AUDIO / "ko-1.wav").read_bytes)


async def test_a_voicemail_is_transcribed_into_its_intake(
        setup: Callable[..., Setup], ko_model: Any, korean: KoreanAudio) -> None:
    async with LocalRecognizer(ko_model, AsrConfig()) as recognizer:
        s = setup(transcribe=make_transcriber(recognizer, 8000))
        await s.put(txt=message_txt(), audio={"wav": await ko_1_wav()})

        report = await s.poller.poll_once()

        direct = await transcribe_file(AUDIO / "ko-1.wav", recognizer)
        assert recognizer.active_streams == 0
    assert (report.accepted, report.bad) == (1, {})
    [intake] = s.gateway.intakes
    assert intake.call is not None and intake.call.transcript
    assert intake.call.transcript == "\n".join(seg.text for seg in direct)
    assert intake.call.transcript == "\n".join(seg.text for seg in korean.reference["ko-1"])
    assert intake.text == "（语音留言，时长 17 秒，内容见语音转写）"
    assert await s.names("INBOX") == []


async def test_a_wav49_voicemail_is_transcribed_through_sox(
        setup: Callable[..., Setup], ko_model: Any, tmp_path: Path) -> None:
    """Asterisk's ``wav49`` format (GSM in a WAV, ``msg0000.WAV``), made from ko-1 by sox."""
    gsm = tmp_path / "ko-1-gsm.WAV"
    await asyncio.to_thread(subprocess.run, ["sox", str(AUDIO / "ko-1.wav"), "-t", "wav",
                                             "-e", "gsm-full-rate", str(gsm)], check=True)
    async with LocalRecognizer(ko_model, AsrConfig()) as recognizer:
        s = setup(transcribe=make_transcriber(recognizer, 8000))
        await s.put(txt=message_txt(), audio={"WAV": await asyncio.to_thread(gsm.read_bytes)})

        await s.poller.poll_once()

        direct = await transcribe_file(gsm, recognizer)
    [intake] = s.gateway.intakes
    assert intake.call is not None and direct
    assert intake.call.transcript == "\n".join(seg.text for seg in direct)


async def test_recogniser_full_the_voicemail_is_still_submitted_without_transcript(
        setup: Callable[..., Setup], ko_model: Any) -> None:
    """Live calls hold every stream (``max_streams: 1``, one stream open): the transcription
    is refused (real :class:`CapacityExceeded`) and the citizen is still called back."""
    async with LocalRecognizer(ko_model, AsrConfig(max_streams=1)) as recognizer:
        s = setup(transcribe=make_transcriber(recognizer, 8000))
        await s.put(txt=message_txt(), audio={"wav": await ko_1_wav()})
        async with recognizer.open("live-call", 8000, ListSink()):
            report = await s.poller.poll_once()
    assert (report.accepted, report.failed) == (1, 0)
    [intake] = s.gateway.intakes
    assert intake.call is not None and intake.call.transcript is None
    assert intake.text == "（语音留言，时长 17 秒，待转写）"
    assert len(intake.attachments) == 1 and await s.names("INBOX") == []


async def test_a_transcriber_that_raises_or_hangs_never_holds_back_the_message(
        setup: Callable[..., Setup]) -> None:
    """Stand-ins for a recogniser that fails in an unforeseen way and one that never answers
    (a stalled vosk-server): neither can be produced on demand with the real components."""
    calls: list[Path] = []

    async def broken(path: Path) -> str | None:
        calls.append(path)
        raise ValueError("unexpected reply from vosk-server")

    async def stalled(path: Path) -> str | None:
        calls.append(path)
        await asyncio.Event().wait()
        return "never"

    for transcribe in (broken, stalled):
        s = setup(transcribe=transcribe, transcribe_seconds=0.2)
        await s.put(txt=message_txt(), audio={"wav": wav_bytes()})
        report = await s.poller.poll_once()
        assert report.accepted == 1
        [intake] = s.gateway.intakes
        assert intake.call is not None and intake.call.transcript is None
        assert await s.names("INBOX") == []
    assert [p.name for p in calls] == ["msg0000.wav", "msg0000.wav"]
