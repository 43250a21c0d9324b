"""Voicemail transcription: what :class:`channels.voicemail.VoicemailPoller` calls before it
submits a message, so the intake carries the caller's words (``CallDetails.transcript``).

The transcriber goes through the same recogniser as live calls (:func:`asr.files.transcribe_file`:
PCM WAV directly, wav49/GSM/μ-law through ``sox``); it counts against ``asr.max_streams`` like
any stream and raises :class:`~asr.ports.CapacityExceeded` when live calls fill it (the poller
then submits the message without a transcript: the citizen is called back regardless).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from asr.files import transcribe_file
from asr.ports import Recognizer

Transcriber = Callable[[Path], Awaitable[str | None]]


def make_transcriber(recognizer: Recognizer, sample_rate: int) -> Transcriber:
    """A function giving a recording's transcript: the final segments' text, one utterance per
    line, or ``None`` when nothing was recognised. ``sample_rate`` is the rate ``sox``
    converts to when the recording is not 8/16 kHz PCM WAV (use ``asr.sample_rate``).

    Errors are the caller's to handle: :class:`~asr.files.FileTranscriptionError` (unreadable
    or unconvertible), :class:`~asr.ports.CapacityExceeded`, ``OSError``.
    """

    async def transcribe(path: Path) -> str | None:
        segments = await transcribe_file(path, recognizer, sample_rate=sample_rate,
                                         stream_id=f"voicemail:{path.name}")
        text = "\n".join(s.text for s in segments if s.text)
        return text or None

    return transcribe
