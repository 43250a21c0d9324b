"""Asterisk's AudioSocket wire format: 1-byte kind, 2-byte big-endian length, payload.

Kinds, from Asterisk's ``include/asterisk/res_audiosocket.h`` and ``res/res_audiosocket.c``:

* ``0x00`` hangup (either side may send it; Asterisk's dialplan app ends *normally* on it or on
  the socket closing, so the dialplan continues);
* ``0x01`` the stream's UUID, 16 bytes, always the first frame (``ast_audiosocket_init``);
* ``0x03`` one DTMF digit, 1 byte, ASCII (sent by the dialplan app since Asterisk 20.x);
* ``0x10`` signed-linear 16-bit little-endian mono audio at 8 kHz: all the ``AudioSocket()``
  dialplan app ever sends (it forces the channel's read format to ``slin``);
* ``0x11``..``0x18`` slin at 12, 16, 24, 32, 44.1, 48, 96 and 192 kHz: only the AudioSocket
  *channel driver* (``Dial(AudioSocket/...)``) sends them, in the order of
  ``ast_audiosocket_send_frame``'s format switch. (An older header, 2023, had ``0x11`` = slin16;
  current Asterisk numbers them by rate as here.) The server accepts a rate only when it is the
  recogniser's ``asr.sample_rate``; any other rate ends the stream with reason ``sample_rate``
  (no resampling: a wrong rate would silently give garbage words);
* ``0xff`` an Asterisk-side error, payload an optional 1-byte code (0x01 the calling party hung
  up, 0x02 frame forwarding error, 0x04 memory allocation error).

Everything here is pure (no I/O besides :func:`read_frame` on a ``StreamReader``).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

HEADER: Final = struct.Struct(">BH")
UUID_LEN: Final = 16
# 20 ms of slin at 8 kHz: what Asterisk sends per frame (trace 11: 317 frames of 320 bytes).
SLIN8_FRAME_BYTES: Final = 320


class Kind(IntEnum):
    """Frame kinds (``enum ast_audiosocket_msg_kind``)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    AUDIO_12K = 0x11
    AUDIO_16K = 0x12
    AUDIO_24K = 0x13
    AUDIO_32K = 0x14
    AUDIO_44K = 0x15
    AUDIO_48K = 0x16
    AUDIO_96K = 0x17
    AUDIO_192K = 0x18
    ERROR = 0xFF


AUDIO_RATES: Final[dict[int, int]] = {
    Kind.AUDIO: 8000, Kind.AUDIO_12K: 12000, Kind.AUDIO_16K: 16000, Kind.AUDIO_24K: 24000,
    Kind.AUDIO_32K: 32000, Kind.AUDIO_44K: 44100, Kind.AUDIO_48K: 48000,
    Kind.AUDIO_96K: 96000, Kind.AUDIO_192K: 192000,
}
RATE_KINDS: Final[dict[int, Kind]] = {rate: Kind(kind) for kind, rate in AUDIO_RATES.items()}

ERROR_CODES: Final[dict[int, str]] = {
    0x01: "主叫挂机 / calling party hung up",
    0x02: "帧转发错误 / frame forwarding error",
    0x04: "内存分配错误 / memory allocation error",
}
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


class FrameError(Exception):
    """A frame that breaks the protocol. ``reason`` is the metric label; the message is for
    operators (Chinese first)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Frame:
    """One AudioSocket message."""

    kind: int
    payload: bytes = b""

    @property
    def sample_rate(self) -> int | None:
        """The audio rate of an audio frame, ``None`` for every other kind."""
        return AUDIO_RATES.get(self.kind)

    def encode(self) -> bytes:
        """The frame on the wire."""
        return encode(self.kind, self.payload)


def encode(kind: int, payload: bytes = b"") -> bytes:
    """Header + payload; raises ``ValueError`` for a payload over 65535 bytes."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"AudioSocket payload of {len(payload)} bytes exceeds 65535")
    return HEADER.pack(kind, len(payload)) + payload


def uuid_frame(stream_uuid: str) -> bytes:
    """The first frame Asterisk sends: the UUID's 16 bytes (``uuid_parse`` of the string)."""
    return encode(Kind.UUID, uuid.UUID(stream_uuid).bytes)


