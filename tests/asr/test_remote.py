"""``asr.remote.RemoteRecognizer`` against a real websocket server decoding with real Vosk.

vosk-server itself cannot be installed here (it is not on PyPI, and its Docker images cannot be
pulled), so :func:`vosk_server` below is a faithful port of its ``websocket/asr_server.py``
(alphacep/vosk-server, read at commit 0548fc3): same config message handling, one
``KaldiRecognizer`` per connection created at the first audio message, ``process_chunk`` verbatim
(including the exact ``'{"eof" : 1}'`` string compare), decoding in a thread pool, one reply per
message, the loop left after the final. Ported from the legacy ``websockets.serve(handler(ws,
path))`` API to ``websockets.asyncio.server``. Left out: the speaker model and the profanity
filter (English-only, ``profanity_filter`` package), neither of which changes the protocol.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import vosk  # type: ignore[import-untyped]
from websockets.asyncio.server import Server, ServerConnection, serve

from asr.local import LocalRecognizer
from asr.ports import CapacityExceeded
from asr.remote import RemoteRecognizer, RemoteStreamLost, RemoteUnavailable, ServerPool
from config.asr import AsrConfig, RemoteConfig
from tests.asr.recog_fixtures import (FRAME, RATE, KoreanAudio, ListSink, ko_model,
                                      ko_model_dir, korean, transcript)

__all__ = ["ko_model", "ko_model_dir", "korean"]   # session fixtures used below


def process_chunk(rec: Any, message: bytes | str) -> tuple[str, bool]:
    # Verbatim from asr_server.py.
    if message == '{"eof" : 1}':
        return rec.FinalResult(), True
    elif rec.AcceptWaveform(message):
        return rec.Result(), False
    else:
        return rec.PartialResult(), False


def make_handler(model: Any, pool: concurrent.futures.Executor, die_after: int | None = None
                 ) -> Callable[[ServerConnection], Any]:
    """asr_server.py's ``recognize``; ``die_after`` N audio messages the server drops the TCP
    connection without a close frame (a crashed or unplugged server; not in the original)."""

    async def recognize(websocket: ServerConnection) -> None:
        rec = None
        sample_rate = 8000.0
        show_words = True
        max_alternatives = 0
        seen = 0
        loop = asyncio.get_running_loop()
        while True:
            message = await websocket.recv()
            if isinstance(message, str) and 'config' in message:
                jobj = json.loads(message)['config']
                if 'sample_rate' in jobj:
                    sample_rate = float(jobj['sample_rate'])
                if 'words' in jobj:
                    show_words = bool(jobj['words'])
                if 'max_alternatives' in jobj:
                    max_alternatives = int(jobj['max_alternatives'])
                continue
            if not rec:
                rec = vosk.KaldiRecognizer(model, sample_rate)
                rec.SetWords(show_words)
                rec.SetMaxAlternatives(max_alternatives)
            seen += 1
            if die_after is not None and seen > die_after:
                websocket.transport.abort()
                return
            response, stop = await loop.run_in_executor(pool, process_chunk, rec, message)
            await websocket.send(response)
            if stop:
                break
    return recognize


ServerFactory = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def vosk_server(ko_model: Any) -> ServerFactory:
    """``async with vosk_server() as url``: the port of vosk-server on a free port."""

    @asynccontextmanager
    async def make(die_after: int | None = None) -> AsyncIterator[str]:
        pool = concurrent.futures.ThreadPoolExecutor(2)
        try:
            server: Server
            async with serve(make_handler(ko_model, pool, die_after), "127.0.0.1", 0,
                             compression=None, max_size=None) as server:
                port = server.sockets[0].getsockname()[1]
                yield f"ws://127.0.0.1:{port}"
        finally:
            await asyncio.to_thread(pool.shutdown)
    return make


def dead_url() -> str:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}"


def config(*urls: str, **more: Any) -> AsrConfig:
    return AsrConfig(mode="remote", partial_interval_seconds=0.0,
                     remote=RemoteConfig(urls=list(urls)), **more)


async def stream_pcm(recognizer: RemoteRecognizer | LocalRecognizer, stream_id: str,
                     pcm: bytes) -> ListSink:
    sink = ListSink()
    async with recognizer.open(stream_id, RATE, sink) as stream:
        for i in range(0, len(pcm), FRAME):
            await stream.feed(pcm[i:i + FRAME])
        await stream.finish()
    return sink


async def test_remote_transcript_equals_local(vosk_server: ServerFactory, ko_model: Any,
                                              korean: KoreanAudio) -> None:
    pcm = korean.pcm["ko-1"]
    async with vosk_server() as url, RemoteRecognizer(config(url)) as remote:
        sink = await stream_pcm(remote, "remote-1", pcm)
        assert remote.active_streams == 0
    async with LocalRecognizer(ko_model, AsrConfig(partial_interval_seconds=0.0)) as local:
        local_sink = await stream_pcm(local, "local-1", pcm)
    assert transcript(sink.segments) == transcript(local_sink.segments)
    assert transcript(sink.segments) == transcript(korean.reference["ko-1"])
    first_final = sink.segments.index(sink.finals[0])
    assert any(not s.final for s in sink.segments[:first_final]), "partials before the final"
    assert [s.seq for s in sink.segments] == list(range(len(sink.segments)))
    assert remote.stats.audio_seconds == pytest.approx(len(pcm) / 2 / RATE)
    assert remote.stats.queued_seconds == pytest.approx(0.0, abs=1e-9)


async def test_failover_to_the_next_server(vosk_server: ServerFactory, korean: KoreanAudio,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The first server of the pool is down: the stream goes to the second, the failure is
    logged, and the dead one is tried last for the next stream."""
    down = dead_url()
    async with vosk_server() as url, RemoteRecognizer(config(down, url)) as remote:
        first = await stream_pcm(remote, "failover", korean.pcm["ko-2"])
        assert remote.pool.order()[0] == url
    assert transcript(first.segments) == transcript(korean.reference["ko-2"])
    assert any(down in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_no_server_reachable_refuses_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    async with RemoteRecognizer(config(dead_url(), dead_url())) as remote:
        with pytest.raises(RemoteUnavailable, match="没有可用"):
            async with remote.open("nowhere", RATE, ListSink()):
                raise AssertionError("not reached")
        assert remote.active_streams == 0
        assert remote.stats.refused["unavailable"] == 1
    assert issubclass(RemoteUnavailable, CapacityExceeded)


async def test_server_lost_mid_stream_is_reported(vosk_server: ServerFactory,
                                                  korean: KoreanAudio) -> None:
    pcm = korean.pcm["ko-3"]
    async with vosk_server(die_after=10) as url, RemoteRecognizer(config(url)) as remote:
        with pytest.raises(RemoteStreamLost, match="连接中断"):
            await stream_pcm(remote, "lost", pcm)
        assert remote.active_streams == 0
        assert remote.stats.failed["connection_lost"] == 1


async def test_capacity_and_abandoned_stream(vosk_server: ServerFactory,
                                             korean: KoreanAudio) -> None:
    pcm = korean.pcm["ko-1"]
    async with vosk_server() as url, RemoteRecognizer(config(url, max_streams=1)) as remote:
        async with remote.open("a", RATE, ListSink()) as stream:
            with pytest.raises(CapacityExceeded):
                remote.open("b", RATE, ListSink())
            await stream.feed(pcm[:len(pcm) // 2])
        assert remote.active_streams == 0
        assert remote.stats.abandoned_total == 1
        assert remote.stats.refused["capacity"] == 1


def test_pool_round_robin_skips_failed_servers() -> None:
    pool = ServerPool(["ws://a", "ws://b", "ws://c"], reconnect_seconds=60)
    assert [pool.order()[0] for _ in range(4)] == ["ws://a", "ws://b", "ws://c", "ws://a"]
    pool.failed("ws://b")
    assert pool.order() == ["ws://c", "ws://a", "ws://b"]      # b's turn, but it is down
    pool.succeeded("ws://b")
    assert [pool.order()[0] for _ in range(3)] == ["ws://c", "ws://a", "ws://b"]
