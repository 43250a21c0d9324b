"""10,000 intakes across the channels while Redis is killed and restarted twice and consumer
processes are killed mid-batch: exactly 10,000 distinct intakes reach the consumers, none
lost, none duplicated in the stream.

Real components only: a private redis-server (AOF, ``appendfsync always``: what production
must run) on a free port, the real gateway with its SQLite spool, consumers as separate
processes killed with SIGKILL. Web-form and app intakes go through the real HTTP handlers
(JSON over a socket; app requests signed, nonces in the same Redis); mail, phone and
voicemail intakes are submitted as their adapters do (those adapters are tested against
dovecot and Asterisk's voicemail files in their own tests)."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.durable import redis_client
from channels.nonces import RedisNonceStore
from channels.intake import CHANNELS, Contact, IntakeDraft
from tests.channels.conftest import ConfigFactory, GatewayFactory
from tests.channels.consumer_proc import open_sink
from tests.channels.intake_http import channels_config as http_config
from tests.channels.intake_http import running
from tests.e2e.conftest import eventually

TOTAL = 10_000
REPO = Path(__file__).resolve().parents[2]


def web_form(n: int) -> dict[str, str]:
    return {"submission_id": f"web-{n:08d}", "phone": f"139{n:08d}", "title": "噪音扰民",
            "content": f"第 {n} 号诉求：夜间施工噪音"}


def app_body(n: int) -> bytes:
    return json.dumps({"request_id": f"app-{n:08d}", "app_user_id": f"u{n}",
                       "phone": f"139{n:08d}", "content": f"第 {n} 号诉求：路灯不亮"},
                      ensure_ascii=False).encode()


def citizen_draft(n: int) -> IntakeDraft:
    channel = CHANNELS[n % len(CHANNELS)]
    return IntakeDraft(channel=channel, external_id=f"{channel}-{n}",
                       received_at=datetime.now(UTC),
                       contact=Contact(phone=f"139{n:08d}"), title="噪音扰民",
                       text=f"第 {n} 号诉求：夜间施工噪音")


async def start_consumer(redis_url: str, prefix: str, name: str,
                         sink: Path) -> asyncio.subprocess.Process:
    log = await asyncio.to_thread(open, sink.parent / f"{name}.log", "wb")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.channels.consumer_proc", redis_url, prefix, name,
            str(sink), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=log)
    finally:
        log.close()
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    return proc


def sink_counts(sink: Path) -> tuple[int, int]:
    db = sqlite3.connect(sink, timeout=30)
    try:
        seen = db.execute("SELECT count(*) FROM seen").fetchone()[0]
        deliveries = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    finally:
        db.close()
    return int(seen), int(deliveries)


def sink_numbers(sink: Path) -> set[str]:
    db = sqlite3.connect(sink, timeout=30)
    try:
        return {row[0] for row in db.execute("SELECT acceptance_no FROM seen")}
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_ten_thousand_intakes_survive_redis_restarts_and_consumer_kills(
        channels_config: ConfigFactory, gateway_factory: GatewayFactory,
        redis_server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = await redis_server_factory()
    cfg = channels_config(redis_url=server.url)
    prefix = cfg.redis.key_prefix
    sink = tmp_path / "sink.db"
    await asyncio.to_thread(lambda: open_sink(str(sink)).close())
    rng = random.Random(12345)
    accepted: dict[int, str] = {}
    consumers: list[asyncio.subprocess.Process] = []
    names = iter(f"router-{i}" for i in range(100))
    kills = 0

    async def submit(n: int) -> str:
        channel = CHANNELS[n % len(CHANNELS)]
        if channel == "web":
            status, body = await http.post_json("/api/intake/web", web_form(n))
        elif channel == "app":
            # Every try is a new signed request (a retry signs again: new nonce).
            status, body = await http.signed("POST", "/api/app/v1/intakes", app_body(n))
        else:
            return (await gw.submit(citizen_draft(n))).acceptance_no
        assert status in (200, 201), body
        return str(body["acceptance_no"])

    async def submitter(numbers: list[int]) -> None:
        for n in numbers:
            accepted[n] = await submit(n)
            if rng.random() < 0.1:            # a citizen who presses "submit" twice
                assert await submit(n) == accepted[n]
            await asyncio.sleep(0)

    async def chaos() -> None:
        nonlocal kills
        outages = 0
        while len(accepted) < TOTAL:
            await asyncio.sleep(0.15)
            done = len(accepted)
            if outages < 2 and done > (outages + 1) * TOTAL // 3:
                outages += 1
                await server.stop()           # SIGKILL: a crash
                await asyncio.sleep(0.5)
                await server.start()
            if consumers and rng.random() < 0.5:
                victim = consumers.pop(rng.randrange(len(consumers)))
                victim.kill()                 # mid-batch: no goodbye, entries left pending
                await victim.wait()
                kills += 1
                consumers.append(await start_consumer(server.url, prefix, next(names), sink))

    try:
        async with gateway_factory(cfg) as gw, running(
                gw, http_config(str(tmp_path / "attachments"), rate_limit_per_minute=0),
                nonces=RedisNonceStore(gw.stream.redis, gw.stream.keys.prefix,
                                       retry_seconds=0.1)) as http:
            for _ in range(2):
                consumers.append(await start_consumer(server.url, prefix, next(names), sink))
            numbers = list(range(TOTAL))
            shards = [numbers[i::20] for i in range(20)]
            async with asyncio.TaskGroup() as tasks:     # a failure stops the others
                tasks.create_task(chaos())
                for shard in shards:
                    tasks.create_task(submitter(shard))
            assert len(accepted) == TOTAL
            assert gw.counters.to_spool > 0, "the outages did not send anything to the spool"
            await eventually(lambda: gw.spool.count == 0, timeout=60, what="spool drained")

            async def all_seen() -> bool:
                seen, _ = await asyncio.to_thread(sink_counts, sink)
                return seen >= TOTAL
            await eventually(all_seen, timeout=120, what="every intake consumed")

            redis = redis_client(cfg)
            try:
                stream_len = await redis.xlen(gw.stream.keys.stream)
                dead = await redis.xlen(gw.stream.keys.dead_letter)
            finally:
                await redis.aclose()
    finally:
        for proc in consumers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    seen, deliveries = await asyncio.to_thread(sink_counts, sink)
    numbers = await asyncio.to_thread(sink_numbers, sink)
    assert seen == TOTAL
    assert numbers == set(accepted.values())
    assert len(set(accepted.values())) == TOTAL
    assert stream_len == TOTAL                 # no duplicate ever entered the stream
    assert dead == 0
    assert kills >= 2
    # Redeliveries happen (killed mid-batch) but the consumers' sink keeps one of each.
    print(f"deliveries={deliveries} kills={kills} spooled={gw.counters.to_spool}")
