"""Benchmark: intakes/s from the intake stream to committed tickets in PostgreSQL, routing on.

    N intakes already in the Redis stream → IntakeConsumer (batches of 100) → IntakeRouter:
    classify (rules + the model trained on tests/data/labelled_sample.csv, in a thread) →
    route (units, gazetteer) → deadlines (working-day calendar) → tickets created in one
    transaction per batch (PostgreSQL 127.0.0.1:5432, a throwaway database) → status in Redis

Also the classification latency alone (``classify_p50_ms`` / ``classify_p99_ms``) over the
sample's texts. Targets (issue 4): at least 1,000 intakes/s, classify p99 under 2 ms.

Usage: ``python bench/router.py [--n 10000]``. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # type: ignore[import-untyped]  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from channels.durable import NO_METADATA_LOOKUP, redis_client  # noqa: E402
from channels.intake import CHANNELS, Contact, Intake, Location  # noqa: E402
from channels.keys import StreamKeys  # noqa: E402
from channels.stream import IntakeStream  # noqa: E402
from channels.tasks import cancel_and_wait  # noqa: E402
from config.channels import ChannelsConfig  # noqa: E402
from config.loader import DEFAULTS_DIR, load_config  # noqa: E402
from db.engine import create_engine, migrate  # noqa: E402
from hotline.router_parts import build_router, open_router_consumer  # noqa: E402
from router.train import train  # noqa: E402

TARGET = 1000
CLASSIFY_P99_TARGET_MS = 2.0
SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "labelled_sample.csv"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
STREETS = ["文新街道", "西溪街道", "翠苑街道", None]


def texts() -> list[str]:
    with SAMPLE.open(encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def make_intakes(n: int, pool: list[str], rng: random.Random) -> list[Intake]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        channel = CHANNELS[i % len(CHANNELS)]
        out.append(Intake(
            channel=channel, external_id=f"bench-{i}", received_at=now,
            contact=Contact(phone=f"139{rng.randrange(10**8):08d}"), title="",
            text=rng.choice(pool), location=Location(street=rng.choice(STREETS)),
            intake_id=uuid.uuid4().hex, acceptance_no=f"{now:%Y%m%d}99{i:06d}"))
    return out


async def main(n: int) -> dict[str, Any]:
    rng = random.Random(12345)
    pool = texts()
    prefix = f"benchrouter{uuid.uuid4().hex[:8]}"
    db_name = f"bench_router_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    tmp = tempfile.TemporaryDirectory(prefix="router-bench-")
    try:
        model_path = Path(tmp.name) / "router-model.joblib"
        await asyncio.to_thread(train, SAMPLE, model_path)
        base = await asyncio.to_thread(load_config, DEFAULTS_DIR, {})
        channels = ChannelsConfig.model_validate({
            "redis": {"key_prefix": prefix}, "spool": {"path": f"{tmp.name}/spool.db"}})
        cfg = base.model_copy(update={
            "channels": channels,
            "routing": base.routing.model_copy(update={"model_path": str(model_path)})})
        tz = await asyncio.to_thread(ZoneInfo, "Asia/Shanghai")
        engine = await asyncio.to_thread(
            create_engine, f"postgresql://postgres@127.0.0.1:5432/{db_name}")
        try:
            await migrate(engine)
            result = await run(cfg, engine, tz, n, pool, rng)
        finally:
            await engine.dispose()
        return result
    finally:
        tmp.cleanup()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
        redis = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", **NO_METADATA_LOOKUP)
        keys = [k async for k in redis.scan_iter(match="{" + prefix + "}:*", count=5000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def run(cfg: Any, engine: Any, tz: Any, n: int, pool: list[str],
              rng: random.Random) -> dict[str, Any]:
    redis = redis_client(cfg.channels)
    try:
        keys = StreamKeys.from_config(cfg.channels)
        stream = IntakeStream(redis, keys, 86400)
        await stream.ensure_group()
        intakes = make_intakes(n, pool, rng)
        for start in range(0, n, 500):
            await stream.add_many(intakes[start:start + 500])

        router = (await build_router(cfg, engine, tz)).router

        # Classification alone (what the router runs in a thread for each intake).
        samples = [rng.choice(pool) for _ in range(2000)]
        lat = []
        for text in samples:
            t0 = time.perf_counter()
            router.classifier.classify(text)
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()

        async with open_router_consumer(cfg, router) as consumer:
            t0 = time.monotonic()
            task = asyncio.create_task(consumer.run())
            try:
                while router.routed < n:
                    if task.done():
                        task.result()
                    if time.monotonic() - t0 > 120:
                        raise RuntimeError(f"only {router.routed} of {n} routed in 120 s")
                    await asyncio.sleep(0.01)
                elapsed = time.monotonic() - t0
            finally:
                await cancel_and_wait(task)
        async with engine.connect() as conn:
            from sqlalchemy import text as sql
            committed, related, repeats = (await conn.execute(sql(
                "select count(*), count(related_to), count(repeat_of) from tickets"))).one()
    finally:
        await redis.aclose()
    value = n / elapsed
    p99 = lat[int(len(lat) * 0.99) - 1]
    return {"bench": "router", "value": round(value, 1), "unit": "intakes/s",
            "target": TARGET, "classify_p50_ms": round(statistics.median(lat), 3),
            "classify_p99_ms": round(p99, 3), "classify_p99_target_ms": CLASSIFY_P99_TARGET_MS,
            "n": n, "tickets_committed": committed, "manual": router.manual,
            "related": related, "repeats": repeats,
            "seconds": round(elapsed, 2),
            "met": value >= TARGET and p99 < CLASSIFY_P99_TARGET_MS and committed == n}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    result = asyncio.run(main(args.n))
    print(f"{result['n']:,} intakes routed into PostgreSQL in {result['seconds']} s: "
          f"{result['value']:,.0f}/s ({result['manual']} to manual dispatch); "
          f"classify p50 {result['classify_p50_ms']} ms, p99 {result['classify_p99_ms']} ms")
    print(json.dumps(result, ensure_ascii=False))
