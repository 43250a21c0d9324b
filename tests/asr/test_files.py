"""``asr.files``: recorded files through the real LocalRecognizer (Korean model), direct WAV
and via a real ``sox`` subprocess."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from asr.files import FileTranscript, FileTranscriptionError, transcribe_file, transcribe_files
from asr.local import LocalRecognizer
from config.asr import AsrConfig
from tests.asr.recog_fixtures import (AUDIO, KoreanAudio, bare_vosk, ko_model, ko_model_dir,
                                      korean, transcript)

__all__ = ["ko_model", "ko_model_dir", "korean"]   # session fixtures used below


def sox_to_raw(path: Path) -> bytes:
    """What the service's sox command line makes of ``path`` (8 kHz mono s16le)."""
    return subprocess.run(["sox", "-V1", str(path), "-t", "raw", "-r", "8000", "-c", "1",
                           "-b", "16", "-e", "signed-integer", "-L", "-"],
                          check=True, capture_output=True).stdout


def make_ulaw(tmp_path: Path) -> Path:
    """ko-2 as 8 kHz μ-law WAV (what Asterisk's voicemail can record): Python's ``wave``
    refuses it, so it goes through sox."""
    out = tmp_path / "voicemail-ulaw.wav"
    subprocess.run(["sox", str(AUDIO / "ko-2.wav"), "-e", "u-law", str(out)], check=True)
    return out


async def test_direct_wav_equals_bare_vosk(ko_model: Any, korean: KoreanAudio) -> None:
    async with LocalRecognizer(ko_model, AsrConfig()) as recognizer:
        segments = await transcribe_file(AUDIO / "ko-2.wav", recognizer)
    assert segments and all(s.final for s in segments)
    assert transcript(segments) == transcript(korean.reference["ko-2"])
    assert segments[0].stream_id == "file:ko-2.wav"


async def test_other_format_is_converted_by_sox(ko_model: Any, tmp_path: Path) -> None:
    ulaw = await asyncio.to_thread(make_ulaw, tmp_path)
    reference = await asyncio.to_thread(lambda: bare_vosk(ko_model, sox_to_raw(ulaw)))
    async with LocalRecognizer(ko_model, AsrConfig()) as recognizer:
        segments = await transcribe_file(ulaw, recognizer)
        assert recognizer.active_streams == 0
    assert reference and transcript(segments) == transcript(reference)


async def test_batch_reports_bad_files_and_goes_on(ko_model: Any, korean: KoreanAudio,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "not-audio.wav"
    await asyncio.to_thread(garbage.write_bytes, b"this is not a recording\n" * 10)
    missing = tmp_path / "missing.wav"
    seen: list[FileTranscript] = []

    async def on_result(result: FileTranscript) -> None:
        seen.append(result)

    async with LocalRecognizer(ko_model, AsrConfig(max_streams=2)) as recognizer:
        results = await transcribe_files([garbage, AUDIO / "ko-1.wav", missing], recognizer,
                                         progress=True, concurrency=2, on_result=on_result)
        assert recognizer.active_streams == 0
    assert [r.path for r in results] == [garbage, AUDIO / "ko-1.wav", missing]
    assert results[0].error is not None and "sox" in results[0].error
    assert transcript(results[1].segments) == transcript(korean.reference["ko-1"])
    assert results[1].error is None and results[1].text
    assert results[2].error is not None and "不存在" in results[2].error
    assert sorted(map(str, (r.path for r in seen))) == sorted(map(str, (r.path for r in results)))
    assert "3/3" in capsys.readouterr().err          # the progress bar reached the end


async def test_missing_sox_is_a_clear_error(ko_model: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """sox exists here; PATH without it stands in for a machine where it is not installed."""
    ulaw = await asyncio.to_thread(make_ulaw, tmp_path)
    assert await asyncio.to_thread(shutil.which, "sox")
    monkeypatch.setenv("PATH", str(tmp_path))
    async with LocalRecognizer(ko_model, AsrConfig()) as recognizer:
        with pytest.raises(FileTranscriptionError, match="未找到 sox"):
            await transcribe_file(ulaw, recognizer)
        assert recognizer.active_streams == 0
