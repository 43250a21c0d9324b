"""A router stand-in run as its own process by the reliability test, so it can be killed with
SIGKILL mid-batch: consumes the intake stream and records each intake in a SQLite sink,
idempotently on ``intake_id`` (as the ticket backend will), counting every delivery.

    python -m tests.channels.consumer_proc REDIS_URL PREFIX NAME SINK.db
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys

from channels.consumer import IntakeConsumer
from channels.durable import redis_client
from channels.intake import Intake
from channels.keys import StreamKeys
from config.channels import ChannelsConfig


def open_sink(path: str) -> sqlite3.Connection:
    # Used from asyncio.to_thread workers, one delivery at a time.
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS seen (intake_id TEXT PRIMARY KEY, "
               "acceptance_no TEXT NOT NULL, channel TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS deliveries (intake_id TEXT NOT NULL, "
               "consumer TEXT NOT NULL)")
    return db


async def main(url: str, prefix: str, name: str, sink: str) -> None:
    cfg = ChannelsConfig.model_validate({"redis": {"url": url, "key_prefix": prefix,
                                                   "retry_seconds": 0.1}})
    db = open_sink(sink)

    def record(intake: Intake) -> None:
        with db:
            db.execute("BEGIN")
            db.execute("INSERT INTO deliveries VALUES (?, ?)", (intake.intake_id, name))
            db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                       (intake.intake_id, intake.acceptance_no, intake.channel))

    async def handle(intake: Intake) -> None:
        await asyncio.to_thread(record, intake)

    redis = redis_client(cfg, block_seconds=1)
    consumer = IntakeConsumer(redis, StreamKeys.from_config(cfg), name, handle,
                              claim_idle_seconds=0.5, block_ms=200, batch=50,
                              retry_seconds=0.1)
    print("ready", flush=True)
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
