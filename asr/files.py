"""Recorded audio (voicemail, call recordings) through the same recogniser as live calls.

16-bit mono PCM WAV at 8 or 16 kHz is read directly; anything else (other rates, stereo,
μ-law/GSM WAV, ``.gsm``, ``.mp3`` with libsox-fmt-mp3 ...) is converted on the fly by ``sox``
(Debian package ``sox``) running as a subprocess, its output streamed into the recogniser.
``hotline asr transcribe FILES...`` is a thin CLI over :func:`transcribe_files`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import wave
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]

from asr.ports import CapacityExceeded, Recognizer, RecognitionStream, Segment

log = logging.getLogger(__name__)

DIRECT_RATES = (8000, 16000)
READ_SECONDS = 10.0          # read / convert this much audio at a time (memory stays flat)


class FileTranscriptionError(RuntimeError):
    """A file could not be read or converted."""

    code = "asr_file_unreadable"


@dataclass(frozen=True)
class FileTranscript:
    """One file's final segments, or why it failed."""

    path: Path
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None

    @property
    def text(self) -> str:
        """The final segments' text, one per line."""
        return "\n".join(s.text for s in self.segments)


class _Finals:
    """Keeps final segments only (a file's partials interest no one)."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    async def segment(self, seg: Segment) -> None:
        if seg.final:
            self.segments.append(seg)


def _direct_format(path: Path) -> int | None:
    """The sample rate if the file is a WAV Vosk can take as is, else None."""
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getcomptype()) == (1, 2, "NONE") \
                    and w.getframerate() in DIRECT_RATES:
                return w.getframerate()
    except (wave.Error, EOFError):
        pass     # not PCM WAV (μ-law, GSM, mp3 ...): sox converts it
    return None


async def transcribe_file(path: str | os.PathLike[str], recognizer: Recognizer, *,
                          sample_rate: int = 8000, stream_id: str | None = None
                          ) -> list[Segment]:
    """The final segments of one recorded file (times from the start of the file).

    ``sample_rate`` is the rate sox converts to when the file is not already 8/16 kHz mono
    16-bit WAV (use ``asr.sample_rate``). Raises :class:`FileTranscriptionError` when the file
    cannot be read or converted, :class:`~asr.ports.CapacityExceeded` when the recogniser is
    full.
    """
    src = Path(path)
    if not await asyncio.to_thread(src.is_file):
        raise FileTranscriptionError(f"录音文件不存在 / no such file: {src}")
    sink = _Finals()
    rate = await asyncio.to_thread(_direct_format, src)
    async with recognizer.open(stream_id or f"file:{src.name}", rate or sample_rate,
                               sink) as stream:
        if rate is not None:
            await _feed_wav(src, rate, stream)
        else:
            await _feed_sox(src, sample_rate, stream)
        await stream.finish()
    return sink.segments


async def _feed_wav(path: Path, rate: int, stream: RecognitionStream) -> None:
    with await asyncio.to_thread(wave.open, str(path), "rb") as w:
        while block := await asyncio.to_thread(w.readframes, int(rate * READ_SECONDS)):
            await stream.feed(block)


async def _feed_sox(path: Path, rate: int, stream: RecognitionStream) -> None:
    command = ["sox", "-V1", str(path), "-t", "raw", "-r", str(rate), "-c", "1", "-b", "16",
               "-e", "signed-integer", "-L", "-"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError as exc:
        raise FileTranscriptionError(
            f"未找到 sox, 无法转换 {path} / sox not installed (Debian package 'sox')") from exc
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.TaskGroup() as tg:
            errors = tg.create_task(proc.stderr.read())
            while block := await proc.stdout.read(int(rate * 2 * READ_SECONDS)):
                await stream.feed(block)
        code = await proc.wait()
    finally:
        if proc.returncode is None:      # cancelled or the recogniser failed: stop sox
            proc.kill()
            await proc.wait()
    if code != 0:
        message = errors.result().decode(errors="replace").strip()
        raise FileTranscriptionError(f"sox 无法转换 {path} / sox failed ({code}): {message}")


async def transcribe_files(paths: Iterable[str | os.PathLike[str]], recognizer: Recognizer, *,
                           progress: bool = True, concurrency: int = 1,
                           sample_rate: int = 8000,
                           on_result: Callable[[FileTranscript], Awaitable[None]] | None = None,
                           ) -> list[FileTranscript]:
    """Transcribe files, ``concurrency`` at a time (at most the recogniser's
    ``asr.max_streams``), with a tqdm progress bar on stderr when ``progress``.

    A file that fails does not stop the others: its :class:`FileTranscript` carries the error
    (also logged). ``on_result`` is awaited as each file completes (e.g. to write the transcript
    to its call or intake). Results are in the order of ``paths``.
    """
    files = [Path(p) for p in paths]
    results: list[FileTranscript | None] = [None] * len(files)
    slots = asyncio.Semaphore(max(1, concurrency))
    # tqdm writes to the terminal: done in a thread, the loop never waits on it.
    bar = await asyncio.to_thread(tqdm, total=len(files), unit="file", desc="转写 transcribe",
                                  disable=not progress)

    async def one(index: int, path: Path) -> None:
        async with slots:
            try:
                result = FileTranscript(path, await transcribe_file(
                    path, recognizer, sample_rate=sample_rate))
            except (FileTranscriptionError, CapacityExceeded, OSError, RuntimeError) as exc:
                log.error("ASR 录音转写失败 / transcription of %s failed: %s", path, exc,
                          extra={"path": str(path)})
                result = FileTranscript(path, error=str(exc))
            results[index] = result
            if on_result is not None:
                await on_result(result)
            await asyncio.to_thread(bar.update, 1)

    try:
        async with asyncio.TaskGroup() as tg:
            for index, path in enumerate(files):
                tg.create_task(one(index, path))
    finally:
        await asyncio.to_thread(bar.close)
    return [r for r in results if r is not None]
