"""The service's HTTP server over real sockets: read deadlines against slow clients, the
parser's 400s as JSON in one log line (never the bytes it quotes: a bearer token), and a
client that goes away counted, not logged as a server error."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from channels.http_state import IntakeHttpDeps
from channels.nonces import MemoryNonceStore
from httpkit.errors import CLIENT_EVENTS, ClientEvents
from httpkit.server import HotlineRunner, ReadDeadlines
from tests.channels.fakes import MemoryGateway
from tests.channels.intake_http import ADMIN, ManualClock, build_full_app, channels_config

DEADLINES = ReadDeadlines(headers=0.5, body=1.0)
SLOW_HANDLER_SECONDS = 1.5            # longer than both deadlines


class Server:
    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port

    @property
    def events(self) -> ClientEvents:
        return self.app[CLIENT_EVENTS]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Server]:
    clock = ManualClock()
    config = channels_config(str(tmp_path / "att"), rate_limit_per_minute=0)
    app = build_full_app(IntakeHttpDeps(gateway=MemoryGateway(), config=lambda: config,
                                        nonces=MemoryNonceStore(), clock=clock.wall))

    async def slow(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(SLOW_HANDLER_SECONDS)
        return web.json_response({"read": len(body)})

    app.router.add_post("/test/slow", slow)
    runner = HotlineRunner(app, deadlines=DEADLINES)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Server(app, runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with serving(tmp_path) as running:
        yield running


async def read_all(reader: asyncio.StreamReader, timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()


def split(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


async def test_twenty_clients_sending_a_byte_every_so_often_are_cut_off(server: Server) -> None:
    """The slow-loris of the issue, scaled down: before, every socket stayed open for as long
    as its client kept dribbling."""
    request = b"GET /healthz HTTP/1.1\r\nHost: hotline\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"

    async def dribble() -> tuple[float, bytes]:
        reader, writer = await server.connect()
        start = asyncio.get_running_loop().time()
        answer = b""
        try:
            for byte in request:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(reader.read(), 0.1)
                except TimeoutError:
                    continue
                break
        except ConnectionError:
            pass
        finally:
            writer.close()
        return asyncio.get_running_loop().time() - start, answer

    results = await asyncio.gather(*(dribble() for _ in range(20)))
    for held, answer in results:
        assert held < DEADLINES.headers + 1.0
        status, headers, body = split(answer)
        assert status == "HTTP/1.1 408 Request Timeout" and headers["server"] == "hotline"
        assert json.loads(body)["error"] == "request_timeout"
    assert server.events.counts["read_timeout"] == 20


async def test_an_idle_connection_that_never_sends_is_closed(server: Server) -> None:
    reader, writer = await server.connect()
    try:
        answer = await read_all(reader, DEADLINES.headers + 1.0)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_body_that_dribbles_is_a_json_408(server: Server) -> None:
    reader, writer = await server.connect()
    try:
        writer.write(b"POST /api/seats/1001/pause HTTP/1.1\r\nHost: hotline\r\n"
                     b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{")
        answering = asyncio.create_task(read_all(reader, DEADLINES.body + 2.0))
        while not answering.done():                      # a byte every 0.1 s
            await asyncio.sleep(0.1)
            writer.write(b" ")
        answer = await answering
    finally:
        writer.close()
    status, headers, body = split(answer)
    assert status.startswith("HTTP/1.1 408") and headers["connection"] == "close"
    assert json.loads(body)["error"] == "request_timeout"
    assert server.events.counts["read_timeout"] == 1


async def test_a_slow_handler_is_not_cut_and_keep_alive_is_not_a_deadline(
        server: Server) -> None:
    """The deadlines bound the request's arrival, not the answer (an AMI action may take its
    time), nor the pause between two requests of a keep-alive connection."""
    reader, writer = await server.connect()
    try:
        writer.write(b"POST /test/slow HTTP/1.1\r\nHost: hotline\r\nContent-Length: 2\r\n\r\n{}")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLOW_HANDLER_SECONDS + 2)
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(int(split(head)[1]["content-length"]))
        await asyncio.sleep(DEADLINES.headers + 0.3)      # idle, then the next request
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: hotline\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    assert server.events.counts["read_timeout"] == 0


async def test_a_request_the_parser_refuses_is_json_one_line_and_quotes_nothing(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """A bearer token with a bad byte: aiohttp logged its parser error, the full token
    quoted, with a traceback at ERROR, and answered text/plain."""
    token = b"secret-admin-token-" + b"x" * 20
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        reader, writer = await server.connect()
        try:
            writer.write(b"GET /api/seats HTTP/1.1\r\nHost: hotline\r\n"
                         b"Authorization: Bearer " + token + b"\x01\r\n\r\n")
            answer = await read_all(reader, 2.0)
        finally:
            writer.close()
        status, headers, body = split(answer)
        assert status.split()[1] == "400"
        assert headers["content-type"].startswith("application/json")
        assert headers["server"] == "hotline"
        assert json.loads(body)["error"] == "bad_request"
    assert server.events.counts["bad_request"] == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert token.decode() not in caplog.text
    assert len([r for r in caplog.records if "bad_request" in r.getMessage()]) == 3


async def test_a_client_gone_mid_body_is_one_line_counted(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        reader, writer = await server.connect()
        writer.write(b"POST /api/intake/web HTTP/1.1\r\nHost: hotline\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
                     b'{"content": "')
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.transport.abort()                                 # gone, no FIN handshake
    for _ in range(50):
        if server.events.counts["disconnected"] == 3:
            break
        await asyncio.sleep(0.02)
    assert server.events.counts["disconnected"] == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_a_body_that_breaks_midway_is_a_json_400_in_one_line(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """A bad chunk after a good one: aiohttp's parser gives up and queues its error behind
    the request, whose handler then waited for the rest of the body for ever."""
    caplog.set_level(logging.DEBUG)
    reader, writer = await server.connect()
    try:
        writer.write(b"POST /api/intake/web HTTP/1.1\r\nHost: hotline\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b'5\r\n{"a":\r\n')
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"zz\r\nnot a chunk\r\n")
        answer = await read_all(reader, DEADLINES.body / 2)
    finally:
        writer.close()
    status, headers, body = split(answer)
    assert status.split()[1] == "400" and json.loads(body)["error"] == "invalid_body"
    assert server.events.counts["bad_body"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


async def test_the_counts_are_in_the_metrics(server: Server) -> None:
    reader, writer = await server.connect()
    try:
        writer.write(b"GARBAGE\r\n\r\n")
        await read_all(reader, 2.0)
    finally:
        writer.close()
    reader, writer = await server.connect()
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: hotline\r\nConnection: close\r\n\r\n")
        _, _, body = split(await read_all(reader, 2.0))
    finally:
        writer.close()
    assert 'hotline_http_client_failures_total{kind="bad_request"} 1.0' in body.decode()
