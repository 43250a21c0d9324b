"""The simulated caller's voice over AudioSocket, as Asterisk's ``AudioSocket()`` app sends it.

What the real byte stream of trace 11 (``tests/data/audio/11-audiosocket-ivr.bin``) shows and
this reproduces: one UUID frame at connect; nothing while the caller's leg waits (``Wait(1)``
sends no frames); then slin 8 kHz frames of 320 bytes (20 ms) paced in real time, the last one
short (the rest of the file); no hangup frame from Asterisk's side: the *server* ends the
stream (hangup frame or close) and ``AudioSocket()`` returns normally, so the dialplan goes on.

Pacing follows the simulator clock (``time_scale``): frame *k* leaves at ``k × 20 ms`` of
simulated time after the first, on an absolute schedule so sleeps do not add up drift.

If the server cannot be reached, ``app_audiosocket.c`` returns -1 (``ast_audiosocket_connect``
failed) and Asterisk hangs the caller up: :func:`stream_wav` returns ``False`` for the dialplan
to do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from asr.audiosocket import SLIN8_FRAME_BYTES, Kind, audio_frame, uuid_frame
from telephony.simulator.core import SimClock

log = logging.getLogger(__name__)

# The speech of trace 11 (espeak-ng Korean, 8 kHz mono 16-bit), committed with the tests.
DEFAULT_WAV: Final = (Path(__file__).resolve().parents[2]
                      / "tests" / "data" / "audio" / "11-source-speech.wav")
FRAME_SECONDS: Final = 0.02
# The caller leg's Wait(1) before its Playback (recorded [citizen] context): no frames meanwhile.
LEAD_IN_SECONDS: Final = 1.0


def read_wav(path: Path) -> bytes:
    """The PCM of an 8 kHz mono 16-bit WAV (what AudioSocket carries); ``ValueError`` else."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
            raise ValueError(f"{path}: 需要 8 kHz 单声道 16 位 WAV / need 8 kHz mono 16-bit, got "
                             f"{w.getframerate()} Hz × {w.getnchannels()} × "
                             f"{8 * w.getsampwidth()} bit")
        return w.readframes(w.getnframes())


@dataclass(frozen=True, slots=True)
class AudioSocketSource:
    """What simulated callers say into ``AudioSocket()``, and where the server is."""

    pcm: bytes
    host: str = "127.0.0.1"
    port: int = 9092
    lead_in: float = LEAD_IN_SECONDS

    @classmethod
    def from_wav(cls, path: Path = DEFAULT_WAV, host: str = "127.0.0.1", port: int = 9092,
                 lead_in: float = LEAD_IN_SECONDS) -> AudioSocketSource:
        """Read ``path`` once (blocking: call it at set-up, not from a running call)."""
        return cls(read_wav(path), host, port, lead_in)

    @property
    def target(self) -> str:
        """``host:port`` as written in the ``AudioSocket()`` app data."""
        return f"{self.host}:{self.port}"


def frames(pcm: bytes) -> list[bytes]:
    """320-byte slin frames, the last one short, as Asterisk's trace 11 stream has them."""
    return [audio_frame(pcm[i:i + SLIN8_FRAME_BYTES])
            for i in range(0, len(pcm), SLIN8_FRAME_BYTES)]


async def stream_wav(source: AudioSocketSource, clock: SimClock, stream_uuid: str,
                     limit: float) -> bool:
    """Run one ``AudioSocket()`` call: connect, UUID, paced audio, then wait for the server to
    end the stream (at most ``limit`` simulated seconds in all). ``False`` if the connection
    failed (Asterisk hangs up the caller then)."""
    try:
        reader, writer = await asyncio.open_connection(source.host, source.port)
    except OSError as exc:
        log.warning("模拟器：无法连接 AudioSocket 服务 %s（%s），按 Asterisk 行为挂断 / "
                    "simulator: AudioSocket connect failed, hanging up as Asterisk does",
                    source.target, exc)
        return False
    start = clock.now()
    ended = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(_until_server_ends(reader, ended))
            await _send(writer, clock, start, source, stream_uuid, ended)
            left = limit - (clock.now() - start)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, left) / clock.time_scale):
                    await ended.wait()
            watcher.cancel()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return True


async def _send(writer: asyncio.StreamWriter, clock: SimClock, start: float,
                source: AudioSocketSource, stream_uuid: str, ended: asyncio.Event) -> None:
    try:
        writer.write(uuid_frame(stream_uuid))
        await writer.drain()
        for k, frame in enumerate(frames(source.pcm)):
            await clock.sleep(start + source.lead_in + k * FRAME_SECONDS - clock.now())
            if ended.is_set():
                return
            writer.write(frame)
            await writer.drain()
    except ConnectionError:
        # The server closed while we were writing: the same as its hangup.
        ended.set()


async def _until_server_ends(reader: asyncio.StreamReader, ended: asyncio.Event) -> None:
    """Read what the server sends until its hangup frame or EOF (its audio is ignored)."""
    try:
        while True:
            head = await reader.readexactly(3)
            if head[0] == Kind.HANGUP:
                break
            await reader.readexactly(int.from_bytes(head[1:], "big"))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    ended.set()