def audio_frame(pcm: bytes, sample_rate: int = 8000) -> bytes:
    """A slin frame at ``sample_rate`` (8000 → kind 0x10)."""
    return encode(RATE_KINDS[sample_rate], pcm)


def dtmf_frame(digit: str) -> bytes:
    """One DTMF digit, as the dialplan app forwards it."""
    return encode(Kind.DTMF, digit.encode("ascii"))


def hangup_frame() -> bytes:
    """``0x00 0x00 0x00``: ends the stream; Asterisk's dialplan continues."""
    return encode(Kind.HANGUP)


def error_frame(code: int | None = None) -> bytes:
    """An Asterisk-side error (``code`` from :data:`ERROR_CODES`)."""
    return encode(Kind.ERROR, b"" if code is None else bytes([code]))


def parse_uuid(payload: bytes) -> str:
    """The canonical lower-case string of a UUID frame's 16 bytes (as ``${UUID()}`` prints)."""
    if len(payload) != UUID_LEN:
        raise FrameError("bad_length", f"UUID 帧长度应为 16 字节，实为 {len(payload)} / "
                                       f"UUID frame of {len(payload)} bytes, expected 16")
    return str(uuid.UUID(bytes=payload))


def parse_dtmf(payload: bytes) -> str:
    """The digit of a DTMF frame."""
    digit = payload.decode("ascii", "replace")
    if len(payload) != 1 or digit not in DTMF_DIGITS:
        raise FrameError("bad_dtmf", f"无效的 DTMF 帧 {payload!r} / invalid DTMF frame")
    return digit


def describe_error(payload: bytes) -> str:
    """Operator text for an error frame's code."""
    if not payload:
        return "Asterisk 错误（无错误码） / Asterisk error (no code)"
    code = payload[0]
    return f"Asterisk 错误 0x{code:02x}: {ERROR_CODES.get(code, '未知 / unknown')}"


def check(frame: Frame) -> Frame:
    """Reject a frame whose length its kind does not allow."""
    n = len(frame.payload)
    if frame.kind == Kind.UUID and n != UUID_LEN:
        raise FrameError("bad_length", f"UUID 帧长度应为 16 字节，实为 {n} / "
                                       f"UUID frame of {n} bytes, expected 16")
    if frame.kind == Kind.DTMF and n != 1:
        raise FrameError("bad_length", f"DTMF 帧长度应为 1 字节，实为 {n} / "
                                       f"DTMF frame of {n} bytes, expected 1")
    if frame.kind in AUDIO_RATES and (n == 0 or n % 2):
        # Asterisk never sends an empty or odd audio frame (samples are 2 bytes); one would
        # shift every later sample by a byte: noise for the rest of the call.
        raise FrameError("bad_length", f"音频帧长度 {n} 不是 16 位采样的整数倍 / "
                                       f"audio frame of {n} bytes is not whole 16-bit samples")
    if frame.kind == Kind.HANGUP and n != 0:
        raise FrameError("bad_length", f"挂机帧带有 {n} 字节数据 / hangup frame with "
                                       f"{n} bytes of payload")
    if frame.kind == Kind.ERROR and n > 1:
        raise FrameError("bad_length", f"错误帧长度 {n} / error frame of {n} bytes")
    if frame.kind not in AUDIO_RATES and frame.kind not in (
            Kind.HANGUP, Kind.UUID, Kind.DTMF, Kind.ERROR):
        raise FrameError("unknown_type", f"未知帧类型 0x{frame.kind:02x} / unknown frame kind")
    return frame


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, checked; ``None`` when the peer closed cleanly between frames.

    A connection closed inside a frame raises :class:`FrameError` ``truncated``.
    """
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("truncated", f"连接在帧头中断开（{len(exc.partial)}/3 字节） / "
                                      "stream cut inside a frame header") from None
    kind, length = HEADER.unpack(head)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise FrameError("truncated", f"连接在帧数据中断开（{len(exc.partial)}/{length} 字节）"
                                      f" / stream cut inside a frame of kind 0x{kind:02x}"
                         ) from None
    return check(Frame(kind, payload))
