"""Stopping background tasks reliably on Python 3.11.

``asyncio.wait_for`` on 3.11 swallows a cancellation that arrives just as its inner future
completes (CPython gh-86296, fixed in 3.12). redis-py runs every command inside
``wait_for(socket_timeout)``, so ``task.cancel(); await task`` on a loop that talks to Redis
can hang for ever: the task stays "cancelling" and goes on looping (measured here with the
intake consumer and the forwarder, every run of ``bench/stream.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], msg: str = "stopping",
                          retry_seconds: float = 0.1) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again while it is not."""
    while not task.done():
        task.cancel(msg)
        # asyncio.wait neither raises for the task's cancellation nor swallows ours.
        await asyncio.wait({task}, timeout=retry_seconds)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        raise error
