"""cancel_and_wait stops a task even when one cancellation is swallowed (Python 3.11's
wait_for does that: gh-86296), and never swallows the caller's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from channels.tasks import cancel_and_wait


async def test_a_swallowed_cancellation_is_repeated() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 0:            # as wait_for does on 3.11, once
                    swallowed += 1
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, retry_seconds=0.01), 5)
    assert task.cancelled() and swallowed == 1


async def test_a_task_that_failed_raises_its_error() -> None:
    async def broken() -> None:
        raise ValueError("bug")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="bug"):
        await cancel_and_wait(task)


async def test_the_callers_own_cancellation_propagates() -> None:
    deaf = True

    async def hard_of_hearing() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not deaf:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    victim = asyncio.create_task(hard_of_hearing())
    stopper = asyncio.create_task(cancel_and_wait(victim, retry_seconds=0.01))
    await asyncio.sleep(0.05)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not victim.done()
    deaf = False
    await cancel_and_wait(victim)
    assert victim.cancelled()
