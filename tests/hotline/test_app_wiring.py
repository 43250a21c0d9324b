"""The composition root's small parts: the AMI link's late-bound on_ready and the tasks the
serve() stack stops in reverse."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from hotline.app import ReadyHook, open_task


async def test_ready_hook_runs_what_it_was_bound_to() -> None:
    calls: list[str] = []

    async def ready() -> None:
        calls.append("ready")

    hook = ReadyHook()
    with pytest.raises(RuntimeError, match="before its on_ready was bound"):
        await hook()
    hook.bind(ready)
    await hook()
    assert calls == ["ready"]


async def test_tasks_on_one_stack_stop_in_reverse_order() -> None:
    stopped: list[str] = []

    async def run(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    async with asyncio.TaskGroup() as tasks:
        async with AsyncExitStack() as stack:
            for name in ("first", "second", "third"):
                await stack.enter_async_context(open_task(tasks, run(name), name, wait=True))
            await asyncio.sleep(0)
    assert stopped == ["third", "second", "first"]


async def test_a_crashing_task_still_stops_the_group() -> None:
    async def crash() -> None:
        raise ValueError("boom")

    with pytest.raises(BaseExceptionGroup) as raised:
        async with asyncio.TaskGroup() as tasks:
            async with open_task(tasks, crash(), "crash"):
                await asyncio.Event().wait()
    assert raised.group_contains(ValueError)
