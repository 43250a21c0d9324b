"""``asr.local.LocalRecognizer`` with the real Korean Vosk model and espeak-ng speech.

Fidelity, not accuracy: what comes through feed() in 320-byte AudioSocket frames → queue →
pool thread must be exactly what bare Vosk gives over the same WAV (words, timings, confidence).
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from asr.local import MAX_BATCH_SECONDS, LocalRecognizer
from asr.ports import CapacityExceeded, Segment
from asr.recog_metrics import AsrCollector
from config.asr import AsrConfig
from tests.asr.recog_fixtures import (FRAME, RATE, KoreanAudio, ListSink, bare_vosk,
                                      ko_model, ko_model_dir, korean, transcript)

__all__ = ["ko_model", "ko_model_dir", "korean"]   # session fixtures used below

Factory = Callable[..., AbstractAsyncContextManager[LocalRecognizer]]


@pytest.fixture
def local(ko_model: Any) -> Factory:
    """``async with local(**asr_config) as recognizer``; checks no recogniser is left."""

    @asynccontextmanager
    async def make(**cfg: Any) -> AsyncIterator[LocalRecognizer]:
        config = AsrConfig(**{"partial_interval_seconds": 0.0, **cfg})
        async with LocalRecognizer(ko_model, config) as recognizer:
            yield recognizer
            assert recognizer.active_streams == 0
    return make


async def stream_pcm(recognizer: LocalRecognizer, stream_id: str, pcm: bytes,
                     sink: ListSink | None = None) -> ListSink:
    """Feed ``pcm`` in AudioSocket-sized frames, then finish; return the sink."""
    sink = sink or ListSink()
    async with recognizer.open(stream_id, RATE, sink) as stream:
        for i in range(0, len(pcm), FRAME):
            await stream.feed(pcm[i:i + FRAME])
        await stream.finish()
    return sink


def check_order(segments: list[Segment]) -> None:
    assert [s.seq for s in segments] == list(range(len(segments)))
    assert segments[-1].final


async def test_single_stream_equals_bare_vosk(local: Factory, korean: KoreanAudio) -> None:
    async with local() as recognizer:
        sink = await stream_pcm(recognizer, "call-1", korean.pcm["ko-3"])
        assert recognizer.active_streams == 0
    assert transcript(sink.segments) == transcript(korean.reference["ko-3"])
    assert sink.finals[0].words, "final results carry word timings"
    first_final = sink.segments.index(sink.finals[0])
    partials = [s for s in sink.segments[:first_final] if not s.final]
    assert partials, "partial results arrive before the final"
    check_order(sink.segments)
    assert recognizer.stats.audio_seconds == pytest.approx(len(korean.pcm["ko-3"]) / 2 / RATE)


async def test_three_concurrent_streams_equal_bare_vosk(local: Factory,
                                                        korean: KoreanAudio) -> None:
    async with local(max_streams=3) as recognizer:
        sinks = await asyncio.gather(*(stream_pcm(recognizer, name, korean.pcm[name])
                                       for name in korean.pcm))
    for name, sink in zip(korean.pcm, sinks, strict=True):
        assert transcript(sink.segments) == transcript(korean.reference[name]), name
        assert {s.stream_id for s in sink.segments} == {name}
        check_order(sink.segments)


async def test_partials_are_throttled(local: Factory, korean: KoreanAudio) -> None:
    """With a long interval, only the first partial of the stream gets through."""
    async with local(partial_interval_seconds=3600) as recognizer:
        sink = await stream_pcm(recognizer, "slow-partials", korean.pcm["ko-1"])
    assert len([s for s in sink.segments if not s.final]) == 1
    assert transcript(sink.segments) == transcript(korean.reference["ko-1"])


async def test_silence_only(local: Factory, ko_model: Any) -> None:
    """12 s of digital silence: no words, same as bare Vosk, nothing left behind."""
    silence = bytes(12 * RATE * 2)
    reference = await asyncio.to_thread(bare_vosk, ko_model, silence)
    async with local() as recognizer:
        sink = await stream_pcm(recognizer, "silence", silence)
    assert transcript(sink.segments) == transcript(reference)
    assert all(not s.words for s in sink.segments)


async def test_clipping_noise(local: Factory, ko_model: Any) -> None:
    """Full-scale clipped noise (a hot microphone): decoded like bare Vosk, no crash."""
    rng = random.Random(5)
    noise = struct.pack(f"<{3 * RATE}h", *(rng.choice((-32768, 32767)) for _ in range(3 * RATE)))
    reference = await asyncio.to_thread(bare_vosk, ko_model, noise)
    async with local() as recognizer:
        sink = await stream_pcm(recognizer, "noise", noise)
    assert transcript(sink.segments) == transcript(reference)


async def test_stream_cut_mid_frame(local: Factory, korean: KoreanAudio) -> None:
    """An odd byte count at the end (a torn sample) is dropped, the rest decoded."""
    pcm = korean.pcm["ko-2"]
    async with local() as recognizer:
        sink = await stream_pcm(recognizer, "torn", pcm + b"\x01")
    assert transcript(sink.segments) == transcript(korean.reference["ko-2"])


async def test_abandoned_mid_utterance_frees_the_recognizer(local: Factory,
                                                            korean: KoreanAudio) -> None:
    """Hangup mid-utterance: leaving the context without finish() frees the recogniser, no
    segment arrives afterwards, and the pool is usable again."""
    pcm = korean.pcm["ko-3"]
    async with local(max_streams=1) as recognizer:
        sink = ListSink()
        async with recognizer.open("hangup", RATE, sink) as stream:
            for i in range(0, len(pcm) // 2, FRAME):
                await stream.feed(pcm[i:i + FRAME])
            assert recognizer.active_streams == 1
        assert recognizer.active_streams == 0
        assert recognizer.stats.abandoned_total == 1
        assert recognizer.stats.queued_seconds == pytest.approx(0.0, abs=1e-9)
        seen = len(sink.segments)
        await asyncio.sleep(0.3)
        assert len(sink.segments) == seen
        assert not any(s.final and s.words and s.end and s.end > len(pcm) / 4 / RATE + 0.5
                       for s in sink.segments)
        # The single slot is free again.
        again = await stream_pcm(recognizer, "next", korean.pcm["ko-1"])
    assert transcript(again.segments) == transcript(korean.reference["ko-1"])


async def test_capacity_refused_at_once_logged_and_counted(
        local: Factory, korean: KoreanAudio, caplog: pytest.LogCaptureFixture) -> None:
    async with local(max_streams=1) as recognizer:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(AsrCollector(recognizer.stats))
        async with recognizer.open("first", RATE, ListSink()) as stream:
            with pytest.raises(CapacityExceeded, match="容量已满"):
                recognizer.open("second", RATE, ListSink())
            exposition = generate_latest(registry).decode()
            assert 'hotline_asr_recognizer_streams_active{mode="local"} 1.0' in exposition
            await stream.feed(korean.pcm["ko-1"][:RATE])
            await stream.finish()
        exposition = generate_latest(registry).decode()
    assert 'hotline_asr_recognizer_refused_total{mode="local",reason="capacity"} 1.0' \
        in exposition
    assert 'hotline_asr_recognizer_capacity{mode="local"} 1.0' in exposition
    assert 'hotline_asr_recognizer_streams_active{mode="local"} 0.0' in exposition
    assert any("second" in r.getMessage() and "refused" in r.getMessage()
               for r in caplog.records)


async def test_closed_recognizer_refuses(ko_model: Any) -> None:
    recognizer = LocalRecognizer(ko_model, AsrConfig())
    with pytest.raises(CapacityExceeded, match="已关闭"):
        recognizer.open("early", RATE, ListSink())
    assert recognizer.stats.refused["closed"] == 1


class GatedSink(ListSink):
    """A sink that holds the decoder until released (a slow consumer)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def segment(self, seg: Segment) -> None:
        await self.gate.wait()
        await super().segment(seg)


