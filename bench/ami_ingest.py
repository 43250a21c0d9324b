"""Benchmark: AMI events per second through the service's whole ingest path.

    socket → framing + panoramisk Message parsing (AmiProtocol) → typed events
    → call tracker → seat board → queue statistics

on one core (this process is pinned to CPU 0; the feed runs in another process on CPU 1),
from a generated stream of real Asterisk 22.5 call sequences (``bench/ami_feed.py``) over a
real TCP socket. In the same run, the reference: bare panoramisk 1.4 (``Manager`` with its
``AMIProtocol``, one synchronous no-op callback for every event) reading the same stream.

Also measured: latency from the TCP chunk that carries an ``AgentConnect`` being read to the
seat board showing the seat on call (p50/p99) with the feed paced at the target load (20,000
events/s; at full speed every read is a 256 KiB chunk and the latency is just the time to
work through it), and RSS after 100,000 and after all events of the full-speed run
(1,000,000 by default): the growth must stay under 20 MB.

Usage: ``python bench/ami_ingest.py [--events N] [--reference-events N]``. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import telephony.link as link_module  # noqa: E402
from ami_feed import FeedServer  # noqa: E402
from panoramisk import Manager  # noqa: E402
from telephony.calls import CallTracker  # noqa: E402
from telephony.dispatch import EventDispatcher  # noqa: E402
from telephony.link import AmiLink  # noqa: E402
from telephony.model import SeatSnapshot, SeatState  # noqa: E402
from telephony.protocol import AmiProtocol  # noqa: E402
from telephony.seats import SeatBoard, SeatSpec  # noqa: E402
from telephony.stats import QueueStats  # noqa: E402

TARGET = 20_000
RATIO_TARGET = 0.6


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


async def reference(n_events: int) -> float:
    """Bare panoramisk: parse + dispatch to one sync callback, events/s."""
    with FeedServer(n_events, cpu=1) as feed:
        done = asyncio.Event()
        count = 0
        first = 0.0

        def on_event(manager: object, message: object) -> None:
            nonlocal count, first
            if count == 0:
                first = time.perf_counter()
            count += 1
            if count >= n_events:
                done.set()

        manager = Manager(host="127.0.0.1", port=feed.port, username="bench",
                          secret="bench", ping_delay=3600, loop=asyncio.get_running_loop())
        manager.register_event("*", on_event)
        await manager.connect()
        await asyncio.wait_for(done.wait(), timeout=300)
        elapsed = time.perf_counter() - first
        manager.close()
        return count / elapsed


async def ours(n_events: int, rate: float | None = None) -> dict[str, float]:
    seats = [SeatSpec(str(s), f"坐席{s}", f"Local/{s}@seats/n") for s in range(1001, 1101)]
    board = SeatBoard(seats, wrapup_seconds=10, now=datetime.now(UTC))
    stats = QueueStats(service_level_seconds=15, interval_minutes=15,
                       timezone=ZoneInfo("Asia/Shanghai"))
    tracker = CallTracker(board, stats)
    dispatcher = EventDispatcher(tracker)
    process = psutil.Process()
    chunk_read_at = 0.0
    latencies: list[float] = []
    rss_at_100k = 0.0
    done = asyncio.Event()
    first = 0.0

    class TimedProtocol(AmiProtocol):
        """Notes when each TCP chunk is read (benchmark instrumentation only)."""

        def data_received(self, data: bytes) -> None:
            nonlocal chunk_read_at
            chunk_read_at = time.perf_counter()
            super().data_received(data)

    def on_seat(seat: SeatSnapshot) -> None:
        if seat.state is SeatState.ON_CALL:
            latencies.append(time.perf_counter() - chunk_read_at)

    board.subscribe(on_seat)

    def on_event(message: object) -> None:
        nonlocal first, rss_at_100k
        dispatcher(message)  # type: ignore[arg-type]
        n = link.counters.events_received
        if n == 1:
            first = time.perf_counter()
        elif n == 100_000:
            rss_at_100k = process.memory_info().rss
        if n >= n_events:
            done.set()

    link_module.AmiProtocol = TimedProtocol  # type: ignore[misc]
    with FeedServer(n_events, cpu=1, rate=rate) as feed:
        link = AmiLink(host="127.0.0.1", port=feed.port, username="bench", secret="bench",
                       on_event=on_event, ping_interval=3600)
        async with link:
            await asyncio.wait_for(done.wait(), timeout=300)
            elapsed = time.perf_counter() - first
            rss_end = process.memory_info().rss
    link_module.AmiProtocol = AmiProtocol  # type: ignore[misc]
    return {
        "rate": link.counters.events_received / elapsed,
        "events": link.counters.events_received,
        "seconds": elapsed,
        "connect_p50_ms": percentile(latencies, 50) * 1000,
        "connect_p99_ms": percentile(latencies, 99) * 1000,
        "connects": len(latencies),
        "rss_100k_mb": rss_at_100k / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "malformed": dispatcher.events_malformed,
        "calls_answered": sum(stats.day("12345", d).answered
                              for d in {stats.local_day(datetime.now(UTC))}),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reference-events", type=int, default=200_000)
    parser.add_argument("--paced-events", type=int, default=100_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    ref = await reference(args.reference_events)
    print(f"reference: bare panoramisk parse+dispatch {ref:,.0f} events/s", flush=True)
    got = await ours(args.events)
    paced = await ours(args.paced_events, rate=TARGET)
    got["connect_p50_ms"] = paced["connect_p50_ms"]
    got["connect_p99_ms"] = paced["connect_p99_ms"]
    got["connects"] = paced["connects"]
    print(f"hotline ingest: {got['rate']:,.0f} events/s over {got['events']:,} events "
          f"({got['seconds']:.1f} s); at {TARGET:,} events/s AgentConnect→board p50 {got['connect_p50_ms']:.3f} ms "
          f"p99 {got['connect_p99_ms']:.3f} ms over {got['connects']:,} calls; RSS "
          f"{got['rss_100k_mb']:.1f} MB at 100k → {got['rss_end_mb']:.1f} MB at end", flush=True)
    print(json.dumps({
        "bench": "ami_ingest", "value": round(got["rate"]), "unit": "events/s",
        "target": TARGET, "reference": round(ref), "ratio": round(got["rate"] / ref, 3),
        "ratio_target": RATIO_TARGET,
        "connect_to_board_p50_ms": round(got["connect_p50_ms"], 3),
        "connect_to_board_p99_ms": round(got["connect_p99_ms"], 3), "p99_target_ms": 5,
        "events": got["events"], "rss_after_100k_mb": round(got["rss_100k_mb"], 1),
        "rss_after_all_mb": round(got["rss_end_mb"], 1),
        "rss_growth_mb": round(got["rss_end_mb"] - got["rss_100k_mb"], 1),
        "rss_growth_target_mb": 20, "calls_answered": got["calls_answered"],
        "malformed_events": got["malformed"],
    }, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
