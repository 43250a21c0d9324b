"""Fixtures of the AudioSocket tests: the trace 11 recordings (copied into ``tests/data/audio``)
and a recording :class:`~asr.ports.Recognizer`.

The recogniser is a test double on purpose: it is the seam between the AudioSocket server and
Vosk, and these tests check what crosses it (every sample, in order, of the right call). Real
Vosk decoding behind the same port is tested with the ``asr.local`` / ``asr.remote`` tests.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from asr.calls import AsrCallDirectory
from asr.ports import CapacityExceeded, Segment, TranscriptSink
from asr.server import AudioSocketServer, CallRef
from config.asr import AudioSocketConfig
from telephony.events import VariableSet, parse_event
from telephony.simulator.wire import parse_block
from tests.conftest import load_trace

AUDIO = Path(__file__).resolve().parent.parent / "data" / "audio"
TRACE11_BIN = AUDIO / "11-audiosocket-ivr.bin"
TRACE11_WAV = AUDIO / "11-source-speech.wav"


def wav_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def trace11_varset() -> VariableSet:
    """The ``VarSet ASR_UUID`` of trace 11, typed by the service's own parser."""
    for line in load_trace("11-audiosocket-ivr"):
        if line.dir == "received" and "Variable: ASR_UUID" in line.text:
            event = parse_event(dict(parse_block(line.text.encode())))
            assert isinstance(event, VariableSet)
            return event
    raise AssertionError("trace 11 has no VarSet ASR_UUID")


@dataclass(eq=False)
class RecordingStream:
    """Keeps every byte fed; ``finish`` sends one final segment naming the sample count."""

    stream_id: str
    sample_rate: int
    sink: TranscriptSink
    pcm: bytearray = field(default_factory=bytearray)
    finished: bool = False
    closed: bool = False
    gate: asyncio.Event | None = None   # when set, feed() waits for it (a slow decoder)

    async def feed(self, pcm: bytes) -> None:
        assert not self.finished and not self.closed
        if self.gate is not None:
            await self.gate.wait()
        self.pcm += pcm

    async def finish(self) -> None:
        self.finished = True
        await self.sink.segment(Segment(self.stream_id, f"{len(self.pcm) // 2} samples",
                                        final=True, seq=1))


class RecordingRecognizer:
    """A :class:`~asr.ports.Recognizer` that records; ``open_now`` is its pool in use."""

    def __init__(self, max_streams: int = 4) -> None:
        self.max_streams = max_streams
        self.open_now = 0
        self.streams: list[RecordingStream] = []
        self.closed: asyncio.Queue[RecordingStream] = asyncio.Queue()
        self.slow = False

    def open(self, stream_id: str, sample_rate: int, sink: TranscriptSink
             ) -> AbstractAsyncContextManager[RecordingStream]:
        if self.open_now >= self.max_streams:
            raise CapacityExceeded(f"{self.open_now} streams open")
        return self._open(stream_id, sample_rate, sink)

    @asynccontextmanager
    async def _open(self, stream_id: str, sample_rate: int,
                    sink: TranscriptSink) -> AsyncIterator[RecordingStream]:
        stream = RecordingStream(stream_id, sample_rate, sink,
                                 gate=asyncio.Event() if self.slow else None)
        self.streams.append(stream)
        self.open_now += 1
        try:
            yield stream
        finally:
            self.open_now -= 1
            stream.closed = True
            self.closed.put_nowait(stream)

    async def next_closed(self, timeout: float = 5.0) -> RecordingStream:
        async with asyncio.timeout(timeout):
            return await self.closed.get()


class RecordingSink:
    """Segments per call."""

    def __init__(self, call: CallRef, log: list[tuple[CallRef, Segment]]) -> None:
        self.call = call
        self.log = log

    async def segment(self, seg: Segment) -> None:
        self.log.append((self.call, seg))


@dataclass
class Rig:
    """A running server with its recogniser double, directory and what reached the sinks."""

    server: AudioSocketServer
    recognizer: RecordingRecognizer
    calls: AsrCallDirectory
    segments: list[tuple[CallRef, Segment]]
    dtmf: list[tuple[CallRef, str, float]]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.server.port)


RigFactory = Callable[..., AbstractAsyncContextManager[Rig]]


@pytest.fixture
def rig() -> Iterator[RigFactory]:
    """``async with rig(**audiosocket_config) as r``: a real server on a free port."""

    @asynccontextmanager
    async def make(max_streams: int = 4, ivr_seconds: float | None = 9.0,
                   sample_rate: int = 8000, **cfg: float) -> AsyncIterator[Rig]:
        recognizer = RecordingRecognizer(max_streams)
        calls = AsrCallDirectory()
        segments: list[tuple[CallRef, Segment]] = []
        dtmf: list[tuple[CallRef, str, float]] = []

        async def on_dtmf(call: CallRef, digit: str, at: float) -> None:
            dtmf.append((call, digit, at))

        config = AudioSocketConfig.model_validate({"host": "127.0.0.1", "port": 0, **cfg})
        server = AudioSocketServer(config, sample_rate=sample_rate, recognizer=recognizer,
                                   calls=calls,
                                   sink_factory=lambda call: RecordingSink(call, segments),
                                   on_dtmf=on_dtmf, ivr_seconds=ivr_seconds)
        async with server:
            yield Rig(server, recognizer, calls, segments, dtmf)
        # Whatever the test did, no recogniser is left open once the server is closed.
        assert recognizer.open_now == 0
        assert server.active_streams == 0

    yield make


@dataclass(frozen=True)
class Trace11:
    """Trace 11, read before the test's loop runs (file reads would block it)."""

    stream: bytes        # what Asterisk sent to the AudioSocket server
    wav: bytes           # the PCM of the file the caller's leg played
    varset: VariableSet  # the AMI event announcing the stream's UUID


@pytest.fixture(scope="session")
def trace11() -> Trace11:
    return Trace11(TRACE11_BIN.read_bytes(), wav_pcm(TRACE11_WAV), trace11_varset())