async def test_full_queue_holds_back_feed_and_drops_nothing(local: Factory,
                                                            korean: KoreanAudio) -> None:
    """Backpressure: with a 0.5 s queue and a stalled consumer, feed() waits instead of
    dropping; once released, every second of audio is decoded and the transcript is intact."""
    pcm = korean.pcm["ko-1"]
    sink = GatedSink()
    async with local(queue_seconds=0.5) as recognizer:
        async with recognizer.open("stalled", RATE, sink) as stream:
            fed = 0

            async def feeder() -> None:
                nonlocal fed
                for i in range(0, len(pcm), FRAME):
                    await stream.feed(pcm[i:i + FRAME])
                    fed = i + FRAME
                await stream.finish()

            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(feeder())
                await asyncio.sleep(1.0)
                assert not task.done()
                # Held: the queue (0.5 s) and one batch in the decoder, stuck at the sink.
                assert fed < len(pcm) // 2
                assert recognizer.stats.queued_seconds <= 0.5 + MAX_BATCH_SECONDS + 1e-9
                sink.gate.set()
    assert recognizer.stats.audio_seconds == pytest.approx(len(pcm) / 2 / RATE)
    assert transcript(sink.segments) == transcript(korean.reference["ko-1"])


class FailingSink(ListSink):
    async def segment(self, seg: Segment) -> None:
        raise ConnectionError("screen-pop channel closed")


async def test_sink_failure_is_reported_to_the_feeder(local: Factory,
                                                      korean: KoreanAudio) -> None:
    async with local() as recognizer:
        with pytest.raises(RuntimeError, match="screen-pop channel closed"):
            await stream_pcm(recognizer, "broken", korean.pcm["ko-1"], FailingSink())
        assert recognizer.stats.failed["ConnectionError"] == 1


async def test_decoding_runs_in_the_pool_not_on_the_loop(local: Factory, korean: KoreanAudio,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A spy around the decode function records the thread every Vosk call ran on."""
    import threading

    import asr.local
    threads: set[str] = set()
    real = asr.local._decode

    def spy(*args: Any) -> Any:
        threads.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(asr.local, "_decode", spy)
    async with local(workers=1) as recognizer:
        await stream_pcm(recognizer, "threads", korean.pcm["ko-1"][:2 * RATE])
    assert threads and all(name.startswith("asr-decode") for name in threads)
    assert threading.current_thread().name not in threads
