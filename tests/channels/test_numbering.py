"""Acceptance numbers: format, uniqueness across blocks, days and restarts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from channels.numbering import AcceptanceNumbers
from channels.spool import open_spool


async def test_numbers_unique_across_blocks_days_and_restarts(tmp_path: Path) -> None:
    tz = await asyncio.to_thread(ZoneInfo, "Asia/Shanghai")
    # 15:59 UTC is 23:59 in Beijing: the day turns during the run.
    start = datetime(2026, 11, 23, 15, 59, 50, tzinfo=UTC)
    issued: list[str] = []
    for run in range(2):                       # the service restarts in between
        async with open_spool(tmp_path / "spool.db") as spool:
            numbers = AcceptanceNumbers(spool, node_id=3, timezone=tz, block=10)
            for i in range(45):
                now = start + timedelta(seconds=i // 2 + run * 20)
                issued.append(await numbers.issue(now))
            await numbers.aclose()
    assert len(set(issued)) == len(issued) == 90
    assert all(len(n) == 16 and n.isdigit() for n in issued)
    assert {n[:8] for n in issued} == {"20261123", "20261124"}
    assert {n[8:10] for n in issued} == {"03"}
    # A new Beijing day starts at sequence 1; a restart skips the rest of a leased block
    # but never repeats a number.
    assert "2026112403000001" in issued
    second_day = sorted(n for n in issued if n.startswith("20261124"))
    assert second_day == sorted(set(second_day))


async def test_concurrent_issues_never_collide(tmp_path: Path) -> None:
    tz = await asyncio.to_thread(ZoneInfo, "Asia/Shanghai")
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    async with open_spool(tmp_path / "spool.db") as spool:
        numbers = AcceptanceNumbers(spool, node_id=1, timezone=tz, block=7)
        issued = await asyncio.gather(*(numbers.issue(now) for _ in range(500)))
        await numbers.aclose()
    assert len(set(issued)) == 500
